"""benchmarks/fast_path_accuracy.py: how mask agreement with fp32 is summarised."""

from __future__ import annotations

import numpy as np

from ..conftest import load_benchmark


def test_summary_per_sample_pooled_and_flipped_pixels():
    fpa = load_benchmark("fast_path_accuracy")
    small = np.zeros((8, 8), bool)
    small[:2, :5] = True  # 10 px
    small_fast = small.copy()
    small_fast[0, 0] = False  # one border pixel flipped: IoU 9/10
    large = np.zeros((8, 8), bool)
    large[2:8, :] = True  # 48 px, reproduced exactly
    empty = np.zeros((8, 8), bool)  # both empty: identical
    got = fpa._summary([small, large, empty], [small_fast, large, empty], [0.1, 0.02, 0.0])
    assert got["samples"] == 3
    assert got["mask_iou_mean"] == round((0.9 + 1 + 1) / 3, 4) and got["mask_iou_min"] == 0.9
    assert got["share_iou_ge_0.98"] == round(2 / 3, 4)
    assert got["pooled_mask_iou"] == round((9 + 48) / (10 + 48), 4)
    assert got["under_0.98_flipped_pixels_median"] == 1.0
    assert got["under_0.98_fp32_mask_pixels_median"] == 10.0
    assert got["logit_max_abs_error"] == 0.1
