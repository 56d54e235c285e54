"""Training losses of RS2-SAM2: the paper's objective (cross entropy, Dice and the text-guided boundary
loss), as the official code computes it where the two differ.

The official objective (``RS2-SAM2:loss/loss.py``) on the 1024×1024 upsampled decoder logits ``x``::

    out   = cat([1 - x, x], dim=1)                    # 2-class pseudo-logits; p_fg = sigmoid(2x - 1)
    L     = 0.9 * CE + 0.1 * Dice + 0.2 * L_tbl

* ``CE``: cross entropy on ``out`` with class weights (0.9, 1.1), weighted mean Σ w_y·nll / Σ w_y.
* ``Dice``: fastai-style, softmax over the 2 channels, one-hot target, per (sample, class)
  ``dice = (2·Σp·t + eps) / (Σp + Σt + eps)``, eps = 1e-6, loss = Σ over samples and both classes of
  ``1 - dice``.
* ``L_tbl`` (text-guided boundary loss): ``mean((W·∇M - W·∇GT)²)`` with ``M = (sigmoid(x) > 0.5)`` (hard,
  hence no gradient to ``x``; only the text weight ``W`` is trained by it) and ``∇`` the absolute forward
  differences along H and along W, each zero-padded at the first row / column, summed. Note the official
  boundary mask thresholds at logit 0 while the predicted mask (argmax of ``out``) is ``x > 0.5``; kept.

Batch semantics (the official code only ever ran with one sample per GPU). For B > 1 this module computes:

* CE: the class-weighted mean of each sample, then the mean over samples (``ce_reduction="per_sample"``,
  default; = what 8 GPUs × batch 1 with DDP gradient averaging optimise). ``"pooled"`` gives
  ``nn.CrossEntropyLoss(weight)`` over the whole batch instead (Σ over all pixels of w·nll / Σ w).
* Dice: the sum over samples of the per-sample losses (``dice_reduction="sum"``, the official DiceLoss
  reduction) or their mean (``"mean"``).
* L_tbl: the mean over all pixels of all samples = the mean of the per-sample values. ``W`` multiplies its
  own sample only — the official code multiplies a (B, H, W) weight by a (B, 1, H, W) gradient, which
  broadcasts to (B, B, H, W) and mixes samples for B > 1; that bug is fixed here. At B = 1 every value is
  identical to the official one.

Variants (:class:`LossConfig`): ``official`` (above), ``paper`` (λ_ce = 1 as written in the paper; all else
official) and ``differentiable`` (official weights, but the boundary loss uses the soft mask
``sigmoid(2x - 1)`` — the 2-class softmax foreground probability — so it also sends gradient to ``x``).

Pseudo-mask supervision (``pseudo_mask_weight``, **not in the paper or the official code**; 0 = off, the
official objective exactly): a direct loss on the mask prompt generator's 14×14 pseudo-mask against the
target reduced to that grid (:func:`grid_target`: a cell is foreground when any target pixel falls in it),
``BCE + Dice`` on the pre-sigmoid logits (:func:`pseudo_mask_loss`). With a pretrained BEiT-3 the generator
learns a usable prompt from the final loss alone; trained from random weights it does not (its pseudo-mask
ends up as high on the background as on the target), and this term gives it the signal directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..processing import GridReduction, grid_target

BoundaryMode = Literal["hard", "soft"]
CEReduction = Literal["per_sample", "pooled"]
DiceReduction = Literal["sum", "mean"]
PseudoMaskKind = Literal["bce_dice", "bce_softmax"]


@dataclass
class LossConfig:
    """Weights and variants of the RS2-SAM2 objective. Defaults = the official code.

    Attributes:
        ce_weight: λ_ce (official 0.9 = ``1 - 0.1``; paper 1.0).
        dice_weight: λ_dice (0.1).
        boundary_weight: λ_tbl (0.2); 0 disables the boundary term.
        class_weights: CE weights of (background, foreground), official (0.9, 1.1); ``None`` = unweighted.
        boundary: ``"hard"`` (official: threshold sigmoid(x) > 0.5, no gradient to x) or ``"soft"``
            (differentiable: mask = sigmoid(2x - 1)).
        threshold: probability threshold of the hard boundary mask (official 0.5, i.e. logit x > 0).
        dice_eps: smoothing of the Dice ratio (1e-6).
        ce_reduction: batch reduction of CE, ``"per_sample"`` or ``"pooled"`` (see module docstring).
        dice_reduction: batch reduction of Dice, ``"sum"`` (official) or ``"mean"``.
        pseudo_mask_weight: λ_pm of the pseudo-mask loss (:func:`pseudo_mask_loss`); 0 (official) = off.
            A deviation from the paper, for training from random initialisation.
        pseudo_mask_target: how the target becomes a grid target: ``"max"`` (a cell is 1 when any target
            pixel falls in it) or ``"area"`` (the fraction of the cell the target covers, a soft target).
        pseudo_mask_kind: ``"bce_dice"`` (BCE + Dice) or ``"bce_softmax"`` (BCE + a cross entropy of the
            softmax over the grid cells: "which cells hold the object"); see :func:`pseudo_mask_loss`.
    """

    ce_weight: float = 0.9
    dice_weight: float = 0.1
    boundary_weight: float = 0.2
    class_weights: tuple[float, float] | None = (0.9, 1.1)
    boundary: BoundaryMode = "hard"
    threshold: float = 0.5
    dice_eps: float = 1e-6
    ce_reduction: CEReduction = "per_sample"
    dice_reduction: DiceReduction = "sum"
    pseudo_mask_weight: float = 0.0
    pseudo_mask_target: GridReduction = "max"
    pseudo_mask_kind: PseudoMaskKind = "bce_dice"

    def __post_init__(self) -> None:
        if self.boundary not in ("hard", "soft"):
            raise ValueError(f"boundary must be 'hard' or 'soft', got {self.boundary!r}")
        if self.ce_reduction not in ("per_sample", "pooled"):
            raise ValueError(f"ce_reduction must be 'per_sample' or 'pooled', got {self.ce_reduction!r}")
        if self.dice_reduction not in ("sum", "mean"):
            raise ValueError(f"dice_reduction must be 'sum' or 'mean', got {self.dice_reduction!r}")
        if self.pseudo_mask_target not in ("max", "area"):
            raise ValueError(f"pseudo_mask_target must be 'max' or 'area', got {self.pseudo_mask_target!r}")
        if self.pseudo_mask_kind not in ("bce_dice", "bce_softmax"):
            raise ValueError(
                f"pseudo_mask_kind must be 'bce_dice' or 'bce_softmax', got {self.pseudo_mask_kind!r}"
            )
        if not self.pseudo_mask_weight >= 0:
            raise ValueError(f"pseudo_mask_weight must be >= 0, got {self.pseudo_mask_weight!r}")
        if self.class_weights is not None:
            if len(self.class_weights) != 2:
                raise ValueError("class_weights must have two entries (background, foreground)")
            self.class_weights = (float(self.class_weights[0]), float(self.class_weights[1]))

    @classmethod
    def from_variant(cls, name: str, **overrides) -> LossConfig:
        """``"official"``, ``"paper"`` or ``"differentiable"`` (see :data:`LOSS_VARIANTS`), then overrides."""
        if name not in LOSS_VARIANTS:
            raise ValueError(f"unknown loss variant {name!r}; choose from {sorted(LOSS_VARIANTS)}")
        return dataclasses.replace(cls(**LOSS_VARIANTS[name]), **overrides)


LOSS_VARIANTS: dict[str, dict] = {
    "official": {},
    "paper": {"ce_weight": 1.0},
    "differentiable": {"boundary": "soft"},
}


@dataclass
class LossOutput:
    """Scalar loss tensors: ``total = ce_weight·ce + dice_weight·dice + boundary_weight·boundary
    + pseudo_mask_weight·pseudo_mask`` (``pseudo_mask`` is 0 when that weight is 0)."""

    total: Tensor
    ce: Tensor
    dice: Tensor
    boundary: Tensor
    pseudo_mask: Tensor | None = None

    def as_dict(self) -> dict[str, float]:
        """Detached Python floats, for logging."""
        names = ("total", "ce", "dice", "boundary", "pseudo_mask")
        return {k: float(getattr(self, k).detach()) for k in names if getattr(self, k) is not None}


def _as_bchw(logits: Tensor) -> Tensor:
    if logits.dim() == 3:
        logits = logits.unsqueeze(1)
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be (B, 1, H, W) or (B, H, W), got {tuple(logits.shape)}")
    return logits.float()


def _as_target(target: Tensor, logits: Tensor) -> Tensor:
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    b, _, h, w = logits.shape
    if tuple(target.shape) != (b, h, w):
        raise ValueError(f"target must be (B, H, W) = {(b, h, w)}, got {tuple(target.shape)}")
    return target.long()


def _as_text_weight(text_weight: Tensor, logits: Tensor) -> Tensor:
    """(B,), (B, 1), (B, 1, 1, 1): one scalar per sample -> (B, 1, 1, 1); (B, H, W) -> (B, 1, H, W)."""
    b, _, h, w = logits.shape
    tw = text_weight.float()
    if tw.numel() == b:
        return tw.reshape(b, 1, 1, 1)
    if tuple(tw.shape) in ((b, h, w), (b, 1, h, w)):
        return tw.reshape(b, 1, h, w)
    raise ValueError(f"text_weight must be (B,) / (B, 1) or (B, H, W) with B={b}, got {tuple(tw.shape)}")


def cross_entropy_loss(
    logits: Tensor,
    target: Tensor,
    class_weights: tuple[float, float] | None = (0.9, 1.1),
    reduction: CEReduction = "per_sample",
) -> Tensor:
    """Class-weighted CE on ``cat([1-x, x])``.

    Args:
        logits: x, (B, 1, H, W).
        target: (B, H, W) in {0, 1}.
        class_weights: (w_bg, w_fg) or ``None``.
        reduction: ``"per_sample"``: mean over samples of Σ w_y·nll / Σ w_y per sample; ``"pooled"``: the same
            ratio over all pixels of the batch (``nn.CrossEntropyLoss(weight)``). Equal for B = 1.

    Returns:
        scalar tensor.
    """
    x = _as_bchw(logits)
    t = _as_target(target, x)
    out = torch.cat([1 - x, x], dim=1)
    if class_weights is None:
        w = torch.ones(2, dtype=x.dtype, device=x.device)
    else:
        w = torch.tensor(class_weights, dtype=x.dtype, device=x.device)
    weighted_nll = F.cross_entropy(out, t, weight=w, reduction="none")  # (B, H, W) = w_y * nll
    pixel_w = w[t]
    if reduction == "pooled":
        return weighted_nll.sum() / pixel_w.sum()
    if reduction == "per_sample":
        return (weighted_nll.flatten(1).sum(1) / pixel_w.flatten(1).sum(1)).mean()
    raise ValueError(f"unknown CE reduction {reduction!r}")


def dice_loss_per_sample(logits: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """fastai-style Dice on ``softmax(cat([1-x, x]))`` vs the one-hot target, summed over both classes.

    Returns:
        (B,) tensor: Σ_c (1 - (2·Σp_c·t_c + eps) / (Σp_c + Σt_c + eps)) for each sample, in [0, 2].
    """
    x = _as_bchw(logits)
    t = _as_target(target, x)
    prob = torch.softmax(torch.cat([1 - x, x], dim=1), dim=1)  # (B, 2, H, W)
    onehot = torch.stack([(t == c) for c in range(2)], dim=1).to(prob.dtype)
    inter = (prob * onehot).sum(dim=(2, 3))
    union = (prob + onehot).sum(dim=(2, 3))
    dice = (2.0 * inter + eps) / (union + eps)
    return (1.0 - dice).sum(dim=1)


def dice_loss(logits: Tensor, target: Tensor, eps: float = 1e-6, reduction: DiceReduction = "sum") -> Tensor:
    """Scalar Dice loss: ``"sum"`` (official) or ``"mean"`` over samples of :func:`dice_loss_per_sample`."""
    per_sample = dice_loss_per_sample(logits, target, eps)
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"unknown Dice reduction {reduction!r}")


def mask_gradient(mask: Tensor) -> Tensor:
    """Boundary map of a (B, 1, H, W) mask: ``pad_top(|M[i+1]-M[i]|) + pad_left(|M[:, j+1]-M[:, j]|)``.

    Forward differences along H and along W, each zero-padded at the first row / first column so the result
    keeps the (B, 1, H, W) shape; the two absolute differences are summed (values in [0, 2] for binary masks).
    """
    dy = F.pad(torch.abs(mask[:, :, 1:, :] - mask[:, :, :-1, :]), (0, 0, 1, 0))
    dx = F.pad(torch.abs(mask[:, :, :, 1:] - mask[:, :, :, :-1]), (1, 0, 0, 0))
    return dy + dx


def boundary_loss(
    logits: Tensor,
    target: Tensor,
    text_weight: Tensor,
    mode: BoundaryMode = "hard",
    threshold: float = 0.5,
) -> Tensor:
    """Text-guided boundary loss ``mean((W·∇M - W·∇GT)²)`` over all pixels of all samples.

    Args:
        logits: x, (B, 1, H, W).
        target: (B, H, W) in {0, 1}.
        text_weight: W, one scalar per sample ((B,) or (B, 1)) or per pixel ((B, H, W)); each sample's
            weight multiplies only that sample's boundary maps.
        mode: ``"hard"``: M = (sigmoid(x) > threshold) (official; no gradient to x);
            ``"soft"``: M = sigmoid(2x - 1) (differentiable).
        threshold: probability threshold of the hard mask.

    Returns:
        scalar tensor (= the mean of the per-sample values, all samples having H·W pixels).
    """
    x = _as_bchw(logits)
    gt = _as_target(target, x).unsqueeze(1).to(x.dtype)
    w = _as_text_weight(text_weight, x)
    if mode == "hard":
        pred = (torch.sigmoid(x) > threshold).to(x.dtype)
    elif mode == "soft":
        pred = torch.sigmoid(2 * x - 1)
    else:
        raise ValueError(f"unknown boundary mode {mode!r}")
    return F.mse_loss(w * mask_gradient(pred), w * mask_gradient(gt))


def pseudo_mask_loss(
    pseudo_logits: Tensor,
    target: Tensor,
    reduction: GridReduction = "max",
    eps: float = 1.0,
    kind: PseudoMaskKind = "bce_dice",
) -> Tensor:
    """Loss of the pseudo-mask against the target on its grid: ``mean BCE`` plus, by ``kind``,
    ``mean (1 - Dice)`` (``"bce_dice"``) or the grid-softmax cross entropy (``"bce_softmax"``).

    Args:
        pseudo_logits: (B, 1, g, g) the mask prompt generator's logits (before its sigmoid).
        target: (B, H, W) in {0, 1}, reduced to the g×g grid by :func:`grid_target`.
        reduction: ``"max"`` or ``"area"`` (see :func:`grid_target`).
        eps: Dice smoothing (1: an empty target with an empty prediction costs 0, not 1).
        kind: ``"bce_dice"`` or ``"bce_softmax"``.

    ``BCE`` is the mean over all cells of all samples. The foreground-only soft Dice
    ``(2·Σp·t + eps) / (Σp + Σt + eps)`` is per sample, averaged. The grid-softmax cross entropy
    ``-Σ_cells (t / Σt) · log softmax(x)`` (per sample with a non-empty target, averaged) asks only *where*
    the object is: its gradient ``softmax(x) - t / Σt`` does not fade when every probability is near 0, as
    Dice's does once BCE has pushed the whole map towards the background (one or two target cells in 196).
    """
    x = _as_bchw(pseudo_logits)
    g = x.shape[-1]
    if x.shape[-2] != g:
        raise ValueError(f"pseudo_logits must be on a square grid, got {tuple(x.shape)}")
    t = grid_target(target, g, reduction).to(x.dtype)
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"target batch {t.shape[0]} != pseudo_logits batch {x.shape[0]}")
    bce = F.binary_cross_entropy_with_logits(x, t)
    if kind == "bce_softmax":
        flat_t = t.flatten(1)
        mass = flat_t.sum(1)
        has = mass > 0
        if not bool(has.any()):
            return bce
        log_p = torch.log_softmax(x.flatten(1), dim=1)
        ce = -(flat_t[has] / mass[has, None] * log_p[has]).sum(1)
        return bce + ce.mean()
    if kind != "bce_dice":
        raise ValueError(f"unknown pseudo-mask loss kind {kind!r}")
    p = torch.sigmoid(x)
    inter = (p * t).flatten(1).sum(1)
    dice = (2.0 * inter + eps) / (p.flatten(1).sum(1) + t.flatten(1).sum(1) + eps)
    return bce + (1.0 - dice).mean()


class RS2SAM2Loss(nn.Module):
    """The RS2-SAM2 training objective (see module docstring), configured by :class:`LossConfig`.

    ``forward(logits (B,1,H,W), target (B,H,W) in {0,1}, text_weight (B,) or (B,1),
    pseudo_logits (B,1,g,g)) -> LossOutput``; ``pseudo_logits`` is needed only when the pseudo-mask loss
    is on.
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        text_weight: Tensor | None = None,
        pseudo_logits: Tensor | None = None,
    ) -> LossOutput:
        cfg = self.config
        ce = cross_entropy_loss(logits, target, cfg.class_weights, cfg.ce_reduction)
        dice = dice_loss(logits, target, cfg.dice_eps, cfg.dice_reduction)
        if cfg.boundary_weight == 0 and text_weight is None:
            bnd = ce.new_zeros(())
        else:
            if text_weight is None:
                raise ValueError("text_weight is required when boundary_weight != 0")
            bnd = boundary_loss(logits, target, text_weight, cfg.boundary, cfg.threshold)
        total = cfg.ce_weight * ce + cfg.dice_weight * dice + cfg.boundary_weight * bnd
        pm = None
        if cfg.pseudo_mask_weight > 0:
            if pseudo_logits is None:
                raise ValueError("pseudo_logits are required when pseudo_mask_weight > 0")
            pm = pseudo_mask_loss(pseudo_logits, target, cfg.pseudo_mask_target, kind=cfg.pseudo_mask_kind)
            total = total + cfg.pseudo_mask_weight * pm
        return LossOutput(total=total, ce=ce, dice=dice, boundary=bnd, pseudo_mask=pm)

    def extra_repr(self) -> str:
        return repr(self.config)


def build_loss(config: LossConfig | str | None = None, **overrides) -> RS2SAM2Loss:
    """An :class:`RS2SAM2Loss` from a config, a variant name (``"official"``, ``"paper"``,
    ``"differentiable"``) or ``None`` (official), with optional field overrides."""
    if config is None or isinstance(config, str):
        cfg = LossConfig.from_variant(config or "official", **overrides)
    else:
        cfg = dataclasses.replace(config, **overrides) if overrides else config
    return RS2SAM2Loss(cfg)
