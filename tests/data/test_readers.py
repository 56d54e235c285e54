"""Readers of the RRSIS-D and RefSegRS layouts (rs2sam2.data.readers, rrsisd, refsegrs) and manifest
conversion."""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from rs2sam2.data.manifest import read_manifest
from rs2sam2.data.masks import decode_coco_segmentation
from rs2sam2.data.readers import detect_layout, open_dataset, read_samples, to_manifest
from rs2sam2.data.refsegrs import RefSegRSReader, parse_phrase_line
from rs2sam2.data.rrsisd import RRSISDReader, UnsafePickleError, safe_pickle_load

H, W = 6, 8
POLY_A = [0, 0, 4, 0, 4, 4, 0, 4]  # rows 0-3, cols 0-3 (16 px)
POLY_B = [2, 2, 6, 2, 6, 5, 2, 5]  # rows 2-4, cols 2-5 (12 px); overlap rows 2-3, cols 2-3 (4 px)


def _rect(r0, r1, c0, c1):
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def _sent(raw, i):
    return {"raw": raw, "sent": raw.lower(), "tokens": raw.lower().split(), "sent_id": i}


def make_rrsisd(root: Path, refs_obj=None) -> Path:
    img_dir = root / "images" / "rrsisd" / "JPEGImages"
    img_dir.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (W, H), (200, 100, 50)).save(img_dir / name)
    rle = mask_utils.encode(np.asfortranarray(_rect(1, 3, 3, 6).astype(np.uint8)))
    instances = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": H, "width": W},
            {"id": 2, "file_name": "b.jpg", "height": H, "width": W},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [POLY_A, POLY_B]},
            {
                "id": 11,
                "image_id": 2,
                "category_id": 2,
                "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
            },
            # uncompressed RLE, column-major runs starting with zeros: column 1 is foreground
            {
                "id": 12,
                "image_id": 2,
                "category_id": 2,
                "segmentation": {"size": [H, W], "counts": [6, 6, 36]},
            },
        ],
        "categories": [{"id": 1, "name": "building"}, {"id": 2, "name": "vehicle"}],
    }
    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "train", "category_id": 1,
         "sentences": [_sent("The two roofs", 0), _sent("Roofs.", 1)], "sent_ids": [0, 1]},
        {"ref_id": 1, "ann_id": 11, "image_id": 2, "split": "testA", "category_id": 2,
         "sentences": [_sent("a car", 2)], "sent_ids": [2]},
        {"ref_id": 2, "ann_id": 12, "image_id": 2, "split": "val", "category_id": 2,
         "sentences": [_sent("the thin vehicle", 3)], "sent_ids": [3]},
        {"ref_id": 3, "ann_id": 11, "image_id": 2, "split": "test", "category_id": 2,
         "sentences": [_sent("car in the middle", 4)], "sent_ids": [4]},
    ]  # fmt: skip
    (root / "rrsisd").mkdir()
    (root / "rrsisd" / "instances.json").write_text(json.dumps(instances))
    with (root / "rrsisd" / "refs(unc).p").open("wb") as f:
        pickle.dump(refs if refs_obj is None else refs_obj, f, protocol=2)
    return root


MASK5 = np.array([[0, 50, 51, 200]] * 3, dtype=np.uint8)  # > 50 -> columns 2, 3
MASK7 = np.array([[40, 300], [51, 50]], dtype=np.uint16)  # 16-bit


def make_refsegrs(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.new("RGB", (4, 3), (10, 20, 30)).save(root / "images" / "5.tif")
    Image.new("L", (2, 2), 99).save(root / "images" / "7.tif")  # greyscale image -> converted to RGB
    Image.fromarray(MASK5).save(root / "masks" / "5.tif")
    Image.fromarray(MASK7).save(root / "masks" / "7.tif")
    (root / "output_phrase_train.txt").write_text("5 the  red roof\n7 a road\n")
    (root / "output_phrase_test.txt").write_text("7 road on the left")
    return root


@pytest.fixture()
def rrsisd(tmp_path):
    return make_rrsisd(tmp_path / "RRSIS-D")


@pytest.fixture()
def refsegrs(tmp_path):
    return make_refsegrs(tmp_path / "RefSegRS")


# ------------------------------------------------------------------------------------------------ RRSIS-D
def test_rrsisd_splits_and_sentences(rrsisd):
    reader = RRSISDReader(rrsisd)
    train = reader.samples("train")
    assert [s.id for s in train] == ["0-0", "0-1"]
    assert [s.expression for s in train] == ["The two roofs", "Roofs."]
    assert {s.category for s in train} == {"building"} and train[0].image_id == "1"
    assert train[0].image_path == rrsisd / "images/rrsisd/JPEGImages/a.jpg"
    test = reader.samples("test")  # "testA" and "test" both contain "test"
    assert [s.id for s in test] == ["1-0", "3-0"] and {s.split for s in test} == {"test"}
    assert [s.id for s in reader.samples("val")] == ["2-0"]
    assert len(reader.samples()) == 5
    assert reader.ref_ids("test") == [1, 3]


def test_rrsisd_overlap_quirk(rrsisd):
    quirk = RRSISDReader(rrsisd).samples("train")[0].load_mask()
    union = RRSISDReader(rrsisd, overlap_quirk=False).samples("train")[0].load_mask()
    both = _rect(0, 4, 0, 4) | _rect(2, 5, 2, 6)
    overlap = _rect(2, 4, 2, 4)
    np.testing.assert_array_equal(union, both)
    np.testing.assert_array_equal(quirk, both & ~overlap)
    assert union.sum() == 24 and quirk.sum() == 20
    assert not quirk[2:4, 2:4].any()


def test_rrsisd_rle_masks(rrsisd):
    reader = RRSISDReader(rrsisd)
    np.testing.assert_array_equal(reader.load_mask(11), _rect(1, 3, 3, 6))
    np.testing.assert_array_equal(reader.load_mask(12), _rect(0, H, 1, 2))


def test_decode_rle_counts_bytes_and_str():
    m = _rect(1, 5, 2, 3)
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    as_bytes = {"size": [H, W], "counts": rle["counts"]}
    as_str = {"size": [H, W], "counts": rle["counts"].decode("ascii")}
    np.testing.assert_array_equal(decode_coco_segmentation(as_bytes, H, W), m)
    np.testing.assert_array_equal(decode_coco_segmentation(as_str, H, W), m)
    assert decode_coco_segmentation([], H, W).shape == (H, W)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_refs_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.p"
    evil.write_bytes(pickle.dumps([{"ref_id": 0, "x": _Evil(marker)}], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"system"):
        safe_pickle_load(evil)
    assert not marker.exists()
    root = make_rrsisd(tmp_path / "bad", refs_obj=[_Evil(marker)])
    with pytest.raises(UnsafePickleError, match=r"'(posix|nt)\.system'"):
        RRSISDReader(root)
    assert not marker.exists()


def test_restricted_unpickler_allows_builtins_only(tmp_path):
    ok = tmp_path / "ok.p"
    data = [{"a": {1, 2}, "b": (1.5, None, True), "c": frozenset({"x"}), "d": b"raw"}]
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        ok.write_bytes(pickle.dumps(data, protocol=protocol))
        assert safe_pickle_load(ok) == data
    ok.write_bytes(pickle.dumps(OrderedDict(a=1)))
    with pytest.raises(UnsafePickleError, match=r"collections\.OrderedDict"):
        safe_pickle_load(ok)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # 39 bytes: bytearray(1_500_000_000) (protocol 2), then bytes() of it / a protocol-0 variant
        (b"\x80\x02c__builtin__\nbytearray\nq\x00J\x00\x2f\x68\x59\x85q\x01Rq\x02.", r"bytearray\(int"),
        (b"\x80\x02cbuiltins\nbytes\nJ\x00\x2f\x68\x59\x85R.", r"bytes\(int"),
        (b"c__builtin__\nbytearray\n(I1500000000\ntR.", r"bytearray\(int"),
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-7\x86R.", r"latin-1"),
        (b"\x80\x02cbuiltins\nset\nX\x03\x00\x00\x00abc\x85R.", r"set\(\) of a str"),
        (b"\x80\x02cbuiltins\nrange\nJ\x00\x2f\x68\x59\x85R.", r"'builtins\.range'"),
        (b"\x80\x02cbuiltins\ngetattr\n.", r"'builtins\.getattr'"),
    ],
)
def test_refs_pickle_cannot_allocate_beyond_the_file(tmp_path, payload, message):
    import tracemalloc

    bomb = tmp_path / "bomb.p"
    bomb.write_bytes(payload)
    tracemalloc.start()
    try:
        with pytest.raises(UnsafePickleError, match=message):
            safe_pickle_load(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(payload) < 64 and peak < 1 << 20, peak  # refused before allocating 1.5 GB


def test_refs_pickle_size_is_bounded(tmp_path):
    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps([{"ref_id": i, "sentences": [{"raw": "x" * 50}]} for i in range(100)]))
    assert len(safe_pickle_load(path)) == 100
    with pytest.raises(
        UnsafePickleError, match=r"refs\.p is [0-9,]+ bytes; a refs pickle may be at most 1,000"
    ):
        safe_pickle_load(path, max_bytes=1000)


# ----------------------------------------------------------------------------------------------- RefSegRS
def test_parse_phrase_line():
    assert parse_phrase_line("12 a  b c\n") == ("12", "a  b c")
    assert parse_phrase_line("12 a  b c\n", keep_trailing_newline=True) == ("12", "a  b c\n")
    assert parse_phrase_line("12 last line") == ("12", "last line")


def test_refsegrs_samples_masks_and_newline_option(refsegrs):
    train = RefSegRSReader(refsegrs).samples("train")
    assert [s.id for s in train] == ["5-0", "7-0"]
    assert [s.expression for s in train] == ["the  red roof", "a road"]
    official = RefSegRSReader(refsegrs, keep_trailing_newline=True).samples("train")
    assert [s.expression for s in official] == ["the  red roof\n", "a road\n"]
    assert [s.expression for s in RefSegRSReader(refsegrs).samples("test")] == ["road on the left"]
    np.testing.assert_array_equal(train[0].load_mask(), MASK5 > 50)
    np.testing.assert_array_equal(train[1].load_mask(), np.array([[False, True], [True, False]]))
    assert train[0].image_path == refsegrs / "images" / "5.tif"
    assert len(RefSegRSReader(refsegrs).samples()) == 3  # val file absent: skipped


def test_refsegrs_dataset_items(refsegrs):
    ds = open_dataset(refsegrs, "train")
    item = ds[1]
    assert item["image"].mode == "RGB" and item["image"].size == (2, 2)
    assert item["mask"].dtype == bool and item["mask"].shape == (2, 2)
    assert item["expression"] == "a road" and item["id"] == "7-0" and item["split"] == "train"
    assert item["category"] is None and item["image_id"] == "7"
    assert len(open_dataset(refsegrs, "train", transform=lambda it: it["id"])) == 2
    assert open_dataset(refsegrs, "train", transform=lambda it: it["id"])[0] == "5-0"


# ------------------------------------------------------------------------------------- layout + manifest
def test_detect_layout(rrsisd, refsegrs, tmp_path):
    assert detect_layout(rrsisd) == ("rrsisd", rrsisd)
    assert detect_layout(refsegrs) == ("refsegrs", refsegrs)
    with pytest.raises(FileNotFoundError):
        detect_layout(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="unknown dataset layout"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(ValueError, match="split"):
        read_samples(refsegrs, "training")


@pytest.mark.parametrize("layout", ["rrsisd", "refsegrs"])
def test_to_manifest_round_trip(layout, rrsisd, refsegrs, tmp_path):
    root = rrsisd if layout == "rrsisd" else refsegrs
    out = tmp_path / "converted" / "manifest.jsonl"
    n = to_manifest(root, out)
    original = read_samples(root)
    assert n == len(original) == len(read_manifest(out))
    records = read_manifest(out)
    assert all(isinstance(r.mask, dict) for r in records)
    for via in (out, out.parent):  # the .jsonl file or the folder holding manifest.jsonl
        assert detect_layout(via) == ("manifest", out)
        ds = open_dataset(via)
        for i, s in enumerate(original):
            item = ds[i]
            assert item["id"] == s.id and item["expression"] == s.expression
            np.testing.assert_array_equal(item["mask"], s.load_mask())
            assert item["image"].size == s.load_image().size
    assert len(open_dataset(out, "train")) == sum(s.split == "train" for s in original)
    only_test = tmp_path / "test_only.jsonl"
    assert to_manifest(root, only_test, splits=["test"]) == sum(s.split == "test" for s in original)


def test_rrsisd_manifest_keeps_quirk_choice(rrsisd, tmp_path):
    to_manifest(rrsisd, tmp_path / "q.jsonl", splits=["train"])
    to_manifest(rrsisd, tmp_path / "u.jsonl", splits=["train"], overlap_quirk=False)
    assert open_dataset(tmp_path / "q.jsonl")[0]["mask"].sum() == 20
    assert open_dataset(tmp_path / "u.jsonl")[0]["mask"].sum() == 24
    rec = read_manifest(tmp_path / "q.jsonl")[0]
    assert rec.category == "building" and rec.image_id == "1" and rec.split == "train"
