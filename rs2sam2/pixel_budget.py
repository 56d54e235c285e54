"""The image-size policy of every entry point (app, predictor, CLI, geo): a pixel budget, checked from the
file header before anything is decoded.

A request is refused when

* one plane (page) has more than ``max_pixels`` pixels (width × height), or
* the whole file would decode to more than ``BYTES_PER_BUDGET_PIXEL × max_pixels`` bytes: every page of a
  TIFF, every band and the sample width counted (a multi-page or many-band TIFF "bomb" declares small pages
  but thousands of them).

``max_pixels`` is an argument everywhere it matters; ``None`` means the ``RS2SAM2_MAX_PIXELS`` environment
variable, else :data:`DEFAULT_MAX_PIXELS` (8192², i.e. 64 Mi pixels: the native-size logits and mask of
one request then stay below about 350 MB). Header reading: PIL for PNG / JPEG / BMP / GIF / WebP (their
size is in the first bytes), ``tifffile`` (else PIL) for every IFD of a TIFF. The geo ``tiles`` mode reads
windows and is bounded per window instead (see :func:`rs2sam2.geo.predict_raster`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "RS2SAM2_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 8192 * 8192
# Decoded bytes allowed per budget pixel: an 8-bit RGBA image at the pixel limit.
BYTES_PER_BUDGET_PIXEL = 4
# A TIFF with more IFDs than this is refused without reading them all (walking a million-page chain is
# itself work an attacker could ask for).
MAX_TIFF_PAGES = 4096
TIFF_SUFFIXES = (".tif", ".tiff")
_PIL_LIMIT_LOCK = threading.Lock()

# Bytes per pixel of PIL modes (bands × sample width) for the decoded-size estimate.
_PIL_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "RGBA": 4, "RGBa": 4}
_PIL_MODE_BYTES |= {"CMYK": 4, "YCbCr": 3, "LAB": 3, "HSV": 3, "I": 4, "F": 4, "RGBX": 4}


class ImageTooLargeError(ValueError):
    """The image is over the pixel budget (the message says by how much and how to change the limit)."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header says: the largest plane's ``width`` × ``height``, the number of ``pages`` and the
    ``decoded_bytes`` of everything the file would decode to."""

    width: int
    height: int
    pages: int
    decoded_bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def resolve_max_pixels(max_pixels: int | None = None) -> int:
    """``max_pixels`` if given, else ``$RS2SAM2_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`."""
    if max_pixels is None:
        text = os.environ.get(ENV_VAR, "").strip().replace("_", "")
        if not text:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(float(text)) if "e" in text.lower() else int(text)
        except ValueError:
            raise ValueError(f"{ENV_VAR}={text!r} is not a whole number of pixels") from None
    max_pixels = int(max_pixels)
    if max_pixels <= 0:
        raise ValueError(f"the pixel budget must be positive, got {max_pixels}")
    return max_pixels


def _hint(limit: int) -> str:
    return (
        f"the limit is {limit:,} pixels ({limit / 1e6:.0f} megapixels). Crop or downscale it first (or, "
        f"on your own machine, raise the limit with max_pixels= or {ENV_VAR}, or segment a large scene "
        "window by window with `rs2sam2 predict --mode tiles`)"
    )


def check_pixels(
    width: int, height: int, *, decoded_bytes: int | None = None, max_pixels: int | None = None
) -> None:
    """Raise :class:`ImageTooLargeError` if a ``width`` × ``height`` plane (or ``decoded_bytes`` in all)
    is over the budget."""
    limit = resolve_max_pixels(max_pixels)
    if width * height > limit:
        raise ImageTooLargeError(
            f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); {_hint(limit)}"
        )
    if decoded_bytes is not None and decoded_bytes > BYTES_PER_BUDGET_PIXEL * limit:
        raise ImageTooLargeError(
            f"The image would decode to {decoded_bytes / 2**20:,.0f} MiB (all its pages and bands), over "
            f"{BYTES_PER_BUDGET_PIXEL * limit / 2**20:,.0f} MiB ({BYTES_PER_BUDGET_PIXEL} bytes a pixel); "
            f"{_hint(limit)}"
        )


def check_header(header: ImageHeader, max_pixels: int | None = None) -> ImageHeader:
    check_pixels(header.width, header.height, decoded_bytes=header.decoded_bytes, max_pixels=max_pixels)
    return header


def read_header(path: str | Path) -> ImageHeader:
    """The size of an image file from its header only (no pixel is decoded).

    Raises ``OSError`` / ``ValueError`` for files that are not images (as the decoders would)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        header = _tiff_header(path)
        if header is not None:
            return header
    return _pil_header(path)


def check_image_file(path: str | Path, max_pixels: int | None = None) -> ImageHeader:
    """:func:`read_header` then the budget check; returns the header."""
    return check_header(read_header(path), max_pixels)


def _pil_header(path: Path) -> ImageHeader:
    import warnings

    from PIL import Image

    # PIL warns (or refuses) by its own limit, a global; ours is decided from the size read here. The lock
    # keeps concurrent requests from restoring each other's changed value.
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                if im.format != "TIFF":
                    w, h = im.size
                    return ImageHeader(w, h, 1, w * h * _mode_bytes(im.mode))
                return _pil_tiff_pages(im)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _mode_bytes(mode: str) -> int:
    if mode in _PIL_MODE_BYTES:
        return _PIL_MODE_BYTES[mode]
    if mode.startswith("I;16"):
        return 2
    return 8  # unknown modes: count generously


def _pil_tiff_pages(im) -> ImageHeader:
    width = height = total = pages = 0
    while True:
        w, h = im.size
        if w * h > width * height:
            width, height = w, h
        total += w * h * _mode_bytes(im.mode)
        pages += 1
        if pages > MAX_TIFF_PAGES:
            raise ImageTooLargeError(f"The TIFF has more than {MAX_TIFF_PAGES} pages")
        try:
            im.seek(im.tell() + 1)
        except EOFError:
            return ImageHeader(width, height, pages, total)


def _tiff_header(path: Path) -> ImageHeader | None:
    """Every IFD of a TIFF through tifffile (headers only); ``None`` without tifffile."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            width = height = total = count = 0
            page = tif.pages.first
            while page is not None:
                count += 1
                if count > MAX_TIFF_PAGES:
                    raise ImageTooLargeError(f"The TIFF has more than {MAX_TIFF_PAGES} pages")
                shape = tuple(int(s) for s in page.shape)
                h, w = int(page.imagelength), int(page.imagewidth)
                if w * h > width * height:
                    width, height = w, h
                size = 1
                for s in shape:
                    size *= s
                total += size * max(1, page.dtype.itemsize if page.dtype is not None else 8)
                page = _next_page(tif, count)
    except ImageTooLargeError:
        raise
    except Exception as e:  # tifffile reports damaged files with many exception types
        raise ValueError(f"damaged TIFF ({type(e).__name__}: {e})") from e
    if count == 0:
        raise ValueError("no image found in this TIFF")
    return ImageHeader(width, height, count, total)


def _next_page(tif, index: int):
    """Page ``index`` (0-based) or None past the end; tifffile reads one IFD, no pixel data."""
    pages = tif.pages
    pages.useframes = False
    try:
        return pages[index]
    except IndexError:
        return None
