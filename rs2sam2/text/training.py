"""Training a sentencepiece tokenizer with XLM-R's conventions, saved as a loadable tokenizer folder
(what the bundled model and the tests use: a small vocabulary trained on the expressions they read)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..weights.sources import SPM_FILENAME
from .spm_model import check_xlmr_conventions, read_sentencepiece_model
from .tokenizer_files import write_tokenizer_folder
from .tokenizing import clean_text


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
    check_xlmr_conventions(info, "the trained sentencepiece model")
    write_tokenizer_folder(out, model_bytes, info, write_tokenizer_json=write_tokenizer_json)
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
