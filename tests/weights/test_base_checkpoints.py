"""SAM2 and BEiT-3 base checkpoints → our names (rs2sam2.weights.base_checkpoints): Meta's SAM2 files (made
from ``sam2``'s own ``SAM2Base`` built from its Hydra configs) load strictly, BEiT-3 with or without a
prefix, and truncated or foreign pickles are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.weights.base_checkpoints import load_beit3_checkpoint, load_sam2_checkpoint
from rs2sam2.weights.state_dict import CheckpointError


# --------------------------------------------------------------------------- SAM2 base checkpoints
def sam2_upstream_state_dict(config_name: str) -> dict[str, torch.Tensor]:
    """The state dict of ``sam2``'s own SAM2Base, built from its packaged Hydra config."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    cfg = compose(config_name=config_name)
    OmegaConf.resolve(cfg)
    torch.manual_seed(1)
    return instantiate(cfg.model, _recursive_=True).state_dict()


def hiera_t_config() -> RS2SAM2Config:
    """Our architecture with SAM2 Hiera-T's image side (sam2_hiera_t.yaml) and a tiny union encoder."""
    tiny = RS2SAM2Config.from_preset("tiny").to_dict()
    official = RS2SAM2Config.from_preset("official").to_dict()
    hiera = {**official["hiera"], "embed_dim": 96, "num_heads": 1, "stages": (1, 2, 7, 2)}
    hiera.update(global_att_blocks=(5, 7, 9), window_spec=(8, 4, 14, 7))
    return RS2SAM2Config.from_dict(
        {
            **official,
            "union_encoder": tiny["union_encoder"],
            "hiera": hiera,
            "prompt_generator": tiny["prompt_generator"],
        }
    )


@pytest.fixture(scope="module")
def hiera_t_model() -> RS2SAM2:
    torch.manual_seed(0)
    return RS2SAM2(hiera_t_config())


@pytest.mark.parametrize(
    ("sam2_config", "extras"),
    [
        ("configs/sam2/sam2_hiera_t.yaml", set()),
        ("configs/sam2.1/sam2.1_hiera_t.yaml", {"no_obj_embed_spatial", "obj_ptr_tpos_proj"}),
    ],
)
def test_meta_sam2_checkpoint_loads_strictly(tmp_path, hiera_t_model, sam2_config, extras):
    sam2_state = sam2_upstream_state_dict(sam2_config)
    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": sam2_state}, path)  # Meta's layout: {"model": state_dict}
    report = load_sam2_checkpoint(hiera_t_model, path)

    ours = hiera_t_model.state_dict()
    assert torch.equal(
        ours["image_encoder.trunk.blocks.3.attn.qkv.weight"],
        sam2_state["image_encoder.trunk.blocks.3.attn.qkv.weight"],
    )
    assert torch.equal(
        ours["image_encoder.neck.convs.1.conv.weight"], sam2_state["image_encoder.neck.convs.1.conv.weight"]
    )
    assert torch.equal(
        ours["sam_decoder.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"],
        sam2_state["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"],
    )
    assert torch.equal(
        ours["sam_decoder.mask_decoder.iou_token.weight"], sam2_state["sam_mask_decoder.iou_token.weight"]
    )
    assert torch.equal(ours["sam_decoder.no_mem_embed"], sam2_state["no_mem_embed"])
    # Exactly the new RS2-SAM2 modules keep their fresh initialisation.
    assert set(report.fresh_modules(depth=2)) == {
        "union_encoder.beit3",
        "image_encoder.fusion_layers",
        "sam_decoder.text_fusion",
        "prompt_generator.class_attn",
        "prompt_generator.mask_linear",
        "prompt_generator.mask_product",
        "prompt_generator.token_mlp",
        "text_proj.weight",
        "text_proj.bias",
        "text_weight_head.weight",
        "text_weight_head.bias",
    }
    assert len(report.loaded) + len(report.fresh) == len(ours) and not report.unexpected
    ignored_groups = {k.split(".")[0] for k in report.ignored}
    assert (
        ignored_groups
        == {
            "memory_attention",
            "memory_encoder",
            "obj_ptr_proj",
            "mask_downsample",
            "maskmem_tpos_enc",
            "no_mem_pos_enc",
            "no_obj_ptr",
        }
        | extras
    )
    assert "fresh initialisation kept for" in str(report)


def test_sam2_checkpoint_is_strict(tiny_model):
    from rs2sam2.weights.convert import SAM2_TO_OURS, rename_key

    sam2 = {
        rename_key(k, SAM2_TO_OURS, inverse=True): v.clone()
        for k, v in tiny_model.state_dict().items()
        if rename_key(k, SAM2_TO_OURS, inverse=True) is not None
    }
    assert load_sam2_checkpoint(tiny_model, {"model": sam2}).loaded
    with pytest.raises(CheckpointError, match=r"unexpected keys: image_encoder\.trunk\.extra_scale"):
        load_sam2_checkpoint(tiny_model, {**sam2, "image_encoder.trunk.extra_scale": torch.ones(1)})
    partial = {k: v for k, v in sam2.items() if not k.startswith("sam_mask_decoder.iou_prediction_head")}
    with pytest.raises(
        CheckpointError, match=r"missing keys: sam_decoder\.mask_decoder\.iou_prediction_head"
    ):
        load_sam2_checkpoint(tiny_model, partial)
    report = load_sam2_checkpoint(tiny_model, {**partial, "extra.weight": torch.ones(1)}, strict=False)
    assert report.unexpected == ["extra.weight"] and any("iou_prediction_head" in k for k in report.fresh)
    wrong = {**sam2, "no_mem_embed": torch.zeros(1, 1, 7)}
    with pytest.raises(
        CheckpointError, match=r"sam_decoder\.no_mem_embed \(from no_mem_embed\): checkpoint \(1, 1, 7\)"
    ):
        load_sam2_checkpoint(tiny_model, wrong, strict=False)
    nan = {**sam2, "no_mem_embed": torch.full_like(sam2["no_mem_embed"], float("nan"))}
    with pytest.raises(CheckpointError, match=r"non-finite .* sam_decoder\.no_mem_embed"):
        load_sam2_checkpoint(tiny_model, nan)


# ---------------------------------------------------------------------------- BEiT-3 base checkpoint
@pytest.mark.parametrize("prefix", ["beit3.", ""])
def test_beit3_checkpoint(tmp_path, tiny_model, prefix):
    g = torch.Generator().manual_seed(3)
    enc = {
        prefix + k.removeprefix("union_encoder.beit3."): torch.randn(v.shape, generator=g)
        for k, v in tiny_model.state_dict().items()
        if k.startswith("union_encoder.")
    }
    path = tmp_path / "beit3_tiny_patch16_224.pth"
    torch.save({"model": enc}, path)
    report = load_beit3_checkpoint(tiny_model, path)
    expert = tiny_model.union_encoder.beit3.encoder.layers[0].self_attn.q_proj.A.weight
    assert torch.equal(expert, enc[prefix + "encoder.layers.0.self_attn.q_proj.A.weight"])
    assert len(report.loaded) == len(enc) and not any(k.startswith("union_encoder.") for k in report.fresh)
    with pytest.raises(CheckpointError, match=r"unexpected keys: .*mlm_head\.weight"):
        load_beit3_checkpoint(tiny_model, {**enc, prefix + "mlm_head.weight": torch.zeros(2)})


def test_truncated_and_foreign_pickles(tmp_path, tiny_model):
    from rs2sam2.weights.state_dict import read_state_dict

    path = tmp_path / "sam2.pt"
    torch.save({"model": {"no_mem_embed": torch.zeros(1, 1, 32)}}, path)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_sam2_checkpoint(tiny_model, tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_state_dict(tmp_path / "empty.pt")
    torch.save({"model": {"w": torch.zeros(1)}, "optimizer": Path("x")}, tmp_path / "obj.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(tmp_path / "obj.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pt")
