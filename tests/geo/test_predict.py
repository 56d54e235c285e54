"""GeoTIFF in, GeoTIFF / GeoJSON / GeoPackage out, tiles and coarse-to-fine (rs2sam2.geo).

A stub predictor that marks bright pixels (logit +4 where the RGB mean is above 128, −4 elsewhere) stands
in for the model, so every assertion checks the georeferencing, stretching and tiling machinery exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

rasterio = pytest.importorskip("rasterio")
from rasterio.features import rasterize  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from rs2sam2.geo import (  # noqa: E402
    GeoWarning,
    compute_stretch,
    mask_vectors,
    predict_raster,
    require_rasterio,
    resolve_bands,
    tile_starts,
)
from rs2sam2.geo.writing import _resize_rows  # noqa: E402
from rs2sam2.predictor import Prediction  # noqa: E402

from ..conftest import GSD, UTM, X0, Y0, StubPredictor, scene, truth, write_tif  # noqa: E402


def read_mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


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


def _all_foreground(image: np.ndarray, text: str) -> Prediction:
    logits = np.full(image.shape[:2], 5.0, np.float32)
    return Prediction(
        mask=logits > 0.5,
        score=1.0,
        logits=logits,
        pseudo_mask=np.zeros((1, 1)),
        dense_prompt=np.zeros((1, 1)),
        fused_features=[],
        iou_score=0.0,
        object_score=0.0,
        threshold=0.5,
        text=text,
    )


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


# ----------------------------------------------------------------------------------------- tiles
def test_tile_starts_cover_the_axis_with_the_last_window_at_the_edge():
    assert tile_starts(100, 128, 32) == [0]
    assert tile_starts(256, 128, 32) == [0, 96, 128]
    assert tile_starts(224, 128, 32) == [0, 96]
    for size in range(128, 700, 37):
        starts = tile_starts(size, 128, 40)
        assert starts[-1] == size - 128 and all(b - a <= 88 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "merge"),
    [(203, 157, 64, 16, "mean"), (203, 157, 128, 40, "max"), (130, 300, 64, 0, "mean")],
)
def test_tiles_merge_is_seamless(tmp_path, h, w, tile, overlap, merge):
    # boxes straddling window borders (64, 48/96/112, …) and the scene's right/bottom edges
    boxes = [(40, 90, 50, 140), (100, 130, 10, 30), (h - 20, h, w - 25, w)]
    src = write_tif(tmp_path / "s.tif", scene(h, w, boxes))
    res = predict_raster(
        StubPredictor(),
        src,
        "x",
        tmp_path / "m.tif",
        mode="tiles",
        tile_size=tile,
        overlap=overlap,
        merge=merge,
    )
    assert np.array_equal(read_mask(res.out) > 0, truth(h, w, boxes))
    vec = mask_vectors(res.out, text="x", score=res.score, model_id="stub")
    assert sorted(f["properties"]["pixels"] for f in vec.features) == sorted(
        (r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in boxes
    )


def test_mean_and_max_merge_in_the_overlap(tmp_path):
    src = write_tif(tmp_path / "s.tif", scene(64, 112, []))  # windows at columns 0 and 48
    for merge, overlap_fg in (("mean", False), ("max", True)):
        calls = iter([1.0, 0.0])  # first window says 1.0, second 0.0; threshold 0.5

        def predict(image, text, threshold=None, bands=None, calls=calls):
            p = _all_foreground(image, text)
            p.logits[:] = next(calls)
            return p

        stub = StubPredictor()
        stub.predict = predict
        res = predict_raster(stub, src, "x", tmp_path / f"{merge}.tif", mode="tiles", overlap=16, merge=merge)
        row = read_mask(res.out)[0] > 0
        assert row[:48].all() and not row[64:].any() and bool(row[48:64].all()) is overlap_fg


class BatchStubPredictor(StubPredictor):
    """The stub with ``predict_batch`` (one sentence per image), recording each batch's size."""

    def __init__(self) -> None:
        super().__init__(keep_images=False)
        self.batches: list[int] = []

    def predict_batch(self, images, texts, threshold=None, bands=None) -> list[Prediction]:
        assert len(images) == len(texts)
        self.batches.append(len(images))
        return [self.predict(im, t, threshold) for im, t in zip(images, texts)]


def _record(ticks: list, key: int):
    return lambda done, total: ticks.append((key, done, total))


def test_tiles_run_windows_in_batches_of_a_row(tmp_path):
    h, w, boxes = 150, 300, [(40, 90, 50, 140), (100, 150, 250, 300)]
    nodata = scene(h, w, boxes)
    nodata[:, :, 96:208] = 0  # the third and fourth window of each row (columns 96-160, 144-208): nodata only
    src = write_tif(tmp_path / "s.tif", nodata, nodata=0)
    ticks, masks = [], {}
    for batch_size in (1, 3):
        stub = BatchStubPredictor()
        out = tmp_path / f"m{batch_size}.tif"
        res = predict_raster(
            stub,
            src,
            "x",
            out,
            mode="tiles",
            overlap=16,
            batch_size=batch_size,
            progress=_record(ticks, batch_size),
        )
        masks[batch_size] = read_mask(res.out)
        cols = len(tile_starts(w, 64, 16))  # 6 windows a row: 0, 48, 96, 144, 192, 236
        assert res.windows + res.skipped_windows == 3 * cols and res.skipped_windows == 3 * 2
        if batch_size == 3:  # per row: [0, 48, 96-skipped] -> 2, [144-skipped, 192, 236] -> 2
            assert stub.batches == [2, 2] * 3
            assert [d for b, d, t in ticks if b == 3] == [3, 6, 9, 12, 15, 18]
    assert np.array_equal(masks[1], masks[3])
    assert np.array_equal(masks[1] > 0, truth(h, w, boxes) & (nodata[0] > 0))
    with pytest.raises(ValueError, match="batch_size"):
        predict_raster(BatchStubPredictor(), src, "x", tmp_path / "m.tif", mode="tiles", batch_size=0)


@pytest.mark.usefixtures("one_thread")
def test_tiles_batched_windows_match_one_at_a_time_with_the_tiny_model(tiny_predictor, tmp_path):
    """predict_batch on several windows gives the logits of one-at-a-time predict, within float error;
    the tiles written with batches of 4 and of 1 agree (a pixel may only flip within that error)."""
    rng = np.random.default_rng(0)
    windows = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    one = [tiny_predictor.predict(x, "the white roof").logits for x in windows]
    batch = [p.logits for p in tiny_predictor.predict_batch(windows, ["the white roof"] * 3)]
    for a, b in zip(one, batch):
        assert a.shape == b.shape == (64, 64)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    s = tiny_predictor.model.config.image_size
    data = np.moveaxis(rng.integers(0, 256, (s + s // 2, 2 * s, 3), dtype=np.uint8), -1, 0)
    src = write_tif(tmp_path / "r.tif", data)
    logits = {}
    for batch_size in (1, 4):
        out = tmp_path / f"r{batch_size}.tif"
        res = predict_raster(tiny_predictor, src, "the roof", out, mode="tiles", batch_size=batch_size)
        logits[batch_size] = read_mask(out)
        assert res.windows == len(tile_starts(data.shape[1], s, s // 4)) * len(
            tile_starts(data.shape[2], s, s // 4)
        )
    assert (logits[1] != logits[4]).mean() < 1e-3


def test_tiles_validates_size_and_overlap(tmp_path):
    src = write_tif(tmp_path / "s.tif", scene(64, 64, []))
    with pytest.raises(ValueError, match="multiple of the model input 64"):
        predict_raster(StubPredictor(), src, "x", tmp_path / "m.tif", mode="tiles", tile_size=100)
    with pytest.raises(ValueError, match="overlap"):
        predict_raster(StubPredictor(), src, "x", tmp_path / "m.tif", mode="tiles", overlap=64)
    with pytest.raises(ValueError, match=".tif, .tiff or .png"):
        predict_raster(StubPredictor(), src, "x", tmp_path / "m.jpg")


# ------------------------------------------------------------------------------ coarse-to-fine
def test_coarse_to_fine_finds_the_target_window(tmp_path):
    box = (700, 720, 250, 270)  # a 20 px object in a 1000² scene: 1.3 px at the coarse 64² pass
    src = write_tif(tmp_path / "s.tif", scene(1000, 1000, [box]))
    stub = StubPredictor()
    res = predict_raster(stub, src, "x", tmp_path / "m.tif", mode="coarse-to-fine")
    col, row, width, height = res.window
    assert width == height == 64 and res.windows == 2  # ≥ S a side, so read at full resolution
    assert col <= 250 and col + width >= 270 and row <= 700 and row + height >= 720
    assert stub.images[1].shape == (64, 64, 3)
    assert np.array_equal(read_mask(res.out) > 0, truth(1000, 1000, [box]))  # exact at full resolution
    single = predict_raster(StubPredictor(), src, "x", tmp_path / "s1.tif")
    assert not np.array_equal(read_mask(single.out) > 0, truth(1000, 1000, [box]))  # too coarse


def test_coarse_to_fine_without_an_object_writes_an_empty_mask(tmp_path):
    src = write_tif(tmp_path / "s.tif", scene(200, 200, []))
    with pytest.warns(GeoWarning, match="coarse pass found no object"):
        res = predict_raster(StubPredictor(), src, "x", tmp_path / "m.tif", mode="coarse-to-fine")
    assert res.window is None and not read_mask(res.out).any()


# ------------------------------------------------------------------------------------- helpers
@pytest.mark.parametrize(
    ("src_shape", "out_shape"), [((16, 16), (100, 60)), ((7, 11), (7, 11)), ((30, 20), (31, 97))]
)
def test_strip_resize_equals_torch_bilinear(src_shape, out_shape):
    x = np.random.default_rng(0).normal(size=src_shape).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x)[None, None], out_shape, mode="bilinear", align_corners=False)[
        0, 0
    ]
    strips = np.concatenate(
        [_resize_rows(x, out_shape, r, min(r + 13, out_shape[0])) for r in range(0, out_shape[0], 13)]
    )
    np.testing.assert_allclose(strips, ref.numpy(), atol=1e-5)


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


def test_png_output_from_a_geotiff_warns_that_georeferencing_is_lost(tmp_path):
    src = write_tif(tmp_path / "s.tif", scene(64, 64, [(8, 24, 8, 24)]))
    with pytest.warns(GeoWarning, match="PNG masks carry no georeferencing"):
        res = predict_raster(StubPredictor(), src, "x", tmp_path / "m.png", mask_value=255)
    from PIL import Image

    assert set(np.unique(np.asarray(Image.open(res.out)))) == {0, 255}


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


# ---------------------------------------------------------------------------------- large scene
_LARGE_SCENE_SCRIPT = """
from types import SimpleNamespace
import numpy as np
import rasterio
from rs2sam2.geo import predict_raster

class Stub:  # numpy only, so that torch's import does not set the high-water mark
    model = SimpleNamespace(config=SimpleNamespace(image_size=256, mask_threshold=0.5))
    def predict(self, image, text, threshold=None):
        return SimpleNamespace(logits=np.where(image.mean(-1) > 128, 4.0, -4.0).astype(np.float32))

def rss_mb(peak):
    # VmHWM, not getrusage's ru_maxrss: after fork + exec Linux reports the parent's RSS in ru_maxrss
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    return int(status["VmHWM" if peak else "VmRSS"].split()[0]) / 1024

before = rss_mb(peak=False)
res = predict_raster(Stub(), {src!r}, "x", {out!r}, mode="tiles", tile_size=512, overlap=64)
tiles = rss_mb(peak=True)
with rasterio.open({src!r}) as ds:
    scene = ds.read()  # control: what holding the scene would cost
print(before, tiles, rss_mb(peak=True), res.foreground_pixels, res.windows)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_large_scene_tiles_mode_has_bounded_peak_memory(tmp_path):
    h = w = 3000
    boxes = [(1000, 1400, 1000, 1400), (2950, 3000, 0, 3000)]
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 4,
        "dtype": "float32",
        "crs": UTM,
        "transform": from_origin(X0, Y0, GSD, GSD),
        "tiled": True,
    }
    with rasterio.open(tmp_path / "big.tif", "w", **profile) as dst:
        for r in range(0, h, 500):  # written in strips: the test process never holds the scene either
            strip = np.full((4, 500, w), 10.0, np.float32)
            for r0, r1, c0, c1 in boxes:
                strip[:, max(r0 - r, 0) : max(min(r1 - r, 500), 0), c0:c1] = 100.0
            dst.write(strip, window=rasterio.windows.Window(0, r, w, 500))
    script = _LARGE_SCENE_SCRIPT.format(src=str(tmp_path / "big.tif"), out=str(tmp_path / "m.tif"))
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    before, tiles, control, pixels, windows = (float(v) for v in run.stdout.split())
    assert pixels == 400 * 400 + 50 * 3000 and windows == 49
    # the scene is 144 MB of float32: tiles mode must stay far below it, the control read must not
    assert tiles - before < 100, run.stdout
    assert control - before > 140, run.stdout
