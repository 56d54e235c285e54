"""① The union encoder (rs2sam2.modeling.union_encoder): text padding and joint reading of the text."""

from __future__ import annotations

import torch

from ..conftest import random_inputs


def test_text_padding_does_not_change_the_union_encoder(tiny_model, tiny_config):
    """Appending pad tokens (id 3, mask False) leaves every real token's output unchanged."""
    enc = tiny_model.union_encoder.eval()
    inputs = random_inputs(tiny_config, batch=1, length=6)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    padded_ids = torch.cat([ids, torch.full((1, 3), 3)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        a = enc(inputs["union_pixels"], ids, mask)
        b = enc(inputs["union_pixels"], padded_ids, padded_mask)
    torch.testing.assert_close(a.cls_token, b.cls_token, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.patch_tokens, b.patch_tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.text_tokens, b.text_tokens[:, :6], atol=1e-5, rtol=1e-5)


def test_union_encoder_reads_text_jointly(tiny_model, tiny_config):
    """The class token changes with the sentence (joint attention), the vision expert is separate."""
    enc = tiny_model.union_encoder.eval()
    inputs = random_inputs(tiny_config, batch=1, length=6)
    other = inputs["input_ids"].clone()
    other[0, 2] += 1
    with torch.no_grad():
        a = enc(inputs["union_pixels"], inputs["input_ids"], inputs["attention_mask"])
        b = enc(inputs["union_pixels"], other, inputs["attention_mask"])
    assert (a.cls_token - b.cls_token).abs().max() > 1e-4
    layer = enc.beit3.encoder.layers[0]
    assert layer.self_attn.q_proj.A is not layer.self_attn.q_proj.B
