"""② Fused image encoder: SAM2's Hiera trunk and FPN neck with a BHFM layer in every block (paper Sec. 3.2,
Bidirectional Hierarchical Fusion Module: the per-block layer "BL").

The trunk and neck are the ``sam2`` package's own modules, built with their constructors, so SAM2
checkpoints load into ``trunk.*`` / ``neck.*`` by prefix. Hiera's block loop has to change (each block
now also reads and rewrites the text stream), so :meth:`FusedImageEncoder._block` re-expresses one
upstream ``MultiScaleBlock`` step by step around its own submodules, with the fusion layer inserted.
The CPU inference paths in bands of rows are in :mod:`.bands`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sam2.modeling.backbones.hieradet import Hiera, MultiScaleBlock, do_pool
from sam2.modeling.backbones.image_encoder import FpnNeck
from sam2.modeling.backbones.utils import window_partition, window_unpartition
from sam2.modeling.position_encoding import PositionEmbeddingSine
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import RS2SAM2Config
from .bands import BandedInference, in_chunks
from .fusion import FusionLayer


@dataclass
class ImageEncoderOutput:
    """``trunk_features``: the four Hiera stage outputs, (B, C_i, S/4·2^-i, S/4·2^-i), fused with text;
    ``fpn_features``: the FPN levels kept after ``scalp``, highest resolution first, (B, 256, ·, ·);
    ``attentions``: per stage, the vision→text attention of its last block (B, H_i, W_i, L), if asked;
    ``high_res_features``: with ``high_res_proj``, the first FPN levels already projected by it (their
    ``fpn_features`` entries are then None)."""

    trunk_features: list[torch.Tensor]
    fpn_features: list[torch.Tensor | None]
    attentions: list[torch.Tensor] | None = None
    high_res_features: list[torch.Tensor] | None = None


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


def hiera_pos_embed(trunk: Hiera, hw: tuple[int, int]) -> torch.Tensor:
    """Hiera's absolute position embedding for an (h, w) token map, (1, h, w, C): the background
    embedding ``pos_embed`` bicubically resized to (h, w) plus the window embedding ``pos_embed_window``
    tiled over it, as SAM2's Hiera adds it after the patch embedding."""
    window = trunk.pos_embed_window  # (1, C, ws, ws)
    pos = F.interpolate(trunk.pos_embed, size=tuple(hw), mode="bicubic")  # (1, C, h, w)
    pos = pos + window.tile([p // w for p, w in zip(pos.shape, window.shape)])
    return pos.permute(0, 2, 3, 1)  # (1, h, w, C)


class FusedImageEncoder(BandedInference, nn.Module):
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
        self,
        pixel_values: torch.Tensor,
        text: torch.Tensor,
        output_attentions: bool = False,
        text_padding: torch.Tensor | None = None,
        high_res_proj: list[nn.Module] | None = None,
    ) -> ImageEncoderOutput:
        """``pixel_values`` (B, 3, S, S); ``text`` (B, L, 256) projected union-encoder text tokens;
        ``text_padding`` (B, L) True at pad tokens (see :class:`~.fusion.CrossAdapter`);
        ``high_res_proj``: modules for the first FPN levels (the decoder's ``conv_s0``, ``conv_s1``, wired
        here by the model), applied here so that on the CPU those levels can be computed in bands of rows
        (see :meth:`fpn`); their results come back as ``high_res_features``."""
        trunk = self.trunk
        x = trunk.patch_embed(pixel_values)  # (B, S/4, S/4, C)
        chunk = self._chunk_tokens(x)
        if not chunk:
            x = x + hiera_pos_embed(trunk, x.shape[1:3])
        else:  # the patch embedding is a fresh tensor: add in place (x + p == p + x)
            x.add_(hiera_pos_embed(trunk, x.shape[1:3]))
        text = text.to(x.dtype)  # the official trunk carries the text stream in its own (fp32) precision
        last = len(trunk.blocks) - 1
        stage_ends = set(trunk.stage_ends)
        features: list[torch.Tensor] = []
        attentions: list[torch.Tensor] = []
        for i, (block, fusion) in enumerate(zip(trunk.blocks, self.fusion_layers)):
            want = output_attentions and i in stage_ends
            # The text written by the last block is discarded by the official model: skip computing it.
            args = (block, fusion, x, text, i != last, want, text_padding)  # update_text, need_weights
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x, text, weights = checkpoint(self._block, *args, use_reentrant=False)
            else:
                banded = None
                if chunk and not want:
                    banded = self._block_in_bands(block, fusion, x, text, i != last, text_padding, chunk)
                if banded is not None:
                    x, text, weights = banded
                else:
                    x, text, weights = self._block(*args, chunk_tokens=chunk)
            del args
            if i in stage_ends:
                features.append(x.permute(0, 3, 1, 2))  # (B, C, H, W)
                if want:
                    attentions.append(weights.view(*x.shape[:3], -1))  # (B, H, W, L)
        fpn = self.fpn(features, high_res_proj)
        high_res = None
        if high_res_proj:
            high_res = fpn[: len(high_res_proj)]
            fpn = [None] * len(high_res_proj) + fpn[len(high_res_proj) :]
        if self.scalp > 0:
            fpn = fpn[: -self.scalp]
        return ImageEncoderOutput(features, fpn, attentions if output_attentions else None, high_res)

    def fpn(self, features: list[torch.Tensor], project: list[nn.Module] | None = None) -> list[torch.Tensor]:
        """The FPN neck's top-down pass, as ``FpnNeck.forward`` computes it, without its sine position
        encodings: nothing downstream reads them, and upstream keeps them in a cache (90 MB for a 1024²
        image) and copies them on every call.

        ``project[i]`` (optional) is applied to level ``i`` (in its weights' dtype). At CPU inference a level
        that takes no top-down input and gives none is then computed in bands of rows
        (:meth:`~.bands.BandedInference._level_in_bands`)."""
        neck = self.neck
        n = len(neck.convs) - 1
        project = list(project or [])
        chunk = self._chunk_tokens(features[0])
        out: list[torch.Tensor] = [features[0]] * (n + 1)
        prev = None
        for i in range(n, -1, -1):  # lowest resolution first
            conv = neck.convs[n - i]
            levels = neck.fpn_top_down_levels
            if chunk and i < len(project) and i not in levels and i - 1 not in levels:
                out[i] = self._level_in_bands(conv, project[i], features[i], chunk)
                prev = None
                continue
            lateral = conv(features[i])
            if i in neck.fpn_top_down_levels and prev is not None:
                mode = neck.fpn_interp_model
                top_down = F.interpolate(
                    prev.to(torch.float32),
                    scale_factor=2.0,
                    mode=mode,
                    align_corners=None if mode == "nearest" else False,
                    antialias=False,
                )
                prev = lateral + top_down
                if neck.fuse_type == "avg":
                    prev /= 2
            else:
                prev = lateral
            out[i] = prev if i >= len(project) else project[i](prev.to(project[i].weight.dtype))
        return out

    @staticmethod
    def _block(
        block: MultiScaleBlock,
        fusion: FusionLayer,
        x: torch.Tensor,
        text: torch.Tensor,
        update_text: bool,
        need_weights: bool,
        text_padding: torch.Tensor | None = None,
        chunk_tokens: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One Hiera block with its BHFM layer. ``x`` (B, H, W, dim) → (B, H', W', dim_out).

        ``chunk_tokens`` > 0 (inference only: it writes into its own intermediates in place) runs the
        window attention on groups of windows and the MLP part on groups of tokens of at most that size.
        """
        shortcut = x
        x = block.norm1(x)
        if block.dim != block.dim_out:  # stage change: project and pool the skip path
            shortcut = do_pool(block.proj(x), block.pool)
        window_size = block.window_size
        if window_size > 0:
            hw = x.shape[1:3]
            x, pad_hw = window_partition(x, window_size)  # (B·nW, ws, ws, dim)
        if chunk_tokens and window_size > 0 and x.numel() // x.shape[-1] > chunk_tokens:
            x = in_chunks(block.attn, x, max(1, chunk_tokens // (window_size * window_size)))
        else:
            x = block.attn(x)
        if block.q_stride:  # q-pooling halved the map, and with it the window
            window_size = block.window_size // block.q_stride[0]
            hw = shortcut.shape[1:3]
            pad_hw = tuple(s + (window_size - s % window_size) % window_size for s in hw)
        if block.window_size > 0:
            x = window_unpartition(x, window_size, pad_hw, hw)  # (B, H', W', dim_out)
        x, text, weights = fusion.cross_adapter(
            x, text, update_text=update_text, need_weights=need_weights, text_padding=text_padding
        )
        x = shortcut + block.drop_path(x)
        if chunk_tokens and x.numel() // x.shape[-1] > chunk_tokens:
            # x is this block's own fresh tensor (strided like the pooled skip path at a stage change)
            return FusedImageEncoder._mlp_in_place(block, fusion, x, chunk_tokens), text, weights
        y = block.norm2(x)
        x = x + block.drop_path(block.mlp(y)) + fusion.adapter_scale * fusion.mlp_adapter(y)
        return x, text, weights
