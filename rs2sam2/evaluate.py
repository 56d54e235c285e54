"""Evaluation of a referring-segmentation model on a dataset split (paper Tables 1–2, their metrics).

:func:`evaluate` runs the model on every sample (one sentence each) and scores it with
:class:`~rs2sam2.metrics.MetricAccumulator`:

* ``resolution="official"``: as ``RS2-SAM2:test.py`` — the prediction is ``logits > threshold`` on the
  S×S upsampled logits (S = ``config.image_size``, 1024 in the official model) and the ground truth is
  nearest-resized to S×S.
* ``resolution="native"``: logits bilinearly resized to each image's (H, W), thresholded there, and
  compared with the ground truth at its own size.

``shuffle_text=True`` is a text-blind control: sample ``i`` is segmented with the expression of sample
``perm[i]``, ``perm`` a seeded derangement of the split (no sample keeps its own sentence; sentences of the
same image are avoided whenever the split allows). A model that reads the text should score far lower.

``rs2sam2 evaluate`` prints the paper's table layout (Pr@0.5 … Pr@0.9, oIoU, mIoU), optionally beside the
paper's RS2-SAM2 row (:data:`PAPER_RESULTS`), and writes the metrics as JSON and the per-sample rows as CSV.
"""

from __future__ import annotations

import csv
import json
import math
import random
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from .metrics import METRIC_KEYS, MetricAccumulator, resize_mask_nearest
from .processing import GridReduction, grid_target

if TYPE_CHECKING:
    from .processing import RS2SAM2Processor
    from .weights.pretrained import RS2SAM2

Resolution = Literal["official", "native"]
RESOLUTIONS: tuple[str, ...] = ("official", "native")
#: Columns of the per-sample CSV, in order.
CSV_COLUMNS: tuple[str, ...] = ("id", "expression", "IoU", "I", "U", "category")
#: Column order of the paper's result tables.
TABLE_COLUMNS: tuple[str, ...] = ("Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "oIoU", "mIoU")

#: RS2-SAM2's own rows of the paper's Table 1 (RefSegRS) and Table 2 (RRSIS-D), in %.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "refsegrs": {
        "val": {
            "Pr@0.5": 95.36, "Pr@0.6": 94.90, "Pr@0.7": 92.58, "Pr@0.8": 83.76, "Pr@0.9": 36.66,
            "oIoU": 88.03, "mIoU": 85.21,
        },
        "test": {
            "Pr@0.5": 84.31, "Pr@0.6": 79.42, "Pr@0.7": 70.89, "Pr@0.8": 55.70, "Pr@0.9": 21.19,
            "oIoU": 80.87, "mIoU": 73.90,
        },
    },
    "rrsisd": {
        "val": {
            "Pr@0.5": 79.25, "Pr@0.6": 74.08, "Pr@0.7": 63.85, "Pr@0.8": 50.57, "Pr@0.9": 30.40,
            "oIoU": 80.16, "mIoU": 68.81,
        },
        "test": {
            "Pr@0.5": 77.56, "Pr@0.6": 72.34, "Pr@0.7": 61.76, "Pr@0.8": 47.92, "Pr@0.9": 29.73,
            "oIoU": 78.99, "mIoU": 66.72,
        },
    },
}  # fmt: skip
PAPER_DATASET_NAMES = {"refsegrs": "RefSegRS", "rrsisd": "RRSIS-D"}


# --------------------------------------------------------------------------------------------- helpers
def derangement(n: int, seed: int, groups: Sequence[Any] | None = None) -> list[int]:
    """A seeded random permutation ``perm`` of ``range(n)`` with ``perm[i] != i`` for every ``i``.

    With ``groups`` (e.g. image ids), ``groups[perm[i]] != groups[i]`` too whenever possible, i.e. when
    no group holds more than half of the items; otherwise only the fixed-point-free property is kept
    (with a warning). ``n`` must not be 1.

    Method: items are listed group by group (groups and members in random order) and each position takes
    the item ``m`` places further along, ``m`` = the largest group size, so it lands in another group.
    Without groups every item is its own group (``m = 1``): a random cyclic permutation.
    """
    if n == 1:
        raise ValueError("a derangement of a single item does not exist (the split has one sample)")
    if n == 0:
        return []
    rng = random.Random(seed)
    keys: list[Any] = list(range(n)) if groups is None else list(groups)
    if len(keys) != n:
        raise ValueError(f"groups has {len(keys)} entries for {n} items")
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(keys):
        members.setdefault(g, []).append(i)
    shift = max(len(m) for m in members.values())
    if 2 * shift > n:
        warnings.warn(
            f"one group holds {shift} of {n} samples: some shuffled sentences come from the same image",
            stacklevel=2,
        )
        members = {i: [i] for i in range(n)}
        shift = 1
    order_groups = list(members.values())
    rng.shuffle(order_groups)
    order: list[int] = []
    for m in order_groups:
        m = list(m)
        rng.shuffle(m)
        order.extend(m)
    perm = [0] * n
    for k, item in enumerate(order):
        perm[item] = order[(k + shift) % n]
    return perm


def _sample_fields(dataset: Any, index: int) -> tuple[str, Any]:
    """(expression, image id) of a sample, without loading its image when the dataset allows."""
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        s = samples[index]
        return s.expression, s.image_id if s.image_id is not None else s.image_path
    item = dataset[index]
    return item["expression"], item.get("image_id")


def metrics_from_rows(rows: Sequence[dict[str, Any]]) -> dict[str, float | int]:
    """Split metrics (``mIoU``, ``oIoU``, ``Pr@t`` in %, ``num_samples``) from per-sample ``I``/``U`` rows."""
    acc = MetricAccumulator(eval_size=None)
    for r in rows:
        acc.add_iu(int(r["I"]), int(r["U"]), category=r.get("category"), sample_id=r.get("id"))
    return acc.compute()


# ------------------------------------------------------------------------------ pseudo-mask diagnostics
@torch.no_grad()
def pseudo_mask_separation(
    pseudo_mask: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """How well the pseudo-mask (B, 1, g, g) separates the referred object (B, H, W): per sample, its mean
    probability on the target's cells and on the other cells. Returns two (B,) tensors; a sample
    without target cells gets NaN as its on-target mean.

    A generator that learns shows the first rising and the second falling; one that does not learn shows
    both equal (the failure of training from scratch without the pseudo-mask loss).
    """
    p = pseudo_mask.float()  # (B, 1, g, g)
    g = p.shape[-1]
    # a cell is the target's when any target pixel falls in it (the pseudo-mask loss's "max" grid target)
    t = grid_target(target.to(p.device), g).flatten(1) > 0  # (B, g·g)
    p = p.flatten(1)  # (B, g·g)
    fg_n, bg_n = t.sum(1), (~t).sum(1)
    on = torch.where(fg_n > 0, (p * t).sum(1) / fg_n.clamp(min=1), torch.full_like(p[:, 0], float("nan")))
    off = (p * ~t).sum(1) / bg_n.clamp(min=1)
    return on, off


def peak_in_target(
    pseudo_logits: torch.Tensor, target: torch.Tensor, reduction: GridReduction = "max"
) -> torch.Tensor:
    """Per sample, whether the pseudo-mask's highest cell holds part of the target (B,) bool.

    ``pseudo_logits`` (B, 1, g, g): the pseudo-mask as logits or probabilities (only its argmax counts).
    ``target`` (B, H, W) is reduced to the pseudo-mask's grid by :func:`grid_target` (``"max"``: a cell
    holds the target when any target pixel falls in it). Ties go to the first cell in row-major order.
    """
    x = pseudo_logits.flatten(1)
    cells = grid_target(target.to(x.device), pseudo_logits.shape[-1], reduction).flatten(1)
    return cells.gather(1, x.argmax(1, keepdim=True))[:, 0] > 0


def pseudo_mask_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean pseudo-mask probability on target cells and on background cells over evaluation rows that
    carry them (``pm_target`` / ``pm_background``, from :func:`rs2sam2.evaluate.evaluate`)."""
    on = [r["pm_target"] for r in rows if r.get("pm_target") is not None and not math.isnan(r["pm_target"])]
    off = [r["pm_background"] for r in rows if r.get("pm_background") is not None]
    out = {}
    if on:
        out["pm_target"] = float(np.mean(on))
    if off:
        out["pm_background"] = float(np.mean(off))
    return out


def _intersection_union(pred: torch.Tensor, gt: torch.Tensor) -> tuple[int, int]:
    return int((pred & gt).sum()), int((pred | gt).sum())


# ----------------------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def evaluate(
    model: RS2SAM2,
    processor: RS2SAM2Processor,
    dataset: Any,
    *,
    resolution: Resolution = "official",
    shuffle_text: bool = False,
    seed: int = 2401,
    batch_size: int = 1,
    indices: Sequence[int] | None = None,
    threshold: float | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> tuple[dict[str, float | int], list[dict[str, Any]]]:
    """Evaluate ``model`` on ``dataset`` (items: ``image``, ``expression``, ``mask``, ``category``, ``id``).

    Args:
        model: the model, on the device to run on; it is put in eval mode (and its mode restored after).
        processor: turns images and sentences into model inputs.
        dataset: a map-style dataset of referring items (e.g. :func:`rs2sam2.data.readers.open_dataset`).
        resolution: ``"official"`` (S×S logits vs nearest-resized GT) or ``"native"`` (see module docstring).
        shuffle_text: use the expression of another sample (a seeded derangement of the whole dataset).
        seed: seed of that derangement.
        batch_size: samples per forward. The official evaluation uses 1; larger batches pad the sentences
            to a common length, and the fusion layers skip the pads, so every sample's mask is the one it
            gets alone (up to float rounding).
        indices: evaluate only these dataset indices (e.g. one shard per process); the derangement is still
            drawn over the whole dataset.
        threshold: logit threshold (default ``config.mask_threshold`` = 0.5, the official argmax).
        autocast_dtype: run the forward under ``torch.autocast`` with this dtype (CUDA bf16).
        progress: show a tqdm bar.

    Returns:
        ``(metrics, rows)``: metrics with keys ``mIoU``, ``oIoU``, ``Pr@0.5`` … ``Pr@0.9`` (in %) and
        ``num_samples``; one row per sample with :data:`CSV_COLUMNS` (``IoU`` as a fraction), and for
        RS2-SAM2 models ``pm_target`` / ``pm_background``: the pseudo-mask's mean probability on the
        target's 14×14 grid cells (NaN for an empty target) and on the other cells.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)
    order = list(range(n)) if indices is None else [int(i) for i in indices]
    text_source = list(range(n))
    if shuffle_text and n:
        groups = [_sample_fields(dataset, i)[1] for i in range(n)]
        text_source = derangement(n, seed, groups=[str(g) for g in groups])

    thr = model.config.mask_threshold if threshold is None else float(threshold)
    size = model.config.image_size
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    )
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="evaluate", unit="sample", dynamic_ncols=True)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            items = [dataset[i] for i in chunk]
            texts = [
                _sample_fields(dataset, text_source[i])[0] if shuffle_text else it["expression"]
                for i, it in zip(chunk, items)
            ]
            inputs = processor([it["image"] for it in items], texts)
            with autocast:
                out = model(**inputs.model_inputs(device, dtype))
            logits = out.logits.float()
            if resolution == "official":
                preds = list((logits[:, 0] > thr).cpu())
            else:
                preds = [p.cpu() for p in processor.post_process_masks(logits, inputs.original_sizes, thr)]
            for j, (it, text, pred) in enumerate(zip(items, texts, preds)):
                gt = np.asarray(it["mask"]).astype(bool)
                pm_on = pm_off = None  # the pseudo-mask's mean on the target's grid cells and elsewhere
                if getattr(out, "pseudo_mask", None) is not None:
                    on, off = pseudo_mask_separation(
                        out.pseudo_mask[j : j + 1].float(), torch.from_numpy(np.ascontiguousarray(gt))[None]
                    )
                    pm_on, pm_off = float(on[0]), float(off[0])
                if resolution == "official":
                    gt = resize_mask_nearest(gt, size)
                i_, u_ = _intersection_union(pred, torch.from_numpy(np.ascontiguousarray(gt)))
                rows.append(
                    {
                        "id": it.get("id"),
                        "expression": text,
                        "IoU": i_ / u_ if u_ > 0 else 0.0,  # official: IoU = 0 when U = 0
                        "I": i_,
                        "U": u_,
                        "category": it.get("category"),
                    }
                    | ({} if pm_off is None else {"pm_target": pm_on, "pm_background": pm_off})
                )
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return metrics_from_rows(rows), rows


# -------------------------------------------------------------------------------------------- output
def metrics_json(metrics: dict[str, Any]) -> dict[str, Any]:
    """Exactly ``mIoU``, ``oIoU``, ``Pr@0.5`` … ``Pr@0.9`` (in %) and ``num_samples``."""
    return {**{k: float(metrics[k]) for k in METRIC_KEYS}, "num_samples": int(metrics["num_samples"])}


def write_json(path: str | Path, metrics: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics_json(metrics), indent=2) + "\n", encoding="utf-8")
    return path


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """One line per sample with :data:`CSV_COLUMNS` (IoU as a fraction, I and U in pixels)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r[k] for k in CSV_COLUMNS})
    return path


def format_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The paper's table layout: one line per (name, metrics), columns :data:`TABLE_COLUMNS` in %."""
    width = max([len("method")] + [len(name) for name, _ in rows])
    header = f"{'method':<{width}}  " + "  ".join(f"{c:>7}" for c in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    for name, m in rows:
        cells = []
        for c in TABLE_COLUMNS:
            v = m.get(c)
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            cells.append(f"{'–':>7}" if missing else f"{v:7.2f}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def paper_row(dataset: str, split: str) -> tuple[str, dict[str, float]]:
    """The paper's RS2-SAM2 row for ``dataset`` (``rrsisd``/``refsegrs``); ``val`` for the val split, else
    ``test``."""
    table = PAPER_RESULTS[dataset]
    key = "val" if split == "val" else "test"
    return f"RS2-SAM2 paper ({PAPER_DATASET_NAMES[dataset]} {key})", table[key]


# ------------------------------------------------------------------------------------------- loading
def load_model_and_processor(
    path_or_repo: str | None = None, *, subfolder: str | None = None, device: str | None = None
) -> tuple[RS2SAM2, RS2SAM2Processor]:
    """A model folder / Hub repo (ours or the official release; default: the bundled model), tokenizer."""
    from .predictor import RS2SAM2Predictor

    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictor = RS2SAM2Predictor.from_pretrained(path_or_repo, subfolder=subfolder, device=dev)
    return predictor.model, predictor.processor
