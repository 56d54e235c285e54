"""Processing: images and sentences in, model tensors out; logits back to masks at native size.

Images, as the official code prepares them: any PIL image or numpy array is first made 8-bit RGB
(:func:`to_rgb`), then resized *without* keeping the aspect ratio (PIL bilinear, as torchvision's ``Resize``
on a PIL image) to S×S for SAM2 and 224×224 for the union encoder, scaled to [0, 1] and normalised with
ImageNet mean/std.

Text, the union encoder's input: XLM-R sentencepiece ids ``[<s>, …, </s>]``, right-padded with the unk id
3, attention mask = ids ≠ 3 (the official convention; see :mod:`rs2sam2.text`).

Masks: logits (B, 1, S, S) are bilinearly resized to each image's (H, W) and thresholded at
``config.mask_threshold`` (0.5 on the logit, the official ``argmax([1 − x, x])``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Unpack

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import RS2SAM2Config
from .images import load_image
from .pixel_budget import check_pixels

if TYPE_CHECKING:
    from .weights.sources import SourceOptions

ImageInput = Image.Image | np.ndarray | str | Path

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def stretch_to_uint8(array: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Linear percentile stretch of any numeric (H, W[, C]) array to uint8, per band.

    Non-finite values are ignored for the percentiles and become 0. A constant band maps to 0.
    """
    a = np.asarray(array, dtype=np.float64)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[..., None]
    out = np.zeros(a.shape, dtype=np.uint8)
    for c in range(a.shape[-1]):
        band = a[..., c]
        finite = np.isfinite(band)
        if not finite.any():
            continue
        lo, hi = np.percentile(band[finite], [low, high])
        if hi <= lo:
            hi = lo + 1.0
        scaled = np.clip((band - lo) / (hi - lo), 0.0, 1.0) * 255.0
        out[..., c] = np.where(finite, np.round(scaled), 0).astype(np.uint8)
    return out[..., 0] if squeeze else out


def to_rgb(
    image: ImageInput, bands: Sequence[int] | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Convert an image to 8-bit RGB PIL.

    Accepts a path, a PIL image in any mode (L, P, RGBA, CMYK, I;16, I, F, …) or a numpy array
    (H, W) / (H, W, C) of any numeric dtype. 8-bit data is kept as is; 16-bit, 32-bit and float data are
    percentile-stretched per band (:func:`stretch_to_uint8`). Grayscale is repeated to three channels;
    an alpha channel is dropped. Arrays with other than 1, 3 or 4 channels need ``bands`` (0-based
    indices of the three bands to show as R, G, B). Images over the pixel budget (``max_pixels``, see
    :func:`rs2sam2.images.load_image`) raise :class:`~rs2sam2.pixel_budget.ImageTooLargeError`.
    """
    if isinstance(image, (str, Path)):
        image = load_image(image, max_pixels)
    if isinstance(image, Image.Image):
        check_pixels(*image.size, max_pixels=max_pixels)
        if bands is None and image.mode in ("RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr", "1", "PA"):
            return image.convert("RGB") if image.mode not in ("RGBA", "LA", "PA") else _drop_alpha(image)
        array = np.asarray(image)
    else:
        array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and min(array.shape[1:]) > 4:
        array = np.moveaxis(array, 0, -1)  # (C, H, W) → (H, W, C); (H, W, C) wins when ambiguous
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {tuple(np.shape(image))}")
    check_pixels(array.shape[1], array.shape[0], max_pixels=max_pixels)
    c = array.shape[-1]
    if bands is not None:
        bands = list(bands)
        if len(bands) not in (1, 3) or any(not 0 <= b < c for b in bands):
            raise ValueError(f"bands must be 1 or 3 indices in [0, {c - 1}], got {bands}")
        array = array[..., bands]
    elif c == 4:
        array = array[..., :3]
    elif c not in (1, 3):
        raise ValueError(
            f"image has {c} bands; choose the three to use as RGB with bands=(r, g, b) (0-based)"
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = stretch_to_uint8(array)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def _drop_alpha(image: Image.Image) -> Image.Image:
    return image.convert("RGBA").convert("RGB") if image.mode != "RGB" else image


@dataclass
class ProcessorOutput:
    """``sam_pixels`` (B, 3, S, S), ``union_pixels`` (B, 3, 224, 224), ``input_ids`` (B, L),
    ``attention_mask`` (B, L) bool, ``original_sizes``: (H, W) of every image."""

    sam_pixels: torch.Tensor
    union_pixels: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    original_sizes: list[tuple[int, int]]

    def model_inputs(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Keyword arguments for ``RS2SAM2.forward``."""
        return {
            "sam_pixels": self.sam_pixels.to(device=device, dtype=dtype),
            "union_pixels": self.union_pixels.to(device=device, dtype=dtype),
            "input_ids": self.input_ids.to(device),
            "attention_mask": self.attention_mask.to(device),
        }


class RS2SAM2Processor:
    """Turns (image, sentence) pairs into :class:`~rs2sam2.RS2SAM2` inputs and logits into masks.

    ``max_pixels``: the pixel budget of every image (:mod:`rs2sam2.pixel_budget`; ``None``: the
    ``RS2SAM2_MAX_PIXELS`` environment variable, read at each call, else 8192²).
    """

    def __init__(self, config: RS2SAM2Config, tokenizer: Any, max_pixels: int | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.max_pixels = max_pixels
        from .text import validate_tokenizer

        u = config.union_encoder
        validate_tokenizer(
            tokenizer, min_vocab_size=config.tokenizer.min_vocab_size, max_vocab_size=u.vocab_size
        )

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path,
        config: RS2SAM2Config,
        subfolder: str | None = None,
        **where: Unpack[SourceOptions],
    ) -> RS2SAM2Processor:
        """Load the tokenizer saved with a model (local folder or Hub id) and validate it. ``subfolder``
        and ``where`` (``revision``, ``token``, ``cache_dir``, ``force_download``, ``local_files_only``):
        where its files come from, as for the model's weights
        (:class:`rs2sam2.weights.sources.SourceOptions`)."""
        from .text import load_tokenizer

        tok = load_tokenizer(
            path_or_repo,
            min_vocab_size=config.tokenizer.min_vocab_size,
            max_vocab_size=config.union_encoder.vocab_size,
            subfolder=subfolder,
            **where,
        )
        return cls(config, tok)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the tokenizer files, ``sentencepiece.bpe.model`` included (the released layout; recent
        transformers versions do not write it themselves)."""
        import shutil

        from .text import SPM_FILENAME

        folder = Path(folder)
        self.tokenizer.save_pretrained(str(folder))
        source = getattr(self.tokenizer, "vocab_file", None)
        if source and Path(source).is_file() and not (folder / SPM_FILENAME).exists():
            shutil.copyfile(source, folder / SPM_FILENAME)

    # --------------------------------------------------------------------------------- inputs
    @property
    def max_text_tokens(self) -> int:
        u = self.config.union_encoder
        return u.max_source_positions - u.position_offset

    def preprocess_image(self, image: ImageInput, bands: Sequence[int] | None = None):
        """One image → (sam pixels (3, S, S), union pixels (3, 224, 224), (H, W))."""
        rgb = to_rgb(image, bands=bands, max_pixels=self.max_pixels)
        p = self.config.processor
        resample = _RESAMPLE[p.resample]
        s, u = self.config.image_size, self.config.union_encoder.img_size
        sam = _normalize(rgb.resize((s, s), resample), p.sam_mean, p.sam_std)
        union = _normalize(rgb.resize((u, u), resample), p.union_mean, p.union_std)
        return sam, union, (rgb.height, rgb.width)

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from .text import tokenize

        return tokenize(
            self.tokenizer,
            list(texts),
            pad_token_id=self.config.tokenizer.pad_token_id,
            max_length=self.max_text_tokens,
        )

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        texts: str | Sequence[str],
        bands: Sequence[int] | None = None,
    ) -> ProcessorOutput:
        """One image with one or more sentences, or equally many images and sentences."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(images, (list, tuple)):
            images = [images]
        texts = list(texts)
        if not texts:
            raise ValueError("no text given: provide at least one referring expression")
        if len(images) == 1 and len(texts) > 1:
            images = list(images) * len(texts)  # several expressions for one image
        if len(images) != len(texts):
            raise ValueError(f"got {len(images)} images but {len(texts)} texts; pass one image or as many")
        ids, mask = self.tokenize(texts)
        done: dict[int, tuple] = {}
        sams, unions, sizes = [], [], []
        for im in images:
            key = id(im)
            if key not in done:  # the same image object is processed once
                done[key] = self.preprocess_image(im, bands=bands)
            sam, union, size = done[key]
            sams.append(sam)
            unions.append(union)
            sizes.append(size)
        return ProcessorOutput(torch.stack(sams), torch.stack(unions), ids, mask, sizes)

    # -------------------------------------------------------------------------------- outputs
    def post_process_masks(
        self,
        logits: torch.Tensor,
        original_sizes: Sequence[tuple[int, int]],
        threshold: float | None = None,
        return_logits: bool = False,
    ) -> list[torch.Tensor]:
        """Logits (B, 1, S, S) → list of (H, W) boolean masks (or float logits) at native size."""
        thr = self.config.mask_threshold if threshold is None else threshold
        out = []
        for i, (h, w) in enumerate(original_sizes):
            x = F.interpolate(logits[i : i + 1].float(), (h, w), mode="bilinear", align_corners=False)[0, 0]
            out.append(x if return_logits else x > thr)
        return out


def _normalize(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL RGB → (3, H, W) float tensor, /255 then (x − mean) / std (torchvision ToTensor + Normalize)."""
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


#: How :func:`grid_target` reduces a cell's pixels.
GridReduction = Literal["max", "area"]


def grid_target(target: torch.Tensor, grid: int, reduction: GridReduction = "max") -> torch.Tensor:
    """The (B, H, W) {0, 1} target on a ``grid``×``grid`` grid of cells, (B, 1, grid, grid) float: the
    referred object as the mask prompt generator's 14×14 pseudo-mask sees it (the pseudo-mask loss, teacher
    forcing and the pseudo-mask diagnostics of :mod:`rs2sam2.evaluate` all use it).

    ``"max"``: 1 where any target pixel lies in the cell (adaptive max pooling: cells of ⌊·⌋/⌈·⌉ pixels
    when H is not a multiple of ``grid``); ``"area"``: the fraction of the cell's pixels that are target.
    """
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.dim() != 3:
        raise ValueError(f"target must be (B, H, W), got {tuple(target.shape)}")
    t = target.float().unsqueeze(1)  # (B, 1, H, W)
    if reduction == "max":
        return F.adaptive_max_pool2d(t, grid)
    if reduction == "area":
        return F.adaptive_avg_pool2d(t, grid)
    raise ValueError(f"unknown grid reduction {reduction!r}")
