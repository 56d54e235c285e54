"""``rs2sam2 convert``: its arguments (the conversion is rs2sam2.weights.hub.convert_checkpoint)."""

from __future__ import annotations

import argparse

DTYPES = ("bfloat16", "float16", "float32")  # the keys of rs2sam2.weights.state_dict.DTYPES, without torch


def add_cli_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``rs2sam2 convert SRC OUT``."""
    p = subparsers.add_parser(
        "convert",
        help="convert a released RS2-SAM2 checkpoint (folder or Hub repo) into an rs2sam2 package",
        description="Convert the official RS2-SAM2 weights (config.json with model_type 'evf', "
        "pytorch_model.bin or model.safetensors, tokenizer files) into an rs2sam2 model folder.",
    )
    p.add_argument("src", help="official model folder or Hub repo id (e.g. ReeF2025/RS2-SAM2)")
    p.add_argument("out", help="output folder")
    p.add_argument("--subfolder", default=None, help="folder inside SRC (e.g. rrsisd or refseg)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the saved weights")
    p.add_argument(
        "--compact",
        action="store_true",
        help="leave out the frozen Hiera trunk + neck; they are fetched from --base-repo when loading",
    )
    p.add_argument("--base-repo", default="facebook/sam2-hiera-large", help="base SAM2 repo for --compact")
    p.add_argument("--base-filename", default="sam2_hiera_large.pt", help="file in --base-repo")
    p.add_argument(
        "--preset",
        default=None,
        help="architecture preset to build instead of the official one (checkpoints of another size)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    from ..config import RS2SAM2Config
    from ..weights.hub import convert_checkpoint
    from ..weights.pretrained import RS2SAM2
    from ..weights.state_dict import DTYPES as TORCH_DTYPES
    from ..weights.state_dict import CheckpointError

    try:
        out = convert_checkpoint(
            RS2SAM2,
            args.src,
            args.out,
            subfolder=args.subfolder,
            dtype=TORCH_DTYPES[args.dtype],
            compact_base=(args.base_repo, args.base_filename) if args.compact else None,
            config=RS2SAM2Config.from_preset(args.preset) if args.preset else None,
        )
    except (CheckpointError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"rs2sam2 convert: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0
