"""③ Mask prompt generator (MPG) and the sparse token MLP (paper Sec. 3.3, Mask Prompt Generator).

From the union encoder's multimodal class token ``Vcls`` and patch tokens ``V``:

* pseudo-mask: ``m = Vcls ⊙ MHA(Vcls → V)``; ``m = mask_linear(m)``; ``P = V(14×14) ⊙ m``;
  ``Mp = sigmoid(mask_product(P))`` (B, 1, 14, 14), then bilinearly upsampled (antialias) to SAM2's mask
  input size (256² for a 1024² image). The dense prompt is that *probability* map, not logits.
* sparse prompt: ``token_mlp(Vcls)`` (Linear, ReLU, Linear) → (B, 1, 256), SAM2's only sparse token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import PackedCrossAttention


@dataclass
class PromptOutput:
    """``pseudo_mask`` (B, 1, g, g) probabilities; ``dense_prompt`` (B, 1, S/4, S/4) the same,
    upsampled; ``sparse_prompt`` (B, 1, 256); ``pseudo_logits`` (B, 1, g, g) the pseudo-mask before the
    sigmoid (what a loss on the pseudo-mask reads, numerically stable)."""

    pseudo_mask: torch.Tensor
    dense_prompt: torch.Tensor
    sparse_prompt: torch.Tensor
    pseudo_logits: torch.Tensor


class MaskPromptGenerator(nn.Module):
    def __init__(
        self,
        dim: int,
        prompt_dim: int,
        *,
        num_heads: int,
        grid_size: int,
        prompt_size: int,
        antialias: bool = True,
    ) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.prompt_size = prompt_size
        self.antialias = antialias
        self.class_attn = PackedCrossAttention(dim, num_heads)  # official "vmtoken"
        self.mask_linear = nn.Linear(dim, dim)
        self.mask_product = nn.Linear(dim, 1)
        self.token_mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, prompt_dim))

    def forward(self, cls_token: torch.Tensor, patch_tokens: torch.Tensor) -> PromptOutput:
        """``cls_token`` (B, 1, C), ``patch_tokens`` (B, g², C)."""
        b, n, c = patch_tokens.shape
        g = self.grid_size
        if n != g * g:
            raise ValueError(f"expected {g * g} patch tokens for a {g}×{g} grid, got {n}")
        m = cls_token * self.class_attn(cls_token, patch_tokens, patch_tokens)[0]  # (B, 1, C), multiplicative
        m = self.mask_linear(m).unsqueeze(1)  # (B, 1, 1, C)
        grid = patch_tokens.view(b, g, g, c)  # (B, g, g, C)
        pseudo_logits = self.mask_product(grid * m).permute(0, 3, 1, 2)  # (B, 1, g, g)
        pseudo = torch.sigmoid(pseudo_logits)
        return PromptOutput(
            pseudo_mask=pseudo,
            dense_prompt=self.upsample(pseudo),
            sparse_prompt=self.token_mlp(cls_token),
            pseudo_logits=pseudo_logits,
        )

    def upsample(self, pseudo: torch.Tensor) -> torch.Tensor:
        """A (B, 1, g, g) probability map -> the (B, 1, S/4, S/4) dense prompt SAM2's mask input takes."""
        return F.interpolate(
            pseudo.float(),
            size=(self.prompt_size, self.prompt_size),
            mode="bilinear",
            align_corners=False,
            antialias=self.antialias,
        )
