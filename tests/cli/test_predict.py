"""The ``rs2sam2 predict`` command: help, outputs, exit codes, batch mode (rs2sam2.cli.predict)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

rasterio = pytest.importorskip("rasterio")

from rs2sam2.cli import predict as predict_cli  # noqa: E402
from rs2sam2.cli.predict import EXIT_FAILED, EXIT_OK, EXIT_USAGE  # noqa: E402

from ..conftest import UTM, StubPredictor, run_cli, scene, truth, write_tif  # noqa: E402


@pytest.fixture()
def stub(monkeypatch) -> StubPredictor:
    predictor = StubPredictor()
    monkeypatch.setattr(predict_cli, "load_predictor", lambda model, subfolder, device: predictor)
    return predictor


@pytest.fixture()
def geotiff(tmp_path) -> Path:
    return write_tif(tmp_path / "scene.tif", scene(128, 160, [(30, 60, 40, 90)]))


@pytest.fixture()
def png(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.moveaxis(scene(48, 80, [(10, 20, 30, 60)]), 0, -1)).save(path)
    return path


def test_help_documents_every_option_and_the_exit_codes(capsys):
    assert run_cli(["--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "IMAGE",
        "TEXT",
        "--batch",
        "--model",
        "--subfolder",
        "--out",
        "--geojson",
        "--gpkg",
        "--mode",
        "single,tiles,coarse-to-fine",
        "--bands",
        "--tile-size",
        "--overlap",
        "--merge",
        "--threshold",
        "--device",
        "image,expression[,out]",
    ):
        assert option in text, option
    assert "exit codes: 0 all inputs succeeded, 1 some inputs failed, 2 usage error" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "expected IMAGE and TEXT"),
        (["{tif}"], "expected IMAGE and TEXT"),
        (["{tif}", "  "], "TEXT is empty"),
        (["{tif}", "x", "--batch", "pairs.csv"], "not both"),
        (["{tif}", "x", "--out", "mask.jpg"], "--out must end in"),
        (["{tif}", "x", "--mode", "tiles", "--tile-size", "100"], "multiple of the model input size 64"),
        (["{tif}", "x", "--mode", "tiles", "--overlap", "64"], "--overlap must be smaller"),
        (["--batch", "{tmp}/missing.csv"], "batch file not found"),
        (["--batch", "{csv}", "--geojson", "one.geojson"], "take no path"),
    ],
)
def test_usage_errors_exit_2_with_a_message(stub, geotiff, tmp_path, capsys, argv, message):
    bad_csv = tmp_path / "pairs.csv"
    bad_csv.write_text("image,expression\n")
    argv = [a.format(tif=geotiff, tmp=tmp_path, csv=bad_csv) for a in argv]
    assert run_cli(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["x.tif", "y", "--bands", "a,b"],
        ["x.tif", "y", "--bands", "1,2"],
        ["x.tif", "y", "--mode", "pyramid"],
        ["x.tif", "y", "--tile-size", "0"],
    ],
)
def test_argument_type_errors_exit_2(stub, argv):
    assert run_cli(argv) == EXIT_USAGE


def test_batch_csv_without_the_required_columns_exits_2(stub, tmp_path, capsys):
    path = tmp_path / "pairs.csv"
    path.write_text("img,text\na.tif,x\n")
    assert run_cli(["--batch", str(path)]) == EXIT_USAGE
    assert "missing column(s) ['expression', 'image']" in capsys.readouterr().err


def test_geotiff_gives_a_georeferenced_mask_and_geojson(stub, geotiff, tmp_path, capsys):
    out, vec = tmp_path / "out" / "roof.tif", tmp_path / "roof.geojson"
    argv = [
        str(geotiff),
        "the large roof",
        "--out",
        str(out),
        "--geojson",
        str(vec),
        "--gpkg",
        "--mode",
        "tiles",
        "--model",
        "my-model",
    ]
    assert run_cli(argv) == EXIT_OK
    assert "score" in capsys.readouterr().out
    with rasterio.open(out) as m:
        assert m.crs.to_string() == UTM and np.array_equal(m.read(1) > 0, truth(128, 160, [(30, 60, 40, 90)]))
    doc = json.loads(vec.read_text())
    assert doc["crs"]["properties"]["name"].endswith("EPSG::32633")
    (feature,) = doc["features"]
    assert feature["properties"]["model"] == "my-model" and feature["properties"]["pixels"] == 30 * 50
    assert out.with_suffix(".gpkg").is_file()


def test_band_selection_on_a_16_bit_four_band_scene(stub, tmp_path):
    data = np.full((4, 64, 64), 1000, np.uint16)
    data[2:, 20:40, 20:40] = 40000  # visible in bands 3 and 4 only
    src = write_tif(tmp_path / "ms.tif", data)
    assert run_cli([str(src), "x", "--bands", "4,3,2", "--out", str(tmp_path / "a.tif")]) == EXIT_OK
    assert run_cli([str(src), "x", "--out", str(tmp_path / "b.tif")]) == EXIT_OK
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read(1) > 0).sum() == 400 and not b.read(1).any()


def test_png_input_gives_a_png_mask_next_to_it(stub, png):
    assert run_cli([str(png), "the bright car", "--geojson", "--mask-value", "255"]) == EXIT_OK
    mask = np.asarray(Image.open(png.with_name("photo_mask.png")))
    assert set(np.unique(mask)) == {0, 255} and np.array_equal(mask > 0, truth(48, 80, [(10, 20, 30, 60)]))
    doc = json.loads(png.with_name("photo_mask.geojson").read_text())
    assert "crs" not in doc and doc["features"][0]["properties"]["area_unit"] == "square pixel"


def test_png_input_in_tiles_mode_goes_through_gdal(stub, png, tmp_path):
    out = tmp_path / "tiled.png"
    assert run_cli([str(png), "x", "--mode", "tiles", "--out", str(out), "--no-progress"]) == EXIT_OK
    assert np.array_equal(np.asarray(Image.open(out)) == 255, truth(48, 80, [(10, 20, 30, 60)]))


def test_a_failed_input_exits_1(stub, tmp_path, capsys):
    assert run_cli([str(tmp_path / "nope.tif"), "x"]) == EXIT_FAILED
    assert "image file not found" in capsys.readouterr().err


def test_geotiff_without_rasterio_fails_with_the_install_command(
    stub, geotiff, png, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    assert run_cli([str(geotiff), "x", "--out", str(tmp_path / "m.tif")]) == EXIT_FAILED
    assert "pip install 'rs2sam2[geo]'" in capsys.readouterr().err
    assert run_cli([str(png), "x", "--out", str(tmp_path / "m.png")]) == EXIT_OK  # PIL path needs no GDAL


def test_model_that_cannot_be_loaded_exits_1(geotiff, tmp_path, capsys):
    assert run_cli([str(geotiff), "x", "--model", str(tmp_path / "no-model")]) == EXIT_FAILED
    assert "cannot load the model" in capsys.readouterr().err


def test_batch_mode_reports_a_summary_and_exit_code(stub, geotiff, png, tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "expression", "out"])
        w.writerow([geotiff.name, "the roof", ""])
        w.writerow([png.name, "the car", "named/car.png"])
        w.writerow(["missing.tif", "the lake", ""])
        w.writerow([geotiff.name, "", ""])
    summary = tmp_path / "summary.json"
    argv = [
        "--batch",
        str(pairs),
        "--out-dir",
        str(tmp_path / "masks"),
        "--geojson",
        "--summary",
        str(summary),
    ]
    assert run_cli(argv) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "summary: 4 pairs, 2 succeeded, 2 failed" in out
    assert (
        "row 3: " in out and "image file not found" in out and "row 4: " in out and "empty expression" in out
    )
    assert (tmp_path / "masks" / "scene_0001_mask.tif").is_file()
    assert (tmp_path / "masks" / "scene_0001_mask.geojson").is_file()
    assert (tmp_path / "named" / "car.png").is_file()
    results = json.loads(summary.read_text())["results"]
    assert [r["ok"] for r in results] == [True, True, False, False]

    pairs.write_text(f"image,expression\n{geotiff.name},the roof\n{png.name},the car\n")
    assert run_cli(["--batch", str(pairs), "--out-dir", str(tmp_path / "ok"), "--no-progress"]) == EXIT_OK
    assert "summary: 2 pairs, 2 succeeded, 0 failed" in capsys.readouterr().out


def test_real_tiny_model_end_to_end(tiny_predictor, monkeypatch, png, tmp_path):
    monkeypatch.setattr(predict_cli, "load_predictor", lambda model, subfolder, device: tiny_predictor)
    assert run_cli([str(png), "the white car", "--out", str(tmp_path / "car.png")]) == EXIT_OK
    assert np.asarray(Image.open(tmp_path / "car.png")).shape == (48, 80)
    src = write_tif(tmp_path / "s.tif", scene(256, 320, [(100, 160, 200, 300)], bands=4, dtype=np.uint16))
    out = tmp_path / "s_mask.tif"
    argv = [str(src), "the building", "--mode", "tiles", "--overlap", "64", "--out", str(out), "--geojson"]
    assert run_cli(argv) == EXIT_OK
    with rasterio.open(out) as m:
        assert (m.height, m.width) == (256, 320) and m.crs.to_string() == UTM
        assert set(np.unique(m.read(1))) <= {0, 1}


def test_the_mask_format_follows_the_out_suffix(stub, png, geotiff, tmp_path, capsys):
    """A PNG input gives a TIFF mask for --out *.tif (values 0/1) as well as a PNG (0/255); a GeoTIFF input
    gives a PNG for *.png; other suffixes are refused with the list of those that work."""
    expected = truth(48, 80, [(10, 20, 30, 60)])
    assert run_cli([str(png), "the car", "--out", str(tmp_path / "car.png")]) == EXIT_OK
    assert run_cli([str(png), "the car", "--out", str(tmp_path / "car.tif")]) == EXIT_OK
    with Image.open(tmp_path / "car.tif") as im:
        assert im.format == "TIFF"
        tif = np.asarray(im)
    assert set(np.unique(tif)) == {0, 1} and np.array_equal(tif > 0, expected)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "car.png")) == 255, expected)
    assert run_cli([str(geotiff), "the roof", "--out", str(tmp_path / "roof.png")]) == EXIT_OK
    assert Image.open(tmp_path / "roof.png").format == "PNG"
    capsys.readouterr()
    assert run_cli([str(png), "the car", "--out", str(tmp_path / "car.jpg")]) == EXIT_USAGE
    assert ".png, .tif or .tiff" in capsys.readouterr().err
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"image,expression,out\n{png.name},the car,car.jpg\n")
    assert run_cli(["--batch", str(pairs), "--no-progress"]) == EXIT_FAILED
    assert "must end in .png, .tif or .tiff" in capsys.readouterr().out
    assert not (tmp_path / "car.jpg").exists()


def test_the_report_gives_units_in_words(stub, png, geotiff, tmp_path, capsys):
    assert run_cli([str(png), "the car", "--out", str(tmp_path / "car.png")]) == EXIT_OK
    line = capsys.readouterr().out
    assert "300 foreground pixels)" in line and "px" not in line and "square pixel" not in line
    argv = [str(geotiff), "the roof", "--out", str(tmp_path / "roof.tif"), "--mode", "tiles", "--no-progress"]
    assert run_cli(argv) == EXIT_OK
    line = capsys.readouterr().out  # native resolution, 10 m pixels: 100 square metres each
    assert "1500 foreground pixels, an area of 150000 square metres)" in line
    assert predict_cli.plural_unit("square US survey foot", 2.0) == "square US survey feet"
    assert predict_cli.plural_unit("square metre", 1.0) == "square metre"
