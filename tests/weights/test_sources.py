"""One resolver for a model id (rs2sam2.weights.sources): ``subfolder``, ``revision``, ``token`` (and the
other source options) reach the weight files and the tokenizer files alike, through the same Hub download.

No network exists here: ``huggingface_hub.hf_hub_download`` is replaced by a fake that records every call and
serves the files from a local "repo" folder, and the reachability probe answers "reachable"."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rs2sam2 import RS2SAM2, RS2SAM2Predictor, RS2SAM2Processor
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.text import load_tokenizer
from rs2sam2.weights.sources import (
    CONFIG_NAME,
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    WEIGHTS_NAME,
    ModelSource,
    split_source_options,
)

REPO_ID = "test-org/rs2sam2-tiny"
SUBFOLDER = "rrsisd"
WHERE = {"subfolder": SUBFOLDER, "revision": "v1.2", "token": "hf_test_token"}


@pytest.fixture()
def fake_hub(tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """A Hub repo ``REPO_ID`` holding a tiny model and its tokenizer in ``SUBFOLDER``; returns the list
    of recorded ``hf_hub_download`` calls (keyword arguments plus ``repo_id`` and ``filename``)."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = tmp_path / "repo"
    tiny_model.save_pretrained(repo / SUBFOLDER)
    make_test_tokenizer(repo / SUBFOLDER, vocab_size=150)
    calls: list[dict] = []

    def hf_hub_download(repo_id: str, filename: str, **kwargs) -> str:
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        path = repo / (kwargs.get("subfolder") or "") / filename
        if repo_id != REPO_ID or not path.is_file():
            raise LocalEntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **kwargs: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return calls


def _options_by_file(calls: list[dict]) -> dict[str, set[tuple]]:
    return {
        c["filename"]: {(c["repo_id"], c["subfolder"], c["revision"], c["token"]) for c in calls}
        for c in calls
    }


def test_predictor_options_reach_weights_and_tokenizer_alike(fake_hub: list[dict]) -> None:
    predictor = RS2SAM2Predictor.from_pretrained(REPO_ID, **WHERE)
    assert len(predictor.processor.tokenizer) == 153
    requested = {c["filename"] for c in fake_hub}
    assert {CONFIG_NAME, WEIGHTS_NAME} <= requested  # the weights …
    assert {SPM_FILENAME, TOKENIZER_CONFIG_FILENAME} <= requested  # … and the tokenizer
    expected = (REPO_ID, SUBFOLDER, WHERE["revision"], WHERE["token"])
    for call in fake_hub:
        assert (call["repo_id"], call["subfolder"], call["revision"], call["token"]) == expected, call


def test_processor_and_model_take_the_same_options(fake_hub: list[dict], tiny_config) -> None:
    RS2SAM2Processor.from_pretrained(REPO_ID, tiny_config, **WHERE)
    tokenizer_calls = list(fake_hub)
    fake_hub.clear()
    RS2SAM2.from_pretrained(REPO_ID, **WHERE)
    weight_calls = list(fake_hub)
    assert {c["filename"] for c in tokenizer_calls} >= {SPM_FILENAME, TOKENIZER_CONFIG_FILENAME}
    assert WEIGHTS_NAME in {c["filename"] for c in weight_calls}
    options = {"subfolder", "revision", "token", "cache_dir", "force_download", "local_files_only"}
    seen = {tuple(sorted((k, str(c[k])) for k in options)) for c in tokenizer_calls + weight_calls}
    assert len(seen) == 1, seen  # every file, weights or tokenizer, fetched with the same options


def test_load_tokenizer_passes_revision_and_token(fake_hub: list[dict]) -> None:
    tokenizer = load_tokenizer(REPO_ID, min_vocab_size=100, **WHERE)
    assert len(tokenizer) == 153 and tokenizer.name_or_path == REPO_ID
    assert fake_hub and all(c["revision"] == "v1.2" and c["token"] == "hf_test_token" for c in fake_hub)
    with pytest.raises(FileNotFoundError, match="no tokenizer files found"):
        load_tokenizer(REPO_ID, min_vocab_size=100, subfolder="refseg", revision="v1.2")


def test_split_source_options() -> None:
    where, rest = split_source_options({"revision": "main", "token": None, "dtype": "x", "strict": False})
    assert where == {"revision": "main", "token": None} and rest == {"dtype": "x", "strict": False}


def test_platform_separator_means_a_path_for_weights_and_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Windows-style relative path is a missing folder, never a Hub repo id, for both loaders."""
    monkeypatch.setattr(os, "sep", "\\")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ModelSource("models\\mine")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RS2SAM2.from_pretrained("models\\mine")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer("models\\mine", min_vocab_size=10)
