"""RS2-SAM2 losses: hand-computed values on tiny tensors, batch semantics, gradient behaviour."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rs2sam2.evaluate import pseudo_mask_separation
from rs2sam2.training.losses import (
    LossConfig,
    RS2SAM2Loss,
    boundary_loss,
    build_loss,
    cross_entropy_loss,
    dice_loss,
    dice_loss_per_sample,
    grid_target,
    mask_gradient,
    pseudo_mask_loss,
)

X = [[2.0, -1.0], [0.5, 0.0]]
T = [[1, 1], [0, 0]]
W = 0.7


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _hand_ce(x, t, w=(0.9, 1.1)):
    num = den = 0.0
    for xr, tr in zip(x, t):
        for xv, tv in zip(xr, tr):
            p_fg = _sig(2 * xv - 1)  # softmax of (1-x, x) = sigmoid(x - (1-x))
            nll = -math.log(p_fg if tv == 1 else 1 - p_fg)
            num += w[tv] * nll
            den += w[tv]
    return num / den


def _hand_dice(x, t, eps=1e-6):
    p1 = [_sig(2 * v - 1) for row in x for v in row]
    t1 = [v for row in t for v in row]
    loss = 0.0
    for p, tt in ((p1, t1), ([1 - v for v in p1], [1 - v for v in t1])):
        inter = sum(a * b for a, b in zip(p, tt))
        loss += 1 - (2 * inter + eps) / (sum(p) + sum(tt) + eps)
    return loss


def _inputs(x=X, t=T, w=W):
    return torch.tensor([[x]]), torch.tensor([t]), torch.tensor([w])


def test_mask_gradient_hand_example():
    m = torch.tensor([[[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]])
    # dy (first row padded): row0 0 0 0 | row1 |r1-r0| = 0 1 0 | row2 |r2-r1| = 1 1 0
    # dx (first col padded): row0 0 1 0 | row1 0 0 1 | row2 0 0 0
    expected = torch.tensor([[[[0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]]])
    torch.testing.assert_close(mask_gradient(m), expected)


def test_components_hand_values_b1():
    x, t, w = _inputs()
    out = RS2SAM2Loss()(x, t, w)
    assert out.ce.item() == pytest.approx(_hand_ce(X, T), rel=1e-6)
    assert out.dice.item() == pytest.approx(_hand_dice(X, T), rel=1e-6)
    # hard mask (x > 0) = [[1,0],[1,0]] -> grad [[0,1],[0,1]]; GT [[1,1],[0,0]] -> grad [[0,0],[1,1]]
    # diff [[0,1],[-1,0]] -> W^2 * 2/4
    assert out.boundary.item() == pytest.approx(W**2 * 0.5, rel=1e-6)
    expected_total = 0.9 * _hand_ce(X, T) + 0.1 * _hand_dice(X, T) + 0.2 * W**2 * 0.5
    assert out.total.item() == pytest.approx(expected_total, rel=1e-6)
    assert set(out.as_dict()) == {"total", "ce", "dice", "boundary"}


def test_ce_equals_torch_weighted_cross_entropy_b1():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 5, 5, generator=g)
    t = (torch.rand(1, 5, 5, generator=g) > 0.6).long()
    ref = nn.CrossEntropyLoss(weight=torch.tensor([0.9, 1.1]))(torch.cat([1 - x, x], 1), t)
    torch.testing.assert_close(cross_entropy_loss(x, t), ref)
    torch.testing.assert_close(cross_entropy_loss(x, t, reduction="pooled"), ref)


def test_unweighted_ce_and_dice_eps():
    x, t, _ = _inputs()
    assert cross_entropy_loss(x, t, class_weights=None).item() == pytest.approx(
        _hand_ce(X, T, (1, 1)), rel=1e-6
    )
    # all-background target and very negative logits: both dice terms ~0 thanks to eps on the empty class
    xb = torch.full((1, 1, 2, 2), -50.0)
    tb = torch.zeros(1, 2, 2, dtype=torch.long)
    assert dice_loss(xb, tb).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_boundary_hand_value():
    # x = 0.5 everywhere -> soft mask sigmoid(2x-1) = 0.5 everywhere -> zero gradient map
    x = torch.full((1, 1, 2, 2), 0.5)
    t = torch.tensor([T])
    val = boundary_loss(x, t, torch.tensor([W]), mode="soft")
    assert val.item() == pytest.approx(W**2 * 2 / 4, rel=1e-6)  # GT grad has two ones


def _batch(b=3, s=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, s, s, generator=g)
    t = (torch.rand(b, s, s, generator=g) > torch.linspace(0.2, 0.8, b)[:, None, None]).long()
    w = torch.randn(b, generator=g)
    return x, t, w


@pytest.mark.parametrize("variant", ["official", "paper", "differentiable"])
def test_batch_equals_combination_of_per_sample_losses(variant):
    """CE and L_tbl: mean of per-sample values; Dice: sum of per-sample values."""
    loss = build_loss(variant)
    x, t, w = _batch()
    full = loss(x, t, w)
    parts = [loss(x[i : i + 1], t[i : i + 1], w[i : i + 1]) for i in range(3)]
    ce = torch.stack([p.ce for p in parts])
    dice = torch.stack([p.dice for p in parts])
    bnd = torch.stack([p.boundary for p in parts])
    torch.testing.assert_close(full.ce, ce.mean())
    torch.testing.assert_close(full.dice, dice.sum())
    torch.testing.assert_close(full.boundary, bnd.mean())
    cfg = loss.config
    torch.testing.assert_close(
        full.total,
        cfg.ce_weight * ce.mean() + cfg.dice_weight * dice.sum() + cfg.boundary_weight * bnd.mean(),
    )
    # text weight given as (B, 1) is the same as (B,)
    torch.testing.assert_close(loss(x, t, w[:, None]).total, full.total)


def test_batch_fix_differs_from_official_broadcast():
    x, t, w = _batch()
    ours = boundary_loss(x, t, w)
    # official: W of shape (B, H, W) times gradients of shape (B, 1, H, W) -> (B, B, H, W)
    pm = mask_gradient((torch.sigmoid(x) > 0.5).float())
    gm = mask_gradient(t[:, None].float())
    wmap = w[:, None, None].expand(-1, 6, 6)
    buggy = nn.functional.mse_loss(pm * wmap, gm * wmap)
    assert (pm * wmap).shape == (3, 3, 6, 6)
    assert not torch.isclose(ours, buggy)
    # and a per-pixel (B, H, W) weight map is applied per sample, like the scalar
    torch.testing.assert_close(boundary_loss(x, t, wmap), ours)


def test_ce_and_dice_reduction_options():
    x, t, _ = _batch()
    per = torch.stack([cross_entropy_loss(x[i : i + 1], t[i : i + 1]) for i in range(3)])
    wts = torch.tensor([0.9, 1.1])[t].flatten(1).sum(1)  # per-sample weight sums
    pooled = cross_entropy_loss(x, t, reduction="pooled")
    torch.testing.assert_close(pooled, (per * wts).sum() / wts.sum())
    ref = nn.CrossEntropyLoss(weight=torch.tensor([0.9, 1.1]))(torch.cat([1 - x, x], 1), t)
    torch.testing.assert_close(pooled, ref)
    torch.testing.assert_close(dice_loss(x, t, reduction="mean"), dice_loss_per_sample(x, t).mean())
    out = build_loss(dice_reduction="mean", ce_reduction="pooled")(x, t, torch.ones(3))
    torch.testing.assert_close(out.ce, pooled)


def test_official_boundary_sends_no_gradient_to_logits():
    x, t, w = _inputs()
    x.requires_grad_(True)
    w.requires_grad_(True)
    val = boundary_loss(x, t, w)
    gx, gw = torch.autograd.grad(val, [x, w], allow_unused=True)
    assert gx is None
    # L = W^2 * mean(diff^2) = W^2 / 2  ->  dL/dW = W
    assert gw.item() == pytest.approx(W, rel=1e-6)
    # so the total's gradient w.r.t. x is that of 0.9 CE + 0.1 Dice alone
    x2 = x.detach().clone().requires_grad_(True)
    RS2SAM2Loss()(x2, t, w.detach()).total.backward()
    x3 = x.detach().clone().requires_grad_(True)
    build_loss(boundary_weight=0.0)(x3, t, None).total.backward()
    torch.testing.assert_close(x2.grad, x3.grad)


def test_differentiable_boundary_sends_gradient_to_logits():
    x, t, w = _batch(b=2)
    x.requires_grad_(True)
    w.requires_grad_(True)
    val = boundary_loss(x, t, w, mode="soft")
    gx, gw = torch.autograd.grad(val, [x, w])
    assert gx.abs().sum() > 0 and gw.abs().sum() > 0
    out = build_loss("differentiable")(x, t, w)
    assert out.boundary.requires_grad


def test_config_variants_and_validation():
    assert LossConfig() == LossConfig.from_variant("official")
    paper = LossConfig.from_variant("paper")
    assert paper.ce_weight == 1.0 and paper.boundary == "hard" and paper.class_weights == (0.9, 1.1)
    assert LossConfig.from_variant("differentiable").boundary == "soft"
    assert LossConfig.from_variant("paper", boundary_weight=0.0).boundary_weight == 0.0
    x, t, w = _inputs()
    p = build_loss("paper")(x, t, w)
    torch.testing.assert_close(p.total, p.ce + 0.1 * p.dice + 0.2 * p.boundary)
    with pytest.raises(ValueError):
        LossConfig.from_variant("nope")
    with pytest.raises(ValueError):
        LossConfig(boundary="fuzzy")
    with pytest.raises(ValueError, match="text_weight"):
        RS2SAM2Loss()(x, t)
    with pytest.raises(ValueError, match="target"):
        RS2SAM2Loss()(x, t[:, :1], w)


# ------------------------------------------------------------------------- pseudo-mask supervision
PM_LOGITS = [[2.0, -1.0], [0.0, 1.0]]


def _pm_target() -> torch.Tensor:
    """A 4×4 target with one pixel in the top-left and one in the bottom-right 2×2 cell."""
    t = torch.zeros(1, 4, 4)
    t[0, 0, 0] = t[0, 3, 3] = 1
    return t


def _hand_pm(logits, grid_t, eps=1.0):
    cells = [(x, t) for xr, tr in zip(logits, grid_t) for x, t in zip(xr, tr)]
    bce = sum(-(t * math.log(_sig(x)) + (1 - t) * math.log(1 - _sig(x))) for x, t in cells) / len(cells)
    inter = sum(_sig(x) * t for x, t in cells)
    dice = (2 * inter + eps) / (sum(_sig(x) for x, _ in cells) + sum(t for _, t in cells) + eps)
    return bce + 1 - dice


def test_grid_target_max_and_area():
    t = _pm_target()
    assert grid_target(t, 2).tolist() == [[[[1.0, 0.0], [0.0, 1.0]]]]
    assert grid_target(t, 2, "area").tolist() == [[[[0.25, 0.0], [0.0, 0.25]]]]
    # 5 pixels on a 2-cell grid: adaptive pooling, cells [0, 3) and [2, 5) (they overlap in pixel 2)
    odd = torch.zeros(1, 5, 5)
    odd[0, 2, 2] = 1
    assert grid_target(odd, 2).tolist() == [[[[1.0, 1.0], [1.0, 1.0]]]]


def test_pseudo_mask_loss_hand_values():
    x = torch.tensor([[PM_LOGITS]])
    got = pseudo_mask_loss(x, _pm_target())
    assert float(got) == pytest.approx(_hand_pm(PM_LOGITS, [[1, 0], [0, 1]]), rel=1e-6)
    got_area = pseudo_mask_loss(x, _pm_target(), "area")
    assert float(got_area) == pytest.approx(_hand_pm(PM_LOGITS, [[0.25, 0], [0, 0.25]]), rel=1e-6)
    # a confident correct pseudo-mask costs almost nothing, its negation a lot
    good = torch.tensor([[[[20.0, -20.0], [-20.0, 20.0]]]])
    assert float(pseudo_mask_loss(good, _pm_target())) < 1e-6
    assert float(pseudo_mask_loss(-good, _pm_target())) > 10
    with pytest.raises(ValueError, match="square grid"):
        pseudo_mask_loss(torch.zeros(1, 1, 2, 3), _pm_target())


def test_pseudo_mask_separation_hand_values():
    p = torch.tensor([[[[0.9, 0.2], [0.4, 0.7]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    t = torch.cat([_pm_target(), torch.zeros(1, 4, 4)])
    on, off = pseudo_mask_separation(p, t)
    assert on[0].item() == pytest.approx(0.8) and off[0].item() == pytest.approx(0.3)
    assert math.isnan(on[1].item()) and off[1].item() == pytest.approx(0.5)  # no target cells


def test_pseudo_mask_weight_adds_to_the_official_objective():
    torch.manual_seed(0)
    logits, target, tw = torch.randn(2, 1, 4, 4), (torch.rand(2, 4, 4) > 0.6).long(), torch.rand(2)
    pm_logits = torch.randn(2, 1, 2, 2)
    official = build_loss("official")(logits, target, tw)
    off = build_loss("official", pseudo_mask_weight=0.0)(logits, target, tw, pm_logits)
    assert off.total.item() == official.total.item() and off.pseudo_mask is None  # weight 0 = official
    assert "pseudo_mask" not in off.as_dict()
    on = build_loss("official", pseudo_mask_weight=0.5)(logits, target, tw, pm_logits)
    expected = official.total + 0.5 * pseudo_mask_loss(pm_logits, target)
    assert on.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert on.as_dict()["pseudo_mask"] == pytest.approx(float(pseudo_mask_loss(pm_logits, target)))
    with pytest.raises(ValueError, match="pseudo_logits are required"):
        build_loss("official", pseudo_mask_weight=1.0)(logits, target, tw)
    with pytest.raises(ValueError, match="pseudo_mask_weight"):
        LossConfig(pseudo_mask_weight=-1.0)
    with pytest.raises(ValueError, match="pseudo_mask_target"):
        LossConfig(pseudo_mask_target="mean")


def test_pseudo_mask_loss_reaches_the_prompt_generator_and_the_union_encoder():
    from rs2sam2 import RS2SAM2, RS2SAM2Config

    d = RS2SAM2Config.from_preset("tiny").to_dict()
    d["image_size"], d["union_encoder"]["vocab_size"] = 64, 128
    torch.manual_seed(0)
    model = RS2SAM2(RS2SAM2Config.from_dict(d))
    model.apply_freeze_policy("full")
    inputs = dict(
        sam_pixels=torch.randn(2, 3, 64, 64),
        union_pixels=torch.randn(2, 3, 224, 224),
        input_ids=torch.randint(4, 120, (2, 6)),
        attention_mask=torch.ones(2, 6, dtype=torch.long),
    )
    out = model(**inputs)
    assert out.pseudo_logits.shape == (2, 1, 14, 14)
    assert torch.allclose(torch.sigmoid(out.pseudo_logits), out.pseudo_mask)
    target = torch.zeros(2, 64, 64, dtype=torch.long)
    target[:, 10:20, 30:40] = 1
    pseudo_mask_loss(out.pseudo_logits, target).backward()
    g = model.prompt_generator
    for p in [g.mask_product.weight, g.mask_linear.weight, *g.class_attn.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0
    beit = [p for p in model.union_encoder.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(beit) > 10  # the patch embedding, attention and FFN layers of BEiT-3 all get a signal
    # the decoder and the Hiera trunk are not on the pseudo-mask's path
    assert all(p.grad is None for p in model.sam_decoder.parameters())
    assert all(p.grad is None for p in model.image_encoder.parameters())


def test_forced_prompt_replaces_the_dense_prompt_of_the_chosen_samples_only():
    from rs2sam2 import RS2SAM2, RS2SAM2Config

    d = RS2SAM2Config.from_preset("tiny").to_dict()
    d["image_size"], d["union_encoder"]["vocab_size"] = 64, 128
    torch.manual_seed(0)
    model = RS2SAM2(RS2SAM2Config.from_dict(d)).eval()
    inputs = dict(
        sam_pixels=torch.randn(2, 3, 64, 64),
        union_pixels=torch.randn(2, 3, 224, 224),
        input_ids=torch.randint(4, 120, (2, 6)),
        attention_mask=torch.ones(2, 6, dtype=torch.long),
    )
    with torch.no_grad():
        plain = model(**inputs)
        none_forced = model(**inputs, forced_prompt=torch.full((2, 1, 14, 14), float("nan")))
        forced_map = torch.zeros(2, 1, 14, 14)
        forced_map[0, 0, 3:6, 3:6] = 1
        forced_map[1] = float("nan")
        forced = model(**inputs, forced_prompt=forced_map)
    assert torch.equal(none_forced.logits, plain.logits)
    assert torch.equal(forced.pseudo_mask, plain.pseudo_mask)  # the generator's own, for its loss
    assert torch.equal(forced.dense_prompt[0], model.prompt_generator.upsample(forced_map[:1])[0])
    assert torch.equal(forced.dense_prompt[1], plain.dense_prompt[1])
    assert not torch.allclose(forced.logits[0], plain.logits[0])
    assert torch.allclose(forced.logits[1], plain.logits[1], atol=1e-5)


def test_pseudo_mask_softmax_kind_hand_values():
    x = torch.tensor([[PM_LOGITS]])
    bce = _hand_bce()
    log_z = math.log(sum(math.exp(v) for row in PM_LOGITS for v in row))
    ce = -(0.5 * (2.0 - log_z) + 0.5 * (1.0 - log_z))
    got = pseudo_mask_loss(x, _pm_target(), kind="bce_softmax")
    assert float(got) == pytest.approx(bce + ce, rel=1e-6)
    # an empty target has no "where": only its BCE counts
    empty = torch.zeros(1, 4, 4)
    assert float(pseudo_mask_loss(x, empty, kind="bce_softmax")) == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy_with_logits(x, torch.zeros_like(x)))
    )
    # the softmax term's gradient stays large when every probability is near 0 (where Dice's fades)
    low = torch.full((1, 1, 2, 2), -8.0, requires_grad=True)
    pseudo_mask_loss(low, _pm_target(), kind="bce_softmax").backward()
    g_soft = low.grad.clone()
    low.grad = None
    pseudo_mask_loss(low, _pm_target(), kind="bce_dice").backward()
    g_dice = low.grad.clone()
    low.grad = None
    torch.nn.functional.binary_cross_entropy_with_logits(low, grid_target(_pm_target(), 2)).backward()
    extra_soft, extra_dice = g_soft - low.grad, g_dice - low.grad  # beyond the shared BCE term
    assert extra_soft[0, 0, 0, 0] == pytest.approx(0.25 - 0.5, abs=1e-3)  # softmax 1/4 minus target 1/2
    assert abs(extra_soft[0, 0, 0, 0]) > 100 * abs(extra_dice[0, 0, 0, 0])
    with pytest.raises(ValueError, match="pseudo_mask_kind"):
        LossConfig(pseudo_mask_kind="focal")


def _hand_bce():
    cells = [(x, t) for xr, tr in zip(PM_LOGITS, [[1, 0], [0, 1]]) for x, t in zip(xr, tr)]
    return sum(-(t * math.log(_sig(x)) + (1 - t) * math.log(1 - _sig(x))) for x, t in cells) / len(cells)
