"""Uploads in the demo app: read the file, apply the band choice, make the 8-bit RGB the model sees.

Reading is :func:`rs2sam2.images.read_image` (PNG / JPEG / TIFF, 16-bit and multiband TIFFs as arrays,
EXIF orientation applied) under the app's pixel budget (:func:`app_max_pixels`); bands are typed 1-based
(:func:`rs2sam2.images.parse_bands`, the numbering of GDAL and QGIS). Every problem a person can cause
ends in a :class:`gradio.Error` that says what to do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from .. import images
from .. import visualize as vis
from ..images import BandError, band_indices
from ..pixel_budget import ENV_VAR as PIXELS_ENV
from ..pixel_budget import ImageTooLargeError, resolve_max_pixels
from ..processing import to_rgb
from .models import public_error

# Masks and logits are made at native size: bound the pixels one request may hold in memory (the
# package's pixel budget, rs2sam2.pixel_budget, checked from the header). None: $RS2SAM2_MAX_PIXELS, else
# APP_MAX_PIXELS: an accepted 8192² upload took the app process to 1.9 GB (benchmarks/app_bombs.py), 6144²
# stays under 1.5 GB.
MAX_PIXELS: int | None = None
APP_MAX_PIXELS = 6144 * 6144


def app_max_pixels() -> int:
    """The pixel budget of one upload: :data:`MAX_PIXELS`, else ``$RS2SAM2_MAX_PIXELS``, else
    :data:`APP_MAX_PIXELS`."""
    if MAX_PIXELS is not None:
        return MAX_PIXELS
    return resolve_max_pixels() if os.environ.get(PIXELS_ENV, "").strip() else APP_MAX_PIXELS


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """Band choice as typed in the UI → 1-based band numbers (:func:`rs2sam2.images.parse_bands`: e.g.
    ``"3,2,1"`` or ``"4 3 2"``, counted from 1); empty → ``None`` (the image's own colours). A bad list
    raises ``gr.Error`` with the parser's message."""
    try:
        return images.parse_bands(text)
    except BandError as e:
        raise gr.Error(str(e)) from None


def read_image(path: str | Path | None) -> Image.Image | np.ndarray:
    """Read an upload with :func:`rs2sam2.images.read_image` under :func:`app_max_pixels`: TIFFs as
    (H, W, bands) arrays of their own dtype (any band count), everything else as a PIL image. Unreadable
    files raise ``gr.Error``."""
    if path is None or not str(path).strip():
        raise gr.Error("Upload an image first (PNG, JPEG or TIFF).")
    path = Path(path)
    name = path.name
    try:
        return images.read_image(path, app_max_pixels())
    except (ImageTooLargeError, Image.DecompressionBombError) as e:
        raise public_error(f"'{name}' is too large to open safely: {e}") from e
    except (OSError, ValueError) as e:
        raise public_error(
            f"Could not read '{name}' as an image. Upload a PNG, JPEG or TIFF file. ({e})"
        ) from e


def band_count(image: Image.Image | np.ndarray) -> int:
    if isinstance(image, Image.Image):
        return len(image.getbands())
    return 1 if image.ndim == 2 else int(image.shape[-1])


def prepare_image(image: Image.Image | np.ndarray, bands: Sequence[int] | None) -> Image.Image:
    """Apply the band choice (1-based band numbers, :func:`parse_bands`) and make 8-bit RGB (what the model
    and the panels see), with UI errors."""
    n = band_count(image)
    if bands is not None and max(bands) > n:
        raise gr.Error(
            f"Band {max(bands)} does not exist: the image has {n} band{'s' if n > 1 else ''} (1–{n})."
        )
    grey_alpha = isinstance(image, Image.Image) and image.mode in ("LA", "PA")  # to_rgb drops the alpha
    if bands is None and n not in (1, 3, 4) and not grey_alpha:
        raise gr.Error(
            f"The image has {n} bands. Type which three to show as red, green, blue in 'Bands' "
            f"(1-based, e.g. 3,2,1)."
        )
    try:
        return to_rgb(image, bands=band_indices(bands), max_pixels=app_max_pixels())
    except ValueError as e:
        raise public_error(f"Unsupported image: {e}") from e


def describe_image(image: Image.Image | np.ndarray) -> str:
    """``"W×H pixels, N bands (dtype)"`` for the upload preview."""
    n = band_count(image)
    if isinstance(image, Image.Image):
        (w, h), kind = image.size, image.mode
    else:
        (h, w), kind = image.shape[:2], str(image.dtype)
    return f"{w}×{h} pixels, {n} band{'s' if n > 1 else ''} ({kind})"


def preview(file: str | None, bands_text: str | None) -> tuple[np.ndarray | None, str]:
    """The upload as the model will see it, and a line describing it; problems go into the line."""
    if not file:
        return None, ""
    info = ""
    try:
        image = read_image(file)
        info = describe_image(image)
        rgb = prepare_image(image, parse_bands(bands_text))
    except gr.Error as e:
        return None, " ".join(filter(None, [info, f"⚠️ {e.message}"]))
    return vis.downscale_for_display(np.asarray(rgb)), info
