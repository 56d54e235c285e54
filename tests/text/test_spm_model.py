"""rs2sam2.text.spm_model: the sentencepiece model reader agrees with sentencepiece."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm

from rs2sam2.text import (
    SPM_FILENAME,
    read_sentencepiece_model,
)


def test_read_sentencepiece_model_matches_sentencepiece(fixture_dir: Path) -> None:
    info = read_sentencepiece_model(fixture_dir / SPM_FILENAME)
    sp = spm.SentencePieceProcessor(model_file=str(fixture_dir / SPM_FILENAME))
    assert len(info) == sp.get_piece_size()
    assert list(info.pieces) == [sp.id_to_piece(i) for i in range(len(info))]
    assert list(info.scores) == pytest.approx([sp.get_score(i) for i in range(len(info))])
    assert info.types[:3] == (2, 3, 3) and set(info.types[3:]) == {1}
    assert (info.model_type_name, info.byte_fallback, info.pad_id) == ("unigram", False, -1)
    assert info.normalizer_name == "nmt_nfkc" and info.precompiled_charsmap
    assert sp.normalize("ＦＵＬＬ") == "▁FULL"  # the charsmap the reader returns is what sentencepiece uses


def test_read_sentencepiece_model_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"\xff\xff\xff not a model")
    with pytest.raises(ValueError, match="not a valid sentencepiece model"):
        read_sentencepiece_model(bad)
