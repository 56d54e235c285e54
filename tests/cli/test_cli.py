"""The ``rs2sam2`` command itself (rs2sam2.cli): help without heavy imports, plain-prose help, arguments that
mirror the library's choices and defaults."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rs2sam2.cli import build_parser
from rs2sam2.cli import convert as cli_convert
from rs2sam2.cli import data as cli_data
from rs2sam2.cli import evaluate as cli_evaluate
from rs2sam2.cli import train as cli_train

ROOT = Path(__file__).resolve().parents[2]
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
    from rs2sam2.training.config import PRECISIONS, SCHEDULES, STAGES
    from rs2sam2.training.losses import LOSS_VARIANTS
    from rs2sam2.training.positions import POSITION_INITS
    from rs2sam2.weights.state_dict import DTYPES as _DTYPES

    assert set(cli_train.SCHEDULES) == set(SCHEDULES)
    assert set(cli_train.PRECISIONS) == set(PRECISIONS)
    assert set(cli_train.LOSS_VARIANTS) == set(LOSS_VARIANTS)
    assert tuple(cli_train.FREEZE_POLICIES) == tuple(FREEZE_POLICIES)
    assert tuple(cli_train.STAGES) == tuple(STAGES)
    assert tuple(cli_train.POSITION_INITS) == tuple(POSITION_INITS)
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
