"""``rs2sam2 synth``: its arguments, checks, progress and summary (the generator: rs2sam2.data.synthetic)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_cli_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``synth`` subcommand."""
    p = subparsers.add_parser(
        "synth",
        help="generate the synthetic referring remote sensing benchmark",
        description="Generate aerial-like scenes with referring expressions and exact masks "
        "(manifest.jsonl + PNG masks, and the RRSIS-D layout under rrsisd_layout/).",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument(
        "--num-images", type=int, default=1000, metavar="N", help="number of images (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument(
        "--expressions-per-image", type=int, default=4, metavar="K", help="expressions per image (default 4)"
    )
    p.add_argument(
        "--min-target-area",
        type=float,
        default=80.0,
        metavar="PX",
        help="smallest referred object in pixels at 256 x 256 pixels, scaled with --size (default 80)",
    )
    p.add_argument("--no-rrsisd", action="store_true", help="do not write the RRSIS-D layout")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..data.synthetic import format_stats, generate_dataset

    checks = (
        (args.num_images < 1, "--num-images must be >= 1"),
        (args.size < 64, "--size must be >= 64"),
        (args.expressions_per_image < 1, "--expressions-per-image must be >= 1"),
        (args.seed < 0, "--seed must be >= 0"),
    )
    for failed, message in checks:
        if failed:
            print(f"error: {message}", file=sys.stderr)
            return 2
    start = time.perf_counter()
    step = max(1, args.num_images // 10)

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done % step == 0 or done == total):
            print(f"  {done}/{total} images ({time.perf_counter() - start:.1f} s)", file=sys.stderr)

    stats = generate_dataset(
        args.out,
        args.num_images,
        args.seed,
        size=args.size,
        expressions_per_image=args.expressions_per_image,
        write_rrsisd=not args.no_rrsisd,
        min_target_area=args.min_target_area,
        progress=progress,
    )
    print(format_stats(stats))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0
