"""Georeferenced outputs (rs2sam2.geo.vectors): polygons at their map position with the CRS kept, GeoJSON and
GeoPackage read back, WGS84 GeoJSON, a missing CRS, polygons rejoined across strips.

A stub predictor that marks bright pixels (logit +4 where the RGB mean is above 128, −4 elsewhere) stands
in for the model, so every assertion checks the georeferencing, stretching and tiling machinery exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
from rasterio.features import rasterize  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from rs2sam2.geo import (  # noqa: E402
    GeoWarning,
    mask_vectors,
    predict_raster,
)

from ..conftest import GSD, UTM, X0, Y0, StubPredictor, scene, write_tif  # noqa: E402


def centroid(rings: list[list[list[float]]]) -> tuple[float, float]:
    """Area-weighted centroid of a GeoJSON polygon (exterior minus holes)."""
    total, cx, cy = 0.0, 0.0, 0.0
    for ring in rings:
        p = np.asarray(ring)
        x, y, xn, yn = p[:-1, 0], p[:-1, 1], p[1:, 0], p[1:, 1]
        cross = x * yn - xn * y
        total += cross.sum() / 2
        cx += ((x + xn) * cross).sum() / 6
        cy += ((y + yn) * cross).sum() / 6
    return cx / total, cy / total


# ----------------------------------------------------------------------------------- georeferencing
@pytest.mark.parametrize("mode", ["single", "tiles", "coarse-to-fine"])
def test_polygon_centroid_at_known_map_position_and_crs_kept(tmp_path, mode):
    box = (80, 120, 150, 190)  # rows 80-119, cols 150-189 → centre pixel (row 100, col 170)
    src = write_tif(tmp_path / "s.tif", scene(200, 300, [box]))
    res = predict_raster(StubPredictor(), src, "the bright roof", tmp_path / "m.tif", mode=mode)
    with rasterio.open(tmp_path / "m.tif") as m:
        assert m.crs.to_epsg() == 32633
        assert m.transform == from_origin(X0, Y0, GSD, GSD)
        assert m.dtypes == ("uint8",) and m.compression.name.lower() == "lzw"
        assert m.tags()["expression"] == "the bright roof"
        assert set(np.unique(m.read(1))) <= {0, 1}
    vec = mask_vectors(tmp_path / "m.tif", text=res.text, score=res.score, model_id="stub")
    doc = json.loads(Path(vec.write(tmp_path / "m.geojson")).read_text())
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    (feature,) = doc["features"]
    props = feature["properties"]
    assert props["expression"] == "the bright roof" and props["model"] == "stub"
    assert props["area_unit"] == "square metre" and props["area"] == props["pixels"] * GSD**2
    cx, cy = centroid(feature["geometry"]["coordinates"])
    tol = 0.0 if mode == "tiles" else GSD  # decimated single/coarse passes: within a pixel
    assert abs(cx - (X0 + 170 * GSD)) <= tol and abs(cy - (Y0 - 100 * GSD)) <= tol
    if mode == "tiles":
        assert props["pixels"] == 40 * 40 and res.area == 1600 * GSD**2
    assert res.crs == UTM and res.foreground_pixels == props["pixels"]


def test_geojson_and_geopackage_read_back_with_crs(tmp_path):
    pyogrio = pytest.importorskip("pyogrio")
    src = write_tif(tmp_path / "s.tif", scene(128, 128, [(10, 30, 10, 30), (60, 90, 70, 100)]))
    res = predict_raster(StubPredictor(), src, "two roofs", tmp_path / "m.tif", mode="tiles")
    vec = mask_vectors(res.out, text=res.text, score=res.score, model_id="stub")
    for suffix in (".geojson", ".gpkg"):
        path = vec.write(tmp_path / f"v{suffix}")
        info = pyogrio.read_info(path)
        assert info["crs"] == UTM and info["features"] == 2
        assert {"expression", "score", "model", "area"} <= set(info["fields"])
    # exterior rings counter-clockwise in map coordinates (RFC 7946 right-hand rule)
    ring = np.asarray(vec.features[0]["geometry"]["coordinates"][0])
    assert np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1]) > 0


def test_wgs84_geojson_has_no_crs_member(tmp_path):
    src = write_tif(
        tmp_path / "s.tif",
        scene(64, 64, [(8, 16, 8, 16)]),
        crs="EPSG:4326",
        transform=from_origin(12.0, 45.0, 1e-4, 1e-4),
    )
    res = predict_raster(StubPredictor(), src, "x", tmp_path / "m.tif")
    doc = mask_vectors(res.out, text="x", score=res.score, model_id="stub").to_geojson()
    assert "crs" not in doc and res.area_unit == "square degree"
    x, y = centroid(doc["features"][0]["geometry"]["coordinates"])
    assert x == pytest.approx(12.0 + 12e-4) and y == pytest.approx(45.0 - 12e-4)


def test_missing_crs_warns_and_uses_pixel_coordinates(tmp_path):
    src = write_tif(tmp_path / "s.tif", scene(64, 64, [(10, 20, 30, 50)]), crs=None)
    with pytest.warns(GeoWarning, match="no CRS"):
        res = predict_raster(StubPredictor(), src, "x", tmp_path / "m.tif")
    assert res.crs is None and any("no CRS" in m for m in res.messages)
    with pytest.warns(GeoWarning, match="no CRS"):
        vec = mask_vectors(res.out, text="x", score=res.score, model_id="stub")
    doc = vec.to_geojson()
    assert "crs" not in doc and doc["features"][0]["properties"]["area_unit"] == "square pixel"
    assert centroid(doc["features"][0]["geometry"]["coordinates"]) == pytest.approx((40.0, 15.0))


def test_strip_polygonisation_rejoins_cut_polygons():
    pytest.importorskip("shapely")
    rng = np.random.default_rng(1)
    mask = np.zeros((97, 53), bool)
    for _ in range(12):
        r, c = rng.integers(0, 90), rng.integers(0, 45)
        mask[r : r + rng.integers(2, 30), c : c + rng.integers(2, 9)] = True
    mask[40:60, 20:30] = False  # a hole through some blobs
    kw = {"text": "x", "score": 1.0, "model_id": "m", "transform": (2.0, 0, 100.0, 0, -2.0, 50.0), "crs": UTM}
    whole = mask_vectors(mask, **kw).features
    strips = mask_vectors(mask, max_pixels=53 * 7, **kw).features  # 14 strips of 7 rows
    assert len(strips) == len(whole)
    assert sum(f["properties"]["pixels"] for f in strips) == mask.sum()
    geoms = [(f["geometry"], 1) for f in strips]
    back = rasterize(geoms, out_shape=mask.shape, transform=rasterio.Affine(*kw["transform"]))
    assert np.array_equal(back > 0, mask)
