"""Our own dataset format: one JSON object per line (JSONL), paths relative to the manifest's folder.

Each line::

    {"id": "000123-0", "image": "images/000123.png", "expression": "the red car on the left",
     "mask": "masks/000123-0.png"  |  {"size": [H, W], "counts": "<COCO compressed RLE>"},
     "split": "train" | "val" | "test", "category": "vehicle" | null, "image_id": "000123"}

Both benchmark readers (RRSIS-D, RefSegRS) convert to it and the synthetic generator writes it.
:func:`read_manifest_samples` reads a manifest as :class:`~rs2sam2.data.samples.Sample` s and
:func:`samples_to_records` turns any reader's samples into records (masks stored as COCO RLE).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .masks import decode_rle, encode_rle, read_mask_png
from .samples import Sample

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.jsonl"


@dataclass
class ManifestRecord:
    id: str
    image: str
    expression: str
    mask: str | dict[str, Any]
    split: str
    category: str | None = None
    image_id: str | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"record {self.id!r}: split must be one of {SPLITS}, got {self.split!r}")
        if not isinstance(self.expression, str):
            raise ValueError(f"record {self.id!r}: expression must be a string")

    def image_path(self, root: str | Path) -> Path:
        return Path(root) / self.image

    def load_mask(self, root: str | Path) -> np.ndarray:
        """The target mask as a boolean (H, W) array."""
        if isinstance(self.mask, dict):
            return decode_rle(self.mask)
        return read_mask_png(Path(root) / self.mask)


def read_manifest(path: str | Path, split: str | None = None) -> list[ManifestRecord]:
    """Read a JSONL manifest; ``split`` keeps only that split. Errors name the line."""
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = ManifestRecord(**json.loads(line))
            except (json.JSONDecodeError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: not a valid manifest record ({e})") from None
            if split is None or rec.split == split:
                records.append(rec)
    return records


def write_manifest(path: str | Path, records: Iterable[ManifestRecord]) -> int:
    """Write records as JSONL (atomically: temporary file + rename). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(asdict(rec), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def _record_mask(record: ManifestRecord, root: Path) -> np.ndarray:
    return record.load_mask(root)


def sample_from_record(record: ManifestRecord, root: str | Path) -> Sample:
    """A :class:`Sample` of a manifest record (paths relative to ``root``)."""
    root = Path(root)
    return Sample(
        id=record.id,
        image_path=record.image_path(root),
        expression=record.expression,
        split=record.split,
        mask_loader=functools.partial(_record_mask, record, root),
        category=record.category,
        image_id=record.image_id,
        mask_path=None if isinstance(record.mask, dict) else root / record.mask,
    )


def read_manifest_samples(path: str | Path, split: str | None = None) -> list[Sample]:
    """Samples of a JSONL manifest (paths relative to its folder)."""
    path = Path(path)
    return [sample_from_record(r, path.parent) for r in read_manifest(path, split)]


def _relative(path: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    except ValueError:  # different drives (Windows)
        return path.resolve().as_posix()


def samples_to_records(samples: Iterable[Sample], manifest_dir: str | Path) -> Iterable[ManifestRecord]:
    """Manifest records of samples: image paths relative to ``manifest_dir``, masks decoded, stored as RLE."""
    manifest_dir = Path(manifest_dir)
    for s in samples:
        yield ManifestRecord(
            id=s.id,
            image=_relative(Path(s.image_path), manifest_dir),
            expression=s.expression,
            mask=encode_rle(s.load_mask()),
            split=s.split,
            category=s.category,
            image_id=s.image_id,
        )
