"""A training checkpoint holds tensors and plain values only: no pickled class of ours, so checkpoints
written before the training code moved (``rs2sam2.train`` → ``rs2sam2.training``) still load."""

from __future__ import annotations

import io
import pickletools
import zipfile
from types import SimpleNamespace

import pytest
import torch

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.training.checkpoint import load_checkpoint
from rs2sam2.training.config import TrainConfig
from rs2sam2.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


class _NoData:
    def __len__(self) -> int:
        return 0


def _pickled_globals(path) -> set[str]:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        data = z.read(name)
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
    return found


def test_checkpoint_pickles_no_class_of_ours(tmp_path):
    d = RS2SAM2Config.from_preset("tiny").to_dict()
    d["image_size"] = 64
    torch.manual_seed(0)
    model = RS2SAM2(RS2SAM2Config.from_dict(d))
    config = TrainConfig(output_dir=str(tmp_path), progress=False, device="cpu", schedule="paper")
    processor = SimpleNamespace(config=model.config)  # what the training set reads of it
    trainer = Trainer(model, processor, _NoData(), config)  # type: ignore[arg-type]
    trainer.optimizer.step()  # optimiser state for every parameter group
    path = trainer.save_checkpoint()
    found = _pickled_globals(path)
    assert found, "no globals found: the pickle reader above is broken"
    assert not [g for g in found if "rs2sam2" in g or g.startswith(("training", "__main__"))], found
    assert {g.split(".")[0] for g in found} <= {"torch", "collections"}, found
    ckpt = load_checkpoint(path)  # weights_only=True
    assert ckpt["scheduler"]["lr_lambdas"][0]["schedule"] == "paper"  # EpochDecay stored as its fields
