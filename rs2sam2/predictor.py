"""The one obvious entry point: ``RS2SAM2Predictor.from_pretrained(...).predict(image, text)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .modeling import RS2SAM2, RS2SAM2Output
from .processing import ImageInput, RS2SAM2Processor

# The model bundled with the package's repository (trained on synthetic scenes; see demo/README.md).
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "demo" / "rs2sam2-tiny-synthetic"


@dataclass
class Prediction:
    """One (image, sentence) result, as numpy arrays.

    mask: (H, W) bool at the image's native size.
    score: mean foreground probability ``sigmoid(2x − 1)`` over the predicted mask (0 if empty) — the
        probability the official two-channel output assigns; in [0, 1].
    logits: (H, W) float32 decoder logits at native size (foreground iff > threshold).
    pseudo_mask: (g, g) MPG probabilities (14×14 for the 224² union encoder).
    dense_prompt: (S/4, S/4) the pseudo-mask as SAM2's dense prompt.
    fused_features: four (C_i, H_i, W_i) Hiera stage outputs after text fusion.
    iou_score, object_score: SAM2's IoU prediction and object-score logit (untrained heads in the
        official recipe; reported, not used).
    fusion_attentions: per stage (H_i, W_i, L) vision→text attention, when requested.
    """

    mask: np.ndarray
    score: float
    logits: np.ndarray
    pseudo_mask: np.ndarray
    dense_prompt: np.ndarray
    fused_features: list[np.ndarray]
    iou_score: float
    object_score: float
    threshold: float
    text: str
    fusion_attentions: list[np.ndarray] | None = None


class RS2SAM2Predictor:
    """Runs :class:`RS2SAM2` on images and sentences under ``torch.inference_mode``."""

    def __init__(
        self,
        model: RS2SAM2,
        processor: RS2SAM2Processor,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else model.device
        self.dtype = dtype or model.dtype
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path | None = None,
        *,
        subfolder: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs,
    ) -> RS2SAM2Predictor:
        """Load a model folder or Hub repo (ours or the official release); default: the bundled model."""
        source = DEFAULT_MODEL if path_or_repo is None else path_or_repo
        model = RS2SAM2.from_pretrained(source, subfolder=subfolder, **kwargs)
        processor = RS2SAM2Processor.from_pretrained(source, model.config, subfolder=subfolder)
        return cls(model, processor, device=device, dtype=dtype)

    @torch.inference_mode()
    def forward(
        self,
        images: ImageInput | Sequence[ImageInput],
        texts: str | Sequence[str],
        bands: Sequence[int] | None = None,
        output_attentions: bool = False,
    ) -> tuple[RS2SAM2Output, list[tuple[int, int]]]:
        """Raw model output for a batch, plus the native (H, W) of each image."""
        inputs = self.processor(images, texts, bands=bands)
        out = self.model(**inputs.model_inputs(self.device, self.dtype), output_attentions=output_attentions)
        return out, inputs.original_sizes

    def predict(
        self,
        image: ImageInput,
        text: str,
        threshold: float | None = None,
        bands: Sequence[int] | None = None,
        output_attentions: bool = False,
    ) -> Prediction:
        """Segment the object that ``text`` refers to in ``image``."""
        return self.predict_batch(image, [text], threshold, bands, output_attentions)[0]

    def predict_batch(
        self,
        image: ImageInput | Sequence[ImageInput],
        texts: Sequence[str],
        threshold: float | None = None,
        bands: Sequence[int] | None = None,
        output_attentions: bool = False,
    ) -> list[Prediction]:
        """Several sentences for one image (or one sentence per image), in one batched forward."""
        if isinstance(texts, str):
            texts = [texts]
        thr = self.model.config.mask_threshold if threshold is None else float(threshold)
        out, sizes = self.forward(image, texts, bands=bands, output_attentions=output_attentions)
        logits = self.processor.post_process_masks(out.logits, sizes, return_logits=True)
        preds = []
        for i, text in enumerate(texts):
            x = logits[i]
            mask = x > thr
            prob = torch.sigmoid(2.0 * x - 1.0)  # p_fg of softmax([1 − x, x])
            score = float(prob[mask].mean()) if bool(mask.any()) else 0.0
            attn = None
            if out.fusion_attentions is not None:
                attn = [a[i].float().cpu().numpy() for a in out.fusion_attentions]
            preds.append(
                Prediction(
                    mask=mask.cpu().numpy(),
                    score=score,
                    logits=x.float().cpu().numpy(),
                    pseudo_mask=out.pseudo_mask[i, 0].float().cpu().numpy(),
                    dense_prompt=out.dense_prompt[i, 0].float().cpu().numpy(),
                    fused_features=[f[i].float().cpu().numpy() for f in out.fused_features],
                    iou_score=float(out.iou_scores[i, 0]),
                    object_score=float(out.object_score_logits[i, 0]),
                    threshold=thr,
                    text=text,
                    fusion_attentions=attn,
                )
            )
        return preds
