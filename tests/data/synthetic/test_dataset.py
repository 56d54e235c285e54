"""Tests of the synthetic referring-scene generator (rs2sam2.data.synthetic)."""

from __future__ import annotations

import json
import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from rs2sam2.cli import main as cli_main
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


def _scenes(n: int = 10, size: int = 256) -> list[syn.Scene]:
    return [
        syn.generate_scene(np.random.default_rng([5, k]), size, scene_type=syn.SCENE_TYPES[k % 5])
        for k in range(n)
    ]


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


def test_generate_scene_is_deterministic_per_rng_state():
    a = syn.generate_scene(np.random.default_rng(3))
    b = syn.generate_scene(np.random.default_rng(3))
    c = syn.generate_scene(np.random.default_rng(4))
    assert np.array_equal(a.image, b.image)
    assert [o.category for o in a.objects] == [o.category for o in b.objects]
    assert not np.array_equal(a.image, c.image)


# ---- scenes and masks ------------------------------------------------------------------------------------


def test_scene_content_and_masks_are_disjoint_and_consistent():
    for scene in _scenes():
        assert scene.image.shape == (256, 256, 3) and scene.image.dtype == np.uint8
        assert len(scene.objects) >= 8
        counts = {c: sum(o.category == c for o in scene.objects) for c in syn.CATEGORIES}
        assert max(counts.values()) >= 3  # several instances of a category
        assert sum(v > 0 for v in counts.values()) >= 3  # several categories
        total = np.zeros((256, 256), dtype=np.int32)
        for obj in scene.objects:
            assert obj.mask.shape == (256, 256) and obj.mask.dtype == bool
            assert obj.area == int(obj.mask.sum()) > 0
            ys, xs = np.nonzero(obj.mask)
            assert obj.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            # objects stay inside the image, clear of its border
            assert xs.min() > 0 and ys.min() > 0 and xs.max() < 255 and ys.max() < 255
            total += obj.mask
        assert total.max() == 1  # disjoint
        label = scene.label_map()
        for i, obj in enumerate(scene.objects):
            assert np.array_equal(label == i, obj.mask)
        if scene.scene_type == "harbour":
            ships = [o for o in scene.objects if o.category == "ship"]
            assert ships and all(scene.regions["sea"][o.mask].all() for o in ships)
        if scene.scene_type == "airport":
            planes = [o for o in scene.objects if o.category == "airplane"]
            assert planes and all(scene.regions["apron"][o.mask].all() for o in planes)


def test_masks_match_the_drawn_objects_in_a_flat_render():
    for k, scene_type in enumerate(syn.SCENE_TYPES):
        textured = syn.generate_scene(np.random.default_rng([9, k]), scene_type=scene_type)
        flat = syn.generate_scene(np.random.default_rng([9, k]), scene_type=scene_type, noise=False)
        assert len(flat.objects) == len(textured.objects)
        for a, b in zip(flat.objects, textured.objects):
            assert np.array_equal(a.mask, b.mask) and a.rgb == b.rgb
        for obj in flat.objects:
            # every mask pixel shows exactly the object's colour ...
            assert (flat.image[obj.mask] == np.array(obj.rgb, dtype=np.uint8)).all()
            # ... and the ring just outside the mask does not (the mask is not smaller than the object)
            padded = np.pad(obj.mask, 1)
            grown = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:] | obj.mask
            ring = grown & ~obj.mask
            same = (flat.image[ring] == np.array(obj.rgb, dtype=np.uint8)).all(axis=1)
            assert same.mean() < 0.05
        # the textured render is not flat colour: objects carry texture / shading
        big = [o for o in textured.objects if o.area >= 200]
        assert big and all(textured.image[o.mask].astype(float).std(axis=0).max() > 3 for o in big)


def test_targets_are_reasonably_large():
    areas = [obj.area for scene in _scenes(6) for obj in scene.objects]
    assert np.median(areas) >= 150
    assert np.mean(np.array(areas) >= 80) > 0.95


# ---- expressions -----------------------------------------------------------------------------------------


def _rect_object(category: str, color: str | None, x0: int, y0: int, w: int, h: int, size: int = 256):
    mask = np.zeros((size, size), dtype=bool)
    mask[y0 : y0 + h, x0 : x0 + w] = True
    return syn.SceneObject(
        category=category,
        mask=mask,
        color=color,
        rgb=(0, 0, 0),
        area=w * h,
        bbox=(x0, y0, x0 + w, y0 + h),
        centroid=(x0 + w / 2, y0 + h / 2),
        axis_angle=0.0 if w >= h else 90.0,
        elongation=max(w, h) / min(w, h),
        heading=None,
        style="test",
    )


def test_predicates_on_a_handmade_scene():
    objects = [
        _rect_object("vehicle", "red", 20, 30, 16, 8),  # 0: top left, horizontal
        _rect_object("vehicle", "blue", 200, 40, 16, 8),  # 1: top right
        _rect_object("vehicle", "red", 210, 200, 8, 16),  # 2: bottom right, vertical
        _rect_object("building", "white", 60, 180, 30, 30),  # 3: the only building, bottom left
        _rect_object("vehicle", "white", 124, 120, 16, 8),  # 4: in the centre, on the vertical midline
    ]
    scene = syn.Scene(256, np.zeros((256, 256, 3), np.uint8), objects, {}, "urban")
    rng = np.random.default_rng(0)

    def unique(spec):
        values = syn.evaluate_spec(scene, spec)
        yes = np.flatnonzero(values == 1)
        return int(yes[0]) if yes.size == 1 and not (values == 0).any() else None

    assert unique(("colour", "vehicle", "blue")) == 1
    assert unique(("colour", "vehicle", "red")) is None  # two red vehicles
    assert unique(("and", ("colour", "vehicle", "red"), ("half", "vehicle", "top"))) == 0
    assert unique(("extreme", "vehicle", "left")) == 0
    assert unique(("extreme", "vehicle", "bottom")) == 2
    assert unique(("restricted", "vehicle", "right", ("colour", "vehicle", "red"))) == 2
    assert unique(("grid", "vehicle", 1, 1)) == 4
    assert unique(("cat", "building")) == 3
    assert unique(("axis", "vehicle", "vertical")) == 2
    assert unique(("axis", "vehicle", "horizontal")) is None
    # the centre vehicle sits on the vertical midline: "left half" is ambiguous, hence rejected
    assert syn.evaluate_spec(scene, ("half", "vehicle", "left"))[4] == 0
    assert unique(("half", "vehicle", "left")) is None
    assert unique(("ordinal", "vehicle", "left", 2)) == 4
    # right of the building and roughly level with it: only vehicle 2 (vehicle 4 is far above its row)
    assert unique(("rel_dir", "vehicle", "right", ("cat", "building"))) == 2
    assert unique(("rel_near", "vehicle", "closest", ("cat", "building"))) == 4
    assert unique(("rel_dir", "vehicle", "above", ("colour", "vehicle", "blue"))) is None
    assert unique(("rel_dir", "vehicle", "below", ("colour", "vehicle", "blue"))) == 2
    # an ambiguous anchor makes the relation invalid
    assert unique(("rel_dir", "vehicle", "left", ("colour", "vehicle", "red"))) is None

    found = {(i, t) for i, _, t in syn.make_expressions(scene, rng)}
    assert (1, "colour") in found and (0, "compound") in found and (4, "absolute_position") in found
    assert (0, "colour") not in found and (2, "colour") not in found


def test_every_expression_singles_out_its_target():
    scenes = _scenes(10)
    n_total = 0
    for k, scene in enumerate(scenes):
        rng = np.random.default_rng(k)
        referrals = syn.referring_candidates(scene, rng)
        assert len(referrals) >= 20
        for r in referrals:
            values = syn.evaluate_spec(scene, r.spec)
            assert values[r.object_index] == 1, r
            assert (values == 1).sum() == 1 and not (values == 0).any(), r
            assert scene.objects[r.object_index].area >= 80
        n_total += len(referrals)
        # the same sentence never names two different objects of a scene
        owner: dict[str, int] = {}
        for index, text, etype in syn.make_expressions(scene, rng):
            assert etype in syn.EXPRESSION_TYPES
            assert owner.setdefault(text, index) == index, text
    assert n_total > 500


def test_phrases_mention_what_the_spec_says():
    rng = np.random.default_rng(1)
    for scene in _scenes(4):
        for r in syn.referring_candidates(scene, rng):
            text = syn.render_expression(r.spec, rng)
            spec = r.spec[1] if r.spec[0] == "and" else r.spec
            # the first category noun of the sentence names the target's category (anchors come later)
            first = min(
                (m.start(), cat)
                for cat, nouns in syn.CATEGORY_NOUNS.items()
                for noun in nouns
                for m in re.finditer(rf"\b{noun}\b", text)
            )
            assert first[1] == spec[1], (text, r.spec)
            if r.spec[0] == "colour" or (r.spec[0] == "and" and r.spec[1][0] == "colour"):
                assert spec[2] in text.split(), (text, r.spec)


def test_selection_is_balanced_and_contrastive():
    types, same_category_pairs, images = set(), 0, 0
    for k, scene in enumerate(_scenes(10)):
        chosen = syn.make_expressions(scene, np.random.default_rng(k), max_expressions=4)
        assert 1 <= len(chosen) <= 4
        targets = [i for i, _, _ in chosen]
        assert len(set(targets)) == len(targets)  # distinct objects per image
        cats = [scene.objects[i].category for i in targets]
        same_category_pairs += len(cats) - len(set(cats))
        types.update(t for _, _, t in chosen)
        images += 1
    assert len(types) >= 7
    assert same_category_pairs >= images // 2  # the same image asks for different objects of a category


def test_vocabulary_covers_generated_expressions():
    vocabulary = syn.expression_vocabulary()
    assert len(vocabulary) > 2000 and len(set(vocabulary)) == len(vocabulary)
    words = {w for s in vocabulary for w in re.findall(r"[a-z0-9]+", s)}
    for k, scene in enumerate(_scenes(5)):
        for _, text, _ in syn.make_expressions(scene, np.random.default_rng(k)):
            missing = set(re.findall(r"[a-z0-9]+", text)) - words
            assert not missing, (text, missing)


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


# ---- command line ----------------------------------------------------------------------------------------


def test_cli_help_and_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["synth", "--help"])
    assert exc.value.code == 0
    assert "--num-images" in capsys.readouterr().out

    out = tmp_path / "cli"
    assert cli_main(["synth", "--out", str(out), "--num-images", "3", "--seed", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "images: 3" in printed and "expression types" in printed
    assert len(list((out / "images").glob("*.png"))) == 3
    assert (out / "rrsisd_layout" / "rrsisd" / "instances.json").is_file()
    assert len(read_manifest(out / "manifest.jsonl")) >= 3

    out2 = tmp_path / "cli2"
    args = ["synth", "--out", str(out2), "--num-images", "2", "--seed", "2", "--size", "128", "--no-rrsisd"]
    assert cli_main([*args, "--quiet"]) == 0
    assert not (out2 / "rrsisd_layout").exists()
    with Image.open(next((out2 / "images").glob("*.png"))) as im:
        assert im.size == (128, 128)
    assert cli_main(["synth", "--out", str(out2), "--num-images", "0"]) == 2
