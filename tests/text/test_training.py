"""rs2sam2.text.training: sentencepiece training is deterministic and checks its arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from rs2sam2.testing import make_test_tokenizer, remote_sensing_corpus
from rs2sam2.text import (
    train_sentencepiece_tokenizer,
)


def test_training_is_deterministic(tmp_path: Path) -> None:
    first = make_test_tokenizer(tmp_path / "a")
    second = make_test_tokenizer(tmp_path / "b")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_training_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_type"):
        train_sentencepiece_tokenizer(["a b c"], tmp_path, 64, model_type="word")
    with pytest.raises(ValueError, match="no non-empty training text"):
        train_sentencepiece_tokenizer(["", " \n "], tmp_path, 64)
    with pytest.raises(ValueError, match="Vocabulary size too high"):
        train_sentencepiece_tokenizer(remote_sensing_corpus(50), tmp_path, 5000)
    with pytest.raises(ValueError, match="only be written for unigram"):
        train_sentencepiece_tokenizer(["a b c"], tmp_path, 64, model_type="bpe", write_tokenizer_json=True)
