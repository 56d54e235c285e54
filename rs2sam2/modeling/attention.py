"""Multi-head cross-attention with ``nn.MultiheadAttention``'s parameter layout, computed with SDPA.

The official code uses ``nn.MultiheadAttention`` (sequence-first) for every fusion step: the BHFM layers,
the post-encoding fusion and the mask prompt generator. This module keeps its packed parameters
(``in_proj_weight`` = [W_q; W_k; W_v], ``in_proj_bias``, ``out_proj``) and its initialisation, so official
weights load one to one, but runs batch-first through ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PackedCrossAttention(nn.Module):
    """Cross-attention ``out_proj(softmax(q k^T / sqrt(d_h)) v)`` with packed q/k/v projections."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same as nn.MultiheadAttention._reset_parameters.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend ``query`` (B, Nq, C) to ``key``/``value`` (B, Nk, C).

        ``key_padding_mask`` (B, Nk) is True where a key must be ignored. Returns the output (B, Nq, C)
        and, if ``need_weights``, the attention weights averaged over heads (B, Nq, Nk).
        """
        return self.attend(query, *self.project_kv(key, value), key_padding_mask, need_weights)

    def project_kv(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The key and value projections, split into heads: (B, h, Nk, C/h) each (see :meth:`attend`)."""
        _, w_k, w_v = self.in_proj_weight.chunk(3)
        _, b_k, b_v = self.in_proj_bias.chunk(3)
        return self._split_heads(F.linear(key, w_k, b_k)), self._split_heads(F.linear(value, w_v, b_v))

    def attend(
        self,
        query: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` with the keys and values already projected by :meth:`project_kv` — so that
        queries that come in parts (bands of an image) share one projection of the same keys."""
        q = self._split_heads(F.linear(query, self.in_proj_weight[: self.dim], self.in_proj_bias[: self.dim]))
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Nk), True = attend
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, h, Nq, Nk)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            attn = scores.softmax(dim=-1)
            out = attn @ v
            weights = attn.mean(dim=1)  # (B, Nq, Nk)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).flatten(2)  # (B, Nq, C)
        return self.out_proj(out), weights

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)
