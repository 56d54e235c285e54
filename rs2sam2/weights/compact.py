"""Compact packages: a model folder without the frozen SAM2 weights, restored from a base checkpoint.

The frozen parts of RS2-SAM2 (paper Sec. 3.1: SAM2's Hiera trunk and FPN neck, 212.7 M parameters in the
official model) equal those of a released SAM2 checkpoint. A compact package leaves them out;
``config.base_model`` records the base's repo id, file name and a sha256 of those tensors, and loading
fetches the base through the Hub cache (:mod:`rs2sam2.weights.sources`) and verifies the checksum.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

import torch

from ..config import RS2SAM2Config
from .convert import SAM2_TO_OURS, rename_key
from .sources import ModelSource, hub_file
from .state_dict import CheckpointError, StateDict, check_state_dict, read_state_dict, unwrap_state_dict

logger = logging.getLogger("rs2sam2")

COMPACT_PREFIXES = ("image_encoder.trunk.", "image_encoder.neck.")
"""What a compact package leaves out: the frozen SAM2 trunk and neck, restored from the base."""


def tensor_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of the tensors, in sorted key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _base_tensors(base: Mapping[str, str], prefixes: tuple[str, ...], src: ModelSource | None) -> StateDict:
    """The ``prefixes`` part of a base SAM2 checkpoint, under our names, fetched through the Hub cache."""
    missing = [k for k in ("repo_id", "filename") if not base.get(k)]
    if missing:
        raise CheckpointError(f"config.base_model lacks {missing}; cannot locate the base checkpoint")
    file = hub_file(
        base["repo_id"],
        base["filename"],
        revision=base.get("revision") or None,
        cache_dir=src.cache_dir if src else None,
        local_files_only=src.local_files_only if src else None,
        token=src.token if src else None,
    )
    raw = unwrap_state_dict(read_state_dict(file), str(file))
    out: StateDict = {}
    for key, value in raw.items():
        ours = rename_key(key, SAM2_TO_OURS)
        if ours is not None and ours.startswith(prefixes):
            out[ours] = value
    if not out:
        raise CheckpointError(f"base checkpoint {file} holds none of {list(prefixes)}")
    return out


def restore_from_base(config: RS2SAM2Config, prefixes: tuple[str, ...], src: ModelSource) -> StateDict:
    base = config.base_model
    tensors = _base_tensors(base, prefixes, src)
    digest = tensor_sha256(tensors)
    if digest != base.get("sha256"):
        raise CheckpointError(
            f"base checkpoint {base.get('repo_id')}/{base.get('filename')} does not match this package: "
            f"sha256 of its {len(tensors)} trunk/neck tensors is {digest}, the package expects "
            f"{base.get('sha256')}"
        )
    logger.info("restored %d frozen tensors from base %s/%s", len(tensors), base["repo_id"], base["filename"])
    return tensors


def compact_state(state: StateDict, config: RS2SAM2Config) -> tuple[StateDict, dict[str, str]]:
    """Drop the weights equal to the base checkpoint; returns the rest and the completed base record."""
    base = dict(config.base_model)
    tensors = _base_tensors(base, COMPACT_PREFIXES, None)
    ours = {k: v for k, v in state.items() if k.startswith(COMPACT_PREFIXES)}
    check_state_dict(
        {k: v.shape for k, v in ours.items()}, tensors, f"base {base['repo_id']}/{base['filename']}"
    )
    differing = [
        k for k, v in ours.items() if not torch.equal(v.detach().cpu().to(tensors[k].dtype), tensors[k])
    ]
    if differing:
        raise ValueError(
            f"{len(differing)} frozen tensors differ from base {base['repo_id']}/{base['filename']} "
            f"(e.g. {differing[:3]}); save a full package instead (compact=False)"
        )
    base["sha256"] = tensor_sha256(tensors)
    return {k: v for k, v in state.items() if k not in ours}, base
