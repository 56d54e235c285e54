"""Referring expressions → ``input_ids`` and ``attention_mask`` with the official RS2-SAM2 semantics
(``[<s>] + pieces + [</s>]``, right-padded with the pad id 3, mask = ids ≠ pad)."""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .spm_model import EOS_ID, OFFICIAL_PAD_TOKEN_ID

# Characters that ``str.isspace`` accepts but sentencepiece's ``nmt_nfkc`` rule deletes instead of turning
# into a space (vertical tab and the ASCII file/group/record/unit separators).
_DELETED_SPACE_CHARS = frozenset("\x0b\x1c\x1d\x1e\x1f")


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
    eos_id = EOS_ID if eos_id is None else eos_id
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
