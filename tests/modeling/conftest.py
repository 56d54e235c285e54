"""Helpers shared by the model-block tests."""

from __future__ import annotations

from torch import nn

from rs2sam2.modeling.attention import PackedCrossAttention


def _mha_like(ours: PackedCrossAttention) -> nn.MultiheadAttention:
    """An nn.MultiheadAttention (sequence-first, as the official code) holding the same weights."""
    ref = nn.MultiheadAttention(ours.dim, ours.num_heads)
    ref.load_state_dict(ours.state_dict())
    return ref
