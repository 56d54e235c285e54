"""The thread setting (rs2sam2.threads): argument, environment and default, applied to torch by the
predictor and the ``--threads`` option of the command."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from rs2sam2 import threads
from rs2sam2.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


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
