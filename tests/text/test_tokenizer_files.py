"""rs2sam2.text.tokenizer_files: a saved tokenizer folder has the released XLM-R layout."""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece as spm

from rs2sam2.text import (
    ADDED_TOKENS_FILENAME,
    SEG_TOKEN,
    SPECIAL_TOKENS_MAP_FILENAME,
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    TOKENIZER_JSON_FILENAME,
)

from .conftest import RELEASED_FILES


# ------------------------------------------------------------------------------------------------ layout
def test_saved_folder_has_released_layout(fixture_dir: Path) -> None:
    assert RELEASED_FILES | {TOKENIZER_JSON_FILENAME} == {p.name for p in fixture_dir.iterdir()}
    sp = spm.SentencePieceProcessor(model_file=str(fixture_dir / SPM_FILENAME))
    n = sp.get_piece_size()
    assert n == 128
    # XLM-R's spm layout: <unk>, <s>, </s> at 0, 1, 2, no pad piece.
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    assert sp.is_unknown(0) and sp.is_control(1) and sp.is_control(2)

    config = json.loads((fixture_dir / TOKENIZER_CONFIG_FILENAME).read_text())
    assert config["tokenizer_class"] == "XLMRobertaTokenizer"
    assert config["pad_token"] == "<unk>" and config["unk_token"] == "<unk>"
    assert config["added_tokens_decoder"][str(n + 2)]["content"] == SEG_TOKEN
    assert config["added_tokens_decoder"][str(n + 1)]["content"] == "<mask>"
    special = json.loads((fixture_dir / SPECIAL_TOKENS_MAP_FILENAME).read_text())
    assert (
        special["pad_token"] == "<unk>" and special["bos_token"] == "<s>" and special["eos_token"] == "</s>"
    )
    assert json.loads((fixture_dir / ADDED_TOKENS_FILENAME).read_text()) == {SEG_TOKEN: n + 2}
