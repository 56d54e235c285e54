"""The training tests' workspace: a test tokenizer, a small synthetic dataset and a 64² tiny config, with
helpers that build a model and a Trainer on it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.data.readers import open_dataset
from rs2sam2.data.synthetic import generate_dataset
from rs2sam2.processing import RS2SAM2Processor
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.training.checkpoint import seed_everything
from rs2sam2.training.config import TrainConfig
from rs2sam2.training.data import Collate
from rs2sam2.training.trainer import Trainer

# Small enough for CPU tests: 64² SAM2 input and a text table sized to the 123-token test tokenizer.
IMAGE_SIZE = 64
VOCAB_SIZE = 128


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> SimpleNamespace:
    """Tokenizer, a 4-image synthetic dataset (4 train, 2 val, 2 test samples) and a tiny config file."""
    root = tmp_path_factory.mktemp("train_ws")
    tokenizer = make_test_tokenizer(root / "tokenizer", vocab_size=120)
    generate_dataset(
        root / "data", 4, seed=0, size=64, splits=(0.5, 0.25, 0.25), expressions_per_image=2,
        write_rrsisd=False,
    )  # fmt: skip
    d = RS2SAM2Config.from_preset("tiny").to_dict()
    d["image_size"] = IMAGE_SIZE
    d["union_encoder"]["vocab_size"] = VOCAB_SIZE
    config = RS2SAM2Config.from_dict(d)
    config.to_json(root / "config.json")
    return SimpleNamespace(root=root, tokenizer=tokenizer, data=root / "data", config=config)


def _build(ws: SimpleNamespace, seed: int = 0) -> tuple[RS2SAM2, RS2SAM2Processor]:
    seed_everything(seed)
    return RS2SAM2(ws.config), RS2SAM2Processor.from_pretrained(ws.tokenizer, ws.config)


def _trainer(ws, out: Path, seed: int = 0, val: bool = True, **overrides) -> Trainer:
    model, processor = _build(ws, seed)
    settings = {"epochs": 1, "log_every": 1, "progress": False, "device": "cpu", **overrides}
    cfg = TrainConfig(output_dir=str(out), **settings)
    val_set = open_dataset(ws.data, "val") if val else None
    return Trainer(model, processor, open_dataset(ws.data, "train"), cfg, val_dataset=val_set)


def _records(path: Path, drop=("time", "samples_per_s")) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k not in drop}
        for line in path.read_text().splitlines()
        if line.strip()
    ]


@torch.no_grad()
def _mean_loss(trainer: Trainer) -> float:
    """Official loss of the current model over the training samples, one at a time, in eval mode."""
    trainer.model.eval()
    collate = Collate(trainer.processor)
    total = 0.0
    for i in range(len(trainer.train_set)):
        batch = collate([trainer.train_set[i]])
        inputs = {k: batch[k] for k in ("sam_pixels", "union_pixels", "input_ids", "attention_mask")}
        out = trainer.model(**inputs)
        total += float(trainer.loss_fn(out.logits, batch["target"], out.text_weight).total)
    return total / len(trainer.train_set)
