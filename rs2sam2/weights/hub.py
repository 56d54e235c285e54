"""Model folders and the Hugging Face Hub: save, load (ours and the official release), compact packages, push.

A model folder (local or a Hub repo, optionally in a ``subfolder``) holds

* ``config.json``: :meth:`RS2SAM2Config.to_dict` plus ``model_type: "rs2sam2"`` and a ``package`` entry
  (weights dtype, which weights are left out);
* ``model.safetensors``: the state dict;
* the tokenizer files (XLM-R sentencepiece layout, see :mod:`rs2sam2.tokenization`), when saved with one;
* ``README.md``: a model card (YAML metadata, usage, evaluation table, citation).

:func:`load_pretrained` (``RS2SAM2.from_pretrained``) also reads the official release (``config.json``
with ``model_type: "evf"``, or official key names) and converts it on the fly (:mod:`rs2sam2.convert`).
Loading is strict: missing/unexpected keys, shape mismatches, NaN/Inf values and unreadable files raise
:class:`~rs2sam2.convert.CheckpointError` naming them.

Compact packages leave out the frozen Hiera trunk + FPN neck (212.7 M parameters in the official model)
when they equal a base SAM2 checkpoint; ``config.base_model`` records its repo id, file name and a sha256
of those tensors, and loading fetches the base through the Hub cache and verifies the checksum.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .config import RS2SAM2Config
from .convert import (
    OFFICIAL_MODEL_TYPE,
    SAM2_TO_OURS,
    CheckpointError,
    StateDict,
    check_finite,
    check_state_dict,
    convert_official_config,
    convert_official_state_dict,
    looks_official,
    read_keys,
    read_state_dict,
    rename_key,
    unwrap_state_dict,
)
from .memory import FilePages, skip_parameter_init

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from .modeling import RS2SAM2

logger = logging.getLogger("rs2sam2")

MODEL_TYPE = "rs2sam2"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Weight files looked for, in order; the official release is one of the two (transformers' save_pretrained).
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEX_SUFFIX = ".index.json"
TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
)
COMPACT_PREFIXES = ("image_encoder.trunk.", "image_encoder.neck.")
"""What a compact package leaves out: the frozen SAM2 weights (spec §3), restored from the base."""

PAPER_ARXIV = "2503.07266"
OFFICIAL_CODE_URL = "https://github.com/rongfu-dsb/RS2-SAM2"
OFFICIAL_HUB_REPO = "ReeF2025/RS2-SAM2"

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


# ------------------------------------------------------------------------------------- file resolution
def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_now() -> bool:
    """``HF_HUB_OFFLINE`` as set *now* (huggingface_hub reads it only once, at import)."""
    from huggingface_hub import constants

    return _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE") or bool(constants.HF_HUB_OFFLINE)


def _cache_dir_now() -> str | None:
    """The hub cache named by the environment now (same rule as :mod:`rs2sam2.tokenization`)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _looks_like_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1


def _hub_reachable(repo_id: str) -> bool:
    """One quick request; False only for transport failures (no network, DNS, timeout), not HTTP errors."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(repo_id, timeout=10)
    except Exception as e:  # any HTTP answer (404, 401, …) means the Hub is reachable
        transport = {"TransportError", "TimeoutException"} & {c.__name__ for c in type(e).__mro__}
        return not (isinstance(e, (ConnectionError, TimeoutError)) or transport)
    return True


class ModelSource:
    """A model folder: a local directory, or a Hub repo served through the Hugging Face cache."""

    def __init__(
        self,
        path_or_repo: str | os.PathLike[str],
        *,
        subfolder: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        force_download: bool = False,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
    ) -> None:
        self.name = os.fspath(path_or_repo)
        self.subfolder = subfolder or None
        self.revision = revision
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else _cache_dir_now()
        self.force_download = force_download
        self.local_files_only = _offline_now() if local_files_only is None else bool(local_files_only)
        self.token = token
        self.is_local = os.path.isdir(self.name)
        self._last_miss: str | None = None
        self._probed = self.is_local or self.local_files_only
        self._unreachable = False
        if not self.is_local and (isinstance(path_or_repo, os.PathLike) or _looks_like_path(self.name)):
            raise FileNotFoundError(f"model folder {self.name!r} does not exist")
        if self.is_local and self.subfolder and not (Path(self.name) / self.subfolder).is_dir():
            raise FileNotFoundError(f"{self.name!r} has no subfolder {self.subfolder!r}")

    def describe(self) -> str:
        sub = f" (subfolder {self.subfolder!r})" if self.subfolder else ""
        if self.is_local:
            return f"folder {self.name!r}{sub}"
        where = f"Hub repo {self.name!r}{sub}"
        if self.local_files_only:
            why = "Hub unreachable" if self._unreachable else "offline"
            where += f" [{why}: only the local cache {self.cache_dir or '(default)'} is searched]"
        return where

    def file(self, filename: str) -> Path | None:
        """The local path of ``filename``, downloading it into the cache if needed; None if absent."""
        if self.is_local:
            path = Path(self.name, self.subfolder or "", filename)
            return path if path.is_file() else None
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HFValidationError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if not self._probed:
            # Without a network huggingface_hub retries every file for ~25 s; probe once and fall back to the
            # cache instead.
            self._probed = True
            if not _hub_reachable(self.name):
                logger.warning(
                    "the Hugging Face Hub is unreachable; using the local cache only for %s", self.name
                )
                self.local_files_only = self._unreachable = True
        try:
            return Path(
                hf_hub_download(
                    self.name,
                    filename,
                    subfolder=self.subfolder,
                    revision=self.revision,
                    cache_dir=self.cache_dir,
                    force_download=self.force_download,
                    local_files_only=self.local_files_only,
                    token=self.token,
                )
            )
        except EntryNotFoundError as e:  # remote 404, or not in the cache while offline / unreachable
            self._last_miss = str(e).splitlines()[0]
            return None
        except HFValidationError as e:
            raise FileNotFoundError(
                f"{self.name!r} is neither a local folder nor a valid Hub repo id ({e})"
            ) from e
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            raise FileNotFoundError(f"cannot access {self.describe()}: {str(e).splitlines()[0]}") from e

    def require(self, filename: str) -> Path:
        path = self.file(filename)
        if path is None:
            hint = f" ({self._last_miss})" if self._last_miss and not self.is_local else ""
            raise FileNotFoundError(f"{filename!r} not found in {self.describe()}{hint}")
        return path


def hub_file(
    repo_id: str,
    filename: str,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """One file of a Hub repo, through the cache (``HF_HUB_OFFLINE`` / ``HF_HUB_CACHE`` read now)."""
    src = ModelSource(
        repo_id,
        subfolder=subfolder,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    return src.require(filename)


def _weight_files(src: ModelSource) -> list[Path]:
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


def _read_weights(files: list[Path]) -> StateDict:
    state: StateDict = {}
    for file in files:
        part = read_state_dict(file)
        overlap = set(state) & set(part)
        if overlap:
            raise CheckpointError(f"shard {file} repeats keys: {sorted(overlap)[:5]}")
        state.update(part)
    return state


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------------------ loading
def load_pretrained(
    cls: type[RS2SAM2],
    path_or_repo: str | os.PathLike[str],
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force_download: bool = False,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    config: RS2SAM2Config | None = None,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
) -> RS2SAM2:
    """Load a model folder (ours or the official release) from disk or the Hub (``RS2SAM2.from_pretrained``).

    Args:
        path_or_repo: Local folder or Hub repo id.
        subfolder: Folder inside it (the official release has ``rrsisd`` and ``refseg``).
        revision, cache_dir, force_download, token: as for ``huggingface_hub.hf_hub_download``.
        local_files_only: Never touch the network; ``None`` follows ``HF_HUB_OFFLINE`` as set now.
        config: Architecture to build instead of the one the folder describes (needed only for official
            checkpoints of a non-official size, whose ``config.json`` cannot say so).
        map_location: Device of the returned model.
        dtype: Floating-point dtype of the returned model (default float32, whatever the file stores).
        strict: Raise on any missing or unexpected key (default). ``False`` loads what fits and logs the rest.

    Raises:
        FileNotFoundError: the folder, repo, config or weights cannot be found (offline: not in the cache).
        CheckpointError: unreadable files, wrong keys or shapes, non-finite values, base checksum mismatch.
    """
    src = ModelSource(
        path_or_repo,
        subfolder=subfolder,
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
    )
    config_file = src.file(CONFIG_NAME)
    raw = _read_config(config_file) if config_file is not None else None
    files = _weight_files(src)
    official = _is_official(raw, files)
    if raw is None and not official:
        raise FileNotFoundError(f"{CONFIG_NAME!r} not found in {src.describe()}")
    if config is None:
        config = _config_from(raw, official, src)
    state = _read_weights(files)
    source = f"{src.describe()} ({', '.join(f.name for f in files)})"
    if official:
        logger.info("%s is an official RS2-SAM2 checkpoint; converting it to rs2sam2 names", src.describe())
        state = convert_official_state_dict(state, config)
    package = (raw or {}).get("package") or {}
    omitted = tuple(package.get("omitted_prefixes") or ())
    if omitted:
        state.update(_restore_from_base(config, omitted, src))
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


def _cast(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> StateDict:
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


def build_and_load(
    cls: type[RS2SAM2],
    config: RS2SAM2Config,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    dtype: torch.dtype = torch.float32,
    strict: bool = True,
) -> RS2SAM2:
    """Build ``cls(config)`` and fill it with ``state``: every key and shape checked, values finite.

    With ``strict`` the model is built without initialising its parameters (never written, so never
    resident) and takes the checkpoint tensors over (``assign=True``), so a 3.7 GB checkpoint is never held
    twice in memory; a memory-mapped checkpoint stays mapped, resident only where a forward pass reads it.
    """
    state = _cast(state, dtype)
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


# -------------------------------------------------------------------------------------- compact packages
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


def _restore_from_base(config: RS2SAM2Config, prefixes: tuple[str, ...], src: ModelSource) -> StateDict:
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


def _compact(state: StateDict, config: RS2SAM2Config) -> tuple[StateDict, dict[str, str]]:
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


# ------------------------------------------------------------------------------------------- saving
@dataclass
class Evaluation:
    """Results on one dataset split, in % (as the paper reports them), for the model card."""

    dataset: str  # e.g. "RRSIS-D"
    split: str  # e.g. "test"
    metrics: dict[str, float]  # e.g. {"mIoU": 66.72, "oIoU": 78.99, "Pr@0.5": 77.56}
    dataset_id: str | None = None  # Hub dataset id, if the dataset is on the Hub
    source: str = "measured with rs2sam2.evaluate"
    source_url: str | None = None  # e.g. the paper, for reported numbers


@dataclass
class ModelCardInfo:
    """What the generated ``README.md`` says beyond what the config knows."""

    model_name: str = "RS2-SAM2"
    license: str = "apache-2.0"
    description: str | None = None
    repo_id: str | None = None  # used in the usage snippet
    datasets: list[str] = field(default_factory=list)  # Hub dataset ids
    base_model: list[str] = field(default_factory=list)  # default: config.base_model["repo_id"]
    evaluations: list[Evaluation] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


DEFAULT_TAGS = (
    "rs2sam2",
    "referring-image-segmentation",
    "remote-sensing",
    "sam2",
    "beit-3",
    "pytorch_model_hub_mixin",
    "model_hub_mixin",
)

_CITATION = """@inproceedings{rong2026rs2sam2,
  title     = {RS2-SAM2: Customized SAM2 for Referring Remote Sensing Image Segmentation},
  author    = {Rong, Fu and Lan, Meng and Zhang, Qian and Zhang, Lefei},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2026},
  note      = {arXiv:2503.07266}
}"""


def generate_model_card(
    config: RS2SAM2Config,
    info: ModelCardInfo | None = None,
    *,
    num_parameters: int | None = None,
    package: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The ``README.md`` of a model folder: YAML metadata (``library_name: rs2sam2``, license, tags,
    datasets, ``base_model``, ``model-index`` when evaluations are given) and a body with what the model is,
    how to use it, the evaluation table and the citation."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    info = info or ModelCardInfo()
    base_models = list(info.base_model) or (
        [config.base_model["repo_id"]] if config.base_model.get("repo_id") else []
    )
    eval_results = [
        EvalResult(
            task_type="image-segmentation",
            task_name="Referring remote sensing image segmentation",
            dataset_type=ev.dataset_id or ev.dataset.lower().replace(" ", "-"),
            dataset_name=ev.dataset,
            dataset_split=ev.split,
            metric_type=name.lower().replace("@", "-at-"),
            metric_name=name,
            metric_value=float(value),
            source_name=ev.source if ev.source_url else None,  # the Hub wants both or neither
            source_url=ev.source_url,
        )
        for ev in info.evaluations
        for name, value in ev.metrics.items()
    ]
    data = ModelCardData(
        library_name="rs2sam2",
        license=info.license,
        tags=sorted(set(DEFAULT_TAGS) | set(info.tags)),
        datasets=list(info.datasets) or None,
        base_model=base_models or None,
        pipeline_tag="image-segmentation",
        model_name=info.model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    card = ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n{_card_body(config, info, num_parameters, package or {})}"
    )
    return card


def _card_body(
    config: RS2SAM2Config, info: ModelCardInfo, num_parameters: int | None, package: Mapping[str, Any]
) -> str:
    u, h = config.union_encoder, config.hiera
    repo = info.repo_id or "path/to/this/folder"
    description = info.description or (
        "Referring remote sensing image segmentation: an aerial or satellite image and a sentence in, the "
        "pixel mask of the object the sentence refers to out."
    )
    params = f"{num_parameters / 1e6:.1f} M parameters; " if num_parameters else ""
    dtype = package.get("dtype", "float32")
    weights = f"weights stored in {dtype}"
    if package.get("omitted_prefixes"):
        base = config.base_model
        weights += (
            f"; compact package: the frozen SAM2 Hiera trunk and FPN neck are not stored here but fetched "
            f"from `{base.get('repo_id')}` (`{base.get('filename')}`, sha256 of the tensors verified)"
        )
    lines = [
        f"# {info.model_name}",
        "",
        description,
        "",
        f"This is an [RS2-SAM2](https://arxiv.org/abs/{PAPER_ARXIV}) model (AAAI 2026) for the "
        "`rs2sam2` library, a reimplementation of the "
        f"[official code]({OFFICIAL_CODE_URL}). A BEiT-3 union encoder reads image and text together; "
        "bidirectional fusion layers inside every block of SAM2's Hiera image encoder align the image "
        "features with the text; a mask prompt generator turns the multimodal class token into a pseudo-mask "
        "that SAM2's decoder takes as its dense prompt.",
        "",
        "## Model",
        "",
        f"* Union encoder: BEiT-3, {u.num_layers} layers, width {u.embed_dim}, {u.img_size}² image input, "
        f"text vocabulary {u.vocab_size}.",
        f"* Image encoder: SAM2 Hiera (embed dim {h.embed_dim}, stages {list(h.stages)}) with a fusion layer "
        f"per block; input {config.image_size}×{config.image_size}.",
        f"* {params}{weights}.",
        "",
        "## Usage",
        "",
        "```python",
        "from rs2sam2 import RS2SAM2Predictor",
        "",
        f'predictor = RS2SAM2Predictor.from_pretrained("{repo}")',
        'prediction = predictor.predict("scene.png", "the white storage tank closest to the road")',
        "prediction.mask  # (H, W) bool array at the image's native size",
        "```",
        "",
        "## Evaluation",
        "",
    ]
    lines += _evaluation_table(info.evaluations)
    lines += ["", "## Citation", "", "```bibtex", _CITATION, "```", ""]
    return "\n".join(lines)


def _evaluation_table(evaluations: list[Evaluation]) -> list[str]:
    if not evaluations:
        return ["No evaluation results are recorded for this package."]
    names: list[str] = []
    for ev in evaluations:
        names += [n for n in ev.metrics if n not in names]
    rows = [
        "| Dataset | Split | " + " | ".join(names) + " | Source |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for ev in evaluations:
        cells = [f"{ev.metrics[n]:.2f}" if n in ev.metrics else "–" for n in names]
        source = f"[{ev.source}]({ev.source_url})" if ev.source_url else ev.source
        rows.append(f"| {ev.dataset} | {ev.split} | " + " | ".join(cells) + f" | {source} |")
    return rows


def save_pretrained(
    model: RS2SAM2,
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
            :func:`~rs2sam2.convert.load_sam2_checkpoint` from a Hub repo), which is fetched through the
            Hub cache to check that and to record its sha256.
        card: extra model-card content. An existing ``README.md`` is kept.
    """
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    config = RS2SAM2Config.from_dict(model.config.to_dict())
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    package: dict[str, Any] = {"dtype": _DTYPE_NAMES[dtype or model.dtype], "omitted_prefixes": []}
    if compact:
        state, config.base_model = _compact(state, config)
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
    if _read_config(config_file).get("model_type") != MODEL_TYPE:
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
    model: RS2SAM2,
    repo_id: str,
    *,
    processor: Any | None = None,
    tokenizer: Any | None = None,
    dtype: torch.dtype | None = None,
    compact: bool = False,
    card: ModelCardInfo | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload rs2sam2 model",
    branch: str | None = None,
    create_pr: bool | None = None,
) -> str:
    """Save the model (as :func:`save_pretrained`) into a temporary folder and upload it; see
    ``RS2SAM2.push_to_hub``."""
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
        return push_folder(
            folder,
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message,
            branch=branch,
            create_pr=create_pr,
        )


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
    from .modeling import RS2SAM2

    source = ModelSource(src, subfolder=subfolder, revision=revision)
    model = load_pretrained(RS2SAM2, src, subfolder=subfolder, revision=revision, config=config)
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


# ------------------------------------------------------------------------------------------------ CLI
def _cli_push(args: argparse.Namespace) -> int:
    import sys

    from huggingface_hub.errors import HfHubHTTPError

    try:
        url = push_folder(args.folder, args.repo_id, private=args.private or None, token=args.token)
    except (FileNotFoundError, ValueError, HfHubHTTPError) as e:
        print(f"rs2sam2 push: error: {e}", file=sys.stderr)
        return 1
    print(url)
    return 0
