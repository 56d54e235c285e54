"""Tests for rs2sam2.text: XLM-R sentencepiece conventions under transformers 5."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from rs2sam2.testing import make_test_tokenizer, remote_sensing_corpus
from rs2sam2.text import (
    ADDED_TOKENS_FILENAME,
    SEG_TOKEN,
    SPECIAL_TOKENS_MAP_FILENAME,
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    TOKENIZER_JSON_FILENAME,
    clean_text,
    load_tokenizer,
    read_sentencepiece_model,
    tokenize,
    train_sentencepiece_tokenizer,
    validate_tokenizer,
)

RELEASED_FILES = {SPM_FILENAME, TOKENIZER_CONFIG_FILENAME, SPECIAL_TOKENS_MAP_FILENAME, ADDED_TOKENS_FILENAME}

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


def has_protobuf() -> bool:
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        return False
    return True


def sp_reference(sp: spm.SentencePieceProcessor, text: str) -> list[int]:
    """Official ids: ``<s>`` + sentencepiece ids shifted by the fairseq offset (unk -> 3) + ``</s>``."""
    return [0] + [piece + 1 if piece else 3 for piece in sp.encode(text)] + [2]


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_tokenizer(tmp_path_factory.mktemp("tok") / "fixture")


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def multilingual(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A tokenizer that knows several scripts, with its raw sentencepiece processor."""
    corpus = remote_sensing_corpus(300) + MULTILINGUAL * 3
    folder = train_sentencepiece_tokenizer(
        corpus, tmp_path_factory.mktemp(request.param) / "tok", 200, model_type=request.param
    )
    sp = spm.SentencePieceProcessor(model_file=str(folder / SPM_FILENAME))
    return load_tokenizer(folder, min_vocab_size=100), sp, folder


def write_hub_cache(
    cache: Path, repo_id: str, files: dict[str, Path], revision: str = "0123abcd" * 5
) -> None:
    """Lay out ``files`` as huggingface_hub's cache does: ``models--org--name/snapshots/<rev>``, ``refs/``."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    for relative, source in files.items():
        target = repo_dir / "snapshots" / revision / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)


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


# ------------------------------------------------------------------------------------------------ reloading


@pytest.mark.parametrize("loader", ["AutoTokenizer", "XLMRobertaTokenizer"])
def test_plain_transformers_reload(fixture_dir: Path, loader: str) -> None:
    import transformers

    plain = getattr(transformers, loader).from_pretrained(fixture_dir)
    ours = load_tokenizer(fixture_dir, min_vocab_size=100)
    assert type(plain).__name__ == "XLMRobertaTokenizer"
    assert len(plain) == len(ours) == 128 + 3
    assert plain.pad_token_id == ours.pad_token_id == 3  # pad = unk survives the reload
    assert plain.convert_tokens_to_ids(SEG_TOKEN) == ours.convert_tokens_to_ids(SEG_TOKEN) == 130
    assert plain.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]) == [0, 1, 2, 3, 129]
    for text in remote_sensing_corpus(20, seed=5):
        assert plain(text).input_ids == ours(text).input_ids


def test_load_tokenizer_without_tokenizer_json(fixture_dir: Path, tmp_path: Path) -> None:
    """The released layout alone (no tokenizer.json) loads without protobuf, with the same ids."""
    for name in RELEASED_FILES:
        shutil.copyfile(fixture_dir / name, tmp_path / name)
    bare = load_tokenizer(tmp_path, min_vocab_size=100)
    full = load_tokenizer(fixture_dir, min_vocab_size=100)
    assert bare.get_vocab() == full.get_vocab() and bare.pad_token_id == 3
    texts = remote_sensing_corpus(30, seed=7)
    for a, b in zip(tokenize(bare, texts), tokenize(full, texts)):
        assert torch.equal(a, b)


def test_load_tokenizer_from_tokenizer_json_only(fixture_dir: Path, tmp_path: Path) -> None:
    for name in (TOKENIZER_JSON_FILENAME, TOKENIZER_CONFIG_FILENAME):
        shutil.copyfile(fixture_dir / name, tmp_path / name)
    tokenizer = load_tokenizer(tmp_path, min_vocab_size=100)
    reference = load_tokenizer(fixture_dir, min_vocab_size=100)
    assert tokenizer.get_vocab() == reference.get_vocab() and tokenizer.pad_token_id == 3
    text = "the second ship from the top"
    assert tokenizer(text).input_ids == reference(text).input_ids


def test_load_tokenizer_from_local_subfolder(fixture_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(fixture_dir, tmp_path / "checkpoint" / "tokenizer")
    tokenizer = load_tokenizer(tmp_path / "checkpoint", subfolder="tokenizer", min_vocab_size=100)
    assert len(tokenizer) == 131 and tokenizer.pad_token_id == 3
    with pytest.raises(ValueError, match="5-token"):
        load_tokenizer(tmp_path / "checkpoint", min_vocab_size=100)  # files are one level down


def test_load_tokenizer_ignores_a_stale_tokenizer_json(fixture_dir: Path, tmp_path: Path) -> None:
    """The sentencepiece file is the source of truth, whatever tokenizer.json says."""
    other = make_test_tokenizer(tmp_path / "other", vocab_size=100)
    shutil.copyfile(fixture_dir / TOKENIZER_JSON_FILENAME, other / TOKENIZER_JSON_FILENAME)
    tokenizer = load_tokenizer(other, min_vocab_size=50)
    sp = spm.SentencePieceProcessor(model_file=str(other / SPM_FILENAME))
    assert len(tokenizer) == 103
    text = "the second ship from the top"
    assert tokenizer(text).input_ids == sp_reference(sp, text)


@pytest.mark.skipif(
    not has_protobuf(), reason="transformers converts a sentencepiece file only with protobuf"
)
def test_transformers_spm_conversion_vs_ours(fixture_dir: Path, tmp_path: Path) -> None:
    """Documents why load_tokenizer builds the vocabulary itself (transformers 5 + protobuf)."""
    from transformers import XLMRobertaTokenizer

    for name in RELEASED_FILES:
        shutil.copyfile(fixture_dir / name, tmp_path / name)
    plain = XLMRobertaTokenizer.from_pretrained(tmp_path)
    ours = load_tokenizer(tmp_path, min_vocab_size=100)
    assert ours.convert_tokens_to_ids(SEG_TOKEN) == 130 and ours.convert_ids_to_tokens(1) == "<pad>"
    if plain.convert_tokens_to_ids(SEG_TOKEN) == 130 and plain.convert_ids_to_tokens(1) == "<pad>":
        pytest.skip("this transformers version converts the spm correctly")
    # transformers 5.23: <unk> also at id 1 (pad_token "<unk>" leaks into the conversion), [SEG] shifted.
    assert plain.convert_ids_to_tokens(1) == "<unk>" and plain.convert_tokens_to_ids(SEG_TOKEN) == 131


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


# ------------------------------------------------------------------------------------------------ checks


def test_five_token_trap_is_detected(fixture_dir: Path, tmp_path: Path) -> None:
    from transformers import XLMRobertaTokenizer

    for name in RELEASED_FILES - {SPM_FILENAME}:
        shutil.copyfile(fixture_dir / name, tmp_path / name)
    # The trap itself: transformers 5 silently loads a placeholder vocabulary.
    assert len(XLMRobertaTokenizer.from_pretrained(tmp_path)) < 10
    assert len(XLMRobertaTokenizer(vocab_file=str(fixture_dir / SPM_FILENAME))) == 5
    with pytest.raises(ValueError, match=r"sentencepiece\.bpe\.model.*5-token"):
        load_tokenizer(tmp_path, min_vocab_size=100)


def test_too_small_vocab_is_rejected(fixture_dir: Path) -> None:
    with pytest.raises(ValueError, match="has only 131 tokens, expected at least 64000"):
        load_tokenizer(fixture_dir, min_vocab_size=64000)


def test_vocab_larger_than_model_is_rejected(fixture_dir: Path) -> None:
    assert len(load_tokenizer(fixture_dir, min_vocab_size=100, max_vocab_size=131)) == 131
    with pytest.raises(ValueError, match="needs 131 embedding rows.*only 130"):
        load_tokenizer(fixture_dir, min_vocab_size=100, max_vocab_size=130)


def test_validate_tokenizer(fixture_dir: Path) -> None:
    from transformers import XLMRobertaTokenizer

    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    validate_tokenizer(tokenizer, min_vocab_size=131, max_vocab_size=131)
    with pytest.raises(ValueError, match="only 130"):
        validate_tokenizer(tokenizer, min_vocab_size=100, max_vocab_size=130)
    # The official construction under transformers 5: silently 5 tokens.
    trap = XLMRobertaTokenizer(vocab_file=str(fixture_dir / SPM_FILENAME))
    with pytest.raises(ValueError, match="5-token trap"):
        validate_tokenizer(trap, min_vocab_size=100)


def test_save_pretrained_round_trip(fixture_dir: Path, tmp_path: Path) -> None:
    """transformers 5 saves only tokenizer.json + config; with the spm copied back the folder reloads."""
    tokenizer = load_tokenizer(fixture_dir, min_vocab_size=100)
    tokenizer.save_pretrained(str(tmp_path))
    shutil.copyfile(fixture_dir / SPM_FILENAME, tmp_path / SPM_FILENAME)
    reloaded = load_tokenizer(tmp_path, min_vocab_size=100, max_vocab_size=131)
    assert reloaded.get_vocab() == tokenizer.get_vocab() and reloaded.pad_token_id == 3
    text = "the ship [SEG] near the road"
    assert reloaded(text).input_ids == tokenizer(text).input_ids


def test_non_xlmr_sentencepiece_layout_is_rejected(tmp_path: Path) -> None:
    writer_path = tmp_path / "m"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(remote_sensing_corpus(100)),
        model_prefix=str(writer_path),
        vocab_size=60,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        num_threads=1,
        minloglevel=2,
    )
    folder = make_test_tokenizer(tmp_path / "tok")
    shutil.copyfile(tmp_path / "m.model", folder / SPM_FILENAME)
    with pytest.raises(ValueError, match="does not follow XLM-R's sentencepiece conventions"):
        load_tokenizer(folder, min_vocab_size=10)


def test_missing_local_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nope", min_vocab_size=10)


# ------------------------------------------------------------------------------------------------ hub cache


def test_offline_hub_cache_resolution(
    fixture_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    write_hub_cache(cache, "org/rs2sam2-test", {name: fixture_dir / name for name in RELEASED_FILES})
    write_hub_cache(cache, "org/nested", {f"tokenizer/{name}": fixture_dir / name for name in RELEASED_FILES})
    partial = {name: fixture_dir / name for name in RELEASED_FILES - {SPM_FILENAME}}
    write_hub_cache(cache, "org/no-spm", partial)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    local = load_tokenizer(fixture_dir, min_vocab_size=100)
    cached = load_tokenizer("org/rs2sam2-test", min_vocab_size=100, max_vocab_size=131)
    nested = load_tokenizer("org/nested", subfolder="tokenizer", min_vocab_size=100)
    text = "the second ship from the top"
    assert cached(text).input_ids == nested(text).input_ids == local(text).input_ids
    assert cached.pad_token_id == 3 and cached.convert_tokens_to_ids(SEG_TOKEN) == 130
    with pytest.raises(ValueError, match="5-token"):
        load_tokenizer("org/no-spm", min_vocab_size=100)
    with pytest.raises(FileNotFoundError, match="no tokenizer files found"):
        load_tokenizer("org/not-in-cache", min_vocab_size=100)


def test_unreachable_hub_falls_back_to_cache(
    fixture_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Network allowed but down: one failed probe, then the cache, instead of minutes of retries."""
    import huggingface_hub

    calls: list[str] = []

    def no_network(self, repo_id: str, **kwargs) -> None:
        calls.append(repo_id)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_network)
    write_hub_cache(tmp_path / "hub", "org/rs2sam2-test", {n: fixture_dir / n for n in RELEASED_FILES})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.warns(UserWarning, match="unreachable"):
        tokenizer = load_tokenizer("org/rs2sam2-test", min_vocab_size=100, local_files_only=False)
    assert calls == ["org/rs2sam2-test"] and len(tokenizer) == 131


def test_offline_hub_cache_in_fresh_process(fixture_dir: Path, tmp_path: Path) -> None:
    """HF_HOME / HF_HUB_OFFLINE set before anything is imported, as a user would."""
    write_hub_cache(
        tmp_path / "home" / "hub", "org/rs2sam2-test", {n: fixture_dir / n for n in RELEASED_FILES}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")
    code = (
        "from rs2sam2.text import load_tokenizer, tokenize\n"
        "tok = load_tokenizer('org/rs2sam2-test', min_vocab_size=100)\n"
        "ids, mask = tokenize(tok, ['the ship'])\n"
        "print(len(tok), tok.pad_token_id, ids.tolist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    expected = load_tokenizer(fixture_dir, min_vocab_size=100)("the ship").input_ids
    assert done.stdout.split("\n")[0] == f"131 3 {[expected]}"
