"""② The fusion layer (rs2sam2.modeling.fusion): the hand-checked cross adapter (BL) and layer widths."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rs2sam2.config import FusionConfig
from rs2sam2.modeling.fusion import CrossAdapter, FusionLayer

from .conftest import _mha_like


# ---------------------------------------------------------------- hand-checked BHFM layer (BL)
def _official_cross_adapter(ad: CrossAdapter, x: torch.Tensor, text: torch.Tensor, alpha: float):
    """The per-block cross adapter (BL) of the official code, paper Sec. 3.2 (Bidirectional
    Hierarchical Fusion Module): sequence-first with nn.MultiheadAttention."""
    vl, lv = _mha_like(ad.vision_attn), _mha_like(ad.text_attn)
    b, h, w, _ = x.shape
    f = F.gelu(ad.fc1(x)).permute(1, 2, 0, 3).reshape(h * w, b, -1)  # (HW, B, h)
    t = ad.text_in(text.transpose(0, 1))  # (L, B, h)
    f = f + vl(f, t, t)[0]
    t = t + lv(t, f, f)[0]
    new_text = (1 - alpha) * text + alpha * ad.text_out(t).transpose(0, 1)
    a = x + ad.fc2(f.reshape(h, w, b, -1).permute(2, 0, 1, 3))
    return a, new_text


def test_cross_adapter_matches_official_formulation():
    torch.manual_seed(1)
    ad = CrossAdapter(dim=16, hidden=8, text_dim=12, num_heads=4, text_weight=0.2)
    x, text = torch.randn(2, 3, 5, 16), torch.randn(2, 4, 12)
    got_x, got_t, weights = ad(x, text, need_weights=True)
    ref_x, ref_t = _official_cross_adapter(ad, x, text, 0.2)
    torch.testing.assert_close(got_x, ref_x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_t, ref_t, atol=1e-5, rtol=1e-5)
    assert weights.shape == (2, 15, 4)
    # the weight path gives the same output as the SDPA path
    torch.testing.assert_close(ad(x, text)[0], got_x, atol=1e-5, rtol=1e-5)
    # without the text update the text passes through unchanged
    assert ad(x, text, update_text=False)[1] is text


def test_cross_adapter_by_hand_single_text_token():
    """With one text token the softmax is 1, so the vision update is out_proj(v(t)): computable by hand."""
    ad = CrossAdapter(dim=2, hidden=1, text_dim=1, num_heads=1, text_weight=0.2)
    with torch.no_grad():
        for m in [ad.fc1, ad.fc2, ad.text_in, ad.text_out, ad.vision_attn.out_proj, ad.text_attn.out_proj]:
            m.weight.fill_(1.0)
            m.bias.zero_()
        for att in [ad.vision_attn, ad.text_attn]:
            att.in_proj_weight.fill_(1.0)
            att.in_proj_bias.zero_()
    x = torch.tensor([[[[1.0, 1.0]]]])  # (B=1, H=1, W=1, d=2)
    text = torch.tensor([[[0.5]]])  # (B=1, L=1, 1)
    # f = gelu(1 + 1) = gelu(2); t = 0.5; vision update: f + 1 * (1 * t) = gelu(2) + 0.5
    g2 = 2 * 0.5 * (1 + math.erf(2 / math.sqrt(2)))
    f = g2 + 0.5
    # text: t + out(v(f)) = 0.5 + f (one vision token), then T = 0.8 * 0.5 + 0.2 * (0.5 + f)
    new_t = 0.8 * 0.5 + 0.2 * (0.5 + f)
    # x + fc2(f) = 1 + f in both channels
    out_x, out_t, _ = ad(x, text)
    torch.testing.assert_close(out_x, torch.full((1, 1, 1, 2), 1 + f))
    torch.testing.assert_close(out_t, torch.tensor([[[new_t]]]))


def test_fusion_layer_widths_follow_the_ratio():
    layer = FusionLayer(dim=576, text_dim=256, cfg=FusionConfig())
    assert layer.cross_adapter.fc1.out_features == 144
    assert layer.cross_adapter.vision_attn.num_heads == 4
    assert layer.mlp_adapter.fc1.out_features == 144
