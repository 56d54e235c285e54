"""Readers of the two benchmark layouts (RRSIS-D, RefSegRS) and of our JSONL manifest (spec §7, §9).

All paths come from arguments. Every reader yields :class:`Sample` objects — one per sentence, with a lazy
mask loader — and :class:`ReferringDataset` turns a list of samples into a ``torch.utils.data.Dataset`` of
``{"image": PIL RGB, "expression": str, "mask": bool (H, W) ndarray, "category", "id", "image_id",
"split"}`` items. :func:`open_dataset` detects the layout of a path; :func:`to_manifest` converts a benchmark
to our manifest (masks stored as COCO RLE).

RRSIS-D (refer-style, ``RS2-SAM2:data/dataset_refer_bert.py`` + ``refer/refer.py``)::

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

RefSegRS (flat, ``RS2-SAM2:data/refsegrs_refer_bert.py``)::

    ROOT/images/<id>.tif   ROOT/masks/<id>.tif   ROOT/output_phrase_{train,val,test}.txt

* Each line ``<id> <phrase words...>``; the phrase is everything after the first space. The official code
  keeps the line's trailing newline inside the caption; by default we strip trailing line-break characters
  (``keep_trailing_newline=True`` reproduces the official text byte for byte).
* Mask = grey value > 50 (``cv2.imread(path, IMREAD_ANYDEPTH) > 50``); image ``.convert("RGB")``.
* One sample per line, id ``"<id>-<k>"`` (k-th line with that id in the split file).

Occlusion augmentation (official, RRSIS-D train only, not in the paper): at construction a seeded 20 % of
the train refs is chosen once; whenever one of their samples is loaded, 20–60 black 32×32 boxes (original
pixel units) are pasted at random positions before any resizing (:class:`OcclusionAugmentation`).
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .manifest import SPLITS, ManifestRecord, encode_rle, read_manifest, write_manifest

Layout = Literal["manifest", "rrsisd", "refsegrs"]
OnError = Literal["raise", "skip"]
EmptyMasks = Literal["keep", "skip", "raise"]

RRSISD_REFS = Path("rrsisd") / "refs(unc).p"
RRSISD_INSTANCES = Path("rrsisd") / "instances.json"
RRSISD_IMAGES = Path("images") / "rrsisd" / "JPEGImages"
REFSEGRS_PHRASES = "output_phrase_{split}.txt"
REFSEGRS_MASK_THRESHOLD = 50
MANIFEST_NAME = "manifest.jsonl"


# ---------------------------------------------------------------------------------------------------------
# Samples and the common dataset
# ---------------------------------------------------------------------------------------------------------


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
        return load_rgb(self.image_path)

    @property
    def group(self) -> str:
        return self.ref_id if self.ref_id is not None else self.id


class ReferringItem(TypedDict):
    image: Image.Image
    expression: str
    mask: np.ndarray
    category: str | None
    id: str
    image_id: str | None
    split: str


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


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image and return it fully decoded as RGB (the file handle is closed)."""
    with Image.open(path) as im:
        return im.convert("RGB")


@dataclass
class OcclusionAugmentation:
    """Official RRSIS-D random-box occlusion (spec §7; ``add_random_boxes`` in the official dataset).

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


# ---------------------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# RRSIS-D
# ---------------------------------------------------------------------------------------------------------


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
            rles = [_normalise_rle(r, height, width) for r in segmentation]
        else:  # polygons
            rles = mask_utils.frPyObjects([list(map(float, p)) for p in segmentation], height, width)
    elif isinstance(segmentation, dict):
        rles = [_normalise_rle(segmentation, height, width)]
    else:
        raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
    m = mask_utils.decode(rles)  # (H, W, N) uint8
    if m.ndim == 2:
        m = m[:, :, None]
    total = m.astype(np.int64).sum(axis=2)
    return total == 1 if overlap_quirk else total >= 1


def _normalise_rle(rle: dict, height: int, width: int) -> dict:
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        size = rle.get("size", [height, width])
        return mask_utils.frPyObjects(dict(rle, size=list(size)), *size)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": list(rle.get("size", [height, width])), "counts": counts}


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


# ---------------------------------------------------------------------------------------------------------
# RefSegRS
# ---------------------------------------------------------------------------------------------------------


def read_grey(path: str | Path) -> np.ndarray:
    """A mask image as a single-channel array at its native depth (like ``cv2.IMREAD_ANYDEPTH``).

    8/16/32-bit greyscale and float images are returned as stored; colour, palette and 1-bit images are
    converted to 8-bit luma (1-bit: 0/255).
    """
    with Image.open(path) as im:
        if im.mode in ("L", "I", "F") or im.mode.startswith("I;"):
            return np.array(im)
        return np.array(im.convert("L"))


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


# ---------------------------------------------------------------------------------------------------------
# Layout detection, opening, conversion
# ---------------------------------------------------------------------------------------------------------


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
