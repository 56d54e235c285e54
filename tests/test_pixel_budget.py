"""The pixel budget: decompression bombs (made here, small on disk) are refused from the header, before
decoding, by every entry point (processor / predictor, app, CLI, geo); the limit is an argument and an
environment variable."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import tifffile
from PIL import Image

from rs2sam2 import app as logic
from rs2sam2 import pixel_budget as pb
from rs2sam2.images import load_image
from rs2sam2.processing import to_rgb
from rs2sam2.testing import jpeg_header_bomb, multipage_tiff_bomb, palette_png_bomb


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {
        "palette.png": palette_png_bomb(folder / "palette.png", 13000, 13000),
        "pages.tif": multipage_tiff_bomb(folder / "pages.tif", pages=64, width=8000, height=8000),
        "header.jpg": jpeg_header_bomb(folder / "header.jpg", 60000, 60000),
    }


def test_bombs_are_small_on_disk_and_their_headers_tell_the_decoded_size(bombs):
    sizes = {name: path.stat().st_size for name, path in bombs.items()}
    assert sizes["palette.png"] < 32_000 and sizes["pages.tif"] < 100_000 and sizes["header.jpg"] < 2_000
    assert pb.read_header(bombs["palette.png"]) == pb.ImageHeader(13000, 13000, 1, 13000 * 13000)
    # 64 pages of 8000² 8-bit: each page is under the pixel limit, the stack is 4 GB
    assert pb.read_header(bombs["pages.tif"]) == pb.ImageHeader(8000, 8000, 64, 64 * 8000 * 8000)
    assert pb.read_header(bombs["header.jpg"]) == pb.ImageHeader(60000, 60000, 1, 3 * 60000**2)


def test_the_bombs_are_real_images(tmp_path):
    """The same writers at a small size make files that decode to what their headers say."""
    png = palette_png_bomb(tmp_path / "p.png", 21, 10)
    with Image.open(png) as im:
        assert (im.size, im.mode) == ((21, 10), "P") and not np.asarray(im).any()
    tif = multipage_tiff_bomb(tmp_path / "t.tif", pages=3, width=40, height=20)
    assert tifffile.imread(tif).shape == (3, 20, 40)
    with Image.open(tif) as im:
        assert (im.size, im.n_frames) == ((40, 20), 3)


def test_budget_resolution_argument_env_default(monkeypatch):
    monkeypatch.delenv(pb.ENV_VAR, raising=False)
    assert pb.resolve_max_pixels() == pb.DEFAULT_MAX_PIXELS == 8192 * 8192
    monkeypatch.setenv(pb.ENV_VAR, "1_000_000")
    assert pb.resolve_max_pixels() == 1_000_000 and pb.resolve_max_pixels(50) == 50
    monkeypatch.setenv(pb.ENV_VAR, "2e8")
    assert pb.resolve_max_pixels() == 200_000_000
    monkeypatch.setenv(pb.ENV_VAR, "lots")
    with pytest.raises(ValueError, match="RS2SAM2_MAX_PIXELS='lots' is not a whole number"):
        pb.resolve_max_pixels()
    with pytest.raises(ValueError, match="must be positive"):
        pb.resolve_max_pixels(0)


def test_limits_are_exact(tmp_path, monkeypatch):
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    assert pb.check_image_file(tmp_path / "a.png", max_pixels=400).pixels == 400
    with pytest.raises(pb.ImageTooLargeError, match=r"The image is 20×20 pixels .*limit is 399 pixels"):
        pb.check_image_file(tmp_path / "a.png", max_pixels=399)
    # decoded bytes: 3 pages of 10×10 uint16 = 600 bytes ≤ 4 bytes × 150 pixels, not × 149
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((3, 10, 10), np.uint16), photometric="minisblack")
    assert pb.check_image_file(tmp_path / "s.tif", max_pixels=150).decoded_bytes == 600
    with pytest.raises(pb.ImageTooLargeError, match=r"decode to 0 MiB \(all its pages and bands\)"):
        pb.check_image_file(tmp_path / "s.tif", max_pixels=149)
    monkeypatch.setenv(pb.ENV_VAR, "399")
    with pytest.raises(pb.ImageTooLargeError, match="RS2SAM2_MAX_PIXELS"):
        load_image(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", max_pixels=400).size == (20, 20)


def test_pil_reads_every_tiff_page_without_tifffile(bombs, monkeypatch):
    monkeypatch.setattr(pb, "_tiff_header", lambda path: None)
    assert pb.read_header(bombs["pages.tif"]) == pb.ImageHeader(8000, 8000, 64, 64 * 8000 * 8000)


def test_pil_limit_is_restored_under_concurrent_header_reads(bombs):
    from concurrent.futures import ThreadPoolExecutor

    before = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(8) as pool:
        headers = list(pool.map(pb.read_header, [bombs["palette.png"], bombs["header.jpg"]] * 20))
    assert {h.width for h in headers} == {13000, 60000} and Image.MAX_IMAGE_PIXELS == before


def test_too_many_tiff_pages_are_refused_without_walking_them_all(tmp_path, monkeypatch):
    monkeypatch.setattr(pb, "MAX_TIFF_PAGES", 5)
    path = multipage_tiff_bomb(tmp_path / "many.tif", pages=6, width=8, height=8)
    with pytest.raises(pb.ImageTooLargeError, match="more than 5 pages"):
        pb.read_header(path)


@pytest.mark.parametrize("name", ["palette.png", "pages.tif", "header.jpg"])
def test_api_and_app_refuse_each_bomb_before_decoding(bombs, name):
    path = bombs[name]
    with pytest.raises(pb.ImageTooLargeError, match=r"too large to decode safely .*decompression bomb"):
        load_image(path)
    with pytest.raises(pb.ImageTooLargeError, match="too large"):
        to_rgb(path)
    with pytest.raises(gr.Error, match=f"'{re.escape(name)}' is too large to open safely") as info:
        logic.read_image(path)
    assert str(path.parent) not in info.value.message  # no server path in the message
    image, line = logic.preview(str(path), "")
    assert image is None and "too large to open safely" in line


def test_arrays_over_the_budget_are_refused_without_allocating():
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (9000, 9000, 3))  # a view: no memory
    with pytest.raises(pb.ImageTooLargeError, match="The image is 9000×9000 pixels"):
        to_rgb(huge)
    assert to_rgb(huge[:10, :10], max_pixels=100).size == (10, 10)


def test_cli_refuses_a_bomb_and_takes_max_pixels(bombs, tmp_path, capsys, monkeypatch):
    from rs2sam2.cli import predict as predict_cli
    from tests.conftest import run_cli

    class NoModel:  # the budget is checked before the model is asked
        model = type("M", (), {"config": type("C", (), {"image_size": 64, "mask_threshold": 0.5})})()

        def predict(self, *args, **kwargs):
            raise AssertionError("decoded a bomb")

    monkeypatch.setattr(predict_cli, "load_predictor", lambda model, subfolder, device: NoModel())
    monkeypatch.delenv(pb.ENV_VAR, raising=False)
    out = tmp_path / "m.png"
    assert run_cli([str(bombs["palette.png"]), "x", "--out", str(out)]) == predict_cli.EXIT_FAILED
    assert "too large to decode safely" in capsys.readouterr().err and not out.exists()
    Image.new("RGB", (30, 20)).save(tmp_path / "small.png")
    assert run_cli([str(tmp_path / "small.png"), "x", "--out", str(out), "--max-pixels", "599"]) == 1
    assert "The image is 30×20 pixels" in capsys.readouterr().err
    assert pb.ENV_VAR not in __import__("os").environ  # restored after the run


@pytest.mark.filterwarnings("ignore::rs2sam2.geo.GeoWarning")
def test_geo_single_mode_takes_the_budget_tiles_mode_only_the_window(tmp_path):
    pytest.importorskip("rasterio")
    from rs2sam2.geo import predict_raster
    from tests.conftest import StubPredictor

    tifffile.imwrite(tmp_path / "scene.tif", np.full((3, 60, 80), 200, np.uint8), photometric="rgb")
    for mode in ("single", "coarse-to-fine"):
        with pytest.raises(pb.ImageTooLargeError, match=f"80×60 pixels.*In {mode} mode .*--mode tiles"):
            predict_raster(StubPredictor(), tmp_path / "scene.tif", "x", tmp_path / "m.tif", mode=mode,
                           max_pixels=4799)  # fmt: skip
        assert not (tmp_path / "m.tif").exists()
    res = predict_raster(
        StubPredictor(), tmp_path / "scene.tif", "x", tmp_path / "t.tif", mode="tiles", max_pixels=64 * 64
    )
    assert res.width == 80 and res.windows == 2  # a scene of 4 800 pixels > 64², in two 64×60 windows
    with pytest.raises(pb.ImageTooLargeError, match="64×60 pixels"):  # one window over the budget
        predict_raster(StubPredictor(), tmp_path / "scene.tif", "x", tmp_path / "u.tif", mode="tiles",
                       max_pixels=3000)  # fmt: skip
