"""② CPU inference in bands of rows (rs2sam2.modeling.bands): equal to the one-piece block loop."""

from __future__ import annotations

import torch

from ..conftest import random_inputs


# ---------------------------------------------------------------- banded CPU inference
def test_chunked_inference_equals_the_one_piece_block_loop(tiny_model, tiny_config):
    """At inference the window attention and the MLP part run on groups of tokens (what keeps a 1024²
    image's 151 MB MLP activations from existing whole); the result equals the one-piece loop, and the
    chunked path really runs (several MLP calls per first-stage block)."""
    model = tiny_model.eval()
    enc = model.image_encoder
    inputs = random_inputs(tiny_config)
    calls, attn_calls, s0_calls = [], [], []
    hooks = [
        enc.trunk.blocks[0].mlp.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0])),
        # block 1 changes stage: pooled skip projection and q-pooled attention, banded too
        enc.trunk.blocks[1].attn.register_forward_hook(lambda m, a, o: attn_calls.append(tuple(o.shape))),
        model.sam_decoder.mask_decoder.conv_s0.register_forward_hook(
            lambda m, a, o: s0_calls.append(tuple(o.shape))
        ),
    ]
    with torch.inference_mode():
        enc.inference_chunk_tokens = 0
        whole = model(**inputs)
        one_piece = (list(calls), list(attn_calls), list(s0_calls))
        calls.clear(), attn_calls.clear(), s0_calls.clear()
        enc.inference_chunk_tokens = 500
        chunked = model(**inputs)
    for hook in hooks:
        hook.remove()
    side = tiny_config.image_size // 4  # first stage at S/4, batch 2
    windows = 2 * (side // 8) ** 2  # block 1: 8×8 windows, pooled to 4×4 inside the attention
    s0_channels = model.sam_decoder.mask_decoder.conv_s0.out_channels
    assert one_piece == ([2], [(windows, 4, 4, 64)], [(2, s0_channels, side, side)])
    assert sum(calls) == 2 * side * side and max(calls) <= 500
    # bands of one window row (8 input rows = 512 tokens per image, at most 500 asked: never less than one)
    assert attn_calls == [(2 * side // 8, 4, 4, 64)] * (side // 8)
    # SAM2's conv_s0 reads the first FPN level in bands of 500 // 64 = 7 rows: its 256-channel map never
    # exists whole
    assert [c[2] for c in s0_calls] == [7] * (side // 7) + [side % 7]
    for a, b in zip([whole.logits, *whole.fused_features], [chunked.logits, *chunked.fused_features]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # Training (autograd on) always runs in one piece: the in-place MLP update would break backward.
    enc.train()
    out = model(**inputs)
    out.logits.sum().backward()
    assert enc.fusion_layers[0].mlp_adapter.fc1.weight.grad.abs().sum() > 0


def test_band_size_counts_bytes_and_only_applies_at_cpu_inference(tiny_model):
    enc = tiny_model.image_encoder
    enc.inference_chunk_tokens = 2048
    f32, bf16, f16 = (torch.empty(1, dtype=d) for d in (torch.float32, torch.bfloat16, torch.float16))
    with torch.inference_mode():
        enc.eval()
        assert enc._chunk_tokens(f32) == 2048
        assert enc._chunk_tokens(bf16) == enc._chunk_tokens(f16) == 4096
        assert enc._chunk_tokens(torch.empty(1, device="meta")) == 0  # off the CPU: one piece
        enc.train()
        assert enc._chunk_tokens(f32) == 0
    enc.eval()
    assert enc._chunk_tokens(f32) == 0  # autograd on
    with torch.no_grad():
        assert enc._chunk_tokens(f32) == 2048


def test_banded_block_declines_what_windows_do_not_tile(tiny_model):
    """A block whose map the windows do not tile exactly (padded windows) or that attends globally is
    left to the one-piece path."""
    enc = tiny_model.image_encoder.eval()
    blocks, fusions = enc.trunk.blocks, enc.fusion_layers
    text = torch.randn(1, 3, 64)
    with torch.inference_mode():
        padded = torch.randn(1, 20, 20, blocks[0].dim)  # 20 is not a multiple of the 8-wide windows
        assert enc._block_in_bands(blocks[0], fusions[0], padded, text, True, None, 64) is None
        tiled = torch.randn(1, 16, 16, blocks[0].dim)
        assert enc._block_in_bands(blocks[0], fusions[0], tiled, text, True, None, 64) is not None
        g = next(i for i, b in enumerate(blocks) if b.window_size == 0)  # global attention
        x = torch.randn(1, 8, 8, blocks[g].dim)
        assert enc._block_in_bands(blocks[g], fusions[g], x, text, True, None, 64) is None
