"""The three ways :func:`rs2sam2.geo.predict_raster` covers a scene, and what one run shares.

* ``single``: the whole scene, decimated to the model input S when larger.
* ``tiles``: sliding windows of ``tile_size`` with ``overlap``, logits merged by mean or max in overlaps,
  up to ``batch_size`` windows of a row per model forward; finished rows are written at once, so memory
  does not grow with the scene height.
* ``coarse-to-fine``: the decimated scene finds the object, its square window is segmented again.

See the :mod:`rs2sam2.geo` docstring for the details and the memory bounds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .raster import BandStretch, GeoWarning, fit_shape, read_window
from .writing import STRIP_PIXELS, MaskSink, MaskStats, _resize_rows

if TYPE_CHECKING:
    from ..predictor import Prediction

MODES = ("single", "tiles", "coarse-to-fine")
MERGES = ("mean", "max")
#: Tiles mode: windows per model forward (1 = one at a time, the path before batching).
TILE_BATCH_SIZE = 4


class MaskPredictor(Protocol):
    """What :func:`predict_raster` needs: ``RS2SAM2Predictor`` or any object shaped like it."""

    model: Any  # ``model.config.image_size`` and ``model.config.mask_threshold`` are read

    def predict(self, image: np.ndarray, text: str, threshold: float | None = None) -> Prediction: ...

    # Optional: ``predict_batch(images, texts, threshold=None) -> list[Prediction]`` (one sentence per
    # image) lets tiles mode send several windows through the model at once.


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


def note(result: GeoPrediction, message: str) -> None:
    result.messages.append(message)
    warnings.warn(message, GeoWarning, stacklevel=2)


@dataclass
class Run:
    """Everything one :func:`predict_raster` call shares between its steps."""

    predictor: MaskPredictor
    src: Any  # the open rasterio dataset
    text: str
    thr: float
    stretch: BandStretch
    sink: MaskSink
    result: GeoPrediction
    progress: Callable[[int, int], None] | None
    stats: MaskStats = field(default_factory=MaskStats)

    def read(
        self, window: Any, out_shape: tuple[int, int] | None = None, resampling: str = "nearest"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(h, w, 3) uint8 RGB and (h, w) validity of a window."""
        data, ok = read_window(self.src, self.stretch.bands, window, out_shape, resampling)
        return self.stretch.apply(data, ok), ok

    def valid(self, window: Any) -> np.ndarray:
        """(h, w) validity of a full-resolution window."""
        return read_window(self.src, self.stretch.bands, window)[1]

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


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Window offsets along one axis: stride ``tile − overlap``, the last window aligned to the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def run_tiles(run: Run, tile: int, overlap: int, merge: str, batch_size: int = 1) -> None:
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
        note(run.result, f"{skipped} of {total} windows skipped: {why}")


def run_whole(run: Run, s: int, margin: float, *, refine: bool) -> None:
    """``single`` (the scene at ≤ S) and ``coarse-to-fine`` (then the object's window again)."""
    from rasterio.windows import Window

    h, w = run.src.height, run.src.width
    window = Window(0, 0, w, h)
    out = _predict_window(run, window, s, "the image")
    run.tick(1, 2 if refine else 1)
    if refine and out is not None:
        coarse = (out[0] > run.thr) & out[1]  # nodata never seeds the window
        if not coarse.any():
            note(run.result, "coarse pass found no object for this expression; the mask is empty")
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


def _predict_window(run: Run, window: Any, s: int, what: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Logits and validity at the read size of ``window`` (≤ S a side); None if it is all nodata."""
    shape = fit_shape(int(window.height), int(window.width), s)
    rgb, ok = run.read(window, out_shape=shape, resampling="average")
    if not ok.any():
        run.result.skipped_windows += 1
        note(run.result, f"{what} contains only nodata pixels; the mask is empty")
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


def _write_window(run: Run, logits: np.ndarray, window: Any) -> None:
    """Write the scene's rows: ``logits`` upsampled into ``window``, background elsewhere."""
    from rasterio.windows import Window

    h, w = run.src.height, run.src.width
    col, row, ww, wh = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
    run.sink.write_empty(row)
    step = max(1, STRIP_PIXELS // w)
    for r in range(0, wh, step):
        n = min(step, wh - r)
        x = _resize_rows(logits, (wh, ww), r, r + n)  # (n, ww)
        part = (x > run.thr) & run.valid(Window(col, row + r, ww, n))
        run.stats.add(x, part)
        strip = np.zeros((n, w), bool)
        strip[:, col : col + ww] = part
        run.sink.write(strip)
    run.sink.write_empty(h - row - wh)
