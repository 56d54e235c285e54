"""Mask writing (rs2sam2.geo.writing): the strip-wise resize equals torch's bilinear resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

rasterio = pytest.importorskip("rasterio")

from rs2sam2.geo.writing import _resize_rows  # noqa: E402


# ------------------------------------------------------------------------------------- strips
@pytest.mark.parametrize(
    ("src_shape", "out_shape"), [((16, 16), (100, 60)), ((7, 11), (7, 11)), ((30, 20), (31, 97))]
)
def test_strip_resize_equals_torch_bilinear(src_shape, out_shape):
    x = np.random.default_rng(0).normal(size=src_shape).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x)[None, None], out_shape, mode="bilinear", align_corners=False)[
        0, 0
    ]
    strips = np.concatenate(
        [_resize_rows(x, out_shape, r, min(r + 13, out_shape[0])) for r in range(0, out_shape[0], 13)]
    )
    np.testing.assert_allclose(strips, ref.numpy(), atol=1e-5)
