"""Damaged and hostile model folders (truncated, Git LFS pointer, NaN/Inf, wrong shape, missing key, code in a
pickle, another model's tokenizer) are refused with a message naming the defect by the predictor, the app and
the ``rs2sam2 predict`` command alike; the intact folder loads (``docs/robustness.md``)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rs2sam2 import app as logic
from rs2sam2.app import models as app_models
from rs2sam2.cli import predict as predict_cli
from rs2sam2.predictor import RS2SAM2Predictor
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.weights.sources import TOKENIZER_FILES

from ..conftest import (
    TEXT,
    _CodeInPickle,
    run_cli,
)

EXIT_OK, EXIT_FAILED = predict_cli.EXIT_OK, predict_cli.EXIT_FAILED


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------- weights
def _bad_folder(model_folder: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A copy of the saved model folder with one defect, and the message that must name it."""
    folder = tmp_path / kind
    shutil.copytree(model_folder, folder)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    if kind == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
        return folder, "truncated or corrupt"
    if kind == "git-lfs-pointer":
        weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1234\n")
        return folder, "truncated or corrupt"
    if kind == "nan":
        state["text_proj.weight"][0, 0] = float("nan")
        save_file(state, str(weights))
        return folder, r"non-finite .*text_proj\.weight"
    if kind == "inf":
        state["prompt_generator.mask_linear.weight"][0, 0] = float("inf")
        save_file(state, str(weights))
        return folder, "non-finite"
    if kind == "wrong-shape":
        save_file({**state, "text_proj.weight": torch.zeros(3, 3)}, str(weights))
        return folder, r"shape mismatches: text_proj\.weight"
    if kind == "missing-key":
        save_file({k: v for k, v in state.items() if k != "sam_decoder.no_mem_embed"}, str(weights))
        return folder, r"missing keys: sam_decoder\.no_mem_embed"
    if kind == "code-in-pickle":
        weights.unlink()
        payload = {"text_proj.weight": _CodeInPickle(tmp_path / "pwned")}
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(payload))
        return folder, "refusing to unpickle"
    if kind == "tokenizer-of-another-model":
        for name in TOKENIZER_FILES:
            (folder / name).unlink(missing_ok=True)
        other = make_test_tokenizer(tmp_path / "small-tok", vocab_size=60)  # 63 tokens < the 100 required
        for file in other.iterdir():
            shutil.copy(file, folder / file.name)
        return folder, "has only 63 tokens, expected at least 100"
    raise AssertionError(kind)


WEIGHT_DEFECTS = [
    "truncated",
    "git-lfs-pointer",
    "nan",
    "inf",
    "wrong-shape",
    "missing-key",
    "code-in-pickle",
    "tokenizer-of-another-model",
]


@pytest.mark.parametrize("kind", WEIGHT_DEFECTS)
def test_bad_model_folders_are_refused_everywhere(kind, model_folder, predictor, zoo, tmp_path, capsys):
    folder, message = _bad_folder(model_folder, tmp_path, kind)
    with pytest.raises(ValueError, match=message):  # CheckpointError is a ValueError
        RS2SAM2Predictor.from_pretrained(folder)
    with pytest.raises(gr.Error, match=f"could not be loaded: .*{message}"):
        logic.segment_event(str(zoo / "grey.png"), TEXT, logic.BUNDLED_MODEL_ID, str(folder), "", 0.5, 0)
    assert str(folder) not in app_models._predictors  # a failed load is not cached
    assert run_cli([str(zoo / "grey.png"), TEXT, "--model", str(folder)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "cannot load the model" in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()  # no code ran


def test_the_intact_folder_loads(model_folder, predictor, zoo):
    loaded = RS2SAM2Predictor.from_pretrained(model_folder)
    np.testing.assert_allclose(
        loaded.predict(zoo / "grey.png", TEXT).logits,
        predictor.predict(zoo / "grey.png", TEXT).logits,
        atol=1e-5,
    )
