"""Where the bundled default model and the demo examples are, for every way rs2sam2 is installed.

The repository keeps them in ``demo/`` (``demo/rs2sam2-tiny-synthetic/``, ``demo/examples.json``,
``demo/examples/``). A wheel carries a copy under ``rs2sam2/_bundled/demo/`` (``setup.py`` puts it there),
so an installed package finds them wherever it runs; an editable install and the Hugging Face Space use the
repository's folder. ``examples.json`` names its images relative to the folder that holds ``demo/`` (the
repository root, or ``rs2sam2/_bundled``): :func:`bundled_root` is that folder.

The default model, in this order (the first that applies wins):

1. an explicit path (``from_pretrained(path)``, ``rs2sam2 predict --model``), not resolved here;
2. the environment variable ``RS2SAM2_DEFAULT_MODEL`` (a model folder; an error if it is not one);
3. the copy packaged in the wheel;
4. the repository's ``demo/`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_ENV = "RS2SAM2_DEFAULT_MODEL"
"""Environment variable naming the folder used when no model is given."""
MODEL_NAME = "rs2sam2-tiny-synthetic"
"""Folder name of the bundled default model."""
EXAMPLES_NAME = "examples.json"

_PACKAGE = Path(__file__).resolve().parent.parent  # rs2sam2/

PACKAGED_ROOT = _PACKAGE / "_bundled"
"""Folder holding ``demo/`` inside an installed wheel."""
REPOSITORY_ROOT = _PACKAGE.parent
"""The repository (editable installs, the Space): ``demo/`` is next to the package."""


def bundled_root() -> Path:
    """The folder that holds ``demo/``: the wheel's packaged copy if present, else the repository."""
    if (PACKAGED_ROOT / "demo").is_dir():
        return PACKAGED_ROOT
    return REPOSITORY_ROOT


def default_model_dir() -> Path:
    """The folder of the default model (steps 2–4 above).

    The path is returned even when the folder is missing (a partial checkout), so callers can say which
    folder they looked for; ``RS2SAM2_DEFAULT_MODEL`` pointing to something that is not a folder raises
    ``FileNotFoundError`` at once, since a typo there would otherwise load another model silently.
    """
    configured = os.environ.get(MODEL_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{MODEL_ENV}={configured!r} is not a folder (it should be a model folder)"
            )
        return path
    return bundled_root() / "demo" / MODEL_NAME


def examples_file() -> Path:
    """``demo/examples.json`` of :func:`bundled_root` (image paths in it are relative to that root)."""
    return bundled_root() / "demo" / EXAMPLES_NAME
