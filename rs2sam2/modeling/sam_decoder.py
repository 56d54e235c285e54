"""④ SAM2 prompt encoder + mask decoder with the post-encoding text fusion "BC" (paper Sec. 3.2,
Bidirectional Hierarchical Fusion Module, and Sec. 3.3, the prompts from the Mask Prompt Generator).

Steps, as the official model runs them for one image:

1. ``conv_s0`` / ``conv_s1`` reduce the two high-resolution FPN levels (SAM2 ``forward_image``);
   ``no_mem_embed`` is added to the 64×64 image embedding (SAM2's single-image convention).
2. Prompts: the dense prompt is SAM2's ``mask_downscaling`` of the MPG probability map; the only sparse
   token is the MPG's projected class token (no point or padding embedding).
3. BC: ``E ← E ⊙ MHA(q = E + PE, k = v = T)`` — multiplicative, with the prompt encoder's dense PE on the
   queries and the *original* projected text tokens ``T``.
4. SAM2's stock mask decoder with ``multimask_output=False`` (mask token 0).

The ``sam2`` modules keep their names (``prompt_encoder`` ← ``sam_prompt_encoder``, ``mask_decoder`` ←
``sam_mask_decoder``) so SAM2 checkpoints load by prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.modeling.sam.prompt_encoder import PromptEncoder
from sam2.modeling.sam.transformer import TwoWayTransformer
from torch import nn

from ..config import RS2SAM2Config
from .attention import PackedCrossAttention


@dataclass
class DecoderOutput:
    """``low_res_logits`` (B, 1, S/4, S/4); ``iou_scores`` (B, 1); ``object_score_logits`` (B, 1)."""

    low_res_logits: torch.Tensor
    iou_scores: torch.Tensor
    object_score_logits: torch.Tensor


class PostEncodingFusion(nn.Module):
    """BC: multiplicative cross-attention of the image embedding to the text tokens."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attn = PackedCrossAttention(dim, num_heads)

    def forward(
        self,
        image: torch.Tensor,
        pos: torch.Tensor,
        text: torch.Tensor,
        text_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``image`` (B, C, H, W), ``pos`` (1, C, H, W), ``text`` (B, L, C) → (B, C, H, W);
        ``text_padding`` (B, L) True at pad tokens, not attended to."""
        b, c, h, w = image.shape
        e = image.flatten(2).transpose(1, 2)  # (B, HW, C)
        q = e + pos.flatten(2).transpose(1, 2)  # (B, HW, C)
        text = text.to(e.dtype)
        e = e * self.attn(q, text, text, key_padding_mask=text_padding)[0]
        return e.transpose(1, 2).reshape(b, c, h, w)


class SAMDecoder(nn.Module):
    def __init__(self, config: RS2SAM2Config) -> None:
        super().__init__()
        d, dec = config.text_dim, config.decoder
        self.prompt_encoder = PromptEncoder(
            embed_dim=d,
            image_embedding_size=(config.embedding_size, config.embedding_size),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=dec.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder(
            transformer_dim=d,
            transformer=TwoWayTransformer(
                depth=dec.transformer_depth,
                embedding_dim=d,
                num_heads=dec.transformer_num_heads,
                mlp_dim=dec.transformer_mlp_dim,
            ),
            num_multimask_outputs=dec.num_multimask_outputs,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
            use_high_res_features=dec.use_high_res_features,
            iou_prediction_use_sigmoid=dec.iou_prediction_use_sigmoid,
            pred_obj_scores=dec.pred_obj_scores,
            pred_obj_scores_mlp=dec.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=dec.use_multimask_token_for_obj_ptr,
        )
        self.text_fusion = PostEncodingFusion(d, dec.text_fusion_heads)
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.trunc_normal_(self.no_mem_embed, std=0.02)  # as SAM2Base

    def dense_pe(self) -> torch.Tensor:
        """SAM2's random-Fourier dense positional encoding (1, C, h, w), always computed in fp32.

        Same formula as ``PromptEncoder.get_dense_pe``, which breaks when the module is cast to bf16
        (it multiplies an fp32 grid with the buffer): ``[sin, cos](2π · (2·xy − 1) @ G)``.
        """
        gaussian = self.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.float()  # (2, C/2)
        h, w = self.prompt_encoder.image_embedding_size
        grid = torch.ones(h, w, device=gaussian.device)
        y = (grid.cumsum(0) - 0.5) / h
        x = (grid.cumsum(1) - 0.5) / w
        coords = 2 * math.pi * ((2 * torch.stack([x, y], dim=-1) - 1) @ gaussian)  # (h, w, C/2)
        return torch.cat([coords.sin(), coords.cos()], dim=-1).permute(2, 0, 1).unsqueeze(0)

    def forward(
        self,
        fpn_features: list[torch.Tensor | None],
        text: torch.Tensor,
        sparse_prompt: torch.Tensor,
        dense_prompt: torch.Tensor,
        text_padding: torch.Tensor | None = None,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> DecoderOutput:
        """``fpn_features``: 3 levels (B, 256, S/4·2^-i, ·); ``text`` (B, L, 256); ``sparse_prompt``
        (B, 1, 256); ``dense_prompt`` (B, 1, S/4, S/4) probabilities. ``high_res_features``: the first two
        levels already reduced by the mask decoder's ``conv_s0`` / ``conv_s1`` (256 → 32, 64 channels, for
        its upscaling path), e.g. by the image encoder, which can do it without keeping their 256-channel
        maps; ``fpn_features[:2]`` are then not read."""
        md = self.mask_decoder
        if high_res_features is None:
            # sam2's FPN computes its top-down path in fp32; bring every level to the decoder's dtype.
            high_res_features = [
                proj(f.to(self.no_mem_embed.dtype)) for proj, f in zip((md.conv_s0, md.conv_s1), fpn_features)
            ]
        image = fpn_features[2].to(self.no_mem_embed.dtype)
        image = image + self.no_mem_embed.view(1, -1, 1, 1)  # (B, 256, S/16, S/16)
        pos = self.dense_pe().to(image.dtype)  # (1, 256, S/16, S/16)
        image = self.text_fusion(image, pos, text, text_padding)
        dense = self.prompt_encoder.mask_downscaling(dense_prompt.to(image.dtype))  # (B, 256, S/16, S/16)
        masks, iou, _, obj = md(
            image_embeddings=image,
            image_pe=pos,
            sparse_prompt_embeddings=sparse_prompt.to(image.dtype),
            dense_prompt_embeddings=dense,
            multimask_output=False,
            repeat_image=False,
            high_res_features=list(high_res_features),
        )
        return DecoderOutput(low_res_logits=masks, iou_scores=iou, object_score_logits=obj)
