"""The one obvious entry point: ``RS2SAM2Predictor.from_pretrained(...).predict(image, text)``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .memory import FilePages, release_cpu_memory
from .modeling import RS2SAM2Output
from .processing import ImageInput, RS2SAM2Processor
from .threads import apply_num_threads, threads_for_model
from .weights.bundled import MODEL_NAME, bundled_root, default_model_dir
from .weights.pretrained import RS2SAM2
from .weights.sources import split_source_options

DEFAULT_MODEL: Path = bundled_root() / "demo" / MODEL_NAME
"""The bundled model's folder (trained on synthetic scenes): the wheel's copy, else the repository's
``demo/``. ``from_pretrained()`` without a model loads
:func:`rs2sam2.weights.bundled.default_model_dir`, which ``RS2SAM2_DEFAULT_MODEL`` overrides."""
QUANTIZATIONS = ("int8",)
"""Values of ``quantize=``: ``"int8"`` = dynamic int8 quantisation of every ``nn.Linear`` (CPU)."""


def check_quantize(
    quantize: str | None, device: torch.device | str | None, dtype: torch.dtype | None
) -> None:
    """Raise ``ValueError`` unless ``quantize`` is None, or ``"int8"`` on the CPU with float32 weights."""
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be None or one of {QUANTIZATIONS}, got {quantize!r}")
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"quantize={quantize!r} runs on the CPU only, got device {str(device)!r}")
    if dtype is not None and dtype != torch.float32:
        raise ValueError(
            f"quantize={quantize!r} keeps every layer but nn.Linear in float32; got dtype={dtype} "
            "(use dtype=torch.bfloat16 without quantize instead)"
        )


def quantize_int8(model: RS2SAM2) -> RS2SAM2:
    """Dynamic int8 quantisation, in place, of every ``nn.Linear`` of a float32 CPU model.

    Weights become int8 per output channel; activations are quantised per tensor on the fly at every
    call; matmuls run in int8 (fbgemm / oneDNN). Convolutions, norms, embeddings, attention products and
    the packed q/k/v projections of :class:`~rs2sam2.modeling.attention.PackedCrossAttention` (plain
    parameters, not ``nn.Linear``) stay float32. Inference only: the quantised layers have no gradients.
    """
    if model.dtype != torch.float32 or model.device.type != "cpu":
        raise ValueError(f"int8 quantisation needs a float32 CPU model, got {model.dtype} on {model.device}")
    quantization = getattr(torch.ao, "quantization", None)
    if quantization is None or not hasattr(quantization, "quantize_dynamic"):
        raise RuntimeError(
            f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic; quantize='int8' "
            "needs it (it exists up to at least torch 2.14)"
        )
    with warnings.catch_warnings():
        # Recent torch flags the eager-mode API and quantized tensors as deprecated (migrate to torchao,
        # not a dependency); it is still core torch's only int8 linear kernel, checked for above.
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        # One nn.Linear at a time (what quantize_dynamic does to each, swapped in place), handing back the
        # pages of its fp32 weight as soon as it is replaced: a memory-mapped checkpoint stays mapped while
        # the rest of the model uses it, and quantising the whole model at once would first bring all of it
        # in (a load peak of fp32 + int8).
        pages = FilePages()
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:  # exact type, as quantize_dynamic's mapping matches
                    holder = nn.Sequential(child)
                    quantization.quantize_dynamic(
                        holder,
                        {nn.Linear: quantization.per_channel_dynamic_qconfig},
                        dtype=torch.qint8,
                        inplace=True,
                    )
                    setattr(parent, name, holder[0])
                    pages.release(child.weight)
                    if child.bias is not None:  # read too (copied)
                        pages.release(child.bias)
        pages.finish()
    return model.eval()


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
    """Runs :class:`RS2SAM2` on images and sentences under ``torch.inference_mode``.

    ``device`` / ``dtype`` move and cast the model (in place). ``quantize="int8"`` (CPU, float32 only)
    then applies :func:`quantize_int8` to it, in place: int8 matmuls for every ``nn.Linear`` (88 % of the
    official model's FLOPs, see ``benchmarks/flops.py``), 4× smaller weights there, logits that differ
    slightly from the float32 ones. ``compile=True`` runs the model through ``torch.compile`` (Inductor;
    needs a C++ compiler on the CPU): the first call of each new input shape compiles (about 100 s for
    the bundled model on 2 CPU cores), later calls are faster (see ``benchmarks/forward.py --compile``).
    ``num_threads`` sets torch's intra-op threads, process-wide (default: ``$RS2SAM2_NUM_THREADS``, else
    one thread for a small model such as the bundled one and torch's own for larger ones; see
    :func:`rs2sam2.threads.threads_for_model` and ``benchmarks/threads.py``); ``self.num_threads`` is the
    count in effect.
    ``max_pixels``: the pixel budget of every input image, checked before decoding a file
    (:mod:`rs2sam2.pixel_budget`; ``None`` keeps the processor's: ``$RS2SAM2_MAX_PIXELS`` or 8192²).
    """

    def __init__(
        self,
        model: RS2SAM2,
        processor: RS2SAM2Processor,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        quantize: str | None = None,
        compile: bool = False,
        num_threads: int | None = None,
        max_pixels: int | None = None,
    ) -> None:
        apply_num_threads(threads_for_model(sum(p.numel() for p in model.parameters()), num_threads))
        self.num_threads = torch.get_num_threads()
        self.device = torch.device(device) if device is not None else model.device
        self.dtype = dtype or model.dtype
        check_quantize(quantize, self.device, self.dtype)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        if quantize == "int8":
            quantize_int8(self.model)
        self.quantize = quantize
        self.processor = processor
        if max_pixels is not None:
            processor.max_pixels = max_pixels
        self.compiled = bool(compile)
        self._run = torch.compile(self.model) if compile else self.model

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path | None = None,
        *,
        subfolder: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        quantize: str | None = None,
        compile: bool = False,
        num_threads: int | None = None,
        max_pixels: int | None = None,
        **kwargs,
    ) -> RS2SAM2Predictor:
        """Load a model folder or Hub repo (ours or the official release); default: the folder named by
        ``RS2SAM2_DEFAULT_MODEL``, else the bundled model (:mod:`rs2sam2.weights.bundled`).

        ``quantize="int8"``, ``compile``, ``num_threads``, ``max_pixels``: see the class docstring. Other
        keyword arguments go to :meth:`RS2SAM2.from_pretrained`; those that say where the files come from
        (``subfolder``, ``revision``, ``token``, ``cache_dir``, ``force_download``, ``local_files_only``)
        reach the weights and the tokenizer alike, so both come from the same place and revision.
        """
        check_quantize(quantize, device, dtype)  # before loading the weights
        apply_num_threads(num_threads)  # loading (casts, quantisation) runs on these threads too
        source = default_model_dir() if path_or_repo is None else path_or_repo
        where, rest = split_source_options({**kwargs, "subfolder": subfolder})
        # cast while loading: a memory-mapped fp32 checkpoint is converted tensor by tensor, never whole
        model = RS2SAM2.from_pretrained(source, dtype=dtype, **where, **rest)
        processor = RS2SAM2Processor.from_pretrained(source, model.config, **where)
        return cls(
            model,
            processor,
            device=device,
            dtype=dtype,
            quantize=quantize,
            compile=compile,
            num_threads=num_threads,
            max_pixels=max_pixels,
        )

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
        out = self._run(**inputs.model_inputs(self.device, self.dtype), output_attentions=output_attentions)
        if self.device.type == "cpu":
            release_cpu_memory()
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
            # p_fg of softmax([1 − x, x]), over the mask only (no native-size temporaries)
            score = float(torch.sigmoid(2.0 * x[mask] - 1.0).mean()) if bool(mask.any()) else 0.0
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
