"""The Gradio demo's logic (``app.py`` is only its layout): plain functions that tests call without a browser.

* :mod:`~rs2sam2.app.policy`: what a visitor may ask the server to load (local vs public deployment).
* :mod:`~rs2sam2.app.models`: which model a request names, the policy applied to it, the predictor cache.
* :mod:`~rs2sam2.app.uploads`: reading an upload, the 1-based band choice, the RGB the model sees.
* :mod:`~rs2sam2.app.handlers`: one request end to end, and the events ``app.py`` wires.
* :mod:`~rs2sam2.app.files`: per-request output folders, downloads, the examples of ``demo/examples.json``.

What ``app.py``, the tests and the benchmarks use is importable from here.
"""

from __future__ import annotations

from .files import PRUNE_EVERY_S, load_examples, pick_example
from .handlers import (
    CONCURRENCY_LIMIT,
    DEFAULT_STAGE,
    DEFAULT_THRESHOLD,
    LAUNCH_OPTIONS,
    MEAN_TOKEN,
    PREVIEW_CONCURRENCY_LIMIT,
    QUEUE_MAX_SIZE,
    SegmentResult,
    probability_to_threshold,
    render_stage,
    segment,
    segment_event,
    stage_event,
)
from .models import (
    BUNDLED_MODEL_ID,
    MAX_CACHED_MODELS,
    MODEL_CHOICES,
    OFFICIAL_MODEL_IDS,
    clear_predictors,
    configure_deployment,
    deployment_policy,
    get_predictor,
    reset_deployment,
    resolve_model_id,
    split_model_id,
)
from .uploads import (
    APP_MAX_PIXELS,
    app_max_pixels,
    describe_image,
    parse_bands,
    prepare_image,
    preview,
    read_image,
)

__all__ = [
    "APP_MAX_PIXELS",
    "BUNDLED_MODEL_ID",
    "CONCURRENCY_LIMIT",
    "DEFAULT_STAGE",
    "DEFAULT_THRESHOLD",
    "LAUNCH_OPTIONS",
    "MAX_CACHED_MODELS",
    "MEAN_TOKEN",
    "MODEL_CHOICES",
    "OFFICIAL_MODEL_IDS",
    "PREVIEW_CONCURRENCY_LIMIT",
    "PRUNE_EVERY_S",
    "QUEUE_MAX_SIZE",
    "SegmentResult",
    "app_max_pixels",
    "clear_predictors",
    "configure_deployment",
    "deployment_policy",
    "describe_image",
    "get_predictor",
    "load_examples",
    "parse_bands",
    "pick_example",
    "prepare_image",
    "preview",
    "probability_to_threshold",
    "read_image",
    "render_stage",
    "reset_deployment",
    "resolve_model_id",
    "segment",
    "segment_event",
    "split_model_id",
    "stage_event",
]
