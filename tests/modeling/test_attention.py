"""Packed cross-attention (rs2sam2.modeling.attention): key padding against nn.MultiheadAttention."""

from __future__ import annotations

import torch

from rs2sam2.modeling.attention import PackedCrossAttention

from .conftest import _mha_like


def test_packed_attention_key_padding():
    torch.manual_seed(4)
    att = PackedCrossAttention(8, 2)
    q, k = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    pad = torch.tensor([[False, False, True, True]])
    masked, w = att(q, k, k, key_padding_mask=pad, need_weights=True)
    torch.testing.assert_close(masked, att(q, k[:, :2], k[:, :2])[0], atol=1e-6, rtol=1e-5)
    assert (w[..., 2:] == 0).all()
    ref = _mha_like(att)
    torch.testing.assert_close(
        masked.transpose(0, 1),
        ref(q.transpose(0, 1), k.transpose(0, 1), k.transpose(0, 1), key_padding_mask=pad)[0],
        atol=1e-6,
        rtol=1e-5,
    )
