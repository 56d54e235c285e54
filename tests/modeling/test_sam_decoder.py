"""④ The SAM decoder (rs2sam2.modeling.sam_decoder): post-encoding fusion (BC) and the dense positional
encoding."""

from __future__ import annotations

import torch

from rs2sam2.modeling.sam_decoder import PostEncodingFusion

from .conftest import _mha_like


# --------------------------------------------------------------- post-encoding fusion (BC)
def test_post_encoding_fusion_is_multiplicative_with_query_pe():
    torch.manual_seed(3)
    bc = PostEncodingFusion(8, 2)
    image, pos, text = torch.randn(2, 8, 3, 4), torch.randn(1, 8, 3, 4), torch.randn(2, 5, 8)
    ref = _mha_like(bc.attn)
    e = image.flatten(2).permute(2, 0, 1)  # (HW, B, C)
    q = e + pos.flatten(2).permute(2, 0, 1)
    expected = (
        (e * ref(q, text.transpose(0, 1), text.transpose(0, 1))[0]).permute(1, 2, 0).reshape(2, 8, 3, 4)
    )
    torch.testing.assert_close(bc(image, pos, text), expected, atol=1e-5, rtol=1e-5)


def test_dense_pe_equals_sam2_and_survives_bf16(tiny_model):
    dec = tiny_model.sam_decoder
    torch.testing.assert_close(dec.dense_pe(), dec.prompt_encoder.get_dense_pe(), atol=1e-6, rtol=1e-6)
    dec.to(torch.bfloat16)
    assert dec.dense_pe().dtype == torch.float32
