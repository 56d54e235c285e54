"""The ``rs2sam2`` command itself: help without heavy imports, plain-prose help, arguments that mirror the
library's choices and defaults, and the thread setting (rs2sam2.cli, rs2sam2.threads)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rs2sam2 import threads
from rs2sam2.cli import build_parser, main
from rs2sam2.cli import convert as cli_convert
from rs2sam2.cli import data as cli_data
from rs2sam2.cli import evaluate as cli_evaluate
from rs2sam2.cli import train as cli_train

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "sam2", "transformers", "gradio", "rasterio")
COMMANDS = ([], ["predict"], ["synth"], ["data"], ["data", "validate"], ["train"], ["evaluate"],
            ["convert"], ["push"])  # fmt: skip


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_imports_none_of_the_heavy_modules():
    """``rs2sam2 [COMMAND] --help`` in a fresh interpreter: the help is printed and no heavy module loaded."""
    script = (
        "import contextlib, io, json, sys\n"
        "from rs2sam2.cli import main\n"
        "loaded = {}\n"
        f"for argv in {COMMANDS!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main([*argv, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        f"    loaded[' '.join(argv)] = [[m for m in {HEAVY!r} if m in sys.modules], out.getvalue()]\n"
        "print(json.dumps(loaded))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    loaded = json.loads(done.stdout)
    assert set(loaded) == {" ".join(c) for c in COMMANDS}
    for command, (modules, text) in loaded.items():
        assert modules == [], f"rs2sam2 {command} --help imported {modules}"
        assert text.startswith("usage: rs2sam2"), command
    assert "--threads" in loaded["train"][1] and "--model" in loaded["evaluate"][1]


def test_python_m_rs2sam2_cli_help_imports_no_torch():
    script = "import runpy, sys; sys.argv = ['rs2sam2', '--help']\n"
    script += "try:\n    runpy.run_module('rs2sam2.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
    script += "print([m for m in ('torch', 'sam2', 'transformers') if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert "predict" in done.stdout and "evaluate" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_help_texts_are_plain_prose():
    parser = build_parser()
    texts = {"": parser.format_help()}
    for name, sub in _subparsers(parser).items():
        texts[name] = sub.format_help()
        for inner, p in _subparsers(sub).items() if name == "data" else ():
            texts[f"data {inner}"] = p.format_help()
    assert {"predict", "synth", "data", "data validate", "train", "evaluate", "convert", "push"} <= set(texts)
    for name, text in texts.items():
        for markup in (":func:", ":class:", ":meth:", ":mod:", ":data:", "``", "§", "spec "):
            assert markup not in text, f"rs2sam2 {name} --help shows {markup!r}"


def test_copied_choices_agree_with_the_library():
    from rs2sam2.data.manifest import SPLITS
    from rs2sam2.evaluate import PAPER_RESULTS, RESOLUTIONS
    from rs2sam2.modeling.rs2sam2 import FREEZE_POLICIES
    from rs2sam2.training.config import PRECISIONS, SCHEDULES
    from rs2sam2.training.losses import LOSS_VARIANTS
    from rs2sam2.weights.state_dict import DTYPES as _DTYPES

    assert set(cli_train.SCHEDULES) == set(SCHEDULES)
    assert set(cli_train.PRECISIONS) == set(PRECISIONS)
    assert set(cli_train.LOSS_VARIANTS) == set(LOSS_VARIANTS)
    assert tuple(cli_train.FREEZE_POLICIES) == tuple(FREEZE_POLICIES)
    assert tuple(cli_train.RESOLUTIONS) == tuple(cli_evaluate.RESOLUTIONS) == tuple(RESOLUTIONS)
    assert set(cli_evaluate.PAPER_DATASETS) == set(PAPER_RESULTS)
    assert set(cli_convert.DTYPES) == set(_DTYPES)
    assert tuple(cli_data.SPLITS) == tuple(SPLITS)


def test_train_options_left_out_keep_the_train_config_defaults(tmp_path):
    from rs2sam2.cli.train import train_config_from_args
    from rs2sam2.training.config import TrainConfig

    out = str(tmp_path / "run")
    args = build_parser().parse_args(["train", "--data", str(tmp_path), "--out", out])
    assert train_config_from_args(args) == TrainConfig(output_dir=out)
    args = build_parser().parse_args(
        ["train", "--data", str(tmp_path), "--out", out, "--epochs", "3", "--lr", "0.001", "--seed", "7",
         "--schedule", "paper", "--workers", "2"]
    )  # fmt: skip
    got = train_config_from_args(args)
    assert (got.epochs, got.base_lr, got.seed, got.schedule, got.num_workers) == (3, 0.001, 7, "paper", 2)
    assert got.batch_size == TrainConfig().batch_size


def test_evaluate_model_is_optional():
    args = build_parser().parse_args(["evaluate", "--data", "somewhere"])
    assert args.model is None  # the bundled model (rs2sam2 evaluate without --model: tests/test_evaluate.py)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--data", "x", "--batch-size", "0"])


# ------------------------------------------------------------------------------------------ threads
@pytest.fixture()
def restore_threads(monkeypatch):
    n = torch.get_num_threads()
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    yield
    torch.set_num_threads(n)


def test_resolve_num_threads_order_and_errors(monkeypatch, restore_threads):
    assert threads.resolve_num_threads() is threads.DEFAULT_NUM_THREADS
    monkeypatch.setenv(threads.ENV_VAR, " 3 ")
    assert threads.resolve_num_threads() == 3
    assert threads.resolve_num_threads(1) == 1  # the argument wins over the environment
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv(threads.ENV_VAR, bad)
        with pytest.raises(ValueError, match=threads.ENV_VAR):
            threads.resolve_num_threads()
    for bad in (0, -1, 1.0, True, "2"):
        with pytest.raises(ValueError, match="num_threads"):
            threads.resolve_num_threads(bad)


def test_apply_num_threads_sets_torch(monkeypatch, restore_threads):
    torch.set_num_threads(2)
    assert threads.apply_num_threads() is None and torch.get_num_threads() == 2  # nothing said: unchanged
    assert threads.apply_num_threads(1) == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert threads.apply_num_threads() == 2 and torch.get_num_threads() == 2


def test_predictor_num_threads(monkeypatch, restore_threads):
    from rs2sam2 import RS2SAM2, RS2SAM2Config, RS2SAM2Predictor

    torch.manual_seed(0)
    model = RS2SAM2(RS2SAM2Config.from_preset("tiny"))
    torch.set_num_threads(2)
    p = RS2SAM2Predictor(model, processor=None, num_threads=1)
    assert p.num_threads == 1 == torch.get_num_threads()
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert RS2SAM2Predictor(model, processor=None).num_threads == 2 == torch.get_num_threads()
    with pytest.raises(ValueError, match="num_threads"):
        RS2SAM2Predictor(model, processor=None, num_threads=0)


def test_cli_threads_option_reaches_torch_and_the_environment(tmp_path, monkeypatch, restore_threads):
    """``--threads 1`` is in effect (in torch, and in the environment for the processes a command starts)
    when the command's work begins; the work here is a stand-in that records what it sees."""
    seen = {}

    def record(args: argparse.Namespace) -> int:
        seen["threads"], seen["env"] = torch.get_num_threads(), os.environ.get(threads.ENV_VAR)
        return 0

    def parser_with_record() -> argparse.ArgumentParser:
        parser = build_parser()
        _subparsers(parser)["train"].set_defaults(func=record)
        return parser

    monkeypatch.setattr("rs2sam2.cli.build_parser", parser_with_record)
    torch.set_num_threads(2)
    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*base, "--threads", "1"]) == 0
    assert seen == {"threads": 1, "env": "1"}
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert main(base) == 0
    assert seen == {"threads": 2, "env": "2"}
    assert main([*base, "--threads", "1"]) == 0  # the option wins over the environment
    assert seen == {"threads": 1, "env": "1"}
    with pytest.raises(SystemExit):
        main([*base, "--threads", "0"])


def test_small_models_default_to_one_thread(monkeypatch, restore_threads):
    """No argument and no environment variable: one thread for a small model (the bundled one; measured 1.2×
    slower idle but 54× faster with both cores busy), torch's default for a large one."""
    from rs2sam2 import RS2SAM2, RS2SAM2Config, RS2SAM2Predictor

    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert threads.threads_for_model(4_000_000) == 1
    assert threads.threads_for_model(927_045_739) is threads.DEFAULT_NUM_THREADS
    assert threads.threads_for_model(4_000_000, num_threads=2) == 2  # an explicit choice wins
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert threads.threads_for_model(4_000_000) == 2
    monkeypatch.delenv(threads.ENV_VAR)
    torch.manual_seed(0)
    model = RS2SAM2(RS2SAM2Config.from_preset("tiny"))
    assert sum(p.numel() for p in model.parameters()) < threads.SMALL_MODEL_PARAMETERS
    torch.set_num_threads(2)
    assert RS2SAM2Predictor(model, processor=None).num_threads == 1 == torch.get_num_threads()
