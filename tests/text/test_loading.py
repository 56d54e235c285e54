"""rs2sam2.text.loading: tokenizer folders load with and without tokenizer.json, from subfolders and from an
offline Hub cache, under transformers 5; bad folders are refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from rs2sam2.testing import make_test_tokenizer, remote_sensing_corpus
from rs2sam2.text import (
    SEG_TOKEN,
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    TOKENIZER_JSON_FILENAME,
    load_tokenizer,
    tokenize,
    validate_tokenizer,
)

from .conftest import RELEASED_FILES, sp_reference


def has_protobuf() -> bool:
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        return False
    return True


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
