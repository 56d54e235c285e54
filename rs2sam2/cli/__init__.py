"""The ``rs2sam2`` command. This package holds the arguments of every subcommand; the work is elsewhere.

Each module listed in :data:`SUBCOMMAND_MODULES` defines ``add_cli_parser(subparsers)``, which registers its
parser(s) and sets ``func`` (called with the parsed namespace, returning an exit code) via ``set_defaults``.
These modules import only the standard library (and numpy at most): torch, sam2, transformers and rasterio
are imported by ``func`` when a command runs, so ``rs2sam2 --help`` and ``rs2sam2 COMMAND --help`` answer
at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys

# Modules that contribute subcommands, in the order they appear in --help.
SUBCOMMAND_MODULES = (
    "rs2sam2.cli.predict",
    "rs2sam2.cli.synth",
    "rs2sam2.cli.data",
    "rs2sam2.cli.train",
    "rs2sam2.cli.evaluate",
    "rs2sam2.cli.convert",
    "rs2sam2.cli.hub",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rs2sam2", description="Referring remote sensing image segmentation with RS2-SAM2."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that subcommand is not part of this installation
                continue
            raise
        module.add_cli_parser(sub)
    return parser


def _apply_threads(args: argparse.Namespace) -> None:
    """``--threads N`` is ``RS2SAM2_NUM_THREADS=N`` for this command (and the processes it starts)."""
    from ..threads import ENV_VAR, apply_num_threads

    if getattr(args, "threads", None) is not None:
        os.environ[ENV_VAR] = str(args.threads)
    apply_num_threads()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if hasattr(args, "threads"):
            _apply_threads(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, pickle.UnpicklingError) as e:  # bad input: a message, not a traceback
        print(f"rs2sam2 {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
