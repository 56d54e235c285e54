"""The app tests' tiny stand-in for the bundled model and their example input (handlers, browser)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2 import app as logic
from rs2sam2.predictor import RS2SAM2Predictor
from rs2sam2.processing import RS2SAM2Processor
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.text import load_tokenizer

EXPRESSION = "the red roof of the large building"


def build_tiny_predictor(folder: Path) -> RS2SAM2Predictor:
    """A random ``tiny`` model with a small test tokenizer (stands in for the bundled model)."""
    make_test_tokenizer(folder)
    cfg = RS2SAM2Config.from_preset("tiny")
    tok = load_tokenizer(
        folder, min_vocab_size=cfg.tokenizer.min_vocab_size, max_vocab_size=cfg.union_encoder.vocab_size
    )
    cfg.union_encoder.vocab_size = max(cfg.union_encoder.vocab_size, len(tok))
    torch.manual_seed(0)
    return RS2SAM2Predictor(RS2SAM2(cfg), RS2SAM2Processor(cfg, tok))


def example_input(folder: Path) -> tuple[str, str]:
    """The first entry of ``demo/examples.json`` when there is one, else a generated scene."""
    examples = logic.load_examples()
    if examples:
        return examples[0][0], examples[0][1]
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (180, 240, 3), dtype=np.uint8)
    image[40:100, 60:150] = (200, 40, 40)  # a red roof
    path = folder / "scene.png"
    Image.fromarray(image).save(path)
    return str(path), EXPRESSION


def median_probability(predictor: RS2SAM2Predictor, image: str, text: str) -> float:
    """A slider value that splits the random model's output roughly in half (so masks are not empty), at
    the middle of the widest gap between the central logits: no pixel lies within float rounding of the
    threshold, so two forwards of the same input (other thread count, other input path) give one mask."""
    logits = np.sort(predictor.predict(image, text).logits.ravel())
    n = logits.size
    central = logits[int(0.4 * n) : int(0.6 * n)]
    i = int(np.argmax(np.diff(central)))
    threshold = float(central[i] + central[i + 1]) / 2.0
    p = 1.0 / (1.0 + math.exp(-(2.0 * threshold - 1.0)))
    return min(max(p, 0.05), 0.95)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[str, str]:
    return example_input(tmp_path_factory.mktemp("example"))
