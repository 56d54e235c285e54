"""The synthetic dataset writer (rs2sam2.data.synthetic.dataset): same seed, same files; manifest, masks and
splits; the RRSIS-D layout and its reader; consistent stats."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from rs2sam2.data import synthetic as syn
from rs2sam2.data.manifest import read_manifest

NUM_IMAGES = 6
REF_KEYS = {"ref_id", "ann_id", "image_id", "split", "sentences", "sent_ids", "category_id", "file_name"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "a"
    stats = syn.generate_dataset(out, NUM_IMAGES, seed=11)
    return out, stats


# ---- determinism -----------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_differs(dataset, tmp_path):
    out, _ = dataset
    again = tmp_path / "b"
    syn.generate_dataset(again, NUM_IMAGES, seed=11)
    first, second = _files(out), _files(again)
    assert first.keys() == second.keys()
    assert "manifest.jsonl" in first and "rrsisd_layout/rrsisd/refs(unc).p" in first
    for name in first:
        assert first[name] == second[name], name

    other = tmp_path / "c"
    syn.generate_dataset(other, NUM_IMAGES, seed=12, write_rrsisd=False)
    third = _files(other)
    assert not (other / "rrsisd_layout").exists()
    assert third["manifest.jsonl"] != first["manifest.jsonl"]
    assert all(third[f"images/{i:06d}.png"] != first[f"images/{i:06d}.png"] for i in range(NUM_IMAGES))


def test_one_image_is_generated_again_alone(dataset):
    """generate_image(seed, i) gives image i of the dataset of that seed: same pixels, same expressions,
    same target masks (what a tool that needs every object of a written dataset relies on)."""
    out, stats = dataset
    records = read_manifest(out / "manifest.jsonl")
    for i in (0, NUM_IMAGES - 1):
        scene, expressions = syn.generate_image(11, i, stats["size"], 4, stats["min_target_area"])
        assert np.array_equal(scene.image, np.array(Image.open(out / f"images/{i:06d}.png")))
        mine = [r for r in records if r.image_id == f"{i:06d}"]
        assert [text for _, text, _ in expressions] == [r.expression for r in mine]
        for (index, _, _), r in zip(expressions, mine, strict=True):
            assert np.array_equal(scene.objects[index].mask, np.array(Image.open(out / r.mask)) > 0)


# ---- dataset layout --------------------------------------------------------------------------------------


def test_manifest_masks_and_splits(dataset):
    out, stats = dataset
    records = read_manifest(out / "manifest.jsonl")
    assert len(records) == stats["num_samples"] >= NUM_IMAGES
    split_of_image: dict[str, str] = {}
    for rec in records:
        assert split_of_image.setdefault(rec.image_id, rec.split) == rec.split  # one split per image
        assert rec.category in syn.CATEGORIES and rec.expression
        with Image.open(out / rec.mask) as im:
            assert im.mode == "L" and im.size == (256, 256)
            values = set(np.unique(np.asarray(im)).tolist())
        assert values == {0, 255}
        assert rec.load_mask(out).sum() >= 80
        assert (out / rec.image).is_file()
    assert len(split_of_image) == NUM_IMAGES
    assert sorted(split_of_image.values()).count("train") == 4
    assert set(split_of_image.values()) == {"train", "val", "test"}
    assert len({r.id for r in records}) == len(records)


def test_rrsisd_layout_matches_manifest(dataset):
    out, _ = dataset
    root = out / "rrsisd_layout"
    with (root / "rrsisd" / "refs(unc).p").open("rb") as f:
        refs = pickle.load(f)
    instances = json.loads((root / "rrsisd" / "instances.json").read_text())
    images = {im["id"]: im for im in instances["images"]}
    anns = {a["id"]: a for a in instances["annotations"]}
    categories = {c["id"]: c["name"] for c in instances["categories"]}
    assert sorted(categories.values()) == sorted(syn.CATEGORIES)
    by_sentence = {}
    for ref in refs:
        assert set(ref) == {
            "ref_id",
            "ann_id",
            "image_id",
            "split",
            "sentences",
            "sent_ids",
            "category_id",
            "file_name",
        }
        assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
        ann = anns[ref["ann_id"]]
        assert ann["image_id"] == ref["image_id"] and ann["category_id"] == ref["category_id"]
        assert images[ref["image_id"]]["file_name"] == ref["file_name"]
        for sent in ref["sentences"]:
            assert sent["tokens"] == sent["sent"].split()
            by_sentence[(ref["file_name"], sent["raw"])] = (ref, ann)

    records = read_manifest(out / "manifest.jsonl")
    assert len(by_sentence) == len(records)
    for rec in records:
        ref, ann = by_sentence[(f"{rec.image_id}.jpg", rec.expression)]
        assert ref["split"] == rec.split and categories[ann["category_id"]] == rec.category
        rle = dict(ann["segmentation"])
        assert isinstance(rle["counts"], str)
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(
            bool
        )
        expected = rec.load_mask(out)
        assert np.array_equal(decoded, expected)
        assert ann["area"] == int(expected.sum()) and ann["iscrowd"] == 0
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(expected)
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        jpg = root / "images" / "rrsisd" / "JPEGImages" / ref["file_name"]
        with Image.open(jpg) as im, Image.open(out / rec.image) as png:
            assert im.format == "JPEG" and im.size == png.size
            diff = np.abs(np.asarray(im, np.int16) - np.asarray(png.convert("RGB"), np.int16))
            assert diff.mean() < 6  # same picture, JPEG-compressed


def test_rrsisd_reader_reads_the_layout(dataset):
    readers = pytest.importorskip("rs2sam2.data.rrsisd")
    out, stats = dataset
    reader = readers.RRSISDReader(out / "rrsisd_layout")
    samples = reader.samples()
    assert len(samples) == stats["num_samples"]
    manifest = {(r.image_id, r.expression): r for r in read_manifest(out / "manifest.jsonl")}
    for sample in samples[:8]:
        image_id = Path(sample.image_path).stem
        rec = manifest[(image_id, sample.expression)]
        assert np.array_equal(sample.load_mask(), rec.load_mask(out))


def test_stats_are_consistent(dataset):
    out, stats = dataset
    records = read_manifest(out / "manifest.jsonl")
    assert sum(stats["expression_types"].values()) == len(records)
    assert sum(v["targets"] for v in stats["categories"].values()) == len(records)
    assert sum(v["images"] for v in stats["splits"].values()) == NUM_IMAGES
    assert sum(stats["target_area_histogram"].values()) == len(records)
    assert json.loads((out / "stats.json").read_text()) == stats
    types = json.loads((out / "expression_types.json").read_text())
    assert sorted(types) == sorted(r.id for r in records)
    assert Counter(types.values()) == {t: n for t, n in stats["expression_types"].items() if n}
    text = syn.format_stats(stats)
    assert f"samples: {len(records)}" in text and "expression types" in text and "storage tank" in text
