"""The model config (rs2sam2.config): JSON round trips and presets; values are range-checked when a config
is built (a config.json is input, not trusted code)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rs2sam2.config import CONFIG_RANGES, MAX_IMAGE_SIZE_ENV, PRESETS, RS2SAM2Config

BUNDLED_CONFIG = Path(__file__).resolve().parent.parent / "demo" / "rs2sam2-tiny-synthetic" / "config.json"


def _tiny(**changes) -> dict:
    d = RS2SAM2Config.from_preset("tiny").to_dict()
    for name, value in changes.items():
        *parents, leaf = name.split("__")
        target = d
        for p in parents:
            target = target[p]
        target[leaf] = value
    return d


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_and_the_bundled_config_are_valid(name):
    RS2SAM2Config.from_preset(name)
    RS2SAM2Config.from_json(BUNDLED_CONFIG)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"image_size": 16384},
            r"image_size = 16384 is outside the allowed range \[16, 4096\] .*RS2SAM2_MAX",
        ),
        ({"image_size": 8}, r"image_size = 8 is outside"),
        ({"image_size": 256.0}, r"image_size must be a whole number"),
        ({"union_encoder__num_layers": 10_000}, r"union_encoder\.num_layers = 10000 is outside \[1, 128\]"),
        ({"union_encoder__embed_dim": 0}, r"union_encoder\.embed_dim = 0"),
        ({"hiera__stages": [1, 2, 1000, 1]}, r"hiera\.stages = 1000"),
        ({"hiera__stages": [1] * 17}, r"hiera\.stages has 17 entries"),
        ({"decoder__transformer_mlp_dim": 10**9}, r"decoder\.transformer_mlp_dim"),
        ({"fusion__num_heads": "4"}, r"fusion\.num_heads must be a number, got '4'"),
        ({"fusion__num_heads": True}, r"fusion\.num_heads must be a number"),
        ({"hiera__drop_path_rate": 2.0}, r"hiera\.drop_path_rate = 2\.0"),
    ],
)
def test_out_of_range_values_are_refused_with_the_field_named(change, message):
    message = message.replace(r"is outside \[", r"is outside the allowed range \[")
    with pytest.raises(ValueError, match=message):
        RS2SAM2Config.from_dict(_tiny(**change))


def test_the_image_size_cap_can_be_raised(monkeypatch):
    d = _tiny(image_size=8192)
    with pytest.raises(ValueError, match="8192 is outside"):
        RS2SAM2Config.from_dict(d)
    monkeypatch.setenv(MAX_IMAGE_SIZE_ENV, "8192")
    assert RS2SAM2Config.from_dict(d).image_size == 8192


def test_every_range_names_a_real_field():
    config = RS2SAM2Config()
    for name, (low, high) in CONFIG_RANGES.items():
        obj = config
        for part in name.split("."):
            obj = getattr(obj, part)  # AttributeError for a misspelt entry
        assert low <= high


# -------------------------------------------------------------------------------- config
def test_config_json_round_trip(tmp_path):
    for name in ["official", "tiny", "small"]:
        cfg = RS2SAM2Config.from_preset(name)
        cfg.to_json(tmp_path / "c.json")
        assert RS2SAM2Config.from_json(tmp_path / "c.json") == cfg
    with pytest.raises(KeyError, match="unknown preset"):
        RS2SAM2Config.from_preset("huge")
    with pytest.raises(ValueError, match="unknown HieraConfig fields"):
        RS2SAM2Config.from_dict({"hiera": {"depth": 3}})
    with pytest.raises(ValueError, match="text_dim"):
        RS2SAM2Config.from_dict({"text_dim": 128})
    official = RS2SAM2Config.from_preset("official")
    assert official.fusion.ratio == 0.25 and official.fusion.num_heads == 4
    assert official.fusion.text_weight == 0.2 and official.fusion.adapter_scale == 0.5
    assert official.mask_threshold == 0.5 and official.mask_input_size == 256
    assert official.union_encoder.grid_size == 14 and official.union_encoder.vocab_size == 64010


def test_small_preset_is_tiny_with_a_wider_union_encoder():
    import torch

    from rs2sam2.modeling import RS2SAM2Model

    tiny, small = (RS2SAM2Config.from_preset(n).to_dict() for n in ("tiny", "small"))
    ue_tiny, ue_small = tiny.pop("union_encoder"), small.pop("union_encoder")
    assert small == tiny  # everything but the union encoder is tiny's
    changed = {k: (ue_tiny[k], v) for k, v in ue_small.items() if ue_tiny[k] != v}
    assert changed == {"embed_dim": (128, 256), "num_heads": (4, 8), "ffn_dim": (512, 1024)}
    cfg = RS2SAM2Config.from_preset("small")
    cfg.union_encoder.vocab_size = 64
    model = RS2SAM2Model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256), torch.randn(1, 3, 224, 224), torch.tensor([[0, 5, 9, 2]]),
                    torch.ones(1, 4, dtype=torch.long))  # fmt: skip
    assert out.logits.shape == (1, 1, 256, 256) and out.pseudo_mask.shape == (1, 1, 14, 14)
    assert model.prompt_generator.mask_linear.in_features == 256
