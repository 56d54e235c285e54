"""Files the demo app serves: one fresh folder per request (old ones pruned), the downloads (mask PNG,
result JSON), the panels as PNG files, and the examples of ``demo/examples.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from ..data.masks import mask_to_png
from ..predictor import Prediction
from ..weights.bundled import bundled_root, examples_file

OUTPUT_MAX_AGE_S = 3600.0
_output_root = Path(tempfile.gettempdir()) / "rs2sam2-app"
PRUNE_EVERY_S = 60.0
_last_prune = -PRUNE_EVERY_S


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


def write_downloads(prediction: Prediction, result: dict[str, Any]) -> tuple[Path, Path]:
    folder = _output_folder()
    png = folder / "mask.png"
    mask_to_png(prediction.mask).save(png)
    js = folder / "result.json"
    js.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return png, js


def as_files(**pictures: np.ndarray | None) -> list[str | None]:
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
