"""One referring sample (image, expression, mask) of any dataset, read on demand, and what can be wrong
with it. Every reader (manifest, RRSIS-D, RefSegRS) yields :class:`Sample` objects, one per sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..images import read_rgb


@dataclass
class Sample:
    """One (image, expression, mask) triplet; the image and mask are only read on demand.

    Attributes:
        id: unique sample id (one per sentence).
        image_path: absolute or cwd-relative path of the image file.
        expression: the referring sentence.
        split: ``"train"``, ``"val"`` or ``"test"``.
        mask_loader: zero-argument callable returning the boolean (H, W) target mask.
        category: object category name, if known.
        image_id: id of the source image (shared by the samples of one image).
        ref_id: id of the referred object (shared by the sentences of one object); the occlusion subset is
            drawn over these (``None``: the sample id is used).
        mask_path: the mask file, when the mask comes from one (for validation messages).
    """

    id: str
    image_path: Path
    expression: str
    split: str
    mask_loader: Callable[[], np.ndarray] = field(repr=False)
    category: str | None = None
    image_id: str | None = None
    ref_id: str | None = None
    mask_path: Path | None = None

    def load_mask(self) -> np.ndarray:
        """Boolean (H, W) mask."""
        return np.asarray(self.mask_loader()).astype(bool)

    def load_image(self) -> Image.Image:
        """The image as a fully loaded RGB PIL image (file closed)."""
        return read_rgb(self.image_path, exif_transpose=False)  # the mask is on the file's pixel grid

    @property
    def group(self) -> str:
        return self.ref_id if self.ref_id is not None else self.id


class SampleError(ValueError):
    """A sample that cannot be used: image or mask missing or unreadable, mask size ≠ image size, or an
    empty mask where empty masks are refused. The message names the sample and the file."""


class _Problem(Exception):
    """What is wrong with a sample (without its id; :class:`SampleError` adds it)."""


_HINT = "; `rs2sam2 data validate` lists every problem, on_error='skip' leaves such samples out"


def _read_image(s: Sample) -> Image.Image:
    try:
        return s.load_image()
    except Exception as e:  # missing file, truncated or foreign data: PIL raises many types
        raise _Problem(f"cannot read image {s.image_path} ({type(e).__name__}: {e}){_HINT}") from e
