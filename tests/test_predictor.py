"""``quantize="int8"``: dynamic int8 quantisation of every nn.Linear (rs2sam2.predictor.quantize_int8)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.predictor import RS2SAM2Predictor, quantize_int8
from rs2sam2.processing import RS2SAM2Processor
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.text import load_tokenizer

from .conftest import TEXT, random_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

# A random tiny model's logits sit within ±0.2 of 0, all below the 0.5 threshold. Scaling the mask
# hypernetwork's output layer spreads them over several units (std ≈ 3.5–4) on both sides of the
# threshold, as a trained model's are; quantisation errors scale with them.
LOGIT_GAIN = 120.0
LOGIT_ATOL = 1.0  # max |int8 − fp32| logit; measured 0.57–0.87 (mean 0.07–0.23) on seeds 0–2
MASK_BAND = 0.25  # masks are compared where |fp32 logit − threshold| > MASK_BAND
MIN_IOU = 0.98  # measured ≥ 0.993


def trained_like_model(config: RS2SAM2Config) -> RS2SAM2:
    torch.manual_seed(0)
    model = RS2SAM2(config).eval()
    last = model.sam_decoder.mask_decoder.output_hypernetworks_mlps[0].layers[-1]
    with torch.no_grad():
        last.weight.mul_(LOGIT_GAIN)
        last.bias.mul_(LOGIT_GAIN)
    return model


@pytest.fixture(scope="module")
def processor(tmp_path_factory) -> RS2SAM2Processor:
    cfg = RS2SAM2Config.from_preset("tiny")
    folder = make_test_tokenizer(tmp_path_factory.mktemp("tok"), vocab_size=150)
    tok = load_tokenizer(
        folder, min_vocab_size=cfg.tokenizer.min_vocab_size, max_vocab_size=cfg.union_encoder.vocab_size
    )
    return RS2SAM2Processor(cfg, tok)


def test_every_linear_is_quantized_and_nothing_else(tiny_model):
    n_linear = sum(type(m) is nn.Linear for m in tiny_model.modules())
    n_conv = sum(isinstance(m, nn.Conv2d) for m in tiny_model.modules())
    quantize_int8(tiny_model)
    assert not any(type(m) is nn.Linear for m in tiny_model.modules())
    assert sum(isinstance(m, DynamicQuantizedLinear) for m in tiny_model.modules()) == n_linear
    assert sum(isinstance(m, nn.Conv2d) for m in tiny_model.modules()) == n_conv
    assert {p.dtype for p in tiny_model.parameters()} == {torch.float32}  # what is left stays fp32


def test_int8_logits_and_masks_match_fp32(tiny_config):
    fp32 = trained_like_model(tiny_config)
    int8 = quantize_int8(copy.deepcopy(fp32))
    thr = tiny_config.mask_threshold
    with torch.inference_mode():
        for seed in range(3):
            inputs = random_inputs(tiny_config, batch=2, seed=seed)
            ref, out = fp32(**inputs).logits, int8(**inputs).logits
            assert 2.0 < float(ref.std()) < 6.0  # the setting is trained-like: logits spread over units
            assert 0.05 < float((ref > thr).float().mean()) < 0.95  # foreground and background
            assert float((out - ref).abs().max()) <= LOGIT_ATOL
            confident = (ref - thr).abs() > MASK_BAND
            assert float(confident.float().mean()) > 0.9  # the comparison covers most pixels
            for i in range(ref.shape[0]):
                a = (ref[i] > thr) & confident[i]
                b = (out[i] > thr) & confident[i]
                iou = float((a & b).sum()) / float((a | b).sum())
                assert iou >= MIN_IOU, (seed, i, iou)


def test_predictor_int8_end_to_end(tiny_config, processor):
    fp32 = RS2SAM2Predictor(trained_like_model(tiny_config), processor)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's deprecation notices about its quantisation API stay hidden
        int8 = RS2SAM2Predictor(trained_like_model(tiny_config), processor, quantize="int8")
        image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
        got = int8.predict(image, "the white car")
    want = fp32.predict(image, "the white car")
    assert int8.quantize == "int8" and int8.dtype == torch.float32
    assert got.mask.shape == want.mask.shape == (90, 120)
    assert want.mask.any() and not want.mask.all()
    assert np.abs(got.logits - want.logits).max() <= LOGIT_ATOL
    confident = np.abs(want.logits - want.threshold) > MASK_BAND
    a, b = want.mask & confident, got.mask & confident
    assert (a & b).sum() / max((a | b).sum(), 1) >= MIN_IOU


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantize": "int4"}, "quantize must be None or one of"),
        ({"quantize": "INT8"}, "quantize must be None or one of"),
        ({"quantize": "int8", "device": "cuda"}, "CPU only"),
        ({"quantize": "int8", "dtype": torch.bfloat16}, "float32"),
    ],
)
def test_quantize_arguments_are_validated(tiny_model, processor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        RS2SAM2Predictor(tiny_model, processor, **kwargs)
    # from_pretrained checks before it reads anything: the missing folder is never looked at
    with pytest.raises(ValueError, match=message):
        RS2SAM2Predictor.from_pretrained("/nonexistent/model", **kwargs)


def test_quantize_int8_rejects_a_bf16_model(tiny_model):
    with pytest.raises(ValueError, match="float32 CPU model"):
        quantize_int8(tiny_model.to(torch.bfloat16))


# --------------------------------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    layout=st.sampled_from(["hw", "hw1", "hw3", "hw4", "chw3", "pil"]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_]),
    seed=st.integers(0, 2**16),
)
def test_any_image_gives_a_native_size_finite_prediction(predictor, h, w, layout, dtype, seed):
    rng = np.random.default_rng(seed)
    channels = {"hw": (), "hw1": (1,), "hw3": (3,), "hw4": (4,), "chw3": (3,), "pil": (3,)}[layout]
    a = (rng.random((h, w, *channels)) * 5000 - 100).astype(dtype)
    if layout == "chw3" and min(h, w) > 4:
        a = np.ascontiguousarray(np.moveaxis(a, -1, 0))  # (C, H, W) is accepted when unambiguous
    image = Image.fromarray(a.astype(np.uint8)) if layout == "pil" else a
    out = predictor.processor(image, TEXT)
    assert out.original_sizes == [(h, w)]
    assert torch.isfinite(out.sam_pixels).all() and torch.isfinite(out.union_pixels).all()
    pred = predictor.predict(image, TEXT)
    assert pred.mask.shape == (h, w) and pred.mask.dtype == bool
    assert np.isfinite(pred.logits).all() and 0.0 <= pred.score <= 1.0
    np.testing.assert_array_equal(pred.mask, pred.logits > pred.threshold)
