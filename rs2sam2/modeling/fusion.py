"""② Bidirectional Hierarchical Fusion Module, per-block layer "BL" (paper Sec. 3.2).

Every Hiera block gets two adapters of hidden width ``h = int(ratio · d)``:

* :class:`CrossAdapter` (official ``Space_Adapter``) sits between the block's attention and its skip
  connection. It projects the attention output down to ``h``, lets vision query text and then text query
  the *updated* vision (both residual), writes the text back as ``T ← (1 − α_t)·T + α_t·text_out(t)``
  and returns ``a + up(f)``. The official code has no padding mask: it only ever runs one unpadded
  sentence per forward. Here a batch of sentences of mixed lengths passes ``text_padding``, so that vision
  does not attend to pad tokens and every sample gets what it would get alone.
* :class:`MLPAdapter` (official ``MLP_Adapter``) runs parallel to the block's MLP on ``norm2(x)`` and is
  added with weight ``α_i``.

The text stream ``T`` (B, L, 256) is carried from block to block; what the last block writes is unused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FusionConfig
from .attention import PackedCrossAttention


class MLPAdapter(nn.Module):
    """``fc2(GELU(fc1(x)))``, no skip connection."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class CrossAdapter(nn.Module):
    """Bidirectional vision↔text cross-attention adapter (official ``Adapter_cross``)."""

    def __init__(self, dim: int, hidden: int, text_dim: int, num_heads: int, text_weight: float) -> None:
        super().__init__()
        self.text_weight = text_weight
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.vision_attn = PackedCrossAttention(hidden, num_heads)  # vision queries text
        self.text_attn = PackedCrossAttention(hidden, num_heads)  # text queries updated vision
        self.text_in = nn.Linear(text_dim, hidden)
        self.text_out = nn.Linear(hidden, text_dim)

    def forward(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        update_text: bool = True,
        need_weights: bool = False,
        text_padding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``x`` (B, H, W, d) attention output, ``text`` (B, L, text_dim); ``text_padding`` (B, L) True at
        pad tokens, which vision then does not attend to (None: attend to every token, as the official
        code, which only ever runs one unpadded sentence per forward).

        Returns ``x + fc2(f)`` (B, H, W, d), the new text (B, L, text_dim) — unchanged if
        ``update_text`` is False — and, if ``need_weights``, the vision→text attention (B, HW, L).
        """
        b, h, w, _ = x.shape
        f = F.gelu(self.fc1(x)).flatten(1, 2)  # (B, HW, h)
        t = self.text_in(text)  # (B, L, h)
        attn, weights = self.vision_attn(f, t, t, key_padding_mask=text_padding, need_weights=need_weights)
        f = f + attn
        if update_text:
            t = t + self.text_attn(t, f, f)[0]
            text = (1.0 - self.text_weight) * text + self.text_weight * self.text_out(t)
        x = x + self.fc2(f).view(b, h, w, -1)  # (B, H, W, d)
        return x, text, weights

    def forward_in_bands(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        residual: torch.Tensor,
        rows: int,
        update_text: bool = True,
        text_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Inference form of :meth:`forward` followed by the block's skip connection: ``x`` (B, H, W, d) is
        overwritten with ``residual + (x + fc2(f))``, computed on bands of ``rows`` rows, so that neither
        ``fc2(f)`` nor the sum exists whole. Every token goes through the same ops as in :meth:`forward`
        (vision queries text token by token; only the text update reads the whole ``f``, which is kept:
        ``h = d/4`` wide). Returns the new text."""
        b, h, w, _ = x.shape
        t = self.text_in(text)
        k, v = self.vision_attn.project_kv(t, t)  # once for all bands
        f = x.new_empty(b, h, w, self.fc1.out_features)
        for r in range(0, h, rows):
            part = F.gelu(self.fc1(x[:, r : r + rows])).flatten(1, 2)  # (B, rows·W, h)
            part = part + self.vision_attn.attend(part, k, v, key_padding_mask=text_padding)[0]
            f[:, r : r + rows] = part.view(b, -1, w, part.shape[-1])
        if update_text:
            flat = f.view(b, h * w, -1)
            t = t + self.text_attn(t, flat, flat)[0]
            text = (1.0 - self.text_weight) * text + self.text_weight * self.text_out(t)
        for r in range(0, h, rows):
            x[:, r : r + rows].add_(self.fc2(f[:, r : r + rows])).add_(residual[:, r : r + rows])
        return text


class FusionLayer(nn.Module):
    """The BL adapters of one Hiera block with output width ``dim``."""

    def __init__(self, dim: int, text_dim: int, cfg: FusionConfig) -> None:
        super().__init__()
        hidden = int(dim * cfg.ratio)
        self.adapter_scale = cfg.adapter_scale
        self.cross_adapter = CrossAdapter(dim, hidden, text_dim, cfg.num_heads, cfg.text_weight)
        self.mlp_adapter = MLPAdapter(dim, hidden)
