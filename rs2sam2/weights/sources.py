"""Where the files of a model folder come from: ONE resolver for the weights and the tokenizer alike.

A model id is a local folder or a Hugging Face Hub repo id, optionally with a ``subfolder`` inside it (the
official release has ``rrsisd`` and ``refseg``). :class:`ModelSource` turns it into local file paths: a
folder's files directly, a Hub repo's through the Hugging Face cache (``hf_hub_download``) with the same
``revision``, ``token``, ``cache_dir``, ``force_download`` and ``local_files_only`` for every file, so that
the weights (:mod:`rs2sam2.weights.hub`) and the tokenizer (:mod:`rs2sam2.text.loading`) of one model id
always come from the same place and the same revision.

Rules it applies, read when a source is made (huggingface_hub reads its environment only once, at import):

* ``local_files_only=None`` follows ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``; the cache is
  ``cache_dir``, else ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else huggingface_hub's default;
* a name that looks like a path (absolute, ``./``, ``~``, more than one ``/``, or the platform's ``os.sep``)
  and is no folder is a missing folder, never a Hub id;
* with the network allowed, one quick probe of the Hub comes first: if the Hub is unreachable, only the
  cache is searched (a warning says so), instead of huggingface_hub retrying every file for ~25 s.

The file names of a model folder (:data:`CONFIG_NAME`, :data:`WEIGHT_NAMES`, :data:`TOKENIZER_FILES`) are
defined here, next to the resolver that looks for them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict, Unpack

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Weight files looked for, in order; the official release is one of the two (transformers' save_pretrained).
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEX_SUFFIX = ".index.json"

SPM_FILENAME = "sentencepiece.bpe.model"
TOKENIZER_CONFIG_FILENAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILENAME = "special_tokens_map.json"
ADDED_TOKENS_FILENAME = "added_tokens.json"
TOKENIZER_JSON_FILENAME = "tokenizer.json"
TOKENIZER_FILES = (
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    SPECIAL_TOKENS_MAP_FILENAME,
    ADDED_TOKENS_FILENAME,
    TOKENIZER_JSON_FILENAME,
)
"""The tokenizer files of a model folder (XLM-R sentencepiece layout, see :mod:`rs2sam2.text`)."""


class SourceOptions(TypedDict, total=False):
    """Where a model id's files come from: the keyword arguments of :class:`ModelSource`, taken (as
    ``**where``) by every loader of a model id, weights and tokenizer alike."""

    subfolder: str | None  # folder inside the model folder / repo (the official release: rrsisd, refseg)
    revision: str | None  # Hub branch, tag or commit
    cache_dir: str | os.PathLike[str] | None  # default: HF_HUB_CACHE, else HF_HOME/hub, as set now
    force_download: bool
    local_files_only: bool | None  # never touch the network; None: HF_HUB_OFFLINE as set now
    token: str | bool | None  # Hub token (default: the cached login / HF_TOKEN)


SOURCE_OPTIONS = tuple(SourceOptions.__annotations__)
"""The names of :class:`SourceOptions`."""


def split_source_options(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kwargs`` split into (:data:`SOURCE_OPTIONS`, the rest): what a caller that loads both weights and
    tokenizer passes to both."""
    source = {k: v for k, v in kwargs.items() if k in SOURCE_OPTIONS}
    return source, {k: v for k, v in kwargs.items() if k not in SOURCE_OPTIONS}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_now() -> bool:
    """``HF_HUB_OFFLINE`` as set *now* (huggingface_hub reads it only once, at import)."""
    from huggingface_hub import constants

    return _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE") or bool(constants.HF_HUB_OFFLINE)


def _cache_dir_now() -> str | None:
    """The hub cache named by the environment now (huggingface_hub reads it only once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _looks_like_path(name: str) -> bool:
    if os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in name


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
                warnings.warn(
                    f"the Hugging Face Hub is unreachable; loading {self.name!r} from the local cache only "
                    "(set HF_HUB_OFFLINE=1 to skip this check)",
                    stacklevel=3,
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


def hub_file(repo_id: str, filename: str, **where: Unpack[SourceOptions]) -> Path:
    """One file of a Hub repo, through the cache (``HF_HUB_OFFLINE`` / ``HF_HUB_CACHE`` read now)."""
    return ModelSource(repo_id, **where).require(filename)
