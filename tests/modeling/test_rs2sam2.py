"""The composed model (rs2sam2.modeling.rs2sam2): shapes, batching, gradients, freeze policy, parameter
counts of the official preset, bf16 weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rs2sam2 import RS2SAM2, RS2SAM2Config, RS2SAM2Output

from ..conftest import random_inputs


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


# ------------------------------------------------------------------------------------- gradients
def _no_grad_names(model: RS2SAM2) -> set[str]:
    """Trainable parameters that the official training never updates (SAM2 heads unused for one mask, the
    last fusion layer's text path, the mask token of the union encoder)."""
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
