"""RS2-SAM2, the composition root (paper Fig. 2): ① union encoder → ③ prompts, ② fused image encoder
→ ④ SAM2 decoder. ``forward`` reads as the pipeline, one line per stage.

What trains is decided in one place, :meth:`RS2SAM2.apply_freeze_policy` (the official fine-tuning
recipe), and the optimiser's two learning-rate groups in :meth:`RS2SAM2.parameter_groups` (paper,
Implementation Details).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RS2SAM2Config
from .image_encoder import FusedImageEncoder
from .prompt_generator import MaskPromptGenerator
from .sam_decoder import SAMDecoder
from .union_encoder import UnionEncoder

FREEZE_POLICIES = ("official", "full")


@dataclass
class RS2SAM2Output:
    """Everything the model computes for a batch of B (image, sentence) pairs; S = SAM2 input side.

    logits: (B, 1, S, S) decoder logits upsampled to S; foreground iff ``logits > config.mask_threshold``.
    low_res_logits: (B, 1, S/4, S/4) decoder logits.
    pseudo_mask: (B, 1, 14, 14) MPG probabilities.
    pseudo_logits: (B, 1, 14, 14) the same before the sigmoid (read by the optional pseudo-mask loss).
    dense_prompt: (B, 1, S/4, S/4) the pseudo-mask upsampled, as fed to SAM2's mask input.
    fused_features: four (B, C_i, H_i, W_i) Hiera stage outputs after text fusion.
    text_weight: (B, 1) boundary-loss weight ``text2one(T[:, 0])``.
    iou_scores: (B, 1) SAM2 IoU head (not trained by the official recipe).
    object_score_logits: (B, 1) SAM2 object-score head (not trained by the official recipe).
    fusion_attentions: if requested, per stage (B, H_i, W_i, L) vision→text attention of its last block.
    """

    logits: torch.Tensor
    low_res_logits: torch.Tensor
    pseudo_mask: torch.Tensor
    dense_prompt: torch.Tensor
    fused_features: list[torch.Tensor]
    text_weight: torch.Tensor
    iou_scores: torch.Tensor
    object_score_logits: torch.Tensor
    pseudo_logits: torch.Tensor | None = field(default=None)
    fusion_attentions: list[torch.Tensor] | None = field(default=None)


class RS2SAM2Model(nn.Module):
    """RS2-SAM2, the math only. The public class :class:`rs2sam2.RS2SAM2` adds the Hub integration
    (``from_pretrained``, ``save_pretrained``, ``push_to_hub``; :mod:`rs2sam2.weights.pretrained`)."""

    def __init__(self, config: RS2SAM2Config) -> None:
        super().__init__()
        self.config = config
        u = config.union_encoder
        self.union_encoder = UnionEncoder(u)
        self.prompt_generator = MaskPromptGenerator(
            u.embed_dim,
            config.text_dim,
            num_heads=config.prompt_generator.num_heads,
            grid_size=u.grid_size,
            prompt_size=config.mask_input_size,
            antialias=config.prompt_generator.antialias,
        )
        self.text_proj = nn.Linear(u.embed_dim, config.text_dim)  # official text_feat_linear
        self.text_weight_head = nn.Linear(config.text_dim, 1)  # official text2one_linear
        self.image_encoder = FusedImageEncoder(config)
        self.sam_decoder = SAMDecoder(config)
        self.apply_freeze_policy()

    def forward(
        self,
        sam_pixels: torch.Tensor,
        union_pixels: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        output_attentions: bool = False,
        forced_prompt: torch.Tensor | None = None,
    ) -> RS2SAM2Output:
        """``sam_pixels`` (B, 3, S, S), ``union_pixels`` (B, 3, 224, 224), ``input_ids`` (B, L),
        ``attention_mask`` (B, L) (True/1 for real tokens).

        ``forced_prompt`` (training only, teacher forcing; not in the paper): a (B, 1, 14, 14) map whose
        finite entries replace the pseudo-mask *as SAM2's dense prompt* (samples whose map is NaN keep their
        own); the returned ``pseudo_mask`` / ``pseudo_logits`` stay the generator's own."""
        union = self.union_encoder(union_pixels, input_ids, attention_mask)
        prompts = self.prompt_generator(union.cls_token, union.patch_tokens)
        dense_prompt = prompts.dense_prompt
        if forced_prompt is not None:
            forced = forced_prompt.to(prompts.pseudo_mask.dtype)
            mixed = torch.where(torch.isnan(forced), prompts.pseudo_mask, forced)  # (B, 1, g, g)
            dense_prompt = self.prompt_generator.upsample(mixed)
        text = self.text_proj(union.text_tokens)  # (B, L, 256)
        # Pad tokens (a batch of sentences of mixed lengths) are hidden from the fusion layers' attention,
        # so that every sample gets what it gets alone, unpadded — the only case the official code runs.
        # (On the meta device — FLOP counting — the values are unknown: counted as unpadded.)
        padding = None
        if not attention_mask.is_meta and not bool(attention_mask.all()):
            padding = ~attention_mask.bool()
        # The mask decoder's reductions of the first two FPN levels run inside the image encoder, which
        # on the CPU computes those levels in bands of rows: their 256-channel maps never exist whole.
        mask_decoder = self.sam_decoder.mask_decoder
        image = self.image_encoder(
            sam_pixels,
            text,
            output_attentions=output_attentions,
            text_padding=padding,
            high_res_proj=[mask_decoder.conv_s0, mask_decoder.conv_s1],
        )
        decoded = self.sam_decoder(
            image.fpn_features,
            text,
            prompts.sparse_prompt,
            dense_prompt,
            text_padding=padding,
            high_res_features=image.high_res_features,
        )
        size = sam_pixels.shape[-2:]
        logits = F.interpolate(decoded.low_res_logits.float(), size, mode="bilinear", align_corners=False)
        return RS2SAM2Output(
            logits=logits,
            low_res_logits=decoded.low_res_logits,
            pseudo_mask=prompts.pseudo_mask,
            dense_prompt=dense_prompt,
            fused_features=image.trunk_features,
            text_weight=self.text_weight_head(text[:, 0]).float(),
            iou_scores=decoded.iou_scores,
            object_score_logits=decoded.object_score_logits,
            pseudo_logits=prompts.pseudo_logits,
            fusion_attentions=image.attentions,
        )

    # ------------------------------------------------------------------------------- what trains
    def apply_freeze_policy(self, policy: str = "official") -> None:
        """Decide what trains. ``"official"`` (the official fine-tuning recipe): SAM2's Hiera
        trunk and FPN neck frozen except the BHFM layers; the union encoder, prompt generator,
        projections, prompt encoder and mask decoder trained. ``"full"``: everything trains (training
        from scratch, e.g. the bundled synthetic-scene model, where no pretrained trunk exists)."""
        if policy not in FREEZE_POLICIES:
            raise ValueError(f"freeze policy must be one of {FREEZE_POLICIES}, got {policy!r}")
        for p in self.parameters():
            p.requires_grad_(True)
        if policy == "official":
            for p in self.image_encoder.trunk.parameters():
                p.requires_grad_(False)
            for p in self.image_encoder.neck.parameters():
                p.requires_grad_(False)

    def high_lr_parameter_names(self) -> list[str]:
        """Names of the parameters in the higher learning-rate group: BHFM (BL + BC) and the MPG."""
        prefixes = (
            "image_encoder.fusion_layers.",
            "sam_decoder.text_fusion.",
            "prompt_generator.class_attn.",
            "prompt_generator.mask_linear.",
            "prompt_generator.mask_product.",
        )
        return [n for n, p in self.named_parameters() if p.requires_grad and n.startswith(prefixes)]

    def parameter_groups(self, base_lr: float, fusion_lr: float) -> list[dict]:
        """Two AdamW groups as the official training (paper, Implementation Details): BHFM + MPG at
        ``fusion_lr``, the rest of the trainable parameters at ``base_lr``."""
        high = set(self.high_lr_parameter_names())
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        return [
            {"params": [p for n, p in named if n in high], "lr": fusion_lr, "name": "fusion_mpg"},
            {"params": [p for n, p in named if n not in high], "lr": base_lr, "name": "base"},
        ]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
