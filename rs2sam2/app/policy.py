"""Deployment policy of the demo app (``app.py``): what a visitor may ask the server to load.

Two modes (see ``docs/security.md``):

* **local** (``python app.py`` on a loopback address): any model folder on this machine or Hub id, as the
  person at the keyboard owns the machine.
* **public** (on Hugging Face Spaces — ``SPACE_ID`` is set —, or served on a non-loopback address):
  local model paths are refused unless ``RS2SAM2_ALLOW_LOCAL_MODELS=1``; Hub ids must name a repository of
  the allow-list (``RS2SAM2_ALLOWED_MODELS``, comma-separated ``owner/name``; default: the paper's release
  ``ReeF2025/RS2-SAM2``, any of its subfolders); the bundled model is always allowed. Every refusal has
  the same text (:data:`REFUSED_MESSAGE`), decided from the typed string alone, before the file system
  is touched, so a visitor cannot tell an existing path from a missing one.

``RS2SAM2_APP_MODE=public|local`` (or ``python app.py --mode``) forces a mode. Error messages never name a
server path in either mode (:func:`scrub_paths`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

MODE_ENV = "RS2SAM2_APP_MODE"
ALLOW_LOCAL_ENV = "RS2SAM2_ALLOW_LOCAL_MODELS"
ALLOWED_MODELS_ENV = "RS2SAM2_ALLOWED_MODELS"
SPACE_ENV = "SPACE_ID"  # set by Hugging Face Spaces in every Space
SERVER_NAME_ENV = "GRADIO_SERVER_NAME"
MODES = ("auto", "public", "local")
DEFAULT_ALLOWED_REPOS = ("ReeF2025/RS2-SAM2",)
REFUSED_MESSAGE = "This model is not available in this demo. Choose one of the models in the list."

# A Hub repo id part and a subfolder part: what huggingface_hub accepts, without "..".
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_TRUE = ("1", "true", "yes", "on")


class ModelRefused(PermissionError):
    """The deployment policy does not allow this model (message: :data:`REFUSED_MESSAGE`)."""

    def __init__(self) -> None:
        super().__init__(REFUSED_MESSAGE)


@dataclass(frozen=True)
class DeploymentPolicy:
    """``public``: the mode; ``allow_local_paths``: model folders on the server may be named;
    ``allowed_repos``: Hub repositories (``owner/name``) a public app may load, with any subfolder."""

    public: bool
    allow_local_paths: bool
    allowed_repos: tuple[str, ...] = DEFAULT_ALLOWED_REPOS

    def check_model(self, model_id: str) -> None:
        """Raise :class:`ModelRefused` unless ``model_id`` (as typed; not the bundled entry) may load.

        Local mode allows everything. Public mode decides from the string only: path-like strings (``/``,
        ``.``, ``~``, ``\\``, a drive letter) are local paths; anything else must be ``owner/name[/sub/…]``
        of an allowed repository with plain parts (no ``..``)."""
        if not self.public:
            return
        text = model_id.strip()
        if looks_like_local_path(text):
            if self.allow_local_paths:
                return
            raise ModelRefused()
        parts = text.split("/")
        if len(parts) < 2 or not all(_PART.match(p) and ".." not in p for p in parts):
            raise ModelRefused()
        repo = "/".join(parts[:2]).casefold()  # Hub repo ids are case-insensitive
        if repo not in {r.casefold() for r in self.allowed_repos}:
            raise ModelRefused()


def looks_like_local_path(text: str) -> bool:
    return (
        text.startswith(("/", ".", "~", "\\"))
        or "\\" in text
        or bool(re.match(r"^[A-Za-z]:", text))
        or text.startswith("file:")
    )


def is_loopback(server_name: str | None) -> bool:
    """True for ``None`` (Gradio's default 127.0.0.1), ``localhost`` and loopback addresses."""
    if server_name is None or server_name.strip() in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(server_name.strip().strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: reachable from elsewhere
        return False


def is_public(server_name: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """The mode: forced by ``RS2SAM2_APP_MODE``, else public on Spaces or off loopback.

    ``server_name``: the address the app is served on (``demo.launch(server_name=…)``); ``None``:
    ``$GRADIO_SERVER_NAME``, else Gradio's default 127.0.0.1."""
    env = os.environ if env is None else env
    forced = env.get(MODE_ENV, "").strip().lower()
    if forced not in ("", *MODES):
        raise ValueError(f"{MODE_ENV} must be one of {MODES}, got {forced!r}")
    if forced in ("public", "local"):
        return forced == "public"
    if env.get(SPACE_ENV):
        return True
    return not is_loopback(server_name if server_name is not None else env.get(SERVER_NAME_ENV))


def policy_from_env(
    server_name: str | None = None, mode: str = "auto", env: Mapping[str, str] | None = None
) -> DeploymentPolicy:
    """The policy for an app served on ``server_name``; ``mode`` ``"public"``/``"local"`` forces one
    (an ``app.py`` option), ``"auto"`` leaves it to :func:`is_public`."""
    env = os.environ if env is None else env
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    public = mode == "public" if mode != "auto" else is_public(server_name, env)
    allowed = tuple(r.strip() for r in env.get(ALLOWED_MODELS_ENV, "").split(",") if r.strip())
    return DeploymentPolicy(
        public=public,
        allow_local_paths=env.get(ALLOW_LOCAL_ENV, "").strip().lower() in _TRUE,
        allowed_repos=allowed or DEFAULT_ALLOWED_REPOS,
    )


# Absolute POSIX paths (not the "//host" of a URL) and Windows drive paths.
_PATH = re.compile(r"(?<![\w.:/~-])(?:[A-Za-z]:[\\/]|/)(?:[^\s'\"(),;:\]\[<>|*?]+)")


def scrub_paths(message: str) -> str:
    """``message`` with every absolute path replaced by its last component (``/tmp/gradio/ab12/x.png`` →
    ``x.png``): error texts shown to a visitor never reveal the server's folders."""

    def last(match: re.Match[str]) -> str:
        name = re.split(r"[\\/]", match.group(0).rstrip("/\\"))[-1]
        return name or "…"

    return _PATH.sub(last, message)
