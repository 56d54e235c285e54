"""Synthetic scenes (rs2sam2.data.synthetic.scene, render): deterministic per RNG state, masks disjoint and
consistent with the drawn objects, targets reasonably large."""

from __future__ import annotations

import numpy as np

from rs2sam2.data import synthetic as syn

from .conftest import _scenes

# ---- determinism -----------------------------------------------------------------------------------------


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
