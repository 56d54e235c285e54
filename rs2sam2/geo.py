"""Geospatial workflows: GeoTIFF / COG in, GeoTIFF + GeoJSON / GeoPackage out, large-scene tiling.

Reading (``rasterio``, the optional ``geo`` dependency group). Bands are chosen 1-based like GDAL
(``bands=(3, 2, 1)``); by default a 1-, 3- or 4-band raster shows bands 1–3 (or band 1 as gray). 8-bit data
is used as is (as :func:`rs2sam2.processing.to_rgb` does); 16-bit, 32-bit and float data are stretched to
8-bit per band between the 2nd and 98th percentiles of the *whole scene*, computed once from a decimated
read (at most ``stats_side`` pixels a side, served from overviews when the file has them), so every window
is stretched identically. Nodata (the nodata value, internal masks, alpha, NaN) is excluded from the
percentiles, shown as 0 and never part of the mask.

Modes (:func:`predict_raster`), all reading windows so memory does not grow with the scene:

* ``single``: the whole scene, decimated to the model input S (``model.config.image_size``) when larger.
* ``tiles``: sliding windows of ``tile_size`` (a multiple of S; default S, i.e. native resolution) with
  ``overlap`` pixels (default ``tile_size // 4``); the last row/column of windows is aligned to the scene
  edge. In overlaps the windows' logits are merged by **mean** (default; seams disappear because each
  pixel's decision averages every window that saw it) or **max** (keeps an object that only one window
  sees well). Windows are processed row by row, up to ``batch_size`` windows of a row in one model
  forward (:data:`TILE_BATCH_SIZE`; the predictor's ``predict_batch``), and finished rows are written to
  the output at once, so peak memory is ≈ ``tile_size × width × 7`` bytes plus the model and the
  activations of one batch plus GDAL's block cache (capped at ``GDAL_CACHE_MB``), whatever the scene
  height.
* ``coarse-to-fine``: the scene decimated to S finds the referred object; the square window around the
  foreground's bounding box (plus ``margin``, at least S a side, clipped to the scene) is segmented
  again, at full resolution when the window is at most S a side (decimated to S otherwise).

Image size (:mod:`rs2sam2.pixel_budget`, ``max_pixels``): ``single`` and ``coarse-to-fine`` take scenes up
to the pixel budget (they decimate the whole scene in one read, which decodes all of a PNG / JPEG);
``tiles`` is the large-scene path: only each window (``tile_size``²) must fit the budget, the scene may be
any size (memory as above, time grows with the scene).

Logits at the model's read size are upsampled bilinearly (PyTorch ``align_corners=False`` convention)
strip by strip while writing, so no full-resolution float array of the scene is ever held.

Writing. The mask is a single-band uint8 GeoTIFF (values 0 / ``mask_value``; LZW, tiled) with the
source CRS and transform, or a PNG (no georeferencing). Vectors come from ``rasterio.features.shapes``
(4-connected polygons), in the source CRS, one feature per polygon with ``expression``, ``score`` (the
prediction's mean foreground probability), ``model``, ``area`` in square CRS units (``area_unit``) and
``pixels``. GeoJSON note: RFC 7946 only allows WGS 84 longitude/latitude. We keep the source CRS (no
reprojection, so areas and coordinates match the raster) and, when it is not EPSG:4326, add the
pre-RFC ``crs`` member (``urn:ogc:def:crs:EPSG::<code>``), which GDAL, QGIS and geopandas read. A raster
without a CRS gives coordinates in its own (pixel) frame, with a :class:`GeoWarning`. GeoPackage output
needs ``pyogrio``.
"""

from __future__ import annotations

import json
import math
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from .predictor import Prediction

__all__ = [
    "GEO_INSTALL_HINT",
    "MERGES",
    "MODES",
    "BandStretch",
    "GeoPrediction",
    "GeoWarning",
    "MaskVectors",
    "compute_stretch",
    "mask_vectors",
    "predict_raster",
    "require_rasterio",
    "resolve_bands",
    "tile_starts",
]

MODES = ("single", "tiles", "coarse-to-fine")
MERGES = ("mean", "max")
#: Tiles mode: windows per model forward (1 = one at a time, the path before batching).
TILE_BATCH_SIZE = 4
GEO_INSTALL_HINT = "pip install 'rs2sam2[geo]'  (or: pip install rasterio)"
GDAL_CACHE_MB = 64  # GDAL's block cache defaults to 5 % of RAM; cap it so peak memory stays predictable
_PLAIN_DRIVERS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # formats that never carry a CRS: no warning
_STRIP_PIXELS = 1 << 22  # rows written per strip ≈ this many pixels (16 MiB of float32 logits)


class GeoWarning(UserWarning):
    """A georeferencing problem that does not stop the prediction (missing CRS, PNG output, …)."""


class MaskPredictor(Protocol):
    """What :func:`predict_raster` needs: ``RS2SAM2Predictor`` or any object shaped like it."""

    model: Any  # ``model.config.image_size`` and ``model.config.mask_threshold`` are read

    def predict(self, image: np.ndarray, text: str, threshold: float | None = None) -> Prediction: ...

    # Optional: ``predict_batch(images, texts, threshold=None) -> list[Prediction]`` (one sentence per
    # image) lets tiles mode send several windows through the model at once.


def require_rasterio() -> Any:
    """Import ``rasterio`` or fail with the install command."""
    try:
        import rasterio
    except ImportError as e:
        raise ImportError(f"reading and writing GeoTIFFs needs rasterio: {GEO_INSTALL_HINT}") from e
    return rasterio


# ------------------------------------------------------------------------------------------ reading
def resolve_bands(count: int, bands: Sequence[int] | None) -> tuple[int, ...]:
    """Validate 1-based band numbers (1 or 3 of them); default: 1–3 of a 3-/4-band raster, or band 1."""
    if bands is None:
        if count in (3, 4):
            return (1, 2, 3)
        if count == 1:
            return (1,)
        raise ValueError(
            f"the raster has {count} bands; choose the three to show as RGB, e.g. bands=(3, 2, 1), or one "
            "to show as grey, e.g. bands=(1,) (CLI: --bands 3,2,1 or --bands 1)"
        )
    bands = tuple(int(b) for b in bands)
    if len(bands) not in (1, 3) or any(not 1 <= b <= count for b in bands):
        raise ValueError(f"bands must be 1 or 3 band numbers in 1..{count} (1-based, like GDAL), got {bands}")
    return bands


@dataclass(frozen=True)
class BandStretch:
    """Per-band linear stretch to uint8, fixed for a whole scene. ``low``/``high``: (C,) data values.

    ``identity``: the data is 8-bit and passes unchanged.
    """

    bands: tuple[int, ...]
    low: np.ndarray
    high: np.ndarray
    identity: bool

    def apply(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(C, h, w) raw data and (h, w) validity → (h, w, 3) uint8 RGB, invalid pixels 0."""
        if self.identity:
            out = data.astype(np.uint8, copy=False)
        else:
            lo = self.low.reshape(-1, 1, 1)
            span = (self.high - self.low).reshape(-1, 1, 1)
            x = (data.astype(np.float32) - lo) / span
            out = np.round(np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
        out = np.where(valid, out, 0).astype(np.uint8)  # (C, h, w)
        if out.shape[0] == 1:
            out = np.repeat(out, 3, axis=0)
        return np.ascontiguousarray(np.moveaxis(out, 0, -1))  # (h, w, 3)


def _read(
    src: Any,
    bands: tuple[int, ...],
    window: Any = None,
    out_shape: tuple[int, int] | None = None,
    resampling: str = "nearest",
) -> tuple[np.ndarray, np.ndarray]:
    """Raw data (C, h, w) and validity (h, w) of a window, optionally resampled to ``out_shape``."""
    from rasterio.enums import Resampling

    shape = None if out_shape is None else (len(bands), *out_shape)
    data = src.read(list(bands), window=window, out_shape=shape, resampling=Resampling[resampling])
    masks = src.read_masks(list(bands), window=window, out_shape=shape, resampling=Resampling.nearest)
    valid = (masks > 0).all(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    return data, valid


def _fit_shape(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled down (aspect kept) so that the long side is at most ``side``."""
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def compute_stretch(
    src: Any, bands: tuple[int, ...], low: float = 2.0, high: float = 98.0, stats_side: int = 1024
) -> BandStretch:
    """Scene-wide percentiles of valid pixels from a decimated read (≤ ``stats_side`` a side)."""
    if all(src.dtypes[b - 1] == "uint8" for b in bands):
        return BandStretch(bands, np.zeros(len(bands)), np.full(len(bands), 255.0), identity=True)
    data, valid = _read(src, bands, out_shape=_fit_shape(src.height, src.width, stats_side))
    lows, highs = np.zeros(len(bands)), np.ones(len(bands))
    if valid.any():
        for i in range(len(bands)):
            lows[i], highs[i] = np.percentile(data[i][valid].astype(np.float64), [low, high])
    highs = np.where(highs > lows, highs, lows + 1.0)  # a constant band maps to 0
    return BandStretch(bands, lows, highs, identity=False)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Window offsets along one axis: stride ``tile − overlap``, the last window aligned to the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


# ------------------------------------------------------------------------------------------ writing
class _MaskSink:
    """Receives the mask as consecutive full-width row strips; GeoTIFF (streamed) or PNG (in memory)."""

    def __init__(self, path: Path, src: Any, mask_value: int) -> None:
        self.path, self.mask_value = path, mask_value
        self.height, self.width = src.height, src.width
        suffix = path.suffix.lower()
        if suffix in (".tif", ".tiff"):
            import rasterio

            tiled = min(src.height, src.width) >= 256
            blocks = {"blockxsize": 256, "blockysize": 256} if tiled else {}
            self.dst = rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=src.width,
                height=src.height,
                count=1,
                dtype="uint8",
                crs=src.crs,
                transform=src.transform,
                compress="lzw",
                tiled=tiled,
                BIGTIFF="IF_SAFER",
                **blocks,
            )
            self.array = None
        elif suffix == ".png":
            self.dst, self.array = None, np.zeros((src.height, src.width), np.uint8)
        else:
            raise ValueError(f"mask output must end in .tif, .tiff or .png, got {path.name!r}")
        self.row = 0

    def write(self, mask: np.ndarray) -> None:
        """Append (n, W) bool rows."""
        from rasterio.windows import Window

        block = mask.astype(np.uint8) * np.uint8(self.mask_value)
        if self.dst is not None:
            self.dst.write(block, 1, window=Window(0, self.row, self.width, len(block)))
        else:
            self.array[self.row : self.row + len(block)] = block
        self.row += len(block)

    def write_empty(self, rows: int) -> None:
        """Append ``rows`` background rows."""
        step = max(1, _STRIP_PIXELS // self.width)
        for r in range(0, rows, step):
            self.write(np.zeros((min(step, rows - r), self.width), bool))

    def abort(self) -> None:
        """Close and delete a partly written output."""
        if self.dst is not None:
            self.dst.close()
            self.path.unlink(missing_ok=True)

    def close(self, tags: dict[str, str]) -> None:
        assert self.row == self.height, f"wrote {self.row} of {self.height} rows"
        if self.dst is not None:
            self.dst.update_tags(**tags)
            self.dst.close()
        else:
            from PIL import Image

            Image.fromarray(self.array).save(self.path)  # (H, W) uint8 → mode L


@dataclass
class _MaskStats:
    """Running foreground count and probability sum (for the score)."""

    pixels: int = 0
    prob_sum: float = 0.0

    def add(self, logits: np.ndarray, mask: np.ndarray) -> None:
        x = logits[mask].astype(np.float64)
        self.pixels += int(x.size)
        self.prob_sum += float((1.0 / (1.0 + np.exp(-(2.0 * x - 1.0)))).sum())  # p_fg = sigmoid(2x − 1)

    @property
    def score(self) -> float:
        return self.prob_sum / self.pixels if self.pixels else 0.0


def _bilinear_axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weights for ``align_corners=False`` bilinear resizing along one axis."""
    pos = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _resize_rows(logits: np.ndarray, out_shape: tuple[int, int], r0: int, r1: int) -> np.ndarray:
    """Rows [r0, r1) of ``logits`` (h, w) bilinearly resized to ``out_shape`` (as F.interpolate would)."""
    y0, y1, wy = (a[r0:r1] for a in _bilinear_axis(out_shape[0], logits.shape[0]))
    x0, x1, wx = _bilinear_axis(out_shape[1], logits.shape[1])
    rows = logits[y0] * (1.0 - wy)[:, None] + logits[y1] * wy[:, None]  # (n, w)
    return rows[:, x0] * (1.0 - wx) + rows[:, x1] * wx  # (n, W)


# ------------------------------------------------------------------------------------------ predict
@dataclass
class GeoPrediction:
    """Result of :func:`predict_raster`; the mask itself is in ``out``.

    ``crs``: ``"EPSG:<code>"`` or WKT, None without CRS. ``transform``: affine (a, b, c, d, e, f).
    ``area``: foreground area in ``area_unit`` (square CRS units). ``windows``: model calls;
    ``skipped_windows``: nodata-only windows not sent to the model. ``window``: (col, row, width, height)
    refined in ``coarse-to-fine`` mode. ``messages``: what a user should know (also issued as warnings).
    """

    text: str
    mode: str
    out: Path
    width: int
    height: int
    crs: str | None
    transform: tuple[float, ...]
    threshold: float
    score: float = 0.0
    foreground_pixels: int = 0
    area: float = 0.0
    area_unit: str = "square pixel"
    windows: int = 0
    skipped_windows: int = 0
    window: tuple[int, int, int, int] | None = None
    messages: list[str] = field(default_factory=list)


def _area_unit(crs: Any) -> str:
    if crs is None:
        return "square pixel"
    try:
        unit = crs.units_factor[0]
    except Exception:  # rasterio raises CRSError for CRSs without a unit
        unit = "unit"
    return f"square {unit}"


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
                area_unit=_area_unit(src.crs),
            )
            _check_budget(mode, src.width, src.height, tile_size, max_pixels)
            if src.driver in _PLAIN_DRIVERS:
                _check_plain_image(image)
            if src.crs is None and src.driver not in _PLAIN_DRIVERS:
                _note(
                    result,
                    f"{image.name} has no CRS: outputs are in its pixel/transform frame, not map coordinates",
                )
            if out.suffix.lower() == ".png" and src.crs is not None:
                _note(result, f"{out.name}: PNG masks carry no georeferencing; use .tif to keep the CRS")
            stretch = compute_stretch(src, resolve_bands(src.count, bands), stats_side=stats_side)
            run = _Run(predictor, src, text, thr, stretch, _MaskSink(out, src, mask_value), result, progress)
            try:
                if mode == "tiles":
                    _run_tiles(run, tile_size, overlap, merge, batch_size)
                else:
                    _run_whole(run, s, margin, refine=mode == "coarse-to-fine")
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
    from .pixel_budget import ImageTooLargeError, check_pixels

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


def _check_plain_image(path: Path) -> None:
    """PNG / JPEG / … read through GDAL: refuse what GDAL would silently get wrong.

    GDAL returns zeros for the missing rows of a truncated PNG, and ignores the EXIF orientation that
    every viewer (and :func:`rs2sam2.processing.load_image`) applies, which would give a mask in another
    orientation than the displayed image.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()  # must come first: it leaves the image unusable
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112, 1)
    except Image.DecompressionBombError:  # too large for PIL; GDAL reads it window by window
        return
    except Exception as e:  # PIL reports damage with many exception types
        raise ValueError(f"{path.name} is damaged or truncated ({type(e).__name__}: {e})") from None
    if orientation not in (1, None):
        raise ValueError(
            f"{path.name} is rotated by its EXIF orientation tag ({orientation}), which GDAL ignores; "
            "segment it with `rs2sam2 predict --mode single` or RS2SAM2Predictor.predict (both apply the "
            "tag), or save it upright first (PIL.ImageOps.exif_transpose)"
        )


def _note(result: GeoPrediction, message: str) -> None:
    result.messages.append(message)
    warnings.warn(message, GeoWarning, stacklevel=2)


@dataclass
class _Run:
    """Everything one :func:`predict_raster` call shares between its steps."""

    predictor: MaskPredictor
    src: Any  # the open rasterio dataset
    text: str
    thr: float
    stretch: BandStretch
    sink: _MaskSink
    result: GeoPrediction
    progress: Callable[[int, int], None] | None
    stats: _MaskStats = field(default_factory=_MaskStats)

    def read(
        self, window: Any, out_shape: tuple[int, int] | None = None, resampling: str = "nearest"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(h, w, 3) uint8 RGB and (h, w) validity of a window."""
        data, ok = _read(self.src, self.stretch.bands, window, out_shape, resampling)
        return self.stretch.apply(data, ok), ok

    def valid(self, window: Any) -> np.ndarray:
        """(h, w) validity of a full-resolution window."""
        return _read(self.src, self.stretch.bands, window)[1]

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """(h, w) float32 logits at the size of ``rgb``."""
        self.result.windows += 1
        return np.asarray(self.predictor.predict(rgb, self.text, threshold=self.thr).logits, np.float32)

    def predict_many(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        """(h, w) float32 logits of each image, in one batched forward when the predictor has
        ``predict_batch`` (one sentence per image), else one call each."""
        batched = getattr(self.predictor, "predict_batch", None)
        if batched is None or len(rgbs) == 1:
            return [self.predict(rgb) for rgb in rgbs]
        self.result.windows += len(rgbs)
        preds = batched(rgbs, [self.text] * len(rgbs), threshold=self.thr)
        return [np.asarray(p.logits, np.float32) for p in preds]

    def tick(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)


def _run_tiles(run: _Run, tile: int, overlap: int, merge: str, batch_size: int = 1) -> None:
    """Sliding windows, merged in a (tile rows × W) buffer; rows no later window touches are written.

    Up to ``batch_size`` windows of a row go through the model in one forward.
    """
    from rasterio.windows import Window

    h, w = run.src.height, run.src.width
    rows, cols = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    fill = 0.0 if merge == "mean" else -np.inf
    acc = np.full((th, w), fill, np.float32)  # logit sum (mean) or running max
    count = np.zeros((th, w), np.uint16)  # windows that predicted each pixel
    valid = np.zeros((th, w), bool)
    total = len(rows) * len(cols)
    for k, y in enumerate(rows):  # invariant: buffer row 0 is scene row y
        for first in range(0, len(cols), batch_size):  # windows of one row have one shape: batch them
            xs, rgbs = [], []
            for x in cols[first : first + batch_size]:
                rgb, ok = run.read(Window(x, y, tw, th))
                valid[:, x : x + tw] = ok
                if ok.any():
                    xs.append(x)
                    rgbs.append(rgb)
                else:
                    run.result.skipped_windows += 1
            for x, logits in zip(xs, run.predict_many(rgbs) if rgbs else []):
                region = acc[:, x : x + tw]
                if merge == "mean":
                    region += logits
                else:
                    np.maximum(region, logits, out=region)
                count[:, x : x + tw] += 1
            run.tick(k * len(cols) + min(first + batch_size, len(cols)), total)
        n = (rows[k + 1] if k + 1 < len(rows) else h) - y  # rows final once the next window row starts
        merged = acc[:n] / np.maximum(count[:n], 1) if merge == "mean" else acc[:n]
        mask = (merged > run.thr) & valid[:n] & (count[:n] > 0)
        run.stats.add(merged, mask)
        run.sink.write(mask)
        for buf, reset in ((acc, fill), (count, 0), (valid, False)):
            buf[: th - n] = buf[n:]
            buf[th - n :] = reset
    skipped = run.result.skipped_windows
    if skipped:
        why = "the whole image is nodata" if skipped == total else "they contain only nodata"
        _note(run.result, f"{skipped} of {total} windows skipped: {why}")


def _run_whole(run: _Run, s: int, margin: float, *, refine: bool) -> None:
    """``single`` (the scene at ≤ S) and ``coarse-to-fine`` (then the object's window again)."""
    from rasterio.windows import Window

    h, w = run.src.height, run.src.width
    window = Window(0, 0, w, h)
    out = _predict_window(run, window, s, "the image")
    run.tick(1, 2 if refine else 1)
    if refine and out is not None:
        coarse = (out[0] > run.thr) & out[1]  # nodata never seeds the window
        if not coarse.any():
            _note(run.result, "coarse pass found no object for this expression; the mask is empty")
            out = None
        else:
            window = _object_window(coarse, h, w, s, margin)
            run.result.window = tuple(
                int(v) for v in (window.col_off, window.row_off, window.width, window.height)
            )
            out = _predict_window(run, window, s, "the window")
            run.tick(2, 2)
    if out is None:
        run.sink.write_empty(h)
    else:
        _write_window(run, out[0], window)


def _predict_window(run: _Run, window: Any, s: int, what: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Logits and validity at the read size of ``window`` (≤ S a side); None if it is all nodata."""
    shape = _fit_shape(int(window.height), int(window.width), s)
    rgb, ok = run.read(window, out_shape=shape, resampling="average")
    if not ok.any():
        run.result.skipped_windows += 1
        _note(run.result, f"{what} contains only nodata pixels; the mask is empty")
        return None
    return run.predict(rgb), ok


def _object_window(mask: np.ndarray, h: int, w: int, s: int, margin: float) -> Any:
    """Square full-resolution window around ``mask``'s foreground (+ margin, ≥ S a side, clipped)."""
    from rasterio.windows import Window

    ys, xs = np.nonzero(mask)
    sy, sx = h / mask.shape[0], w / mask.shape[1]
    y0, y1 = ys.min() * sy, (ys.max() + 1) * sy
    x0, x1 = xs.min() * sx, (xs.max() + 1) * sx
    side = max(y1 - y0, x1 - x0) * (1.0 + 2.0 * margin)
    side_h, side_w = min(h, max(s, math.ceil(side))), min(w, max(s, math.ceil(side)))
    row = int(np.clip(round((y0 + y1 - side_h) / 2), 0, h - side_h))
    col = int(np.clip(round((x0 + x1 - side_w) / 2), 0, w - side_w))
    return Window(col, row, side_w, side_h)


def _write_window(run: _Run, logits: np.ndarray, window: Any) -> None:
    """Write the scene's rows: ``logits`` upsampled into ``window``, background elsewhere."""
    from rasterio.windows import Window

    h, w = run.src.height, run.src.width
    col, row, ww, wh = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
    run.sink.write_empty(row)
    step = max(1, _STRIP_PIXELS // w)
    for r in range(0, wh, step):
        n = min(step, wh - r)
        x = _resize_rows(logits, (wh, ww), r, r + n)  # (n, ww)
        part = (x > run.thr) & run.valid(Window(col, row + r, ww, n))
        run.stats.add(x, part)
        strip = np.zeros((n, w), bool)
        strip[:, col : col + ww] = part
        run.sink.write(strip)
    run.sink.write_empty(h - row - wh)


# ------------------------------------------------------------------------------------------ vectors
@dataclass
class MaskVectors:
    """Polygons of a mask in the source CRS (``crs``: ``"EPSG:<code>"``, WKT or None)."""

    features: list[dict[str, Any]]
    crs: str | None

    def to_geojson(self) -> dict[str, Any]:
        """A FeatureCollection; a ``crs`` member names the CRS unless it is EPSG:4326 (see module doc)."""
        collection: dict[str, Any] = {"type": "FeatureCollection"}
        member = _crs_member(self.crs)
        if member is not None:
            collection["crs"] = member
        collection["features"] = self.features
        return collection

    def write(self, path: str | Path) -> Path:
        """Save as GeoJSON (``.geojson``/``.json``) or GeoPackage (``.gpkg``, needs pyogrio)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".geojson", ".json"):
            path.write_text(json.dumps(self.to_geojson()))
        elif suffix == ".gpkg":
            self._write_gpkg(path)
        else:
            raise ValueError(f"vector output must end in .geojson, .json or .gpkg, got {path.name!r}")
        return path

    def _write_gpkg(self, path: Path) -> None:
        try:
            from pyogrio.raw import write
        except ImportError as e:
            raise ImportError("GeoPackage output needs pyogrio: pip install pyogrio") from e
        from rasterio.crs import CRS

        props = [f["properties"] for f in self.features]
        names = ["expression", "score", "model", "area", "area_unit", "pixels"]
        kinds = [object, np.float64, object, np.float64, object, np.int64]
        columns = [np.array([p[n] for p in props], dtype=t) for n, t in zip(names, kinds)]
        geometry = np.array([_polygon_wkb(f["geometry"]["coordinates"]) for f in self.features], dtype=object)
        crs = CRS.from_user_input(self.crs).to_wkt() if self.crs else None
        if path.exists():
            path.unlink()  # the driver would otherwise add a layer to the old file
        write(
            str(path), geometry, columns, names, layer="mask", driver="GPKG", geometry_type="Polygon", crs=crs
        )


def _crs_member(crs: str | None) -> dict[str, Any] | None:
    if crs is None:
        return None
    from rasterio.crs import CRS

    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    if epsg == 4326:
        return None
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else parsed.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def _polygon_wkb(rings: list[list[list[float]]]) -> bytes:
    """ISO WKB of a polygon (little endian)."""
    parts = [struct.pack("<BII", 1, 3, len(rings))]
    for ring in rings:
        parts.append(struct.pack("<I", len(ring)))
        parts.append(np.asarray(ring, dtype="<f8").tobytes())
    return b"".join(parts)


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _pixel_polygons(mask: np.ndarray, row0: int = 0) -> Iterator[list[np.ndarray]]:
    """4-connected foreground polygons of a (h, W) strip starting at scene row ``row0``, pixel coords."""
    from rasterio.features import shapes
    from rasterio.transform import Affine

    m = np.ascontiguousarray(mask.astype(np.uint8))
    for geom, _ in shapes(m, mask=m > 0, connectivity=4, transform=Affine.translation(0, row0)):
        yield [np.asarray(r, dtype=np.float64) for r in geom["coordinates"]]


def _strip_polygons(
    read_rows: Callable[[int, int], np.ndarray], height: int, width: int, max_pixels: int
) -> Iterator[list[np.ndarray]]:
    """Polygons of a mask read in strips; pieces cut by a strip border are re-joined with shapely."""
    step = max(1, max_pixels // max(width, 1))
    if step >= height:
        yield from _pixel_polygons(read_rows(0, height))
        return
    try:
        from shapely.geometry import Polygon
        from shapely.ops import unary_union
    except ImportError as e:
        raise ImportError(
            f"polygonising a mask of {height}×{width} pixels in strips needs shapely: pip install shapely"
        ) from e
    cut = []
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        for rings in _pixel_polygons(read_rows(r0, r1), r0):
            ys = rings[0][:, 1]
            if (r0 > 0 and ys.min() == r0) or (r1 < height and ys.max() == r1):
                cut.append(Polygon(rings[0], rings[1:]))
            else:
                yield rings
    if cut:
        merged = unary_union(cut)
        for poly in getattr(merged, "geoms", [merged]):
            yield [np.asarray(poly.exterior.coords)] + [np.asarray(i.coords) for i in poly.interiors]


def mask_vectors(
    mask: np.ndarray | str | Path,
    *,
    text: str,
    score: float,
    model_id: str,
    transform: Sequence[float] | None = None,
    crs: str | None = None,
    max_pixels: int = 1 << 26,
) -> MaskVectors:
    """Polygons of a mask array (with ``transform``/``crs``) or of a mask GeoTIFF (read in strips of
    ≤ ``max_pixels``; its own transform and CRS are used). Exterior rings are counter-clockwise in map
    coordinates (RFC 7946 right-hand rule)."""
    if isinstance(mask, (str, Path)):
        rasterio = require_rasterio()
        from rasterio.windows import Window

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(mask) as src:
                t = tuple(src.transform)[:6]
                crs = src.crs.to_string() if src.crs else None
                read = lambda r0, r1: src.read(1, window=Window(0, r0, src.width, r1 - r0)) > 0
                polygons = list(_strip_polygons(read, src.height, src.width, max_pixels))
    else:
        require_rasterio()
        arr = np.asarray(mask) > 0
        t = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0) if transform is None else tuple(transform)[:6]
        polygons = list(_strip_polygons(lambda r0, r1: arr[r0:r1], *arr.shape, max_pixels))
    if crs is None and (isinstance(mask, (str, Path)) or transform is not None):
        warnings.warn(
            "mask has no CRS: polygon coordinates are in its pixel/transform frame", GeoWarning, stacklevel=2
        )
    a, b, c, d, e, f = t
    det = a * e - b * d
    unit = "square pixel"
    if crs is not None:
        from rasterio.crs import CRS

        unit = _area_unit(CRS.from_user_input(crs))
    features = []
    for rings in polygons:
        pixels = abs(_signed_area(rings[0])) - sum(abs(_signed_area(r)) for r in rings[1:])
        mapped = []
        for i, ring in enumerate(rings):
            xy = np.stack([a * ring[:, 0] + b * ring[:, 1] + c, d * ring[:, 0] + e * ring[:, 1] + f], 1)
            if (_signed_area(xy) > 0) != (i == 0):  # exterior CCW, holes CW
                xy = xy[::-1]
            mapped.append(xy.tolist())
        n = int(round(pixels))
        features.append(
            {
                "type": "Feature",
                "id": len(features),
                "properties": {
                    "expression": text,
                    "score": float(score),
                    "model": model_id,
                    "area": n * abs(det),
                    "area_unit": unit,
                    "pixels": n,
                },
                "geometry": {"type": "Polygon", "coordinates": mapped},
            }
        )
    return MaskVectors(features, crs)
