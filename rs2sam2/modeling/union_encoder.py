"""① Union encoder: BEiT-3 multiway transformer reading image patches and text jointly
(paper Fig. 2 and its method overview).

One transformer attends over ``[CLS, 14×14 patches, L text tokens]`` at once. Projections, LayerNorms and
FFNs exist twice ("multiway"): expert ``A`` serves the vision tokens, expert ``B`` the text tokens.
Parameter names follow torchscale's ``BEiT3`` (``beit3.encoder.layers.{i}.self_attn.q_proj.A.weight`` …)
so that ``beit3_large_patch16_224.pth`` and the union encoder of the released RS2-SAM2 weights load by
prefix. Pre-LN with subLN (``inner_attn_ln``, ``ffn_layernorm``), fairseq positions starting at 2,
exact GELU, no embedding scale, final multiway LayerNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import UnionEncoderConfig


class Multiway(nn.Module):
    """Two copies of a module: ``A`` for tokens before ``split`` (vision), ``B`` after it (text)."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.A = a
        self.B = b

    def forward(self, x: torch.Tensor, split: int) -> torch.Tensor:
        """``x`` (B, N, C) → (B, N, C'), experts applied along the token axis."""
        return torch.cat([self.A(x[:, :split]), self.B(x[:, split:])], dim=1)


def _multiway_linear(c_in: int, c_out: int) -> Multiway:
    return Multiway(nn.Linear(c_in, c_out), nn.Linear(c_in, c_out))


def _multiway_norm(c: int, eps: float) -> Multiway:
    return Multiway(nn.LayerNorm(c, eps=eps), nn.LayerNorm(c, eps=eps))


class MultiwaySelfAttention(nn.Module):
    """Joint self-attention with per-modality q/k/v/out projections and the subLN ``inner_attn_ln``."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = _multiway_linear(dim, dim)
        self.k_proj = _multiway_linear(dim, dim)
        self.v_proj = _multiway_linear(dim, dim)
        self.out_proj = _multiway_linear(dim, dim)
        self.inner_attn_ln = _multiway_norm(dim, eps)

    def forward(self, x: torch.Tensor, split: int, attend: torch.Tensor) -> torch.Tensor:
        """``x`` (B, N, C); ``attend`` (B, 1, 1, N) True for keys that may be attended."""
        b, n, c = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, h, N, C/h)

        q, k, v = (heads(p(x, split)) for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        out = out.transpose(1, 2).reshape(b, n, c)  # (B, N, C)
        return self.out_proj(self.inner_attn_ln(out, split), split)


class FeedForward(nn.Module):
    """fc1 → GELU → LayerNorm (subLN) → fc2."""

    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.ffn_layernorm(F.gelu(self.fc1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: UnionEncoderConfig) -> None:
        super().__init__()
        eps = cfg.layernorm_eps
        self.self_attn = MultiwaySelfAttention(cfg.embed_dim, cfg.num_heads, eps)
        self.self_attn_layer_norm = _multiway_norm(cfg.embed_dim, eps)
        self.ffn = Multiway(
            FeedForward(cfg.embed_dim, cfg.ffn_dim, eps), FeedForward(cfg.embed_dim, cfg.ffn_dim, eps)
        )
        self.final_layer_norm = _multiway_norm(cfg.embed_dim, eps)

    def forward(self, x: torch.Tensor, split: int, attend: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x, split), split, attend)
        return x + self.ffn(self.final_layer_norm(x, split), split)


class VisionEmbedding(nn.Module):
    """Patchify (conv) and prepend the [CLS] token. ``mask_token`` exists for checkpoint parity only."""

    def __init__(self, cfg: UnionEncoderConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels`` (B, 3, H, W) → (B, 1 + HW/p², C)."""
        x = self.proj(pixels).flatten(2).transpose(1, 2)  # (B, N, C)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)


class MultiwayPositions(nn.Module):
    """Learned positions, one table per modality, both indexed from ``offset`` (fairseq)."""

    def __init__(self, cfg: UnionEncoderConfig) -> None:
        super().__init__()
        self.offset = cfg.position_offset
        self.A = nn.Embedding(cfg.num_patches + 1 + cfg.position_offset, cfg.embed_dim)
        self.B = nn.Embedding(cfg.max_source_positions, cfg.embed_dim)

    def forward(self, num_vision: int, num_text: int, device: torch.device) -> torch.Tensor:
        if num_text + self.offset > self.B.num_embeddings:
            raise ValueError(
                f"{num_text} text tokens exceed the text position table "
                f"({self.B.num_embeddings - self.offset} usable positions)"
            )
        pos_a = torch.arange(self.offset, self.offset + num_vision, device=device)
        pos_b = torch.arange(self.offset, self.offset + num_text, device=device)
        return torch.cat([self.A(pos_a), self.B(pos_b)], dim=0)  # (N, C)


class Encoder(nn.Module):
    def __init__(self, cfg: UnionEncoderConfig) -> None:
        super().__init__()
        self.embed_positions = MultiwayPositions(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.layer_norm = _multiway_norm(cfg.embed_dim, cfg.layernorm_eps)


class BEiT3(nn.Module):
    # Recompute each layer's activations in the backward pass instead of storing them (training memory).
    gradient_checkpointing: bool = False

    def __init__(self, cfg: UnionEncoderConfig) -> None:
        super().__init__()
        self.text_embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.vision_embed = VisionEmbedding(cfg)
        self.encoder = Encoder(cfg)

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``padding`` (B, L) True at text padding. Returns (B, 1 + N + L, C)."""
        vision = self.vision_embed(pixels)  # (B, 1+N, C)
        text = self.text_embed(input_ids)  # (B, L, C)
        split = vision.shape[1]
        x = torch.cat([vision, text], dim=1)  # (B, 1+N+L, C)
        x = x + self.encoder.embed_positions(split, text.shape[1], x.device)
        is_pad = torch.cat([padding.new_zeros(x.shape[0], split), padding], dim=1)  # (B, 1+N+L)
        x = x * (~is_pad).unsqueeze(-1).to(x.dtype)  # torchscale zeroes padded embeddings
        attend = (~is_pad)[:, None, None, :]  # (B, 1, 1, 1+N+L)
        for layer in self.encoder.layers:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, split, attend, use_reentrant=False)
            else:
                x = layer(x, split, attend)
        return self.encoder.layer_norm(x, split)


@dataclass
class UnionEncoderOutput:
    """``cls_token`` (B, 1, C): multimodal class token Vcls; ``patch_tokens`` (B, N, C): V;
    ``text_tokens`` (B, L, C): T (``text_tokens[:, 0]`` is ``<s>``)."""

    cls_token: torch.Tensor
    patch_tokens: torch.Tensor
    text_tokens: torch.Tensor


class UnionEncoder(nn.Module):
    """BEiT-3 wrapper; its ``beit3`` child holds torchscale-named parameters."""

    def __init__(self, config: UnionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.beit3 = BEiT3(config)
        self.apply(self._init_weights)
        nn.init.normal_(self.beit3.text_embed.weight, std=config.embed_dim**-0.5)  # torchscale TextEmbedding
        nn.init.trunc_normal_(self.beit3.vision_embed.cls_token, std=config.init_std)

    def _init_weights(self, m: nn.Module) -> None:
        # As BEiT3Wrapper: trunc-normal Linear weights, zero biases, unit LayerNorms.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=self.config.init_std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> UnionEncoderOutput:
        """``pixel_values`` (B, 3, 224, 224), ``input_ids`` (B, L), ``attention_mask`` (B, L) bool."""
        out = self.beit3(pixel_values, input_ids, ~attention_mask.bool())
        n = self.config.num_patches
        return UnionEncoderOutput(
            cls_token=out[:, :1], patch_tokens=out[:, 1 : 1 + n], text_tokens=out[:, 1 + n :]
        )
