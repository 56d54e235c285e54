"""``rs2sam2 predict``: its arguments, checks, progress bars and report. Segmenting each (image,
expression) pair and writing its files is :mod:`rs2sam2.geo.jobs` (GeoTIFF / COG and other GDAL rasters
through :mod:`rs2sam2.geo`, plain PNG / JPEG images through :meth:`RS2SAM2Predictor.predict`); the mask's
format follows ``--out``'s suffix (:data:`rs2sam2.geo.jobs.OUT_SUFFIXES`): PNG, or TIFF (a GeoTIFF with the
source's CRS when the input has one).

Exit codes: 0 every input succeeded, 1 at least one input failed (or the model could not be loaded),
2 usage error (bad arguments or CSV).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..geo.jobs import (
    AUTO,
    OUT_SUFFIXES,
    BatchFileError,
    Job,
    JobOptions,
    JobResult,
    read_batch,
    run_job,
    suffix_list,
)
from .common import add_threads_argument, positive_int

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_EPILOG = """\
modes:
  single          the whole image at the model's input size (default)
  tiles           sliding windows of --tile-size (a multiple of the model input) with --overlap pixels,
                  --tile-batch windows per model call; logits merged by --merge in overlaps; written
                  window row by window row (bounded memory)
  coarse-to-fine  the decimated scene locates the object, its window is segmented again at full resolution

mask files: the suffix of --out (or of the CSV's out column) chooses the format: .png gives a PNG, .tif or
.tiff a TIFF, which is a GeoTIFF with the input's coordinate system when the input has one. Other suffixes
are refused. Without --out the mask is <image stem>_mask.png for PNG/JPEG input and _mask.tif otherwise.

batch CSV: columns image,expression[,out]; relative paths are relative to the CSV file. Default mask
names are <out-dir>/<image stem>_<row>_mask.tif (GeoTIFF input) or .png (PNG/JPEG input).

exit codes: 0 all inputs succeeded, 1 some inputs failed, 2 usage error

examples:
  rs2sam2 predict photo.png "the largest lake" --out lake.tif
  rs2sam2 predict scene.tif "the large lake in the north" --out lake.tif --geojson lake.geojson
  rs2sam2 predict big.tif "the airport runway" --mode tiles --tile-size 1024 --overlap 256 --bands 3,2,1
  rs2sam2 predict --batch pairs.csv --out-dir masks/ --geojson
"""


class UsageError(ValueError):
    """A bad argument: reported with exit code 2."""


def parse_bands(text: str) -> tuple[int, ...]:
    """``--bands``: ``"3,2,1"`` → ``(3, 2, 1)``, 1 or 3 band numbers counted from 1 as in GDAL
    (:func:`rs2sam2.images.parse_bands`, the one band parser of the package)."""
    from ..images import BandError
    from ..images import parse_bands as parse_band_text  # PIL is imported only when --bands is given

    try:
        bands = parse_band_text(text)
    except BandError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if bands is None:
        raise argparse.ArgumentTypeError("expected 1 or 3 band numbers counted from 1, like 3,2,1")
    return bands


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def add_cli_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``predict`` on the ``rs2sam2`` command."""
    from ..geo import MERGES, MODES, TILE_BATCH_SIZE

    p = subparsers.add_parser(
        "predict",
        help="segment what a sentence refers to in an image (GeoTIFF, PNG, JPEG) or a CSV batch",
        description="Segment what a sentence refers to in one image, or in each row of a CSV batch.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "image", nargs="?", metavar="IMAGE", help="input image: GeoTIFF/COG (any GDAL raster), PNG or JPEG"
    )
    p.add_argument(
        "text", nargs="?", metavar="TEXT", help='the referring expression, e.g. "the red-roofed building"'
    )
    p.add_argument("--batch", metavar="CSV", type=Path, help="CSV with columns image,expression[,out]")
    p.add_argument("--model", help="model folder or Hub repo id (default: the bundled tiny model)")
    p.add_argument("--subfolder", help="subfolder of --model holding the weights")
    p.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: the model's)")
    p.add_argument(
        "--out",
        type=Path,
        help="mask file; its suffix sets the format: .png, or .tif / .tiff (GeoTIFF when the input has a "
        "coordinate system). Default: <image>_mask.png for PNG/JPEG input, <image>_mask.tif otherwise",
    )
    p.add_argument("--out-dir", type=Path, help="batch mode: folder for masks without an out column")
    p.add_argument(
        "--geojson",
        nargs="?",
        const=AUTO,
        metavar="PATH",
        help="also write polygons as GeoJSON (source CRS); without PATH next to the mask",
    )
    p.add_argument(
        "--gpkg",
        nargs="?",
        const=AUTO,
        metavar="PATH",
        help="also write polygons as GeoPackage (needs pyogrio)",
    )
    p.add_argument("--mode", choices=MODES, default="single", help="how to cover the image (default: single)")
    p.add_argument(
        "--bands",
        type=parse_bands,
        help="bands to show as R,G,B, counted from 1 as in GDAL, e.g. 3,2,1, or one band as grey, e.g. 4 "
        "(default: 1,2,3)",
    )
    p.add_argument(
        "--tile-size", type=positive_int, help="tiles mode: window side, a multiple of the model input"
    )
    p.add_argument(
        "--overlap", type=_non_negative_int, help="tiles mode: overlap in pixels (default: a quarter tile)"
    )
    p.add_argument(
        "--tile-batch",
        type=positive_int,
        default=TILE_BATCH_SIZE,
        metavar="N",
        help=f"tiles mode: windows per model call (default: {TILE_BATCH_SIZE}; 1 uses the least memory)",
    )
    p.add_argument("--merge", choices=MERGES, default="mean", help="tiles mode: logits in overlaps")
    p.add_argument(
        "--margin", type=float, default=0.25, help="coarse-to-fine: window margin (object fraction)"
    )
    p.add_argument("--threshold", type=float, help="logit threshold (default: the model's, 0.5)")
    add_threads_argument(p)
    p.add_argument(
        "--mask-value", type=int, choices=(1, 255), help="foreground value (default: 1 in .tif, 255 in .png)"
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        help="pixel budget of an image (single and coarse-to-fine: the scene, tiles: one window; default: "
        "$RS2SAM2_MAX_PIXELS or 8192²)",
    )
    p.add_argument("--summary", type=Path, metavar="JSON", help="write every input's result as JSON")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (none either when not on a terminal)"
    )
    p.set_defaults(func=run)
    return p


def load_predictor(model: str | None, subfolder: str | None, device: str | None) -> Any:
    """The predictor the command uses (tests replace this function)."""
    from ..predictor import RS2SAM2Predictor

    return RS2SAM2Predictor.from_pretrained(model, subfolder=subfolder, device=device)


def _options(args: argparse.Namespace) -> JobOptions:
    """The options every job runs with, from the parsed arguments of the same names."""
    return JobOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(JobOptions)})


def _check_args(args: argparse.Namespace) -> list[Job]:
    """The jobs to run, or :class:`UsageError`."""
    if args.batch is not None:
        if args.image or args.text:
            raise UsageError("give either IMAGE TEXT or --batch CSV, not both")
        if args.out is not None:
            raise UsageError("--out names one mask; in batch mode use an out column or --out-dir")
        if any(v not in (None, AUTO) for v in (args.geojson, args.gpkg)):
            raise UsageError("in batch mode --geojson/--gpkg take no path (files go next to each mask)")
        try:
            return read_batch(args.batch)
        except BatchFileError as e:
            raise UsageError(str(e)) from None
    if not args.image or args.text is None:
        raise UsageError("expected IMAGE and TEXT (or --batch CSV)")
    if not args.text.strip():
        raise UsageError("TEXT is empty")
    if args.out is not None and args.out.suffix.lower() not in OUT_SUFFIXES:
        raise UsageError(f"--out must end in {suffix_list()} (the mask's format), got {args.out.name!r}")
    return [Job(Path(args.image), args.text.strip(), args.out)]


def _check_tiling(args: argparse.Namespace, input_size: int) -> None:
    if args.tile_size is not None and args.tile_size % input_size:
        raise UsageError(f"--tile-size must be a multiple of the model input size {input_size}")
    tile = args.tile_size or input_size
    if args.overlap is not None and args.overlap >= tile:
        raise UsageError(f"--overlap must be smaller than the tile size {tile}")


def plural_unit(unit: str, value: float) -> str:
    """``"square metre"`` → ``"square metres"`` (unless ``value`` is 1); feet for foot."""
    if value == 1:
        return unit
    return unit[: -len("foot")] + "feet" if unit.endswith("foot") else unit + "s"


def _report(res: JobResult) -> str:
    if not res.ok:
        return f"FAILED {res.image} {res.text!r}: {res.error}"
    pixels = f"{res.foreground_pixels} foreground pixel{'' if res.foreground_pixels == 1 else 's'}"
    area = ""
    if res.area is not None and res.area_unit not in (None, "square pixel"):  # pixels said it already
        area = f", an area of {res.area:.6g} {plural_unit(res.area_unit, res.area)}"
    extra = "".join(f" + {v}" for v in res.vectors)
    stats = f"score {res.score:.3f}, {pixels}{area}"
    return f"{res.image} {res.text!r} -> {res.out}{extra} ({stats})"


def run(args: argparse.Namespace) -> int:
    """Entry point of ``rs2sam2 predict``; returns the exit code."""
    from ..pixel_budget import ENV_VAR

    if getattr(args, "max_pixels", None) is None:
        return _run(args)
    saved = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(args.max_pixels)  # every reader of this process sees the budget
    try:
        return _run(args)
    finally:
        if saved is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = saved


def _run(args: argparse.Namespace) -> int:
    try:
        jobs = _check_args(args)
    except UsageError as e:
        print(f"rs2sam2 predict: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        predictor = load_predictor(args.model, args.subfolder, args.device)
    except Exception as e:  # the message of a failed load (missing folder, bad weights) is what matters
        print(f"rs2sam2 predict: cannot load the model: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    try:
        _check_tiling(args, int(predictor.model.config.image_size))
    except UsageError as e:
        print(f"rs2sam2 predict: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from ..predictor import DEFAULT_MODEL

    model_id = str(args.model or DEFAULT_MODEL.name) + (f"/{args.subfolder}" if args.subfolder else "")
    start = time.perf_counter()
    if args.batch is not None:
        results = _run_batch(predictor, jobs, args, model_id)
    else:
        results = [_run_single(predictor, jobs[0], args, model_id)]
    elapsed = time.perf_counter() - start
    failed = [r for r in results if not r.ok]
    if args.batch is not None:
        print(
            f"summary: {len(results)} pairs, {len(results) - len(failed)} succeeded, {len(failed)} failed, "
            f"{elapsed:.1f} s"
        )
        for r in failed:
            print(f"  row {r.row}: {r.image}: {r.error}")
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        summary = {"results": [asdict(r) for r in results], "seconds": elapsed}
        args.summary.write_text(json.dumps(summary, indent=2))
    return EXIT_FAILED if failed else EXIT_OK


def _run_single(predictor: Any, job: Job, args: argparse.Namespace, model_id: str) -> JobResult:
    """One pair, with a progress bar over windows in tiles / coarse-to-fine mode."""
    from tqdm import tqdm

    quiet = args.no_progress or args.mode == "single"
    with tqdm(desc="windows", unit="win", disable=True if quiet else None, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        res = run_job(predictor, job, _options(args), model_id, batch=False, progress=progress)
    print(_report(res), file=sys.stdout if res.ok else sys.stderr)
    for message in res.messages:
        print(f"warning: {message}", file=sys.stderr)
    return res


def _run_batch(predictor: Any, jobs: list[Job], args: argparse.Namespace, model_id: str) -> list[JobResult]:
    """Every CSV row, with a progress bar over rows; a failed row is reported and the batch goes on."""
    from tqdm import tqdm

    results: list[JobResult] = []
    options = _options(args)
    bar = tqdm(jobs, desc="predict", unit="pair", disable=True if args.no_progress else None, file=sys.stderr)
    for job in bar:
        res = run_job(predictor, job, options, model_id, batch=True)
        results.append(res)
        bar.write(_report(res), file=sys.stdout)
        for message in res.messages:
            bar.write(f"warning: row {res.row}: {message}", file=sys.stderr)
        bar.set_postfix(failed=sum(not r.ok for r in results))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rs2sam2.cli.predict …`` (same as ``rs2sam2 predict …``)."""
    from . import main as cli_main

    return cli_main(["predict", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
