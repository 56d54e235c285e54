"""Robustness and safety: every entry point against hostile or careless input, faults and load.

Entry points: the processor / predictor (Python API), the Gradio handlers and the served app, the
``rs2sam2 predict`` command, model and checkpoint loading, the dataset readers, ``rs2sam2 train``. Every
failure must be a clear message (never a crash, a hang, a silent wrong answer or lost work). The matrix of
inputs, outcomes and the tests covering each row (these and older ones) is in ``docs/robustness.md``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import weakref
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import tifffile
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2 import app as logic
from rs2sam2.app import files as app_files
from rs2sam2.app import models as app_models
from rs2sam2.cli import main as cli_main
from rs2sam2.cli import predict as predict_cli
from rs2sam2.data.readers import open_dataset
from rs2sam2.data.samples import SampleError
from rs2sam2.data.synthetic import generate_dataset
from rs2sam2.metrics import compute_metrics, iou, resize_mask_nearest
from rs2sam2.predictor import RS2SAM2Predictor
from rs2sam2.processing import RS2SAM2Processor, to_rgb
from rs2sam2.testing import make_test_tokenizer, register_app_predictor
from rs2sam2.text import load_tokenizer
from rs2sam2.training.checkpoint import atomic_torch_save, load_checkpoint
from rs2sam2.weights.sources import TOKENIZER_FILES
from tests.test_predict_cli import run_cli
from tests.test_validate import make_rrsisd

IMAGE_SIZE = 64  # model input: small enough that a forward pass is a few milliseconds on one CPU thread
TEXT = "the red roof of the large building"
EXIT_OK, EXIT_FAILED = predict_cli.EXIT_OK, predict_cli.EXIT_FAILED


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(vocab_size: int | None = None) -> RS2SAM2Config:
    d = RS2SAM2Config.from_preset("tiny").to_dict()
    d["image_size"] = IMAGE_SIZE
    if vocab_size is not None:
        d["union_encoder"]["vocab_size"] = vocab_size
    return RS2SAM2Config.from_dict(d)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Iterator[RS2SAM2Predictor]:
    """A random tiny model (64² input) with a test tokenizer, also served as the app's bundled model."""
    cfg = tiny_config()
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


# ---------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("name", sorted(GOOD_IMAGES))
def test_unusual_images_give_a_native_size_mask_everywhere(name, zoo, predictor, cli, tmp_path):
    path, expected = zoo / name, GOOD_IMAGES[name][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL: palette transparency; numpy: percentiles of NaN bands
        pred = predictor.predict(path, TEXT)
        outputs = logic.segment_event(str(path), TEXT, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0)
    assert pred.mask.shape == expected and np.isfinite(pred.logits).all() and 0 <= pred.score <= 1
    assert read_mask(Path(outputs[6])).shape == expected  # the app's mask download, native size
    assert json.loads(Path(outputs[7]).read_text())["image_size"] == list(expected)
    out = tmp_path / ("mask.tif" if path.suffix == ".tif" else "mask.png")
    assert cli([str(path), TEXT, "--out", str(out), "--no-progress"]) == EXIT_OK
    assert read_mask(out).shape == expected
    # (the other thin image would just repeat 1x5000's hundred windows)
    if path.suffix != ".tif" and name not in (
        "exif-rotated.jpg",
        "grey-alpha.png",
        "animated.gif",
        "5000x1.png",
    ):
        tiled = tmp_path / "tiled.png"  # plain formats in tiles mode go through GDAL instead of PIL
        assert cli([str(path), TEXT, "--mode", "tiles", "--out", str(tiled), "--no-progress"]) == EXIT_OK
        assert read_mask(tiled).shape == expected


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_files_give_clear_errors_everywhere(name, zoo, predictor, cli, tmp_path, capsys):
    path = zoo / name
    _, api_message, app_message, cli_message = BAD_IMAGES[name]
    start = time.monotonic()
    with pytest.raises(ValueError, match=api_message):
        predictor.predict(path, TEXT)
    with pytest.raises(gr.Error, match=app_message):
        logic.segment_event(str(path), TEXT, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0)
    _, info = logic.preview(str(path), "")
    assert "⚠️" in info
    for mode in ("single", "tiles"):
        out = tmp_path / (f"{mode}.tif" if path.suffix == ".tif" else f"{mode}.png")
        assert cli([str(path), TEXT, "--out", str(out), "--mode", mode, "--no-progress"]) == EXIT_FAILED
        err = capsys.readouterr().err
        assert f"FAILED {path}" in err and "Traceback" not in err
        if mode == "single":
            assert re.search(cli_message, err), err
        assert not out.exists()  # nothing half-written is left behind
    assert time.monotonic() - start < 10  # refused before decoding, no hang


def test_truncated_png_is_refused_in_tiles_mode_instead_of_read_as_zeros(zoo, cli, tmp_path, capsys):
    """GDAL silently fills the missing rows of a truncated PNG with zeros; the CLI must refuse it."""
    assert cli([str(zoo / "truncated.png"), TEXT, "--mode", "tiles", "--out", str(tmp_path / "m.png")]) == 1
    assert "damaged or truncated" in capsys.readouterr().err


def test_exif_orientation_is_applied_so_the_mask_matches_the_displayed_image(
    zoo, predictor, cli, tmp_path, capsys
):
    path = zoo / "exif-rotated.jpg"
    with Image.open(path) as im:
        upright = ImageOps.exif_transpose(im)
    assert upright.size == (40, 60)  # (W, H): the displayed orientation
    from_path = predictor.processor(path, TEXT)
    from_upright = predictor.processor(upright, TEXT)
    torch.testing.assert_close(from_path.sam_pixels, from_upright.sam_pixels, rtol=0, atol=0)
    np.testing.assert_array_equal(
        predictor.predict(path, TEXT).logits, predictor.predict(upright, TEXT).logits
    )
    # GDAL (tiles / coarse-to-fine) ignores the tag: refused with what to do instead
    assert cli([str(path), TEXT, "--mode", "tiles", "--out", str(tmp_path / "m.png")]) == EXIT_FAILED
    assert "rotated by its EXIF orientation tag (6), which GDAL ignores" in capsys.readouterr().err
    assert cli([str(path), TEXT, "--out", str(tmp_path / "ok.png")]) == EXIT_OK
    assert read_mask(tmp_path / "ok.png").shape == (60, 40)


def test_multiband_tiffs(tmp_path, predictor, cli, capsys):
    cube = RNG.integers(0, 4000, (40, 60, 5)).astype(np.uint16)
    path = _tif(tmp_path / "cube.tif", cube, **MB)
    # the Python API cannot decode it from a path (PIL) and says how to pass the bands instead
    with pytest.raises(ValueError, match=r"tifffile or rasterio .* bands=\(r, g, b\)"):
        predictor.predict(path, TEXT)
    assert predictor.predict(tifffile.imread(path), TEXT, bands=(4, 2, 0)).mask.shape == (40, 60)
    # the app and the CLI read it, and ask for a band choice
    with pytest.raises(gr.Error, match="5 bands"):
        logic.segment_event(str(path), TEXT, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0)
    outputs = logic.segment_event(str(path), TEXT, logic.BUNDLED_MODEL_ID, "", "5,3,1", 0.5, 0)
    assert read_mask(Path(outputs[6])).shape == (40, 60)
    assert cli([str(path), TEXT, "--out", str(tmp_path / "m.tif")]) == EXIT_FAILED
    assert "5 bands" in capsys.readouterr().err
    assert cli([str(path), TEXT, "--bands", "5,3,1", "--out", str(tmp_path / "m.tif")]) == EXIT_OK


def test_too_many_pixels_are_refused_without_allocating_them(predictor):
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20_000, 20_000, 3))  # a view: no memory
    with pytest.raises(ValueError, match="The image is 20000×20000 pixels .*limit is 67,108,864 pixels"):
        predictor.predict(huge, TEXT)
    with pytest.raises(ValueError, match="The image is 300000000×1 pixels"):
        to_rgb(np.broadcast_to(np.zeros((1, 1), np.float32), (1, 300_000_000)))


# ------------------------------------------------------------------------------------------------ text
LONG = "the red roof of the large building next to the road " * 400


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("🚗🚗 🛳️", "no token besides the pad id"),
        ("北京的红色屋顶", "no token besides the pad id"),
        ("مبنى كبير", "no token besides the pad id"),
        ("the\x00 red\x07 roof\x1b[31m", None),
        ("the roof\u200b\u202e on the left", None),
        ("the roof \ud800 on the left", None),  # an unpaired surrogate (broken UTF-16)
        ("<s></s><pad><mask>[SEG] the roof", None),
        (LONG, "truncated to 1022 tokens"),
    ],
    ids=["emoji", "chinese", "arabic", "control", "zero-width", "surrogate", "special-tokens", "very-long"],
)
def test_odd_texts_give_a_mask_with_a_warning_where_the_text_is_not_read(text, warning, predictor, zoo):
    image = zoo / "grey.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = predictor.predict(image, text)
        ids = predictor.processor(image, text).input_ids
    assert pred.mask.shape == (40, 60) and np.isfinite(pred.logits).all()
    assert ids.shape[1] <= predictor.processor.max_text_tokens and ids[0, -1] == 2  # </s> kept last
    messages = [str(w.message) for w in caught]
    if warning is None:
        assert not [m for m in messages if "text 0" in m], messages
    else:
        assert any(warning in m for m in messages), messages
    # the app shows what the model could not read next to the result
    outputs = logic.segment_event(str(image), text, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0)
    summary, notes = outputs[5], json.loads(Path(outputs[7]).read_text())["warnings"]
    if warning is None:
        assert notes == [] and "⚠️" not in summary
    else:
        expected = "reads only the first 1020" if text is LONG else "None of the words is in the model's"
        assert len(notes) == 1 and expected in notes[0] and expected in summary


@pytest.mark.parametrize(
    "text", ["", "   \t\n", "\x00\x01\x02", "\ud800"], ids=["empty", "whitespace", "control", "surrogate"]
)
def test_texts_with_nothing_to_read_are_refused_everywhere(text, predictor, cli, zoo, tmp_path, capsys):
    image = zoo / "grey.png"
    with pytest.raises(ValueError, match="empty or whitespace-only"):
        predictor.predict(image, text)
    with pytest.raises(gr.Error, match="Type a referring expression|empty or whitespace-only"):
        logic.segment_event(str(image), text, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0)
    assert cli([str(image), text, "--out", str(tmp_path / "m.png")]) in (1, 2)
    assert "empty" in capsys.readouterr().err


def test_cli_passes_the_truncation_warning_on(cli, zoo, tmp_path):
    """``run_job`` records warnings to summarise its own; the others must still reach the user (stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli([str(zoo / "grey.png"), LONG, "--out", str(tmp_path / "m.png")]) == EXIT_OK
    assert any("truncated to 1022 tokens" in str(w.message) for w in caught)


# --------------------------------------------------------------------------------------------- weights
class _CodeInPickle:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_folder(model_folder: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A copy of the saved model folder with one defect, and the message that must name it."""
    folder = tmp_path / kind
    shutil.copytree(model_folder, folder)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    if kind == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
        return folder, "truncated or corrupt"
    if kind == "git-lfs-pointer":
        weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1234\n")
        return folder, "truncated or corrupt"
    if kind == "nan":
        state["text_proj.weight"][0, 0] = float("nan")
        save_file(state, str(weights))
        return folder, r"non-finite .*text_proj\.weight"
    if kind == "inf":
        state["prompt_generator.mask_linear.weight"][0, 0] = float("inf")
        save_file(state, str(weights))
        return folder, "non-finite"
    if kind == "wrong-shape":
        save_file({**state, "text_proj.weight": torch.zeros(3, 3)}, str(weights))
        return folder, r"shape mismatches: text_proj\.weight"
    if kind == "missing-key":
        save_file({k: v for k, v in state.items() if k != "sam_decoder.no_mem_embed"}, str(weights))
        return folder, r"missing keys: sam_decoder\.no_mem_embed"
    if kind == "code-in-pickle":
        weights.unlink()
        payload = {"text_proj.weight": _CodeInPickle(tmp_path / "pwned")}
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(payload))
        return folder, "refusing to unpickle"
    if kind == "tokenizer-of-another-model":
        for name in TOKENIZER_FILES:
            (folder / name).unlink(missing_ok=True)
        other = make_test_tokenizer(tmp_path / "small-tok", vocab_size=60)  # 63 tokens < the 100 required
        for file in other.iterdir():
            shutil.copy(file, folder / file.name)
        return folder, "has only 63 tokens, expected at least 100"
    raise AssertionError(kind)


WEIGHT_DEFECTS = [
    "truncated",
    "git-lfs-pointer",
    "nan",
    "inf",
    "wrong-shape",
    "missing-key",
    "code-in-pickle",
    "tokenizer-of-another-model",
]


@pytest.mark.parametrize("kind", WEIGHT_DEFECTS)
def test_bad_model_folders_are_refused_everywhere(kind, model_folder, predictor, zoo, tmp_path, capsys):
    folder, message = _bad_folder(model_folder, tmp_path, kind)
    with pytest.raises(ValueError, match=message):  # CheckpointError is a ValueError
        RS2SAM2Predictor.from_pretrained(folder)
    with pytest.raises(gr.Error, match=f"could not be loaded: .*{message}"):
        logic.segment_event(str(zoo / "grey.png"), TEXT, logic.BUNDLED_MODEL_ID, str(folder), "", 0.5, 0)
    assert str(folder) not in app_models._predictors  # a failed load is not cached
    assert run_cli([str(zoo / "grey.png"), TEXT, "--model", str(folder)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "cannot load the model" in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()  # no code ran


def test_the_intact_folder_loads(model_folder, predictor, zoo):
    loaded = RS2SAM2Predictor.from_pretrained(model_folder)
    np.testing.assert_allclose(
        loaded.predict(zoo / "grey.png", TEXT).logits,
        predictor.predict(zoo / "grey.png", TEXT).logits,
        atol=1e-5,
    )


def test_bad_training_checkpoints_are_refused_with_a_clear_message(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"format": 1, "model": {"w": torch.zeros(3)}}, good)
    data = good.read_bytes()
    cases = {
        "empty.pt": (b"", "empty, truncated or corrupt"),
        "truncated.pt": (data[: len(data) // 2], "empty, truncated or corrupt"),
        "text.pt": (b"hello", "empty, truncated or corrupt"),
        "code.pt": (
            pickle.dumps({"format": 1, "x": _CodeInPickle(tmp_path / "pwned")}),
            "refusing to unpickle",
        ),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message):
            load_checkpoint(tmp_path / name)
    torch.save({"step": 3}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an rs2sam2 training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    assert not (tmp_path / "pwned").exists()
    assert load_checkpoint(good)["format"] == 1


# ------------------------------------------------------------------------------------------------ data
@pytest.fixture()
def broken_rrsisd(tmp_path) -> Path:
    """Train refs: 0-0 fine, 1-0 mask/image size mismatch, 2-0 image missing, 3-0 empty mask, 4-0 unknown
    annotation (tests/test_validate.py::make_rrsisd, which ``data validate`` reports in full)."""
    return make_rrsisd(tmp_path / "rrsisd")


def test_broken_samples_raise_a_message_naming_the_sample_by_default(broken_rrsisd):
    ds = open_dataset(broken_rrsisd, "train")
    ids = [s.id for s in ds.samples]
    assert ids == ["0-0", "1-0", "2-0", "3-0", "4-0"]
    expected = {
        "1-0": r"sample '1-0': mask 6×8 does not match image 6×10",
        "2-0": r"sample '2-0': cannot read image .*gone\.jpg",
        "4-0": r"sample '4-0': cannot read mask \(KeyError",
    }
    for sample_id, message in expected.items():
        with pytest.raises(SampleError, match=message):
            ds[ids.index(sample_id)]
    assert ds[0]["mask"].any() and not ds[ids.index("3-0")]["mask"].any()  # empty masks kept (official)
    with pytest.raises(SampleError, match="no foreground pixel"):
        open_dataset(broken_rrsisd, "train", empty_masks="raise")[ids.index("3-0")]
    with pytest.raises(SampleError, match="sample '1-0'"):  # checked up front when empty masks are skipped
        open_dataset(broken_rrsisd, "train", empty_masks="skip")


def test_broken_samples_are_skipped_with_a_warning_on_request(broken_rrsisd):
    with pytest.warns(UserWarning, match=r"skipped 3 of 5 samples \(1-0, 2-0, 4-0\)"):
        ds = open_dataset(broken_rrsisd, "train", on_error="skip")
    assert [s.id for s in ds.samples] == ["0-0", "3-0"] and len(ds) == 2
    assert [i for i, _ in ds.skipped] == ["1-0", "2-0", "4-0"]
    assert all(ds[i]["image"].size == ds[i]["mask"].shape[::-1] for i in range(len(ds)))
    with pytest.warns(UserWarning, match="skipped 4 of 5"):
        ds = open_dataset(broken_rrsisd, "train", on_error="skip", empty_masks="skip")
    assert [s.id for s in ds.samples] == ["0-0"]
    with pytest.raises(ValueError, match="on_error must be"):
        open_dataset(broken_rrsisd, "train", on_error="ignore")


@pytest.fixture(scope="module")
def train_ws(tmp_path_factory):
    """Tokenizer, a 4-image synthetic dataset (4 train samples) and a 64² tiny config, as in test_train."""
    root = tmp_path_factory.mktemp("train_ws")
    make_test_tokenizer(root / "tokenizer", vocab_size=120)
    generate_dataset(
        root / "data", 4, seed=0, size=64, splits=(0.5, 0.25, 0.25), expressions_per_image=2,
        write_rrsisd=False,
    )  # fmt: skip
    tiny_config(vocab_size=128).to_json(root / "config.json")
    return root


def train_args(ws: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--config", str(ws / "config.json"),
            "--tokenizer", str(ws / "tokenizer"), "--val-split", "none", "--log-every", "1",
            "--no-progress", *extra]  # fmt: skip


def test_training_stops_on_a_broken_sample_or_skips_it_on_request(train_ws, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(train_ws / "data", data)
    records = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    victim = next(r for r in records if r["split"] == "train")
    (data / victim["image"]).unlink()
    assert cli_main(train_args(train_ws, data, tmp_path / "a", "--max-steps", "4")) == 1
    err = capsys.readouterr().err
    assert re.search(
        rf"SampleError: sample '[^']+': cannot read image \S*{re.escape(victim['image'])}", err
    ), err
    assert cli_main(train_args(train_ws, data, tmp_path / "b", "--max-steps", "2", "--on-error", "skip")) == 0
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 2


def test_training_refuses_code_in_refs_pickle_and_corrupt_checkpoints(train_ws, tmp_path, capsys):
    root = make_rrsisd(tmp_path / "evil")
    (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps([_CodeInPickle(tmp_path / "pwned")]))
    assert cli_main(train_args(train_ws, root, tmp_path / "a")) == 1
    assert "refusing to unpickle global" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 half a zip")
    assert (
        cli_main(
            train_args(train_ws, train_ws / "data", tmp_path / "b", "--resume", str(tmp_path / "bad.pt"))
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "cannot read" in err and "training checkpoint" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ training faults
_WRITER = """
import sys, torch
from rs2sam2.training.checkpoint import atomic_torch_save
for i in range(1, 10_000):
    print("writing", i, flush=True)
    atomic_torch_save({"format": 1, "i": i, "w": torch.full((4_000_000,), float(i))}, sys.argv[1])
"""


def test_sigkill_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for delay in (0.0, 0.02):  # killed at different points of a 16 MB write
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert proc.stdout is not None
        while proc.stdout.readline().split() != ["writing", "3"]:
            pass
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        ckpt = load_checkpoint(path)
        assert ckpt["i"] >= 2 and torch.equal(ckpt["w"], torch.full((4_000_000,), float(ckpt["i"])))
    atomic_torch_save({"format": 1}, path)  # the next save removes what killed writers left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_sigkilled_training_resumes_exactly(train_ws, tmp_path):
    """A real ``kill -9`` of ``rs2sam2 train`` right after its first checkpoint; ``--resume`` must end with
    the same weights, optimiser state and metrics as an uninterrupted run (4 steps)."""
    extra = ("--epochs", "1", "--save-every-steps", "1")
    assert cli_main(train_args(train_ws, train_ws / "data", tmp_path / "ref", *extra)) == 0
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "rs2sam2.cli", *train_args(train_ws, train_ws / "data", run, *extra)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 1 <= killed_at < 4
    assert cli_main(train_args(train_ws, train_ws / "data", run, *extra, "--resume")) == 0
    ref, new = load_checkpoint(tmp_path / "ref" / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    assert (new["epoch"], new["step"]) == (ref["epoch"], ref["step"]) == (1, 4)
    for k, v in ref["model"].items():
        assert torch.equal(v, new["model"][k]), k
    for i, state in ref["optimizer"]["state"].items():
        assert all(torch.equal(state[n], new["optimizer"]["state"][i][n]) for n in ("exp_avg", "exp_avg_sq"))

    def records(folder: Path) -> list[dict]:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k not in ("time", "samples_per_s")} for x in lines]

    assert records(run) == records(tmp_path / "ref")


# ------------------------------------------------------------------------------------------------- app
def test_the_model_cache_is_bounded(predictor, model_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(app_models, "_predictors", {logic.BUNDLED_MODEL_ID: predictor})
    folders = [shutil.copytree(model_folder, tmp_path / f"m{i}") for i in range(logic.MAX_CACHED_MODELS + 1)]
    first = weakref.ref(logic.get_predictor(str(folders[0])))
    for folder in folders[1:]:
        logic.get_predictor(str(folder))
    assert len(app_models._predictors) == logic.MAX_CACHED_MODELS
    assert logic.BUNDLED_MODEL_ID in app_models._predictors and str(folders[-1]) in app_models._predictors
    assert str(folders[0]) not in app_models._predictors
    import gc

    gc.collect()
    assert first() is None  # the evicted model's memory is released


def test_session_state_holds_no_native_size_arrays(predictor, tmp_path):
    """Gradio keeps each session's state in memory: it must not grow with the upload's pixel count."""
    path = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)).save(path)
    outputs = logic.segment_event(str(path), TEXT, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0)
    state = outputs[-1]
    kept = state["prediction"]
    arrays = [state["image"], kept.mask, kept.logits, kept.pseudo_mask, kept.dense_prompt]
    arrays += [*kept.fused_features, *(kept.fusion_attentions or [])]
    assert sum(a.nbytes for a in arrays) < 4 * 2**20  # the native logits alone would be 12 MB
    features, attention = logic.stage_event(state, 3, "0: <s>")  # still enough to re-draw the panels
    assert read_mask(Path(features)).shape == read_mask(Path(attention)).shape == (768, 1024, 3)
    assert read_mask(Path(outputs[6])).shape == (1500, 2000)  # the download stays at native size


def _rss_mb() -> float:
    """Resident memory of this process in MiB (``/proc/self/status``, Linux, as the suite's other memory
    checks; psutil is not a dependency)."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024.0


def test_server_keeps_serving_under_load_and_abuse(server, predictor, zoo, tmp_path, monkeypatch):
    import httpx
    from gradio_client import Client, handle_file

    image = str(zoo / "grey.png")
    clients = [Client(server, verbose=False) for _ in range(5)]  # five sessions, each with its own state
    client = clients[0]

    def args(text: str, file=image, model: str = "", bands: str = "", threshold=0.5, stage=0) -> tuple:
        return (
            handle_file(file) if file else None,
            text,
            logic.BUNDLED_MODEL_ID,
            model,
            bands,
            threshold,
            stage,
        )

    def burst(n: int, tag: str) -> None:
        jobs = [clients[i % 5].submit(*args(f"{TEXT} {tag}{i}"), api_name="/segment") for i in range(n)]
        results = [job.result(timeout=300) for job in jobs]
        got = [json.loads(Path(r[7]).read_text())["expression"] for r in results]
        assert got == [f"{TEXT} {tag}{i}" for i in range(n)]

    burst(5, "warm-up ")
    before = _rss_mb()
    burst(50, "")  # 50 concurrent requests: all answered, each with its own result

    # abuse: every request gets an error message and the server goes on
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes() + os.urandom(51 * 2**20))  # over the 50 MB upload limit
    with pytest.raises(ValueError, match="exceeds the maximum file size of 52428800 bytes"):
        client.predict(*args(TEXT, file=str(big)), api_name="/segment")  # refused by the client
    with big.open("rb") as f:  # and by the server, for clients that do not check
        upload = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.png", f)}, timeout=60)
    assert upload.status_code == 413 and "exceeded maximum allowed size" in upload.text
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(100_000, 100_000))
    with pytest.raises(Exception, match="too large to open safely"):
        client.predict(*args(TEXT, file=str(bomb)), api_name="/segment")
    with pytest.raises(Exception, match="Could not read"):
        client.predict(*args(TEXT, file=str(zoo / "truncated.png")), api_name="/segment")
    for data in ([], [None] * 7, [{"path": "/etc/passwd"}, TEXT, None, None, None, None, None]):
        start = httpx.post(f"{server}gradio_api/call/segment", json={"data": data}, timeout=30)
        assert start.status_code in (200, 422)
        if start.status_code == 200:
            events = httpx.get(f"{server}gradio_api/call/segment/{start.json()['event_id']}", timeout=60).text
            assert "event: error" in events
    with pytest.raises(Exception, match="upstream Gradio app has raised an exception"):
        client.predict(*args(TEXT, threshold="abc"), api_name="/segment")  # Gradio's own type check
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(Exception, match="Model 'nobody/no-such-model' was not found"):
        client.predict(*args(TEXT, model="nobody/no-such-model"), api_name="/segment")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: unreachable
    start = time.monotonic()
    with pytest.raises(Exception, match="Model 'nobody/unreachable' was not found.*unreachable"):
        client.predict(*args(TEXT, model="nobody/unreachable"), api_name="/segment")
    assert time.monotonic() - start < 30

    burst(10, "again ")
    growth = _rss_mb() - before
    # Gradio, anyio and the allocator's per-thread arenas account for ~1 MB a request here (the handlers
    # themselves do not grow: see the next test); 150 MB catches anything that keeps whole results.
    assert growth < 150, f"RSS grew by {growth:.0f} MB over 60 requests"
    out = client.predict(*args(TEXT), api_name="/segment")  # still serving, still right
    expected = predictor.predict(image, TEXT)
    np.testing.assert_array_equal(read_mask(Path(out[6])) == 255, expected.mask)


def test_download_folders_are_pruned_at_most_once_a_minute(monkeypatch, tmp_path):
    """Pruning scans every request folder of the last hour; per request that is quadratic under load."""
    calls = []
    monkeypatch.setattr(app_files, "_output_root", tmp_path)
    monkeypatch.setattr(app_files, "_prune_outputs", lambda: calls.append(1))
    monkeypatch.setattr(app_files, "_last_prune", time.monotonic() - logic.PRUNE_EVERY_S)
    folders = {app_files._output_folder() for _ in range(20)}
    assert len(folders) == 20 and all(f.is_dir() for f in folders) and calls == [1]
    monkeypatch.setattr(app_files, "_last_prune", time.monotonic() - logic.PRUNE_EVERY_S)
    app_files._output_folder()
    assert calls == [1, 1]


def test_repeated_requests_do_not_grow_memory(predictor, tmp_path):
    """The request path itself (read, predict, pictures, downloads) keeps nothing between requests."""
    path = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(path)
    for i in range(5):
        logic.segment_event(str(path), f"{TEXT} {i}", logic.BUNDLED_MODEL_ID, "", "", 0.5, i % 4)
    import gc

    gc.collect()
    before = _rss_mb()
    for i in range(20):
        logic.segment_event(str(path), f"{TEXT} {i}", logic.BUNDLED_MODEL_ID, "", "", 0.5, i % 4)
    gc.collect()
    assert _rss_mb() - before < 20  # 20 kept results would hold > 40 MB (logits, mask, pictures)


# --------------------------------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    layout=st.sampled_from(["hw", "hw1", "hw3", "hw4", "chw3", "pil"]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_]),
    seed=st.integers(0, 2**16),
)
def test_any_image_gives_a_native_size_finite_prediction(predictor, h, w, layout, dtype, seed):
    rng = np.random.default_rng(seed)
    channels = {"hw": (), "hw1": (1,), "hw3": (3,), "hw4": (4,), "chw3": (3,), "pil": (3,)}[layout]
    a = (rng.random((h, w, *channels)) * 5000 - 100).astype(dtype)
    if layout == "chw3" and min(h, w) > 4:
        a = np.ascontiguousarray(np.moveaxis(a, -1, 0))  # (C, H, W) is accepted when unambiguous
    image = Image.fromarray(a.astype(np.uint8)) if layout == "pil" else a
    out = predictor.processor(image, TEXT)
    assert out.original_sizes == [(h, w)]
    assert torch.isfinite(out.sam_pixels).all() and torch.isfinite(out.union_pixels).all()
    pred = predictor.predict(image, TEXT)
    assert pred.mask.shape == (h, w) and pred.mask.dtype == bool
    assert np.isfinite(pred.logits).all() and 0.0 <= pred.score <= 1.0
    np.testing.assert_array_equal(pred.mask, pred.logits > pred.threshold)


def _mask_pairs(max_side: int = 12):
    return st.integers(1, max_side).flatmap(
        lambda h: st.integers(1, max_side).flatmap(
            lambda w: st.tuples(arrays(np.bool_, (h, w)), arrays(np.bool_, (h, w)))
        )
    )


@settings(max_examples=60, deadline=None)
@given(_mask_pairs(), st.integers(0, 7), st.data())
def test_iou_is_invariant_under_a_shared_flip_and_monotone_in_corrections(pair, op, data):
    p, g = pair
    flip = [lambda a: a, np.fliplr, np.flipud, np.transpose, np.rot90, lambda a: np.rot90(a, 2),
            lambda a: np.rot90(a, 3), lambda a: np.fliplr(np.transpose(a))][op]  # fmt: skip
    assert iou(flip(p), flip(g)) == iou(p, g)
    wrong = np.argwhere(p != g)
    if len(wrong):  # fixing one wrong pixel (a miss or a false alarm) never lowers the IoU
        r, c = wrong[data.draw(st.integers(0, len(wrong) - 1))]
        fixed = p.copy()
        fixed[r, c] = g[r, c]
        assert iou(fixed, g) >= iou(p, g)
    else:
        assert iou(p, g) == (1.0 if g.any() else 0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(_mask_pairs(), min_size=1, max_size=6), st.integers(1, 9), st.integers(1, 9))
def test_metrics_at_an_evaluation_size_stay_in_range(pairs, eh, ew):
    """Official protocol shape: GTs of any size nearest-resized to the evaluation size."""
    gts = [g for _, g in pairs]
    preds = [resize_mask_nearest(p, (eh, ew)) for p, _ in pairs]
    out = compute_metrics(preds, gts, eval_size=(eh, ew))
    assert 0.0 <= out["mIoU"] <= 100.0 and 0.0 <= out["oIoU"] <= 100.0
    i = sum(int((p & resize_mask_nearest(g, (eh, ew))).sum()) for p, g in zip(preds, gts))
    u = sum(int((p | resize_mask_nearest(g, (eh, ew))).sum()) for p, g in zip(preds, gts))
    assert out["oIoU"] == pytest.approx(100.0 * i / u if u else 0.0)
    perfect = compute_metrics([resize_mask_nearest(g, (eh, ew)) for g in gts], gts, eval_size=(eh, ew))
    if all(resize_mask_nearest(g, (eh, ew)).any() for g in gts):
        assert perfect["mIoU"] == perfect["oIoU"] == 100.0
