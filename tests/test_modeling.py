"""Model core: shapes, gradients, freeze policy, parameter counts, and hand-checked fusion/MPG math."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rs2sam2 import RS2SAM2, RS2SAM2Config, RS2SAM2Output
from rs2sam2.config import FusionConfig
from rs2sam2.modeling.attention import PackedCrossAttention
from rs2sam2.modeling.fusion import CrossAdapter, FusionLayer
from rs2sam2.modeling.prompt_generator import MaskPromptGenerator
from rs2sam2.modeling.sam_decoder import PostEncodingFusion

from .conftest import random_inputs


def _mha_like(ours: PackedCrossAttention) -> nn.MultiheadAttention:
    """An nn.MultiheadAttention (sequence-first, as the official code) holding the same weights."""
    ref = nn.MultiheadAttention(ours.dim, ours.num_heads)
    ref.load_state_dict(ours.state_dict())
    return ref


# ----------------------------------------------------------------------------------------- shapes
def test_forward_shapes_and_finite(tiny_model, tiny_config):
    inputs = random_inputs(tiny_config, batch=2, length=7)
    out = tiny_model(**inputs, output_attentions=True)
    assert isinstance(out, RS2SAM2Output)
    s = tiny_config.image_size
    assert out.logits.shape == (2, 1, s, s)
    assert out.low_res_logits.shape == (2, 1, s // 4, s // 4)
    assert out.pseudo_mask.shape == (2, 1, 14, 14)
    assert out.dense_prompt.shape == (2, 1, s // 4, s // 4)
    dims = tiny_config.hiera.stage_dims
    assert [tuple(f.shape) for f in out.fused_features] == [
        (2, dims[i], s // 4 // 2**i, s // 4 // 2**i) for i in range(4)
    ]
    assert [tuple(a.shape) for a in out.fusion_attentions] == [
        (2, s // 4 // 2**i, s // 4 // 2**i, 7) for i in range(4)
    ]
    assert out.text_weight.shape == (2, 1)
    assert out.iou_scores.shape == (2, 1) and out.object_score_logits.shape == (2, 1)
    for t in [out.logits, out.low_res_logits, out.text_weight, *out.fused_features]:
        assert torch.isfinite(t).all()
    assert ((out.pseudo_mask >= 0) & (out.pseudo_mask <= 1)).all()
    # Attention rows of real (unpadded) tokens sum to one.
    torch.testing.assert_close(out.fusion_attentions[0].sum(-1), torch.ones(2, s // 4, s // 4))
    # logits are the bilinear upsampling of the low-resolution logits
    up = F.interpolate(out.low_res_logits, (s, s), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.logits, up)


def test_batch_equals_single_samples(tiny_model, tiny_config):
    """Batching is exact: each row equals the same sample run alone (no cross-sample leakage)."""
    tiny_model.eval()
    inputs = random_inputs(tiny_config, batch=2, length=7)
    with torch.no_grad():
        both = tiny_model(**inputs)
        first = tiny_model(**{k: v[:1] for k, v in inputs.items()})
    torch.testing.assert_close(both.logits[:1], first.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(both.pseudo_mask[:1], first.pseudo_mask, atol=1e-5, rtol=1e-5)


def test_padded_sentence_in_a_batch_equals_it_alone_unpadded(tiny_model, tiny_config):
    """A batch of sentences of mixed lengths: the padded one (its last two tokens are pads) gets exactly
    what it gets alone without the pads — the fusion layers do not attend to pad tokens."""
    tiny_model.eval()
    inputs = random_inputs(tiny_config, batch=2, length=7)
    assert not inputs["attention_mask"][1].all()
    alone = {k: v[1:] for k, v in inputs.items()}
    alone["input_ids"], alone["attention_mask"] = alone["input_ids"][:, :5], alone["attention_mask"][:, :5]
    with torch.no_grad():
        both = tiny_model(**inputs)
        second = tiny_model(**alone)
        # Without the mask (what the official code computes if it ever padded) the pads change the result.
        enc = tiny_model.image_encoder
        unmasked = enc(
            inputs["sam_pixels"][1:],
            tiny_model.text_proj(
                tiny_model.union_encoder(
                    inputs["union_pixels"][1:], inputs["input_ids"][1:], inputs["attention_mask"][1:]
                ).text_tokens
            ),
        )
    torch.testing.assert_close(both.logits[1:], second.logits, atol=1e-5, rtol=1e-5)
    for a, b in zip(both.fused_features, second.fused_features):
        torch.testing.assert_close(a[1:], b, atol=1e-5, rtol=1e-5)
    assert (unmasked.trunk_features[0] - second.fused_features[0]).abs().max() > 1e-4


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


# ------------------------------------------------------------------------------------- gradients
def _no_grad_names(model: RS2SAM2) -> set[str]:
    """Trainable parameters that the official training never updates (spec §3, §4.1, §5)."""
    last = len(model.image_encoder.fusion_layers) - 1
    names = {"union_encoder.beit3.vision_embed.mask_token"}
    for n, _ in model.named_parameters():
        if n.startswith(
            (
                f"image_encoder.fusion_layers.{last}.cross_adapter.text_attn.",
                f"image_encoder.fusion_layers.{last}.cross_adapter.text_out.",
                "sam_decoder.mask_decoder.iou_prediction_head.",
                "sam_decoder.mask_decoder.pred_obj_score_head.",
                "sam_decoder.mask_decoder.output_hypernetworks_mlps.1.",
                "sam_decoder.mask_decoder.output_hypernetworks_mlps.2.",
                "sam_decoder.mask_decoder.output_hypernetworks_mlps.3.",
                "sam_decoder.prompt_encoder.point_embeddings.",
                "sam_decoder.prompt_encoder.not_a_point_embed.",
                "sam_decoder.prompt_encoder.no_mask_embed.",
            )
        ):
            names.add(n)
    return names


def test_backward_reaches_exactly_the_officially_trained_parameters(tiny_model, tiny_config):
    out = tiny_model(**random_inputs(tiny_config, batch=2, length=7))
    target = (torch.rand_like(out.logits) > 0.5).float()
    # Shape of the official objective: a mask term on the logits plus a term on the text weight.
    loss = F.binary_cross_entropy_with_logits(2 * out.logits - 1, target) + out.text_weight.pow(2).mean()
    loss.backward()
    got = {n for n, p in tiny_model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in tiny_model.named_parameters() if not p.requires_grad}
    assert got == trainable - _no_grad_names(tiny_model)
    assert all(p.grad is None for n, p in tiny_model.named_parameters() if n in frozen)


def test_freeze_policy(tiny_model):
    frozen = {n for n, p in tiny_model.named_parameters() if not p.requires_grad}
    assert frozen, "the trunk and neck must be frozen"
    assert all(n.startswith(("image_encoder.trunk.", "image_encoder.neck.")) for n in frozen)
    assert all(
        not p.requires_grad
        for n, p in tiny_model.named_parameters()
        if n.startswith(("image_encoder.trunk.", "image_encoder.neck."))
    )
    assert all(p.requires_grad for p in tiny_model.image_encoder.fusion_layers.parameters())
    # A forward hook cannot re-enable frozen weights: the policy is re-applied on demand.
    for p in tiny_model.parameters():
        p.requires_grad_(True)
    tiny_model.apply_freeze_policy()
    assert {n for n, p in tiny_model.named_parameters() if not p.requires_grad} == frozen


def test_parameter_groups(tiny_model):
    groups = tiny_model.parameter_groups(base_lr=5e-5, fusion_lr=1e-4)
    assert [g["lr"] for g in groups] == [1e-4, 5e-5]
    high = set(tiny_model.high_lr_parameter_names())
    assert any(n.startswith("image_encoder.fusion_layers.") for n in high)
    assert any(n.startswith("sam_decoder.text_fusion.") for n in high)
    assert {n for n in high if n.startswith("prompt_generator.")} == {
        n
        for n, _ in tiny_model.named_parameters()
        if n.startswith("prompt_generator.") and not n.startswith("prompt_generator.token_mlp.")
    }
    n_trainable = sum(p.numel() for p in tiny_model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups for p in g["params"]) == n_trainable


# ---------------------------------------------------------------------------- official preset
OFFICIAL_TOTAL = 934_813_404
OFFICIAL_UNUSED = 7_505_265 + 262_400  # SAM2 memory modules + meo_linear, dropped here


def _count(model: nn.Module, *prefixes: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))


def test_official_preset_parameter_counts():
    with torch.device("meta"):
        model = RS2SAM2(RS2SAM2Config.from_preset("official"))
    total = sum(p.numel() for p in model.parameters())
    print(
        f"official preset: {total:,} parameters "
        f"(official {OFFICIAL_TOTAL:,} minus unused {OFFICIAL_UNUSED:,})"
    )
    assert total == OFFICIAL_TOTAL - OFFICIAL_UNUSED == 927_045_739
    assert _count(model, "union_encoder.") == 672_702_464
    assert _count(model, "image_encoder.fusion_layers.") == 30_331_560
    assert _count(model, "sam_decoder.text_fusion.") == 263_168
    assert (
        _count(
            model,
            "prompt_generator.class_attn.",
            "prompt_generator.mask_linear.",
            "prompt_generator.mask_product.",
        )
        == 5_249_025
    )
    assert _count(model, "prompt_generator.token_mlp.") == 1_312_000
    assert _count(model, "text_proj.") == 262_400 and _count(model, "text_weight_head.") == 257
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 212_703_280
    # Official requires_grad count 722,110,124 minus the dropped (trainable-flagged) unused groups.
    assert total - frozen == 722_110_124 - OFFICIAL_UNUSED
    # 35,843,753 parameters in the high learning-rate group (BL + BC + MPG), as the official split.
    high = set(model.high_lr_parameter_names())
    assert sum(p.numel() for n, p in model.named_parameters() if n in high) == 35_843_753
    # Parameters that really learn: official 713,249,110 (the unused groups never did).
    no_grad = _no_grad_names(model)
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n not in no_grad) == (
        713_249_110
    )
    assert len(model.state_dict()) == 2853 - 157 - 2


# ---------------------------------------------------------------- hand-checked BHFM layer (BL)
def _official_cross_adapter(ad: CrossAdapter, x: torch.Tensor, text: torch.Tensor, alpha: float):
    """Spec §4.1 pseudo-code, sequence-first with nn.MultiheadAttention, as the official code."""
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


def test_fusion_layer_widths_follow_the_ratio():
    layer = FusionLayer(dim=576, text_dim=256, cfg=FusionConfig())
    assert layer.cross_adapter.fc1.out_features == 144
    assert layer.cross_adapter.vision_attn.num_heads == 4
    assert layer.mlp_adapter.fc1.out_features == 144


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


# -------------------------------------------------------------------------------- config
def test_config_json_round_trip(tmp_path):
    for name in ["official", "tiny"]:
        cfg = RS2SAM2Config.from_preset(name)
        cfg.to_json(tmp_path / "c.json")
        assert RS2SAM2Config.from_json(tmp_path / "c.json") == cfg
    with pytest.raises(KeyError, match="unknown preset"):
        RS2SAM2Config.from_preset("huge")
    with pytest.raises(ValueError, match="unknown HieraConfig fields"):
        RS2SAM2Config.from_dict({"hiera": {"depth": 3}})
    with pytest.raises(ValueError, match="text_dim"):
        RS2SAM2Config.from_dict({"text_dim": 128})
    official = RS2SAM2Config.from_preset("official")
    assert official.fusion.ratio == 0.25 and official.fusion.num_heads == 4
    assert official.fusion.text_weight == 0.2 and official.fusion.adapter_scale == 0.5
    assert official.mask_threshold == 0.5 and official.mask_input_size == 256
    assert official.union_encoder.grid_size == 14 and official.union_encoder.vocab_size == 64010


def test_dense_pe_equals_sam2_and_survives_bf16(tiny_model):
    dec = tiny_model.sam_decoder
    torch.testing.assert_close(dec.dense_pe(), dec.prompt_encoder.get_dense_pe(), atol=1e-6, rtol=1e-6)
    dec.to(torch.bfloat16)
    assert dec.dense_pe().dtype == torch.float32


def test_bf16_weights_run_and_stay_close_to_fp32(tiny_model, tiny_config):
    tiny_model.eval()
    inputs = random_inputs(tiny_config, batch=1, length=6)
    with torch.inference_mode():
        ref = tiny_model(**inputs).logits
        tiny_model.to(torch.bfloat16)
        half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}
        low = tiny_model(**half).logits.float()
    assert torch.isfinite(low).all()
    # random weights: a loose bound on the logits; agreement of the thresholded masks
    assert (low - ref).abs().max() < 0.25 * ref.abs().max() + 0.05
    agree = ((low > 0.5) == (ref > 0.5)).float().mean()
    assert agree > 0.97
