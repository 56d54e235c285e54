"""Our own dataset format: one JSON object per line (JSONL), paths relative to the manifest's folder.

Each line::

    {"id": "000123-0", "image": "images/000123.png", "expression": "the red car on the left",
     "mask": "masks/000123-0.png"  |  {"size": [H, W], "counts": "<COCO compressed RLE>"},
     "split": "train" | "val" | "test", "category": "vehicle" | null, "image_id": "000123"}

Both benchmark readers (RRSIS-D, RefSegRS) convert to it and the synthetic generator writes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")


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
            from pycocotools import mask as mask_utils

            rle = dict(self.mask)
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
            return mask_utils.decode(rle).astype(bool)
        from PIL import Image

        with Image.open(Path(root) / self.mask) as im:
            return np.asarray(im.convert("L")) > 127


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a boolean (H, W) mask, JSON-serialisable."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


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


def iter_manifest(path: str | Path) -> Iterator[ManifestRecord]:
    yield from read_manifest(path)


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
