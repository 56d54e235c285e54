"""The grounding stage (rs2sam2.training.grounding, ``TrainConfig.stage = "grounding"``): its metrics on
hand-built pseudo-masks, what it trains and leaves alone, its records, and the CLI option."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rs2sam2.cli import main
from rs2sam2.evaluate import peak_in_target
from rs2sam2.training.config import TrainConfig
from rs2sam2.training.grounding import (
    GROUNDING_MODULES,
    combine_grounding_metrics,
    freeze_for_grounding,
    grounding_metrics,
)
from rs2sam2.training.losses import pseudo_mask_loss

from .conftest import _build, _records, _trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_peak_in_target_reads_the_highest_cell():
    # 4×4 target, 2×2 grid: the object covers pixel (0, 1), i.e. the top-left cell only.
    target = torch.zeros(3, 4, 4)
    target[:, 0, 1] = 1
    x = torch.zeros(3, 1, 2, 2)
    x[0, 0, 0, 0] = 5.0  # peak on the top-left cell: a hit
    x[1, 0, 1, 1] = 5.0  # peak on the bottom-right cell: a miss
    # sample 2: all equal, the first (top-left) cell wins the tie
    assert peak_in_target(x, target).tolist() == [True, False, True]


class _Fixed(nn.Module):
    """Stands in for GroundingInputs: returns the batch's precomputed logits."""

    def forward(self, union_pixels, input_ids, attention_mask):
        return union_pixels


def _batch(logits: torch.Tensor, target: torch.Tensor) -> dict:
    n = logits.shape[0]
    return {
        "union_pixels": logits,
        "input_ids": torch.zeros(n, 1, dtype=torch.long),
        "attention_mask": torch.ones(n, 1),
        "target": target,
    }


def test_grounding_metrics_by_hand():
    target = torch.zeros(3, 4, 4)
    target[0, 0, 0] = 1  # top-left cell
    target[1, 3, 3] = 1  # bottom-right cell
    # sample 2: empty target (counts in pm_background only)
    x = torch.zeros(3, 1, 2, 2)
    x[0, 0, 0, 0] = 20.0  # p = 1 on its target cell, 0.5 elsewhere; a hit
    x[1, 0, 0, 0] = 20.0  # peak on the top-left, target bottom-right (p = 0.5 there): a miss
    m = grounding_metrics(
        _Fixed(), [_batch(x[:2], target[:2]), _batch(x[2:], target[2:])], torch.device("cpu")
    )
    assert m["num_samples"] == 3 and m["num_with_target"] == 2
    assert m["peak_in_target"] == pytest.approx(50.0)
    assert m["pm_target"] == pytest.approx((1.0 + 0.5) / 2, abs=1e-6)
    # background means: sample 0 -> 0.5, sample 1 -> (1 + 0.5 + 0.5) / 3, sample 2 -> 0.5
    assert m["pm_background"] == pytest.approx((0.5 + 2.0 / 3 + 0.5) / 3, abs=1e-6)
    # the metrics of two shards combine into those of the whole
    parts = [
        grounding_metrics(_Fixed(), [_batch(x[:1], target[:1])], torch.device("cpu")),
        grounding_metrics(_Fixed(), [_batch(x[1:], target[1:])], torch.device("cpu")),
    ]
    combined = combine_grounding_metrics(parts)
    assert combined.keys() == m.keys()
    for k in m:
        assert combined[k] == pytest.approx(m[k], abs=1e-9), k


def test_freeze_for_grounding_leaves_only_the_union_encoder_and_prompt_generator(ws):
    model, _ = _build(ws)
    freeze_for_grounding(model)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(GROUNDING_MODULES)
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        freeze_for_grounding(model)


def test_grounding_stage_trains_the_grounding_half_only(ws, tmp_path):
    trainer = _trainer(
        ws, tmp_path, epochs=2, stage="grounding", freeze_policy="full", pseudo_mask_kind="bce_softmax",
        base_lr=1e-3, fusion_lr=1e-3, batch_size=2,
    )  # fmt: skip
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batch = trainer.collate([trainer.train_set[i] for i in range(len(trainer.train_set))])
    inputs = {k: batch[k] for k in ("union_pixels", "input_ids", "attention_mask")}

    def loss() -> float:
        trainer.model.eval()
        with torch.no_grad():
            x = trainer.forward_module(**inputs)
        return float(pseudo_mask_loss(x, batch["target"], kind="bce_softmax"))

    first = loss()
    trainer.train()
    assert loss() < first
    after = trainer.model.state_dict()
    for name, value in after.items():
        changed = not torch.equal(value, before[name])
        if name.split(".")[0] not in GROUNDING_MODULES:
            assert not changed, name  # SAM2, the fusion layers and the text projection stay as they were
    assert not torch.equal(
        after["prompt_generator.mask_product.weight"], before["prompt_generator.mask_product.weight"]
    )
    records = _records(tmp_path / "metrics.jsonl")
    train = [r for r in records if r["event"] == "train"]
    val = [r for r in records if r["event"] == "val"]
    assert len(train) == 4 and len(val) == 2  # 4 samples / batch 2 × 2 epochs; a val per epoch
    for r in train:
        assert {"loss", "peak_in_target", "pm_target", "pm_background"} <= set(r)
        assert not {"ce", "dice", "train_iou"} & set(r)
        assert 0 <= r["peak_in_target"] <= 100
    for r in val:
        assert r["num_samples"] == 2 and 0 <= r["peak_in_target"] <= 100 and "mIoU" not in r
        assert r["score"] == r["peak_in_target"]
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["score"] == max(r["peak_in_target"] for r in val)


def test_grounding_stage_settings_are_checked():
    with pytest.raises(ValueError, match="stage must be one of"):
        TrainConfig(stage="decoder")
    with pytest.raises(ValueError, match="teacher forcing"):
        TrainConfig(stage="grounding", teacher_forcing=0.5)


def test_cli_stage_option(ws, tmp_path):
    args = ["train", "--data", str(ws.data), "--out", str(tmp_path), "--config", str(ws.root / "config.json"),
            "--tokenizer", str(ws.tokenizer), "--val-split", "none", "--log-every", "1", "--no-progress",
            "--stage", "grounding", "--max-steps", "1"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((tmp_path / "train_config.json").read_text())["stage"] == "grounding"
    (record,) = _records(tmp_path / "metrics.jsonl")
    assert "peak_in_target" in record and "ce" not in record
