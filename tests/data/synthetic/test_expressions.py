"""Referring expressions of the synthetic scenes (rs2sam2.data.synthetic.expressions, predicates, phrasing):
predicates on a handmade scene, every expression singles out its target, balanced and contrastive selection,
the vocabulary covers them."""

from __future__ import annotations

import re

import numpy as np

from rs2sam2.data import synthetic as syn

from .conftest import _scenes

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
