"""Masks in every form the package stores them: COCO RLE, COCO segmentations, boxes, PNG and grey images.

One home for mask encodings, shared by the manifest, the benchmark readers, the synthetic generator, the
app and the visualisations:

* :func:`encode_rle` / :func:`decode_rle` — COCO compressed RLE ``{"size": [H, W], "counts": str}`` of a
  boolean (H, W) mask (JSON-serialisable), and back; :func:`normalise_rle` turns the RLE variants found in
  annotation files (uncompressed ``counts`` lists, ``str`` or ``bytes`` counts) into what pycocotools
  decodes; :func:`decode_coco_segmentation` decodes any COCO ``segmentation`` (polygons or RLE).
* :func:`mask_bbox` / :func:`mask_area` — COCO box ``[x, y, w, h]`` and pixel count.
* :func:`mask_to_png` / :func:`write_mask_png` / :func:`read_mask_png` — 8-bit grey images, 255 = object.
  Files are decoded by the package's one image reader, :mod:`rs2sam2.images` (its ``read_grey`` reads a
  mask image at its native depth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..images import load_image

__all__ = [
    "decode_coco_segmentation",
    "decode_rle",
    "encode_rle",
    "mask_area",
    "mask_bbox",
    "mask_to_png",
    "normalise_rle",
    "read_mask_png",
    "write_mask_png",
]


# ---------------------------------------------------------------------------------------------------------
# COCO RLE
# ---------------------------------------------------------------------------------------------------------


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of a boolean (H, W) mask, JSON-serialisable."""
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask, dtype=bool)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_rle`: boolean (H, W) mask (``counts`` as str or bytes)."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    return mask_utils.decode(
        {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    ).astype(bool)


def normalise_rle(rle: dict, height: int, width: int) -> dict:
    """A COCO RLE as pycocotools decodes it: uncompressed ``counts`` lists compressed, ``str`` counts as
    bytes, ``size`` defaulting to ``[height, width]``."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        size = rle.get("size", [height, width])
        return mask_utils.frPyObjects(dict(rle, size=list(size)), *size)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": list(rle.get("size", [height, width])), "counts": counts}


def decode_coco_segmentation(
    segmentation: Any, height: int, width: int, overlap_quirk: bool = True
) -> np.ndarray:
    """Decode a COCO ``segmentation``: polygon list, uncompressed RLE, or compressed RLE (str/bytes counts).

    ``overlap_quirk=True`` (official): channels are summed and the mask is ``sum == 1`` (pixels covered by
    two polygons become background); ``False``: union of the channels.

    Returns:
        bool (height, width) array.
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        if isinstance(segmentation[0], dict):  # list of RLEs
            rles = [normalise_rle(r, height, width) for r in segmentation]
        else:  # polygons
            rles = mask_utils.frPyObjects([list(map(float, p)) for p in segmentation], height, width)
    elif isinstance(segmentation, dict):
        rles = [normalise_rle(segmentation, height, width)]
    else:
        raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
    m = mask_utils.decode(rles)  # (H, W, N) uint8
    if m.ndim == 2:
        m = m[:, :, None]
    total = m.astype(np.int64).sum(axis=2)
    return total == 1 if overlap_quirk else total >= 1


# ---------------------------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------------------------


def mask_bbox(mask: np.ndarray) -> list[int]:
    """COCO box ``[x, y, w, h]`` in pixels of the mask's tight bounding box; ``[0, 0, 0, 0]`` if empty."""
    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def mask_area(mask: np.ndarray) -> int:
    """Number of foreground pixels."""
    return int(np.count_nonzero(mask))


# ---------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------


def mask_to_png(mask: np.ndarray) -> Image.Image:
    """Binary mask as an 8-bit grey PNG-ready image: 255 foreground, 0 background, native size."""
    return Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L")


def write_mask_png(mask: np.ndarray, path: str | Path, compress_level: int = 4) -> None:
    """Save a boolean (H, W) mask as an 8-bit grey PNG (255 = object)."""
    mask_to_png(mask).save(path, format="PNG", compress_level=compress_level)


def read_mask_png(path: str | Path) -> np.ndarray:
    """A mask image as a boolean (H, W) array: grey value > 127 (any mode, converted to 8-bit grey)."""
    with load_image(path, exif_transpose=False) as im:  # masks live on the file's pixel grid
        return np.asarray(im.convert("L")) > 127
