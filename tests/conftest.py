"""Fixtures and helpers shared by test modules in more than one folder of tests/: the session checks, tiny
models, the robustness fixtures (a 64² predictor served as the app's bundled model, its saved folder, the
image zoo), the in-process ``rs2sam2 predict``, a broken RRSIS-D dataset and the geo stub predictor."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.cli import predict as predict_cli
from rs2sam2.predictor import Prediction, RS2SAM2Predictor
from rs2sam2.processing import RS2SAM2Processor
from rs2sam2.testing import make_test_tokenizer, register_app_predictor
from rs2sam2.text import load_tokenizer

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


# ------------------------------------------------------------------ robustness: predictor, folder, CLI
IMAGE_SIZE = 64  # model input: small enough that a forward pass is a few milliseconds on one CPU thread
TEXT = "the red roof of the large building"


def tiny_config_64(vocab_size: int | None = None) -> RS2SAM2Config:
    d = RS2SAM2Config.from_preset("tiny").to_dict()
    d["image_size"] = IMAGE_SIZE
    if vocab_size is not None:
        d["union_encoder"]["vocab_size"] = vocab_size
    return RS2SAM2Config.from_dict(d)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Iterator[RS2SAM2Predictor]:
    """A random tiny model (64² input) with a test tokenizer, also served as the app's bundled model."""
    from rs2sam2 import app as logic  # Gradio: imported only by the tests that use this fixture

    cfg = tiny_config_64()
    tok = load_tokenizer(
        make_test_tokenizer(tmp_path_factory.mktemp("tok")),
        min_vocab_size=cfg.tokenizer.min_vocab_size,
        max_vocab_size=cfg.union_encoder.vocab_size,
    )
    torch.manual_seed(0)
    p = RS2SAM2Predictor(RS2SAM2(cfg), RS2SAM2Processor(cfg, tok))
    register_app_predictor(logic.BUNDLED_MODEL_ID, p)
    yield p
    logic.clear_predictors()


@pytest.fixture(scope="module")
def model_folder(predictor, tmp_path_factory) -> Path:
    return predictor.model.save_pretrained(
        tmp_path_factory.mktemp("model") / "m", processor=predictor.processor
    )


@pytest.fixture()
def cli(predictor, monkeypatch) -> Callable[[list[str]], int]:
    monkeypatch.setattr(predict_cli, "load_predictor", lambda model, subfolder, device: predictor)
    return run_cli


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


# ------------------------------------------------------------------------------------------ image zoo
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (40, 60, 3), dtype=np.uint8)


def png_bytes(array: np.ndarray = RGB, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels but holds almost no data (a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 40 (H) × 60 (W); orientation 6 = displayed rotated by 90° clockwise, i.e. 60 × 40."""
    image = Image.fromarray(RGB)
    exif = image.getexif()
    exif[0x0112] = 6
    return save(path, image, exif=exif.tobytes())


def _tif(path: Path, array: np.ndarray, **kwargs) -> Path:
    tifffile.imwrite(path, array, **kwargs)
    return path


def _noise(h: int, w: int, dtype: type = np.uint8) -> np.ndarray:
    high = 60000 if dtype == np.uint16 else 255
    return RNG.integers(0, high, (h, w) if dtype == np.uint16 else (h, w, 3)).astype(dtype)


def _float_with_nonfinite() -> np.ndarray:
    a = RNG.random((40, 60)).astype(np.float32)
    a[0, 0], a[1, 1], a[2, 2] = np.nan, np.inf, -np.inf
    return a


MB = {"photometric": "minisblack", "planarconfig": "contig"}
# name -> (writer(path) -> path, mask (H, W) every entry point must return)
GOOD_IMAGES: dict[str, tuple[Callable[[Path], Path], tuple[int, int]]] = {
    "1x1.png": (lambda p: save(p, Image.new("RGB", (1, 1), (9, 9, 9))), (1, 1)),
    "1x5000.png": (lambda p: save(p, Image.fromarray(_noise(1, 5000))), (1, 5000)),
    "5000x1.png": (lambda p: save(p, Image.fromarray(_noise(5000, 1))), (5000, 1)),
    "grey.png": (lambda p: save(p, Image.fromarray(RGB[..., 0])), (40, 60)),
    "one-bit.png": (lambda p: save(p, Image.fromarray(RGB[..., 0] > 100)), (40, 60)),
    "palette.png": (lambda p: save(p, Image.fromarray(RGB).convert("P")), (40, 60)),
    "palette-transparency.png": (
        lambda p: save(p, Image.fromarray(RGB).convert("P"), transparency=0),
        (40, 60),
    ),
    "rgba.png": (lambda p: save(p, Image.fromarray(np.dstack([RGB, RGB[..., 0]]))), (40, 60)),
    "grey-alpha.png": (lambda p: save(p, Image.fromarray(RGB[..., 0]).convert("LA")), (40, 60)),
    "cmyk.jpg": (lambda p: save(p, Image.fromarray(RGB).convert("CMYK")), (40, 60)),
    "cmyk.tif": (lambda p: save(p, Image.fromarray(RGB).convert("CMYK")), (40, 60)),
    "16-bit.png": (lambda p: save(p, Image.fromarray(_noise(40, 60, np.uint16))), (40, 60)),
    "16-bit-rgb.tif": (
        lambda p: _tif(p, RNG.integers(0, 60000, (40, 60, 3)).astype(np.uint16), photometric="rgb"),
        (40, 60),
    ),
    "float32-nan-inf.tif": (lambda p: _tif(p, _float_with_nonfinite()), (40, 60)),
    "float32-all-nan.tif": (lambda p: _tif(p, np.full((20, 30), np.nan, np.float32)), (20, 30)),
    "int32-negative.tif": (lambda p: _tif(p, RNG.integers(-5000, 5000, (40, 60)).astype(np.int32)), (40, 60)),
    "bool.tif": (lambda p: _tif(p, RNG.random((40, 60)) > 0.5), (40, 60)),
    "animated.gif": (
        lambda p: save(p, Image.fromarray(RGB), save_all=True, append_images=[Image.fromarray(255 - RGB)]),
        (40, 60),
    ),
    "exif-rotated.jpg": (exif_rotated_jpeg, (60, 40)),
}  # fmt: skip

# name -> (file content, message of the processor / predictor, of the app, of the CLI)
BAD_IMAGES: dict[str, tuple[Callable[[], bytes], str, str, str]] = {
    "zero-byte.png": (lambda: b"", r"empty \(0 bytes\)", r"Could not read .* empty", r"empty \(0 bytes\)"),
    "zero-byte.tif": (lambda: b"", r"empty \(0 bytes\)", r"Could not read .* empty", r"empty \(0 bytes\)"),
    "truncated.png": (
        lambda: png_bytes()[: len(png_bytes()) // 2],
        r"truncated",
        r"Could not read 'truncated.png' as an image.*truncated",
        r"truncated",
    ),
    "truncated.jpg": (
        lambda: png_bytes(fmt="JPEG")[: len(png_bytes(fmt="JPEG")) // 2],
        r"image file is truncated",
        r"Could not read 'truncated.jpg' as an image",
        r"truncated",
    ),
    "corrupt.png": (
        lambda: (lambda b: b[:60] + b"\xff" * 140 + b[200:])(png_bytes()),
        r"cannot read .*broken data stream",
        r"Could not read 'corrupt.png' as an image",
        r"broken data stream",
    ),
    "text.png": (lambda: b"hello, not a picture", r"cannot identify", r"Could not read", r"cannot identify"),
    "document.jpg": (lambda: b"%PDF-1.4\n%fake", r"cannot identify", r"Could not read", r"cannot identify"),
    "page.tif": (lambda: b"<html></html>", "cannot identify", "Could not read .*not a TIFF", "cannot read"),
    "bomb-100000x100000.png": (
        lambda: png_header_only(100_000, 100_000),
        r"decompression bomb",
        r"too large to open safely",
        r"decompression bomb",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    for name, (write, _) in GOOD_IMAGES.items():
        write(folder / name)
    for name, (content, *_) in BAD_IMAGES.items():
        (folder / name).write_bytes(content())
    return folder


class _CodeInPickle:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------------------- rs2sam2 predict in-process
def run_cli(argv: list[str]) -> int:
    """``rs2sam2 predict …`` in-process; argparse's own errors come back as their exit code."""
    try:
        return predict_cli.main(argv)
    except SystemExit as e:
        return int(e.code)


# ---------------------------------------------------------------------------- a broken RRSIS-D dataset
def make_rrsisd(root: Path) -> Path:
    """An RRSIS-D layout with one good train sample, one of each problem ``data validate`` reports (mask and
    image sizes differ, image missing, empty mask, unknown annotation) and a testB sample."""
    img_dir = root / "images" / "rrsisd" / "JPEGImages"
    img_dir.mkdir(parents=True)
    for name, size in (("ok.jpg", (8, 6)), ("big.jpg", (10, 6))):
        Image.new("RGB", size, (9, 9, 9)).save(img_dir / name)
    poly = [[0, 0, 4, 0, 4, 4, 0, 4]]
    instances = {
        "images": [
            {"id": 1, "file_name": "ok.jpg", "height": 6, "width": 8},
            {"id": 2, "file_name": "big.jpg", "height": 6, "width": 8},  # real file is 10 wide
            {"id": 3, "file_name": "gone.jpg", "height": 6, "width": 8},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": poly},
            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": poly},
            {"id": 3, "image_id": 3, "category_id": 1, "segmentation": poly},
            {"id": 4, "image_id": 1, "category_id": 1, "segmentation": []},
        ],
        "categories": [{"id": 1, "name": "roof"}],
    }

    def ref(rid, ann, img, split="train"):
        return {"ref_id": rid, "ann_id": ann, "image_id": img, "split": split, "category_id": 1,
                "sentences": [{"raw": f"ref {rid}", "sent_id": rid}], "sent_ids": [rid]}  # fmt: skip

    refs = [ref(0, 1, 1), ref(1, 2, 2), ref(2, 3, 3), ref(3, 4, 1), ref(4, 99, 1), ref(5, 1, 1, "testB")]
    (root / "rrsisd").mkdir()
    (root / "rrsisd" / "instances.json").write_text(json.dumps(instances))
    (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(refs))
    return root


# ------------------------------------------------------------------------ geo: scenes and a stub model
X0, Y0, GSD = 500_000.0, 5_000_000.0, 10.0  # EPSG:32633 origin (upper left) and pixel size in metres
UTM = "EPSG:32633"


class StubPredictor:
    """``predict`` like RS2SAM2Predictor: bright pixels are the referred object."""

    def __init__(self, image_size: int = 64, keep_images: bool = True) -> None:
        self.model = SimpleNamespace(config=SimpleNamespace(image_size=image_size, mask_threshold=0.5))
        self.keep_images = keep_images
        self.images: list[np.ndarray] = []

    def predict(self, image, text, threshold=None, bands=None) -> Prediction:
        image = np.asarray(image)
        if self.keep_images:
            self.images.append(image)
        logits = np.where(image.mean(-1) > 128, 4.0, -4.0).astype(np.float32)
        thr = 0.5 if threshold is None else threshold
        mask = logits > thr
        return Prediction(
            mask=mask,
            score=float(mask.any()),
            logits=logits,
            pseudo_mask=np.zeros((14, 14)),
            dense_prompt=np.zeros((16, 16)),
            fused_features=[],
            iou_score=0.0,
            object_score=0.0,
            threshold=thr,
            text=text,
        )


def write_tif(
    path: Path, data: np.ndarray, *, crs: str | None = UTM, nodata: float | None = None, transform=None
) -> Path:
    """(C, H, W) → GeoTIFF; default transform: 10 m pixels from (X0, Y0)."""
    import rasterio
    from rasterio.transform import from_origin

    c, h, w = data.shape
    transform = from_origin(X0, Y0, GSD, GSD) if transform is None and crs else transform
    kwargs = {"crs": crs, "transform": transform} if transform is not None else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=c, dtype=data.dtype, nodata=nodata, **kwargs
        ) as dst:
            dst.write(data)
    return path


def scene(
    h: int,
    w: int,
    boxes: list[tuple[int, int, int, int]],
    *,
    bands: int = 3,
    dtype=np.uint8,
    bg: float = 40,
    fg: float = 220,
) -> np.ndarray:
    """(C, H, W) dark scene with bright boxes (row0, row1, col0, col1)."""
    data = np.full((bands, h, w), bg, dtype)
    for r0, r1, c0, c1 in boxes:
        data[:, r0:r1, c0:c1] = fg
    return data


def truth(h: int, w: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m
