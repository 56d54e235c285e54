"""SAM2 / BEiT-3 base checkpoints → the parts of a fresh :class:`~rs2sam2.RS2SAM2` they initialise.

A training run starts from Meta's SAM2 weights (Hiera trunk, FPN neck, prompt encoder, mask decoder; paper
Sec. 3.1) and a BEiT-3 checkpoint (the union encoder); the fusion layers, the mask prompt generator and the
projections keep their fresh initialisation. Names go through the tables of :mod:`rs2sam2.weights.convert`;
the memory modules SAM2 uses for video are dropped by name. Sources: a state dict, a file, a folder holding
one, or a Hub repo id (fetched through :mod:`rs2sam2.weights.sources`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RS2SAM2Config
from .convert import BEIT3_TO_OURS, SAM2_TO_OURS, SAM2_UNUSED, SAM21_EXTRAS, in_group, rename_key
from .sources import hub_file
from .state_dict import StateDict, check_finite, check_state_dict, read_state_dict, unwrap_state_dict

logger = logging.getLogger("rs2sam2")


@dataclass
class LoadReport:
    """What a base-checkpoint load did.

    loaded: our keys that received checkpoint values.
    fresh: our keys the checkpoint does not provide (they keep their fresh initialisation).
    ignored: checkpoint keys dropped on purpose (documented unused modules).
    unexpected: checkpoint keys not understood (only with ``strict=False``; strict loading raises).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def fresh_modules(self, depth: int = 2) -> dict[str, int]:
        """Fresh keys counted per module prefix of ``depth`` components."""
        counts: dict[str, int] = {}
        for k in self.fresh:
            prefix = ".".join(k.split(".")[:depth])
            counts[prefix] = counts.get(prefix, 0) + 1
        return counts

    def __str__(self) -> str:
        fresh = ", ".join(f"{m} ({n})" for m, n in sorted(self.fresh_modules().items())) or "none"
        return (
            f"{self.source}: loaded {len(self.loaded)} tensors, ignored {len(self.ignored)} unused, "
            f"{len(self.unexpected)} unexpected; fresh initialisation kept for: {fresh}"
        )


@dataclass
class _Base:
    state: Any
    source: str
    hub: dict[str, str] | None = None  # {"repo_id", "filename"} when fetched from the Hub


def _resolve_base(path_or_state: str | Path | Mapping[str, Any], filename: str | None) -> _Base:
    """A state dict (or container) from a mapping, file, folder or Hub repo id."""
    if isinstance(path_or_state, Mapping):
        return _Base(path_or_state, "the given state dict")
    path = Path(path_or_state)
    if path.is_file():
        return _Base(read_state_dict(path), str(path))
    if path.is_dir():
        if filename is None:
            candidates = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth", ".safetensors"))
            if len(candidates) != 1:
                raise FileNotFoundError(
                    f"{path} holds {len(candidates)} checkpoint files ({candidates}); pass filename="
                )
            filename = candidates[0]
        return _Base(read_state_dict(path / filename), str(path / filename))
    repo_id = str(path_or_state)
    if filename is None:
        from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

        if repo_id not in HF_MODEL_ID_TO_FILENAMES:
            raise FileNotFoundError(
                f"{repo_id!r} is not a file or folder, nor a known SAM2 Hub repo; pass filename="
            )
        filename = HF_MODEL_ID_TO_FILENAMES[repo_id][1]
    file = hub_file(repo_id, filename)
    return _Base(read_state_dict(file), f"{repo_id}/{filename}", {"repo_id": repo_id, "filename": filename})


def _load_base(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    *,
    table: tuple[tuple[str, str], ...],
    unused: tuple[str, ...],
    strict: bool,
) -> LoadReport:
    report = LoadReport(source)
    ours = model.state_dict()
    covered = tuple(dst for _, dst in table)  # our modules the table can fill
    converted: StateDict = {}
    renamed_from: dict[str, str] = {}
    for key, value in state_dict.items():
        if in_group(key, unused):
            report.ignored.append(key)
            continue
        dst = rename_key(key, table)
        if dst is None or dst not in ours:
            report.unexpected.append(key)
            continue
        converted[dst] = value
        renamed_from[dst] = key
    expected = {k: v.shape for k, v in ours.items() if in_group(k, covered)}
    if strict:
        check_state_dict(
            expected, converted, source, renamed_from=renamed_from, untranslated=report.unexpected
        )
    else:
        present = {k: v for k, v in expected.items() if k in converted}
        check_state_dict(present, converted, source, renamed_from=renamed_from)
    check_finite(converted, source)
    model.load_state_dict(converted, strict=False)
    report.loaded = sorted(converted)
    report.fresh = [k for k in ours if k not in converted]
    logger.info("%s", report)
    return report


def load_sam2_checkpoint(
    model: nn.Module,
    path_or_state: str | Path | Mapping[str, Any],
    strict: bool = True,
    *,
    filename: str | None = None,
) -> LoadReport:
    """Initialise the SAM2 parts of an :class:`~rs2sam2.RS2SAM2` from a Meta SAM2 checkpoint.

    ``path_or_state``: a state dict (or ``{"model": …}``), a ``.pt`` file, a folder holding one, or a Hub
    repo id such as ``facebook/sam2-hiera-large`` (file name from ``sam2.build_sam``'s table, or
    ``filename``). The Hiera trunk, FPN neck, prompt encoder, mask decoder and ``no_mem_embed`` load; the
    memory modules (:data:`SAM2_UNUSED`, plus SAM 2.1's :data:`SAM21_EXTRAS`) are ignored. With ``strict``
    any other key, or a SAM2 key of ours left uncovered, raises; shape mismatches and non-finite values
    always raise. A Hub source is recorded in ``model.config.base_model`` (used by compact packages).

    Returns:
        A :class:`LoadReport`; its ``fresh`` keys (BHFM layers, BC fusion, union encoder, prompt generator,
        projections) keep their initialisation.
    """
    base = _resolve_base(path_or_state, filename)
    report = _load_base(
        model,
        unwrap_state_dict(base.state, base.source),
        base.source,
        table=SAM2_TO_OURS,
        unused=SAM2_UNUSED + SAM21_EXTRAS,
        strict=strict,
    )
    if base.hub is not None and isinstance(getattr(model, "config", None), RS2SAM2Config):
        model.config.base_model = dict(base.hub)
    return report


def load_beit3_checkpoint(
    model: nn.Module,
    path_or_state: str | Path | Mapping[str, Any],
    strict: bool = True,
    *,
    filename: str | None = None,
) -> LoadReport:
    """Initialise the union encoder from a BEiT-3 checkpoint (``beit3_large_patch16_224.pth``).

    Keys are torchscale names, with or without the ``beit3.`` prefix, optionally under ``"model"``. With
    ``strict`` an unknown key, or a union-encoder key left uncovered, raises; shapes always must match.
    """
    base = _resolve_base(path_or_state, filename)
    return _load_base(
        model,
        unwrap_state_dict(base.state, base.source),
        base.source,
        table=BEIT3_TO_OURS,
        unused=(),
        strict=strict,
    )
