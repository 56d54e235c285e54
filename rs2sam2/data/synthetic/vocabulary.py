"""The generator's world and words: categories, colours, scene types, and the phrase templates.

Per-category behaviour is data: :data:`CATEGORY_TABLE` holds, for each object category, its nouns, the
colours it may take (with sampling weights) and which kinds of description apply to it (orientation,
heading, "in"/"on" a region, extra colour phrasings). The phrase templates (``{n}``: category noun,
``{c}``: colour, ``{p}``: position phrase, ``{a}``: anchor phrase, ...) are tables too; every word the
expressions can contain comes from this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """How one object category is named and described.

    Attributes:
        nouns: the nouns it is referred to by (the first is the category's name).
        colours: colour names (keys of :data:`COLOURS`) it may be painted in, with sampling weights; empty:
            painted in the tree green :data:`_TREE_RGB` and never described by colour.
        oriented: long enough to be "horizontal" / "vertical" / "diagonal".
        heading: has a nose ("facing left", "heading north").
        in_regions: regions it can be "in" / "on" ("the car in the parking lot").
        colour_templates: colour phrasings beyond :data:`_T_COLOUR` ("the building with a red roof").
    """

    nouns: tuple[str, ...]
    colours: dict[str, float]
    oriented: bool = False
    heading: bool = False
    in_regions: tuple[str, ...] = ()
    colour_templates: tuple[str, ...] = ()


CATEGORY_TABLE: dict[str, Category] = {
    "building": Category(
        nouns=("building", "house", "roof"),
        colours={"red": 0.25, "white": 0.2, "grey": 0.25, "blue": 0.12, "brown": 0.18},
        oriented=True,
        colour_templates=("the building with a {c} roof", "the house with the {c} roof"),
    ),
    "vehicle": Category(
        nouns=("vehicle", "car"),
        colours={"white": 0.3, "black": 0.2, "red": 0.2, "blue": 0.18, "yellow": 0.12},
        oriented=True,
        in_regions=("road", "parking lot", "apron"),
    ),
    "ship": Category(
        nouns=("ship", "boat", "vessel"),
        colours={"white": 0.45, "grey": 0.25, "red": 0.2, "yellow": 0.1},
        oriented=True,
        heading=True,
    ),
    "storage tank": Category(
        nouns=("storage tank", "oil tank", "tank"), colours={"white": 0.55, "grey": 0.3, "green": 0.15}
    ),
    "airplane": Category(
        nouns=("airplane", "plane", "aircraft"), colours={"white": 0.7, "grey": 0.3}, heading=True
    ),
    "sports field": Category(
        nouns=("sports field", "playing field", "sports ground"),
        colours={"green": 0.5, "blue": 0.3, "red": 0.2},
        oriented=True,
    ),
    "tree clump": Category(nouns=("tree clump", "group of trees", "clump of trees"), colours={}),
}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_TABLE)
CATEGORY_IDS: dict[str, int] = {c: i + 1 for i, c in enumerate(CATEGORIES)}
CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {c: t.nouns for c, t in CATEGORY_TABLE.items()}
SCENE_TYPES: tuple[str, ...] = ("urban", "harbour", "airport", "industrial", "rural")
_SCENE_TYPE_WEIGHTS = (0.24, 0.2, 0.16, 0.2, 0.2)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (176, 56, 46),
    "white": (228, 228, 222),
    "grey": (138, 138, 136),
    "blue": (56, 94, 166),
    "brown": (146, 94, 58),
    "black": (36, 36, 40),
    "yellow": (216, 186, 58),
    "green": (66, 150, 72),
}
_TREE_RGB = (46, 80, 40)
WATER_KINDS = ("sea", "river", "lake")

EXPRESSION_TYPES: tuple[str, ...] = (
    "category",
    "colour",
    "size",
    "orientation",
    "absolute_position",
    "extreme_position",
    "ordinal",
    "compound",
    "spatial_relation",
    "proximity",
    "context",
)
# Relative frequency of each expression type when a few expressions are selected per image.
_TYPE_WEIGHTS: dict[str, float] = {
    "category": 0.01,
    "colour": 0.14,
    "size": 0.11,
    "orientation": 0.07,
    "absolute_position": 0.13,
    "extreme_position": 0.1,
    "ordinal": 0.06,
    "compound": 0.12,
    "spatial_relation": 0.1,
    "proximity": 0.11,
    "context": 0.05,
}

# ---- phrase templates ({n}: category noun, {c}: colour, {p}: position phrase, {a}: anchor phrase, ...)
_T_CATEGORY = ("the {n}", "the only {n}", "the {n} in the image")
_T_COLOUR = ("the {c} {n}", "the {n} that is {c}", "the {c} coloured {n}")
_T_POSITION = ("the {n} {p}", "the {n} located {p}", "the {n} that is {p}")
_GRID_PHRASES: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 0): ("in the top left corner", "at the top left", "in the upper left part of the image"),
    (0, 1): ("at the top centre", "in the upper middle of the image", "in the top middle"),
    (0, 2): ("in the top right corner", "at the top right", "in the upper right part of the image"),
    (1, 0): ("at the middle left", "in the centre left of the image", "in the middle of the left side"),
    (1, 1): ("in the centre", "in the middle of the image", "at the centre of the image"),
    (1, 2): ("at the middle right", "in the centre right of the image", "in the middle of the right side"),
    (2, 0): ("in the bottom left corner", "at the bottom left", "in the lower left part of the image"),
    (2, 1): ("at the bottom centre", "in the lower middle of the image", "in the bottom middle"),
    (2, 2): ("in the bottom right corner", "at the bottom right", "in the lower right part of the image"),
}
_HALF_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("in the left half of the image", "on the left side of the image", "in the left half"),
    "right": ("in the right half of the image", "on the right side of the image", "in the right half"),
    "top": ("in the upper half of the image", "in the top half", "in the upper half"),
    "bottom": ("in the lower half of the image", "in the bottom half", "in the lower half"),
}
_SIDES = ("left", "right", "top", "bottom")
_T_EXTREME: dict[str, tuple[str, ...]] = {
    "left": ("the leftmost {n}", "the {n} on the far left", "the {n} furthest to the left"),
    "right": ("the rightmost {n}", "the {n} on the far right", "the {n} furthest to the right"),
    "top": ("the topmost {n}", "the uppermost {n}", "the {n} closest to the top of the image"),
    "bottom": (
        "the bottommost {n}",
        "the lowest {n} in the image",
        "the {n} closest to the bottom of the image",
    ),
}
_T_SIZE: dict[str, tuple[str, ...]] = {
    "largest": ("the largest {n}", "the biggest {n}", "the {n} that is the largest"),
    "smallest": ("the smallest {n}", "the tiniest {n}", "the {n} that is the smallest"),
    "larger": ("the larger {n}", "the bigger {n}"),
    "smaller": ("the smaller {n}",),
}
_T_SIZE_ORDINAL: dict[str, tuple[str, ...]] = {
    "largest": ("the second largest {n}", "the second biggest {n}"),
    "smallest": ("the second smallest {n}",),
}
_T_AXIS: dict[str, tuple[str, ...]] = {
    "horizontal": ("the horizontal {n}", "the {n} oriented horizontally", "the horizontally oriented {n}"),
    "vertical": ("the vertical {n}", "the {n} oriented vertically", "the vertically oriented {n}"),
    "diagonal": ("the diagonal {n}", "the {n} oriented diagonally", "the diagonally oriented {n}"),
}
_HEADING_PHRASES: dict[str, tuple[str, ...]] = {
    "right": ("facing right", "pointing to the right", "heading east"),
    "down": ("facing down", "pointing downwards", "heading south"),
    "left": ("facing left", "pointing to the left", "heading west"),
    "up": ("facing up", "pointing upwards", "heading north"),
}
_HEADING_ANGLES = {"right": 0.0, "down": 90.0, "left": 180.0, "up": 270.0}
_ORDINAL_WORDS = {2: "second", 3: "third"}
_T_ORDINAL = ("the {o} {n} from the {s}", "the {o} {n} counting from the {s}")
_IN_REGION_PHRASES: dict[str, tuple[str, ...]] = {
    "road": ("on the road", "on the street", "driving on the road"),
    "parking lot": ("in the parking lot", "parked in the car park", "in the car park"),
    "apron": ("on the apron", "parked on the apron"),
}
_REGION_NOUNS: dict[str, tuple[str, ...]] = {
    "road": ("the road", "the street"),
    "parking lot": ("the parking lot", "the car park"),
    "apron": ("the apron", "the airport apron"),
    "sea": ("the sea", "the water", "the coastline"),
    "lake": ("the lake", "the water", "the pond"),
    "river": ("the river", "the water", "the riverbank"),
}
_T_NEAR: dict[str, tuple[str, ...]] = {
    "closest": ("the {n} closest to {a}", "the {n} nearest to {a}", "the {n} nearest {a}"),
    "farthest": ("the {n} farthest from {a}", "the {n} furthest from {a}", "the {n} most distant from {a}"),
    "beside": ("the {n} next to {a}", "the {n} beside {a}", "the {n} adjacent to {a}"),
}
_T_DIRECTION: dict[str, tuple[str, ...]] = {
    "left": ("the {n} to the left of {a}", "the {n} left of {a}", "the {n} west of {a}"),
    "right": ("the {n} to the right of {a}", "the {n} right of {a}", "the {n} east of {a}"),
    "above": ("the {n} above {a}", "the {n} north of {a}"),
    "below": ("the {n} below {a}", "the {n} south of {a}"),
}
_T_AND_COLOUR = ("the {c} {n} {p}", "the {n} {p} that is {c}")
_T_AND_AXIS = ("the {x} {n} {p}",)
_ORDERINGS = ("left", "right", "top", "bottom", "largest", "smallest")
_SUPERLATIVE_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("leftmost",),
    "right": ("rightmost",),
    "top": ("topmost", "uppermost"),
    "bottom": ("bottommost", "lowest"),
    "largest": ("largest", "biggest"),
    "smallest": ("smallest",),
}
_T_RESTRICTED_COLOUR = ("the {w} {c} {n}",)
_T_RESTRICTED_HALF = ("the {w} {n} {p}",)
