"""Text tokenization for the BEiT-3 union encoder (XLM-R sentencepiece conventions).

The official RS2-SAM2 code builds its tokenizer as ``XLMRobertaTokenizer(vocab_file=beit3.spm)``, sets
``pad_token = unk_token`` (so the pad id is 3), adds a ``[SEG]`` token and saves the folder; at test time it
reloads it with ``AutoTokenizer.from_pretrained(folder, use_fast=False)``. With transformers 4 that was the
*slow* sentencepiece tokenizer, whose ids are the raw sentencepiece ids shifted by the fairseq offset:

* fairseq ids ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3;
* sentencepiece piece ``i >= 3`` -> ``i + 1`` (the spm itself holds ``<unk>``, ``<s>``, ``</s>`` at 0, 1, 2);
* ``<mask>`` is the last base id (``num_pieces + 1``), added tokens such as ``[SEG]`` follow.

What transformers 5 does instead (checked against transformers 5.23 / tokenizers 0.23), and how this module
copes with it:

* There is no slow path any more: ``use_fast`` is ignored and ``XLMRobertaTokenizer`` is always backed by a
  ``tokenizers`` Unigram model.
* ``XLMRobertaTokenizer(vocab_file=...)`` called directly ignores the file and silently builds a 5-token
  placeholder vocabulary (``<s> <pad> </s> <unk> <mask>``); ``from_pretrained`` on a folder without the
  sentencepiece file does the same. :func:`load_tokenizer` detects both.
* ``from_pretrained`` converts ``sentencepiece.bpe.model`` only when ``protobuf`` is installed (it is not a
  dependency of this project); otherwise it falls back to a tiktoken reader and fails. :func:`load_tokenizer`
  therefore reads the sentencepiece file with a small built-in protobuf reader and hands transformers a
  ``tokenizer.json`` built from it, so the sentencepiece file stays the single source of truth.
* When the saved config says ``pad_token: "<unk>"`` (what saving after ``pad_token = unk_token`` writes),
  transformers' own spm conversion (with protobuf) puts ``<unk>`` at id 1 as well, moves ``<pad>`` behind
  ``<mask>`` and shifts ``[SEG]`` by one.
  Building the vocabulary ourselves avoids this; :func:`load_tokenizer` also checks the fairseq mapping.
* The backend is always Unigram. For a BPE sentencepiece model this gives different ids, so
  :func:`load_tokenizer` replaces the backend model by an equivalent BPE model (unknown characters fused
  like sentencepiece does).

For unigram and BPE models the resulting ids equal ``[0] + [offset(i) for i in sp.encode(text)] + [2]``
exactly, except that literal special-token strings in the text (``<s>``, ``</s>``, ``<unk>``, ``<pad>``,
``<mask>``, ``[SEG]``) are matched as those tokens, as the official transformers tokenizer also did.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from ..weights.sources import (
    SPECIAL_TOKENS_MAP_FILENAME,
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    TOKENIZER_FILES,
    TOKENIZER_JSON_FILENAME,
    ModelSource,
    SourceOptions,
)
from .spm_model import MODEL_BPE, SentencePieceModelInfo, check_xlmr_conventions, read_sentencepiece_model
from .tokenizer_files import backend_json, bpe_backend_model, fairseq_vocab

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def load_tokenizer(
    path_or_repo: str | os.PathLike[str],
    *,
    min_vocab_size: int,
    max_vocab_size: int | None = None,
    **where: Unpack[SourceOptions],
) -> PreTrainedTokenizerBase:
    """Load an XLM-R sentencepiece tokenizer folder the way the official code does, with checks.

    Resolves the files through :class:`~rs2sam2.weights.sources.ModelSource` (a local directory, or a Hub
    repo id through the Hugging Face cache, with the same rules as the model's weights), reads
    ``sentencepiece.bpe.model`` (the source of truth; a ``tokenizer.json`` next to it is ignored), loads a
    transformers ``XLMRobertaTokenizer`` with the folder's config (special and added tokens such as ``[SEG]``)
    and sets ``pad_token = unk_token`` so the pad id is 3, as in the official code. A folder holding only a
    ``tokenizer.json`` (what transformers 5's ``save_pretrained`` writes) is loaded from that file.

    If the network is allowed but the Hub cannot be reached, a warning is issued and only the local cache is
    used (one quick probe instead of huggingface_hub's retries for every file).

    Args:
        path_or_repo: Local folder or Hub repo id (``org/name``).
        min_vocab_size: Smallest acceptable ``len(tokenizer)``; catches the silent 5-token fallback.
        max_vocab_size: Largest acceptable vocabulary (the text embedding's row count), or ``None``.
        where: Where the files come from (:class:`~rs2sam2.weights.sources.SourceOptions`, the same as
            for the weights): ``subfolder`` (the folder inside ``path_or_repo`` that holds the tokenizer
            files), ``revision``, ``token``, ``cache_dir``, ``force_download``, and ``local_files_only``:
            never touch the network; ``None`` follows ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` as set
            when this is called. The hub cache is likewise read from ``HF_HUB_CACHE`` / ``HF_HOME`` at call
            time.

    Returns:
        The tokenizer (a ``transformers.XLMRobertaTokenizer``).

    Raises:
        FileNotFoundError: The folder or repo cannot be found (e.g. a repo not in the cache while offline).
        ValueError: The sentencepiece file is missing (the 5-token trap), it does not follow XLM-R's
            conventions, or the vocabulary is smaller than ``min_vocab_size`` / larger than
            ``max_vocab_size``.
    """
    from transformers import XLMRobertaTokenizer

    if not isinstance(min_vocab_size, int) or min_vocab_size < 1:
        raise ValueError(f"min_vocab_size must be a positive int, got {min_vocab_size!r}")
    if max_vocab_size is not None and (
        not isinstance(max_vocab_size, int) or max_vocab_size < min_vocab_size
    ):
        raise ValueError(f"max_vocab_size must be an int >= min_vocab_size, got {max_vocab_size!r}")
    source = ModelSource(path_or_repo, **where)

    spm_path = source.file(SPM_FILENAME)
    json_path = source.file(TOKENIZER_JSON_FILENAME) if spm_path is None else None
    if spm_path is None and json_path is None:
        found = [f for f in (TOKENIZER_CONFIG_FILENAME, SPECIAL_TOKENS_MAP_FILENAME) if source.file(f)]
        if not found and not source.is_local:
            raise FileNotFoundError(
                f"no tokenizer files found for {source.describe()}"
                + (" (offline: only the local cache is searched)" if source.local_files_only else "")
            )
        raise ValueError(
            f"{SPM_FILENAME!r} is missing from {source.describe()} (found: {found or 'nothing'}). Without it "
            "transformers silently builds a 5-token placeholder vocabulary (<s> <pad> </s> <unk> <mask>) -- "
            "the offline 5-token trap -- so every word would become <unk>. Copy the sentencepiece model of "
            "the checkpoint into the folder."
        )
    # The other files of the folder, fetched by the same source (same revision, token, cache): they land in
    # the folder of the file found above (a local folder, or the revision's snapshot in the Hub cache), which
    # transformers then reads without touching the network.
    for name in TOKENIZER_FILES:
        if name not in (SPM_FILENAME, TOKENIZER_JSON_FILENAME):
            source.file(name)
    folder = (spm_path or json_path).parent

    info: SentencePieceModelInfo | None = None
    kwargs: dict[str, Any] = {"local_files_only": True}
    with tempfile.TemporaryDirectory(prefix="rs2sam2-tok-") as tmp:
        if spm_path is not None:
            info = read_sentencepiece_model(spm_path)
            check_xlmr_conventions(info, spm_path)
            backend_file = Path(tmp) / TOKENIZER_JSON_FILENAME
            backend_file.write_text(backend_json(info), encoding="utf-8")
            # An explicit ``tokenizer_file`` wins over the folder's one and keeps transformers from converting
            # the sentencepiece file itself (needs protobuf, and mis-orders ids when pad_token is <unk>).
            kwargs["tokenizer_file"] = str(backend_file)
        tokenizer = XLMRobertaTokenizer.from_pretrained(str(folder), **kwargs)
    tokenizer.name_or_path = source.name
    # How the files were found is not part of the tokenizer: keep it out of a saved tokenizer_config.json.
    tokenizer.init_kwargs.pop("local_files_only", None)

    if info is not None:
        if info.model_type == MODEL_BPE:
            tokenizer.backend_tokenizer.model = bpe_backend_model(info)
        _check_fairseq_mapping(tokenizer, info, source)
    tokenizer.pad_token = tokenizer.unk_token
    _check_vocab_size(
        tokenizer, min_vocab_size, max_vocab_size, source.describe(), has_spm=spm_path is not None
    )
    return tokenizer


def _check_fairseq_mapping(tokenizer: Any, info: SentencePieceModelInfo, source: ModelSource) -> None:
    base = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
    expected = {token: index for index, (token, _score) in enumerate(fairseq_vocab(info))}
    if base != expected:
        wrong = sorted(t for t in set(base) | set(expected) if base.get(t) != expected.get(t))[:5]
        raise ValueError(
            f"the vocabulary loaded from {source.describe()} does not follow the XLM-R fairseq id mapping of "
            f"its sentencepiece model (first differing tokens: {wrong})"
        )


def validate_tokenizer(tokenizer: Any, *, min_vocab_size: int, max_vocab_size: int | None = None) -> None:
    """Check that a tokenizer fits a model: ``len >= min_vocab_size`` and every id ``< max_vocab_size``.

    :func:`load_tokenizer` runs this itself; use it for tokenizers obtained otherwise.

    Raises:
        ValueError: The vocabulary is too small (typically the offline 5-token trap: a tokenizer built
            without its sentencepiece file) or has ids beyond the model's text embedding rows.
    """
    where = repr(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    _check_vocab_size(tokenizer, min_vocab_size, max_vocab_size, where, has_spm=None)


def _check_vocab_size(
    tokenizer: Any, min_vocab_size: int, max_vocab_size: int | None, where: str, *, has_spm: bool | None
) -> None:
    size = len(tokenizer)
    if size < min_vocab_size:
        hint = (
            "This is the offline 5-token trap: transformers falls back to a placeholder vocabulary when "
            f"{SPM_FILENAME!r} is missing (or XLMRobertaTokenizer(vocab_file=...) is called directly)."
            if size < 16
            else "Is this the tokenizer of the checkpoint?"
        )
        spm_state = "" if has_spm is None else f" ({SPM_FILENAME} {'present' if has_spm else 'missing'})"
        raise ValueError(
            f"the tokenizer from {where} has only {size} tokens, expected at least {min_vocab_size}"
            f"{spm_state}. {hint}"
        )
    if max_vocab_size is not None:
        max_id = max(tokenizer.get_vocab().values())
        needed = max(size, max_id + 1)
        if needed > max_vocab_size:
            raise ValueError(
                f"the tokenizer from {where} needs {needed} embedding rows (len {size}, largest id {max_id}) "
                f"but the model's text embedding has only {max_vocab_size}: ids >= {max_vocab_size} would "
                "index out of range; the tokenizer does not match this checkpoint."
            )
