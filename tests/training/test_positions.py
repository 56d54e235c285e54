"""Where the union encoder's patch positions start (rs2sam2.training.positions, TrainConfig.position_init)."""

from __future__ import annotations

import math

import pytest
import torch

from rs2sam2.modeling.union_encoder import UnionEncoder
from rs2sam2.training.config import TrainConfig
from rs2sam2.training.positions import init_patch_positions, sincos_2d

from .conftest import _build, _trainer


def test_sincos_codes_by_hand():
    codes = sincos_2d(3, 8)  # quarter = 2 channels: frequencies 1 and 1/100
    assert codes.shape == (9, 8)
    row1_col2 = codes[1 * 3 + 2]
    expected = [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01),
                math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)]  # fmt: skip
    assert row1_col2.tolist() == pytest.approx(expected, abs=1e-6)
    assert codes[0].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(3, 6)


@pytest.mark.parametrize("kind", ["model", "sincos", "add-sincos"])
def test_only_the_patch_rows_change(ws, kind):
    union: UnionEncoder = _build(ws)[0].union_encoder
    table = union.beit3.encoder.embed_positions.A.weight
    before = {k: v.clone() for k, v in union.state_dict().items()}
    init_patch_positions(union, kind)
    cfg = union.config
    first, n = cfg.position_offset + 1, cfg.grid_size**2
    codes = sincos_2d(cfg.grid_size, cfg.embed_dim)
    old = before["beit3.encoder.embed_positions.A.weight"]
    expected = {
        "model": old[first : first + n],
        "sincos": codes,
        "add-sincos": old[first : first + n] + codes,
    }
    assert torch.equal(table[first : first + n], expected[kind])
    assert torch.equal(table[:first], old[:first])  # offset rows and the class token
    assert table.requires_grad
    for name, value in union.state_dict().items():
        if name != "beit3.encoder.embed_positions.A.weight":
            assert torch.equal(value, before[name]), name  # text positions and everything else as they were


def test_the_trainer_applies_it_once_and_the_setting_is_checked(ws, tmp_path):
    trainer = _trainer(ws, tmp_path, position_init="sincos")
    union = trainer.model.union_encoder
    first, n = union.config.position_offset + 1, union.config.grid_size**2
    table = union.beit3.encoder.embed_positions.A.weight
    assert torch.equal(table[first : first + n], sincos_2d(union.config.grid_size, union.config.embed_dim))
    with pytest.raises(ValueError, match="position_init must be one of"):
        TrainConfig(position_init="learned")
    with pytest.raises(ValueError, match="position_init must be one of"):
        init_patch_positions(union, "learned")
