"""RefSegRS: the flat layout (``RS2-SAM2:data/refsegrs_refer_bert.py``)::

    ROOT/images/<id>.tif   ROOT/masks/<id>.tif   ROOT/output_phrase_{train,val,test}.txt

* Each line ``<id> <phrase words...>``; the phrase is everything after the first space. The official code
  keeps the line's trailing newline inside the caption; by default we strip trailing line-break characters
  (``keep_trailing_newline=True`` reproduces the official text byte for byte).
* Mask = grey value > 50 (``cv2.imread(path, IMREAD_ANYDEPTH) > 50``); image ``.convert("RGB")``.
* One sample per line, id ``"<id>-<k>"`` (k-th line with that id in the split file).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..images import read_grey
from .manifest import SPLITS
from .samples import Sample

REFSEGRS_PHRASES = "output_phrase_{split}.txt"
REFSEGRS_MASK_THRESHOLD = 50


def load_refsegrs_mask(path: str | Path, threshold: int = REFSEGRS_MASK_THRESHOLD) -> np.ndarray:
    """RefSegRS target: grey value > ``threshold`` (official 50), bool (H, W)."""
    return read_grey(path) > threshold


def parse_phrase_line(line: str, keep_trailing_newline: bool = False) -> tuple[str, str]:
    """Split a RefSegRS phrase line into ``(id, phrase)``.

    The phrase is everything after the first space (the official ``' '.join(line.split(' ')[1:])``, which
    keeps runs of spaces). Trailing ``\\n`` (files are read in universal-newline mode, as officially) is
    stripped unless ``keep_trailing_newline``.
    """
    head, sep, rest = line.partition(" ")
    if not keep_trailing_newline:
        head, rest = head.rstrip("\n"), rest.rstrip("\n")
    return head, rest


class RefSegRSReader:
    """Reader of a RefSegRS root (flat layout, see module docstring).

    Args:
        root: dataset root (``images/``, ``masks/``, ``output_phrase_<split>.txt``).
        keep_trailing_newline: keep the official newline at the end of each phrase (default: stripped).
        mask_threshold: foreground iff grey value > this (official 50).
    """

    def __init__(
        self,
        root: str | Path,
        keep_trailing_newline: bool = False,
        mask_threshold: int = REFSEGRS_MASK_THRESHOLD,
    ) -> None:
        self.root = Path(root)
        self.keep_trailing_newline = keep_trailing_newline
        self.mask_threshold = mask_threshold

    def phrase_file(self, split: str) -> Path:
        return self.root / REFSEGRS_PHRASES.format(split=split)

    def available_splits(self) -> list[str]:
        return [s for s in SPLITS if self.phrase_file(s).is_file()]

    def samples(self, split: str | None = None) -> list[Sample]:
        """One :class:`Sample` per non-empty line of the split's phrase file(s) (``None``: all present)."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        splits = self.available_splits() if split is None else [split]
        out = []
        for sp in splits:
            seen: dict[str, int] = {}
            with self.phrase_file(sp).open(encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    img_id, phrase = parse_phrase_line(line, self.keep_trailing_newline)
                    img_id = img_id.strip()
                    k = seen.get(img_id, 0)
                    seen[img_id] = k + 1
                    mask_path = self.root / "masks" / f"{img_id}.tif"
                    out.append(
                        Sample(
                            id=f"{img_id}-{k}",
                            image_path=self.root / "images" / f"{img_id}.tif",
                            expression=phrase,
                            split=sp,
                            mask_loader=functools.partial(load_refsegrs_mask, mask_path, self.mask_threshold),
                            image_id=img_id,
                            mask_path=mask_path,
                        )
                    )
        return out
