"""② CPU inference of the fused image encoder in bands of rows: the memory side of
:class:`~.image_encoder.FusedImageEncoder`, not its math.

At inference (no autograd, eval mode, on the CPU) each windowed block runs on bands of window rows of about
:attr:`BandedInference.inference_chunk_tokens` tokens (norm, skip projection, window attention, cross
adapter, MLP + MLP adapter: :meth:`BandedInference._block_in_bands`), and the first FPN levels run with
SAM2's ``conv_s0``/``conv_s1`` on bands of rows (:meth:`BandedInference._level_in_bands`), so that no
intermediate of a 1024² image's first stage exists whole (its MLP hidden layer alone: 151 MB; the
256-channel first FPN level: 64 MB). Every token is computed by the same ops as in one piece, so the
outputs equal the one-piece path's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from sam2.modeling.backbones.hieradet import MultiScaleBlock, do_pool
from sam2.modeling.backbones.utils import window_partition, window_unpartition
from torch import nn

from .fusion import FusionLayer


class BandedInference:
    """The banded inference paths of the fused image encoder (a base class of it)."""

    training: bool
    # Tokens per band; 0 turns the bands off. The count is for 4-byte activations; 16-bit ones get twice as
    # many per band (the same bytes: bf16 matmuls are fast enough that smaller bands cost more in calls than
    # they save). CPU only: on a GPU the activations are small next to its memory, and bands would turn
    # every op into dozens of small kernel launches.
    inference_chunk_tokens: int = 2048

    def _chunk_tokens(self, x: torch.Tensor) -> int:
        """Tokens per band at inference for activations like ``x``; 0 (one piece) while training, with
        autograd, or off the CPU (and on ``meta``, where FLOPs are counted: the same either way)."""
        if torch.is_grad_enabled() or self.training or not self.inference_chunk_tokens:
            return 0
        if x.device.type != "cpu":
            return 0
        return self.inference_chunk_tokens * max(1, 4 // x.dtype.itemsize)

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
        """Inference form of ``FusedImageEncoder._block`` for a windowed block whose map the windows tile
        exactly: the norm, the pooled skip projection (at a stage change), the window attention, the cross
        adapter with the skip connection and the MLP part run on bands of whole window rows (about
        ``chunk_tokens`` tokens of each image, at least one window row), each written into the block's
        one output tensor. Nothing image-sized exists but the input, the output and the cross adapter's
        ``d/4``-wide ``f``; every token goes through the same ops as in ``_block``. None if the block
        does not fit (global attention, padded windows): the caller then runs ``_block``."""
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
        return BandedInference._mlp_in_place(block, fusion, out, chunk_tokens), text, None

    @staticmethod
    def _level_in_bands(
        lateral: nn.Module, project: nn.Module, feature: torch.Tensor, chunk_tokens: int
    ) -> torch.Tensor:
        """``project(lateral(feature))`` (in ``project``'s weights' dtype) for an FPN level that takes no
        top-down input and gives none, on bands of rows of ``feature`` (B, C, H, W): the level's
        256-channel map (64 MB for a 1024² image's first level) never exists whole."""
        return in_chunks(
            lambda f: project(lateral(f).to(project.weight.dtype)),
            feature,
            max(1, chunk_tokens // feature.shape[-1]),
            dim=2,  # rows
        )


def in_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int, dim: int = 0
) -> torch.Tensor:
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
