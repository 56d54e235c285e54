"""rs2sam2.text.tokenizing: ids follow XLM-R's sentencepiece conventions (fairseq offset, pad, unk, [SEG],
truncation), for many scripts and odd texts."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from rs2sam2.testing import remote_sensing_corpus
from rs2sam2.text import (
    SEG_TOKEN,
    SPM_FILENAME,
    TOKENIZER_JSON_FILENAME,
    clean_text,
    load_tokenizer,
    read_sentencepiece_model,
    tokenize,
    train_sentencepiece_tokenizer,
)

from .conftest import sp_reference

MULTILINGUAL = [
    "東京の港にある白い船",
    "北京机场的飞机 near the runway",
    "самолёт у моста на реке",
    "الطائرة بجانب المدرج",
    "समुद्र में जहाज़",
    "서울 공항의 비행기",
    "the ship 🚢 next to the plane 🛩️",
    "naïve café résumé über Straße",
    "ＦＵＬＬ　ｗｉｄｔｈ ｔｅｘｔ ①②③",
]

TRICKY = [
    "the white storage tank closest to the road",
    "the second ship from the top",
    "  leading and   trailing spaces  ",
    "tabs\tand\nnewlines\r\nhere",
    "unknown ZQXJ ◊◊ characters",
    "zero\u200bwidth\u200d joiner",
    "nbsp\u00a0and ideographic\u3000space",
    "combining e\u0301 accent and ﬁ ligature ™ Ⅻ ㎏ ½",
    "control\x07chars\x1bhere\x0bend\x1c",
    "emoji 👨‍👩‍👧 family 🇫🇷 flag",
    "x",
    "１２３ 456",
]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def multilingual(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A tokenizer that knows several scripts, with its raw sentencepiece processor."""
    corpus = remote_sensing_corpus(300) + MULTILINGUAL * 3
    folder = train_sentencepiece_tokenizer(
        corpus, tmp_path_factory.mktemp(request.param) / "tok", 200, model_type=request.param
    )
    sp = spm.SentencePieceProcessor(model_file=str(folder / SPM_FILENAME))
    return load_tokenizer(folder, min_vocab_size=100), sp, folder


# ------------------------------------------------------------------------------------------------ ids
def test_ids_equal_sentencepiece_plus_fairseq_offset(multilingual) -> None:
    tokenizer, sp, _folder = multilingual
    texts = remote_sensing_corpus(60, seed=3) + MULTILINGUAL + TRICKY
    input_ids, mask = tokenize(tokenizer, texts)
    for row, text in enumerate(texts):
        expected = sp_reference(sp, clean_text(text))
        assert input_ids[row, : len(expected)].tolist() == expected, text
        assert (input_ids[row, len(expected) :] == 3).all()
        assert mask[row].tolist() == [i != 3 for i in input_ids[row].tolist()]


def test_clean_text_does_not_change_ids_of_ordinary_text(multilingual) -> None:
    """clean_text follows nmt_nfkc, so raw sentencepiece ids equal the ids of the cleaned text."""
    _tokenizer, sp, _folder = multilingual
    for text in MULTILINGUAL + TRICKY:
        assert sp.encode(clean_text(text)) == sp.encode(text), repr(text)
    assert clean_text("a\tb\nc\r\nd\u2028e\x07f\x0bg\x00h") == "a b c  d ef" + "gh"


def test_non_latin_scripts_are_not_unknown(multilingual) -> None:
    tokenizer, _sp, _folder = multilingual
    input_ids, mask = tokenize(tokenizer, MULTILINGUAL)
    for row, text in enumerate(MULTILINGUAL):
        length = len(tokenizer(text).input_ids)
        assert length > 3
        # Every character was seen in training, so nothing becomes <unk> (which the mask would hide).
        assert mask[row, :length].all(), text


def test_bpe_folder_has_no_tokenizer_json(multilingual) -> None:
    tokenizer, _sp, folder = multilingual
    info = read_sentencepiece_model(folder / SPM_FILENAME)
    assert (folder / TOKENIZER_JSON_FILENAME).exists() == (info.model_type_name == "unigram")
    assert (
        type(tokenizer.backend_tokenizer.model).__name__
        == {"unigram": "Unigram", "bpe": "BPE"}[info.model_type_name]
    )


# ------------------------------------------------------------------------------------------------ tokenize
def test_padding_with_unk_id_and_mask(fixture_dir: Path) -> None:
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    input_ids, mask = tokenize(tokenizer, ["the ship", "the large white storage tank closest to the road"])
    assert input_ids.dtype == torch.long and mask.dtype == torch.bool
    assert input_ids.shape == mask.shape and input_ids.shape[0] == 2
    short = tokenizer("the ship").input_ids
    assert input_ids[0, : len(short)].tolist() == short and short[0] == 0 and short[-1] == 2
    assert (input_ids[0, len(short) :] == 3).all() and not mask[0, len(short) :].any()
    assert mask[0, : len(short)].all() and mask[1].all()


def test_real_unk_is_masked_like_padding(fixture_dir: Path) -> None:
    """Official quirk: the mask is ids != 3, so genuine <unk> tokens are hidden too."""
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known words remain: no "hides all of it" warning
        input_ids, mask = tokenize(tokenizer, ["the ship 東 near the road"])
    unk_positions = (input_ids[0] == 3).nonzero().flatten().tolist()
    assert unk_positions and not mask[0, unk_positions].any()
    assert mask[0].sum() == input_ids.shape[1] - len(unk_positions)


def test_custom_pad_token_id(fixture_dir: Path) -> None:
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    input_ids, mask = tokenize(tokenizer, ["the ship", "the second ship from the top"], pad_token_id=1)
    assert input_ids[0, -1] == 1 and not mask[0, -1] and torch.equal(mask, input_ids != 1)


def test_seg_token_present(fixture_dir: Path) -> None:
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    seg_id = tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    assert seg_id == 130 and tokenizer.get_vocab()[SEG_TOKEN] == seg_id
    input_ids, _mask = tokenize(tokenizer, ["the ship [SEG]"])
    assert seg_id in input_ids[0].tolist()


def test_truncation_keeps_eos_and_warns(fixture_dir: Path) -> None:
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    text = "the large white storage tank closest to the road next to the river"
    full = tokenizer(text).input_ids
    assert len(full) > 8
    with pytest.warns(UserWarning, match="truncated to 8 tokens"):
        input_ids, mask = tokenize(tokenizer, [text, "the ship"], max_length=8)
    assert input_ids.shape == (2, 8)
    assert input_ids[0].tolist() == full[:7] + [2] and mask[0].all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        input_ids, _ = tokenize(tokenizer, [text], max_length=len(full))
    assert input_ids[0].tolist() == full


def test_invalid_texts(fixture_dir: Path) -> None:
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    for bad in ["", "   ", " \t\n\r ", "\x00\x07\x1b"]:
        with pytest.raises(ValueError, match="text 1 is empty or whitespace-only"):
            tokenize(tokenizer, ["the ship", bad])
    with pytest.raises(ValueError, match="no token left"):
        tokenize(tokenizer, ["\u200b"])  # nmt_nfkc turns a zero-width space into a space
    with pytest.raises(TypeError, match="list of strings"):
        tokenize(tokenizer, "the ship")
    with pytest.raises(TypeError, match="expected str"):
        tokenize(tokenizer, ["the ship", None])
    with pytest.raises(ValueError, match="texts is empty"):
        tokenize(tokenizer, [])
    with pytest.raises(ValueError, match="max_length"):
        tokenize(tokenizer, ["the ship"], max_length=2)


def test_control_characters_are_mapped(fixture_dir: Path) -> None:
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    clean, _ = tokenize(tokenizer, ["the ship near the road"])
    noisy, _ = tokenize(tokenizer, ["\tthe\x07 ship\nnear\r\nthe\x00 road\x1b\n"])
    assert torch.equal(clean, noisy)


def test_all_unknown_text_warns(fixture_dir: Path) -> None:
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    with pytest.warns(UserWarning, match="attention mask hides all of it"):
        input_ids, mask = tokenize(tokenizer, ["東京 🛰️"])
    tokens = tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
    assert "<unk>" in tokens and set(tokens) <= {"<s>", "</s>", "<unk>", "\u2581"}
    assert mask[0].tolist() == [token != "<unk>" for token in tokens]
