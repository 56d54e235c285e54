"""``rs2sam2 evaluate``: its arguments and the command. The evaluation is rs2sam2.evaluate, imported when the
command runs (``--help`` imports no torch)."""

from __future__ import annotations

import argparse
import sys

from .common import add_threads_argument, positive_int

# Copies of rs2sam2.evaluate.RESOLUTIONS and the keys of PAPER_RESULTS, so that --help does not import
# torch (tests/cli/test_cli.py checks they agree).
RESOLUTIONS = ("official", "native")
PAPER_DATASETS = ("refsegrs", "rrsisd")

DESCRIPTION = """\
Evaluate a referring-segmentation model on one split of a dataset, one sentence per sample, and print the
paper's table: Pr@0.5 to Pr@0.9 (the share of samples whose IoU reaches 0.5 ... 0.9), oIoU (total
intersection over total union) and mIoU (mean IoU per sample), in percent.

--resolution official compares masks as the official test script does: the model's logits upsampled to its
input size (1024 x 1024 for the official model), the ground truth resized to that size. --resolution native
resizes the logits to each image's own size instead.

--shuffle-text is a control that does not read the text: every sample is segmented with the sentence of
another sample (a seeded shuffle that leaves no sample its own sentence). A model that reads the text should
score far lower with it.
"""


def add_cli_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on a dataset split (mIoU, oIoU, Pr@0.5..0.9)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", default=None, help="model folder or Hugging Face Hub repo id (default: the bundled model)"
    )
    p.add_argument("--subfolder", default=None, help="folder inside --model (official: rrsisd, refseg)")
    p.add_argument(
        "--data", required=True, help="manifest.jsonl, a folder holding one, or an RRSIS-D/RefSegRS root"
    )
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--json", dest="json_path", default=None, help="write the metrics here (JSON)")
    p.add_argument("--csv", dest="csv_path", default=None, help="write one row per sample here (CSV)")
    p.add_argument("--resolution", default="official", choices=RESOLUTIONS, help="default: official")
    p.add_argument("--shuffle-text", action="store_true", help="a control: every sample gets another's text")
    p.add_argument("--seed", type=int, default=2401, help="seed of --shuffle-text (default: 2401)")
    p.add_argument("--compare-paper", default=None, choices=PAPER_DATASETS, help="also print the paper's row")
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N samples")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the JSON / CSV files asked for."""
    from ..data.readers import open_dataset
    from ..evaluate import evaluate, format_table, load_model_and_processor, paper_row, write_csv, write_json

    dataset = open_dataset(args.data, args.split)
    if len(dataset) == 0:
        print(f"error: no {args.split!r} samples in {args.data}", file=sys.stderr)
        return 2
    model, processor = load_model_and_processor(args.model, subfolder=args.subfolder, device=args.device)
    indices = None if args.limit is None else list(range(min(args.limit, len(dataset))))
    metrics, rows = evaluate(
        model,
        processor,
        dataset,
        resolution=args.resolution,
        shuffle_text=args.shuffle_text,
        seed=args.seed,
        batch_size=args.batch_size,
        indices=indices,
        progress=not args.no_progress,
    )
    size = model.config.image_size
    where = f"{size}×{size}" if args.resolution == "official" else "native size"
    label = "ours (shuffled text)" if args.shuffle_text else "ours"
    print(f"{args.split}: {metrics['num_samples']} samples, masks compared at {where}")
    table = [(label, metrics)]
    if args.compare_paper:
        table.append(paper_row(args.compare_paper, args.split))
    print(format_table(table))
    if args.json_path:
        print(f"metrics: {write_json(args.json_path, metrics)}")
    if args.csv_path:
        print(f"per-sample rows: {write_csv(args.csv_path, rows)}")
    return 0
