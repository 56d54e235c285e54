"""The training config (rs2sam2.training.config): learning-rate schedules, loss variants and class weights,
pseudo-mask options, and their command-line flags."""

from __future__ import annotations

import json

import pytest
import torch

from rs2sam2.cli import build_parser
from rs2sam2.cli.train import train_config_from_args
from rs2sam2.training.config import EpochDecay, TrainConfig, loss_from_config, teacher_forcing_probability

pytestmark = pytest.mark.usefixtures("one_thread")


def test_learning_rate_schedules():
    def factors(cfg: TrainConfig) -> list[float]:
        decay = EpochDecay.from_config(cfg)
        return [decay(e) for e in range(cfg.epochs)]

    official = factors(TrainConfig(epochs=60, schedule="official"))
    assert official[:50] == [1.0] * 50 and official[50:] == [0.1] * 10
    assert factors(TrainConfig(epochs=40, schedule="official")) == [1.0] * 40  # RRSIS-D never decays
    assert factors(TrainConfig(epochs=40, schedule="paper")) == [1.0] * 30 + [0.1] * 10
    assert factors(TrainConfig(epochs=5, schedule="constant")) == [1.0] * 5


def test_class_weights_override_the_loss_variant(tmp_path):
    official = loss_from_config(TrainConfig(output_dir=str(tmp_path)))
    assert official.config.class_weights == (0.9, 1.1) and official.config.dice_weight == 0.1
    cfg = TrainConfig(output_dir=str(tmp_path), loss="paper", class_weights=[1, 10])  # JSON gives lists
    weighted = loss_from_config(cfg)
    assert weighted.config.class_weights == (1.0, 10.0) and weighted.config.ce_weight == 1.0  # paper's λ_ce
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # train_config.json round trip
    # a missed foreground pixel costs more with the heavier foreground weight (CE; Dice is unweighted)
    logits, target = torch.full((1, 1, 4, 4), -3.0), torch.zeros(1, 4, 4)
    target[0, 0, :2] = 1
    heavy = loss_from_config(TrainConfig(output_dir=str(tmp_path), class_weights=(1.0, 10.0)))
    assert heavy(logits, target, torch.ones(1)).ce > official(logits, target, torch.ones(1)).ce
    for bad in [(0.0, 1.0), (1.0,), (1.0, 2.0, 3.0)]:
        with pytest.raises(ValueError, match="class_weights"):
            TrainConfig(output_dir=str(tmp_path), class_weights=bad)


def test_cli_class_weights(tmp_path):
    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    args = build_parser().parse_args([*base, "--class-weights", "1", "10"])
    assert train_config_from_args(args).class_weights == (1.0, 10.0)
    assert train_config_from_args(build_parser().parse_args(base)).class_weights is None


# ------------------------------------------------------------- pseudo-mask loss and teacher forcing
def test_pseudo_mask_options_config_and_cli(tmp_path):
    cfg = TrainConfig(output_dir=str(tmp_path), pseudo_mask_loss=0.5, teacher_forcing=0.8,
                      teacher_forcing_steps=100)  # fmt: skip
    assert loss_from_config(cfg).config.pseudo_mask_weight == 0.5
    assert loss_from_config(TrainConfig(output_dir=str(tmp_path))).config.pseudo_mask_weight == 0.0
    assert [teacher_forcing_probability(cfg, s) for s in (0, 25, 100, 500)] == pytest.approx([0.8, 0.6, 0, 0])
    constant = TrainConfig(output_dir=str(tmp_path), teacher_forcing=0.3)
    assert teacher_forcing_probability(constant, 10**6) == 0.3
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in [{"pseudo_mask_loss": -1.0}, {"teacher_forcing": 1.5}, {"teacher_forcing_steps": -1},
                {"pseudo_mask_kind": "focal"}]:  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(output_dir=str(tmp_path), **bad)
    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    args = build_parser().parse_args(
        [*base, "--pseudo-mask-loss", "2", "--teacher-forcing", "0.5", "--teacher-forcing-steps", "40"]
    )
    got = train_config_from_args(args)
    assert (got.pseudo_mask_loss, got.teacher_forcing, got.teacher_forcing_steps) == (2.0, 0.5, 40)
    d = train_config_from_args(build_parser().parse_args(base))
    assert (d.pseudo_mask_loss, d.teacher_forcing) == (0.0, 0.0)  # off by default: the official recipe
