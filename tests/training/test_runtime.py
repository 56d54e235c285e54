"""Training runtime switches (rs2sam2.training.runtime): gradient checkpointing keeps outputs and
gradients."""

from __future__ import annotations

import pytest
import torch

from rs2sam2.training.runtime import set_gradient_checkpointing

from .conftest import IMAGE_SIZE, _build

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gradient_checkpointing_keeps_outputs_and_gradients(ws):
    model, _ = _build(ws)
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[0, 10, 20, 30, 2]])
    inputs = {
        "sam_pixels": torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g),
        "union_pixels": torch.randn(1, 3, 224, 224, generator=g),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids, dtype=torch.bool),
    }
    results = []
    for enabled in (False, True):
        set_gradient_checkpointing(model, enabled)
        model.zero_grad()
        out = model(**inputs)
        (out.logits.square().mean() + out.text_weight.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.logits.detach(), grads))
    (ref_logits, ref_grads), (ckpt_logits, ckpt_grads) = results
    assert torch.equal(ref_logits, ckpt_logits)
    assert ref_grads.keys() == ckpt_grads.keys()
    for n in ref_grads:
        torch.testing.assert_close(ckpt_grads[n], ref_grads[n], rtol=1e-5, atol=1e-7, msg=n)
