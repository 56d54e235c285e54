"""RS2-SAM2 losses: hand-computed values on tiny tensors, batch semantics, gradient behaviour."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rs2sam2.losses import (
    LossConfig,
    RS2SAM2Loss,
    boundary_loss,
    build_loss,
    cross_entropy_loss,
    dice_loss,
    dice_loss_per_sample,
    mask_gradient,
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
