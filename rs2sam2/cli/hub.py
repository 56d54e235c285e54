"""``rs2sam2 push``: its arguments (the upload is rs2sam2.hub.push_folder)."""

from __future__ import annotations

import argparse


def add_cli_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``rs2sam2 push FOLDER REPO_ID``."""
    p = subparsers.add_parser(
        "push",
        help="upload a saved rs2sam2 model folder to the Hugging Face Hub",
        description="Upload a model folder written by save_pretrained or rs2sam2 convert to a Hub model repo "
        "(created if it does not exist).",
    )
    p.add_argument("folder", help="model folder (config.json, model.safetensors, tokenizer, README.md)")
    p.add_argument("repo_id", help="target repo, e.g. your-name/rs2sam2-rrsisd")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--token", default=None, help="Hub token (default: the cached login / HF_TOKEN)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..hub import _cli_push

    return _cli_push(args)
