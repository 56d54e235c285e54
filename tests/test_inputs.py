"""Every entry point against unusual, damaged and hostile inputs: the processor / predictor (Python API),
the Gradio handlers and the ``rs2sam2 predict`` command get the same images and texts and must give a
native-size mask or one clear message (never a crash, a hang or a silent wrong answer). The matrix of inputs,
outcomes and the tests covering each row is in ``docs/robustness.md``."""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageOps

from rs2sam2 import app as logic
from rs2sam2.cli import predict as predict_cli
from rs2sam2.processing import to_rgb

from .conftest import (
    BAD_IMAGES,
    GOOD_IMAGES,
    MB,
    RNG,
    TEXT,
    _tif,
    read_mask,
)

EXIT_OK, EXIT_FAILED = predict_cli.EXIT_OK, predict_cli.EXIT_FAILED


pytestmark = pytest.mark.usefixtures("one_thread")


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
