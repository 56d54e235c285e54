"""Raster reading (rs2sam2.geo.raster): band selection, scene-wide stretch (from the overviews of a
cloud-optimized GeoTIFF), nodata, and the install hint when rasterio is missing.

A stub predictor that marks bright pixels (logit +4 where the RGB mean is above 128, −4 elsewhere) stands
in for the model, so every assertion checks the georeferencing, stretching and tiling machinery exactly.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from rs2sam2.geo import (  # noqa: E402
    GeoWarning,
    compute_stretch,
    predict_raster,
    require_rasterio,
    resolve_bands,
)

from ..conftest import StubPredictor, scene, truth, write_tif  # noqa: E402
from .conftest import _all_foreground, read_mask  # noqa: E402


# ------------------------------------------------------------------------ bands, stretch, nodata
def test_uint16_four_band_selection_and_scene_wide_stretch(tmp_path):
    h, w = 96, 160
    data = np.zeros((4, h, w), np.uint16)
    data[:3] = np.linspace(1000, 3000, w, dtype=np.uint16)[None, None, :]  # a gradient in bands 1-3
    data[3] = 2000
    data[3, 40:60, 100:130] = 60000  # the object is only visible in band 4 (near infrared)
    src = write_tif(tmp_path / "s.tif", data)
    stub = StubPredictor()
    res = predict_raster(stub, src, "x", tmp_path / "a.tif", mode="tiles", bands=(4,))
    assert (read_mask(res.out) > 0).sum() == 20 * 30 and res.windows == 6
    res = predict_raster(StubPredictor(), src, "x", tmp_path / "b.tif", mode="tiles")  # default bands 1,2,3
    left = (read_mask(res.out)[:, :64] > 0).sum()
    assert left == 0  # one stretch for the scene: the dark left tiles stay dark (per-tile would brighten)
    with rasterio.open(src) as ds:
        stretch = compute_stretch(ds, (1, 2, 3))
    assert stretch.low[0] == pytest.approx(np.percentile(data[0], 2), rel=0.02)
    assert stretch.high[0] == pytest.approx(np.percentile(data[0], 98), rel=0.02)
    with pytest.raises(ValueError, match="1-based"):
        resolve_bands(4, (0, 1, 2))
    with pytest.raises(ValueError, match="choose the three"):
        resolve_bands(6, None)


def test_nodata_excluded_from_stretch_and_never_in_mask(tmp_path):
    data = np.full((1, 100, 120), 500.0, np.float32)
    data[0, :, :40] = -9999.0  # nodata strip on the left
    data[0, 10:20, 10:20] = 500.0  # island of data inside it is valid
    data[0, 50:60, 60:90] = np.nan  # NaN counts as nodata too
    data[0, 70:90, 80:100] = 900.0
    src = write_tif(tmp_path / "s.tif", data, nodata=-9999.0)
    with rasterio.open(src) as ds:
        stretch = compute_stretch(ds, (1,))
    assert stretch.low[0] >= 500.0  # −9999 would drag the 2nd percentile down
    everything = StubPredictor()
    everything.predict = lambda image, text, threshold=None, bands=None: _all_foreground(image, text)
    for mode in ("single", "tiles"):
        res = predict_raster(everything, src, "x", tmp_path / f"{mode}.tif", mode=mode)
        valid = ~np.isnan(data[0]) & (data[0] != -9999.0)
        assert np.array_equal(read_mask(res.out) > 0, valid), mode


def test_nodata_only_windows_are_skipped_with_a_message(tmp_path):
    data = scene(128, 192, [(90, 110, 150, 170)])
    data[:, :64, :128] = 0  # the two top-left windows are entirely nodata
    src = write_tif(tmp_path / "s.tif", data, nodata=0)
    stub = StubPredictor()
    with pytest.warns(GeoWarning, match="2 of 6 windows skipped: they contain only nodata"):
        res = predict_raster(stub, src, "x", tmp_path / "m.tif", mode="tiles", overlap=0)
    assert res.skipped_windows == 2 and res.windows == 4 == len(stub.images)
    assert (read_mask(res.out) > 0).sum() == 400

    empty = write_tif(tmp_path / "e.tif", np.zeros((3, 64, 64), np.uint16), nodata=0)
    for mode in ("single", "tiles", "coarse-to-fine"):
        stub = StubPredictor()
        with pytest.warns(GeoWarning, match="nodata"):
            res = predict_raster(stub, empty, "x", tmp_path / f"e_{mode}.tif", mode=mode)
        assert res.windows == 0 and not stub.images and not read_mask(res.out).any()


def test_cloud_optimized_geotiff_with_overviews(tmp_path):
    from rasterio.shutil import copy as gdal_copy

    box = (300, 320, 500, 520)  # small enough for a ≤ S refinement window: exact
    plain = write_tif(tmp_path / "plain.tif", scene(600, 800, [box], dtype=np.uint16, bg=300, fg=4000))
    cog = tmp_path / "scene_cog.tif"
    gdal_copy(plain, cog, driver="COG", overview_resampling="average", blocksize=256)
    with rasterio.open(cog) as ds:
        assert ds.overviews(1) and ds.crs.to_epsg() == 32633
        assert compute_stretch(ds, (1, 2, 3)).low[0] == 300  # from the overview read
    res = predict_raster(StubPredictor(), cog, "x", tmp_path / "m.tif", mode="coarse-to-fine")
    assert np.array_equal(read_mask(res.out) > 0, truth(600, 800, [box]))
    res = predict_raster(StubPredictor(), cog, "x", tmp_path / "t.tif", mode="tiles", tile_size=128)
    assert np.array_equal(read_mask(res.out) > 0, truth(600, 800, [box]))


def test_missing_rasterio_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(ImportError, match=r"pip install 'rs2sam2\[geo\]'"):
        require_rasterio()
