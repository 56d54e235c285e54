"""RRSIS-D: the refer-style layout (``RS2-SAM2:data/dataset_refer_bert.py`` + ``refer/refer.py``)::

    ROOT/images/rrsisd/JPEGImages/<file_name>       ROOT/rrsisd/refs(unc).p      ROOT/rrsisd/instances.json

* The refs pickle is read with a restricted unpickler: only builtin containers and scalars may be
  reconstructed; any other global (``os.system``, ``numpy...``) raises :class:`UnsafePickleError`.
* Split selection as in ``REFER.getRefIds``: ``"test"`` keeps refs whose split string *contains* "test"
  (``testA``/``testB`` too); ``"train"``/``"val"`` match exactly.
* Masks: pycocotools decode of the ref's annotation (polygons, uncompressed RLE, or compressed RLE with
  ``counts`` as str or bytes). ``overlap_quirk=True`` (official, inherited from LAVT/RMSIN): the decoded
  polygon channels are summed and the mask is ``sum == 1`` — a pixel covered by two polygons of the same
  object becomes background. ``overlap_quirk=False`` takes the union (``sum >= 1``).
* One sample per sentence (``sentences[i]["raw"]``), id ``"<ref_id>-<i>"``.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import SPLITS
from .masks import decode_coco_segmentation
from .samples import Sample

RRSISD_REFS = Path("rrsisd") / "refs(unc).p"
RRSISD_INSTANCES = Path("rrsisd") / "instances.json"
RRSISD_IMAGES = Path("images") / "rrsisd" / "JPEGImages"


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global that a refs file does not need, or asks for too much memory."""


# A refs file is a list of dicts of str / int / float / list / bytes (RRSIS-D's refs(unc).p is ~10 MB);
# pickle opcodes build those without naming any global. Protocols 0-2 reconstruct bytes, sets and
# frozensets through a global; those are the only ones handed out, each wrapped so that its arguments can
# only be values already built from the file: ``bytearray(1_500_000_000)`` from a 40-byte pickle is refused.
MAX_REFS_FILE_BYTES = 1 << 30


def _sized(value: Any) -> bool:
    return isinstance(value, (str, bytes, bytearray, list, tuple, set, frozenset, dict))


def _safe_bytes(kind: type) -> Any:
    def build(*args: Any) -> Any:
        if not args or (_sized(args[0]) and all(isinstance(a, str) for a in args[1:])):
            return kind(*args)
        raise UnsafePickleError(
            f"refusing {kind.__name__}({type(args[0]).__name__}, …) in the refs pickle: only a copy of a "
            "value stored in the file is allowed (an integer argument would allocate that many bytes)"
        )

    return build


def _safe_container(kind: type) -> Any:
    def build(*args: Any) -> Any:
        if not args or (len(args) == 1 and isinstance(args[0], (list, tuple, set, frozenset))):
            return kind(*args)
        raise UnsafePickleError(
            f"refusing {kind.__name__}() of a {type(args[0]).__name__} in the refs pickle"
        )

    return build


def _safe_encode(text: Any, encoding: str = "utf-8", *rest: Any) -> bytes:
    """``_codecs.encode`` as protocols 0-2 use it for ``bytes``: latin-1 of a stored string (same length)."""
    if isinstance(text, str) and encoding in ("latin1", "latin-1") and not rest:
        return text.encode("latin1")
    raise UnsafePickleError("refusing _codecs.encode other than latin-1 of a string in the refs pickle")


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _safe_encode,
    ("builtins", "bytes"): _safe_bytes(bytes),
    ("builtins", "bytearray"): _safe_bytes(bytearray),
    ("builtins", "set"): _safe_container(set),
    ("builtins", "frozenset"): _safe_container(frozenset),
}
_SAFE_GLOBALS |= {("__builtin__", name): f for (m, name), f in list(_SAFE_GLOBALS.items()) if m == "builtins"}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _SAFE_GLOBALS.get((module, name))
        if found is not None:
            return found
        raise UnsafePickleError(
            f"refusing to unpickle global '{module}.{name}': the refs pickle may only contain builtin "
            "containers and scalars"
        )


def safe_pickle_load(path: str | Path, max_bytes: int = MAX_REFS_FILE_BYTES) -> Any:
    """Unpickle a refs file, allowing only builtin containers and scalars (no code execution, no
    allocation beyond what the file holds).

    Containers, strings, numbers, ``None`` and booleans come from pickle opcodes; the only globals
    accepted are the few that protocols 0–2 use to store ``bytes``, ``bytearray``, ``set`` and
    ``frozenset``, and only as copies of values read from the file. Files over ``max_bytes`` are refused
    before reading.

    Raises:
        UnsafePickleError: when the pickle names any other global, calls an allowed one with anything but
            a stored value, or the file is too large (the message says which).
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise UnsafePickleError(f"{path.name} is {size:,} bytes; a refs pickle may be at most {max_bytes:,}")
    data = path.read_bytes()
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def rrsisd_split_matches(ref_split: str, split: str | None) -> bool:
    """``REFER.getRefIds`` split semantics: ``"test"`` matches any split string containing "test"."""
    if split is None:
        return True
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def _manifest_split(ref_split: str) -> str:
    if "test" in ref_split:
        return "test"
    if ref_split in SPLITS:
        return ref_split
    raise ValueError(f"unknown RRSIS-D split {ref_split!r}")


class RRSISDReader:
    """Reader of an RRSIS-D root (refer layout, see module docstring).

    Args:
        root: dataset root (containing ``rrsisd/`` and ``images/rrsisd/JPEGImages``).
        overlap_quirk: official ``sum == 1`` mask rule (default) vs. polygon union.
        refs_file / instances_file / image_dir: override the default locations (relative to ``root``
            unless absolute).
    """

    def __init__(
        self,
        root: str | Path,
        overlap_quirk: bool = True,
        refs_file: str | Path = RRSISD_REFS,
        instances_file: str | Path = RRSISD_INSTANCES,
        image_dir: str | Path = RRSISD_IMAGES,
    ) -> None:
        self.root = Path(root)
        self.overlap_quirk = overlap_quirk
        self.refs_path = self.root / refs_file
        self.instances_path = self.root / instances_file
        self.image_dir = self.root / image_dir
        refs = safe_pickle_load(self.refs_path)
        if not isinstance(refs, list):
            raise ValueError(f"{self.refs_path}: expected a list of refs, got {type(refs).__name__}")
        self.refs: list[dict] = refs
        with self.instances_path.open(encoding="utf-8") as f:
            instances = json.load(f)
        self.images: dict[Any, dict] = {im["id"]: im for im in instances.get("images", [])}
        self.annotations: dict[Any, dict] = {a["id"]: a for a in instances.get("annotations", [])}
        self.categories: dict[Any, str] = {
            c["id"]: c.get("name", str(c["id"])) for c in instances.get("categories", [])
        }

    def ref_ids(self, split: str | None = None) -> list[Any]:
        return [r["ref_id"] for r in self.refs if rrsisd_split_matches(r["split"], split)]

    def load_mask(self, ann_id: Any) -> np.ndarray:
        """Boolean (H, W) mask of annotation ``ann_id`` (size from its image entry)."""
        ann = self.annotations[ann_id]
        img = self.images[ann["image_id"]]
        return decode_coco_segmentation(ann["segmentation"], img["height"], img["width"], self.overlap_quirk)

    def image_path(self, image_id: Any) -> Path:
        return self.image_dir / self.images[image_id]["file_name"]

    def samples(self, split: str | None = None) -> list[Sample]:
        """One :class:`Sample` per sentence of every ref of ``split`` (``None``: all), in refs order."""
        out = []
        for ref in self.refs:
            if not rrsisd_split_matches(ref["split"], split):
                continue
            ref_id, ann_id, image_id = ref["ref_id"], ref["ann_id"], ref["image_id"]
            image = self.images.get(image_id)
            image_path = (
                self.image_dir / image["file_name"] if image else self.image_dir / f"<image {image_id}>"
            )
            cat_id = ref.get("category_id", self.annotations.get(ann_id, {}).get("category_id"))
            category = self.categories.get(cat_id, None if cat_id is None else str(cat_id))
            for i, sent in enumerate(ref["sentences"]):
                out.append(
                    Sample(
                        id=f"{ref_id}-{i}",
                        image_path=image_path,
                        expression=sent["raw"],
                        split=_manifest_split(ref["split"]),
                        mask_loader=functools.partial(self.load_mask, ann_id),
                        category=category,
                        image_id=str(image_id),
                        ref_id=str(ref_id),
                    )
                )
        return out
