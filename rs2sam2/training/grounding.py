"""The grounding stage of training (``TrainConfig.stage = "grounding"``; not part of RS2-SAM2).

Only the union encoder (BEiT-3) and the mask prompt generator run and learn, on the pseudo-mask loss
alone: *where is the object the sentence names*, on the 14×14 grid. SAM2 (the Hiera trunk with its fusion
layers, the decoder) is neither run nor changed. On a CPU one sample of the ``tiny`` preset costs about a
third of a full training step (28 against 8.5 samples per second on one thread), so the part that limits
a model trained from random weights (its pseudo-mask rarely peaks on the referred object, while SAM2
given the right prompt segments it well: ``benchmarks/prompt_oracle.py``) sees three times more
sentences per hour. SAM2 learns to use the changed prompts only in a full-stage run that follows.

Validation in this stage measures the pseudo-mask itself (:func:`grounding_metrics`): how often its peak
cell lies on the referred object (``peak_in_target``, in %), and its mean probability on and off the
object. The best epoch is the one with the highest ``peak_in_target``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..evaluate import peak_in_target, pseudo_mask_separation

if TYPE_CHECKING:
    from ..weights.pretrained import RS2SAM2

#: Top-level modules of :class:`~rs2sam2.modeling.RS2SAM2Model` that the grounding stage trains.
GROUNDING_MODULES = ("union_encoder", "prompt_generator")


def freeze_for_grounding(model: RS2SAM2) -> None:
    """Leave gradients on only in the union encoder and the mask prompt generator (within what the freeze
    policy already left trainable); everything SAM2 owns, and the text projection into it, stays fixed."""
    for name, module in model.named_children():
        if name not in GROUNDING_MODULES:
            module.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "the grounding stage has nothing to train: the union encoder and prompt generator are frozen"
        )


class GroundingInputs(nn.Module):
    """The model reduced to what the grounding stage reads: the pseudo-mask logits (B, 1, g, g).

    ``sam_pixels`` is accepted and ignored, so that a training batch can be passed as it is."""

    def __init__(self, model: RS2SAM2) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        union_pixels: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sam_pixels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        union = self.model.union_encoder(union_pixels, input_ids, attention_mask)
        return self.model.prompt_generator(union.cls_token, union.patch_tokens).pseudo_logits


@torch.no_grad()
def grounding_metrics(
    module: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device
) -> dict[str, float]:
    """``peak_in_target`` (% of samples with a target), ``pm_target``, ``pm_background`` (mean pseudo-mask
    probability on / off the target's cells), ``num_samples`` and ``num_with_target`` over ``batches``
    (training batches: ``union_pixels``, ``input_ids``, ``attention_mask``, ``target``), with ``module`` a
    :class:`GroundingInputs`. Samples with an empty target count in ``pm_background`` only."""
    hits = with_target = samples = 0
    on_sum = off_sum = 0.0
    for batch in batches:
        inputs = {k: batch[k].to(device) for k in ("union_pixels", "input_ids", "attention_mask")}
        target = batch["target"].to(device)
        logits = module(**inputs).float()
        on, off = pseudo_mask_separation(torch.sigmoid(logits), target)
        has = ~torch.isnan(on)
        hits += int((peak_in_target(logits, target) & has).sum())
        with_target += int(has.sum())
        on_sum += float(on[has].sum())
        off_sum += float(off.sum())
        samples += int(target.shape[0])
    return {
        "peak_in_target": 100.0 * hits / max(with_target, 1),
        "pm_target": on_sum / max(with_target, 1),
        "pm_background": off_sum / max(samples, 1),
        "num_samples": samples,
        "num_with_target": with_target,
    }


def combine_grounding_metrics(parts: Iterable[dict[str, float]]) -> dict[str, float]:
    """:func:`grounding_metrics` of disjoint shards (one per process) → those of their union."""
    parts = list(parts)
    samples = sum(int(p["num_samples"]) for p in parts)
    with_target = sum(int(p["num_with_target"]) for p in parts)

    def mean(key: str, weight: str, total: int) -> float:
        return sum(p[key] * p[weight] for p in parts) / max(total, 1)

    return {
        "peak_in_target": mean("peak_in_target", "num_with_target", with_target),
        "pm_target": mean("pm_target", "num_with_target", with_target),
        "pm_background": mean("pm_background", "num_samples", samples),
        "num_samples": samples,
        "num_with_target": with_target,
    }
