"""The bundled default model and the demo examples are found however rs2sam2 is installed.

:mod:`rs2sam2.weights.bundled` resolves them (``RS2SAM2_DEFAULT_MODEL`` → the wheel's copy → the repository's
``demo/``); a wheel built from a copy of the repository, installed into a folder of its own, loads the model
and segments a packaged example from another directory, through the API and through the ``rs2sam2``
command, with nothing of the repository on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rs2sam2.predictor import DEFAULT_MODEL, RS2SAM2Predictor
from rs2sam2.weights import bundled

REPO = Path(__file__).resolve().parent.parent
MAX_WHEEL_BYTES = 25_000_000
# Build outputs and caches, not copied into the build (outside a git checkout).
NOT_SOURCES = (".git", "build", "dist", "*.egg-info", "__pycache__", "test-artifacts", "outputs", "runs")
NOT_SOURCES += (".pytest_cache", ".ruff_cache", ".ipynb_checkpoints")


# ------------------------------------------------------------------------------------------- resolver
def _fake_roots(monkeypatch, tmp_path: Path, *, packaged: bool, repository: bool) -> tuple[Path, Path]:
    package, repo = tmp_path / "site" / "rs2sam2" / "_bundled", tmp_path / "repo"
    for root, present in ((package, packaged), (repo, repository)):
        if present:
            (root / "demo" / bundled.MODEL_NAME).mkdir(parents=True)
            (root / "demo" / bundled.EXAMPLES_NAME).write_text("[]")
    monkeypatch.setattr(bundled, "PACKAGED_ROOT", package)
    monkeypatch.setattr(bundled, "REPOSITORY_ROOT", repo)
    monkeypatch.delenv(bundled.MODEL_ENV, raising=False)
    return package, repo


def test_packaged_copy_comes_before_the_repository(monkeypatch, tmp_path):
    package, _ = _fake_roots(monkeypatch, tmp_path, packaged=True, repository=True)
    assert bundled.bundled_root() == package
    assert bundled.default_model_dir() == package / "demo" / "rs2sam2-tiny-synthetic"
    assert bundled.examples_file() == package / "demo" / "examples.json"


def test_repository_demo_folder_without_a_packaged_copy(monkeypatch, tmp_path):
    _, repo = _fake_roots(monkeypatch, tmp_path, packaged=False, repository=True)
    assert bundled.bundled_root() == repo
    assert bundled.default_model_dir() == repo / "demo" / "rs2sam2-tiny-synthetic"
    # nothing anywhere: the repository's path, so that errors can name the folder that is missing
    _, repo = _fake_roots(monkeypatch, tmp_path / "empty", packaged=False, repository=False)
    assert bundled.default_model_dir() == repo / "demo" / "rs2sam2-tiny-synthetic"


def test_environment_variable_comes_first(monkeypatch, tmp_path):
    _fake_roots(monkeypatch, tmp_path, packaged=True, repository=True)
    mine = tmp_path / "my model"
    mine.mkdir()
    monkeypatch.setenv(bundled.MODEL_ENV, str(mine))
    assert bundled.default_model_dir() == mine
    monkeypatch.setenv(bundled.MODEL_ENV, "  ")  # blank = unset
    assert (
        bundled.default_model_dir()
        == tmp_path / "site" / "rs2sam2" / "_bundled" / "demo" / bundled.MODEL_NAME
    )
    monkeypatch.setenv(bundled.MODEL_ENV, str(tmp_path / "tpyo"))
    with pytest.raises(FileNotFoundError, match=r"RS2SAM2_DEFAULT_MODEL='.*tpyo' is not a folder"):
        bundled.default_model_dir()


def test_from_pretrained_without_a_model_reads_the_environment_variable(monkeypatch, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    monkeypatch.setenv(bundled.MODEL_ENV, str(empty))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not-a-model"):
        RS2SAM2Predictor.from_pretrained()


def test_the_repository_holds_what_the_wheel_packages():
    """In this checkout (editable install) the bundled model is the repository's demo/ folder."""
    assert DEFAULT_MODEL == REPO / "demo" / "rs2sam2-tiny-synthetic"
    assert (DEFAULT_MODEL / "config.json").is_file() and (DEFAULT_MODEL / "model.safetensors").is_file()
    examples = json.loads((REPO / "demo" / "examples.json").read_text())
    assert examples and all((REPO / e["image"]).is_file() for e in examples)


# ------------------------------------------------------------------------------------------------ wheel
def copy_sources(repo: Path, target: Path) -> None:
    """Copy what git would commit (tracked and untracked files, not the ignored ones: no data or runs a
    developer keeps in the checkout); outside a git checkout, everything but build outputs and caches."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(repo, target, ignore=shutil.ignore_patterns(*NOT_SOURCES))
        return
    for name in filter(None, listed.decode().split("\0")):
        if (repo / name).is_file():  # a deleted but still tracked file is skipped
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, target / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the repository (the work tree gets no build/ or egg-info), installed
    with ``pip install --target`` into a folder of its own (dependencies: this environment's)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    copy_sources(REPO, source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), "."],
        cwd=source,
        check=True,
        timeout=600,
    )
    (wheel,) = (tmp / "dist").glob("rs2sam2-*.whl")
    assert wheel.stat().st_size < MAX_WHEEL_BYTES, f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB"
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "demo" / "rs2sam2-tiny-synthetic").iterdir():
        assert f"rs2sam2/_bundled/demo/rs2sam2-tiny-synthetic/{path.name}" in names
    for path in (REPO / "demo" / "examples").iterdir():
        assert f"rs2sam2/_bundled/demo/examples/{path.name}" in names
    assert "rs2sam2/_bundled/demo/examples.json" in names
    site = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=600)
    return site


def _isolated_env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", bundled.MODEL_ENV)}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1")
    return env


USE_THE_INSTALLED_PACKAGE = """
import json, sys
from pathlib import Path
import numpy as np
import rs2sam2
from rs2sam2 import RS2SAM2Predictor
from rs2sam2.app import load_examples
from rs2sam2.weights import bundled

predictor = RS2SAM2Predictor.from_pretrained()
image, text = load_examples()[0]
result = predictor.predict(image, text)
print(json.dumps({
    "package": rs2sam2.__file__, "root": str(bundled.bundled_root()), "image": image,
    "mask": list(result.mask.shape), "mask_dtype": str(result.mask.dtype), "score": result.score,
    "examples": len(load_examples()),
}))
"""


def _run_in(cwd: Path, env: dict, *command: str) -> subprocess.CompletedProcess:
    """Run ``command`` in ``cwd`` with only ``env`` (the installed copy's environment), capturing output."""
    return subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_installed_wheel_finds_the_bundled_model_from_another_directory(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _isolated_env(installed)
    done = _run_in(elsewhere, env, sys.executable, "-c", USE_THE_INSTALLED_PACKAGE)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    package = installed / "rs2sam2"
    assert Path(out["package"]) == package / "__init__.py"
    assert Path(out["root"]) == package / "_bundled"
    assert Path(out["image"]).is_relative_to(package / "_bundled" / "demo" / "examples")
    assert out["examples"] == len(json.loads((REPO / "demo" / "examples.json").read_text()))
    width, height = Image.open(out["image"]).size
    assert out["mask"] == [height, width] and out["mask_dtype"] == "bool"
    assert 0.0 <= out["score"] <= 1.0

    # the `rs2sam2` command that pip installed with it, on a packaged example, writing here
    image = Path(out["image"])
    command = [str(installed / "bin" / "rs2sam2"), "predict", str(image), "the largest building"]
    done = _run_in(elsewhere, env, *command, "--out", "mask.png", "--no-progress")
    assert done.returncode == 0, done.stderr
    mask = np.asarray(Image.open(elsewhere / "mask.png"))
    assert mask.shape == (height, width)
    assert set(np.unique(mask)) <= {0, 255}
