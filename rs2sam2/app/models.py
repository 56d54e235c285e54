"""The models the demo app serves: which one a request names, whether the deployment allows it, and a
cache of loaded predictors (lazily loaded, one load at a time, the oldest custom one forgotten first).

The deployment policy itself (what a visitor may ask for) is :mod:`rs2sam2.app.policy`; this module applies
it to each request and turns refusals and failed loads into :class:`gradio.Error` messages that name no
server path.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import gradio as gr

from ..predictor import RS2SAM2Predictor
from ..weights.bundled import default_model_dir
from .policy import REFUSED_MESSAGE, DeploymentPolicy, ModelRefused, policy_from_env, scrub_paths

logger = logging.getLogger("rs2sam2.app")

#: Dropdown entry (and cache key) of the model bundled in ``demo/``.
BUNDLED_MODEL_ID = "rs2sam2-tiny-synthetic (bundled)"
#: The official release (RRSIS-D and RefSegRS checkpoints), converted on the fly (``owner/name/subfolder``).
OFFICIAL_MODEL_IDS = ("ReeF2025/RS2-SAM2/rrsisd", "ReeF2025/RS2-SAM2/refseg")
MODEL_CHOICES = (BUNDLED_MODEL_ID, *OFFICIAL_MODEL_IDS)
# Loaded models kept in memory (each custom model id loads one): the oldest non-bundled one goes first.
MAX_CACHED_MODELS = 3


_predictors: dict[str, RS2SAM2Predictor] = {}
_load_lock = threading.Lock()
_policy: DeploymentPolicy | None = None


# ------------------------------------------------------------------------------------------------ policy
def configure_deployment(server_name: str | None = None, mode: str = "auto") -> DeploymentPolicy:
    """Fix the deployment policy (:mod:`rs2sam2.app.policy`) for an app served on ``server_name``;
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


def check_model_allowed(model_id: str) -> None:
    """``gr.Error`` with the one neutral :data:`~rs2sam2.app.policy.REFUSED_MESSAGE` unless the policy
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
def is_loaded(model_id: str) -> bool:
    """Whether ``model_id``'s predictor is in the cache (a request then skips the loading step)."""
    return model_id in _predictors


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
