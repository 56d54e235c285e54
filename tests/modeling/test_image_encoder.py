"""② The fused image encoder (rs2sam2.modeling.image_encoder): the fused block loop against SAM2's, the
parallel MLP adapter, the FPN against SAM2's neck, Hiera's position embedding computed by us, and the
model's wiring of the decoder's high-resolution reductions into the encoder."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from sam2.modeling.backbones.hieradet import Hiera

from rs2sam2 import RS2SAM2Config
from rs2sam2.modeling.image_encoder import hiera_pos_embed

from ..conftest import random_inputs


def _embeddings(preset: str, seed: int = 0) -> tuple[SimpleNamespace, tuple[int, int]]:
    """Random ``pos_embed`` / ``pos_embed_window`` of the shapes a preset's trunk has, and its token map."""
    config = RS2SAM2Config.from_preset(preset)
    h = config.hiera
    g = torch.Generator().manual_seed(seed)
    bkg, window = tuple(h.window_pos_embed_bkg_spatial_size), h.window_spec[0]
    trunk = SimpleNamespace(
        pos_embed=torch.randn(1, h.embed_dim, *bkg, generator=g),
        pos_embed_window=torch.randn(1, h.embed_dim, window, window, generator=g),
    )
    side = config.image_size // 4  # Hiera's patch embedding has stride 4
    return trunk, (side, side)


@pytest.mark.parametrize("preset", ["tiny", "official"])
def test_position_embedding_equals_sam2s(preset):
    trunk, hw = _embeddings(preset)
    ours = hiera_pos_embed(trunk, hw)
    assert ours.shape == (1, *hw, trunk.pos_embed.shape[1])
    assert torch.equal(ours, Hiera._get_pos_embed(trunk, hw))


def test_encoder_uses_its_own_position_embedding(tiny_model, tiny_config, monkeypatch):
    """The forward never calls SAM2's private ``_get_pos_embed``, and equals the trunk's own forward."""
    monkeypatch.setattr(Hiera, "_get_pos_embed", lambda *a: pytest.fail("called Hiera._get_pos_embed"))
    enc = tiny_model.image_encoder.eval()
    with torch.no_grad():
        for p in (enc.trunk.pos_embed, enc.trunk.pos_embed_window):
            p.normal_()
        for layer in enc.fusion_layers:  # adapters off: the fused loop is then Hiera's own
            for lin in [layer.cross_adapter.fc2, layer.mlp_adapter.fc2]:
                lin.weight.zero_()
                lin.bias.zero_()
        x = torch.randn(1, 3, tiny_config.image_size, tiny_config.image_size)
        ours = enc(x, torch.randn(1, 5, tiny_config.text_dim)).trunk_features
    monkeypatch.undo()
    with torch.no_grad():
        upstream = enc.trunk(x)
    for a, b in zip(ours, upstream):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_model_wires_the_decoders_high_res_reductions_into_the_encoder(tiny_model, tiny_config):
    """The model hands the mask decoder's conv_s0/conv_s1 to the image encoder; run stage by stage without
    them (the decoder then applies its own), the logits are the same."""
    model = tiny_model.eval()
    model.image_encoder.inference_chunk_tokens = 0  # one piece: the same ops in the same order
    inputs = random_inputs(tiny_config)
    with torch.no_grad():
        whole = model(**inputs).logits
        union = model.union_encoder(inputs["union_pixels"], inputs["input_ids"], inputs["attention_mask"])
        prompts = model.prompt_generator(union.cls_token, union.patch_tokens)
        text = model.text_proj(union.text_tokens)
        padding = ~inputs["attention_mask"].bool()
        image = model.image_encoder(inputs["sam_pixels"], text, text_padding=padding)
        assert image.high_res_features is None and all(f is not None for f in image.fpn_features)
        decoded = model.sam_decoder(
            image.fpn_features, text, prompts.sparse_prompt, prompts.dense_prompt, text_padding=padding
        )
    size = inputs["sam_pixels"].shape[-2:]
    staged = F.interpolate(decoded.low_res_logits.float(), size, mode="bilinear", align_corners=False)
    assert torch.equal(whole, staged)


# ------------------------------------------------------------- fused blocks and FPN
def test_fused_block_loop_equals_sam2_blocks_when_adapters_are_zero(tiny_model, tiny_config):
    """With the adapters' output layers zeroed, our block loop reproduces sam2's own Hiera exactly
    (windowing, q-pooling, stage changes)."""
    enc = tiny_model.image_encoder.eval()
    with torch.no_grad():
        for layer in enc.fusion_layers:
            for lin in [layer.cross_adapter.fc2, layer.mlp_adapter.fc2]:
                lin.weight.zero_()
                lin.bias.zero_()
        x = torch.randn(1, 3, tiny_config.image_size, tiny_config.image_size)
        text = torch.randn(1, 5, tiny_config.text_dim)
        ours = enc(x, text).trunk_features
        upstream = enc.trunk(x)
    for a, b in zip(ours, upstream):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fused_block_adds_the_parallel_mlp_adapter(tiny_model, tiny_config):
    """x_out = x_mid + mlp(norm2(x_mid)) + 0.5·adapter(norm2(x_mid)): only the adapter term moves with
    the adapter's weights, by exactly 0.5 × its change."""
    enc = tiny_model.image_encoder.eval()
    block, layer = enc.trunk.blocks[0], enc.fusion_layers[0]
    x = torch.randn(1, 16, 16, block.dim)
    text = torch.randn(1, 3, tiny_config.text_dim)
    with torch.no_grad():
        base, _, _ = enc._block(block, layer, x, text, update_text=True, need_weights=False)
        layer.mlp_adapter.fc2.bias.add_(1.0)  # adapter output grows by exactly 1 everywhere
        moved, _, _ = enc._block(block, layer, x, text, update_text=True, need_weights=False)
    torch.testing.assert_close(moved - base, torch.full_like(base, 0.5), atol=1e-5, rtol=1e-5)


def test_fpn_without_position_encodings_equals_sam2_neck(tiny_model, tiny_config):
    enc = tiny_model.image_encoder.eval()
    features = [
        torch.randn(1, dim, tiny_config.image_size // s, tiny_config.image_size // s)
        for dim, s in zip(tiny_config.hiera.stage_dims, (4, 8, 16, 32))
    ]
    with torch.no_grad():
        ours = enc.fpn(features)
        upstream, _ = enc.neck(features)
    assert len(ours) == len(upstream) == 4
    for a, b in zip(ours, upstream):
        assert torch.equal(a, b)
