"""rs2sam2.data.masks: the one home of mask encodings (RLE, COCO segmentations, boxes, mask images)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from rs2sam2.data.masks import (
    decode_coco_segmentation,
    decode_rle,
    encode_rle,
    mask_area,
    mask_bbox,
    normalise_rle,
    read_mask_png,
    write_mask_png,
)
from rs2sam2.images import read_grey


def _mask(h: int = 7, w: int = 9) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.random((h, w)) < 0.4


def test_rle_round_trip_is_json_ready_and_accepts_any_truthy_array():
    m = _mask()
    rle = encode_rle(m)
    assert rle["size"] == [7, 9] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(decode_rle(rle), m)
    assert encode_rle(m.astype(np.uint8) * 255) == rle  # 0/255 masks encode like booleans
    np.testing.assert_array_equal(decode_rle({**rle, "counts": rle["counts"].encode("ascii")}), m)


def test_normalise_rle_handles_the_annotation_file_variants():
    m = _mask()
    compressed = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    as_str = {"size": list(compressed["size"]), "counts": compressed["counts"].decode("ascii")}
    flat = m.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for px in flat:  # uncompressed RLE: alternating run lengths, starting with background
        if px != value:
            counts.append(run)
            value, run = px, 0
        run += 1
    counts.append(run)
    for rle in (as_str, compressed, {"size": [7, 9], "counts": counts}):
        np.testing.assert_array_equal(mask_utils.decode(normalise_rle(rle, 7, 9)).astype(bool), m)
    assert normalise_rle({"counts": as_str["counts"]}, 7, 9)["size"] == [7, 9]


def test_coco_segmentation_overlap_rule():
    a, b = [0, 0, 4, 0, 4, 4, 0, 4], [2, 2, 6, 2, 6, 5, 2, 5]
    union = decode_coco_segmentation([a, b], 6, 8, overlap_quirk=False)
    official = decode_coco_segmentation([a, b], 6, 8)
    assert union.sum() - official.sum() == 4  # the doubly covered pixels become background
    assert not decode_coco_segmentation([], 6, 8).any()
    with pytest.raises(ValueError, match="unsupported segmentation"):
        decode_coco_segmentation("poly", 6, 8)


def test_box_and_area_match_pycocotools():
    m = _mask(12, 10)
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert mask_bbox(m) == [int(v) for v in mask_utils.toBbox(rle)]
    assert mask_area(m) == int(m.sum())


def test_mask_png_round_trip(tmp_path):
    m = _mask()
    path = tmp_path / "m.png"
    write_mask_png(m, path)
    with Image.open(path) as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im))) <= {0, 255}
    np.testing.assert_array_equal(read_mask_png(path), m)
    np.testing.assert_array_equal(read_grey(path) > 127, m)
    deep = tmp_path / "deep.png"
    Image.fromarray((m * 40000).astype(np.uint16)).save(deep)
    assert read_grey(deep).max() == 40000  # native depth, not squeezed to 8 bits
