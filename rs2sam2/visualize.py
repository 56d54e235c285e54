"""Pictures of what RS2-SAM2 does: mask overlays, prompt heatmaps, fused-feature PCA, fusion attention.

Shared by ``app.py`` and the tutorial notebooks. Each helper takes numpy arrays (or a PIL image) and returns
an ``(H, W, 3)`` uint8 RGB array, so the same picture can be shown by Gradio, saved with PIL or drawn into a
matplotlib axis. :func:`plot_prediction` puts the three stages of the paper's Fig. 2 side by side: the mask
prompt generator's pseudo-mask (paper Sec. 3.3, the dense prompt SAM2 receives), the text-fused Hiera
features (Sec. 3.2, BHFM) and the final SAM2 mask.

The model always sees the image at native resolution; :func:`downscale_for_display` only shrinks pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .data.masks import encode_rle, mask_area, mask_bbox

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .predictor import Prediction

__all__ = [
    "DEFAULT_MASK_COLOR",
    "DISPLAY_MAX_SIDE",
    "as_rgb_array",
    "colorize",
    "display_size",
    "downscale_for_display",
    "contrasting_color",
    "heatmap_overlay",
    "highlight_mask",
    "mask_contour",
    "normalize_map",
    "overlay_mask",
    "pca_rgb",
    "plot_prediction",
    "resize_map",
    "result_dict",
    "token_attention",
]

RGB = tuple[int, int, int]

DEFAULT_MASK_COLOR: RGB = (255, 48, 48)
#: Fill colours :func:`highlight_mask` picks from: red, cyan, yellow, magenta, green, blue.
MASK_PALETTE: tuple[RGB, ...] = (
    (255, 48, 48),
    (0, 230, 255),
    (255, 230, 0),
    (255, 0, 220),
    (40, 255, 60),
    (40, 90, 255),
)
#: Longest side of pictures shown in the app; larger images are shrunk for display only.
DISPLAY_MAX_SIDE = 1024

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


# --------------------------------------------------------------------------------------------- images
def as_rgb_array(image: Any) -> np.ndarray:
    """Any image the predictor accepts (PIL, path, (H, W[, C]) array of any dtype) → (H, W, 3) uint8."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    from .processing import to_rgb

    return np.asarray(to_rgb(image))


def display_size(height: int, width: int, max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is at most ``max_side``, aspect ratio kept (never enlarged)."""
    longest = max(height, width)
    if longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def downscale_for_display(
    image: np.ndarray, max_side: int = DISPLAY_MAX_SIDE, resample: str = "bilinear"
) -> np.ndarray:
    """Shrink an (H, W) or (H, W, 3) array for display (bool masks: nearest); small ones are returned as is.

    Only for pictures: predictions are always made and exported at the image's native size.
    """
    h, w = image.shape[:2]
    size = display_size(h, w, max_side)
    if size == (h, w):
        return image
    if image.dtype == np.bool_:
        small = Image.fromarray(image.astype(np.uint8)).resize(size[::-1], Image.NEAREST)
        return np.asarray(small).astype(bool)
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize(size[::-1], _RESAMPLE[resample]))
    return resize_map(image, size, resample=resample)


def resize_map(values: np.ndarray, size: tuple[int, int], resample: str = "bilinear") -> np.ndarray:
    """Resize a float (h, w) map to ``size`` = (H, W) (PIL, float32 throughout)."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape == tuple(size):
        return values
    im = Image.fromarray(values, mode="F").resize((size[1], size[0]), _RESAMPLE[resample])
    return np.asarray(im, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- masks
def mask_contour(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Inner boundary of a boolean (H, W) mask: mask pixels within ``width`` pixels (4-neighbourhood) of
    the background or the image border."""
    mask = np.asarray(mask, dtype=bool)
    inner = mask.copy()
    for _ in range(max(0, width)):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (
            inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        )  # erosion by a plus-shaped element
    return mask & ~inner


def overlay_mask(
    image: Any,
    mask: np.ndarray,
    color: RGB = DEFAULT_MASK_COLOR,
    alpha: float = 0.5,
    contour: bool = True,
    contour_color: RGB | None = None,
    contour_width: int = 2,
) -> np.ndarray:
    """Blend ``color`` into the masked pixels: ``round((1 − alpha)·pixel + alpha·color)``; the mask's
    inner boundary is painted solid ``contour_color`` (default: ``color``). Returns (H, W, 3) uint8."""
    rgb = as_rgb_array(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask of shape {mask.shape} does not match the image's {rgb.shape[:2]}")
    out = rgb.copy()
    c = np.asarray(color, dtype=np.float32)
    blended = (1.0 - alpha) * rgb[mask].astype(np.float32) + alpha * c
    out[mask] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    if contour and contour_width > 0:
        out[mask_contour(mask, contour_width)] = contour_color if contour_color is not None else color
    return out


def contrasting_color(pixels: np.ndarray, palette: Sequence[RGB] = MASK_PALETTE) -> RGB:
    """The colour of ``palette`` farthest (Euclidean, in RGB) from the mean of (N, 3) ``pixels``; the first
    one when there are no pixels."""
    pixels = np.asarray(pixels, dtype=np.float32).reshape(-1, 3)
    if len(pixels) == 0:
        return tuple(palette[0])
    distances = np.linalg.norm(np.asarray(palette, np.float32) - pixels.mean(0), axis=1)
    return tuple(int(v) for v in palette[int(np.argmax(distances))])


def highlight_mask(image: Any, mask: np.ndarray, alpha: float = 0.45, width: int | None = None) -> np.ndarray:
    """A mask overlay that stays visible on any colour: the mask is tinted with the palette colour that
    contrasts most with the object (:func:`contrasting_color`), and outlined twice, white on the inside of
    its boundary and black on the outside (``width`` pixels each; default 1 up to 767 pixels a side, then
    one more per 384), so the outline shows on dark and on bright surroundings alike. Returns (H, W, 3)
    uint8."""
    rgb = as_rgb_array(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask of shape {mask.shape} does not match the image's {rgb.shape[:2]}")
    if width is None:
        width = max(1, max(mask.shape) // 384)
    color = contrasting_color(rgb[mask])
    out = overlay_mask(rgb, mask, color=color, alpha=alpha, contour=False)
    if width > 0:
        out[_dilate(mask, width) & ~mask] = (0, 0, 0)
        out[mask_contour(mask, width)] = (255, 255, 255)
    return out


def _dilate(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels (4-neighbourhood) of a boolean (H, W) mask, the mask included."""
    grown = np.asarray(mask, dtype=bool).copy()
    for _ in range(width):
        padded = np.pad(grown, 1, constant_values=False)
        grown = grown | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return grown


def result_dict(prediction: Prediction, *, model_id: str, expression: str | None = None) -> dict[str, Any]:
    """JSON-able summary of a prediction: RLE mask, ``bbox`` [x, y, w, h], ``area``, ``score``,
    ``expression``, ``model_id``, ``threshold`` (plus image size and SAM2's auxiliary head outputs)."""
    mask = prediction.mask
    return {
        "expression": prediction.text if expression is None else expression,
        "model_id": model_id,
        "image_size": [int(mask.shape[0]), int(mask.shape[1])],
        "threshold": float(prediction.threshold),
        "score": float(prediction.score),
        "area": mask_area(mask),
        "bbox": mask_bbox(mask),
        "mask": encode_rle(mask),
        "iou_score": float(prediction.iou_score),
        "object_score": float(prediction.object_score),
    }


# -------------------------------------------------------------------------------------------- heatmaps
def normalize_map(values: np.ndarray) -> np.ndarray:
    """Min–max scale the finite values to [0, 1]; non-finite values and constant maps become 0."""
    v = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros_like(v)
    lo, hi = float(v[finite].min()), float(v[finite].max())
    if hi <= lo:
        return np.zeros_like(v)
    return np.where(finite, (v - lo) / (hi - lo), 0.0).astype(np.float32)


def colorize(values: np.ndarray, cmap: str = "inferno", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Map a float (H, W) array through a matplotlib colormap → (H, W, 3) uint8."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float32)
    t = np.clip((v - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    rgba = colormaps[cmap](np.nan_to_num(t), bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def heatmap_overlay(
    image: Any,
    values: np.ndarray,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmin: float = 0.0,
    vmax: float = 1.0,
    resample: str = "bilinear",
) -> np.ndarray:
    """A probability map of any size (14×14 pseudo-mask, S/4 dense prompt, attention) resized to the image
    and blended over it: ``(1 − alpha)·image + alpha·cmap(values)``. ``resample="nearest"`` keeps the
    grid visible. Returns (H, W, 3) uint8."""
    rgb = as_rgb_array(image)
    resized = resize_map(values, rgb.shape[:2], resample=resample)
    heat = colorize(resized, cmap=cmap, vmin=vmin, vmax=vmax).astype(np.float32)
    out = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ feature pictures
def pca_rgb(features: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Top three principal components of a (C, H, W) feature map as an (H, W, 3) uint8 picture.

    Pixels are the samples, channels the variables (centred per channel). Each component is scaled to
    [0, 255] between its ``low``/``high`` percentiles, which keeps a few extreme pixels from washing the
    picture out. Signs are fixed so that each component's largest-magnitude loading is positive, so the
    same features always give the same colours. Components beyond the rank of the data are black.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 3:
        raise ValueError(f"expected a (C, H, W) feature map, got shape {f.shape}")
    c, h, w = f.shape
    x = f.reshape(c, h * w)  # (C, HW), contiguous: the scatter matrix below is one fast GEMM
    x = x - x.mean(axis=1, keepdims=True)
    out = np.zeros((h * w, 3), dtype=np.float64)
    if x.size and np.abs(x).max() > 0:
        # eigenvectors of the (C, C) scatter matrix: the principal axes, far cheaper than an SVD of (HW, C)
        eigval, eigvec = np.linalg.eigh(x @ x.T)
        eigval, eigvec = eigval[::-1], eigvec[:, ::-1]  # descending variance
        for i in range(min(3, c)):
            if eigval[i] <= eigval[0] * 1e-10:  # numerically absent component: leave it black
                continue
            v = eigvec[:, i]
            v = v if v[np.argmax(np.abs(v))] > 0 else -v
            score = v @ x  # (HW,)
            lo, hi = np.percentile(score, [low, high])
            if hi <= lo:
                lo, hi = score.min(), score.max()
            if hi > lo:
                out[:, i] = np.clip((score - lo) / (hi - lo), 0.0, 1.0)
    return np.round(out * 255.0).astype(np.uint8).reshape(h, w, 3)


def token_attention(
    attention: np.ndarray, token: int | None = None, valid: Sequence[bool] | np.ndarray | None = None
) -> np.ndarray:
    """One text token's attention map from a fusion layer's (H, W, L) vision→text attention.

    ``token`` indexes the L text positions; ``None`` averages over the real tokens (``valid``, a length-L
    boolean mask; default: all). Returns the float32 (H, W) map (not normalised).
    """
    a = np.asarray(attention, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"expected an (H, W, L) attention map, got shape {a.shape}")
    n = a.shape[-1]
    if token is not None:
        if not -n <= token < n:
            raise ValueError(f"token index {token} out of range for {n} text tokens")
        return a[..., token]
    keep = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if keep.shape != (n,) or not keep.any():
        raise ValueError(f"valid must be a length-{n} boolean mask with at least one True")
    return a[..., keep].mean(axis=-1)


# ------------------------------------------------------------------------------------------ the figure
def plot_prediction(
    image: Any,
    prediction: Prediction,
    stage: int | None = None,
    token: int | None = None,
    max_side: int = 512,
) -> Figure:
    """Side-by-side matplotlib figure: pseudo-mask prompt (14×14 and dense), fused features (PCA of one
    Hiera ``stage`` or, with ``None``, all four), the fusion attention of ``token`` (mean over tokens when
    ``None``; shown when the prediction carries attentions) and the final mask with its score.

    Built on a bare :class:`~matplotlib.figure.Figure` (no pyplot state): safe in threads, shown inline by
    Jupyter.
    """
    from matplotlib.figure import Figure

    rgb = downscale_for_display(as_rgb_array(image), max_side)
    mask = downscale_for_display(np.asarray(prediction.mask, dtype=bool), max_side)
    stages = range(len(prediction.fused_features)) if stage is None else [stage]
    panels: list[tuple[str, np.ndarray]] = [
        ("pseudo-mask (14×14)", heatmap_overlay(rgb, prediction.pseudo_mask, resample="nearest")),
        ("dense prompt", heatmap_overlay(rgb, prediction.dense_prompt)),
    ]
    h, w = rgb.shape[:2]
    for i in stages:
        feats = prediction.fused_features[i]
        # the model sees the image squashed to a square: stretch the grid back to the image's aspect
        pca = np.asarray(Image.fromarray(pca_rgb(feats)).resize((w, h), Image.NEAREST))
        panels.append((f"fused stage {i + 1} ({feats.shape[1]}×{feats.shape[2]})", pca))
    if prediction.fusion_attentions:
        i = len(prediction.fusion_attentions) - 1 if stage is None else stage
        att = normalize_map(token_attention(prediction.fusion_attentions[i], token))
        label = "mean over tokens" if token is None else f"token {token}"
        panels.append(
            (f"text→image attention, stage {i + 1} ({label})", heatmap_overlay(rgb, att, resample="nearest"))
        )
    panels.append((f"mask (score {prediction.score:.2f})", overlay_mask(rgb, mask)))
    fig = Figure(figsize=(3.2 * len(panels), 3.6), layout="constrained")
    for ax, (title, picture) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"“{prediction.text}”", fontsize=11)
    return fig
