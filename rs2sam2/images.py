"""The package's one image-file reader, and its one band parser.

Every entry point that decodes an image file goes through here: :func:`load_image` (PNG / JPEG / BMP / GIF /
WebP and the 1-, 3- and 4-band TIFFs PIL decodes, as a PIL image), :func:`read_image` (the same, except
that TIFFs are read with ``tifffile`` as (H, W[, C]) arrays of their own dtype, any band count), and the
helpers built on them: :func:`read_rgb` (8-bit RGB) and :func:`read_grey` (one band, native depth).

Each reader

* refuses a missing or empty file with a clear message;
* checks the pixel budget (:mod:`rs2sam2.pixel_budget`) from the header, every TIFF page and band counted,
  before any pixel is decoded (``max_pixels`` ``None``: ``$RS2SAM2_MAX_PIXELS``, else 8192²);
* applies the EXIF orientation tag (``exif_transpose=True``, the default), so that the pixels are the
  picture every viewer shows and a mask matches it. Dataset readers pass ``exif_transpose=False``: their
  ground-truth masks are stored on the file's pixel grid, as the official loaders read it
  (``Image.open(path).convert("RGB")``), and rotating the image alone would misalign the pair.

Bands are numbered from 1, as GDAL, rasterio and QGIS number them: :func:`parse_bands` reads what a person
types (``"3,2,1"``, ``"4 3 2"``, ``"5"``) and :func:`band_indices` turns such numbers into the 0-based
indices of ``RS2SAM2Predictor.predict(bands=…)`` and :func:`rs2sam2.processing.to_rgb`. Turning any dtype
into 8-bit (the percentile stretch) is :func:`rs2sam2.processing.to_rgb`'s job; georeferenced rasters read
window by window are :mod:`rs2sam2.geo`'s, which checks plain image files here first
(:func:`verify_image`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .pixel_budget import ImageTooLargeError, check_image_file, check_pixels

TIFF_SUFFIXES = (".tif", ".tiff")
EXIF_ORIENTATION = 0x0112

__all__ = [
    "BandError",
    "band_indices",
    "load_image",
    "parse_bands",
    "read_grey",
    "read_image",
    "read_rgb",
    "read_tiff",
    "verify_image",
]


# -------------------------------------------------------------------------------------------------- bands
class BandError(ValueError):
    """A band list that is not 1 or 3 whole numbers counted from 1 (the message says what is wrong)."""


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """Bands as a person types them → 1-based band numbers, e.g. ``"3,2,1"`` or ``"4 3 2"`` → ``(4, 3, 2)``.

    Numbers are counted from 1 (band 1 is the first band, as in GDAL, rasterio and QGIS) and separated by
    commas, semicolons or spaces; one band gives a grey picture, three an R, G, B composite. Empty or
    ``None`` → ``None`` (the image's own colours). Anything else raises :class:`BandError`.
    """
    text = (text or "").strip()
    if not text:
        return None
    items = [t for t in re.split(r"[,;\s]+", text) if t]
    if not all(t.isdigit() for t in items):
        raise BandError(f"Bands must be whole numbers separated by commas, like 3,2,1 (got '{text}').")
    bands = tuple(int(t) for t in items)
    if len(bands) not in (1, 3):
        raise BandError(
            f"Give one band (grey) or three bands (red, green, blue), like 3,2,1 (got {len(bands)})."
        )
    if min(bands) < 1:
        raise BandError("Bands are counted from 1: the first band is 1.")
    return bands


def band_indices(bands: Sequence[int] | None) -> tuple[int, ...] | None:
    """1-based band numbers (:func:`parse_bands`) → the 0-based indices ``to_rgb`` / ``predict`` take."""
    return None if bands is None else tuple(int(b) - 1 for b in bands)


# ------------------------------------------------------------------------------------------------ files
def _check_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"image file is empty (0 bytes): {path}")


def _check_budget(path: Path, max_pixels: int | None) -> None:
    """The pixel budget from the header; files whose header cannot be read pass here and get the
    decoder's own message."""
    try:
        check_image_file(path, max_pixels)
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError):
        pass  # not readable as an image: the decoder says why, in its own words


def _decode(path: Path, exif_transpose: bool) -> Image.Image:
    """PIL's decoding of a file whose size was checked, with one message for every way it can fail."""
    try:
        with Image.open(path) as im:
            im.load()
            return (ImageOps.exif_transpose(im) or im) if exif_transpose else im
    except (Image.DecompressionBombError, OSError, SyntaxError) as e:
        hint = ""
        if path.suffix.lower() in TIFF_SUFFIXES and "cannot identify" in str(e):
            hint = (
                " (PIL reads only common 1-, 3- and 4-band TIFFs; for multiband or 16-bit multi-channel "
                "rasters read the array with tifffile or rasterio and pass it with bands=(r, g, b), or use "
                "`rs2sam2 predict`, which reads any GDAL raster)"
            )
        raise ValueError(f"cannot read {path} as an image: {e}{hint}") from None


def load_image(
    path: str | Path, max_pixels: int | None = None, *, exif_transpose: bool = True
) -> Image.Image:
    """Open an image file with PIL, fully decoded, with a clear error for missing, empty, corrupt or
    non-image files.

    The header is checked against the pixel budget first (``max_pixels`` ``None``: ``$RS2SAM2_MAX_PIXELS``
    or 8192²): a decompression bomb raises :class:`~rs2sam2.pixel_budget.ImageTooLargeError` before any
    pixel is decoded. ``exif_transpose``: apply the EXIF orientation tag (see the module docstring).
    """
    path = Path(path)
    _check_file(path)
    try:
        _check_budget(path, max_pixels)
    except ImageTooLargeError as e:
        raise ImageTooLargeError(
            f"{path.name} is too large to decode safely (a decompression bomb?): {e}"
        ) from None
    return _decode(path, exif_transpose)


def read_tiff(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """A TIFF's first image as an (H, W) or (H, W, C) array of its own dtype, any band count, read with
    ``tifffile`` (band-interleaved and band-sequential alike). The plane's size is checked against the
    pixel budget before its pixels are read. Damaged files raise ``ValueError``."""
    import tifffile

    path = Path(path)
    _check_file(path)
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image found in this TIFF")
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            if "Y" not in axes or "X" not in axes:
                raise ValueError(f"no image plane in this TIFF (axes {axes})")
            h, w = shape[axes.index("Y")], shape[axes.index("X")]
            check_pixels(w, h, max_pixels=max_pixels)
            array = series.asarray()
    except ValueError:  # ImageTooLargeError included
        raise
    except Exception as e:  # tifffile reports damaged files with many exception types
        raise ValueError(f"damaged TIFF ({type(e).__name__}: {e})") from e
    other = [i for i, a in enumerate(axes) if a not in "YX"]
    if sum(shape[i] != 1 for i in other) > 1:
        raise ValueError(f"TIFF with axes {axes} and shape {shape}: only one image (with bands) is supported")
    # (Y, X, others): at most one of the others is longer than 1, it becomes the band axis
    order = [axes.index("Y"), axes.index("X"), *other]
    array = np.transpose(array, order).reshape(h, w, -1)
    return array[..., 0] if array.shape[-1] == 1 else array


def read_image(
    path: str | Path, max_pixels: int | None = None, *, exif_transpose: bool = True
) -> Image.Image | np.ndarray:
    """Any image file: TIFFs as (H, W[, C]) arrays of their own dtype (:func:`read_tiff`, any band count;
    with PIL when ``tifffile`` is not installed), everything else as a PIL image (:func:`load_image`).

    The pixel budget is checked from the header first, every TIFF page and band counted."""
    path = Path(path)
    _check_file(path)
    _check_budget(path, max_pixels)
    if path.suffix.lower() in TIFF_SUFFIXES:
        try:
            import tifffile  # noqa: F401
        except ImportError:  # without tifffile, PIL still reads 1-, 3- and 4-band TIFFs
            return _decode(path, exif_transpose)
        return read_tiff(path, max_pixels)
    return _decode(path, exif_transpose)


def read_rgb(path: str | Path, max_pixels: int | None = None, *, exif_transpose: bool = True) -> Image.Image:
    """An image file as 8-bit RGB (PIL's conversion: grey repeated, palette expanded, alpha dropped)."""
    return load_image(path, max_pixels, exif_transpose=exif_transpose).convert("RGB")


def read_grey(path: str | Path, max_pixels: int | None = None, *, exif_transpose: bool = False) -> np.ndarray:
    """One band at its native depth (like ``cv2.IMREAD_ANYDEPTH``): 8/16/32-bit greyscale and float images
    as stored; colour, palette and 1-bit images converted to 8-bit luma (1-bit: 0/255). Masks are read on
    the file's pixel grid, so ``exif_transpose`` defaults to False here."""
    with load_image(path, max_pixels, exif_transpose=exif_transpose) as im:
        if im.mode in ("L", "I", "F") or im.mode.startswith("I;"):
            return np.array(im)
        return np.array(im.convert("L"))


# --------------------------------------------------------------------------------------------- checking
def verify_image(path: str | Path) -> int | None:
    """Decode-check an image file without keeping its pixels and return its EXIF orientation tag (1:
    upright or none). ``ValueError`` when it is damaged or truncated; ``None`` for a file too large for
    PIL's own limit, which is not checked here (its size is the pixel budget's business)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.verify()  # must come first: it leaves the image unusable
        with Image.open(path) as im:
            return int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Image.DecompressionBombError:
        return None
    except Exception as e:  # PIL reports damage with many exception types
        raise ValueError(f"{path.name} is damaged or truncated ({type(e).__name__}: {e})") from None
