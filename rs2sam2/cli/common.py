"""Argument types and options shared by several subcommands (standard library only)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_threads_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--threads N``: torch's intra-op threads (see rs2sam2.threads)."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="threads torch uses inside one operation (default: the RS2SAM2_NUM_THREADS environment "
        "variable, else torch's default of one per core); 1 is often faster on a machine busy with other "
        "work",
    )
