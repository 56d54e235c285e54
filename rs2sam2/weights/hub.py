"""Model folders and the Hugging Face Hub: load (ours and the official release), save, compact, push.

A model folder (local or a Hub repo, optionally in a ``subfolder``; files found by
:mod:`rs2sam2.weights.sources`) holds

* ``config.json``: :meth:`RS2SAM2Config.to_dict` plus ``model_type: "rs2sam2"`` and a ``package`` entry
  (weights dtype, which weights are left out);
* ``model.safetensors``: the state dict;
* the tokenizer files (XLM-R sentencepiece layout, see :mod:`rs2sam2.text`), when saved with one;
* ``README.md``: a model card (:mod:`rs2sam2.weights.model_card`).

:func:`load_pretrained` (``RS2SAM2.from_pretrained``) also reads the official release (``config.json``
with ``model_type: "evf"``, or official key names) and converts it on the fly
(:mod:`rs2sam2.weights.convert`).
Loading is strict: missing/unexpected keys, shape mismatches, NaN/Inf values and unreadable files raise
:class:`~rs2sam2.weights.state_dict.CheckpointError` naming them. Compact packages (the frozen SAM2 weights
left out) are :mod:`rs2sam2.weights.compact`'s.

Every function here takes the model (or the model class) as an argument and never imports
:mod:`rs2sam2.modeling`: the model class reaches these functions through
:class:`rs2sam2.weights.pretrained.PretrainedMixin`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import torch

from ..config import RS2SAM2Config
from ..memory import skip_parameter_init
from .compact import COMPACT_PREFIXES, compact_state, restore_from_base
from .convert import OFFICIAL_MODEL_TYPE, convert_official_config, convert_official_state_dict, looks_official
from .model_card import ModelCardInfo, generate_model_card
from .sources import CONFIG_NAME, TOKENIZER_FILES, WEIGHTS_NAME, ModelSource, SourceOptions
from .state_dict import (
    DTYPE_NAMES,
    CheckpointError,
    StateDict,
    cast_state_dict,
    check_finite,
    check_state_dict,
    read_config,
    read_keys,
    read_weights,
    weight_files,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import nn

logger = logging.getLogger("rs2sam2")

MODEL_TYPE = "rs2sam2"
"""``model_type`` in the ``config.json`` of our model folders."""


# ------------------------------------------------------------------------------------------ loading
def load_pretrained(
    cls: type[nn.Module],
    path_or_repo: str | os.PathLike[str],
    *,
    config: RS2SAM2Config | None = None,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
    **where: Unpack[SourceOptions],
) -> nn.Module:
    """Load a model folder (ours or the official release) from disk or the Hub (``RS2SAM2.from_pretrained``).

    Args:
        path_or_repo: Local folder or Hub repo id.
        where: Where its files come from (:class:`~rs2sam2.weights.sources.SourceOptions`: ``subfolder``
            (the official release has ``rrsisd`` and ``refseg``), ``revision``, ``cache_dir``,
            ``force_download``, ``token`` as for ``huggingface_hub.hf_hub_download``, and
            ``local_files_only``: never touch the network; ``None`` follows ``HF_HUB_OFFLINE`` as set now).
        config: Architecture to build instead of the one the folder describes (needed only for official
            checkpoints of a non-official size, whose ``config.json`` cannot say so).
        map_location: Device of the returned model.
        dtype: Floating-point dtype of the returned model (default float32, whatever the file stores).
        strict: Raise on any missing or unexpected key (default). ``False`` loads what fits and logs the rest.

    Raises:
        FileNotFoundError: the folder, repo, config or weights cannot be found (offline: not in the cache).
        CheckpointError: unreadable files, wrong keys or shapes, non-finite values, base checksum mismatch.
    """
    src = ModelSource(path_or_repo, **where)
    config_file = src.file(CONFIG_NAME)
    raw = read_config(config_file) if config_file is not None else None
    files = weight_files(src)
    official = _is_official(raw, files)
    if raw is None and not official:
        raise FileNotFoundError(f"{CONFIG_NAME!r} not found in {src.describe()}")
    if config is None:
        config = _config_from(raw, official, src)
    state = read_weights(files)
    source = f"{src.describe()} ({', '.join(f.name for f in files)})"
    if official:
        logger.info("%s is an official RS2-SAM2 checkpoint; converting it to rs2sam2 names", src.describe())
        state = convert_official_state_dict(state, config)
    package = (raw or {}).get("package") or {}
    omitted = tuple(package.get("omitted_prefixes") or ())
    if omitted:
        state.update(restore_from_base(config, omitted, src))
    model = build_and_load(cls, config, state, source, dtype=dtype or torch.float32, strict=strict)
    return model.to(map_location).eval()


def _is_official(raw: dict[str, Any] | None, files: list[Path]) -> bool:
    if raw is not None:
        model_type = raw.get("model_type")
        if model_type == OFFICIAL_MODEL_TYPE:
            return True
        if model_type not in (MODEL_TYPE, None):
            raise CheckpointError(
                f"config.json has model_type {model_type!r}: neither an rs2sam2 model ({MODEL_TYPE!r}) nor "
                f"the official RS2-SAM2 release ({OFFICIAL_MODEL_TYPE!r})"
            )
        if model_type == MODEL_TYPE:
            return False
    return looks_official(read_keys(files[0]))


def _config_from(raw: dict[str, Any] | None, official: bool, src: ModelSource) -> RS2SAM2Config:
    if official:
        if raw is None:
            logger.warning("%s has no config.json; assuming the official architecture", src.describe())
            return RS2SAM2Config.from_preset("official")
        return convert_official_config(raw)
    assert raw is not None
    try:
        return RS2SAM2Config.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"config.json of {src.describe()} is not a valid rs2sam2 config: {e}") from e


def build_and_load(
    cls: type[nn.Module],
    config: RS2SAM2Config,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    dtype: torch.dtype = torch.float32,
    strict: bool = True,
) -> nn.Module:
    """Build ``cls(config)`` and fill it with ``state``: every key and shape checked, values finite.

    With ``strict`` the model is built without initialising its parameters (never written, so never
    resident) and takes the checkpoint tensors over (``assign=True``), so a 3.7 GB checkpoint is never held
    twice in memory; a memory-mapped checkpoint stays mapped, resident only where a forward pass reads it.
    """
    state = cast_state_dict(state, dtype)
    if strict:
        with skip_parameter_init():
            model = cls(config)
        check_state_dict({k: v.shape for k, v in model.state_dict().items()}, state, source)
        check_finite(state, source)
        model.load_state_dict(state, strict=True, assign=True)
        return model
    model = cls(config).to(dtype)
    expected = model.state_dict()
    present = {k: v for k, v in state.items() if k in expected}
    check_state_dict({k: expected[k].shape for k in present}, present, source)
    check_finite(present, source)
    result = model.load_state_dict(present, strict=False)
    unexpected = sorted(set(state) - set(expected))
    if result.missing_keys or unexpected:
        logger.warning(
            "non-strict load of %s: %d keys keep their initialisation (%s…), %d unexpected ignored (%s…)",
            source,
            len(result.missing_keys),
            ", ".join(result.missing_keys[:3]),
            len(unexpected),
            ", ".join(unexpected[:3]),
        )
    return model


def save_pretrained(
    model: nn.Module,
    save_directory: str | os.PathLike[str],
    *,
    processor: Any | None = None,
    tokenizer: Any | None = None,
    dtype: torch.dtype | None = None,
    compact: bool = False,
    card: ModelCardInfo | None = None,
) -> Path:
    """Write a model folder; see ``RS2SAM2.save_pretrained``.

    Args:
        processor / tokenizer: saved alongside (their ``save_pretrained``), so the folder is self-contained.
        dtype: store floating-point weights in this dtype (``torch.bfloat16`` / ``torch.float16`` halve the
            size); loading gives a float32 model unless asked otherwise.
        compact: leave out the frozen Hiera trunk + neck. They must equal the base checkpoint named by
            ``model.config.base_model`` (``repo_id``, ``filename``, optional ``revision``; set by
            :func:`~rs2sam2.weights.base_checkpoints.load_sam2_checkpoint` from a Hub repo), which is
            fetched through the Hub cache to check that and to record its sha256.
        card: extra model-card content. An existing ``README.md`` is kept.
    """
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    config = RS2SAM2Config.from_dict(model.config.to_dict())
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    package: dict[str, Any] = {"dtype": DTYPE_NAMES[dtype or model.dtype], "omitted_prefixes": []}
    if compact:
        state, config.base_model = compact_state(state, config)
        package["omitted_prefixes"] = list(COMPACT_PREFIXES)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    _write_safetensors(state, folder / WEIGHTS_NAME)
    payload = {"model_type": MODEL_TYPE, **config.to_dict(), "package": package}
    (folder / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if processor is not None:
        processor.save_pretrained(folder)
    elif tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    readme = folder / "README.md"
    if not readme.exists():
        n = sum(p.numel() for p in model.parameters())
        generate_model_card(config, card, num_parameters=n, package=package).save(readme)
    logger.info("saved %s (%s, %d tensors)", folder, package["dtype"], len(state))
    return folder


def _write_safetensors(state: StateDict, path: Path) -> None:
    from safetensors.torch import save_file

    # Write next to the target and rename, so an interrupted save never leaves a truncated file behind.
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "library": "rs2sam2"})
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------- pushing
class PushOptions(TypedDict, total=False):
    """How :func:`push_folder` uploads (also taken by :func:`push_to_hub`)."""

    private: bool | None  # create the repo as private
    token: str | None  # Hub token (default: the cached login / HF_TOKEN)
    commit_message: str
    branch: str | None  # upload to this branch (default: main)
    create_pr: bool | None  # open a pull request instead of committing


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload rs2sam2 model",
    branch: str | None = None,
    create_pr: bool | None = None,
) -> str:
    """Upload a saved model folder to a Hub model repo (created if needed); returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} is not a model folder: no {CONFIG_NAME}")
    if read_config(config_file).get("model_type") != MODEL_TYPE:
        raise ValueError(f"{folder} is not an rs2sam2 model folder (convert it first: rs2sam2 convert)")
    if not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=folder,
        commit_message=commit_message,
        revision=branch,
        create_pr=create_pr,
        ignore_patterns=["*.tmp", ".cache/*"],
    )
    logger.info("pushed %s to %s", folder, repo_id)
    return str(info)


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    processor: Any | None = None,
    tokenizer: Any | None = None,
    dtype: torch.dtype | None = None,
    compact: bool = False,
    card: ModelCardInfo | None = None,
    **push: Unpack[PushOptions],
) -> str:
    """Save the model (as :func:`save_pretrained`) into a temporary folder and upload it (``push``: as for
    :func:`push_folder`); see ``RS2SAM2.push_to_hub``."""
    card = card or ModelCardInfo()
    card.repo_id = card.repo_id or repo_id
    with tempfile.TemporaryDirectory(prefix="rs2sam2-push-") as tmp:
        folder = save_pretrained(
            model,
            Path(tmp),
            processor=processor,
            tokenizer=tokenizer,
            dtype=dtype,
            compact=compact,
            card=card,
        )
        return push_folder(folder, repo_id, **push)


# ------------------------------------------------------------------------------------------ converting
def copy_tokenizer_files(src: ModelSource, out: Path) -> list[str]:
    """Copy the tokenizer files present in ``src`` (verbatim) into ``out``; returns their names."""
    copied = []
    for name in TOKENIZER_FILES:
        path = src.file(name)
        if path is not None:
            shutil.copyfile(path, out / name)
            copied.append(name)
    return copied


def convert_checkpoint(
    model_class: type[nn.Module],
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    subfolder: str | None = None,
    dtype: torch.dtype = torch.float32,
    compact_base: tuple[str, str] | None = None,
    revision: str | None = None,
    config: RS2SAM2Config | None = None,
) -> Path:
    """Official release (folder or Hub repo) → an rs2sam2 model folder, tokenizer files copied verbatim.

    ``compact_base=(repo_id, filename)`` writes a compact package against that SAM2 base checkpoint;
    ``config`` overrides the architecture (for checkpoints of a non-official size).
    """
    source = ModelSource(src, subfolder=subfolder, revision=revision)
    model = load_pretrained(model_class, src, subfolder=subfolder, revision=revision, config=config)
    if compact_base is not None:
        model.config.base_model = {"repo_id": compact_base[0], "filename": compact_base[1]}
    official_repo = not source.is_local and os.fspath(src)
    card = ModelCardInfo(
        model_name=f"RS2-SAM2 ({subfolder})" if subfolder else "RS2-SAM2",
        description=(
            f"Converted from the official RS2-SAM2 release `{os.fspath(src)}`"
            + (f" (subfolder `{subfolder}`)" if subfolder else "")
            + " with `rs2sam2 convert`; outputs are those of the official model."
        ),
        base_model=[official_repo] if official_repo else [],
    )
    out = save_pretrained(model, out, dtype=dtype, compact=compact_base is not None, card=card)
    copied = copy_tokenizer_files(source, out)
    if "sentencepiece.bpe.model" not in copied:
        logger.warning("%s has no sentencepiece.bpe.model; the output folder has no usable tokenizer", src)
    return out
