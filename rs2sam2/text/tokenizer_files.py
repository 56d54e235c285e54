"""What transformers and tokenizers get from a sentencepiece model: the XLM-R vocabulary with the fairseq
offset, the ``tokenizers`` pipeline (``tokenizer.json``), an equivalent BPE model, and the released folder
layout (``tokenizer_config.json``, ``special_tokens_map.json``, ``added_tokens.json`` with ``[SEG]``).

The sentencepiece file stays the single source of truth: everything here is built from it (see
:mod:`rs2sam2.text.loading` for why transformers 5 cannot be left to build it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..weights.sources import (
    ADDED_TOKENS_FILENAME,
    SPECIAL_TOKENS_MAP_FILENAME,
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    TOKENIZER_JSON_FILENAME,
)
from .spm_model import (
    BOS_TOKEN,
    EOS_TOKEN,
    FAIRSEQ_SPECIALS,
    MASK_TOKEN,
    PAD_TOKEN,
    PIECE_NORMAL,
    SEG_TOKEN,
    UNK_TOKEN,
    SentencePieceModelInfo,
)

# What transformers writes for "no maximum length" (``VERY_LARGE_INTEGER``), as in the official folders.
_UNBOUNDED_MODEL_MAX_LENGTH = int(1e30)


def fairseq_vocab(info: SentencePieceModelInfo) -> list[tuple[str, float]]:
    """XLM-R vocabulary: the 4 fairseq specials, pieces 3.. shifted by one, then ``<mask>``."""
    vocab = [(token, 0.0) for token in FAIRSEQ_SPECIALS]
    vocab.extend(zip(info.pieces[3:], info.scores[3:]))
    vocab.append((MASK_TOKEN, 0.0))
    return vocab


def backend_json(info: SentencePieceModelInfo) -> str:
    """Serialize the ``tokenizers`` pipeline that transformers' ``XLMRobertaTokenizer`` builds for ``info``.

    The model is always Unigram because that is the only model ``XLMRobertaTokenizer`` accepts; BPE models
    are fixed up after loading (:func:`bpe_backend_model`).
    """
    from transformers import XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer(
        vocab=fairseq_vocab(info), _spm_precompiled_charsmap=info.precompiled_charsmap or None
    )
    return tokenizer.backend_tokenizer.to_str(pretty=True)


def bpe_backend_model(info: SentencePieceModelInfo) -> Any:
    """A ``tokenizers`` BPE model that segments like sentencepiece's BPE for ``info``.

    Sentencepiece BPE repeatedly merges the adjacent pair whose concatenation is the highest-scoring piece;
    listing every split of every piece into two pieces, ordered by the score of the result, reproduces it.
    Consecutive unknown characters become one ``<unk>`` in sentencepiece, hence ``fuse_unk``.
    """
    from tokenizers.models import BPE

    vocab = {token: index for index, (token, _score) in enumerate(fairseq_vocab(info))}
    normal = {
        piece: score
        for piece, score, piece_type in zip(info.pieces, info.scores, info.types)
        if piece_type == PIECE_NORMAL
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


def write_tokenizer_folder(
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
        json_path.write_text(backend_json(info) + "\n", encoding="utf-8")
    elif json_path.exists():
        json_path.unlink()  # a stale one from an earlier training would contradict the new model
