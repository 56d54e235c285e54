"""What the Gradio demo (``app.py``) does on each event, as plain functions that tests call without a browser.

One request (:func:`segment`): read the upload (:mod:`rs2sam2.app.uploads`: PNG/JPEG/TIFF, 16-bit and
multiband included, with a 1-based band choice), fetch the model (:mod:`rs2sam2.app.models`: lazily loaded,
cached per model id), run :meth:`RS2SAM2Predictor.predict` once at the image's native size, and turn the
:class:`~rs2sam2.predictor.Prediction` into the three panels of the paper's pipeline (pseudo-mask prompt →
text-fused Hiera features → SAM2 mask) plus two downloads (binary mask PNG, result JSON;
:mod:`rs2sam2.app.files`). Every failure a person can cause ends in a :class:`gradio.Error` whose message
says what to do.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from .. import visualize as vis
from ..predictor import Prediction, RS2SAM2Predictor
from .files import as_files, write_downloads
from .models import BUNDLED_MODEL_ID, get_predictor, is_loaded, public_error, resolve_model_id
from .uploads import parse_bands, prepare_image, read_image

logger = logging.getLogger("rs2sam2.app")

MAX_FILE_SIZE = "50mb"
CONCURRENCY_LIMIT = 2  # requests that run the model at once; the rest wait in the queue
PREVIEW_CONCURRENCY_LIMIT = 4  # previews (read + downscale an upload) at once
QUEUE_MAX_SIZE = 64
DEFAULT_THRESHOLD = 0.5
DEFAULT_STAGE = 0  # Hiera stage shown first (0-based): the finest one
MEAN_TOKEN = "mean over tokens"
# Sessions whose state (display image, fused features, attentions: a few MB each) Gradio keeps in memory;
# the oldest are dropped beyond this (Gradio's default is 10 000). Passed to ``demo.launch`` in app.py.
STATE_SESSION_CAPACITY = 200

# What app.py passes to ``demo.launch``; tests and benchmarks serve the app with the same options.
LAUNCH_OPTIONS = {"max_file_size": MAX_FILE_SIZE, "state_session_capacity": STATE_SESSION_CAPACITY}


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
    if not is_loaded(model_id):
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
    png, js = write_downloads(prediction, result)
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
    from ..text import clean_text

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
    pictures = as_files(
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
    return tuple(as_files(features=features, attention=attention))
