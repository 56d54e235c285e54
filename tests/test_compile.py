"""``compile=True``: the predictor runs the model through ``torch.compile`` (Inductor, CPU here).

Compilation time grows with the graph, not with the weights' quality, so this runs on about the smallest
model the architecture allows (five Hiera blocks, one of them global, one union-encoder layer, 128² SAM2
input) with random weights and one small image: every stage of the pipeline is compiled once.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from rs2sam2 import RS2SAM2, RS2SAM2Config, RS2SAM2Predictor, RS2SAM2Processor
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.text import load_tokenizer

pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None, reason="Inductor on the CPU needs a C++ compiler"
)


def smallest_config() -> RS2SAM2Config:
    config = RS2SAM2Config.from_preset("tiny")
    config.image_size = 128  # 32² patches: the first window (8) still divides it
    config.union_encoder.num_layers = 1
    config.hiera.stages = (1, 1, 2, 1)  # block 3 (stage 3, not a pooling block) attends globally
    config.hiera.global_att_blocks = (3,)
    return config


def test_compiled_predictor_equals_eager(tmp_path):
    config = smallest_config()
    tokenizer = load_tokenizer(
        make_test_tokenizer(tmp_path), min_vocab_size=50, max_vocab_size=config.union_encoder.vocab_size
    )
    config.union_encoder.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    model = RS2SAM2(config).eval()
    processor = RS2SAM2Processor(config, tokenizer)
    eager = RS2SAM2Predictor(model, processor)
    compiled = RS2SAM2Predictor(model, processor, compile=True)
    assert compiled.compiled and isinstance(compiled._run, torch._dynamo.eval_frame.OptimizedModule)
    assert not eager.compiled and eager._run is eager.model
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    a = eager.predict(image, "the ship")
    b = compiled.predict(image, "the ship")
    assert a.logits.shape == (48, 64) and a.logits.std() > 0  # a real map, not a constant
    np.testing.assert_allclose(b.logits, a.logits, atol=1e-4, rtol=0)
    band = np.abs(a.logits - a.threshold) > 1e-3  # pixels not on the threshold itself
    assert np.array_equal(a.mask[band], b.mask[band])
