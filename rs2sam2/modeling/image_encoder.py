"""② Fused image encoder: SAM2's Hiera trunk and FPN neck with a BHFM layer in every block (spec §4.1).

The trunk and neck are the ``sam2`` package's own modules, built with their constructors, so SAM2
checkpoints load into ``trunk.*`` / ``neck.*`` by prefix. Hiera's block loop has to change (each block
now also reads and rewrites the text stream), so :meth:`FusedImageEncoder._block` re-expresses one
upstream ``MultiScaleBlock`` step by step around its own submodules, with the fusion layer inserted.
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


class FusedImageEncoder(nn.Module):
    # Recompute each block's activations in the backward pass instead of storing them (training memory).
    gradient_checkpointing: bool = False
    # At inference (no autograd, eval mode), run each windowed block on bands of window rows of about
    # this many tokens (norm, skip projection, window attention, cross adapter, MLP + MLP adapter: see
    # _block_in_bands), and the first FPN levels with SAM2's conv_s0/conv_s1 on bands of rows, so that no
    # intermediate of a 1024² image's first stage exists whole (its MLP hidden layer alone: 151 MB; the
    # 256-channel first FPN level: 64 MB). Every token is computed by the same ops as in one piece; 0
    # turns it off. The count is for 4-byte activations; 16-bit ones get twice as many per band (the
    # same bytes: bf16 matmuls are fast enough that smaller bands cost more in calls than they save).
    # CPU only: on a GPU the activations are small next to its memory, and bands would turn every op
    # into dozens of small kernel launches.
    inference_chunk_tokens: int = 2048

    def _chunk_tokens(self, x: torch.Tensor) -> int:
        """Tokens per band at inference for activations like ``x``; 0 (one piece) while training, with
        autograd, or off the CPU (and on ``meta``, where FLOPs are counted: the same either way)."""
        if torch.is_grad_enabled() or self.training or not self.inference_chunk_tokens:
            return 0
        if x.device.type != "cpu":
            return 0
        return self.inference_chunk_tokens * max(1, 4 // x.dtype.itemsize)

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
        ``high_res_proj``: modules that the decoder applies to the first FPN levels (SAM2's ``conv_s0``,
        ``conv_s1``), applied here instead (see :meth:`fpn`)."""
        trunk = self.trunk
        x = trunk.patch_embed(pixel_values)  # (B, S/4, S/4, C)
        chunk = self._chunk_tokens(x)
        if not chunk:
            x = x + trunk._get_pos_embed(x.shape[1:3])
        else:  # the patch embedding is a fresh tensor: add in place (x + p == p + x)
            x.add_(trunk._get_pos_embed(x.shape[1:3]))
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

        ``project[i]`` (optional) is applied to level ``i`` (in its weights' dtype). At inference a level
        that takes no top-down input and gives none is then computed as ``project[i](lateral(·))`` on
        bands of rows, so that its 256-channel map (64 MB for a 1024² image's first level) never exists
        whole."""
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
                out[i] = _in_chunks(
                    lambda f, c=conv, p=project[i]: p(c(f).to(p.weight.dtype)),
                    features[i],
                    max(1, chunk // features[i].shape[-1]),
                    dim=2,  # rows
                )
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
            x = _in_chunks(block.attn, x, max(1, chunk_tokens // (window_size * window_size)))
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

    @staticmethod
    def _mlp_in_place(block: MultiScaleBlock, fusion: FusionLayer, x: torch.Tensor, chunk_tokens: int):
        """The block's MLP part at inference, ``x + mlp(y) + α·mlp_adapter(y)`` with ``y = norm2(x)``,
        written into ``x`` (a tensor the block owns) ``chunk_tokens`` tokens at a time."""
        rows = x.contiguous().view(-1, x.shape[-1])
        x = rows.view(x.shape)
        for part in rows.split(chunk_tokens):
            y = block.norm2(part)
            part.add_(block.mlp(y)).add_(fusion.adapter_scale * fusion.mlp_adapter(y))
        return x

    @staticmethod
    def _block_in_bands(
        block: MultiScaleBlock,
        fusion: FusionLayer,
        x: torch.Tensor,
        text: torch.Tensor,
        update_text: bool,
        text_padding: torch.Tensor | None,
        chunk_tokens: int,
    ) -> tuple[torch.Tensor, torch.Tensor, None] | None:
        """Inference form of :meth:`_block` for a windowed block whose map the windows tile exactly: the
        norm, the pooled skip projection (at a stage change), the window attention, the cross adapter
        with the skip connection and the MLP part run on bands of whole window rows (about
        ``chunk_tokens`` tokens of each image, at least one window row), each written into the block's
        one output tensor. Nothing image-sized exists but the input, the output and the cross adapter's
        ``d/4``-wide ``f``; every token goes through the same ops as in :meth:`_block`. None if the block
        does not fit (global attention, padded windows): the caller then runs :meth:`_block`."""
        b, h, w, _ = x.shape
        ws = block.window_size
        q = block.q_stride[0] if block.q_stride else 1
        if ws == 0 or h % ws or w % ws or ws % q or (block.q_stride and block.q_stride[1] != q):
            return None
        rows = ws * max(1, chunk_tokens // (ws * w))  # input rows per band
        ho, wo, ws_out = h // q, w // q, ws // q
        out = x.new_empty(b, ho, wo, block.dim_out)
        shortcut = x if block.dim == block.dim_out else x.new_empty(b, ho, wo, block.dim_out)
        for r in range(0, h, rows):
            y = block.norm1(x[:, r : r + rows])
            n = y.shape[1] // q  # output rows of this band
            band = slice(r // q, r // q + n)
            if block.dim != block.dim_out:
                shortcut[:, band] = do_pool(block.proj(y), block.pool)
            windows, _ = window_partition(y, ws)
            out[:, band] = window_unpartition(block.attn(windows), ws_out, (n, wo), (n, wo))
        text = fusion.cross_adapter.forward_in_bands(
            out, text, shortcut, rows // q, update_text=update_text, text_padding=text_padding
        )
        del shortcut
        return FusedImageEncoder._mlp_in_place(block, fusion, out, chunk_tokens), text, None


def _in_chunks(fn, x: torch.Tensor, size: int, dim: int = 0) -> torch.Tensor:
    """``fn(x)`` for a ``fn`` that treats the slices of ``x`` along ``dim`` independently (the items of a
    batch, the rows of a per-pixel map), computed on ``size`` slices at a time into one output tensor."""
    out = None
    start = 0
    for part in x.split(size, dim=dim):
        y = fn(part)
        if out is None:
            shape = list(y.shape)
            shape[dim] = x.shape[dim]
            out = y.new_empty(shape)
        out.narrow(dim, start, part.shape[dim]).copy_(y)
        start += part.shape[dim]
        del y
    return out
