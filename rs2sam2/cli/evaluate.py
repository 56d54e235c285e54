"""``rs2sam2 evaluate``: its arguments. The evaluation is rs2sam2.evaluate, imported when the command runs."""

from __future__ import annotations

import argparse

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
    from ..evaluate import _cli_evaluate

    return _cli_evaluate(args)
