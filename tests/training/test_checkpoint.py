"""The training checkpoint (rs2sam2.training.checkpoint): the RNG state it saves."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_checkpoint_rng_state_holds_the_training_gpu_generator_only(monkeypatch):
    """One CUDA generator state, the training device's: asking every visible GPU (the former
    ``get_rng_state_all``) created a CUDA context on each GPU in every torchrun process."""
    from rs2sam2.training.checkpoint import capture_rng_state, restore_rng_state

    asked, restored = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("asked every GPU"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("set every GPU"))
    monkeypatch.setattr(
        torch.cuda,
        "get_rng_state",
        lambda device: asked.append(str(device)) or torch.full((4,), 7, dtype=torch.uint8),
    )
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda s, device: restored.append((int(s[0]), str(device)))
    )
    assert "cuda" not in capture_rng_state(torch.device("cpu")) and asked == []
    state = capture_rng_state(torch.device("cuda", 1))
    assert asked == ["cuda:1"] and state["cuda"].tolist() == [7] * 4
    after = torch.rand(3)
    restore_rng_state(state, torch.device("cuda", 1))
    assert restored == [(7, "cuda:1")] and torch.equal(torch.rand(3), after)  # the CPU generator too
    restore_rng_state(state, torch.device("cpu"))  # a CUDA checkpoint resumed on the CPU: no CUDA call
    assert restored == [(7, "cuda:1")]
    # the former format, one state per visible GPU: the device's own, or the last when there were fewer
    legacy = {**state, "cuda": [torch.full((4,), i, dtype=torch.uint8) for i in range(2)]}
    restore_rng_state(legacy, torch.device("cuda", 1))
    restore_rng_state(legacy, torch.device("cuda", 3))
    assert restored[1:] == [(1, "cuda:1"), (1, "cuda:3")]
