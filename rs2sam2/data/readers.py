"""Any supported dataset layout: detect it, read its samples, open it as a dataset, convert it to our
manifest.

Three layouts are known — our JSONL manifest (:mod:`rs2sam2.data.manifest`), RRSIS-D
(:mod:`rs2sam2.data.rrsisd`) and RefSegRS (:mod:`rs2sam2.data.refsegrs`); all paths come from arguments.
:func:`detect_layout` tells them apart, :func:`read_samples` returns their :class:`Sample` s (one per
sentence, with a lazy mask loader), :func:`open_dataset` wraps them in a
:class:`~rs2sam2.data.dataset.ReferringDataset`, and :func:`to_manifest` converts a benchmark to our
manifest (masks stored as COCO RLE).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from .dataset import EmptyMasks, OcclusionAugmentation, OnError, ReferringDataset, ReferringItem
from .manifest import MANIFEST_NAME, SPLITS, read_manifest_samples, samples_to_records, write_manifest
from .refsegrs import REFSEGRS_PHRASES, RefSegRSReader
from .rrsisd import RRSISD_INSTANCES, RRSISD_REFS, RRSISDReader
from .samples import Sample

Layout = Literal["manifest", "rrsisd", "refsegrs"]


def detect_layout(path: str | Path) -> tuple[Layout, Path]:
    """Which layout ``path`` is: a ``.jsonl`` manifest file, a folder holding ``manifest.jsonl``, an
    RRSIS-D root or a RefSegRS root.

    Returns:
        ``(layout, resolved path)`` — the manifest file for ``"manifest"``, else the root folder.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: no known layout matches.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_file():
        if p.suffix == ".jsonl":
            return "manifest", p
        raise ValueError(f"{p}: not a .jsonl manifest file")
    if (p / MANIFEST_NAME).is_file():
        return "manifest", p / MANIFEST_NAME
    if (p / RRSISD_REFS).is_file() or (p / RRSISD_INSTANCES).is_file():
        return "rrsisd", p
    if any((p / REFSEGRS_PHRASES.format(split=s)).is_file() for s in SPLITS):
        return "refsegrs", p
    raise ValueError(
        f"{p}: unknown dataset layout (expected a .jsonl manifest, a folder with {MANIFEST_NAME}, an RRSIS-D "
        f"root with {RRSISD_REFS} and {RRSISD_INSTANCES}, or a RefSegRS root with output_phrase_<split>.txt)"
    )


def read_samples(
    root_or_manifest: str | Path,
    split: str | None = None,
    *,
    overlap_quirk: bool = True,
    keep_trailing_newline: bool = False,
) -> list[Sample]:
    """Samples of any supported layout (see :func:`detect_layout`); ``split=None`` reads all splits."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    layout, path = detect_layout(root_or_manifest)
    if layout == "manifest":
        return read_manifest_samples(path, split)
    if layout == "rrsisd":
        return RRSISDReader(path, overlap_quirk=overlap_quirk).samples(split)
    return RefSegRSReader(path, keep_trailing_newline=keep_trailing_newline).samples(split)


def open_dataset(
    root_or_manifest: str | Path,
    split: str | None = None,
    *,
    overlap_quirk: bool = True,
    keep_trailing_newline: bool = False,
    occlusion: OcclusionAugmentation | bool | None = None,
    transform: Callable[[ReferringItem], Any] | None = None,
    on_error: OnError = "raise",
    empty_masks: EmptyMasks = "keep",
) -> ReferringDataset:
    """A :class:`ReferringDataset` of a manifest file / folder with ``manifest.jsonl`` / RRSIS-D root /
    RefSegRS root, detected automatically. Reader options are ignored by layouts they do not apply to.

    ``occlusion`` enables the official random-box augmentation on train samples (the official code only
    uses it for RRSIS-D). ``on_error`` / ``empty_masks``: broken samples and empty masks, see
    :class:`ReferringDataset`.
    """
    samples = read_samples(
        root_or_manifest, split, overlap_quirk=overlap_quirk, keep_trailing_newline=keep_trailing_newline
    )
    return ReferringDataset(
        samples, occlusion=occlusion, transform=transform, on_error=on_error, empty_masks=empty_masks
    )


def to_manifest(
    root: str | Path,
    manifest_path: str | Path,
    splits: Sequence[str] | None = None,
    *,
    overlap_quirk: bool = True,
    keep_trailing_newline: bool = False,
) -> int:
    """Convert an RRSIS-D or RefSegRS root (or another manifest) to our JSONL manifest.

    Masks are decoded with the reader's rules and written inline as COCO RLE; image paths are written
    relative to the manifest's folder (images are not copied). ``splits=None`` converts every split.

    Returns:
        the number of records written.
    """
    manifest_path = Path(manifest_path)
    wanted: Sequence[str | None] = [None] if splits is None else list(splits)
    samples: list[Sample] = []
    for sp in wanted:
        samples.extend(
            read_samples(root, sp, overlap_quirk=overlap_quirk, keep_trailing_newline=keep_trailing_newline)
        )
    return write_manifest(manifest_path, samples_to_records(samples, manifest_path.parent))
