"""② Fused image encoder: SAM2's Hiera trunk and FPN neck with a BHFM layer in every block (spec §4.1).

The trunk and neck are the ``sam2`` package's own modules, built with their constructors, so SAM2
checkpoints load into ``trunk.*`` / ``neck.*`` by prefix. Hiera's block loop has to change (each block
now also reads and rewrites the text stream), so :meth:`FusedImageEncoder._block` re-expresses one
upstream ``MultiScaleBlock`` step by step around its own submodules, with the fusion layer inserted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sam2.modeling.backbones.hieradet import Hiera, MultiScaleBlock, do_pool
from sam2.modeling.backbones.image_encoder import FpnNeck
from sam2.modeling.backbones.utils import window_partition, window_unpartition
from sam2.modeling.position_encoding import PositionEmbeddingSine
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import RS2SAM2Config
from .fusion import FusionLayer


@dataclass
class ImageEncoderOutput:
    """``trunk_features``: the four Hiera stage outputs, (B, C_i, S/4·2^-i, S/4·2^-i), fused with text;
    ``fpn_features``: the FPN levels kept after ``scalp``, highest resolution first, (B, 256, ·, ·);
    ``attentions``: per stage, the vision→text attention of its last block (B, H_i, W_i, L), if asked."""

    trunk_features: list[torch.Tensor]
    fpn_features: list[torch.Tensor]
    attentions: list[torch.Tensor] | None = None


def _on_default_device(build, **kwargs) -> nn.Module:
    """Build an upstream module under the current default device, including ``meta``.

    Hiera's constructor calls ``.item()`` on a tensor, which a ``torch.device("meta")`` context cannot
    serve; there the module is built on the CPU and moved to ``meta`` (its storage is then released).
    """
    device = torch.empty(0).device  # honours an enclosing ``with torch.device(...)``
    if device.type != "meta":
        return build(**kwargs)
    with torch.device("cpu"):
        module = build(**kwargs)
    return module.to(device)


class FusedImageEncoder(nn.Module):
    # Recompute each block's activations in the backward pass instead of storing them (training memory).
    gradient_checkpointing: bool = False

    def __init__(self, config: RS2SAM2Config) -> None:
        super().__init__()
        h, neck = config.hiera, config.neck
        self.trunk = _on_default_device(
            Hiera,
            embed_dim=h.embed_dim,
            num_heads=h.num_heads,
            drop_path_rate=h.drop_path_rate,
            q_pool=h.q_pool,
            q_stride=tuple(h.q_stride),
            stages=tuple(h.stages),
            dim_mul=h.dim_mul,
            head_mul=h.head_mul,
            window_pos_embed_bkg_spatial_size=tuple(h.window_pos_embed_bkg_spatial_size),
            window_spec=tuple(h.window_spec),
            global_att_blocks=tuple(h.global_att_blocks),
        )
        self.neck = FpnNeck(
            position_encoding=PositionEmbeddingSine(num_pos_feats=neck.d_model),
            d_model=neck.d_model,
            backbone_channel_list=list(reversed(h.stage_dims)),
            fpn_top_down_levels=list(neck.fpn_top_down_levels),
            fpn_interp_model=neck.fpn_interp_model,
        )
        self.scalp = neck.scalp
        self.fusion_layers = nn.ModuleList(
            FusionLayer(blk.dim_out, config.text_dim, config.fusion) for blk in self.trunk.blocks
        )

    def forward(
        self, pixel_values: torch.Tensor, text: torch.Tensor, output_attentions: bool = False
    ) -> ImageEncoderOutput:
        """``pixel_values`` (B, 3, S, S); ``text`` (B, L, 256) projected union-encoder text tokens."""
        trunk = self.trunk
        x = trunk.patch_embed(pixel_values)  # (B, S/4, S/4, C)
        x = x + trunk._get_pos_embed(x.shape[1:3])
        text = text.to(x.dtype)  # the official trunk carries the text stream in its own (fp32) precision
        last = len(trunk.blocks) - 1
        stage_ends = set(trunk.stage_ends)
        features: list[torch.Tensor] = []
        attentions: list[torch.Tensor] = []
        for i, (block, fusion) in enumerate(zip(trunk.blocks, self.fusion_layers)):
            want = output_attentions and i in stage_ends
            # The text written by the last block is discarded by the official model: skip computing it.
            args = (block, fusion, x, text, i != last, want)  # update_text, need_weights
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x, text, weights = checkpoint(self._block, *args, use_reentrant=False)
            else:
                x, text, weights = self._block(*args)
            if i in stage_ends:
                features.append(x.permute(0, 3, 1, 2))  # (B, C, H, W)
                if want:
                    attentions.append(weights.view(*x.shape[:3], -1))  # (B, H, W, L)
        fpn, _ = self.neck(features)
        if self.scalp > 0:
            fpn = fpn[: -self.scalp]
        return ImageEncoderOutput(features, fpn, attentions if output_attentions else None)

    @staticmethod
    def _block(
        block: MultiScaleBlock,
        fusion: FusionLayer,
        x: torch.Tensor,
        text: torch.Tensor,
        update_text: bool,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One Hiera block with its BHFM layer. ``x`` (B, H, W, dim) → (B, H', W', dim_out)."""
        shortcut = x
        x = block.norm1(x)
        if block.dim != block.dim_out:  # stage change: project and pool the skip path
            shortcut = do_pool(block.proj(x), block.pool)
        window_size = block.window_size
        if window_size > 0:
            hw = x.shape[1:3]
            x, pad_hw = window_partition(x, window_size)  # (B·nW, ws, ws, dim)
        x = block.attn(x)
        if block.q_stride:  # q-pooling halved the map, and with it the window
            window_size = block.window_size // block.q_stride[0]
            hw = shortcut.shape[1:3]
            pad_hw = tuple(s + (window_size - s % window_size) % window_size for s in hw)
        if block.window_size > 0:
            x = window_unpartition(x, window_size, pad_hw, hw)  # (B, H', W', dim_out)
        x, text, weights = fusion.cross_adapter(x, text, update_text=update_text, need_weights=need_weights)
        x = shortcut + block.drop_path(x)
        y = block.norm2(x)
        x = x + block.drop_path(block.mlp(y)) + fusion.adapter_scale * fusion.mlp_adapter(y)
        return x, text, weights
