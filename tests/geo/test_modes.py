"""Prediction modes (rs2sam2.geo.modes): tiles (cover, seamless merge, batches of windows) and coarse-to-fine.

A stub predictor that marks bright pixels (logit +4 where the RGB mean is above 128, −4 elsewhere) stands
in for the model, so every assertion checks the georeferencing, stretching and tiling machinery exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from rs2sam2.geo import (  # noqa: E402
    GeoWarning,
    mask_vectors,
    predict_raster,
    tile_starts,
)
from rs2sam2.predictor import Prediction  # noqa: E402

from ..conftest import StubPredictor, scene, truth, write_tif  # noqa: E402
from .conftest import _all_foreground, read_mask  # noqa: E402


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
