"""The tokenizer folder and the reference ids shared by the rs2sam2.text tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm

from rs2sam2.testing import make_test_tokenizer
from rs2sam2.text import (
    ADDED_TOKENS_FILENAME,
    SPECIAL_TOKENS_MAP_FILENAME,
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
)

RELEASED_FILES = {SPM_FILENAME, TOKENIZER_CONFIG_FILENAME, SPECIAL_TOKENS_MAP_FILENAME, ADDED_TOKENS_FILENAME}


def sp_reference(sp: spm.SentencePieceProcessor, text: str) -> list[int]:
    """Official ids: ``<s>`` + sentencepiece ids shifted by the fairseq offset (unk -> 3) + ``</s>``."""
    return [0] + [piece + 1 if piece else 3 for piece in sp.encode(text)] + [2]


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_tokenizer(tmp_path_factory.mktemp("tok") / "fixture")
