"""The synthetic generator's per-category tables are complete and consistent with each other."""

from __future__ import annotations

from rs2sam2.data.synthetic import CATEGORIES, COLOURS
from rs2sam2.data.synthetic.placement import _FIELD_KINDS
from rs2sam2.data.synthetic.render import _PAINTERS
from rs2sam2.data.synthetic.scene import _RECIPES
from rs2sam2.data.synthetic.vocabulary import CATEGORY_TABLE, SCENE_TYPES


def test_every_category_is_painted_and_coloured_from_the_palette():
    assert set(_PAINTERS) == set(CATEGORIES) == set(CATEGORY_TABLE)
    for name, category in CATEGORY_TABLE.items():
        assert set(category.colours) <= set(COLOURS), name
        assert category.nouns[0] == name


def test_every_sports_field_colour_is_a_kind_of_field():
    assert set(_FIELD_KINDS) == set(CATEGORY_TABLE["sports field"].colours)


def test_every_scene_type_has_a_recipe():
    assert tuple(_RECIPES) == SCENE_TYPES
