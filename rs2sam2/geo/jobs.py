"""One image or a CSV batch of (image, expression) pairs to mask files: what ``rs2sam2 predict`` runs.

GeoTIFF / COG and other GDAL rasters go through :func:`rs2sam2.geo.predict_raster` (bands, stretch, nodata,
tiling, georeferenced outputs); plain PNG / JPEG / BMP / WebP images in ``single`` mode go straight through
:meth:`RS2SAM2Predictor.predict` (read by :func:`rs2sam2.images.load_image`, EXIF orientation applied).
The mask's format follows the output's suffix (:data:`OUT_SUFFIXES`): PNG, or TIFF (a GeoTIFF with the
source's CRS when the input has one). Polygons (GeoJSON, GeoPackage) are written next to it on request.
A failed job is reported in its :class:`JobResult`, never raised, so one bad row does not stop a batch.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .modes import TILE_BATCH_SIZE

PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
OUT_SUFFIXES = (".png", ".tif", ".tiff")  # mask formats --out can name
AUTO = "auto"  # ``--geojson`` / ``--gpkg`` without a path: next to the mask


class BatchFileError(ValueError):
    """A batch CSV that cannot be used (missing, no rows, missing columns)."""


@dataclass
class JobOptions:
    """How every job of one command runs (the ``rs2sam2 predict`` options of the same names).

    ``bands``: 1-based band numbers (:func:`rs2sam2.images.parse_bands`); ``mask_value``: ``None`` gives
    1 in a TIFF, 255 in a PNG; ``out_dir``: folder of the default mask names; ``geojson`` / ``gpkg``: a
    path, :data:`AUTO` (next to the mask) or ``None`` (not written).
    """

    mode: str = "single"
    bands: tuple[int, ...] | None = None
    tile_size: int | None = None
    overlap: int | None = None
    tile_batch: int = TILE_BATCH_SIZE
    merge: str = "mean"
    margin: float = 0.25
    threshold: float | None = None
    mask_value: int | None = None
    out_dir: Path | None = None
    geojson: str | None = None
    gpkg: str | None = None


@dataclass
class Job:
    """One (image, expression) pair; ``row`` is the CSV row number (1 = first data row)."""

    image: Path
    text: str
    out: Path | None = None
    row: int = 1


@dataclass
class JobResult:
    """What happened to one job (``error`` set when it failed)."""

    image: str
    text: str
    row: int
    ok: bool = False
    out: str | None = None
    vectors: list[str] = field(default_factory=list)
    score: float = 0.0
    foreground_pixels: int = 0
    area: float | None = None
    area_unit: str | None = None
    messages: list[str] = field(default_factory=list)
    error: str | None = None


def is_plain_image(path: Path) -> bool:
    """PNG / JPEG / …: never georeferenced, read with PIL."""
    return path.suffix.lower() in PLAIN_SUFFIXES


def read_batch(csv_path: Path) -> list[Job]:
    """Jobs from a CSV with columns image,expression[,out] (paths relative to the CSV's folder)."""
    if not csv_path.is_file():
        raise BatchFileError(f"batch file not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = {"image", "expression"} - set(columns)
        if missing:
            raise BatchFileError(f"{csv_path}: missing column(s) {sorted(missing)}; found {columns}")
        base = csv_path.parent
        jobs = []
        for i, raw in enumerate(reader, start=1):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            out = Path(row["out"]) if row.get("out") else None
            jobs.append(
                Job(
                    image=base / row["image"] if row["image"] else Path(),
                    text=row["expression"],
                    out=None if out is None else base / out,
                    row=i,
                )
            )
    if not jobs:
        raise BatchFileError(f"{csv_path}: no rows")
    return jobs


def _default_out(job: Job, out_dir: Path | None, batch: bool) -> Path:
    suffix = ".png" if is_plain_image(job.image) else ".tif"
    name = f"{job.image.stem}_{job.row:04d}_mask{suffix}" if batch else f"{job.image.stem}_mask{suffix}"
    return (out_dir or job.image.parent) / name


def _vector_paths(options: JobOptions, mask_out: Path) -> list[Path]:
    paths = []
    for value, suffix in ((options.geojson, ".geojson"), (options.gpkg, ".gpkg")):
        if value is not None:
            paths.append(mask_out.with_suffix(suffix) if value == AUTO else Path(value))
    return paths


def run_job(
    predictor: Any,
    job: Job,
    options: JobOptions,
    model_id: str,
    *,
    batch: bool,
    progress: Callable[[int, int], None] | None = None,
) -> JobResult:
    """Predict one pair, write its mask (and vectors); errors are returned, not raised."""
    from .raster import GeoWarning

    result = JobResult(image=str(job.image), text=job.text, row=job.row)
    try:
        if not job.text:
            raise ValueError("empty expression")
        if job.image == Path():
            raise ValueError("empty image path")
        if not job.image.is_file():
            raise FileNotFoundError(f"image file not found: {job.image}")
        out = job.out or _default_out(job, options.out_dir, batch)
        out.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GeoWarning)
            if is_plain_image(job.image) and options.mode == "single":
                vectors = _predict_plain(predictor, job, out, options, result)
            else:
                vectors = _predict_geo(predictor, job, out, options, result, progress)
            paths = _vector_paths(options, out)
            if paths:
                polygons = vectors(model_id)
                result.vectors += [str(polygons.write(path)) for path in paths]
        for w in caught:
            if not issubclass(w.category, GeoWarning):  # not ours to summarise: show it as Python would
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            elif str(w.message) not in result.messages:
                result.messages.append(str(w.message))
        result.out, result.ok = str(out), True
    except Exception as e:  # one bad input must not stop a batch; the message says what went wrong
        result.error = f"{type(e).__name__}: {e}"
    return result


def _predict_plain(predictor: Any, job: Job, out: Path, options: JobOptions, result: JobResult) -> Any:
    from PIL import Image

    from ..images import band_indices, load_image
    from .vectors import mask_vectors

    png = _check_out_suffix(out) == ".png"
    bands = band_indices(options.bands)
    pred = predictor.predict(load_image(job.image), job.text, threshold=options.threshold, bands=bands)
    value = options.mask_value or (255 if png else 1)
    mask = Image.fromarray(pred.mask.astype(np.uint8) * np.uint8(value))
    if png:
        mask.save(out)
    else:  # a plain TIFF: the input has no coordinate system to carry over
        mask.save(out, format="TIFF", compression="tiff_lzw")
    result.score, result.foreground_pixels = float(pred.score), int(pred.mask.sum())
    result.area, result.area_unit = float(result.foreground_pixels), "square pixel"
    return lambda model_id: mask_vectors(pred.mask, text=job.text, score=pred.score, model_id=model_id)


def _check_out_suffix(out: Path) -> str:
    """``out``'s suffix, lower case, or ``ValueError`` naming the suffixes that work."""
    suffix = out.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise ValueError(f"cannot write a mask as {out.name!r}: the file name must end in {suffix_list()}")
    return suffix


def suffix_list() -> str:
    return ", ".join(OUT_SUFFIXES[:-1]) + " or " + OUT_SUFFIXES[-1]


def _predict_geo(
    predictor: Any,
    job: Job,
    out: Path,
    options: JobOptions,
    result: JobResult,
    progress: Callable[[int, int], None] | None,
) -> Any:
    from .predict import predict_raster
    from .vectors import mask_vectors

    _check_out_suffix(out)
    value = options.mask_value or (255 if out.suffix.lower() == ".png" else 1)
    geo = predict_raster(
        predictor,
        job.image,
        job.text,
        out,
        mode=options.mode,
        bands=options.bands,
        tile_size=options.tile_size,
        overlap=options.overlap,
        merge=options.merge,
        threshold=options.threshold,
        margin=options.margin,
        mask_value=value,
        batch_size=options.tile_batch,
        progress=progress,
    )
    result.score, result.foreground_pixels = geo.score, geo.foreground_pixels
    result.area, result.area_unit = geo.area, geo.area_unit
    result.messages += geo.messages

    def vectors(model_id: str) -> Any:
        if out.suffix.lower() == ".png":  # a PNG mask has no georeferencing: use the source's
            from PIL import Image

            with Image.open(out) as im:
                mask = np.asarray(im) > 0
            return mask_vectors(
                mask,
                text=job.text,
                score=geo.score,
                model_id=model_id,
                transform=geo.transform if geo.crs else None,
                crs=geo.crs,
            )
        return mask_vectors(out, text=job.text, score=geo.score, model_id=model_id)

    return vectors
