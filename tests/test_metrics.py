"""Metrics against hand-computed values for every convention, plus property tests."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rs2sam2.metrics import (
    METRIC_KEYS,
    MetricAccumulator,
    compute_metrics,
    intersection_union,
    iou,
    prepare_pair,
    resize_mask_nearest,
)

A = np.array


# Four 2x2 samples: (pred, gt) with (I, U) = (1, 2), (3, 4), (0, 0), (0, 2)  ->  IoU 0.5, 0.75, [U=0], 0.
SAMPLES = [
    (A([[1, 1], [0, 0]]), A([[1, 0], [0, 0]])),
    (A([[1, 1], [1, 0]]), A([[1, 1], [1, 1]])),
    (A([[0, 0], [0, 0]]), A([[0, 0], [0, 0]])),
    (A([[0, 0], [0, 1]]), A([[1, 0], [0, 0]])),
]


def _run(**kwargs):
    acc = MetricAccumulator(eval_size=None, **kwargs)
    for p, g in SAMPLES:
        acc.add(p, g)
    return acc


def test_intersection_union_and_iou_hand_values():
    assert [intersection_union(p, g) for p, g in SAMPLES] == [(1, 2), (3, 4), (0, 0), (0, 2)]
    assert iou(*SAMPLES[0]) == 0.5
    assert iou(*SAMPLES[1]) == 0.75
    assert iou(*SAMPLES[2]) == 0.0
    assert iou(*SAMPLES[2], empty_union="one") == 1.0
    assert iou(*SAMPLES[2], empty_union="skip") is None


def test_official_conventions_golden():
    # IoUs 0.5, 0.75, 0 (empty union -> 0), 0 ; oIoU = (1+3+0+0)/(2+4+0+2) = 4/8
    out = _run().compute()
    assert list(out) == [*METRIC_KEYS, "num_samples"]
    assert out["mIoU"] == pytest.approx(100 * (0.5 + 0.75) / 4)  # 31.25
    assert out["oIoU"] == pytest.approx(50.0)
    assert out["Pr@0.5"] == pytest.approx(50.0)  # 0.5 >= 0.5 counts
    assert out["Pr@0.6"] == pytest.approx(25.0)
    assert out["Pr@0.7"] == pytest.approx(25.0)
    assert out["Pr@0.8"] == 0.0 and out["Pr@0.9"] == 0.0
    assert out["num_samples"] == 4


def test_strict_pr_comparison():
    out = _run(pr_compare=">").compute()
    assert out["Pr@0.5"] == pytest.approx(25.0)  # 0.5 > 0.5 is false
    assert out["mIoU"] == pytest.approx(31.25)


def test_empty_union_one():
    out = _run(empty_union="one").compute()  # IoUs 0.5, 0.75, 1, 0
    assert out["mIoU"] == pytest.approx(56.25)
    assert out["oIoU"] == pytest.approx(50.0)
    assert [out[f"Pr@{t}"] for t in (0.5, 0.6, 0.7, 0.8, 0.9)] == pytest.approx([75, 50, 50, 25, 25])
    assert out["num_samples"] == 4


def test_empty_union_skip():
    acc = _run(empty_union="skip")
    out = acc.compute()  # IoUs 0.5, 0.75, 0
    assert out["mIoU"] == pytest.approx(100 * 1.25 / 3)
    assert out["oIoU"] == pytest.approx(50.0)
    assert out["Pr@0.5"] == pytest.approx(200 / 3)
    assert out["Pr@0.6"] == pytest.approx(100 / 3)
    assert out["num_samples"] == 3
    assert acc.num_skipped == 1


@pytest.mark.parametrize(("i", "u", "t"), [(3, 5, 0.6), (7, 10, 0.7), (4, 5, 0.8), (9, 10, 0.9)])
def test_pr_exact_threshold_boundary(i, u, t):
    pred = np.zeros((1, u), bool)
    gt = np.zeros((1, u), bool)
    pred[0, :u] = True
    gt[0, :i] = True
    for cmp, expected in ((">=", 100.0), (">", 0.0)):
        acc = MetricAccumulator(pr_compare=cmp, eval_size=None)
        acc.add(pred, gt)
        assert acc.compute()[f"Pr@{t}"] == expected


def test_all_empty_and_no_samples():
    acc = MetricAccumulator(eval_size=None)
    acc.add(np.zeros((2, 2)), np.zeros((2, 2)))
    out = acc.compute()
    assert out["mIoU"] == 0.0 and out["oIoU"] == 0.0
    assert MetricAccumulator(empty_union="one", eval_size=None).compute()["num_samples"] == 0
    assert math.isnan(MetricAccumulator().compute()["mIoU"])


def test_resize_nearest_matches_hand_indices_and_torchvision():
    # 3 -> 4: output index i takes source floor((i + 0.5) * 3 / 4) = [0, 1, 1, 2]
    gt = np.zeros((3, 3), bool)
    gt[1, 1] = True
    expected = np.zeros((4, 4), bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(resize_mask_nearest(gt, 4), expected)
    # 2 -> 4 doubles every pixel
    np.testing.assert_array_equal(
        resize_mask_nearest(A([[1, 0], [0, 1]]), (4, 4)), np.kron(np.eye(2), np.ones((2, 2))).astype(bool)
    )
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from PIL import Image

    rng = np.random.default_rng(0)
    for shape, size in (((5, 7), (12, 9)), ((13, 11), (5, 6)), ((80, 80), (1024, 1024))):
        m = rng.random(shape) > 0.5
        ref = tvf.resize(
            Image.fromarray(m.astype(np.uint8), mode="P"), list(size), tvf.InterpolationMode.NEAREST
        )
        np.testing.assert_array_equal(resize_mask_nearest(m, size), np.asarray(ref) > 0)


def test_eval_resolution_official_vs_native():
    gt = np.zeros((3, 3), bool)
    gt[1, 1] = True  # at 4x4: the 2x2 block [1:3, 1:3]
    pred4 = np.zeros((4, 4), bool)
    pred4[1, 1] = True
    acc = MetricAccumulator(eval_size=4)
    assert acc.add(pred4, gt) == pytest.approx(1 / 4)
    # native resolution: the prediction must have the GT's size
    native = MetricAccumulator(eval_size=None)
    assert native.add(gt, gt) == 1.0
    with pytest.raises(ValueError, match="native"):
        native.add(pred4, gt)
    with pytest.raises(ValueError, match="evaluation size"):
        acc.add(gt, gt)
    p, g = prepare_pair(torch.ones(1, 4, 4), gt, eval_size=4)
    assert p.shape == g.shape == (4, 4) and p.dtype == bool


def test_default_eval_size_is_1024():
    gt = np.zeros((8, 8), bool)
    gt[:4] = True
    pred = np.zeros((1024, 1024), bool)
    pred[:512] = True
    acc = MetricAccumulator()
    assert acc.add(torch.from_numpy(pred), gt) == 1.0


def test_rejects_non_binary_and_shape_mismatch():
    with pytest.raises(ValueError, match="binary"):
        iou(A([[0.2, 1.0]]), A([[0, 1]]))
    with pytest.raises(ValueError, match="shape"):
        intersection_union(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        MetricAccumulator(empty_union="nan")
    with pytest.raises(ValueError):
        MetricAccumulator(pr_compare="=>")


def test_per_category_and_records(tmp_path):
    acc = MetricAccumulator(eval_size=None)
    for (p, g), cat in zip(SAMPLES, ["car", "car", "ship", "ship"]):
        acc.add(p, g, category=cat, sample_id=f"s{cat}")
    per = acc.compute_per_category()
    assert set(per) == {"car", "ship"}
    assert per["car"]["mIoU"] == pytest.approx(62.5) and per["car"]["oIoU"] == pytest.approx(400 / 6)
    assert per["ship"]["mIoU"] == 0.0 and per["ship"]["oIoU"] == 0.0
    assert per["car"]["num_samples"] == 2
    rows = acc.sample_rows()
    assert [(r["intersection"], r["union"], r["iou"]) for r in rows][:2] == [(1, 2, 0.5), (3, 4, 0.75)]
    path = acc.write_csv(tmp_path / "samples.csv")
    with path.open() as f:
        read = list(csv.DictReader(f))
    assert [r["category"] for r in read] == ["car", "car", "ship", "ship"]
    assert float(read[1]["iou"]) == 0.75 and read[2]["union"] == "0"


def test_skip_records_blank_iou_in_csv(tmp_path):
    acc = _run(empty_union="skip")
    with acc.write_csv(tmp_path / "s.csv").open() as f:
        assert list(csv.DictReader(f))[2]["iou"] == ""


def test_compute_metrics_one_shot():
    preds, gts = zip(*SAMPLES)
    assert compute_metrics(preds, gts, eval_size=None) == _run().compute()


# ------------------------------------------------------------------------------------------- properties
masks = st.integers(1, 6).flatmap(
    lambda h: st.integers(1, 6).flatmap(
        lambda w: st.tuples(arrays(np.bool_, (h, w)), arrays(np.bool_, (h, w)))
    )
)


@settings(max_examples=60, deadline=None)
@given(masks)
def test_iou_range_and_symmetry(pair):
    p, g = pair
    for conv in ("zero", "one"):
        v = iou(p, g, empty_union=conv)
        assert 0.0 <= v <= 1.0
        assert v == iou(g, p, empty_union=conv)


@settings(max_examples=40, deadline=None)
@given(st.lists(masks, min_size=1, max_size=5))
def test_summary_properties(pairs):
    out = compute_metrics([p for p, _ in pairs], [g for _, g in pairs], eval_size=None)
    assert 0.0 <= out["oIoU"] <= 100.0
    assert 0.0 <= out["mIoU"] <= 100.0
    prs = [out[f"Pr@{t}"] for t in (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert prs == sorted(prs, reverse=True)
    assert out["mIoU"] == pytest.approx(100 * np.mean([iou(p, g) for p, g in pairs]))


@settings(max_examples=40, deadline=None)
@given(st.lists(masks, min_size=1, max_size=5))
def test_perfect_prediction_gives_100(pairs):
    gts = [g for _, g in pairs]
    for g in gts:
        g.flat[0] = True  # non-empty GT (an empty one has IoU 0 under the official convention)
    out = compute_metrics(gts, gts, eval_size=None)
    assert all(out[k] == 100.0 for k in METRIC_KEYS)


# ------------------------------------------------------------------------- properties (robustness)
def _mask_pairs(max_side: int = 12):
    return st.integers(1, max_side).flatmap(
        lambda h: st.integers(1, max_side).flatmap(
            lambda w: st.tuples(arrays(np.bool_, (h, w)), arrays(np.bool_, (h, w)))
        )
    )


@settings(max_examples=60, deadline=None)
@given(_mask_pairs(), st.integers(0, 7), st.data())
def test_iou_is_invariant_under_a_shared_flip_and_monotone_in_corrections(pair, op, data):
    p, g = pair
    flip = [lambda a: a, np.fliplr, np.flipud, np.transpose, np.rot90, lambda a: np.rot90(a, 2),
            lambda a: np.rot90(a, 3), lambda a: np.fliplr(np.transpose(a))][op]  # fmt: skip
    assert iou(flip(p), flip(g)) == iou(p, g)
    wrong = np.argwhere(p != g)
    if len(wrong):  # fixing one wrong pixel (a miss or a false alarm) never lowers the IoU
        r, c = wrong[data.draw(st.integers(0, len(wrong) - 1))]
        fixed = p.copy()
        fixed[r, c] = g[r, c]
        assert iou(fixed, g) >= iou(p, g)
    else:
        assert iou(p, g) == (1.0 if g.any() else 0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(_mask_pairs(), min_size=1, max_size=6), st.integers(1, 9), st.integers(1, 9))
def test_metrics_at_an_evaluation_size_stay_in_range(pairs, eh, ew):
    """Official protocol shape: GTs of any size nearest-resized to the evaluation size."""
    gts = [g for _, g in pairs]
    preds = [resize_mask_nearest(p, (eh, ew)) for p, _ in pairs]
    out = compute_metrics(preds, gts, eval_size=(eh, ew))
    assert 0.0 <= out["mIoU"] <= 100.0 and 0.0 <= out["oIoU"] <= 100.0
    i = sum(int((p & resize_mask_nearest(g, (eh, ew))).sum()) for p, g in zip(preds, gts))
    u = sum(int((p | resize_mask_nearest(g, (eh, ew))).sum()) for p, g in zip(preds, gts))
    assert out["oIoU"] == pytest.approx(100.0 * i / u if u else 0.0)
    perfect = compute_metrics([resize_mask_nearest(g, (eh, ew)) for g in gts], gts, eval_size=(eh, ew))
    if all(resize_mask_nearest(g, (eh, ew)).any() for g in gts):
        assert perfect["mIoU"] == perfect["oIoU"] == 100.0
