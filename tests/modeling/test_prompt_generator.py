"""③ The mask prompt generator (rs2sam2.modeling.prompt_generator), checked by hand and against the
official formulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rs2sam2.modeling.prompt_generator import MaskPromptGenerator

from .conftest import _mha_like


# --------------------------------------------------------------------------- hand-checked MPG
def test_mask_prompt_generator_matches_official_formulation():
    torch.manual_seed(2)
    mpg = MaskPromptGenerator(16, 8, num_heads=2, grid_size=3, prompt_size=12)
    cls, patches = torch.randn(2, 1, 16), torch.randn(2, 9, 16)
    out = mpg(cls, patches)
    ref_attn = _mha_like(mpg.class_attn)
    m = cls.transpose(0, 1)  # (1, B, C)
    m = m * ref_attn(m, patches.transpose(0, 1), patches.transpose(0, 1))[0]
    m = mpg.mask_linear(m.transpose(0, 1)).unsqueeze(1)  # (B, 1, 1, C)
    pseudo = torch.sigmoid(mpg.mask_product(patches.view(2, 3, 3, 16) * m)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.pseudo_mask, pseudo, atol=1e-6, rtol=1e-5)
    dense = F.interpolate(pseudo, (12, 12), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(out.dense_prompt, dense, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.sparse_prompt, mpg.token_mlp(cls))
    assert out.sparse_prompt.shape == (2, 1, 8)


def test_mask_prompt_generator_by_hand():
    """One patch, one channel: every step is a scalar computation."""
    mpg = MaskPromptGenerator(1, 1, num_heads=1, grid_size=1, prompt_size=2)
    with torch.no_grad():
        mpg.class_attn.in_proj_weight.fill_(1.0)
        mpg.class_attn.in_proj_bias.zero_()
        mpg.class_attn.out_proj.weight.fill_(2.0)
        mpg.class_attn.out_proj.bias.zero_()
        mpg.mask_linear.weight.fill_(3.0)
        mpg.mask_linear.bias.fill_(1.0)
        mpg.mask_product.weight.fill_(0.5)
        mpg.mask_product.bias.fill_(-1.0)
    cls, patch = torch.tensor([[[2.0]]]), torch.tensor([[[0.25]]])
    # attention over one key = its value 0.25, out_proj ×2 = 0.5; m = cls ⊙ 0.5 = 1.0
    # mask_linear: 3·1 + 1 = 4; P = 0.25·4 = 1; logit = 0.5·1 − 1 = −0.5
    expected = 1 / (1 + math.exp(0.5))
    out = mpg(cls, patch)
    torch.testing.assert_close(out.pseudo_mask, torch.tensor([[[[expected]]]]))
    torch.testing.assert_close(out.dense_prompt, torch.full((1, 1, 2, 2), expected))
    with pytest.raises(ValueError, match="patch tokens"):
        mpg(cls, torch.zeros(1, 4, 1))
