"""Reading rasters for :mod:`rs2sam2.geo`: ``rasterio`` import, 1-based band choice, the scene-wide stretch
to 8-bit, windowed reads with validity (nodata, masks, alpha, NaN), and the checks on plain image files.

GeoTIFF / COG and other GDAL rasters are read window by window through ``rasterio`` (the georeferencing and
the windowed, decimated reads are what GDAL is for). A plain image file (PNG, JPEG, …) read that way is
first checked by the package's one image reader (:func:`rs2sam2.images.verify_image`): GDAL would
silently fill a truncated file with zeros and ignore the EXIF orientation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GEO_INSTALL_HINT = "pip install 'rs2sam2[geo]'  (or: pip install rasterio)"
GDAL_CACHE_MB = 64  # GDAL's block cache defaults to 5 % of RAM; cap it so peak memory stays predictable
PLAIN_DRIVERS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # formats that never carry a CRS: no warning


class GeoWarning(UserWarning):
    """A georeferencing problem that does not stop the prediction (missing CRS, PNG output, …)."""


def require_rasterio() -> Any:
    """Import ``rasterio`` or fail with the install command."""
    try:
        import rasterio
    except ImportError as e:
        raise ImportError(f"reading and writing GeoTIFFs needs rasterio: {GEO_INSTALL_HINT}") from e
    return rasterio


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


def read_window(
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


def fit_shape(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled down (aspect kept) so that the long side is at most ``side``."""
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def compute_stretch(
    src: Any, bands: tuple[int, ...], low: float = 2.0, high: float = 98.0, stats_side: int = 1024
) -> BandStretch:
    """Scene-wide percentiles of valid pixels from a decimated read (≤ ``stats_side`` a side)."""
    if all(src.dtypes[b - 1] == "uint8" for b in bands):
        return BandStretch(bands, np.zeros(len(bands)), np.full(len(bands), 255.0), identity=True)
    data, valid = read_window(src, bands, out_shape=fit_shape(src.height, src.width, stats_side))
    lows, highs = np.zeros(len(bands)), np.ones(len(bands))
    if valid.any():
        for i in range(len(bands)):
            lows[i], highs[i] = np.percentile(data[i][valid].astype(np.float64), [low, high])
    highs = np.where(highs > lows, highs, lows + 1.0)  # a constant band maps to 0
    return BandStretch(bands, lows, highs, identity=False)


def area_unit(crs: Any) -> str:
    if crs is None:
        return "square pixel"
    try:
        unit = crs.units_factor[0]
    except Exception:  # rasterio raises CRSError for CRSs without a unit
        unit = "unit"
    return f"square {unit}"


def check_plain_image(path: Path) -> None:
    """PNG / JPEG / … read through GDAL: refuse what GDAL would silently get wrong.

    GDAL returns zeros for the missing rows of a truncated PNG, and ignores the EXIF orientation that
    every viewer (and :func:`rs2sam2.images.load_image`) applies, which would give a mask in another
    orientation than the displayed image. Both are read by :func:`rs2sam2.images.verify_image`; a file too
    large for PIL passes (GDAL reads it window by window).
    """
    from ..images import verify_image

    orientation = verify_image(path)
    if orientation not in (1, None):
        raise ValueError(
            f"{path.name} is rotated by its EXIF orientation tag ({orientation}), which GDAL ignores; "
            "segment it with `rs2sam2 predict --mode single` or RS2SAM2Predictor.predict (both apply the "
            "tag), or save it upright first (PIL.ImageOps.exif_transpose)"
        )
