"""The Trainer (rs2sam2.training.trainer): the loss goes down, exact resume, atomic checkpoints, DDP = single
process, optimizer groups, teacher forcing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from rs2sam2.cli import main
from rs2sam2.training.checkpoint import load_checkpoint, save_model_folder
from rs2sam2.training.trainer import Trainer

from .conftest import IMAGE_SIZE, _build, _mean_loss, _records, _trainer

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ training
def test_short_training_lowers_the_loss(ws, tmp_path):
    trainer = _trainer(ws, tmp_path, val=False, epochs=2, base_lr=1e-3, fusion_lr=1e-3)
    before = _mean_loss(trainer)
    result = trainer.train()
    after = _mean_loss(trainer)
    assert result["epoch"] == 2 and result["step"] == 8  # 4 samples, batch 1
    assert after < 0.8 * before, (before, after)
    records = _records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "train"] == list(range(1, 9))
    epochs = [r for r in records if r["event"] == "epoch"]
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]
    assert {"loss", "ce", "dice", "boundary", "lr_base", "lr_fusion_mpg"} <= set(records[0])
    # Without a val split the "best" folder follows the latest epoch; it is a loadable model folder.
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert (tmp_path / "best" / "sentencepiece.bpe.model").is_file()
    assert json.loads((tmp_path / "best" / "config.json").read_text())["image_size"] == IMAGE_SIZE


class _Killed(Exception):
    pass


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {
            "pseudo_mask_loss": 1.0,
            "teacher_forcing": 0.6,
            "teacher_forcing_steps": 6,
            "position_init": "add-sincos",
        },
    ],
    ids=["official", "pseudo_mask_teacher_forcing"],
)
def test_resume_after_a_kill_is_bitwise_identical(ws, tmp_path, monkeypatch, extra):
    """Checkpoints at steps 3, 4 (epoch end), 6 and 8; the run dies right after writing step 6 (mid-epoch
    2, after a validation and a best-model save, inside a 4-step logging window) and a fresh process (other
    init seed) resumes it. Also with the pseudo-mask loss and annealed teacher forcing (random draws), and
    with sine-cosine codes added to the patch positions (applied when the resumed trainer is built, then
    replaced by the checkpoint's table)."""
    kw = dict(epochs=2, save_every_steps=3, log_every=4, occlusion=True, **extra)
    ref = _trainer(ws, tmp_path / "ref", **kw)
    ref.train()

    original = Trainer.save_checkpoint

    def save_then_die(self: Trainer):
        path = original(self)
        if self.step == 6:
            raise _Killed
        return path

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _trainer(ws, tmp_path / "run", **kw).train()
    monkeypatch.undo()
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["epoch_batches"]) == (1, 6, 2)

    resumed = _trainer(ws, tmp_path / "run", seed=123, **kw)
    resumed.train(resume=tmp_path / "run" / "checkpoint.pt")

    ref_state, new_state = ref.model.state_dict(), resumed.model.state_dict()
    assert ref_state.keys() == new_state.keys()
    for k in ref_state:
        assert torch.equal(ref_state[k], new_state[k]), k
    ref_opt, new_opt = ref.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for i in ref_opt:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(ref_opt[i][name], new_opt[i][name])
    assert _records(tmp_path / "ref" / "metrics.jsonl") == _records(tmp_path / "run" / "metrics.jsonl")
    assert json.loads((tmp_path / "ref" / "best.json").read_text()) == json.loads(
        (tmp_path / "run" / "best.json").read_text()
    )


def test_resume_from_a_checkpoint_at_an_epochs_last_step_writes_each_record_once(ws, tmp_path, monkeypatch):
    """save_every_steps=4 with 4 steps an epoch: the step-4 checkpoint is written before epoch 1's
    "epoch" record (same step); the run dies while saving the best model, after that record. The resumed
    run ends the epoch again; metrics.jsonl must hold that epoch's records once, as an uninterrupted run."""
    kw = dict(epochs=2, save_every_steps=4, log_every=2)
    _trainer(ws, tmp_path / "ref", **kw).train()

    def die(self: Trainer):
        raise _Killed

    monkeypatch.setattr(Trainer, "_save_best", die)
    with pytest.raises(_Killed):
        _trainer(ws, tmp_path / "run", **kw).train()
    monkeypatch.undo()
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["epoch_batches"]) == (0, 4, 4)
    assert [r["event"] for r in _records(tmp_path / "run" / "metrics.jsonl")][-1] == "epoch"
    _trainer(ws, tmp_path / "run", seed=9, **kw).train(resume=tmp_path / "run" / "checkpoint.pt")
    ref, run = _records(tmp_path / "ref" / "metrics.jsonl"), _records(tmp_path / "run" / "metrics.jsonl")
    assert [(r["event"], r["step"]) for r in run] == [(r["event"], r["step"]) for r in ref]
    assert [r["event"] for r in run].count("epoch") == 2 and len(run) == len(ref)


def test_stale_best_folder_temporaries_of_dead_writers_are_removed(ws, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now
    stale = tmp_path / f".best.{dead.pid}.tmp"
    live = tmp_path / f".best.{os.getppid()}.tmp"  # another writer still at work
    for folder in (stale, live):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    model, processor = _build(ws)
    save_model_folder(model, processor, tmp_path / "best")
    assert not stale.exists() and (live / "model.safetensors").read_bytes() == b"half"
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["best", live.name])


def test_cli_resume_continues_a_max_steps_run(ws, tmp_path):
    args = ["train", "--data", str(ws.data), "--out", str(tmp_path), "--config", str(ws.root / "config.json"),
            "--tokenizer", str(ws.tokenizer), "--val-split", "none", "--log-every", "1",
            "--no-progress"]  # fmt: skip
    assert main([*args, "--max-steps", "1"]) == 0
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch_batches"] == 1
    assert main([*args, "--max-steps", "2", "--resume"]) == 0
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert (ckpt["step"], ckpt["epoch_batches"]) == (2, 2)
    assert [r["step"] for r in _records(tmp_path / "metrics.jsonl")] == [1, 2]


def test_checkpoint_write_is_atomic(ws, tmp_path, monkeypatch):
    trainer = _trainer(ws, tmp_path, val=False)
    path = trainer.save_checkpoint()
    before = path.read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).add_(1.0)

    def crash_mid_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    fresh = _trainer(ws, tmp_path, seed=5, val=False)
    fresh.load_state_dict(load_checkpoint(path))  # the previous checkpoint still loads, strictly
    first = next(iter(fresh.model.state_dict()))
    expected = next(iter(trainer.model.state_dict().values())) - 1.0
    torch.testing.assert_close(fresh.model.state_dict()[first], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("stage", ["full", "grounding"])
def test_torchrun_two_processes_match_single_process(ws, tmp_path, stage):
    """2 processes × batch 1 (gloo, DDP gradient averaging) vs 1 process × batch 1 × 2 accumulation steps:
    the same global batches, so the same updates up to float summation order (tolerance 1e-5). Also for the
    grounding stage, whose validation figures are combined from both ranks' shards."""
    common = [
        "train", "--data", str(ws.data), "--config", str(ws.root / "config.json"),
        "--tokenizer", str(ws.tokenizer), "--epochs", "1", "--log-every", "1", "--no-progress",
        "--device", "cpu", "--stage", stage,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "rs2sam2.cli", *common, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([*common, "--out", str(tmp_path / "single"), "--grad-accumulation", "2"]) == 0

    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    single = load_checkpoint(tmp_path / "single" / "checkpoint.pt")
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["step"] == single["step"] == 2
    moved = 0
    initial = _build(ws, seed=2401)[0].state_dict()  # both CLI runs seed 2401 before building
    for k, v in single["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=0, atol=1e-5, msg=k)
        moved += int(not torch.equal(v, initial[k]))
    assert moved > (100 if stage == "full" else 20)  # not vacuous: training changed the weights
    ddp_rec = _records(tmp_path / "ddp" / "metrics.jsonl")
    single_rec = _records(tmp_path / "single" / "metrics.jsonl")
    losses = [(a["loss"], b["loss"]) for a, b in zip(ddp_rec, single_rec) if a["event"] == "train"]
    assert len(losses) == 2
    for a, b in losses:
        assert a == pytest.approx(b, abs=1e-5)
    val = [r for r in ddp_rec if r["event"] == "val"]
    assert val and val[0]["num_samples"] == 2  # sharded validation gathered from both ranks
    single_val = [r for r in single_rec if r["event"] == "val"]
    key = "mIoU" if stage == "full" else "peak_in_target"
    assert val[0][key] == pytest.approx(single_val[0][key], abs=1e-6)


# ---------------------------------------------------------------------------------------- components
def test_optimizer_groups_and_lr_decay_in_the_trainer(ws, tmp_path):
    trainer = _trainer(ws, tmp_path, val=False, epochs=3, schedule="paper", decay_epochs=1)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["base"]["lr"] == 5e-5 and groups["fusion_mpg"]["lr"] == 1e-4
    assert all(g["weight_decay"] == 0.01 for g in groups.values())
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == n_trainable
    for _ in range(2):
        trainer.scheduler.step()
    assert groups["base"]["lr"] == pytest.approx(5e-6) and groups["fusion_mpg"]["lr"] == pytest.approx(1e-5)
    # "full" (training from scratch) also optimises the SAM2 trunk and neck.
    full = _trainer(ws, tmp_path, val=False, freeze_policy="full")
    optimised = {id(p) for g in full.optimizer.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in full.model.parameters()}
    assert n_trainable < sum(p.numel() for p in full.model.parameters())


def test_bf16_is_refused_on_cpu(ws, tmp_path):
    with pytest.raises(ValueError, match="CUDA only"):
        _trainer(ws, tmp_path, precision="bf16")


# ------------------------------------------------------------- pseudo-mask loss and teacher forcing
def test_teacher_forcing_feeds_the_grid_target_as_the_dense_prompt(ws, tmp_path):
    trainer = _trainer(ws, tmp_path, val=False, teacher_forcing=1.0)
    target = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.long)
    target[0, :5, :5] = 1
    forced = trainer._forced_prompt(target)
    assert forced.shape == (2, 1, 14, 14) and not torch.isnan(forced).any()  # p = 1: every sample
    assert forced[0, 0, 0, :2].tolist() == [1.0, 1.0] and forced[0].sum() == 4 and forced[1].sum() == 0
    assert _trainer(ws, tmp_path / "off", val=False)._forced_prompt(target) is None
    half = _trainer(ws, tmp_path / "half", val=False, teacher_forcing=0.5)
    draws = []
    for b in range(40):
        half.epoch_batches = b
        f = half._forced_prompt(target)
        draws += [False, False] if f is None else [not bool(torch.isnan(f[i]).any()) for i in range(2)]
    assert 20 <= sum(draws) <= 60  # about half of 80 samples, drawn per sample


def test_pseudo_mask_training_logs_the_separation(ws, tmp_path):
    trainer = _trainer(ws, tmp_path, epochs=1, pseudo_mask_loss=1.0, teacher_forcing=0.5)
    trainer.train()
    records = _records(tmp_path / "metrics.jsonl")
    train = [r for r in records if r["event"] == "train"]
    val = [r for r in records if r["event"] == "val"]
    assert train and val
    for r in train:
        assert {"pseudo_mask", "pm_target", "pm_background", "train_iou", "teacher_forcing"} <= set(r)
        assert 0 <= r["pm_background"] <= 1 and 0 <= r["train_iou"] <= 1 and r["pseudo_mask"] > 0
    assert 0 <= val[0]["pm_target"] <= 1 and 0 <= val[0]["pm_background"] <= 1
