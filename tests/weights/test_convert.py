"""Official RS2-SAM2 checkpoints and SAM2 / BEiT-3 base checkpoints → our names (rs2sam2.weights.convert).

Every checkpoint here is made by the test in the real on-disk formats: the official key names come from the
spec's manifest (all 2,853 keys) or from inverting the mapping table on a tiny model; SAM2 checkpoints come
from ``sam2``'s own ``SAM2Base`` built from its Hydra configs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.weights.base_checkpoints import load_beit3_checkpoint, load_sam2_checkpoint
from rs2sam2.weights.convert import (
    OFFICIAL_UNUSED,
    convert_official_config,
    convert_official_state_dict,
    expected_shapes,
    is_official_checkpoint,
    official_key,
    to_official_state_dict,
)
from rs2sam2.weights.state_dict import CheckpointError

MANIFEST_CANDIDATES = (
    Path(__file__).parent / "data" / "official_state_dict_keys.tsv",
    Path(os.environ.get("RS2SAM2_SPEC_DIR", "/work/shared/spec")) / "official_state_dict_keys.tsv",
)

# The official config.json written by merge_lora_weights_and_save_hf_model.py (EvfConfig, transformers 4.x).
OFFICIAL_CONFIG = {
    "architectures": ["EvfSamModel"],
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_size": 1024,
    "mm_extractor_scale": "large",
    "model_type": "evf",
    "out_dim": 256,
    "pad_token_id": 3,
    "sam_scale": "huge",
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "transformers_version": "4.41.2",
}


def read_manifest() -> dict[str, tuple[int, ...]]:
    """Key → shape of the released checkpoint (spec §12), or skip when the spec is not available."""
    path = next((p for p in MANIFEST_CANDIDATES if p.is_file()), None)
    if path is None:
        pytest.skip("official_state_dict_keys.tsv not found (set RS2SAM2_SPEC_DIR or add tests/data/)")
    out = {}
    for line in path.read_text().splitlines()[1:]:
        key, shape, _dtype = line.split("\t")
        out[key] = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
    return out


def official_state_dict(model: RS2SAM2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random checkpoint in the official format for ``model``'s architecture: the table inverted on our
    keys, plus one small tensor for every documented unused module. Values ~ N(0, 0.02²) keep a forward
    pass finite."""
    g = torch.Generator().manual_seed(seed)
    sd = {official_key(k): 0.02 * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}
    sd.update(
        {
            "visual_model.memory_attention.layers.0.self_attn.q_proj.weight": torch.randn(4, 4, generator=g),
            "visual_model.memory_encoder.fuser.layers.0.gamma": torch.randn(4, generator=g),
            "visual_model.obj_ptr_proj.layers.0.weight": torch.randn(4, 4, generator=g),
            "visual_model.mask_downsample.weight": torch.randn(1, 1, 4, 4, generator=g),
            "visual_model.maskmem_tpos_enc": torch.randn(7, 1, 1, 4, generator=g),
            "visual_model.no_mem_pos_enc": torch.randn(1, 1, 4, generator=g),
            "visual_model.no_obj_ptr": torch.randn(1, 4, generator=g),
            "meo_linear.weight": torch.randn(4, 8, generator=g),
            "meo_linear.bias": torch.randn(4, generator=g),
        }
    )
    return sd


def write_official_folder(
    folder: Path,
    state: dict[str, torch.Tensor],
    *,
    fmt: str = "safetensors",
    prefix: str = "",
    config: bool = True,
    tokenizer: bool = True,
) -> Path:
    """The layout of a released model folder: config.json, weights, tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {prefix + k: v.contiguous() for k, v in state.items()}
    if fmt == "safetensors":
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    if config:
        (folder / "config.json").write_text(json.dumps(OFFICIAL_CONFIG, indent=2))
    if tokenizer:
        from rs2sam2.testing import make_test_tokenizer

        make_test_tokenizer(folder, vocab_size=120)
    return folder


# ------------------------------------------------------------------------------ the full manifest
def test_full_manifest_converts_to_exactly_our_official_model():
    manifest = read_manifest()
    assert len(manifest) == 2853
    with torch.device("meta"):
        state = {k: torch.empty(shape) for k, shape in manifest.items()}
    converted = convert_official_state_dict(state)  # official preset by default
    ours = expected_shapes(RS2SAM2Config.from_preset("official"))
    assert len(ours) == 2694
    assert set(converted) == set(ours)
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours
    # A bijection: every one of our keys has exactly one official name, and it is in the manifest.
    names = [official_key(k) for k in ours]
    assert len(set(names)) == len(names) and set(names) <= set(manifest)
    dropped = set(manifest) - set(names)
    assert len(dropped) == 157 + 2
    assert all(any(k == g or k.startswith(g + ".") for g in OFFICIAL_UNUSED) for k in dropped)
    # The DeepSpeed export prefix is stripped.
    prefixed = {"module.evf_model." + k: v for k, v in state.items()}
    assert set(convert_official_state_dict(prefixed)) == set(ours)


def test_spot_mapping_rows():
    block = "visual_model.image_encoder.trunk.blocks.7"
    assert (
        official_key("image_encoder.fusion_layers.7.cross_adapter.text_attn.in_proj_weight")
        == f"{block}.Space_Adapter.lvfusion_module.multihead_attn.in_proj_weight"
    )
    assert official_key("sam_decoder.text_fusion.attn.out_proj.bias") == (
        "visual_model.sam_mask_decoder.vlfusion_module.multihead_attn.out_proj.bias"
    )
    assert official_key("prompt_generator.token_mlp.2.weight") == "text_hidden_fcs.0.2.weight"
    assert official_key("text_weight_head.bias") == "text2one_linear.bias"
    assert official_key("image_encoder.trunk.blocks.7.attn.qkv.weight") == (
        "visual_model.image_encoder.trunk.blocks.7.attn.qkv.weight"
    )


# ------------------------------------------------------------------ tiny official checkpoints
@pytest.mark.parametrize(
    ("fmt", "prefix", "with_config"),
    [
        ("safetensors", "", True),
        ("bin", "", True),
        ("bin", "module.evf_model.", False),  # raw DeepSpeed zero_to_fp32 export: no config.json
        ("safetensors", "module.evf_model.", True),
    ],
)
def test_tiny_official_checkpoint_loads_into_the_right_modules(
    tmp_path, tiny_config, tiny_model, fmt, prefix, with_config, caplog
):
    state = official_state_dict(tiny_model)
    folder = write_official_folder(
        tmp_path / "official", state, fmt=fmt, prefix=prefix, config=with_config, tokenizer=False
    )
    assert is_official_checkpoint(folder)
    with caplog.at_level(logging.INFO, logger="rs2sam2"):
        model = RS2SAM2.from_pretrained(folder, config=tiny_config)
    assert "official RS2-SAM2 checkpoint" in caplog.text and "dropped 9 unused keys" in caplog.text

    def same(ours: torch.Tensor, theirs: str) -> bool:
        return torch.equal(ours, state[theirs])

    enc = model.image_encoder
    assert same(  # a BL adapter weight (vision → text cross-attention of block 1)
        enc.fusion_layers[1].cross_adapter.vision_attn.in_proj_weight,
        "visual_model.image_encoder.trunk.blocks.1.Space_Adapter.vlfusion_module.multihead_attn.in_proj_weight",
    )
    assert same(
        enc.fusion_layers[2].mlp_adapter.fc2.bias,
        "visual_model.image_encoder.trunk.blocks.2.MLP_Adapter.D_fc2.bias",
    )
    assert same(
        model.prompt_generator.class_attn.in_proj_weight, "vmtoken.multihead_attn.in_proj_weight"
    )  # MPG
    assert same(model.prompt_generator.mask_product.weight, "mask_product.weight")
    assert same(  # a BEiT-3 language-expert weight
        model.union_encoder.beit3.encoder.layers[1].ffn.B.fc1.weight,
        "mm_extractor.beit3.encoder.layers.1.ffn.B.fc1.weight",
    )
    assert same(  # the buffer that must come from the checkpoint
        model.sam_decoder.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
        "visual_model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    )
    assert same(
        model.sam_decoder.text_fusion.attn.out_proj.weight,
        "visual_model.sam_mask_decoder.vlfusion_module.multihead_attn.out_proj.weight",
    )
    assert same(model.sam_decoder.no_mem_embed, "visual_model.no_mem_embed")
    # Loading keeps the freeze policy and gives an eval-mode float32 model.
    assert not model.training and model.dtype == torch.float32
    assert not enc.trunk.blocks[0].attn.qkv.weight.requires_grad and model.text_proj.weight.requires_grad


def test_official_folder_with_tokenizer_gives_a_working_processor(tmp_path, tiny_config, tiny_model):
    from rs2sam2 import RS2SAM2Processor

    from .conftest import random_inputs

    folder = write_official_folder(tmp_path / "rrsisd", official_state_dict(tiny_model), fmt="bin")
    model = RS2SAM2.from_pretrained(folder, config=tiny_config)
    processor = RS2SAM2Processor.from_pretrained(folder, model.config)
    ids, mask = processor.tokenize(["the white storage tank near the road"])
    assert ids[0, 0] == 0 and ids[0, -1] == 2 and mask.all()
    out = model(**{**random_inputs(tiny_config, batch=1), "input_ids": ids, "attention_mask": mask})
    assert torch.isfinite(out.logits).all()


# ------------------------------------------------------------------------------- errors
def test_conversion_errors_name_the_keys(tiny_config, tiny_model):
    base = official_state_dict(tiny_model)

    unknown = {**base, "some_new_head.weight": torch.zeros(2)}
    with pytest.raises(
        CheckpointError, match=r"neither in the mapping table nor in the drop list: some_new_head"
    ):
        convert_official_state_dict(unknown, tiny_config)

    missing = dict(base)
    del missing["vmtoken.multihead_attn.in_proj_weight"]
    with pytest.raises(
        CheckpointError, match=r"1 missing keys: prompt_generator\.class_attn\.in_proj_weight"
    ):
        convert_official_state_dict(missing, tiny_config)

    wrong = {**base, "text_feat_linear.weight": torch.zeros(3, 3)}
    with pytest.raises(
        CheckpointError, match=r"text_proj\.weight \(from text_feat_linear\.weight\): checkpoint \(3, 3\)"
    ):
        convert_official_state_dict(wrong, tiny_config)

    stray = {**base, "visual_model.image_encoder.trunk.blocks.0.Space_Adapter.gate.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"unexpected keys: .*Space_Adapter\.gate\.weight"):
        convert_official_state_dict(stray, tiny_config)

    half_prefixed = {("module.evf_model." + k if i % 2 else k): v for i, (k, v) in enumerate(base.items())}
    with pytest.raises(CheckpointError, match="only some keys carry the prefix"):
        convert_official_state_dict(half_prefixed, tiny_config)


def test_official_config():
    config = convert_official_config(OFFICIAL_CONFIG)
    assert config == RS2SAM2Config.from_preset("official")
    assert (config.tokenizer.pad_token_id, config.tokenizer.bos_token_id, config.tokenizer.eos_token_id) == (
        3,
        0,
        2,
    )
    with pytest.raises(ValueError, match="model_type"):
        convert_official_config({**OFFICIAL_CONFIG, "model_type": "bert"})
    with pytest.raises(ValueError, match="mm_extractor_scale 'base'"):
        convert_official_config({**OFFICIAL_CONFIG, "mm_extractor_scale": "base", "hidden_size": 768})
    with pytest.raises(ValueError, match="hidden_size=768"):
        convert_official_config({**OFFICIAL_CONFIG, "hidden_size": 768})


def test_is_official_checkpoint(tmp_path, tiny_model):
    state = official_state_dict(tiny_model)
    assert is_official_checkpoint(OFFICIAL_CONFIG) and not is_official_checkpoint({"model_type": "rs2sam2"})
    assert is_official_checkpoint(state) and not is_official_checkpoint(tiny_model.state_dict())
    no_config = write_official_folder(tmp_path / "a", state, config=False, tokenizer=False)
    assert is_official_checkpoint(no_config) and is_official_checkpoint(no_config / "model.safetensors")
    ours = tmp_path / "ours"
    tiny_model.save_pretrained(ours)
    assert not is_official_checkpoint(ours)
    with pytest.raises(FileNotFoundError):
        is_official_checkpoint(tmp_path / "nowhere")


def test_round_trip_to_official_names(tiny_model):
    state = tiny_model.state_dict()
    back = convert_official_state_dict(to_official_state_dict(state), tiny_model.config)
    assert back.keys() == state.keys() and all(back[k] is state[k] for k in state)


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
