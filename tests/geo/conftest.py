"""Helpers of the geo tests: reading a written mask back, a predictor output that marks everything."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rs2sam2.predictor import Prediction

try:
    import rasterio
except ImportError:  # the geo test modules skip themselves (pytest.importorskip)
    rasterio = None


def read_mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _all_foreground(image: np.ndarray, text: str) -> Prediction:
    logits = np.full(image.shape[:2], 5.0, np.float32)
    return Prediction(
        mask=logits > 0.5,
        score=1.0,
        logits=logits,
        pseudo_mask=np.zeros((1, 1)),
        dense_prompt=np.zeros((1, 1)),
        fused_features=[],
        iou_score=0.0,
        object_score=0.0,
        threshold=0.5,
        text=text,
    )
