"""Referring-segmentation metrics: per-sample I/U and IoU, mIoU, oIoU and Pr@{0.5..0.9}, as the official
evaluation (``RS2-SAM2:test.py``) computes them.

Every convention the official evaluation (``RS2-SAM2:test.py``) fixes implicitly is an explicit argument
here, with the official choice as default:

* ``empty_union`` – IoU of a sample whose prediction and ground truth are both empty (U = 0):
  ``"zero"`` (official: IoU 0), ``"one"`` (IoU 1, i.e. a correct "nothing there"), or ``"skip"`` (the sample
  is left out of mIoU and Pr@t; it adds nothing to oIoU anyway since I = U = 0).
* ``pr_compare`` – a sample counts for Pr@t when IoU ``">="`` t (official) or strictly ``">"`` t.
* ``eval_size`` – resolution at which pred and GT are compared. Official: ``1024`` – the prediction comes
  from the 1024×1024 upsampled logits and the GT is resized to 1024×1024 with nearest neighbour, exactly
  like torchvision's ``F.resize(pil_image, (1024, 1024), NEAREST)`` (see :func:`resize_mask_nearest`).
  ``None`` compares at the native resolution of the GT (the prediction must already have that size).

A sample is one sentence: mIoU and Pr@t average over sentences, oIoU = ΣI / ΣU over the split.
All reported values (``mIoU``, ``oIoU``, ``Pr@t``) are percentages.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

EmptyUnion = Literal["zero", "one", "skip"]
PrCompare = Literal[">=", ">"]

PR_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
METRIC_KEYS: tuple[str, ...] = ("mIoU", "oIoU", *(f"Pr@{t}" for t in PR_THRESHOLDS))
OFFICIAL_EVAL_SIZE = 1024

_EMPTY_UNION_CHOICES = ("zero", "one", "skip")
_PR_COMPARE_CHOICES = (">=", ">")


def _check_conventions(empty_union: str, pr_compare: str) -> None:
    if empty_union not in _EMPTY_UNION_CHOICES:
        raise ValueError(f"empty_union must be one of {_EMPTY_UNION_CHOICES}, got {empty_union!r}")
    if pr_compare not in _PR_COMPARE_CHOICES:
        raise ValueError(f"pr_compare must be one of {_PR_COMPARE_CHOICES}, got {pr_compare!r}")


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


def as_binary_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """A binary mask (numpy array or torch tensor, bool or numbers in {0, 1}) as a bool (H, W) array.

    A leading singleton dimension ((1, H, W)) is squeezed. Anything that is not already thresholded
    (values outside {0, 1}) is refused rather than silently binarised.
    """
    if hasattr(mask, "detach"):  # torch tensor
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must be binary (bool or values in {{0, 1}}); threshold it first")
    return arr.astype(bool)


def resize_mask_nearest(mask: Any, size: int | Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a binary (H, W) mask to ``size`` ((h, w) or an int for a square).

    Done with PIL's ``Image.resize(..., NEAREST)`` on a uint8 image, which is exactly what
    ``torchvision.transforms.functional.resize(pil_mask, [h, w], InterpolationMode.NEAREST)`` does for a PIL
    input (the official GT path: ``annot`` as a PIL "P" image -> ``T.Resize(1024, 1024)``). Output pixel
    ``(i, j)`` takes source pixel ``(floor((i + 0.5) * H / h), floor((j + 0.5) * W / w))``.

    Returns:
        bool array of shape (h, w).
    """
    from PIL import Image

    arr = as_binary_mask(mask)
    h, w = _size_hw(size)
    if arr.shape == (h, w):
        return arr.copy()
    im = Image.fromarray(arr.astype(np.uint8), mode="L")
    return np.asarray(im.resize((w, h), Image.Resampling.NEAREST)) > 0


def intersection_union(pred: Any, gt: Any) -> tuple[int, int]:
    """``I = Σ(pred ∧ gt)`` and ``U = Σ(pred ∨ gt)`` of two binary (H, W) masks of equal shape."""
    p = as_binary_mask(pred, "pred")
    g = as_binary_mask(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    return int(np.logical_and(p, g).sum()), int(np.logical_or(p, g).sum())


def iou_from_iu(intersection: int, union: int, empty_union: EmptyUnion = "zero") -> float | None:
    """IoU = I / U; for U = 0: 0.0 (``"zero"``, official), 1.0 (``"one"``) or ``None`` (``"skip"``)."""
    _check_conventions(empty_union, ">=")
    if union == 0:
        return {"zero": 0.0, "one": 1.0, "skip": None}[empty_union]
    return intersection / union


def iou(pred: Any, gt: Any, empty_union: EmptyUnion = "zero") -> float | None:
    """IoU of two binary (H, W) masks of equal shape (see :func:`iou_from_iu` for U = 0)."""
    return iou_from_iu(*intersection_union(pred, gt), empty_union=empty_union)


def prepare_pair(pred: Any, gt: Any, eval_size: int | Sequence[int] | None = OFFICIAL_EVAL_SIZE):
    """Bring a (pred, gt) pair to the evaluation resolution.

    With ``eval_size`` set (official: 1024), the GT is nearest-resized to it and the prediction must already
    be at that size (it comes from the upsampled logits). With ``None`` both must share the GT's native size.

    Returns:
        ``(pred, gt)`` as bool arrays of identical shape.
    """
    p = as_binary_mask(pred, "pred")
    g = as_binary_mask(gt, "gt")
    if eval_size is not None:
        hw = _size_hw(eval_size)
        g = resize_mask_nearest(g, hw)
        if p.shape != hw:
            raise ValueError(
                f"pred shape {p.shape} != evaluation size {hw}; produce the prediction at the evaluation "
                "resolution (or use eval_size=None for native-resolution evaluation)"
            )
    elif p.shape != g.shape:
        raise ValueError(f"native-resolution evaluation: pred shape {p.shape} != gt shape {g.shape}")
    return p, g


@dataclass
class SampleRecord:
    """One evaluated sample (sentence). ``iou`` is ``None`` when it was skipped (U = 0, ``"skip"``)."""

    index: int
    id: str | None
    category: str | None
    intersection: int
    union: int
    iou: float | None


def _summarise(ious: Sequence[float], sum_i: int, sum_u: int, empty_union: str, pr_compare: str) -> dict:
    n = len(ious)
    out: dict[str, float | int] = {}
    arr = np.asarray(ious, dtype=np.float64)
    out["mIoU"] = float(arr.mean() * 100.0) if n else math.nan
    if sum_u > 0:
        out["oIoU"] = sum_i * 100.0 / sum_u
    else:
        out["oIoU"] = {"zero": 0.0, "one": 100.0, "skip": math.nan}[empty_union] if n else math.nan
    for t in PR_THRESHOLDS:
        hits = (arr >= t) if pr_compare == ">=" else (arr > t)
        out[f"Pr@{t}"] = float(hits.sum() * 100.0 / n) if n else math.nan
    out["num_samples"] = n
    return out


class MetricAccumulator:
    """Streaming mIoU / oIoU / Pr@t over a split, with per-category breakdown and per-sample records.

    Args:
        empty_union: IoU when U = 0: ``"zero"`` (official), ``"one"`` or ``"skip"``.
        pr_compare: ``">="`` (official) or ``">"`` for Pr@t.
        eval_size: evaluation resolution; ``1024`` (official: GT nearest-resized to 1024×1024, pred must
            be 1024×1024), an (h, w) pair, or ``None`` for native resolution (pred must match the GT).

    Example::

        acc = MetricAccumulator()
        for pred_1024, gt_native, cat in samples:
            acc.add(pred_1024, gt_native, category=cat)
        acc.compute()  # {"mIoU": ..., "oIoU": ..., "Pr@0.5": ..., ..., "num_samples": N}
    """

    def __init__(
        self,
        empty_union: EmptyUnion = "zero",
        pr_compare: PrCompare = ">=",
        eval_size: int | Sequence[int] | None = OFFICIAL_EVAL_SIZE,
    ) -> None:
        _check_conventions(empty_union, pr_compare)
        self.empty_union: EmptyUnion = empty_union
        self.pr_compare: PrCompare = pr_compare
        self.eval_size = None if eval_size is None else _size_hw(eval_size)
        self.records: list[SampleRecord] = []

    def reset(self) -> None:
        self.records.clear()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_skipped(self) -> int:
        """Samples left out of mIoU / Pr@t (only with ``empty_union="skip"``)."""
        return sum(r.iou is None for r in self.records)

    def add(
        self, pred: Any, gt: Any, category: str | None = None, sample_id: str | None = None
    ) -> float | None:
        """Add one sample: binary ``pred`` and ``gt`` masks (numpy or torch, (H, W) or (1, H, W)).

        Returns:
            the sample's IoU (``None`` if skipped).
        """
        p, g = prepare_pair(pred, gt, self.eval_size)
        return self.add_iu(*intersection_union(p, g), category=category, sample_id=sample_id)

    def add_iu(
        self, intersection: int, union: int, category: str | None = None, sample_id: str | None = None
    ) -> float | None:
        """Add one sample from its already computed intersection and union pixel counts."""
        if not 0 <= intersection <= union:
            raise ValueError(f"need 0 <= intersection <= union, got I={intersection}, U={union}")
        value = iou_from_iu(intersection, union, self.empty_union)
        self.records.append(
            SampleRecord(len(self.records), sample_id, category, int(intersection), int(union), value)
        )
        return value

    def _compute(self, records: Iterable[SampleRecord]) -> dict[str, float | int]:
        records = list(records)
        ious = [r.iou for r in records if r.iou is not None]
        sum_i = sum(r.intersection for r in records)
        sum_u = sum(r.union for r in records)
        return _summarise(ious, sum_i, sum_u, self.empty_union, self.pr_compare)

    def compute(self) -> dict[str, float | int]:
        """``{"mIoU", "oIoU", "Pr@0.5", ..., "Pr@0.9"}`` in percent plus ``"num_samples"`` (samples counted
        in mIoU / Pr@t). Values are NaN when nothing was counted."""
        return self._compute(self.records)

    def compute_per_category(self) -> dict[str, dict[str, float | int]]:
        """The same metrics per category (samples added without a category are grouped under ``"None"``)."""
        groups: dict[str, list[SampleRecord]] = {}
        for r in self.records:
            groups.setdefault(str(r.category), []).append(r)
        return {cat: self._compute(recs) for cat, recs in sorted(groups.items())}

    def sample_rows(self) -> list[dict[str, Any]]:
        """Per-sample records as dicts (``index, id, category, intersection, union, iou``)."""
        return [asdict(r) for r in self.records]

    def write_csv(self, path: str | Path) -> Path:
        """Write the per-sample records as CSV (empty cell for a skipped IoU)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = ["index", "id", "category", "intersection", "union", "iou"]
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for row in self.sample_rows():
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return path


def compute_metrics(
    preds: Iterable[Any],
    gts: Iterable[Any],
    categories: Iterable[str | None] | None = None,
    *,
    empty_union: EmptyUnion = "zero",
    pr_compare: PrCompare = ">=",
    eval_size: int | Sequence[int] | None = OFFICIAL_EVAL_SIZE,
) -> dict[str, float | int]:
    """One-shot :meth:`MetricAccumulator.compute` over paired sequences of binary masks."""
    acc = MetricAccumulator(empty_union=empty_union, pr_compare=pr_compare, eval_size=eval_size)
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground truths")
    cats = [None] * len(preds) if categories is None else list(categories)
    for p, g, c in zip(preds, gts, cats, strict=True):
        acc.add(p, g, category=c)
    return acc.compute()
