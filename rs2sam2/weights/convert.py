"""Checkpoints from elsewhere → our parameter names: the released RS2-SAM2 weights (official key names,
``config.json`` with ``model_type: "evf"``) and the name tables the SAM2 / BEiT-3 base checkpoints use
(loaded by :mod:`rs2sam2.weights.base_checkpoints`).

Every name change is one row of a table (:data:`OFFICIAL_TO_OURS`, :data:`SAM2_TO_OURS`,
:data:`BEIT3_TO_OURS`); every official key that has no counterpart here is in a documented drop list
(:data:`OFFICIAL_UNUSED`, :data:`SAM2_UNUSED`). Conversion is strict: unknown keys, missing keys and shape
mismatches raise :class:`~rs2sam2.weights.state_dict.CheckpointError` naming them. The official model's
parameters are those of SAM2 (paper Sec. 3.1), the Bidirectional Hierarchical Fusion Module's per-block
layers and post-encoding fusion (Sec. 3.2), the Mask Prompt Generator (Sec. 3.3) and the BEiT-3 union encoder.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import RS2SAM2Config
from ..memory import skip_parameter_init
from ..modeling import RS2SAM2Model
from .state_dict import CheckpointError, StateDict, check_state_dict, key_listing, read_keys

logger = logging.getLogger("rs2sam2")


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
    # SAM2's video memory, never used for single images (157 keys in the released official checkpoint).
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
"""The released RS2-SAM2 ``EvfSamModel.state_dict()`` → ours."""

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


def in_group(key: str, groups: Iterable[str]) -> bool:
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


@functools.lru_cache(maxsize=8)
def _expected_shapes_cached(config_json: str) -> dict[str, tuple[int, ...]]:
    with skip_parameter_init():
        model = RS2SAM2Model(RS2SAM2Config.from_dict(json.loads(config_json)))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def expected_shapes(config: RS2SAM2Config) -> dict[str, tuple[int, ...]]:
    """Key → shape of ``RS2SAM2Model(config).state_dict()``, once per config (parameters unwritten)."""
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
                f"only some keys carry the prefix {prefix!r}; others: {key_listing(others, 5)}"
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
        if in_group(key, OFFICIAL_UNUSED):
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
            f"{key_listing(unknown)}"
        )
    check_state_dict(
        expected_shapes(config), out, "the converted official checkpoint", renamed_from=renamed_from
    )
    groups = sorted({next(g for g in OFFICIAL_UNUSED if in_group(k, (g,))) for k in dropped})
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
