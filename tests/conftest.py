from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from rs2sam2 import RS2SAM2, RS2SAM2Config

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------- the suite leaves the tree as is
def git_status() -> str | None:
    """``git status --porcelain`` of the repository (untracked files included, ignored ones not); None
    outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STATUS_KEY] = git_status()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests changed what git sees in the work tree (a tracked file rewritten, a
    file left behind outside the ignored folders)."""
    before = session.config.stash.get(_STATUS_KEY, None)
    after = git_status()
    if before is None or after is None or after == before:
        return
    changed = sorted(set(after.splitlines()) ^ set(before.splitlines()))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("the test run changed the work tree (git status --porcelain):", red=True)
        for line in changed:
            reporter.write_line(f"  {line}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


_STATUS_KEY = pytest.StashKey[str | None]()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a
    shared 2-core machine OpenMP spinning makes 2 threads many times slower for these small models."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def served_app() -> Iterator[str]:
    """``app.demo`` served once per session on 127.0.0.1, as app.py launches it. Once: closing it deletes
    Gradio's cached copies of the examples (``delete_cache``), which a relaunch does not restore."""
    from app import demo
    from rs2sam2.testing import serve_app_locally

    url = serve_app_locally(demo)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def server(predictor, served_app) -> str:
    """The served app's URL, with the module's ``predictor`` fixture primed in the app's model cache."""
    return served_app


@pytest.fixture(scope="session")
def tiny_config() -> RS2SAM2Config:
    return RS2SAM2Config.from_preset("tiny")


@pytest.fixture()
def tiny_model(tiny_config) -> RS2SAM2:
    torch.manual_seed(0)
    return RS2SAM2(tiny_config)


def random_inputs(config: RS2SAM2Config, batch: int = 2, length: int = 7, seed: int = 0):
    """Model inputs with the second sample's last two text tokens padded (id 3, mask False)."""
    g = torch.Generator().manual_seed(seed)
    s, u = config.image_size, config.union_encoder.img_size
    ids = torch.randint(4, 200, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    mask = torch.ones(batch, length, dtype=torch.bool)
    if batch > 1:
        ids[1, -2:] = 3
        ids[1, -3] = 2
        mask[1, -2:] = False
    return {
        "sam_pixels": torch.randn(batch, 3, s, s, generator=g),
        "union_pixels": torch.randn(batch, 3, u, u, generator=g),
        "input_ids": ids,
        "attention_mask": mask,
    }


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` imported as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory):
    """A randomly initialised tiny RS2-SAM2 with a test tokenizer."""
    from rs2sam2.predictor import RS2SAM2Predictor
    from rs2sam2.processing import RS2SAM2Processor
    from rs2sam2.testing import make_test_tokenizer
    from rs2sam2.text import load_tokenizer

    cfg = RS2SAM2Config.from_preset("tiny")
    folder = make_test_tokenizer(tmp_path_factory.mktemp("tok"), vocab_size=150)
    tok = load_tokenizer(
        folder, min_vocab_size=cfg.tokenizer.min_vocab_size, max_vocab_size=cfg.union_encoder.vocab_size
    )
    torch.manual_seed(0)
    return RS2SAM2Predictor(RS2SAM2(cfg), RS2SAM2Processor(cfg, tok))
