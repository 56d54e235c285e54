"""Predicting on a raster file: :func:`predict_raster` checks its arguments and the pixel budget, opens
the raster, chooses the bands and the stretch, runs one of the modes (:mod:`rs2sam2.geo.modes`) and closes
the mask file with the expression and score as tags.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from .modes import (
    MERGES,
    MODES,
    TILE_BATCH_SIZE,
    GeoPrediction,
    MaskPredictor,
    Run,
    note,
    run_tiles,
    run_whole,
)
from .raster import (
    GDAL_CACHE_MB,
    PLAIN_DRIVERS,
    area_unit,
    check_plain_image,
    compute_stretch,
    require_rasterio,
    resolve_bands,
)
from .writing import MaskSink


def predict_raster(
    predictor: MaskPredictor,
    image: str | Path,
    text: str,
    out: str | Path,
    *,
    mode: str = "single",
    bands: Sequence[int] | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    merge: str = "mean",
    threshold: float | None = None,
    margin: float = 0.25,
    mask_value: int = 1,
    stats_side: int = 1024,
    batch_size: int = TILE_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
) -> GeoPrediction:
    """Segment what ``text`` refers to in a raster file, writing the mask to ``out`` (.tif or .png).

    ``bands`` are 1-based; ``tile_size`` must be a multiple of the model input S; ``overlap`` in pixels;
    ``merge`` ∈ ``MERGES``; ``margin``: coarse-to-fine window margin as a fraction of the object's size;
    ``batch_size``: tiles mode, windows per forward (batched with the predictor's ``predict_batch`` when
    it has one); ``progress(done, total)`` is called after each window or batch of windows.
    ``max_pixels``: the pixel budget (``None``: ``$RS2SAM2_MAX_PIXELS`` or 8192²) of the scene in
    ``single`` / ``coarse-to-fine`` mode, of one window in ``tiles`` mode (see the module docstring).
    """
    rasterio = require_rasterio()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    if mask_value not in (1, 255):
        raise ValueError(f"mask_value must be 1 or 255, got {mask_value}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    config = predictor.model.config
    s = int(config.image_size)
    thr = float(config.mask_threshold if threshold is None else threshold)
    if mode == "tiles":
        tile_size = s if tile_size is None else int(tile_size)
        if tile_size <= 0 or tile_size % s:
            raise ValueError(f"tile_size must be a positive multiple of the model input {s}, got {tile_size}")
        overlap = tile_size // 4 if overlap is None else int(overlap)
        if not 0 <= overlap < tile_size:
            raise ValueError(f"overlap must be in [0, tile_size) = [0, {tile_size}), got {overlap}")
    image, out = Path(image), Path(out)
    if not image.is_file():
        raise FileNotFoundError(f"image file not found: {image}")
    if image.stat().st_size == 0:
        raise ValueError(f"image file is empty (0 bytes): {image}")
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            opened = rasterio.open(image)
        except rasterio.errors.RasterioIOError as e:
            raise ValueError(f"cannot read {image.name} as a raster image ({e})") from None
        with opened as src:
            result = GeoPrediction(
                text=text,
                mode=mode,
                out=out,
                width=src.width,
                height=src.height,
                crs=src.crs.to_string() if src.crs else None,
                transform=tuple(src.transform)[:6],
                threshold=thr,
                area_unit=area_unit(src.crs),
            )
            _check_budget(mode, src.width, src.height, tile_size, max_pixels)
            if src.driver in PLAIN_DRIVERS:
                check_plain_image(image)
            if src.crs is None and src.driver not in PLAIN_DRIVERS:
                note(
                    result,
                    f"{image.name} has no CRS: outputs are in its pixel/transform frame, not map coordinates",
                )
            if out.suffix.lower() == ".png" and src.crs is not None:
                note(result, f"{out.name}: PNG masks carry no georeferencing; use .tif to keep the CRS")
            stretch = compute_stretch(src, resolve_bands(src.count, bands), stats_side=stats_side)
            run = Run(predictor, src, text, thr, stretch, MaskSink(out, src, mask_value), result, progress)
            try:
                if mode == "tiles":
                    run_tiles(run, tile_size, overlap, merge, batch_size)
                else:
                    run_whole(run, s, margin, refine=mode == "coarse-to-fine")
            except rasterio.errors.RasterioIOError as e:
                run.sink.abort()
                raise ValueError(
                    f"GDAL failed while reading {image.name} or writing {out.name} ({e}); is the input "
                    "damaged or truncated, or the disk full?"
                ) from e
            except BaseException:
                run.sink.abort()
                raise
            result.score, result.foreground_pixels = run.stats.score, run.stats.pixels
            result.area = run.stats.pixels * abs(src.transform.determinant)
            run.sink.close({"expression": text, "score": f"{result.score:.6f}", "mode": mode})
    return result


def _check_budget(mode: str, width: int, height: int, tile_size: int | None, max_pixels: int | None) -> None:
    """The pixel budget: of the scene (``single``, ``coarse-to-fine``) or of one window (``tiles``)."""
    from ..pixel_budget import ImageTooLargeError, check_pixels

    if mode == "tiles":
        assert tile_size is not None
        check_pixels(min(tile_size, width), min(tile_size, height), max_pixels=max_pixels)
        return
    try:
        check_pixels(width, height, max_pixels=max_pixels)
    except ImageTooLargeError as e:
        raise ImageTooLargeError(
            f"{e}. In {mode} mode the whole scene must fit; --mode tiles has no limit"
        ) from None
