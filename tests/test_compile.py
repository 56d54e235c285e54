"""``compile=True``: the predictor runs the model through ``torch.compile`` (Inductor, CPU here)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from rs2sam2 import RS2SAM2Predictor
from rs2sam2.predictor import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None, reason="Inductor on the CPU needs a C++ compiler"
)


def test_compiled_predictor_equals_eager_on_the_bundled_model():
    example = json.loads((DEFAULT_MODEL.parent / "examples.json").read_text())[0]
    image = Image.open(DEFAULT_MODEL.parent.parent / example["image"]).convert("RGB")
    eager = RS2SAM2Predictor.from_pretrained()
    compiled = RS2SAM2Predictor.from_pretrained(compile=True)
    assert compiled.compiled and isinstance(compiled._run, torch._dynamo.eval_frame.OptimizedModule)
    assert not eager.compiled and eager._run is eager.model
    for text in [example["expression"], "the largest building"]:  # a second text length: recompiles
        a = eager.predict(image, text)
        b = compiled.predict(image, text)
        np.testing.assert_allclose(b.logits, a.logits, atol=1e-4, rtol=0)
        band = np.abs(a.logits - a.threshold) > 1e-3  # pixels not on the threshold itself
        assert np.array_equal(a.mask[band], b.mask[band])
        assert a.logits.std() > 0.1  # a real map, not a constant
