"""``rs2sam2 data …``: the dataset tools' arguments, output and exit codes (checks: rs2sam2.data.validate)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPLITS = ("train", "val", "test")  # rs2sam2.data.manifest.SPLITS; not imported, so the parser builds fast
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def data_subcommands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-subparsers of the ``data`` command group, creating the group if it does not exist yet.

    Every module contributing a ``data <something>`` command should go through this, so that they share one
    ``data`` parser (argparse refuses a second parser of the same name).
    """
    data_parser = subparsers.choices.get("data")
    if data_parser is None:
        data_parser = subparsers.add_parser("data", help="dataset tools (validate, ...)")
        data_parser.set_defaults(func=lambda _args: (data_parser.print_help(), EXIT_USAGE)[1])
    for action in data_parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return data_parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")


def add_cli_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data validate ROOT [--split S] [--json OUT]``."""
    sub = data_subcommands(subparsers)
    p = sub.add_parser(
        "validate",
        help="check a dataset for missing/unreadable files, size mismatches and empty masks",
        description="Validate a manifest (.jsonl or folder with manifest.jsonl), RRSIS-D root or RefSegRS "
        "root. Exit code 0 when clean, 1 when problems were found, 2 on usage errors.",
    )
    p.add_argument("root", help="dataset root or manifest file")
    p.add_argument("--split", choices=SPLITS, default=None, help="only this split (default: all)")
    p.add_argument(
        "--json", metavar="OUT", default=None, help="also write the full report as JSON ('-': stdout)"
    )
    p.set_defaults(func=_run_validate)


def _run_validate(args: argparse.Namespace) -> int:
    from ..data.validate import validate_dataset

    try:
        report = validate_dataset(args.root, args.split)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(report.summary())
    if args.json:
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
        if args.json == "-":
            print(text)
        else:
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n", encoding="utf-8")
    return EXIT_OK if report.ok else EXIT_PROBLEMS
