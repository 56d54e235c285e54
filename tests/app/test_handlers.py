"""The Gradio demo: handlers as plain functions, then the real server through ``gradio_client``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import tifffile
from PIL import Image

from rs2sam2 import app as logic
from rs2sam2.app import files as app_files
from rs2sam2.app import handlers as app_handlers
from rs2sam2.app import models as app_models
from rs2sam2.app import uploads as app_uploads
from rs2sam2.data.masks import decode_rle
from rs2sam2.images import band_indices
from rs2sam2.predictor import RS2SAM2Predictor
from rs2sam2.testing import register_app_predictor

from .conftest import build_tiny_predictor, median_probability


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Iterator[RS2SAM2Predictor]:
    p = build_tiny_predictor(tmp_path_factory.mktemp("tokenizer"))
    register_app_predictor(logic.BUNDLED_MODEL_ID, p)
    yield p
    logic.clear_predictors()


def picture(path: str | None) -> np.ndarray:
    assert path is not None
    return np.asarray(Image.open(path))


# -------------------------------------------------------------------------------------- plain inputs
def test_parse_bands():
    assert logic.parse_bands("") is None and logic.parse_bands(None) is None
    # the app's parser now gives 1-based band numbers (GDAL's numbering, one parser for the package);
    # band_indices turns them into the 0-based indices this test has always checked
    assert band_indices(logic.parse_bands("3,2,1")) == (2, 1, 0)
    assert band_indices(logic.parse_bands(" 4 3 2 ")) == (3, 2, 1)
    assert band_indices(logic.parse_bands("5")) == (4,)
    with pytest.raises(gr.Error, match="whole numbers"):
        logic.parse_bands("red,green,blue")
    with pytest.raises(gr.Error, match="one band .* or three bands"):
        logic.parse_bands("1,2")
    with pytest.raises(gr.Error, match="counted from 1"):
        logic.parse_bands("0,1,2")


def test_model_ids():
    assert logic.resolve_model_id(logic.BUNDLED_MODEL_ID, "  ") == logic.BUNDLED_MODEL_ID
    assert logic.resolve_model_id(logic.BUNDLED_MODEL_ID, " me/model ") == "me/model"
    assert logic.resolve_model_id(None, None) == logic.BUNDLED_MODEL_ID
    assert logic.split_model_id(logic.BUNDLED_MODEL_ID) == (None, None)
    assert logic.split_model_id("ReeF2025/RS2-SAM2/rrsisd") == ("ReeF2025/RS2-SAM2", "rrsisd")
    assert logic.split_model_id("me/model") == ("me/model", None)
    assert logic.split_model_id("./no/such/folder") == (Path("./no/such/folder"), None)


def test_probability_threshold_matches_the_decoder_convention():
    assert logic.probability_to_threshold(0.5) == pytest.approx(0.5)
    x = logic.probability_to_threshold(0.8)
    assert 1.0 / (1.0 + math.exp(-(2 * x - 1))) == pytest.approx(0.8)


def test_read_16_bit_and_multiband_tiffs(tmp_path):
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 4000, (20, 30, 5), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "hwc.tif", hwc, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(
        tmp_path / "chw.tiff", np.moveaxis(hwc, -1, 0), photometric="minisblack", planarconfig="separate"
    )
    for name in ("hwc.tif", "chw.tiff"):
        image = logic.read_image(tmp_path / name)
        assert image.shape == (20, 30, 5) and image.dtype == np.uint16
        np.testing.assert_array_equal(image, hwc)
    image = logic.read_image(tmp_path / "hwc.tif")
    with pytest.raises(gr.Error, match="5 bands.*1-based"):
        logic.prepare_image(image, None)
    with pytest.raises(gr.Error, match="Band 7 does not exist: the image has 5 bands"):
        logic.prepare_image(image, logic.parse_bands("7,2,1"))
    rgb = logic.prepare_image(image, logic.parse_bands("5,3,1"))
    assert rgb.mode == "RGB" and rgb.size == (30, 20)
    # band 5 becomes red: the stretched composite follows that band's ordering
    red = np.asarray(rgb)[..., 0].astype(int)
    assert np.corrcoef(red.ravel(), hwc[..., 4].ravel())[0, 1] > 0.99
    grey16 = rng.integers(0, 60000, (16, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "grey16.tif", grey16)
    out = np.asarray(logic.prepare_image(logic.read_image(tmp_path / "grey16.tif"), None))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and out.max() == 255


def test_read_16_bit_png_and_jpeg(tmp_path):
    a = (np.arange(400, dtype=np.uint16).reshape(20, 20) * 150).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "a.png")
    rgb = logic.prepare_image(logic.read_image(tmp_path / "a.png"), None)
    assert np.asarray(rgb).shape == (20, 20, 3)
    Image.new("RGB", (8, 6), (10, 200, 30)).save(tmp_path / "b.jpg")
    assert logic.prepare_image(logic.read_image(tmp_path / "b.jpg"), None).size == (8, 6)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.png", b"", "empty"),
        ("notes.png", b"this is not an image", "Could not read 'notes.png' as an image"),
        ("broken.tif", b"II*\x00garbage", "Could not read 'broken.tif' as an image"),
    ],
)
def test_unreadable_files_give_clear_errors(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(gr.Error, match=message):
        logic.read_image(tmp_path / name)
    image, info = logic.preview(str(tmp_path / name), "")
    assert image is None and "⚠️" in info


def test_too_many_pixels_are_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(app_uploads, "MAX_PIXELS", 399)
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((20, 20), np.uint16))
    for name in ("a.png", "a.tif"):
        with pytest.raises(gr.Error, match="20×20 pixels .* Crop or downscale"):
            logic.read_image(tmp_path / name)
    monkeypatch.setattr(app_uploads, "MAX_PIXELS", 400)
    assert logic.read_image(tmp_path / "a.tif").shape == (20, 20)


def test_preview_describes_the_upload(tmp_path):
    tifffile.imwrite(
        tmp_path / "five.tif",
        np.zeros((12, 10, 5), np.uint16),
        photometric="minisblack",
        planarconfig="contig",
    )
    image, info = logic.preview(str(tmp_path / "five.tif"), "")
    assert image is None and info.startswith("10×12 pixels, 5 bands (uint16)") and "3,2,1" in info
    image, info = logic.preview(str(tmp_path / "five.tif"), "1,2,3")
    assert image.shape == (12, 10, 3) and "⚠️" not in info
    assert logic.preview(None, "") == (None, "")


def test_load_examples(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(img)
    entries = [
        {"image": str(img), "expression": "the thing"},
        {"image": str(tmp_path / "missing.png"), "expression": "skipped"},
        {"image": 3},
        "junk",
    ]
    (tmp_path / "examples.json").write_text(json.dumps(entries))
    assert logic.load_examples(tmp_path / "examples.json") == [[str(img), "the thing"]]
    assert logic.load_examples(tmp_path / "absent.json") == []
    (tmp_path / "bad.json").write_text("{not json")
    assert logic.load_examples(tmp_path / "bad.json") == []


# ------------------------------------------------------------------------------------------ handlers
def test_segment_event_produces_all_panels_and_downloads(predictor, example):
    image, text = example
    p = median_probability(predictor, image, text)
    outputs = logic.segment_event(image, text, logic.BUNDLED_MODEL_ID, "", "", p, 0)
    pseudo, dense, feats, attention, overlay, summary, png, js, tokens, state = outputs
    expected = predictor.predict(image, text, threshold=logic.probability_to_threshold(p))
    h, w = expected.mask.shape
    shown = state["image"].shape
    for path in (pseudo, dense, feats, attention, overlay):
        assert Path(path).suffix == ".png"
        assert picture(path).dtype == np.uint8 and picture(path).shape == shown
    assert shown[:2] == (h, w)  # small image: shown at native size
    assert 0 < expected.mask.sum() < expected.mask.size
    mask_png = np.asarray(Image.open(png))
    np.testing.assert_array_equal(mask_png == 255, expected.mask)
    result = json.loads(Path(js).read_text())
    np.testing.assert_array_equal(decode_rle(result["mask"]), expected.mask)
    assert result["expression"] == text and result["model_id"] == logic.BUNDLED_MODEL_ID
    assert result["area"] == int(expected.mask.sum()) and len(result["bbox"]) == 4
    assert result["score"] == pytest.approx(expected.score, rel=1e-5)
    assert result["probability_threshold"] == pytest.approx(p)
    assert f"Confidence {expected.score:.2f}" in summary
    # the token dropdown lists <s> … </s>, one entry per attention column
    n_tokens = state["prediction"].fusion_attentions[0].shape[-1]
    assert tokens["choices"][0] == logic.MEAN_TOKEN and len(tokens["choices"]) == n_tokens + 1
    assert tokens["choices"][1] == "0: <s>"


def test_stage_event_redraws_each_stage_and_token(predictor, example):
    image, text = example
    *_, state = logic.segment_event(image, text, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0)
    shown = state["image"].shape
    pictures = []
    for stage in range(4):
        feats, attention = map(picture, logic.stage_event(state, stage, logic.MEAN_TOKEN))
        assert feats.shape == shown and attention.shape == shown
        pictures.append(feats)
    assert not np.array_equal(pictures[0], pictures[3])
    mean = picture(logic.stage_event(state, 3, logic.MEAN_TOKEN)[1])
    first = picture(logic.stage_event(state, 3, "0: <s>")[1])
    assert not np.array_equal(mean, first)
    assert logic.stage_event(None, 0, None) == (None, None)


def test_large_image_is_downscaled_for_display_only(predictor, tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (1100, 1500, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    outputs = logic.segment_event(
        str(tmp_path / "big.png"), "a field", logic.BUNDLED_MODEL_ID, "", "", 0.3, 1
    )
    overlay, png, js = outputs[4], outputs[6], outputs[7]
    assert picture(overlay).shape == (751, 1024, 3)
    assert Image.open(png).size == (1500, 1100)
    assert json.loads(Path(js).read_text())["image_size"] == [1100, 1500]


def test_multiband_tiff_request(predictor, tmp_path):
    cube = np.random.default_rng(2).integers(0, 3000, (64, 48, 6), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "cube.tif", cube, photometric="minisblack", planarconfig="contig")
    outputs = logic.segment_event(
        str(tmp_path / "cube.tif"), "a lake", logic.BUNDLED_MODEL_ID, "", "4,3,2", 0.5, 2
    )
    assert picture(outputs[4]).shape == (64, 48, 3)
    with pytest.raises(gr.Error, match="6 bands"):
        logic.segment_event(str(tmp_path / "cube.tif"), "a lake", logic.BUNDLED_MODEL_ID, "", "", 0.5, 2)


@pytest.mark.parametrize(
    ("file", "expression", "bands", "message"),
    [
        ("IMAGE", "   ", "", "Type a referring expression"),
        (None, "a ship", "", "Upload an image first"),
        ("IMAGE", "a ship", "1,2", "three bands"),
        ("IMAGE", "a ship", "9", "Band 9 does not exist: the image has 3 bands"),
    ],
)
def test_bad_requests_give_readable_errors(predictor, example, file, expression, bands, message):
    file = example[0] if file == "IMAGE" else file
    with pytest.raises(gr.Error, match=message):
        logic.segment_event(file, expression, logic.BUNDLED_MODEL_ID, "", bands, 0.5, 0)


def test_unknown_model_gives_a_readable_error(predictor, example, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(gr.Error, match="Model 'nobody/no-such-model' was not found"):
        logic.segment_event(*example, logic.BUNDLED_MODEL_ID, "nobody/no-such-model", "", 0.5, 0)
    with pytest.raises(gr.Error, match="was not found"):
        logic.segment_event(*example, logic.BUNDLED_MODEL_ID, str(tmp_path / "no-folder"), "", 0.5, 0)
    assert "nobody/no-such-model" not in app_models._predictors  # failures are not cached


def test_missing_bundled_model_is_explained(monkeypatch, tmp_path):
    from rs2sam2.weights import bundled

    monkeypatch.delenv(bundled.MODEL_ENV, raising=False)
    monkeypatch.setattr(bundled, "PACKAGED_ROOT", tmp_path / "package")
    monkeypatch.setattr(bundled, "REPOSITORY_ROOT", tmp_path / "repository")
    monkeypatch.setattr(app_models, "_predictors", {})
    with pytest.raises(gr.Error, match="bundled model is not installed"):
        logic.get_predictor(logic.BUNDLED_MODEL_ID)
    monkeypatch.setenv(bundled.MODEL_ENV, str(tmp_path / "typo"))
    with pytest.raises(gr.Error, match="RS2SAM2_DEFAULT_MODEL='.*typo' is not a folder"):
        logic.get_predictor(logic.BUNDLED_MODEL_ID)
    assert app_models._predictors == {}


def test_get_predictor_loads_a_saved_folder_once(predictor, tmp_path, monkeypatch):
    calls = []

    def fake_from_pretrained(source, subfolder=None):
        calls.append((source, subfolder))
        return predictor

    monkeypatch.setattr(app_models, "_predictors", {})
    monkeypatch.setattr(RS2SAM2Predictor, "from_pretrained", staticmethod(fake_from_pretrained))
    assert logic.get_predictor("me/model/sub") is predictor
    assert logic.get_predictor("me/model/sub") is predictor
    assert calls == [("me/model", "sub")]


@pytest.mark.parametrize(
    ("file", "expression", "bands", "message"),
    [
        ("IMAGE", "", "", "Type a referring expression"),
        ("IMAGE", "a ship", "red", "Bands must be whole numbers"),
        ("TEXT", "a ship", "", "Could not read 'notes.png' as an image"),
    ],
)
def test_user_errors_are_logged_as_one_line(predictor, example, tmp_path, caplog, file, expression, bands,
                                            message):  # fmt: skip
    """A problem the person can fix is one log line and no traceback (Gradio prints one unless the error's
    ``print_exception`` is off)."""
    if file == "TEXT":
        file = tmp_path / "notes.png"
        file.write_text("not an image\nat all")
    else:
        file = example[0]
    with caplog.at_level("INFO", logger="rs2sam2.app"), pytest.raises(gr.Error, match=message) as error:
        logic.segment_event(str(file), expression, logic.BUNDLED_MODEL_ID, "", bands, 0.5, 0)
    assert error.value.print_exception is False
    records = [r for r in caplog.records if r.name == "rs2sam2.app"]
    assert len(records) == 1 and records[0].levelname == "WARNING" and records[0].exc_info is None
    line = records[0].getMessage()
    assert line.startswith("request refused: ") and message in line and "\n" not in line


def test_a_bug_keeps_its_traceback(predictor, example, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app_handlers, "segment", broken)
    with caplog.at_level("INFO", logger="rs2sam2.app"), pytest.raises(gr.Error, match="RuntimeError: a bug"):
        logic.segment_event(*example, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0)
    records = [r for r in caplog.records if r.name == "rs2sam2.app"]
    assert len(records) == 1 and records[0].levelname == "ERROR"
    assert records[0].exc_info is not None and records[0].exc_info[0] is RuntimeError


def test_progress_is_reported_step_by_step(predictor, example, monkeypatch):
    calls = []
    logic.segment(*example, logic.BUNDLED_MODEL_ID, progress=lambda f, desc: calls.append((f, desc)))
    assert calls == [(0.0, "reading the image"), (0.2, "running the model"), (0.9, "drawing the panels")]
    calls.clear()  # a model not in the cache yet: its loading is a step too
    monkeypatch.setattr(app_models, "_predictors", {})
    monkeypatch.setattr(app_models, "_load_predictor", lambda model_id: predictor)
    logic.segment(*example, "me/model", progress=lambda f, desc: calls.append((f, desc)))
    assert [d for _, d in calls] == ["reading the image", "loading the model", "running the model",
                                     "drawing the panels"]  # fmt: skip
    assert [f for f, _ in calls] == sorted(f for f, _ in calls)


def test_examples_table_shows_thumbnails_and_fills_the_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(app_files, "_output_root", tmp_path / "outputs")
    img = tmp_path / "a.png"
    Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(img)
    path, text = logic.pick_example([[str(img), "the thing"]], 0)
    assert text == "the thing" and Path(path).parent.parent == tmp_path / "outputs"
    assert Path(path).read_bytes() == img.read_bytes()  # a copy Gradio may serve wherever the app runs
    with pytest.raises(gr.Error, match="No example number 1"):
        logic.pick_example([[str(img), "the thing"]], 1)
    if not logic.load_examples():
        pytest.skip("no demo/examples.json entries")
    from app import demo

    config = demo.get_config_file()
    table = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "examples")
    assert table["type"] == "dataset" and table["props"]["headers"] == ["Image", "Referring expression"]
    first_image, first_text = table["props"]["samples"][0]
    assert first_text == logic.load_examples()[0][1]
    assert first_image["url"].endswith(Path(logic.load_examples()[0][0]).name)  # an image, shown as one
    assert [c["name"] for c in table["props"]["components"]] == ["image", "textbox"]  # thumbnails, then text


# ------------------------------------------------------------------------------------ through the server
def _segment_args(image: str, text: str, threshold: float = 0.5) -> tuple:
    from gradio_client import handle_file

    return (handle_file(image), text, logic.BUNDLED_MODEL_ID, "", "", threshold, 0)


def test_server_matches_the_predictor(server, predictor, example):
    from gradio_client import Client

    image, text = example
    p = median_probability(predictor, image, text)
    client = Client(server, verbose=False)
    out = client.predict(*_segment_args(image, text, p), api_name="/segment")
    assert len(out) == 9  # state is not part of the API
    for picture in out[:5]:
        assert Image.open(picture).mode == "RGB"
    result = json.loads(Path(out[7]).read_text())
    expected = predictor.predict(image, text, threshold=logic.probability_to_threshold(p))
    assert 0 < expected.mask.sum() < expected.mask.size
    np.testing.assert_array_equal(decode_rle(result["mask"]), expected.mask)
    np.testing.assert_array_equal(np.asarray(Image.open(out[6])) == 255, expected.mask)
    assert result["score"] == pytest.approx(expected.score, rel=1e-5)


def test_server_handles_20_concurrent_requests(server, example):
    from gradio_client import Client

    client = Client(server, verbose=False)
    image, text = example
    jobs = [client.submit(*_segment_args(image, f"{text} {i}"), api_name="/segment") for i in range(20)]
    results = [job.result(timeout=120) for job in jobs]
    expressions = [json.loads(Path(r[7]).read_text())["expression"] for r in results]
    assert expressions == [f"{text} {i}" for i in range(20)]


def test_segment_api_needs_only_the_image_and_the_sentence(server, example):
    """README's two-argument call; every later input of /segment has the UI's default."""
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/segment"]
    params = {
        p["parameter_name"]: (p["parameter_has_default"], p["parameter_default"])
        for p in params["parameters"]
    }
    assert params == {
        "file": (False, None),
        "expression": (False, None),
        "model_choice": (True, logic.BUNDLED_MODEL_ID),
        "custom_model": (True, ""),
        "bands_text": (True, ""),
        "threshold": (True, logic.DEFAULT_THRESHOLD),
        "stage": (True, logic.DEFAULT_STAGE),
    }
    image, text = example
    out = client.predict(handle_file(image), text, api_name="/segment")
    assert json.loads(Path(out[7]).read_text())["expression"] == text


def test_server_survives_bad_requests(server, example):
    import httpx
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    image, text = example
    # the client refuses to send an incomplete call; a raw HTTP call gets an error event
    with pytest.raises(TypeError, match="No value provided for required argument: expression"):
        client.predict(handle_file(image), api_name="/segment")
    for data in ([], [None]):
        start = httpx.post(f"{server}gradio_api/call/segment", json={"data": data}, timeout=30)
        assert start.status_code == 200
        events = httpx.get(f"{server}gradio_api/call/segment/{start.json()['event_id']}", timeout=60).text
        assert "event: error" in events
    assert httpx.post(f"{server}gradio_api/call/segment", json={}, timeout=30).status_code == 422
    with pytest.raises(Exception, match="Upload an image first"):
        client.predict(None, text, logic.BUNDLED_MODEL_ID, "", "", 0.5, 0, api_name="/segment")
    with pytest.raises(Exception, match="Type a referring expression"):
        client.predict(handle_file(image), "", logic.BUNDLED_MODEL_ID, "", "", 0.5, 0, api_name="/segment")
    out = client.predict(*_segment_args(image, text), api_name="/segment")
    assert json.loads(Path(out[7]).read_text())["expression"] == text
