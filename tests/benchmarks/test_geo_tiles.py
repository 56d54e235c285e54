"""benchmarks/geo_tiles.py: the scene it writes (any W×H, GeoTIFF or JPEG) and its --size argument."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from ..conftest import load_benchmark

rasterio = pytest.importorskip("rasterio")


def test_parse_size():
    bench = load_benchmark("geo_tiles")
    assert bench.parse_size("3000x2000") == (3000, 2000)
    assert bench.parse_size("500") == (500, 500)
    for bad in ("3000x", "x2", "10x10", "1x2x3", "big"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_size(bad)


def test_scene_of_any_shape_as_geotiff_and_jpeg(tmp_path):
    bench = load_benchmark("geo_tiles")
    bench.write_scene(tmp_path / "s.tif", (300, 200), strip=64)
    with rasterio.open(tmp_path / "s.tif") as src:
        assert (src.width, src.height, src.count) == (300, 200, 3) and src.crs.to_epsg() == 32633
        data = src.read()
    bench.write_jpeg(tmp_path / "s.jpg", (300, 200))
    with Image.open(tmp_path / "s.jpg") as im:
        assert im.format == "JPEG" and im.size == (300, 200)
        jpeg = np.moveaxis(np.asarray(im), -1, 0).astype(int)
    assert np.abs(jpeg - data).mean() < 10  # the same scene, up to JPEG's loss
    assert not (tmp_path / "s.tif.tif").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "s.jpg",
        "s.tif",
    ]
