"""The ``rs2sam2`` command. Each subcommand lives next to the code it runs; this file only wires them.

A module that adds subcommands defines ``add_cli_parser(subparsers)``, which registers its parser(s) and
sets ``func`` (called with the parsed namespace, returning an exit code) via ``set_defaults``.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys

# Modules that contribute subcommands, in the order they appear in --help.
SUBCOMMAND_MODULES = (
    "rs2sam2.predict_cli",
    "rs2sam2.data.synthetic",
    "rs2sam2.data.validate",
    "rs2sam2.train",
    "rs2sam2.evaluate",
    "rs2sam2.convert",
    "rs2sam2.hub",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, pickle.UnpicklingError) as e:  # bad input: a message, not a traceback
        print(f"rs2sam2 {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
