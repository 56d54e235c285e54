"""Checkpoints from elsewhere → our parameter names (spec §12): the released RS2-SAM2 weights, and the
SAM2 / BEiT-3 base checkpoints a training run starts from.

Every name change is one row of a table (:data:`OFFICIAL_TO_OURS`, :data:`SAM2_TO_OURS`,
:data:`BEIT3_TO_OURS`); every official key that has no counterpart here is in a documented drop list
(:data:`OFFICIAL_UNUSED`, :data:`SAM2_UNUSED`). Loading is strict and loud: unknown keys, missing keys, shape
mismatches and non-finite values raise :class:`CheckpointError` naming them. Pickled files are only read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RS2SAM2Config
from .memory import FilePages, all_finite, skip_parameter_init

logger = logging.getLogger("rs2sam2")

StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose keys, shapes or values do not fit the model."""


# ----------------------------------------------------------------------------------------- the tables
# A row (theirs, ours) renames the module path ``theirs`` to ``ours``; the rest of the key is kept. Paths are
# matched at ``.`` boundaries, first matching row wins, ``{i}`` stands for a block index.

SAM2_TO_OURS: tuple[tuple[str, str], ...] = (
    ("image_encoder.trunk", "image_encoder.trunk"),
    ("image_encoder.neck", "image_encoder.neck"),
    ("sam_prompt_encoder", "sam_decoder.prompt_encoder"),  # includes the buffer pe_layer.positional_…
    ("sam_mask_decoder", "sam_decoder.mask_decoder"),
    ("no_mem_embed", "sam_decoder.no_mem_embed"),
)
"""Meta's SAM2 checkpoints (``sam2_hiera_large.pt["model"]``) → ours."""

SAM2_UNUSED: tuple[str, ...] = (
    # SAM2's video memory, never used for single images (spec §12: 157 keys in the official model).
    "memory_attention",
    "memory_encoder",
    "obj_ptr_proj",
    "mask_downsample",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
)
"""SAM2 modules RS2-SAM2 builds but never runs (dropped)."""

SAM21_EXTRAS: tuple[str, ...] = ("no_obj_embed_spatial", "obj_ptr_tpos_proj")
"""Memory-side extras that SAM 2.1 checkpoints add to :data:`SAM2_UNUSED` (dropped)."""

_BLOCK = "visual_model.image_encoder.trunk.blocks.{i}"
_FUSION = "image_encoder.fusion_layers.{i}"

OFFICIAL_TO_OURS: tuple[tuple[str, str], ...] = (
    ("mm_extractor.beit3", "union_encoder.beit3"),
    # ② BHFM per-block layers (BL), stored inside the official Hiera blocks.
    (f"{_BLOCK}.MLP_Adapter.D_fc1", f"{_FUSION}.mlp_adapter.fc1"),
    (f"{_BLOCK}.MLP_Adapter.D_fc2", f"{_FUSION}.mlp_adapter.fc2"),
    (f"{_BLOCK}.Space_Adapter.D_fc1", f"{_FUSION}.cross_adapter.fc1"),
    (f"{_BLOCK}.Space_Adapter.D_fc2", f"{_FUSION}.cross_adapter.fc2"),
    (f"{_BLOCK}.Space_Adapter.vlfusion_module.multihead_attn", f"{_FUSION}.cross_adapter.vision_attn"),
    (f"{_BLOCK}.Space_Adapter.lvfusion_module.multihead_attn", f"{_FUSION}.cross_adapter.text_attn"),
    (f"{_BLOCK}.Space_Adapter.text_in_linear", f"{_FUSION}.cross_adapter.text_in"),
    (f"{_BLOCK}.Space_Adapter.text_out_linear", f"{_FUSION}.cross_adapter.text_out"),
    # ④ post-encoding fusion (BC), stored inside the official mask decoder.
    ("visual_model.sam_mask_decoder.vlfusion_module.multihead_attn", "sam_decoder.text_fusion.attn"),
    # Stock SAM2 under ``visual_model.``.
    *((f"visual_model.{theirs}", ours) for theirs, ours in SAM2_TO_OURS),
    # ③ mask prompt generator and the sparse-token MLP.
    ("vmtoken.multihead_attn", "prompt_generator.class_attn"),
    ("mask_linear", "prompt_generator.mask_linear"),
    ("mask_product", "prompt_generator.mask_product"),
    ("text_hidden_fcs.0", "prompt_generator.token_mlp"),
    # Text projections.
    ("text_feat_linear", "text_proj"),
    ("text2one_linear", "text_weight_head"),
)
"""The released RS2-SAM2 ``EvfSamModel.state_dict()`` → ours (spec §12)."""

OFFICIAL_UNUSED: tuple[str, ...] = (
    *(f"visual_model.{name}" for name in SAM2_UNUSED),
    "meo_linear",  # built, never called
)
"""Official modules with no counterpart here (dropped on conversion)."""

OFFICIAL_WRAPPER_PREFIXES: tuple[str, ...] = ("module.evf_model.",)
"""Prefixes of raw DeepSpeed exports (``zero_to_fp32``), stripped before conversion."""

BEIT3_TO_OURS: tuple[tuple[str, str], ...] = (
    ("beit3", "union_encoder.beit3"),
    # Bare torchscale names, as some BEiT-3 exports store them.
    ("text_embed", "union_encoder.beit3.text_embed"),
    ("vision_embed", "union_encoder.beit3.vision_embed"),
    ("encoder", "union_encoder.beit3.encoder"),
)
"""BEiT-3 checkpoints (``beit3_large_patch16_224.pth["model"]``, torchscale names) → ours."""

OFFICIAL_MODEL_TYPE = "evf"
# Official ``mm_extractor_scale`` → our union-encoder preset. Only "large" exists for RS2-SAM2: the official
# heads (text_feat_linear, mask_linear, vmtoken) are hard-coded 1024 wide.
_OFFICIAL_SCALES: dict[str, str] = {"large": "official"}


@dataclass(frozen=True)
class _Rule:
    src: str
    dst: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, src: str, dst: str) -> _Rule:
        body = re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)")
        return cls(src, dst, re.compile(rf"^{body}(?=\.|$)"))

    def apply(self, key: str) -> str | None:
        m = self.pattern.match(key)
        if m is None:
            return None
        return self.dst.format(**m.groupdict()) + key[m.end() :]


@functools.cache
def _rules(table: tuple[tuple[str, str], ...], inverse: bool = False) -> tuple[_Rule, ...]:
    return tuple(_Rule.compile(*((dst, src) if inverse else (src, dst))) for src, dst in table)


def rename_key(key: str, table: tuple[tuple[str, str], ...], inverse: bool = False) -> str | None:
    """``key`` renamed by the first matching row of ``table`` (or its inverse); None if no row matches."""
    for rule in _rules(table, inverse):
        out = rule.apply(key)
        if out is not None:
            return out
    return None


def _in_group(key: str, groups: Iterable[str]) -> bool:
    return any(key == g or key.startswith(g + ".") for g in groups)


def official_key(our_key: str) -> str:
    """The official name of one of our parameter names (the inverse of :data:`OFFICIAL_TO_OURS`)."""
    out = rename_key(our_key, OFFICIAL_TO_OURS, inverse=True)
    if out is None:
        raise KeyError(f"{our_key!r} has no official counterpart")
    return out


def to_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our state dict under the official names (without the unused official modules)."""
    return {official_key(k): v for k, v in state_dict.items()}


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
    from .checkpoint_scan import DeclaredSizeError, check_declared_sizes

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
def _listing(keys: Iterable[str], limit: int = 12) -> str:
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
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_listing(mismatched)}")
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
            f"{source} has non-finite (NaN/Inf) values in {len(bad)} tensors: {_listing(bad)}"
        )


@functools.lru_cache(maxsize=8)
def _expected_shapes_cached(config_json: str) -> dict[str, tuple[int, ...]]:
    from .modeling import RS2SAM2

    with skip_parameter_init():
        model = RS2SAM2(RS2SAM2Config.from_dict(json.loads(config_json)))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def expected_shapes(config: RS2SAM2Config) -> dict[str, tuple[int, ...]]:
    """Key → shape of ``RS2SAM2(config).state_dict()``, computed once per config (parameters unwritten)."""
    return dict(_expected_shapes_cached(config.to_json()))


# ----------------------------------------------------------------------------- official → ours
def strip_wrapper_prefix(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Remove a DeepSpeed export prefix (``module.evf_model.``) shared by all keys, if present."""
    for prefix in OFFICIAL_WRAPPER_PREFIXES:
        with_prefix = [k for k in state_dict if k.startswith(prefix)]
        if not with_prefix:
            continue
        if len(with_prefix) != len(state_dict):
            others = [k for k in state_dict if not k.startswith(prefix)]
            raise CheckpointError(
                f"only some keys carry the prefix {prefix!r}; others: {_listing(others, 5)}"
            )
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: RS2SAM2Config | None = None
) -> StateDict:
    """Rename a released RS2-SAM2 state dict to ours; drop the documented unused modules.

    Every official key must either map through :data:`OFFICIAL_TO_OURS` or belong to
    :data:`OFFICIAL_UNUSED`; every key of ``RS2SAM2(config)`` must be covered, with equal shapes.
    ``config`` defaults to the ``official`` preset (the architecture of every released checkpoint).
    Tensors are not copied; meta tensors work (key/shape checks only).

    Raises:
        CheckpointError: listing unknown official keys, our keys left uncovered, duplicates and shape
            mismatches.
    """
    config = config or RS2SAM2Config.from_preset("official")
    state_dict = strip_wrapper_prefix(state_dict)
    out: StateDict = {}
    renamed_from: dict[str, str] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    for key, value in state_dict.items():
        if _in_group(key, OFFICIAL_UNUSED):
            dropped.append(key)
            continue
        ours = rename_key(key, OFFICIAL_TO_OURS)
        if ours is None:
            unknown.append(key)
        elif ours in out:
            raise CheckpointError(f"official keys {renamed_from[ours]!r} and {key!r} both map to {ours!r}")
        else:
            out[ours] = value
            renamed_from[ours] = key
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} official keys are neither in the mapping table nor in the drop list: "
            f"{_listing(unknown)}"
        )
    check_state_dict(
        expected_shapes(config), out, "the converted official checkpoint", renamed_from=renamed_from
    )
    groups = sorted({next(g for g in OFFICIAL_UNUSED if _in_group(k, (g,))) for k in dropped})
    logger.info(
        "converted %d official keys to rs2sam2 names; dropped %d unused keys (%s)",
        len(out),
        len(dropped),
        ", ".join(groups) or "none",
    )
    return out


def convert_official_config(config_json: Mapping[str, Any]) -> RS2SAM2Config:
    """The official ``config.json`` (``model_type: "evf"``) → our config (the ``official`` preset).

    Raises ``ValueError`` for anything the released architecture cannot be: another ``model_type``, a
    ``mm_extractor_scale`` other than "large", or ``hidden_size`` / ``out_dim`` that do not match it.
    """
    model_type = config_json.get("model_type")
    if model_type != OFFICIAL_MODEL_TYPE:
        raise ValueError(f"not an official RS2-SAM2 config: model_type is {model_type!r}, expected 'evf'")
    scale = config_json.get("mm_extractor_scale", "large")
    if scale not in _OFFICIAL_SCALES:
        raise ValueError(
            f"mm_extractor_scale {scale!r} is not supported: RS2-SAM2's heads are hard-coded for BEiT-3 "
            f"{sorted(_OFFICIAL_SCALES)}"
        )
    config = RS2SAM2Config.from_preset(_OFFICIAL_SCALES[scale])
    for field_name, ours in (("hidden_size", config.union_encoder.embed_dim), ("out_dim", config.text_dim)):
        if field_name in config_json and int(config_json[field_name]) != ours:
            raise ValueError(f"official config has {field_name}={config_json[field_name]}, expected {ours}")
    tok = config.tokenizer
    for field_name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if config_json.get(field_name) is not None:
            setattr(tok, field_name, int(config_json[field_name]))
    return config


def looks_official(keys: Iterable[str]) -> bool:
    """True if the key names are the official ones (optionally with the DeepSpeed prefix).

    Decided by the official top-level modules (``mm_extractor``, ``visual_model``), which none of our
    names use; whether every key is understood is :func:`convert_official_state_dict`'s job.
    """
    return any(_strip_known_prefix(k).startswith(("mm_extractor.", "visual_model.")) for k in keys)


def _strip_known_prefix(key: str) -> str:
    for prefix in OFFICIAL_WRAPPER_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def is_official_checkpoint(folder_or_config: str | Path | Mapping[str, Any]) -> bool:
    """Whether a folder, weights file, ``config.json`` dict or state dict is in the official format.

    A folder is official when its ``config.json`` says ``model_type: "evf"``, or, without a config, when its
    weight file uses the official key names.
    """
    if isinstance(folder_or_config, Mapping):
        if folder_or_config and all(isinstance(v, torch.Tensor) for v in folder_or_config.values()):
            return looks_official(folder_or_config)
        return folder_or_config.get("model_type") == OFFICIAL_MODEL_TYPE
    path = Path(folder_or_config)
    if path.is_file():
        if path.suffix == ".json":
            return json.loads(path.read_text()).get("model_type") == OFFICIAL_MODEL_TYPE
        return looks_official(read_keys(path))
    if not path.is_dir():
        raise FileNotFoundError(f"no such folder or file: {path}")
    config_file = path / "config.json"
    if config_file.is_file():
        return json.loads(config_file.read_text()).get("model_type") == OFFICIAL_MODEL_TYPE
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return looks_official(read_keys(path / name))
    return False


# ------------------------------------------------------------------------- base checkpoints → ours
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
    from .hub import hub_file

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
        if _in_group(key, unused):
            report.ignored.append(key)
            continue
        dst = rename_key(key, table)
        if dst is None or dst not in ours:
            report.unexpected.append(key)
            continue
        converted[dst] = value
        renamed_from[dst] = key
    expected = {k: v.shape for k, v in ours.items() if _in_group(k, covered)}
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


# --------------------------------------------------------------------------------------------- CLI
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _cli_convert(args: argparse.Namespace) -> int:
    import sys

    from .hub import convert_checkpoint

    try:
        out = convert_checkpoint(
            args.src,
            args.out,
            subfolder=args.subfolder,
            dtype=_DTYPES[args.dtype],
            compact_base=(args.base_repo, args.base_filename) if args.compact else None,
            config=RS2SAM2Config.from_preset(args.preset) if args.preset else None,
        )
    except (CheckpointError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"rs2sam2 convert: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0
