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

import json
import os
import random
import struct
import tempfile
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "ADDED_TOKENS_FILENAME",
    "OFFICIAL_PAD_TOKEN_ID",
    "SEG_TOKEN",
    "SPECIAL_TOKENS_MAP_FILENAME",
    "SPM_FILENAME",
    "TOKENIZER_CONFIG_FILENAME",
    "TOKENIZER_JSON_FILENAME",
    "SentencePieceModelInfo",
    "clean_text",
    "load_tokenizer",
    "make_test_tokenizer",
    "read_sentencepiece_model",
    "remote_sensing_corpus",
    "tokenize",
    "train_sentencepiece_tokenizer",
    "validate_tokenizer",
]

SPM_FILENAME = "sentencepiece.bpe.model"
TOKENIZER_CONFIG_FILENAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILENAME = "special_tokens_map.json"
ADDED_TOKENS_FILENAME = "added_tokens.json"
TOKENIZER_JSON_FILENAME = "tokenizer.json"

SEG_TOKEN = "[SEG]"
#: Official padding id: ``pad_token = unk_token`` makes padding (and real ``<unk>`` tokens) id 3.
OFFICIAL_PAD_TOKEN_ID = 3

BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
_FAIRSEQ_SPECIALS = (BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
_FAIRSEQ_OFFSET = 1
_BOS_ID, _EOS_ID, _UNK_ID = 0, 2, 3
# What transformers writes for "no maximum length" (``VERY_LARGE_INTEGER``), as in the official folders.
_UNBOUNDED_MODEL_MAX_LENGTH = int(1e30)

# sentencepiece_model.proto enums.
_PIECE_NORMAL, _PIECE_UNKNOWN, _PIECE_CONTROL = 1, 2, 3
_MODEL_UNIGRAM, _MODEL_BPE = 1, 2
_MODEL_TYPE_NAMES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
# TrainerSpec field numbers -> SentencePieceModelInfo attributes.
_TRAINER_FIELDS = {
    3: "model_type",
    35: "byte_fallback",
    40: "unk_id",
    41: "bos_id",
    42: "eos_id",
    43: "pad_id",
}

# Characters that ``str.isspace`` accepts but sentencepiece's ``nmt_nfkc`` rule deletes instead of turning
# into a space (vertical tab and the ASCII file/group/record/unit separators).
_DELETED_SPACE_CHARS = frozenset("\x0b\x1c\x1d\x1e\x1f")


# --------------------------------------------------------------------------------------------------------
# Reading a sentencepiece model without the protobuf package
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentencePieceModelInfo:
    """The parts of a sentencepiece ``ModelProto`` that the XLM-R conversion needs.

    Attributes:
        pieces: The piece strings, indexed by sentencepiece id.
        scores: The piece scores (log probabilities for unigram, ``-rank`` for BPE).
        types: The piece types (1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte).
        model_type: 1 unigram, 2 BPE, 3 word, 4 char.
        byte_fallback: Whether unknown characters fall back to byte pieces.
        unk_id: Id of the unknown piece. ``bos_id``/``eos_id``/``pad_id`` likewise (-1 = absent).
        normalizer_name: Name of the normalization rule (``nmt_nfkc`` for XLM-R).
        precompiled_charsmap: The compiled normalization table (empty for the identity rule).
        add_dummy_prefix: Whether a ``▁`` is prepended to the text.
        remove_extra_whitespaces: Whether leading, trailing and repeated spaces are removed.
    """

    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    types: tuple[int, ...]
    model_type: int = _MODEL_UNIGRAM
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    normalizer_name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True

    @property
    def model_type_name(self) -> str:
        """``"unigram"``, ``"bpe"``, ``"word"`` or ``"char"``."""
        return _MODEL_TYPE_NAMES.get(self.model_type, f"unknown({self.model_type})")

    def __len__(self) -> int:
        return len(self.pieces)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _iter_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield ``(field_number, value)`` for each field of a serialized protobuf message."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
        elif wire_type == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire_type == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if pos > end:
            raise ValueError("truncated protobuf field")
        yield number, value


def _as_int32(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise ValueError("expected a varint field")
    return value - (1 << 64) if value >= 1 << 63 else value


def _as_bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def read_sentencepiece_model(path: str | os.PathLike[str]) -> SentencePieceModelInfo:
    """Read a sentencepiece ``.model`` file (a serialized ``ModelProto``) without needing ``protobuf``.

    Only the fields used for the XLM-R conversion are decoded; the rest is skipped.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a sentencepiece model.
    """
    path = Path(path)
    data = path.read_bytes()
    pieces: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    spec: dict[str, Any] = {}
    try:
        for number, value in _iter_fields(data):
            if number == 1:  # repeated SentencePiece pieces
                piece, score, piece_type = "", 0.0, _PIECE_NORMAL
                for sub_number, sub_value in _iter_fields(_as_bytes(value)):
                    if sub_number == 1:
                        piece = _as_bytes(sub_value).decode("utf-8")
                    elif sub_number == 2:
                        score = struct.unpack("<f", _as_bytes(sub_value))[0]
                    elif sub_number == 3:
                        piece_type = _as_int32(sub_value)
                pieces.append(piece)
                scores.append(score)
                types.append(piece_type)
            elif number == 2:  # TrainerSpec
                for sub_number, sub_value in _iter_fields(_as_bytes(value)):
                    if sub_number in _TRAINER_FIELDS:
                        spec[_TRAINER_FIELDS[sub_number]] = _as_int32(sub_value)
            elif number == 3:  # NormalizerSpec
                for sub_number, sub_value in _iter_fields(_as_bytes(value)):
                    if sub_number == 1:
                        spec["normalizer_name"] = _as_bytes(sub_value).decode("utf-8")
                    elif sub_number == 2:
                        spec["precompiled_charsmap"] = _as_bytes(sub_value)
                    elif sub_number == 3:
                        spec["add_dummy_prefix"] = bool(_as_int32(sub_value))
                    elif sub_number == 4:
                        spec["remove_extra_whitespaces"] = bool(_as_int32(sub_value))
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise ValueError(f"{path} is not a valid sentencepiece model: {exc}") from exc
    if not pieces:
        raise ValueError(f"{path} is not a valid sentencepiece model: it has no pieces")
    if "byte_fallback" in spec:
        spec["byte_fallback"] = bool(spec["byte_fallback"])
    return SentencePieceModelInfo(pieces=tuple(pieces), scores=tuple(scores), types=tuple(types), **spec)


def _check_xlmr_conventions(info: SentencePieceModelInfo, source: str) -> None:
    """Check that a sentencepiece model can be mapped to XLM-R ids with the fairseq offset."""
    problems: list[str] = []
    head_ok = info.types[:3] == (_PIECE_UNKNOWN, _PIECE_CONTROL, _PIECE_CONTROL)
    if len(info) < 4 or not head_ok or (info.unk_id, info.bos_id, info.eos_id) != (0, 1, 2):
        problems.append(
            "pieces 0, 1, 2 must be <unk>, <s>, </s> (unk_id=0, bos_id=1, eos_id=2), as in XLM-R's "
            f"sentencepiece model; got {list(info.pieces[:3])} with types {list(info.types[:3])}"
        )
    if info.pad_id >= 0:
        problems.append(f"the model has its own pad piece (pad_id={info.pad_id}); XLM-R's has none")
    if info.model_type not in (_MODEL_UNIGRAM, _MODEL_BPE):
        problems.append(f"model type {info.model_type_name!r} is not supported (only unigram and bpe)")
    if info.byte_fallback:
        problems.append("byte_fallback models are not supported (XLM-R does not use byte fallback)")
    odd = [i for i, t in enumerate(info.types[3:], start=3) if t != _PIECE_NORMAL]
    if odd:
        problems.append(f"pieces {odd[:5]} are control/user-defined/unused/byte pieces (not convertible)")
    if not (info.add_dummy_prefix and info.remove_extra_whitespaces):
        problems.append("add_dummy_prefix and remove_extra_whitespaces must be enabled (XLM-R defaults)")
    if problems:
        details = "; ".join(problems)
        raise ValueError(f"{source} does not follow XLM-R's sentencepiece conventions: {details}")


# --------------------------------------------------------------------------------------------------------
# Building the transformers / tokenizers objects
# --------------------------------------------------------------------------------------------------------


def _fairseq_vocab(info: SentencePieceModelInfo) -> list[tuple[str, float]]:
    """XLM-R vocabulary: the 4 fairseq specials, pieces 3.. shifted by one, then ``<mask>``."""
    vocab = [(token, 0.0) for token in _FAIRSEQ_SPECIALS]
    vocab.extend(zip(info.pieces[3:], info.scores[3:]))
    vocab.append((MASK_TOKEN, 0.0))
    return vocab


def _backend_json(info: SentencePieceModelInfo) -> str:
    """Serialize the ``tokenizers`` pipeline that transformers' ``XLMRobertaTokenizer`` builds for ``info``.

    The model is always Unigram because that is the only model ``XLMRobertaTokenizer`` accepts; BPE models
    are fixed up after loading (:func:`_bpe_backend_model`).
    """
    from transformers import XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer(
        vocab=_fairseq_vocab(info), _spm_precompiled_charsmap=info.precompiled_charsmap or None
    )
    return tokenizer.backend_tokenizer.to_str(pretty=True)


def _bpe_backend_model(info: SentencePieceModelInfo) -> Any:
    """A ``tokenizers`` BPE model that segments like sentencepiece's BPE for ``info``.

    Sentencepiece BPE repeatedly merges the adjacent pair whose concatenation is the highest-scoring piece;
    listing every split of every piece into two pieces, ordered by the score of the result, reproduces it.
    Consecutive unknown characters become one ``<unk>`` in sentencepiece, hence ``fuse_unk``.
    """
    from tokenizers.models import BPE

    vocab = {token: index for index, (token, _score) in enumerate(_fairseq_vocab(info))}
    normal = {
        piece: score
        for piece, score, piece_type in zip(info.pieces, info.scores, info.types)
        if piece_type == _PIECE_NORMAL
    }
    merges: list[tuple[str, str]] = []
    for piece in sorted(normal, key=lambda p: (-normal[p], vocab[p])):
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                merges.append((left, right))
    return BPE(vocab=vocab, merges=merges, unk_token=UNK_TOKEN, fuse_unk=True)


def _token_entry(
    content: str, *, lstrip: bool = False, normalized: bool = False, special: bool = True
) -> dict[str, Any]:
    return {
        "content": content,
        "lstrip": lstrip,
        "normalized": normalized,
        "rstrip": False,
        "single_word": False,
        "special": special,
    }


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def _write_tokenizer_folder(
    out_dir: Path, model_bytes: bytes, info: SentencePieceModelInfo, *, write_tokenizer_json: bool
) -> None:
    """Write the released folder layout (plus ``tokenizer.json`` when requested)."""
    mask_id = len(info) + 1
    seg_id = mask_id + 1
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SPM_FILENAME).write_bytes(model_bytes)
    config = {
        "added_tokens_decoder": {
            "0": _token_entry(BOS_TOKEN),
            "1": _token_entry(PAD_TOKEN),
            "2": _token_entry(EOS_TOKEN),
            "3": _token_entry(UNK_TOKEN),
            str(mask_id): _token_entry(MASK_TOKEN, lstrip=True),
            # ``tokenizer.add_tokens("[SEG]")`` adds a normal (non-special, normalized) token.
            str(seg_id): _token_entry(SEG_TOKEN, normalized=True, special=False),
        },
        "bos_token": BOS_TOKEN,
        "clean_up_tokenization_spaces": True,
        "cls_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "mask_token": MASK_TOKEN,
        "model_max_length": _UNBOUNDED_MODEL_MAX_LENGTH,
        "pad_token": UNK_TOKEN,
        "sep_token": EOS_TOKEN,
        "sp_model_kwargs": {},
        "tokenizer_class": "XLMRobertaTokenizer",
        "unk_token": UNK_TOKEN,
    }
    _write_json(out_dir / TOKENIZER_CONFIG_FILENAME, config)
    special_tokens_map = {
        "bos_token": BOS_TOKEN,
        "cls_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "mask_token": {k: v for k, v in _token_entry(MASK_TOKEN, lstrip=True).items() if k != "special"},
        "pad_token": UNK_TOKEN,
        "sep_token": EOS_TOKEN,
        "unk_token": UNK_TOKEN,
    }
    _write_json(out_dir / SPECIAL_TOKENS_MAP_FILENAME, special_tokens_map)
    _write_json(out_dir / ADDED_TOKENS_FILENAME, {SEG_TOKEN: seg_id})
    json_path = out_dir / TOKENIZER_JSON_FILENAME
    if write_tokenizer_json:
        json_path.write_text(_backend_json(info) + "\n", encoding="utf-8")
    elif json_path.exists():
        json_path.unlink()  # a stale one from an earlier training would contradict the new model


# --------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------


def _training_sentences(texts: Iterable[str]) -> list[str]:
    sentences: list[str] = []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"training text {index} is {type(text).__name__}, expected str")
        cleaned = " ".join(clean_text(text).split())
        if cleaned:
            sentences.append(cleaned)
    if not sentences:
        raise ValueError("no non-empty training text was given")
    return sentences


def train_sentencepiece_tokenizer(
    texts: Iterable[str],
    out_dir: str | os.PathLike[str],
    vocab_size: int,
    *,
    model_type: str = "unigram",
    seed: int = 0,
    character_coverage: float = 1.0,
    write_tokenizer_json: bool | None = None,
) -> Path:
    """Train a small sentencepiece model with XLM-R's conventions and save a loadable tokenizer folder.

    The sentencepiece model keeps sentencepiece's defaults, which are XLM-R's: ``<unk>``, ``<s>``, ``</s>`` at
    ids 0, 1, 2, no pad piece, ``nmt_nfkc`` normalization, a dummy ``▁`` prefix, no byte fallback. The folder
    has the released layout -- ``sentencepiece.bpe.model``, ``tokenizer_config.json`` (``pad_token`` =
    ``<unk>``), ``special_tokens_map.json`` and ``added_tokens.json`` with ``[SEG]`` -- plus, for unigram
    models, a ``tokenizer.json`` so that plain ``AutoTokenizer.from_pretrained(folder)`` works with
    transformers 5 without ``protobuf`` (transformers 4's slow tokenizer ignores it). Use
    :func:`load_tokenizer` to load it with the official pad semantics and checks.

    Args:
        texts: Training sentences. Control characters are removed and whitespace runs collapsed.
        out_dir: Folder to write (created if needed; our files in it are overwritten).
        vocab_size: Number of sentencepiece pieces, including ``<unk>``, ``<s>``, ``</s>``. The transformers
            tokenizer then has ``vocab_size + 3`` tokens (``<pad>``, ``<mask>`` and ``[SEG]`` added).
        model_type: ``"unigram"`` (like XLM-R's model, despite its ``.bpe.model`` name) or ``"bpe"``.
        seed: Seed of sentencepiece's random generator.
        character_coverage: Share of characters covered by the alphabet (sentencepiece option).
        write_tokenizer_json: Write ``tokenizer.json``. ``None`` means "for unigram models"; it cannot be
            written for BPE models because transformers 5's ``XLMRobertaTokenizer`` only holds Unigram models.

    Returns:
        The output folder.

    Training is deterministic: the same inputs give byte-identical files (one training thread, fixed seed).
    """
    import sentencepiece as spm

    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
    if write_tokenizer_json is None:
        write_tokenizer_json = model_type == "unigram"
    elif write_tokenizer_json and model_type != "unigram":
        raise ValueError("tokenizer.json can only be written for unigram models (see load_tokenizer for BPE)")
    if not isinstance(vocab_size, int) or vocab_size < 8:
        raise ValueError(f"vocab_size must be an int >= 8, got {vocab_size!r}")
    sentences = _training_sentences(texts)

    writer = _BytesWriter()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=writer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            normalization_rule_name="nmt_nfkc",
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            byte_fallback=False,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise ValueError(f"sentencepiece training failed (vocab_size={vocab_size}): {exc}") from exc
    model_bytes = writer.getvalue()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_model = Path(tmp) / SPM_FILENAME
        tmp_model.write_bytes(model_bytes)
        info = read_sentencepiece_model(tmp_model)
    _check_xlmr_conventions(info, "the trained sentencepiece model")
    _write_tokenizer_folder(out, model_bytes, info, write_tokenizer_json=write_tokenizer_json)
    return out


class _BytesWriter:
    """Minimal file-like sink for sentencepiece's ``model_writer``."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_cache_dir() -> str | None:
    """The hub cache named by the environment *now* (huggingface_hub reads it only once, at import)."""
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
    """One quick request to the Hub; ``False`` only for transport failures (no network, DNS, timeout)."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(repo_id, timeout=10)
    except Exception as exc:  # any HTTP answer (404, 401, ...) means the Hub is reachable
        transport = {"TransportError", "TimeoutException"} & {cls.__name__ for cls in type(exc).__mro__}
        return not (isinstance(exc, (ConnectionError, TimeoutError)) or transport)
    return True


@dataclass(frozen=True)
class _Source:
    name: str
    subfolder: str
    local_files_only: bool
    cache_dir: str | None

    def describe(self) -> str:
        where = f"{self.name!r}" + (f" (subfolder {self.subfolder!r})" if self.subfolder else "")
        if os.path.isdir(self.name):
            return where
        return f"Hub repo {where} in cache {self.cache_dir or 'default'}"

    def resolve(self, filename: str) -> str | None:
        from transformers.utils import cached_file

        try:
            return cached_file(
                self.name,
                filename,
                subfolder=self.subfolder,
                cache_dir=self.cache_dir,
                local_files_only=self.local_files_only,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                _raise_exceptions_for_gated_repo=False,
            )
        except OSError as exc:  # invalid repo id, repository not found, ...
            raise FileNotFoundError(f"cannot resolve {filename!r} from {self.describe()}: {exc}") from exc


def load_tokenizer(
    path_or_repo: str | os.PathLike[str],
    *,
    min_vocab_size: int,
    max_vocab_size: int | None = None,
    subfolder: str | None = None,
    local_files_only: bool | None = None,
) -> PreTrainedTokenizerBase:
    """Load an XLM-R sentencepiece tokenizer folder the way the official code does, with checks.

    Resolves the folder (a local directory, or a Hub repo id served from the local Hugging Face cache), reads
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
        subfolder: Folder inside ``path_or_repo`` that holds the tokenizer files.
        local_files_only: Never touch the network. ``None`` follows ``HF_HUB_OFFLINE`` /
            ``TRANSFORMERS_OFFLINE`` as set when this is called. The hub cache is likewise read from
            ``HF_HUB_CACHE`` / ``HF_HOME`` at call time.

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
    name = os.fspath(path_or_repo)
    if not os.path.isdir(name) and (isinstance(path_or_repo, os.PathLike) or _looks_like_path(name)):
        raise FileNotFoundError(f"tokenizer folder {name!r} does not exist")
    if local_files_only is None:
        from huggingface_hub import constants as hub_constants

        local_files_only = (
            _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE") or hub_constants.HF_HUB_OFFLINE
        )
    if not local_files_only and not os.path.isdir(name) and not _hub_reachable(name):
        # Without this, every file lookup would go through huggingface_hub's retries (~25 s each).
        warnings.warn(
            f"the Hugging Face Hub is unreachable; loading {name!r} from the local cache only "
            "(set HF_HUB_OFFLINE=1 to skip this check)",
            stacklevel=2,
        )
        local_files_only = True
    source = _Source(name, subfolder or "", bool(local_files_only), _hub_cache_dir())

    spm_path = source.resolve(SPM_FILENAME)
    json_path = source.resolve(TOKENIZER_JSON_FILENAME) if spm_path is None else None
    if spm_path is None and json_path is None:
        found = [f for f in (TOKENIZER_CONFIG_FILENAME, SPECIAL_TOKENS_MAP_FILENAME) if source.resolve(f)]
        if not found and not os.path.isdir(name):
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

    info: SentencePieceModelInfo | None = None
    kwargs: dict[str, Any] = {
        "subfolder": source.subfolder,
        "local_files_only": source.local_files_only,
        "cache_dir": source.cache_dir,
    }
    with tempfile.TemporaryDirectory(prefix="rs2sam2-tok-") as tmp:
        if spm_path is not None:
            info = read_sentencepiece_model(spm_path)
            _check_xlmr_conventions(info, spm_path)
            backend_file = Path(tmp) / TOKENIZER_JSON_FILENAME
            backend_file.write_text(_backend_json(info), encoding="utf-8")
            # An explicit ``tokenizer_file`` wins over the folder's one and keeps transformers from converting
            # the sentencepiece file itself (needs protobuf, and mis-orders ids when pad_token is <unk>).
            kwargs["tokenizer_file"] = str(backend_file)
        tokenizer = XLMRobertaTokenizer.from_pretrained(name, **kwargs)

    if info is not None:
        if info.model_type == _MODEL_BPE:
            tokenizer.backend_tokenizer.model = _bpe_backend_model(info)
        _check_fairseq_mapping(tokenizer, info, source)
    tokenizer.pad_token = tokenizer.unk_token
    _check_vocab_size(
        tokenizer, min_vocab_size, max_vocab_size, source.describe(), has_spm=spm_path is not None
    )
    return tokenizer


def _check_fairseq_mapping(tokenizer: Any, info: SentencePieceModelInfo, source: _Source) -> None:
    base = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
    expected = {token: index for index, (token, _score) in enumerate(_fairseq_vocab(info))}
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


# --------------------------------------------------------------------------------------------------------
# Tokenizing
# --------------------------------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Map whitespace-like characters to spaces and delete other control characters.

    Follows sentencepiece's ``nmt_nfkc`` rule: tab, newline, carriage return, form feed and Unicode spaces
    (NEL, NBSP, U+2028, ...) become ``" "``; every other control character (category ``Cc``, including
    vertical tab and U+001C-U+001F) is deleted. For text without control characters the result tokenizes
    exactly like the raw text; ``nmt_nfkc`` itself keeps NUL and most C1 controls as (unknown) characters,
    which this drops instead. Format characters (e.g. zero-width joiners in emoji or Indic scripts) are
    left to the tokenizer's normalizer. Unpaired surrogates (category ``Cs``: half of a broken UTF-16 pair,
    e.g. from a mis-decoded JSON string), which no tokenizer can encode, are deleted too.
    """
    out: list[str] = []
    for char in text:
        if char in _DELETED_SPACE_CHARS:
            continue
        if char.isspace():
            out.append(" ")
        elif unicodedata.category(char) not in ("Cc", "Cs"):
            out.append(char)
    return "".join(out)


def tokenize(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    pad_token_id: int = OFFICIAL_PAD_TOKEN_ID,
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize referring expressions with the official RS2-SAM2 semantics.

    Each text becomes ``[<s>] + pieces + [</s>]`` (``tokenizer(text).input_ids``); the batch is right-padded
    with ``pad_token_id`` and the attention mask is ``input_ids != pad_token_id``. With the official pad id 3
    a genuine ``<unk>`` token is therefore masked out too -- a quirk of the official code, kept on purpose.

    Text is first passed through :func:`clean_text` (control characters). Any script works; characters the
    sentencepiece model does not know become ``<unk>``.

    Args:
        tokenizer: A tokenizer from :func:`load_tokenizer` (any callable tokenizer adding ``<s>``/``</s>``).
        texts: The sentences (a list, not a single string).
        pad_token_id: Padding id; also defines the mask.
        max_length: Longest sequence including ``<s>`` and ``</s>`` (the usable length of the text position
            table, 1022 in the official model). Longer texts are truncated, keeping ``</s>`` last, with a
            warning. ``None`` disables truncation.

    Returns:
        ``input_ids`` (LongTensor ``(B, L)``) and ``attention_mask`` (BoolTensor ``(B, L)``).

    Raises:
        TypeError: ``texts`` is a string or holds non-strings.
        ValueError: ``texts`` is empty, a text is empty or whitespace-only (or has no token left after
            normalization), or ``max_length < 3``.
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError("texts must be a list of strings (wrap a single sentence in a list)")
    if len(texts) == 0:
        raise ValueError("texts is empty")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 3):
        raise ValueError(f"max_length must be an int >= 3 (<s>, one token, </s>), got {max_length!r}")
    cleaned: list[str] = []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {index} is {type(text).__name__}, expected str")
        text = clean_text(text)
        if not text.strip():
            raise ValueError(f"text {index} is empty or whitespace-only: {texts[index]!r}")
        cleaned.append(text)

    encoded = tokenizer(cleaned, add_special_tokens=True)["input_ids"]
    bos_id = getattr(tokenizer, "bos_token_id", None)
    eos_id = getattr(tokenizer, "eos_token_id", None)
    eos_id = _EOS_ID if eos_id is None else eos_id
    rows: list[list[int]] = []
    for index, ids in enumerate(encoded):
        ids = list(ids)
        if len(ids) < 2 or ids[-1] != eos_id or (bos_id is not None and ids[0] != bos_id):
            raise ValueError(f"the tokenizer did not wrap text {index} in <s> ... </s>: {ids[:4]}...")
        if len(ids) == 2:
            raise ValueError(f"text {index} has no token left after normalization: {texts[index]!r}")
        if max_length is not None and len(ids) > max_length:
            warnings.warn(
                f"text {index} has {len(ids)} tokens (with <s> and </s>), more than max_length={max_length}; "
                f"truncated to {max_length} tokens keeping </s> last",
                stacklevel=2,
            )
            ids = ids[: max_length - 1] + [ids[-1]]
        kept = [token for token in ids[1:-1] if token != pad_token_id]
        if len(kept) < len(ids) - 2 and not _has_visible_token(tokenizer, kept):
            warnings.warn(
                f"text {index} has no token besides the pad id {pad_token_id} (<unk>: characters the "
                f"tokenizer does not know) and word boundaries, so the attention mask hides all of it: "
                f"{texts[index]!r}",
                stacklevel=2,
            )
        rows.append(ids)

    length = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return input_ids, input_ids != pad_token_id


def _has_visible_token(tokenizer: Any, ids: list[int]) -> bool:
    """Whether some id is more than a bare word-boundary piece (``▁``)."""
    if not ids:
        return False
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    if convert is None:
        return True
    return any(str(token).strip("\u2581 ") for token in convert(ids))


# --------------------------------------------------------------------------------------------------------
# Test fixture
# --------------------------------------------------------------------------------------------------------

_COLOURS = ("white", "red", "blue", "green", "gray", "dark", "black", "yellow", "orange", "brown", "silver")
_SIZES = ("large", "small", "big", "tiny", "long", "round", "square", "rectangular", "narrow", "wide")
_OBJECTS = (
    "storage tank", "ship", "airplane", "vehicle", "bridge", "harbor", "tennis court", "baseball field",
    "basketball court", "ground track field", "windmill", "chimney", "dam", "stadium", "train station",
    "overpass", "golf field", "airport", "expressway service area", "expressway toll station", "building",
    "roof", "swimming pool", "parking lot", "roundabout", "helicopter", "boat", "truck", "container",
    "warehouse", "greenhouse", "soccer field", "wind turbine", "oil tank", "pier", "crane",
)  # fmt: skip
_STATES = ("parked", "docked", "moored", "located", "standing", "lying", "sitting", "placed")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "last")
_DIRECTIONS = (
    "top",
    "bottom",
    "left",
    "right",
    "upper left",
    "lower right",
    "north",
    "south",
    "east",
    "west",
)
_LANDMARKS = (
    "the road", "the river", "the runway", "the coast", "the parking lot", "the field", "the dam",
    "the highway", "the lake", "the forest", "the railway", "the canal", "the beach", "the shadow",
)  # fmt: skip
_RELATIONS = (
    "closest to {landmark}",
    "next to {landmark}",
    "on the {direction} of the image",
    "in the {direction} corner",
    "at the {direction}",
    "near {landmark}",
    "far from {landmark}",
    "in the middle",
    "between {landmark} and the {object}",
    "above the {object}",
    "below the {object}",
    "{state} beside {landmark}",
    "{state} along {landmark}",
    "surrounded by trees",
    "with a shadow pointing {direction}",
)


def remote_sensing_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Generate ``n`` deterministic referring expressions in the style of remote sensing datasets."""
    rng = random.Random(seed)
    phrases: list[str] = []
    for _ in range(n):
        obj = rng.choice(_OBJECTS)
        relation = rng.choice(_RELATIONS).format(
            landmark=rng.choice(_LANDMARKS),
            direction=rng.choice(_DIRECTIONS),
            object=rng.choice(_OBJECTS),
            state=rng.choice(_STATES),
        )
        style = rng.randrange(3)
        if style == 0:
            phrase = f"the {rng.choice(_COLOURS)} {obj} {relation}"
        elif style == 1:
            phrase = f"the {rng.choice(_ORDINALS)} {obj} from the {rng.choice(_DIRECTIONS)}"
        else:
            phrase = f"the {rng.choice(_SIZES)} {rng.choice(_COLOURS)} {obj} {relation}"
        phrases.append(phrase)
    return phrases


def make_test_tokenizer(
    out_dir: str | os.PathLike[str], vocab_size: int = 128, *, model_type: str = "unigram"
) -> Path:
    """Train a tiny tokenizer on :func:`remote_sensing_corpus` and save it to ``out_dir`` (well under 2 s).

    The folder is laid out like a released checkpoint's; ``len(load_tokenizer(out_dir, ...))`` is
    ``vocab_size + 3``. ``vocab_size`` can be at most 170 (unigram) or 871 (bpe) for this corpus.
    """
    return train_sentencepiece_tokenizer(remote_sensing_corpus(), out_dir, vocab_size, model_type=model_type)
