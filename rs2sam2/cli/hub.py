"""``rs2sam2 push``: its arguments (the upload is rs2sam2.weights.hub.push_folder)."""

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
    import sys

    from huggingface_hub.errors import HfHubHTTPError

    from ..weights.hub import push_folder

    try:
        url = push_folder(args.folder, args.repo_id, private=args.private or None, token=args.token)
    except (FileNotFoundError, ValueError, HfHubHTTPError) as e:
        print(f"rs2sam2 push: error: {e}", file=sys.stderr)
        return 1
    print(url)
    return 0
