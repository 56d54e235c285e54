"""The ``torch`` dataset over samples of any layout, with the official RRSIS-D occlusion augmentation.

:class:`ReferringDataset` turns a list of :class:`~rs2sam2.data.samples.Sample` into a
``torch.utils.data.Dataset`` of ``{"image": PIL RGB, "expression": str, "mask": bool (H, W) ndarray,
"category", "id", "image_id", "split"}`` items; broken samples raise a :class:`SampleError` naming them or
are skipped, on request.

Occlusion augmentation (official, RRSIS-D train only, not in the paper): at construction a seeded 20 % of
the train refs is chosen once; whenever one of their samples is loaded, 20–60 black 32×32 boxes (original
pixel units) are pasted at random positions before any resizing (:class:`OcclusionAugmentation`).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .manifest import ManifestRecord, sample_from_record
from .samples import _HINT, Sample, SampleError, _Problem, _read_image

OnError = Literal["raise", "skip"]
EmptyMasks = Literal["keep", "skip", "raise"]


class ReferringItem(TypedDict):
    image: Image.Image
    expression: str
    mask: np.ndarray
    category: str | None
    id: str
    image_id: str | None
    split: str


@dataclass
class OcclusionAugmentation:
    """Official RRSIS-D random-box occlusion (training recipe of the official code, not in the paper:
    ``add_random_boxes`` of its RRSIS-D dataset).

    ``fraction`` of the train refs (drawn once with ``random.Random(seed).sample`` over the refs in dataset
    order) get, every time one of their samples is loaded, ``randint(min_boxes, max_boxes)`` black
    ``box_size``×``box_size`` boxes at positions ``y = randint(0, H - box_size)``, ``x = randint(0, W -
    box_size)`` (inclusive, original pixel units) drawn from the ``random`` module (DataLoader workers reseed
    it per worker) unless an explicit ``rng`` is passed. The official code draws y and x both from
    ``[0, width - box]`` (its images are square); we use the height for y.
    """

    fraction: float = 0.2
    min_boxes: int = 20
    max_boxes: int = 60
    box_size: int = 32
    seed: int = 2401

    def select(self, groups: Sequence[str]) -> set[str]:
        """The chosen subset of the distinct ``groups`` (ref ids), in first-appearance order."""
        unique = list(dict.fromkeys(groups))
        k = int(len(unique) * self.fraction)
        return set(random.Random(self.seed).sample(unique, k))

    def apply(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        """A copy of ``image`` (RGB) with the random black boxes pasted in."""
        r = rng if rng is not None else random
        arr = np.array(image.convert("RGB"), dtype=np.uint8)
        h, w = arr.shape[:2]
        s = self.box_size
        for _ in range(r.randint(self.min_boxes, self.max_boxes)):
            y, x = r.randint(0, max(h - s, 0)), r.randint(0, max(w - s, 0))
            arr[y : y + s, x : x + s] = 0
        return Image.fromarray(arr, "RGB")


class ReferringDataset(Dataset):
    """A ``Dataset`` over :class:`Sample` s (one item per sentence).

    Items are :class:`ReferringItem` dicts: ``image`` (PIL RGB, native size), ``expression``, ``mask``
    (bool (H, W) ndarray, native size), ``category``, ``id``, ``image_id``, ``split``. ``transform`` (if
    given) is applied to the item dict and its result returned instead.

    Args:
        samples: the samples, in order.
        occlusion: :class:`OcclusionAugmentation` (or ``True`` for the official settings) applied to the
            chosen subset of the *train* samples' refs; ``None``/``False`` disables it.
        transform: callable ``item -> anything``.
        on_error: what to do with a broken sample (image or mask missing or unreadable, mask size ≠ image
            size): ``"raise"`` (default) a :class:`SampleError` naming it when it is loaded, or ``"skip"``:
            every sample is checked once here (images and masks decoded) and broken ones are left out, with
            a warning; :attr:`skipped` lists them as ``(sample id, reason)``.
        empty_masks: samples whose mask has no foreground pixel: ``"keep"`` (default, as the official
            code), ``"skip"`` (checked here, like ``on_error="skip"``) or ``"raise"`` (when loaded).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        occlusion: OcclusionAugmentation | bool | None = None,
        transform: Callable[[ReferringItem], Any] | None = None,
        on_error: OnError = "raise",
        empty_masks: EmptyMasks = "keep",
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if empty_masks not in ("keep", "skip", "raise"):
            raise ValueError(f"empty_masks must be 'keep', 'skip' or 'raise', got {empty_masks!r}")
        self.on_error, self.empty_masks = on_error, empty_masks
        self.skipped: list[tuple[str, str]] = []
        self.samples = list(samples)
        if on_error == "skip" or empty_masks == "skip":
            self.samples = self._drop_bad_samples(self.samples)
        self.transform = transform
        if occlusion is True:
            occlusion = OcclusionAugmentation()
        self.occlusion: OcclusionAugmentation | None = occlusion or None
        self.occluded_groups: set[str] = set()
        if self.occlusion is not None:
            train_groups = [s.group for s in self.samples if s.split == "train"]
            self.occluded_groups = self.occlusion.select(train_groups)

    @classmethod
    def from_records(cls, records: Iterable[ManifestRecord], root: str | Path, **kwargs) -> ReferringDataset:
        """Dataset over manifest records whose paths are relative to ``root`` (the manifest's folder)."""
        return cls([sample_from_record(r, root) for r in records], **kwargs)

    def __len__(self) -> int:
        return len(self.samples)

    def is_occluded(self, index: int) -> bool:
        s = self.samples[index]
        return self.occlusion is not None and s.split == "train" and s.group in self.occluded_groups

    def _load(self, s: Sample) -> tuple[Image.Image, np.ndarray]:
        """The sample's image and mask, or :class:`SampleError` saying what is wrong with them."""
        try:
            image = _read_image(s)
            return image, self._read_mask(s, (image.height, image.width))
        except _Problem as e:
            raise SampleError(f"sample {s.id!r}: {e}") from e.__cause__

    def _read_mask(self, s: Sample, size: tuple[int, int], check_empty: bool = True) -> np.ndarray:
        try:
            mask = s.load_mask()
        except Exception as e:  # missing/unreadable mask file, annotation id absent from the index
            where = f" {s.mask_path}" if s.mask_path is not None else ""
            raise _Problem(f"cannot read mask{where} ({type(e).__name__}: {e}){_HINT}") from e
        if mask.shape != size:
            raise _Problem(
                f"mask {mask.shape[0]}×{mask.shape[1]} does not match image {size[0]}×{size[1]} (H×W) of "
                f"{s.image_path}{_HINT}"
            )
        if check_empty and self.empty_masks == "raise" and not mask.any():
            raise _Problem("the mask has no foreground pixel (empty_masks='raise')")
        return mask

    def _drop_bad_samples(self, samples: list[Sample]) -> list[Sample]:
        """Check every sample once (each image decoded once) and keep the usable ones."""
        sizes: dict[Path, tuple[int, int] | _Problem] = {}
        kept = []
        for s in samples:
            key = Path(s.image_path)
            if key not in sizes:
                try:
                    image = _read_image(s)
                    sizes[key] = (image.height, image.width)
                except _Problem as e:
                    sizes[key] = e
            try:
                size = sizes[key]
                if isinstance(size, _Problem):
                    raise size
                empty = not self._read_mask(s, size, check_empty=False).any()
            except _Problem as e:
                if self.on_error == "raise":
                    raise SampleError(f"sample {s.id!r}: {e}") from e.__cause__
                self.skipped.append((s.id, str(e)))
                continue
            if empty and self.empty_masks == "raise":
                raise SampleError(f"sample {s.id!r}: the mask has no foreground pixel (empty_masks='raise')")
            if empty and self.empty_masks == "skip":
                self.skipped.append((s.id, "the mask has no foreground pixel"))
                continue
            kept.append(s)
        if self.skipped:
            shown = ", ".join(i for i, _ in self.skipped[:5]) + (", …" if len(self.skipped) > 5 else "")
            warnings.warn(
                f"skipped {len(self.skipped)} of {len(samples)} samples ({shown}); first reason: "
                f"{self.skipped[0][1]}",
                stacklevel=3,
            )
        return kept

    def __getitem__(self, index: int) -> Any:
        s = self.samples[index]
        image, mask = self._load(s)
        if self.is_occluded(index):
            assert self.occlusion is not None
            image = self.occlusion.apply(image)
        item: ReferringItem = {
            "image": image,
            "expression": s.expression,
            "mask": mask,
            "category": s.category,
            "id": s.id,
            "image_id": s.image_id,
            "split": s.split,
        }
        return self.transform(item) if self.transform is not None else item
