"""Trainer: the loss goes down, exact resume, atomic checkpoints, DDP = single process, schedules, data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.cli import build_parser, main
from rs2sam2.cli.train import train_config_from_args
from rs2sam2.data.dataset import OcclusionAugmentation
from rs2sam2.data.readers import open_dataset
from rs2sam2.data.synthetic import generate_dataset
from rs2sam2.processing import RS2SAM2Processor
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.training.checkpoint import load_checkpoint, save_model_folder, seed_everything
from rs2sam2.training.config import EpochDecay, TrainConfig, loss_from_config, teacher_forcing_probability
from rs2sam2.training.data import Collate, TrainingSet
from rs2sam2.training.runtime import set_gradient_checkpointing
from rs2sam2.training.trainer import Trainer

# Small enough for CPU tests: 64² SAM2 input and a text table sized to the 123-token test tokenizer.
IMAGE_SIZE = 64
VOCAB_SIZE = 128


pytestmark = pytest.mark.usefixtures("one_thread")


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
    [{}, {"pseudo_mask_loss": 1.0, "teacher_forcing": 0.6, "teacher_forcing_steps": 6}],
    ids=["official", "pseudo_mask_teacher_forcing"],
)
def test_resume_after_a_kill_is_bitwise_identical(ws, tmp_path, monkeypatch, extra):
    """Checkpoints at steps 3, 4 (epoch end), 6 and 8; the run dies right after writing step 6 (mid-epoch
    2, after a validation and a best-model save, inside a 4-step logging window) and a fresh process (other
    init seed) resumes it. Also with the pseudo-mask loss and annealed teacher forcing (random draws)."""
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


def test_torchrun_two_processes_match_single_process(ws, tmp_path):
    """2 processes × batch 1 (gloo, DDP gradient averaging) vs 1 process × batch 1 × 2 accumulation steps:
    the same global batches, so the same updates up to float summation order (tolerance 1e-5)."""
    common = [
        "train", "--data", str(ws.data), "--config", str(ws.root / "config.json"),
        "--tokenizer", str(ws.tokenizer), "--epochs", "1", "--log-every", "1", "--no-progress",
        "--device", "cpu",
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
    assert moved > 100  # the comparison is not vacuous: training changed the weights
    ddp_rec = _records(tmp_path / "ddp" / "metrics.jsonl")
    single_rec = _records(tmp_path / "single" / "metrics.jsonl")
    losses = [(a["loss"], b["loss"]) for a, b in zip(ddp_rec, single_rec) if a["event"] == "train"]
    assert len(losses) == 2
    for a, b in losses:
        assert a == pytest.approx(b, abs=1e-5)
    val = [r for r in ddp_rec if r["event"] == "val"]
    assert val and val[0]["num_samples"] == 2  # sharded validation gathered from both ranks


# ---------------------------------------------------------------------------------------- components
def test_gradient_checkpointing_keeps_outputs_and_gradients(ws):
    model, _ = _build(ws)
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[0, 10, 20, 30, 2]])
    inputs = {
        "sam_pixels": torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g),
        "union_pixels": torch.randn(1, 3, 224, 224, generator=g),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids, dtype=torch.bool),
    }
    results = []
    for enabled in (False, True):
        set_gradient_checkpointing(model, enabled)
        model.zero_grad()
        out = model(**inputs)
        (out.logits.square().mean() + out.text_weight.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.logits.detach(), grads))
    (ref_logits, ref_grads), (ckpt_logits, ckpt_grads) = results
    assert torch.equal(ref_logits, ckpt_logits)
    assert ref_grads.keys() == ckpt_grads.keys()
    for n in ref_grads:
        torch.testing.assert_close(ckpt_grads[n], ref_grads[n], rtol=1e-5, atol=1e-7, msg=n)


def test_learning_rate_schedules():
    def factors(cfg: TrainConfig) -> list[float]:
        decay = EpochDecay.from_config(cfg)
        return [decay(e) for e in range(cfg.epochs)]

    official = factors(TrainConfig(epochs=60, schedule="official"))
    assert official[:50] == [1.0] * 50 and official[50:] == [0.1] * 10
    assert factors(TrainConfig(epochs=40, schedule="official")) == [1.0] * 40  # RRSIS-D never decays
    assert factors(TrainConfig(epochs=40, schedule="paper")) == [1.0] * 30 + [0.1] * 10
    assert factors(TrainConfig(epochs=5, schedule="constant")) == [1.0] * 5


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


class _Items(list):
    """Referring items plus the ``samples`` (split, ref group) :class:`TrainingSet` reads for occlusion."""

    samples: list


def test_training_set_resizes_the_mask_with_nearest_and_occludes_deterministically(ws, tmp_path):
    img = np.full((40, 50, 3), 200, dtype=np.uint8)
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:20, 5:45] = True
    image = Image.fromarray(img)
    items = _Items({"image": image, "mask": mask, "expression": "the roof", "id": str(i)} for i in range(4))
    items.samples = [SimpleNamespace(split="train", group=str(i)) for i in range(4)]
    _, processor = _build(ws)
    occlusion = OcclusionAugmentation(fraction=0.5, min_boxes=2, max_boxes=3, box_size=8, seed=7)
    ts = TrainingSet(items, processor, occlusion=occlusion, seed=7)
    assert len(ts.occluded) == 2
    plain = next(i for i in range(4) if i not in ts.occluded)
    hidden = next(iter(ts.occluded))
    a = ts[plain]
    assert a["sam_pixels"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) and a["union_pixels"].shape == (3, 224, 224)
    assert a["target"].dtype == torch.int64 and set(a["target"].unique().tolist()) == {0, 1}
    expected = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((IMAGE_SIZE,) * 2, Image.NEAREST))
    assert torch.equal(a["target"], torch.from_numpy(expected.astype(np.int64)))
    assert torch.equal(a["sam_pixels"], ts[plain]["sam_pixels"])  # not occluded: untouched
    first = ts[hidden]["sam_pixels"]
    assert not torch.equal(first, a["sam_pixels"])  # black boxes pasted
    assert torch.equal(first, ts[hidden]["sam_pixels"])  # same epoch, same boxes
    ts.epoch = 1
    assert not torch.equal(first, ts[hidden]["sam_pixels"])  # new epoch, new boxes


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


def test_checkpoint_rng_state_holds_the_training_gpu_generator_only(monkeypatch):
    """One CUDA generator state, the training device's: asking every visible GPU (the former
    ``get_rng_state_all``) created a CUDA context on each GPU in every torchrun process."""
    from rs2sam2.training.checkpoint import capture_rng_state, restore_rng_state

    asked, restored = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("asked every GPU"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("set every GPU"))
    monkeypatch.setattr(
        torch.cuda,
        "get_rng_state",
        lambda device: asked.append(str(device)) or torch.full((4,), 7, dtype=torch.uint8),
    )
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda s, device: restored.append((int(s[0]), str(device)))
    )
    assert "cuda" not in capture_rng_state(torch.device("cpu")) and asked == []
    state = capture_rng_state(torch.device("cuda", 1))
    assert asked == ["cuda:1"] and state["cuda"].tolist() == [7] * 4
    after = torch.rand(3)
    restore_rng_state(state, torch.device("cuda", 1))
    assert restored == [(7, "cuda:1")] and torch.equal(torch.rand(3), after)  # the CPU generator too
    restore_rng_state(state, torch.device("cpu"))  # a CUDA checkpoint resumed on the CPU: no CUDA call
    assert restored == [(7, "cuda:1")]
    # the former format, one state per visible GPU: the device's own, or the last when there were fewer
    legacy = {**state, "cuda": [torch.full((4,), i, dtype=torch.uint8) for i in range(2)]}
    restore_rng_state(legacy, torch.device("cuda", 1))
    restore_rng_state(legacy, torch.device("cuda", 3))
    assert restored[1:] == [(1, "cuda:1"), (1, "cuda:3")]
