from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rs2sam2.data.masks import decode_rle, encode_rle, mask_area, mask_bbox, mask_to_png
from rs2sam2.predictor import Prediction
from rs2sam2.visualize import (
    as_rgb_array,
    colorize,
    contrasting_color,
    display_size,
    downscale_for_display,
    heatmap_overlay,
    highlight_mask,
    mask_contour,
    normalize_map,
    overlay_mask,
    pca_rgb,
    plot_prediction,
    resize_map,
    result_dict,
    token_attention,
)


def _box_mask(h: int = 10, w: int = 12) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[2:7, 3:9] = True  # rows 2..6, cols 3..8
    return m


def _prediction(h: int = 40, w: int = 50, with_attention: bool = True) -> Prediction:
    rng = np.random.default_rng(0)
    mask = np.zeros((h, w), dtype=bool)
    mask[10:20, 5:25] = True
    sizes = [(16, 16, 16), (32, 8, 8), (64, 4, 4), (64, 2, 2)]
    return Prediction(
        mask=mask,
        score=0.75,
        logits=np.where(mask, 2.0, -2.0).astype(np.float32),
        pseudo_mask=rng.random((14, 14)).astype(np.float32),
        dense_prompt=rng.random((64, 64)).astype(np.float32),
        fused_features=[rng.standard_normal(s).astype(np.float32) for s in sizes],
        iou_score=0.5,
        object_score=1.5,
        threshold=0.5,
        text="the red car",
        fusion_attentions=[rng.random((s[1], s[2], 5)).astype(np.float32) for s in sizes]
        if with_attention
        else None,
    )


# ------------------------------------------------------------------------------------------ masks
def test_bbox_and_area_of_a_known_mask():
    m = _box_mask()
    assert mask_bbox(m) == [3, 2, 6, 5]
    assert mask_area(m) == 30
    assert mask_bbox(np.zeros((4, 4), bool)) == [0, 0, 0, 0]
    single = np.zeros((5, 5), bool)
    single[4, 0] = True
    assert mask_bbox(single) == [0, 4, 1, 1]


def test_bbox_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(1)
    m = np.zeros((30, 40), bool)
    m[rng.integers(5, 25, 20), rng.integers(3, 37, 20)] = True
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert mask_bbox(m) == [int(v) for v in mask_utils.toBbox(rle)]


def test_rle_round_trip_and_json():
    rng = np.random.default_rng(2)
    m = rng.random((17, 23)) > 0.6
    rle = encode_rle(m)
    assert rle["size"] == [17, 23]
    again = json.loads(json.dumps(rle))
    np.testing.assert_array_equal(decode_rle(again), m)


def test_mask_png_is_binary_at_native_size():
    png = mask_to_png(_box_mask())
    a = np.asarray(png)
    assert png.mode == "L" and a.shape == (10, 12)
    assert set(np.unique(a)) == {0, 255}
    np.testing.assert_array_equal(a == 255, _box_mask())


def test_contour_is_inner_boundary():
    c = mask_contour(_box_mask(), width=1)
    expected = _box_mask()
    expected[3:6, 4:8] = False  # the 3×4 interior
    np.testing.assert_array_equal(c, expected)
    # touching the border counts as boundary
    full = np.ones((3, 3), bool)
    assert mask_contour(full).sum() == 8


def test_overlay_pixel_colours():
    image = np.full((10, 12, 3), 100, np.uint8)
    m = _box_mask()
    out = overlay_mask(image, m, color=(200, 0, 50), alpha=0.5, contour=False)
    np.testing.assert_array_equal(out[~m], image[~m])
    np.testing.assert_array_equal(out[4, 5], [150, 50, 75])
    with_contour = overlay_mask(image, m, color=(200, 0, 50), alpha=0.5, contour_color=(0, 255, 0))
    np.testing.assert_array_equal(with_contour[2, 3], [0, 255, 0])  # corner of the box: boundary
    np.testing.assert_array_equal(with_contour[4, 5], [150, 50, 75])  # interior: blended
    np.testing.assert_array_equal(with_contour[0, 0], [100, 100, 100])
    with pytest.raises(ValueError, match="does not match"):
        overlay_mask(image, np.zeros((3, 3), bool))


def test_overlay_accepts_pil_and_grey():
    grey = Image.fromarray(np.full((10, 12), 40, np.uint8), mode="L")
    out = overlay_mask(grey, _box_mask(), color=(240, 240, 240), alpha=1.0, contour=False)
    assert out.shape == (10, 12, 3)
    np.testing.assert_array_equal(out[4, 5], [240, 240, 240])
    np.testing.assert_array_equal(out[0, 0], [40, 40, 40])


def test_result_dict_is_json_and_complete():
    p = _prediction()
    d = json.loads(json.dumps(result_dict(p, model_id="my/model")))
    assert d["expression"] == "the red car" and d["model_id"] == "my/model"
    assert d["bbox"] == [5, 10, 20, 10] and d["area"] == 200
    assert d["score"] == pytest.approx(0.75) and d["threshold"] == 0.5
    assert d["image_size"] == [40, 50]
    np.testing.assert_array_equal(decode_rle(d["mask"]), p.mask)


# ---------------------------------------------------------------------------------------- heatmaps
def test_colorize_uses_the_matplotlib_colormap():
    from matplotlib import colormaps

    v = np.array([[0.0, 0.5, 1.0, 2.0]])
    out = colorize(v, cmap="viridis")
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], colormaps["viridis"](0.0, bytes=True)[:3])
    np.testing.assert_array_equal(out[0, 2], colormaps["viridis"](1.0, bytes=True)[:3])
    np.testing.assert_array_equal(out[0, 3], out[0, 2])  # clipped


def test_heatmap_overlay_is_resized_to_the_image_and_blended():
    image = np.zeros((28, 42, 3), np.uint8)
    probs = np.zeros((14, 14), np.float32)
    probs[:, 7:] = 1.0  # right half hot
    out = heatmap_overlay(image, probs, cmap="gray", alpha=0.5, resample="nearest")
    assert out.shape == (28, 42, 3)
    np.testing.assert_array_equal(out[:, :21], 0)
    np.testing.assert_array_equal(out[:, 21:], 128)  # 0.5 · 255 rounded


def test_resize_map_and_normalize():
    m = np.arange(4, dtype=np.float32).reshape(2, 2)
    big = resize_map(m, (4, 6), resample="nearest")
    assert big.shape == (4, 6) and big[0, 0] == 0 and big[-1, -1] == 3
    n = normalize_map(np.array([[2.0, 4.0], [6.0, np.nan]]))
    np.testing.assert_allclose(n, [[0.0, 0.5], [1.0, 0.0]], atol=1e-6)
    np.testing.assert_array_equal(normalize_map(np.full((3, 3), 7.0)), 0)


# ------------------------------------------------------------------------------------------- PCA
def test_pca_recovers_a_known_dominant_direction():
    rng = np.random.default_rng(0)
    h, w, c = 12, 16, 8
    ramp = np.linspace(-1.0, 1.0, w, dtype=np.float64)[None, :].repeat(h, 0)  # left → right
    direction = rng.standard_normal(c)
    direction[np.argmax(np.abs(direction))] = 5.0  # dominant loading positive
    feats = direction[:, None, None] * ramp[None] * 10 + 0.01 * rng.standard_normal((c, h, w))
    out = pca_rgb(feats)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    red = out[..., 0].astype(int).mean(axis=0)
    assert red[0] == 0 and red[-1] == 255
    assert np.all(np.diff(red) >= 0)  # red follows the ramp, brightening to the right
    # determinism: negating the features flips the loading, so the sign rule gives the mirrored picture
    flipped = pca_rgb(-feats)
    np.testing.assert_array_equal(flipped[..., 0], 255 - out[..., 0])
    np.testing.assert_array_equal(pca_rgb(feats), out)


def test_pca_robust_scaling_ignores_outliers():
    h, w = 20, 20
    base = np.tile(np.linspace(0, 1, w), (h, 1))
    base[0, 0] = 1000.0  # one extreme pixel
    feats = np.stack([base, 0 * base])
    out = pca_rgb(feats, low=1, high=99)
    # without robust scaling the ramp would be squeezed to ~0; with it the ramp spans the range
    assert out[10, -2, 0] > 200 and out[10, 1, 0] < 50


def test_pca_of_low_rank_and_constant_maps():
    ramp = np.tile(np.linspace(0, 1, 5), (4, 1))
    out = pca_rgb(ramp[None])  # one channel: only red
    assert np.all(out[..., 1:] == 0) and out[..., 0].max() == 255
    np.testing.assert_array_equal(pca_rgb(np.ones((3, 4, 5))), 0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        pca_rgb(np.ones((4, 5)))


# -------------------------------------------------------------------------------------- attention
def test_token_attention_selects_and_averages():
    att = np.zeros((2, 3, 4), np.float32)
    att[..., 1] = 1.0
    att[..., 2] = 3.0
    np.testing.assert_array_equal(token_attention(att, 2), 3.0)
    np.testing.assert_array_equal(token_attention(att, -3), 1.0)
    np.testing.assert_allclose(token_attention(att), 1.0)  # (0 + 1 + 3 + 0) / 4
    np.testing.assert_allclose(token_attention(att, valid=[False, True, True, False]), 2.0)
    with pytest.raises(ValueError, match="out of range"):
        token_attention(att, 4)
    with pytest.raises(ValueError, match="at least one"):
        token_attention(att, valid=[False] * 4)


# ---------------------------------------------------------------------------------------- display
def test_downscale_for_display():
    assert display_size(3000, 1500, 1024) == (1024, 512)
    assert display_size(500, 400, 1024) == (500, 400)
    big = np.zeros((2048, 1024, 3), np.uint8)
    assert downscale_for_display(big, 1024).shape == (1024, 512, 3)
    small = np.zeros((100, 80, 3), np.uint8)
    assert downscale_for_display(small, 1024) is small
    m = np.zeros((2000, 2000), bool)
    m[:1000] = True
    dm = downscale_for_display(m, 500)
    assert dm.dtype == np.bool_ and dm.shape == (500, 500) and dm[:250].all() and not dm[250:].any()


def test_as_rgb_array_accepts_16_bit():
    a = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    out = as_rgb_array(a)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8 and out.max() == 255


# ---------------------------------------------------------------------------------------- figure
@pytest.mark.parametrize("stage", [None, 2])
def test_plot_prediction_panels(stage):
    p = _prediction()
    image = np.full((40, 50, 3), 90, np.uint8)
    fig = plot_prediction(image, p, stage=stage)
    titles = [ax.get_title() for ax in fig.axes]
    n_stages = 4 if stage is None else 1
    assert len(fig.axes) == 2 + n_stages + 1 + 1
    assert titles[0].startswith("pseudo-mask") and titles[1] == "dense prompt"
    assert sum(t.startswith("fused stage") for t in titles) == n_stages
    assert "attention" in titles[-2] and titles[-1] == "mask (score 0.75)"
    fig.canvas.draw()  # renders without pyplot
    no_att = plot_prediction(image, _prediction(with_attention=False), stage=0)
    assert len(no_att.axes) == 4


def test_highlight_mask_contrasts_and_outlines():
    m = np.zeros((12, 12), bool)
    m[3:9, 3:9] = True
    red = np.zeros((12, 12, 3), np.uint8)
    red[:] = (200, 40, 41)  # a red object on red ground: a red fill would vanish
    out = highlight_mask(red, m, alpha=0.5, width=1)
    assert contrasting_color(red[m]) == (0, 230, 255)  # cyan is farthest from red
    np.testing.assert_array_equal(out[5, 5], [100, 135, 148])  # inside: half red, half cyan
    np.testing.assert_array_equal(out[3, 5], [255, 255, 255])  # the mask's own boundary: white
    np.testing.assert_array_equal(out[2, 5], [0, 0, 0])  # just outside it: black
    np.testing.assert_array_equal(out[0, 0], [200, 40, 41])  # elsewhere: the image
    assert (out[~m] == 0).all(axis=-1).sum() == 6 * 4  # the black ring: 6 pixels on each side
    assert (out[m] == 255).all(axis=-1).sum() == 6 * 6 - 4 * 4  # the white ring: the box minus its inside
    white = np.full((12, 12, 3), 250, np.uint8)
    assert contrasting_color(white[m]) == (255, 48, 48)
    assert contrasting_color(np.zeros((0, 3))) == (255, 48, 48)  # nothing to contrast with: the first
    with pytest.raises(ValueError, match="does not match"):
        highlight_mask(red, np.zeros((3, 3), bool))


@pytest.mark.parametrize(
    "object_color",
    [(200, 40, 40), (120, 0, 0), (40, 200, 60), (30, 60, 220), (250, 250, 250), (0, 0, 0), (128, 128, 128),
     (240, 220, 20), (0, 220, 240)],
)  # fmt: skip
def test_the_fill_colour_stays_far_from_any_object_colour(object_color):
    fill = np.asarray(contrasting_color(np.asarray([object_color])), float)
    assert np.linalg.norm(fill - np.asarray(object_color, float)) > 150
