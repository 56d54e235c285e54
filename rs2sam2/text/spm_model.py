"""Sentencepiece model files read without the ``protobuf`` package, and XLM-R's conventions checked.

A sentencepiece ``.model`` file is a serialized ``ModelProto``; :func:`read_sentencepiece_model` decodes
the fields the XLM-R conversion needs with a small built-in protobuf reader (``protobuf`` is not a
dependency of this project). The token constants of XLM-R's fairseq id mapping live here too: fairseq ids
``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3, sentencepiece piece ``i >= 3`` → ``i + 1``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEG_TOKEN = "[SEG]"
#: Official padding id: ``pad_token = unk_token`` makes padding (and real ``<unk>`` tokens) id 3.
OFFICIAL_PAD_TOKEN_ID = 3

BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
FAIRSEQ_SPECIALS = (BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
_FAIRSEQ_OFFSET = 1
BOS_ID, EOS_ID, UNK_ID = 0, 2, 3

# sentencepiece_model.proto enums.
PIECE_NORMAL, _PIECE_UNKNOWN, _PIECE_CONTROL = 1, 2, 3
_MODEL_UNIGRAM, MODEL_BPE = 1, 2
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
                piece, score, piece_type = "", 0.0, PIECE_NORMAL
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


def check_xlmr_conventions(info: SentencePieceModelInfo, source: str) -> None:
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
    if info.model_type not in (_MODEL_UNIGRAM, MODEL_BPE):
        problems.append(f"model type {info.model_type_name!r} is not supported (only unigram and bpe)")
    if info.byte_fallback:
        problems.append("byte_fallback models are not supported (XLM-R does not use byte fallback)")
    odd = [i for i, t in enumerate(info.types[3:], start=3) if t != PIECE_NORMAL]
    if odd:
        problems.append(f"pieces {odd[:5]} are control/user-defined/unused/byte pieces (not convertible)")
    if not (info.add_dummy_prefix and info.remove_extra_whitespaces):
        problems.append("add_dummy_prefix and remove_extra_whitespaces must be enabled (XLM-R defaults)")
    if problems:
        details = "; ".join(problems)
        raise ValueError(f"{source} does not follow XLM-R's sentencepiece conventions: {details}")
