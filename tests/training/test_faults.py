"""Training under faults (``docs/robustness.md``): damaged checkpoints and datasets are refused or skipped
with a clear message, a SIGKILL during a checkpoint write leaves a loadable checkpoint, and a killed
``rs2sam2 train`` resumes exactly."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rs2sam2.cli import main as cli_main
from rs2sam2.data.synthetic import generate_dataset
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.training.checkpoint import atomic_torch_save, load_checkpoint

from ..conftest import (
    _CodeInPickle,
    make_rrsisd,
    tiny_config_64,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------- damaged checkpoints
def test_bad_training_checkpoints_are_refused_with_a_clear_message(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"format": 1, "model": {"w": torch.zeros(3)}}, good)
    data = good.read_bytes()
    cases = {
        "empty.pt": (b"", "empty, truncated or corrupt"),
        "truncated.pt": (data[: len(data) // 2], "empty, truncated or corrupt"),
        "text.pt": (b"hello", "empty, truncated or corrupt"),
        "code.pt": (
            pickle.dumps({"format": 1, "x": _CodeInPickle(tmp_path / "pwned")}),
            "refusing to unpickle",
        ),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message):
            load_checkpoint(tmp_path / name)
    torch.save({"step": 3}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an rs2sam2 training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    assert not (tmp_path / "pwned").exists()
    assert load_checkpoint(good)["format"] == 1


@pytest.fixture(scope="module")
def train_ws(tmp_path_factory):
    """Tokenizer, a 4-image synthetic dataset (4 train samples) and a 64² tiny config, as in
    training/test_trainer.py."""
    root = tmp_path_factory.mktemp("train_ws")
    make_test_tokenizer(root / "tokenizer", vocab_size=120)
    generate_dataset(
        root / "data", 4, seed=0, size=64, splits=(0.5, 0.25, 0.25), expressions_per_image=2,
        write_rrsisd=False,
    )  # fmt: skip
    tiny_config_64(vocab_size=128).to_json(root / "config.json")
    return root


def train_args(ws: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--config", str(ws / "config.json"),
            "--tokenizer", str(ws / "tokenizer"), "--val-split", "none", "--log-every", "1",
            "--no-progress", *extra]  # fmt: skip


def test_training_stops_on_a_broken_sample_or_skips_it_on_request(train_ws, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(train_ws / "data", data)
    records = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    victim = next(r for r in records if r["split"] == "train")
    (data / victim["image"]).unlink()
    assert cli_main(train_args(train_ws, data, tmp_path / "a", "--max-steps", "4")) == 1
    err = capsys.readouterr().err
    assert re.search(
        rf"SampleError: sample '[^']+': cannot read image \S*{re.escape(victim['image'])}", err
    ), err
    assert cli_main(train_args(train_ws, data, tmp_path / "b", "--max-steps", "2", "--on-error", "skip")) == 0
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 2


def test_training_refuses_code_in_refs_pickle_and_corrupt_checkpoints(train_ws, tmp_path, capsys):
    root = make_rrsisd(tmp_path / "evil")
    (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps([_CodeInPickle(tmp_path / "pwned")]))
    assert cli_main(train_args(train_ws, root, tmp_path / "a")) == 1
    assert "refusing to unpickle global" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 half a zip")
    assert (
        cli_main(
            train_args(train_ws, train_ws / "data", tmp_path / "b", "--resume", str(tmp_path / "bad.pt"))
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "cannot read" in err and "training checkpoint" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ training faults
_WRITER = """
import sys, torch
from rs2sam2.training.checkpoint import atomic_torch_save
for i in range(1, 10_000):
    print("writing", i, flush=True)
    atomic_torch_save({"format": 1, "i": i, "w": torch.full((4_000_000,), float(i))}, sys.argv[1])
"""


def test_sigkill_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for delay in (0.0, 0.02):  # killed at different points of a 16 MB write
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert proc.stdout is not None
        while proc.stdout.readline().split() != ["writing", "3"]:
            pass
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        ckpt = load_checkpoint(path)
        assert ckpt["i"] >= 2 and torch.equal(ckpt["w"], torch.full((4_000_000,), float(ckpt["i"])))
    atomic_torch_save({"format": 1}, path)  # the next save removes what killed writers left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_sigkilled_training_resumes_exactly(train_ws, tmp_path):
    """A real ``kill -9`` of ``rs2sam2 train`` right after its first checkpoint; ``--resume`` must end with
    the same weights, optimiser state and metrics as an uninterrupted run (4 steps)."""
    extra = ("--epochs", "1", "--save-every-steps", "1")
    assert cli_main(train_args(train_ws, train_ws / "data", tmp_path / "ref", *extra)) == 0
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [sys.executable, "-m", "rs2sam2.cli", *train_args(train_ws, train_ws / "data", run, *extra)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # generous: on a busy machine the child's imports alone take minutes
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (run / "checkpoint.pt").exists(), "no checkpoint within 10 minutes"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 1 <= killed_at < 4
    assert cli_main(train_args(train_ws, train_ws / "data", run, *extra, "--resume")) == 0
    ref, new = load_checkpoint(tmp_path / "ref" / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    assert (new["epoch"], new["step"]) == (ref["epoch"], ref["step"]) == (1, 4)
    for k, v in ref["model"].items():
        assert torch.equal(v, new["model"][k]), k
    for i, state in ref["optimizer"]["state"].items():
        assert all(torch.equal(state[n], new["optimizer"]["state"][i][n]) for n in ("exp_avg", "exp_avg_sq"))

    def records(folder: Path) -> list[dict]:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k not in ("time", "samples_per_s")} for x in lines]

    assert records(run) == records(tmp_path / "ref")
