"""State dicts on disk: read (safetensors, ``.pt``, sharded index), unwrap, check strictly, cast.

Loading is strict and loud: unknown keys, missing keys, shape mismatches and non-finite values raise
:class:`CheckpointError` naming them. Pickled files are only read with ``torch.load(weights_only=True)``,
after :mod:`rs2sam2.weights.checkpoint_scan` has bounded what they may allocate. :data:`DTYPES` is the one
map between the dtype names written in ``config.json`` / given on the command line and torch dtypes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..memory import FilePages, all_finite
from .checkpoint_scan import DeclaredSizeError, check_declared_sizes
from .sources import SHARD_INDEX_SUFFIX, WEIGHT_NAMES, ModelSource

StateDict = dict[str, torch.Tensor]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
"""Storage dtypes by name (``package.dtype`` in ``config.json``, ``rs2sam2 convert --dtype``)."""
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose keys, shapes or values do not fit the model."""


# --------------------------------------------------------------------------------------- reading files
def _describe_size(path: Path) -> str:
    return f"{path.stat().st_size:,} bytes"


def read_state_dict(path: str | Path, *, mmap: bool = True) -> StateDict:
    """Read a ``.safetensors`` file or a pickled torch checkpoint (``weights_only=True``) on the CPU.

    Containers are unwrapped: ``{"model": …}`` (SAM2, BEiT-3), ``{"module": …}`` (DeepSpeed) and
    ``{"state_dict": …}``. Raises :class:`CheckpointError` for empty, truncated or corrupt files and for
    pickles that hold anything but tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty (0 bytes): {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        check_declared_sizes(path)  # before torch.load allocates what the file declares
    except DeclaredSizeError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as e:  # legacy (non-zip) pickles cannot be memory-mapped
            if not mmap or "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle errors come in many types; all mean the same to the caller
        if "weights_only" in str(e) or "Weights only load failed" in str(e):
            raise CheckpointError(
                f"{path} holds objects other than tensors; refusing to unpickle it (weights_only=True)"
            ) from e
        raise CheckpointError(
            f"cannot read {path} ({_describe_size(path)}) as a torch checkpoint; is it truncated or "
            f"corrupt? ({type(e).__name__}: {e})"
        ) from e
    return unwrap_state_dict(obj, str(path))


def _read_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot read {path} ({_describe_size(path)}) as safetensors; is it truncated or corrupt? ({e})"
        ) from e


def read_keys(path: str | Path) -> list[str]:
    """The tensor names stored in a checkpoint file, without reading the tensors when possible."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        except (SafetensorError, OSError) as e:
            raise CheckpointError(
                f"cannot read {path} as safetensors; is it truncated or corrupt? ({e})"
            ) from e
    return list(read_state_dict(path))


_CONTAINER_KEYS = ("model", "module", "state_dict")


def unwrap_state_dict(obj: Any, source: str) -> StateDict:
    """The state dict inside a checkpoint container (``{"model": …}``, ``{"module": …}``, …)."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for name in _CONTAINER_KEYS:
            if isinstance(obj.get(name), Mapping):
                return unwrap_state_dict(obj[name], source)
    raise CheckpointError(
        f"{source} is not a state dict: expected a mapping of names to tensors (optionally under one of "
        f"{list(_CONTAINER_KEYS)}), got {type(obj).__name__}"
        + (f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else "")
    )


# ------------------------------------------------------------------------------------- strict checks
def key_listing(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    *,
    renamed_from: Mapping[str, str] | None = None,
    untranslated: Iterable[str] = (),
) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` has exactly the ``expected`` keys and shapes.

    ``renamed_from`` (ours → theirs) lets the message name the checkpoint's own key next to ours;
    ``untranslated`` are checkpoint keys that no table row maps, reported as unexpected too.
    """
    renamed_from = renamed_from or {}

    def name(k: str) -> str:
        return f"{k} (from {renamed_from[k]})" if k in renamed_from else k

    missing = set(expected) - set(state_dict)
    unexpected = {name(k) for k in set(state_dict) - set(expected)} | set(untranslated)
    mismatched = [
        f"{name(k)}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k])}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {key_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {key_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {key_listing(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(problems))


def check_finite(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` if a floating-point tensor holds NaN or ±Inf (meta tensors skipped).

    Tensors of a memory-mapped checkpoint are paged out again once checked (:class:`FilePages`), so the
    check leaves resident only what a forward pass later reads (not, e.g., the whole text embedding).
    """
    pages = FilePages()
    bad = []
    for k, v in state_dict.items():
        if v.is_floating_point() and v.device.type != "meta":
            if not all_finite(v):
                bad.append(k)
            pages.release(v)
    pages.finish()
    if bad:
        raise CheckpointError(
            f"{source} has non-finite (NaN/Inf) values in {len(bad)} tensors: {key_listing(bad)}"
        )


# ------------------------------------------------------------------------------------- model folders
def weight_files(src: ModelSource) -> list[Path]:
    """The weight file(s) of a model folder: a single file or the shards listed by an index."""
    for name in WEIGHT_NAMES:
        path = src.file(name)
        if path is not None:
            return [path]
        index = src.file(name + SHARD_INDEX_SUFFIX)
        if index is not None:
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(f"{index} is not a valid shard index ({e})") from e
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index.name}: 'weight_map' must map tensor names to shard files")
            shards = sorted(set(weight_map.values()), key=str)
            return [src.require(_check_shard_name(shard, index.name)) for shard in shards]
    tried = ", ".join(n for name in WEIGHT_NAMES for n in (name, name + SHARD_INDEX_SUFFIX))
    hint = f" ({src._last_miss})" if src._last_miss and not src.is_local else ""
    raise FileNotFoundError(f"no weights in {src.describe()}: looked for {tried}{hint}")


def _check_shard_name(shard: Any, index_name: str) -> str:
    """A shard file named by an index must be a plain file name inside the model folder (the index is
    data: ``../../etc/passwd`` or an absolute path would make the loader open any file)."""
    text = shard if isinstance(shard, str) else ""
    parts = text.replace("\\", "/").split("/")
    absolute = text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", text)
    if not text or absolute or ".." in parts or "" in parts:
        raise CheckpointError(
            f"{index_name} names the shard {shard!r}: shards must be files inside the model folder "
            "(relative names without '..')"
        )
    return text


def read_weights(files: list[Path]) -> StateDict:
    state: StateDict = {}
    for file in files:
        part = read_state_dict(file)
        overlap = set(state) & set(part)
        if overlap:
            raise CheckpointError(f"shard {file} repeats keys: {sorted(overlap)[:5]}")
        state.update(part)
    return state


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------- dtypes
def cast_state_dict(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> StateDict:
    """Floating-point tensors in ``dtype``. The pages of a memory-mapped source tensor are handed back as
    soon as it is converted, so that loading an fp32 checkpoint in bf16 never holds both (peak: the bf16
    weights plus one tensor)."""
    if not any(v.is_floating_point() and v.dtype != dtype for v in state.values()):
        return dict(state)  # nothing to convert (the usual case): no mappings to list
    pages = FilePages()
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.dtype != dtype:
            out[k] = v.to(dtype)
            pages.release(v)
        else:
            out[k] = v
    pages.finish()
    return out
