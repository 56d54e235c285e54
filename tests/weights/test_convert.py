"""Official RS2-SAM2 checkpoints → our names (rs2sam2.weights.convert); the SAM2 / BEiT-3 base checkpoints are
in test_base_checkpoints.py.

Every checkpoint here is made by the test in the real on-disk formats: the official key names come from the
released checkpoint's key table (all 2,853 keys, tests/fixtures/official_state_dict_keys.tsv) or from
inverting the mapping table on a tiny model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from rs2sam2 import RS2SAM2, RS2SAM2Config
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

from .conftest import OFFICIAL_CONFIG, official_state_dict, write_official_folder

MANIFEST_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "fixtures" / "official_state_dict_keys.tsv",
    Path(os.environ.get("RS2SAM2_SPEC_DIR", "/work/shared/spec")) / "official_state_dict_keys.tsv",
)


def read_manifest() -> dict[str, tuple[int, ...]]:
    """Key → shape of the released checkpoint (its full state_dict key table), or skip when the table is not
    available."""
    path = next((p for p in MANIFEST_CANDIDATES if p.is_file()), None)
    if path is None:
        pytest.skip("official_state_dict_keys.tsv not found (set RS2SAM2_SPEC_DIR or add tests/fixtures/)")
    out = {}
    for line in path.read_text().splitlines()[1:]:
        key, shape, _dtype = line.split("\t")
        out[key] = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
    return out


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

    from ..conftest import random_inputs

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
