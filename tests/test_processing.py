"""Processor: image conversion, resizing/normalisation, tokenisation, native-size post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rs2sam2 import RS2SAM2, RS2SAM2Config, RS2SAM2Predictor, RS2SAM2Processor
from rs2sam2.images import load_image
from rs2sam2.processing import stretch_to_uint8, to_rgb
from rs2sam2.testing import make_test_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from rs2sam2.text import load_tokenizer

    folder = make_test_tokenizer(tmp_path_factory.mktemp("tok"), vocab_size=128)
    return load_tokenizer(folder, min_vocab_size=100)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return RS2SAM2Processor(RS2SAM2Config.from_preset("tiny"), tokenizer)


def test_images_are_resized_without_keeping_aspect_and_normalised(processor):
    rgb = np.zeros((30, 50, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red
    out = processor(Image.fromarray(rgb), "the red field")
    assert out.sam_pixels.shape == (1, 3, 256, 256)
    assert out.union_pixels.shape == (1, 3, 224, 224)
    assert out.original_sizes == [(30, 50)]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = torch.tensor([(1 - mean[0]) / std[0], -mean[1] / std[1], -mean[2] / std[2]])
    torch.testing.assert_close(out.sam_pixels[0, :, 100, 100], expected)
    torch.testing.assert_close(out.union_pixels[0, :, 7, 200], expected)


def test_resize_is_pil_bilinear(processor):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    sam, union, size = processor.preprocess_image(img)
    ref = np.asarray(img.resize((256, 256), Image.BILINEAR), dtype=np.float32) / 255.0
    got = sam.permute(1, 2, 0).numpy() * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert size == (40, 64)


def test_tokens_follow_the_official_convention(processor, tokenizer):
    out = processor(np.zeros((8, 8, 3), np.uint8), ["the ship", "the second small white building"])
    ids, mask = out.input_ids, out.attention_mask
    assert ids.shape[0] == 2 and ids.shape == mask.shape
    assert (ids[:, 0] == 0).all()  # <s>
    short = int(mask[0].sum())
    assert ids[0, short - 1] == 2  # </s> ends the shorter sentence
    assert (ids[0, short:] == 3).all() and not mask[0, short:].any()  # right-padded with unk id 3
    assert mask[1].all()
    assert (mask == (ids != 3)).all()
    # one image, two sentences: the image is processed once and repeated
    torch.testing.assert_close(out.sam_pixels[0], out.sam_pixels[1])


def test_bad_inputs_give_clear_errors(processor, tmp_path):
    with pytest.raises(ValueError, match="empty|whitespace"):
        processor(np.zeros((8, 8, 3), np.uint8), "   ")
    with pytest.raises(ValueError, match="at least one"):
        processor(np.zeros((8, 8, 3), np.uint8), [])
    with pytest.raises(ValueError, match="2 images but 3 texts"):
        processor([np.zeros((8, 8, 3), np.uint8)] * 2, ["a", "b", "c"])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        processor(empty, "the ship")
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(fake)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="5 bands"):
        to_rgb(np.zeros((8, 8, 5), np.uint16))
    with pytest.raises(ValueError, match="bands must be"):
        to_rgb(np.zeros((8, 8, 5), np.uint16), bands=(0, 1, 7))


def test_image_modes_convert_to_rgb(tmp_path):
    gray = Image.fromarray(np.full((5, 6), 100, np.uint8), mode="L")
    assert np.asarray(to_rgb(gray))[0, 0].tolist() == [100, 100, 100]
    rgba = Image.fromarray(np.dstack([np.full((5, 6, 3), 7, np.uint8), np.zeros((5, 6), np.uint8)]), "RGBA")
    assert to_rgb(rgba).mode == "RGB" and np.asarray(to_rgb(rgba))[0, 0].tolist() == [7, 7, 7]
    pal = gray.convert("P")
    assert to_rgb(pal).mode == "RGB"
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [255, 255, 255]
    # 16-bit data: percentile stretch to the full 8-bit range
    sixteen = np.linspace(0, 4000, 100 * 3, dtype=np.uint16).reshape(10, 10, 3)
    out = np.asarray(to_rgb(sixteen))
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    # multiband with a band choice
    bands = np.stack([np.full((4, 4), v, np.uint8) for v in (10, 20, 30, 40, 50)], -1)
    assert np.asarray(to_rgb(bands, bands=(4, 2, 0)))[0, 0].tolist() == [50, 30, 10]
    # (C, H, W) arrays are accepted
    assert to_rgb(np.zeros((3, 9, 7), np.uint8)).size == (7, 9)
    # 1×1 images work
    assert to_rgb(np.zeros((1, 1, 3), np.uint8)).size == (1, 1)
    # 16-bit PNG file
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 500).save(tmp_path / "d.png")
    assert np.asarray(to_rgb(tmp_path / "d.png")).max() == 255


def test_stretch_ignores_nonfinite():
    a = np.array([[0.0, 1.0], [np.nan, np.inf]])
    out = stretch_to_uint8(a, 0, 100)
    assert out.tolist() == [[0, 255], [0, 0]]
    assert stretch_to_uint8(np.full((3, 3), 5.0)).max() == 0


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    channels=st.sampled_from([None, 1, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
)
def test_any_numeric_image_becomes_rgb(h, w, channels, dtype):
    shape = (h, w) if channels is None else (h, w, channels)
    a = (np.random.default_rng(h * w).random(shape) * 1000).astype(dtype)
    rgb = to_rgb(a)
    assert rgb.mode == "RGB" and rgb.size == (w, h)


def test_post_processing_back_to_native_size(processor):
    logits = torch.full((2, 1, 256, 256), -5.0)
    logits[0, :, :128, :] = 5.0  # top half foreground
    masks = processor.post_process_masks(logits, [(30, 50), (7, 9)])
    assert masks[0].shape == (30, 50) and masks[1].shape == (7, 9)
    assert masks[0][:14].all() and not masks[0][16:].any()
    assert not masks[1].any()
    # the official threshold is on the logit at 0.5, not 0
    edge = torch.full((1, 1, 256, 256), 0.3)
    assert not processor.post_process_masks(edge, [(4, 4)])[0].any()
    assert processor.post_process_masks(edge, [(4, 4)], threshold=0.0)[0].all()


def test_tokenizer_vocabulary_is_checked(tokenizer):
    cfg = RS2SAM2Config.from_preset("tiny")
    cfg.tokenizer.min_vocab_size = 64000  # the official tokenizer's size
    with pytest.raises(ValueError, match="only 131 tokens, expected at least 64000"):
        RS2SAM2Processor(cfg, tokenizer)
    cfg = RS2SAM2Config.from_preset("tiny")
    cfg.union_encoder.vocab_size = 50  # fewer embedding rows than tokens
    with pytest.raises(ValueError, match="vocabulary|embedding"):
        RS2SAM2Processor(cfg, tokenizer)


def test_predictor_returns_native_masks_and_intermediates(processor):
    torch.manual_seed(0)
    predictor = RS2SAM2Predictor(RS2SAM2(processor.config), processor)
    image = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    pred = predictor.predict(image, "the large storage tank", output_attentions=True)
    assert pred.mask.shape == (37, 53) and pred.mask.dtype == bool
    assert pred.logits.shape == (37, 53)
    np.testing.assert_array_equal(pred.mask, pred.logits > 0.5)
    assert pred.pseudo_mask.shape == (14, 14) and pred.dense_prompt.shape == (64, 64)
    assert [f.shape[0] for f in pred.fused_features] == [32, 64, 128, 256]
    assert 0.0 <= pred.score <= 1.0
    if pred.mask.any():
        p = 1 / (1 + np.exp(-(2 * pred.logits - 1)))
        assert pred.score == pytest.approx(float(p[pred.mask].mean()), rel=1e-5)
    assert len(pred.fusion_attentions) == 4
    # batched expressions equal one-by-one predictions
    batch = predictor.predict_batch(image, ["the large storage tank", "the ship"])
    np.testing.assert_allclose(batch[0].logits, pred.logits, atol=1e-4)
