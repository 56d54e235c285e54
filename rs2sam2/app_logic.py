"""What the Gradio demo (``app.py``) does, as plain functions that tests call without a browser.

One request: read the upload (PNG/JPEG/TIFF, 16-bit and multiband included, with a 1-based band choice),
fetch the model (lazily loaded, cached per model id), run :meth:`RS2SAM2Predictor.predict` once at the
image's native size, and turn the :class:`~rs2sam2.predictor.Prediction` into the three panels of the paper's
pipeline (pseudo-mask prompt → text-fused Hiera features → SAM2 mask) plus two downloads (binary mask PNG,
result JSON). Every failure a person can cause ends in a :class:`gradio.Error` whose message says what to do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from . import visualize as vis
from .app_policy import REFUSED_MESSAGE, DeploymentPolicy, ModelRefused, policy_from_env, scrub_paths
from .data.masks import mask_to_png
from .pixel_budget import ENV_VAR as PIXELS_ENV
from .pixel_budget import ImageTooLargeError, check_image_file, check_pixels, resolve_max_pixels
from .predictor import Prediction, RS2SAM2Predictor
from .processing import load_image, to_rgb
from .weights.bundled import bundled_root, default_model_dir, examples_file

logger = logging.getLogger("rs2sam2.app")

#: Dropdown entry (and cache key) of the model bundled in ``demo/``.
BUNDLED_MODEL_ID = "rs2sam2-tiny-synthetic (bundled)"
#: The official release (RRSIS-D and RefSegRS checkpoints), converted on the fly (``owner/name/subfolder``).
OFFICIAL_MODEL_IDS = ("ReeF2025/RS2-SAM2/rrsisd", "ReeF2025/RS2-SAM2/refseg")
MODEL_CHOICES = (BUNDLED_MODEL_ID, *OFFICIAL_MODEL_IDS)

MAX_FILE_SIZE = "50mb"
CONCURRENCY_LIMIT = 2  # requests that run the model at once; the rest wait in the queue
PREVIEW_CONCURRENCY_LIMIT = 4  # previews (read + downscale an upload) at once
QUEUE_MAX_SIZE = 64
DEFAULT_THRESHOLD = 0.5
DEFAULT_STAGE = 0  # Hiera stage shown first (0-based): the finest one
MEAN_TOKEN = "mean over tokens"
TIFF_SUFFIXES = (".tif", ".tiff")
OUTPUT_MAX_AGE_S = 3600.0
# Masks and logits are made at native size: bound the pixels one request may hold in memory (the
# package's pixel budget, rs2sam2.pixel_budget, checked from the header). None: $RS2SAM2_MAX_PIXELS, else
# APP_MAX_PIXELS: an accepted 8192² upload took the app process to 1.9 GB (benchmarks/app_bombs.py), 6144²
# stays under 1.5 GB.
MAX_PIXELS: int | None = None
APP_MAX_PIXELS = 6144 * 6144
# Loaded models kept in memory (each custom model id loads one): the oldest non-bundled one goes first.
MAX_CACHED_MODELS = 3
# Sessions whose state (display image, fused features, attentions: a few MB each) Gradio keeps in memory;
# the oldest are dropped beyond this (Gradio's default is 10 000). Passed to ``demo.launch`` in app.py.
STATE_SESSION_CAPACITY = 200

# What app.py passes to ``demo.launch``; tests and benchmarks serve the app with the same options.
LAUNCH_OPTIONS = {"max_file_size": MAX_FILE_SIZE, "state_session_capacity": STATE_SESSION_CAPACITY}

_predictors: dict[str, RS2SAM2Predictor] = {}
_load_lock = threading.Lock()
_output_root = Path(tempfile.gettempdir()) / "rs2sam2-app"
PRUNE_EVERY_S = 60.0
_last_prune = -PRUNE_EVERY_S
_policy: DeploymentPolicy | None = None


# ------------------------------------------------------------------------------------------------ policy
def configure_deployment(server_name: str | None = None, mode: str = "auto") -> DeploymentPolicy:
    """Fix the deployment policy (:mod:`rs2sam2.app_policy`) for an app served on ``server_name``;
    ``mode`` ``"public"`` / ``"local"`` forces one. Unconfigured, the policy follows the environment
    (``RS2SAM2_APP_MODE``, ``SPACE_ID``, ``GRADIO_SERVER_NAME``) at every request."""
    global _policy
    _policy = policy_from_env(server_name, mode)
    return _policy


def reset_deployment() -> None:
    """Back to following the environment (tests)."""
    global _policy
    _policy = None


def deployment_policy() -> DeploymentPolicy:
    return _policy if _policy is not None else policy_from_env()


def app_max_pixels() -> int:
    """The pixel budget of one upload: :data:`MAX_PIXELS`, else ``$RS2SAM2_MAX_PIXELS``, else
    :data:`APP_MAX_PIXELS`."""
    if MAX_PIXELS is not None:
        return MAX_PIXELS
    return resolve_max_pixels() if os.environ.get(PIXELS_ENV, "").strip() else APP_MAX_PIXELS


def check_model_allowed(model_id: str) -> None:
    """``gr.Error`` with the one neutral :data:`~rs2sam2.app_policy.REFUSED_MESSAGE` unless the policy
    lets this request load ``model_id`` (the bundled model always may)."""
    if model_id == BUNDLED_MODEL_ID:
        return
    try:
        deployment_policy().check_model(model_id)
    except ModelRefused:
        raise gr.Error(REFUSED_MESSAGE) from None


def public_error(message: str) -> gr.Error:
    """A ``gr.Error`` whose text names no server path (``/tmp/gradio/…/x.png`` → ``x.png``)."""
    return gr.Error(scrub_paths(message))


# ------------------------------------------------------------------------------------------------ models
def register_predictor(model_id: str, predictor: RS2SAM2Predictor) -> None:
    """Put a ready predictor in the cache under ``model_id`` (tests and benchmarks prime it this way)."""
    _predictors[model_id] = predictor


def clear_predictors() -> None:
    """Forget every cached predictor."""
    _predictors.clear()


def resolve_model_id(choice: str | None, custom: str | None = None) -> str:
    """The model a request asks for: the custom textbox when filled in, else the dropdown choice."""
    custom = (custom or "").strip()
    if custom:
        return custom
    return (choice or "").strip() or BUNDLED_MODEL_ID


def split_model_id(model_id: str) -> tuple[str | Path | None, str | None]:
    """``model_id`` → (source for ``from_pretrained``, subfolder).

    The bundled entry → ``(None, None)``; an existing local folder or anything path-like (``/``, ``.``,
    ``~``) → that folder; ``owner/name/sub/folder`` → Hub repo ``owner/name`` with subfolder ``sub/folder``.
    """
    if model_id == BUNDLED_MODEL_ID:
        return None, None
    path = Path(model_id).expanduser()
    public = deployment_policy().public  # a public app decides from the text, never probes the disk
    if model_id.startswith(("/", ".", "~")) or (not public and path.is_dir()):
        return path, None
    parts = model_id.strip("/").split("/")
    if len(parts) > 2:
        return "/".join(parts[:2]), "/".join(parts[2:])
    return model_id, None


def get_predictor(model_id: str = BUNDLED_MODEL_ID) -> RS2SAM2Predictor:
    """The cached predictor for ``model_id``, loading it on first use (one load at a time); a model the
    deployment policy refuses raises ``gr.Error`` (:func:`check_model_allowed`)."""
    check_model_allowed(model_id)
    predictor = _predictors.get(model_id)
    if predictor is not None:
        return predictor
    with _load_lock:
        predictor = _predictors.get(model_id)
        if predictor is None:
            predictor = _load_predictor(model_id)
            while len(_predictors) >= MAX_CACHED_MODELS:  # bound memory: forget the oldest other model
                others = [k for k in _predictors if k != BUNDLED_MODEL_ID] or list(_predictors)
                _predictors.pop(others[0], None)
            _predictors[model_id] = predictor
    return predictor


def _load_predictor(model_id: str) -> RS2SAM2Predictor:
    source, subfolder = split_model_id(model_id)
    if source is None:
        try:
            source = default_model_dir()
        except FileNotFoundError as e:  # RS2SAM2_DEFAULT_MODEL names no folder
            raise gr.Error(str(e)) from e
        if not source.is_dir():
            raise gr.Error(
                f"The bundled model is not installed ({source} is missing). "
                "Type a local model folder or a Hugging Face Hub id in 'Other model'."
            )
    try:
        return RS2SAM2Predictor.from_pretrained(source, subfolder=subfolder)
    except FileNotFoundError as e:
        raise public_error(
            f"Model '{model_id}' was not found: {e}. Check the spelling; Hub models need internet access "
            "the first time (or a copy in the local Hugging Face cache)."
        ) from e
    except Exception as e:  # a broken download or checkpoint must not take the server down
        logger.exception("loading model %r failed", model_id)
        raise public_error(f"Model '{model_id}' could not be loaded: {e}") from e


# ------------------------------------------------------------------------------------------------ images
def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """Band choice as typed in the UI (1-based, e.g. ``"3,2,1"`` or ``"4 3 2"``) → 0-based indices.

    Empty → ``None`` (use the image's own colours). One band gives a grey picture, three an RGB composite.
    """
    text = (text or "").strip()
    if not text:
        return None
    items = [t for t in re.split(r"[,;\s]+", text) if t]
    if not all(t.isdigit() for t in items):
        raise gr.Error(f"Bands must be whole numbers separated by commas, like 3,2,1 (got '{text}').")
    bands = tuple(int(t) for t in items)
    if len(bands) not in (1, 3):
        raise gr.Error(
            f"Give one band (grey) or three bands (red, green, blue), like 3,2,1 (got {len(bands)})."
        )
    if min(bands) < 1:
        raise gr.Error("Bands are counted from 1: the first band is 1.")
    return tuple(b - 1 for b in bands)


def read_image(path: str | Path | None) -> Image.Image | np.ndarray:
    """Read an upload: TIFFs as (H, W, bands) arrays of their own dtype (via ``tifffile``, any band count),
    everything else through :func:`rs2sam2.processing.load_image`. Unreadable files raise ``gr.Error``."""
    if path is None or not str(path).strip():
        raise gr.Error("Upload an image first (PNG, JPEG or TIFF).")
    path = Path(path)
    name = path.name
    try:
        _check_budget(path)
        if path.suffix.lower() in TIFF_SUFFIXES:
            return _read_tiff(path)
        return load_image(path, app_max_pixels())
    except gr.Error:
        raise
    except (ImageTooLargeError, Image.DecompressionBombError) as e:
        raise public_error(f"'{name}' is too large to open safely: {e}") from e
    except (OSError, ValueError) as e:
        raise public_error(
            f"Could not read '{name}' as an image. Upload a PNG, JPEG or TIFF file. ({e})"
        ) from e


def _check_budget(path: Path) -> None:
    """The pixel budget, from the header (every TIFF page included), before anything is decoded; files
    that are no image pass here and get the decoder's own message."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        check_image_file(path, app_max_pixels())
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError):
        pass


def _read_tiff(path: Path) -> Image.Image | np.ndarray:
    try:
        import tifffile
    except ImportError:  # without tifffile, PIL still reads 1-, 3- and 4-band TIFFs
        return load_image(path)
    if path.stat().st_size == 0:
        raise ValueError("the file is empty (0 bytes)")
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image found in this TIFF")
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            if "Y" not in axes or "X" not in axes:
                raise ValueError(f"no image plane in this TIFF (axes {axes})")
            h, w = shape[axes.index("Y")], shape[axes.index("X")]
            check_pixels(w, h, max_pixels=app_max_pixels())
            array = series.asarray()
    except ValueError:  # ImageTooLargeError included
        raise
    except Exception as e:  # tifffile reports damaged files with many exception types
        raise ValueError(f"damaged TIFF ({type(e).__name__}: {e})") from e
    other = [i for i, a in enumerate(axes) if a not in "YX"]
    if sum(shape[i] != 1 for i in other) > 1:
        raise ValueError(f"TIFF with axes {axes} and shape {shape}: only one image (with bands) is supported")
    # (Y, X, others): at most one of the others is longer than 1, it becomes the band axis
    order = [axes.index("Y"), axes.index("X"), *other]
    array = np.transpose(array, order).reshape(h, w, -1)
    return array[..., 0] if array.shape[-1] == 1 else array


def band_count(image: Image.Image | np.ndarray) -> int:
    if isinstance(image, Image.Image):
        return len(image.getbands())
    return 1 if image.ndim == 2 else int(image.shape[-1])


def prepare_image(image: Image.Image | np.ndarray, bands: Sequence[int] | None) -> Image.Image:
    """Apply the band choice and make 8-bit RGB (what the model and the panels see), with UI errors."""
    n = band_count(image)
    if bands is not None and max(bands) >= n:
        raise gr.Error(
            f"Band {max(bands) + 1} does not exist: the image has {n} band{'s' if n > 1 else ''} (1–{n})."
        )
    grey_alpha = isinstance(image, Image.Image) and image.mode in ("LA", "PA")  # to_rgb drops the alpha
    if bands is None and n not in (1, 3, 4) and not grey_alpha:
        raise gr.Error(
            f"The image has {n} bands. Type which three to show as red, green, blue in 'Bands' "
            f"(1-based, e.g. 3,2,1)."
        )
    try:
        return to_rgb(image, bands=bands, max_pixels=app_max_pixels())
    except ValueError as e:
        raise public_error(f"Unsupported image: {e}") from e


def describe_image(image: Image.Image | np.ndarray) -> str:
    """``"W×H pixels, N bands (dtype)"`` for the upload preview."""
    n = band_count(image)
    if isinstance(image, Image.Image):
        (w, h), kind = image.size, image.mode
    else:
        (h, w), kind = image.shape[:2], str(image.dtype)
    return f"{w}×{h} pixels, {n} band{'s' if n > 1 else ''} ({kind})"


def preview(file: str | None, bands_text: str | None) -> tuple[np.ndarray | None, str]:
    """The upload as the model will see it, and a line describing it; problems go into the line."""
    if not file:
        return None, ""
    info = ""
    try:
        image = read_image(file)
        info = describe_image(image)
        rgb = prepare_image(image, parse_bands(bands_text))
    except gr.Error as e:
        return None, " ".join(filter(None, [info, f"⚠️ {e.message}"]))
    return vis.downscale_for_display(np.asarray(rgb)), info


def probability_to_threshold(probability: float) -> float:
    """Foreground-probability threshold (UI slider) → decoder-output threshold.

    The decoder output x gives ``p = sigmoid(2x − 1)`` (the official two-channel softmax), so
    ``x > (logit(p) + 1) / 2``; p = 0.5 gives the official 0.5.
    """
    p = min(max(float(probability), 1e-6), 1.0 - 1e-6)
    return (float(np.log(p / (1.0 - p))) + 1.0) / 2.0


# ----------------------------------------------------------------------------------------------- request
@dataclass
class SegmentResult:
    """Everything one request shows: pictures are (h, w, 3) uint8 at display size; files at native size."""

    pseudo_mask: np.ndarray
    dense_prompt: np.ndarray
    features: np.ndarray
    attention: np.ndarray | None
    mask_overlay: np.ndarray
    summary: str
    mask_png: Path
    result_json: Path
    result: dict[str, Any]
    tokens: list[str]
    display_image: np.ndarray
    prediction: Prediction


def segment(
    file: str | Path | None,
    expression: str | None,
    model_id: str = BUNDLED_MODEL_ID,
    bands_text: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    stage: int = DEFAULT_STAGE,
    progress: Callable[..., Any] | None = None,
) -> SegmentResult:
    """Run one request end to end (see the module docstring); ``threshold`` is a foreground probability.

    ``progress(fraction, desc=...)`` (a ``gr.Progress``) is told each step as it starts.
    """
    step = _progress_steps(progress)
    text = (expression or "").strip()
    if not text:
        raise gr.Error("Type a referring expression, e.g. 'the red car on the left'.")
    bands = parse_bands(bands_text)
    step("reading the image")
    image = read_image(file)
    rgb = prepare_image(image, bands)
    if model_id not in _predictors:
        step("loading the model")
    predictor = get_predictor(model_id)
    step("running the model")
    try:
        prediction = predictor.predict(
            rgb, text, threshold=probability_to_threshold(threshold), output_attentions=True
        )
    except ValueError as e:  # e.g. an expression the tokenizer cannot encode
        raise public_error(f"Could not segment this input: {e}") from e
    step("drawing the panels")
    shown = vis.downscale_for_display(np.asarray(rgb))
    shown_mask = vis.downscale_for_display(prediction.mask)
    tokens = token_strings(predictor, text)
    notes = text_notes(predictor, text, tokens)
    result = vis.result_dict(prediction, model_id=model_id)
    result["probability_threshold"] = float(threshold)
    result["warnings"] = notes
    png, js = _write_downloads(prediction, result)
    features, attention = render_stage(prediction, shown, stage, MEAN_TOKEN)
    return SegmentResult(
        pseudo_mask=vis.heatmap_overlay(shown, prediction.pseudo_mask, resample="nearest"),
        dense_prompt=vis.heatmap_overlay(shown, prediction.dense_prompt),
        features=features,
        attention=attention,
        mask_overlay=vis.highlight_mask(shown, shown_mask),
        summary="\n\n".join([summarize(result), *(f"⚠️ {note}" for note in notes)]),
        mask_png=png,
        result_json=js,
        result=result,
        tokens=tokens,
        display_image=shown,
        prediction=prediction,
    )


#: What a request does, in order, with the fraction of the work done when each step starts (the model's
#: forward is most of it).
PROGRESS_STEPS = {
    "reading the image": 0.0,
    "loading the model": 0.1,
    "running the model": 0.2,
    "drawing the panels": 0.9,
}


def _progress_steps(progress: Callable[..., Any] | None) -> Callable[[str], None]:
    """``step(name)``: tell ``progress`` that step ``name`` of :data:`PROGRESS_STEPS` starts (or nothing)."""
    if progress is None:
        return lambda name: None
    return lambda name: progress(PROGRESS_STEPS[name], desc=name)


def summarize(result: dict[str, Any]) -> str:
    """One Markdown line: confidence, area and box of the mask."""
    h, w = result["image_size"]
    pct = 100.0 * result["area"] / max(1, h * w)
    if result["area"] == 0:
        thr = result.get("probability_threshold", result["threshold"])
        return f"**Confidence {result['score']:.2f}** — no pixel above the threshold {thr:g}."
    x, y, bw, bh = result["bbox"]
    return (
        f"**Confidence {result['score']:.2f}** — {result['area']} pixels ({pct:.1f} % of the image), "
        f"box x={x}, y={y}, w={bw}, h={bh}"
    )


def token_strings(predictor: RS2SAM2Predictor, text: str) -> list[str]:
    """The sentence's tokens as the union encoder reads them (``<s> … </s>``), one per attention column."""
    ids, mask = predictor.processor.tokenize([text])
    real = ids[0][mask[0]].tolist()
    return [str(t) for t in predictor.processor.tokenizer.convert_ids_to_tokens(real)]


def text_notes(predictor: RS2SAM2Predictor, text: str, tokens: Sequence[str]) -> list[str]:
    """What the model could not read of the expression: the part beyond its text length, or every word
    (when no token of ``tokens`` — the attended ones, ``<s> … </s>`` — is more than a word boundary)."""
    from .text import clean_text

    notes = []
    limit = predictor.processor.max_text_tokens
    n = len(predictor.processor.tokenizer(clean_text(text))["input_ids"])
    if n > limit:
        notes.append(
            f"The expression has {n - 2} tokens; the model reads only the first {limit - 2}, the rest was "
            "ignored."
        )
    if not any(t.strip("\u2581 ") for t in tokens[1:-1]):
        notes.append(
            "None of the words is in the model's vocabulary, so the mask does not depend on the expression; "
            "try other words."
        )
    return notes


def token_choices(tokens: Sequence[str]) -> list[str]:
    """Dropdown entries: the mean first, then ``"i: token"``."""
    return [MEAN_TOKEN, *(f"{i}: {t}" for i, t in enumerate(tokens))]


def parse_token_choice(choice: str | None) -> int | None:
    if not choice or choice == MEAN_TOKEN:
        return None
    head = choice.split(":", 1)[0]
    return int(head) if head.isdigit() else None


def render_stage(
    prediction: Prediction, image: np.ndarray, stage: int, token_choice: str | None = MEAN_TOKEN
) -> tuple[np.ndarray, np.ndarray | None]:
    """PCA picture of one Hiera stage's fused features and its fusion layer's text→image attention
    (one token, or the mean over the sentence) over ``image``; nearest resampling keeps the grid honest."""
    n = len(prediction.fused_features)
    stage = min(max(int(stage), 0), n - 1)
    feats = vis.pca_rgb(prediction.fused_features[stage])
    h, w = image.shape[:2]
    features = np.asarray(Image.fromarray(feats).resize((w, h), Image.NEAREST))
    if not prediction.fusion_attentions:
        return features, None
    att = prediction.fusion_attentions[stage]
    token = parse_token_choice(token_choice)
    if token is not None and token >= att.shape[-1]:
        token = None
    amap = vis.normalize_map(vis.token_attention(att, token))
    return features, vis.heatmap_overlay(image, amap, resample="nearest")


def _output_folder() -> Path:
    """A fresh folder for one request's files (old ones are pruned, at most once every minute: pruning
    looks at every folder, which under load would cost each request a scan of thousands)."""
    global _last_prune
    now = time.monotonic()
    if now - _last_prune >= PRUNE_EVERY_S:
        _last_prune = now
        _prune_outputs()
    folder = _output_root / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def _write_downloads(prediction: Prediction, result: dict[str, Any]) -> tuple[Path, Path]:
    folder = _output_folder()
    png = folder / "mask.png"
    mask_to_png(prediction.mask).save(png)
    js = folder / "result.json"
    js.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return png, js


def _as_files(**pictures: np.ndarray | None) -> list[str | None]:
    """Save (h, w, 3) pictures as PNG files in a fresh folder and return their paths.

    Gradio caches a returned array under a hash of its encoded bytes and writes that file in place, so two
    requests producing the same picture can truncate a file while it is being downloaded; files we write
    ourselves are copied into its cache atomically.
    """
    folder = _output_folder()
    paths: list[str | None] = []
    for name, picture in pictures.items():
        if picture is None:
            paths.append(None)
            continue
        path = folder / f"{name}.png"
        Image.fromarray(picture).save(path, compress_level=1)
        paths.append(str(path))
    return paths


def _prune_outputs(max_age_s: float = OUTPUT_MAX_AGE_S) -> None:
    """Delete download folders older than ``max_age_s`` (Gradio keeps its own copies of served files)."""
    if not _output_root.is_dir():
        return
    cutoff = time.time() - max_age_s
    for folder in _output_root.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


# -------------------------------------------------------------------------------------------- UI events
def segment_event(
    file: str | None,
    expression: str | None,
    model_choice: str | None,
    custom_model: str | None,
    bands_text: str | None,
    threshold: float,
    stage: int,
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (Gradio passes its tracker through this default)
) -> tuple[Any, ...]:
    """The ``segment`` event: inputs and outputs in the order ``app.py`` wires them.

    Returns (pseudo-mask heatmap, dense-prompt heatmap, feature PCA, attention heatmap, mask overlay — PNG
    paths of the (h, w, 3) display pictures —, summary Markdown, mask PNG path, JSON path, token dropdown
    update, state for re-rendering).
    """
    model_id = resolve_model_id(model_choice, custom_model)
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    stage = DEFAULT_STAGE if stage is None else stage
    try:
        r = segment(file, expression, model_id, bands_text, threshold, stage, progress=progress)
    except gr.Error as e:
        quiet_user_error(e)
        raise
    except Exception as e:  # the server keeps serving whatever a request does
        logger.exception("segment request failed")  # a bug: its traceback is logged, once
        error = public_error(f"Segmentation failed: {type(e).__name__}: {e}")
        error.print_exception = False
        raise error from e
    # Gradio keeps a session's state in memory until the session ends: keep only what re-drawing the stage
    # panels needs (no native-size logits and mask: 320 MB for an 8192² upload).
    slim = dataclasses.replace(r.prediction, mask=np.zeros((0, 0), bool), logits=np.zeros((0, 0), np.float32))
    state = {"prediction": slim, "image": r.display_image}
    tokens = gr.update(choices=token_choices(r.tokens), value=MEAN_TOKEN)
    pictures = _as_files(
        pseudo_mask=r.pseudo_mask,
        dense_prompt=r.dense_prompt,
        features=r.features,
        attention=r.attention,
        mask=r.mask_overlay,
    )
    return (
        *pictures,
        r.summary,
        str(r.mask_png),
        str(r.result_json),
        tokens,
        state,
    )


def quiet_user_error(error: gr.Error) -> gr.Error:
    """A problem the person can fix (an empty sentence, a bad band list, an unreadable image, an unknown
    model): logged as one line, without the traceback Gradio would print for it; returns ``error``."""
    logger.warning("request refused: %s", " ".join(str(error.message).split()))
    error.print_exception = False
    return error


def stage_event(state: dict[str, Any] | None, stage: int, token_choice: str | None) -> tuple[Any, Any]:
    """Re-draw the feature and attention panels (PNG paths) for another stage or token, without re-running
    the model."""
    if not state:
        return None, None
    features, attention = render_stage(state["prediction"], state["image"], stage, token_choice)
    return tuple(_as_files(features=features, attention=attention))


def load_examples(path: str | Path | None = None) -> list[list[str]]:
    """``[[image path, expression], …]`` from ``demo/examples.json`` (default:
    :func:`~rs2sam2.weights.bundled.examples_file`; relative image paths are relative to the folder holding
    ``demo/``); entries whose image is missing are skipped, and a missing or malformed file gives none."""
    root = bundled_root()
    path = Path(examples_file() if path is None else path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    examples = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        image, expression = entry.get("image"), entry.get("expression")
        if not isinstance(image, str) or not isinstance(expression, str):
            continue
        image_path = Path(image) if os.path.isabs(image) else root / image
        if image_path.is_file():
            examples.append([str(image_path), expression])
    return examples


def pick_example(examples: Sequence[Sequence[str]], index: int | None) -> tuple[str, str]:
    """The (image path, expression) of the example clicked in the examples table (``index``: its row).

    The image is a copy in a fresh output folder: Gradio serves files from the temporary directory wherever
    the app runs from, but files of the repository only when it is the working directory.
    """
    if index is None or not 0 <= int(index) < len(examples):
        raise gr.Error(f"No example number {index}.", print_exception=False)
    image, expression = examples[int(index)][:2]
    copy = _output_folder() / Path(image).name
    shutil.copyfile(image, copy)
    return str(copy), expression


def serve_locally(demo: gr.Blocks) -> str:
    """Serve ``demo`` in this process on a free port of 127.0.0.1, launched as app.py launches it (tests,
    benchmarks); returns its URL. ``demo.close()`` stops it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        **LAUNCH_OPTIONS,
    )
    return url
