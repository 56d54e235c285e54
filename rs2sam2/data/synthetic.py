"""Procedural referring remote sensing benchmark: aerial-like scenes, referring expressions, dataset writer.

No real benchmark can be downloaded everywhere, so this module draws top-down scenes that read as remote
sensing imagery and writes them, with referring expressions and exact masks, in our manifest format (and,
optionally, in the RRSIS-D refer layout so that reader gets exercised too).

* :func:`generate_scene` — one scene: land cover (vegetation, bare soil, concrete), water bodies with
  shorelines (sea, river, lake), a road network, parking lots, an airport apron, and objects where they
  belong: buildings (rotated rectangles / L shapes, several roof colours), vehicles on roads and in parking
  lots, ships on water, storage tanks, airplanes on the apron, sports fields, tree clumps. Texture, noise,
  shadows and scale variation; every object has an exact boolean mask of the pixels it occupies.
* :func:`make_expressions` — referring expressions that single out one object: category + attribute
  (colour, size, orientation, heading), absolute position, extreme and ordinal position, compound
  descriptions, relations to another object or to a region. Each phrase is generated from a *spec* and is
  kept only if the spec's predicate (three-valued: yes / maybe / no per object) is "yes" for exactly one
  object and "no" for all others, so borderline cases are dropped as ambiguous.
* :func:`generate_dataset` — a deterministic dataset (same seed, byte-identical files), split by image.
* :func:`expression_vocabulary` — sentences covering every template word (for tokenizer training).
* ``rs2sam2 synth`` — the command line front end (arguments in :mod:`rs2sam2.cli.synth`).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .manifest import ManifestRecord, encode_rle, write_manifest

__all__ = [
    "CATEGORIES",
    "EXPRESSION_TYPES",
    "SCENE_TYPES",
    "Referral",
    "Scene",
    "SceneObject",
    "evaluate_spec",
    "expression_vocabulary",
    "format_stats",
    "generate_dataset",
    "generate_scene",
    "make_expressions",
    "referring_candidates",
    "render_expression",
]

# ---------------------------------------------------------------------------------------------------------
# Vocabulary of the world
# ---------------------------------------------------------------------------------------------------------

CATEGORIES: tuple[str, ...] = (
    "building",
    "vehicle",
    "ship",
    "storage tank",
    "airplane",
    "sports field",
    "tree clump",
)
CATEGORY_IDS: dict[str, int] = {c: i + 1 for i, c in enumerate(CATEGORIES)}
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
# Colour names each category may take, with sampling weights.
_CATEGORY_COLOURS: dict[str, dict[str, float]] = {
    "building": {"red": 0.25, "white": 0.2, "grey": 0.25, "blue": 0.12, "brown": 0.18},
    "vehicle": {"white": 0.3, "black": 0.2, "red": 0.2, "blue": 0.18, "yellow": 0.12},
    "ship": {"white": 0.45, "grey": 0.25, "red": 0.2, "yellow": 0.1},
    "storage tank": {"white": 0.55, "grey": 0.3, "green": 0.15},
    "airplane": {"white": 0.7, "grey": 0.3},
    "sports field": {"green": 0.5, "blue": 0.3, "red": 0.2},
    "tree clump": {},
}
_TREE_RGB = (46, 80, 40)

CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {
    "building": ("building", "house", "roof"),
    "vehicle": ("vehicle", "car"),
    "ship": ("ship", "boat", "vessel"),
    "storage tank": ("storage tank", "oil tank", "tank"),
    "airplane": ("airplane", "plane", "aircraft"),
    "sports field": ("sports field", "playing field", "sports ground"),
    "tree clump": ("tree clump", "group of trees", "clump of trees"),
}
_AXIS_CATEGORIES = ("building", "vehicle", "ship", "sports field")
_HEADING_CATEGORIES = ("ship", "airplane")
_REGIONS_IN = ("road", "parking lot", "apron")  # regions a vehicle can be "in" / "on"
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
_T_COLOUR_BUILDING = ("the building with a {c} roof", "the house with the {c} roof")
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

Spec = tuple[Any, ...]
Chooser = Callable[[Sequence[str]], str]

_YES, _MAYBE, _NO = 1, 0, -1


# ---------------------------------------------------------------------------------------------------------
# Scene data
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SceneObject:
    """One object of a scene.

    Attributes:
        category: one of :data:`CATEGORIES`.
        mask: bool (H, W): the pixels this object occupies in the final image.
        color: colour name (key of :data:`COLOURS`) or ``None`` (tree clumps).
        rgb: base colour it is painted with (a flat render paints exactly this colour on ``mask``).
        area: number of mask pixels.
        bbox: ``(x0, y0, x1, y1)``, exclusive upper bounds.
        centroid: ``(x, y)`` of the mask, pixel-centre coordinates.
        axis_angle: direction of the mask's principal axis in degrees, [0, 180), 0 = horizontal, 90 = vertical
            (image y points down).
        elongation: ratio of the principal axes' standard deviations (1 for a disc).
        heading: nose direction in degrees [0, 360) (0 = right, 90 = down) for ships / airplanes, else None.
        style: drawing variant ("gable", "flat", "soccer", "truck", ...).
    """

    category: str
    mask: np.ndarray
    color: str | None
    rgb: tuple[int, int, int]
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    axis_angle: float
    elongation: float
    heading: float | None
    style: str


@dataclass
class Scene:
    """A generated scene: the RGB image, its objects (in painting order) and its land-use regions.

    ``regions`` maps region names ("road", "parking lot", "apron", and the water kind "sea" / "river" /
    "lake") to bool (H, W) masks; only regions present in the scene are listed.
    """

    size: int
    image: np.ndarray
    objects: list[SceneObject]
    regions: dict[str, np.ndarray]
    scene_type: str
    water_kind: str | None = None

    def label_map(self) -> np.ndarray:
        """int32 (H, W): index of the object owning each pixel, -1 for background."""
        label = np.full((self.size, self.size), -1, dtype=np.int32)
        for i, obj in enumerate(self.objects):
            label[obj.mask] = i
        return label


# ---------------------------------------------------------------------------------------------------------
# Raster helpers
# ---------------------------------------------------------------------------------------------------------


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation with a (2r+1)² square (pixels outside the array count as background)."""
    out = mask.copy()
    if r <= 0:
        return out
    for axis in (0, 1):
        src = out.copy()
        for k in range(1, r + 1):
            if axis == 0:
                out[k:] |= src[:-k]
                out[:-k] |= src[k:]
            else:
                out[:, k:] |= src[:, :-k]
                out[:, :-k] |= src[:, k:]
    return out


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion with a (2r+1)² square (pixels outside the array do not erode)."""
    return ~_dilate(~mask, r)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise in roughly [0, 1]: a random (cells+1)² grid upsampled bicubically."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    im = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.float32)


def _boundary(mask: np.ndarray, outside: bool = True) -> np.ndarray:
    """Pixels of ``mask`` with an 8-neighbour outside it (``outside=False``: the array border is no edge)."""
    if not outside:
        return mask & ~_erode(mask, 1)
    padded = np.pad(mask, 1)
    return mask & ~_erode(padded, 1)[1:-1, 1:-1]


def _subsample(points: np.ndarray, k: int) -> np.ndarray:
    if len(points) <= k:
        return points
    idx = np.linspace(0, len(points) - 1, k).round().astype(np.int64)
    return points[idx]


def _polygon_mask(size: int, points: Sequence[tuple[float, float]]) -> np.ndarray:
    im = Image.new("L", (size, size), 0)
    ImageDraw.Draw(im).polygon([(float(x), float(y)) for x, y in points], fill=255)
    return np.asarray(im) > 0


def _rect_corners(
    cx: float, cy: float, theta: float, length: float, depth: float
) -> list[tuple[float, float]]:
    c, s = math.cos(theta), math.sin(theta)
    pts = []
    for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        u, v = du * length / 2, dv * depth / 2
        pts.append((cx + u * c - v * s, cy + u * s + v * c))
    return pts


def _frame_coords(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, theta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u along ``theta``, v across) of pixel centres relative to (cx, cy)."""
    dx, dy = x + 0.5 - cx, y + 0.5 - cy
    c, s = math.cos(theta), math.sin(theta)
    return dx * c + dy * s, -dx * s + dy * c


@dataclass
class _Shape:
    """A rasterised object in a local window: ``mask``/``u``/``v`` are (n, n) arrays at (y0, x0)."""

    y0: int
    x0: int
    mask: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def window(self) -> tuple[slice, slice]:
        h, w = self.mask.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


# ---- shape predicates: (u, v) -> bool mask (u along the object's heading / long axis)


def _rect_fn(length: float, width: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda u, v: (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def _l_shape_fn(
    length: float, width: float, wing_len: float, wing_w: float
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        main = (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)
        wing = (u >= length / 2 - wing_len) & (u <= length / 2) & (v >= 0) & (v <= width / 2 + wing_w)
        return main | wing

    return fn


def _disc_fn(radius: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda u, v: u * u + v * v <= radius * radius


def _stadium_fn(length: float, width: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    straight = (length - width) / 2

    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du = np.maximum(np.abs(u) - straight, 0.0)
        return du * du + v * v <= (width / 2) ** 2

    return fn


def _ship_fn(length: float, width: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        bow = np.sqrt(np.clip((length / 2 - u) / (0.3 * length), 0.0, 1.0))
        stern = 0.7 + 0.3 * np.clip((u + length / 2) / (0.08 * length), 0.0, 1.0)
        return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2 * np.minimum(bow, stern))

    return fn


def _airplane_fn(length: float, span: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    fuselage_w = 0.14 * length
    tail_half = 0.19 * span

    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        av = np.abs(v)
        nose = np.sqrt(np.clip((length / 2 - u) / (0.12 * length), 0.0, 1.0))
        body = (u >= -length / 2) & (u <= length / 2) & (av <= fuselage_w / 2 * nose)
        lead = 0.12 * length - 0.42 * av
        chord = 0.26 * length * (1 - 0.6 * av / (span / 2))
        wing = (av <= span / 2) & (u <= lead) & (u >= lead - chord)
        tail_lead = -0.34 * length - 0.3 * av
        tail_chord = 0.12 * length * (1 - 0.5 * av / tail_half)
        tail = (av <= tail_half) & (u <= tail_lead) & (u >= tail_lead - tail_chord)
        return body | wing | tail

    return fn


def _tree_fn(
    rng: np.random.Generator, radius: float
) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], float]:
    """A clump of overlapping crowns with a ragged outline; returns (fn, bounding radius)."""
    k = int(rng.integers(3, 8))
    crowns = []
    for _ in range(k):
        r = radius * rng.uniform(0.38, 0.62)
        a = rng.uniform(0, 2 * math.pi)
        d = rng.uniform(0, radius - r)
        crowns.append((d * math.cos(a), d * math.sin(a), r))
    bound = max(math.hypot(x, y) + r for x, y, r in crowns) + 1.5
    n = 2 * int(math.ceil(bound)) + 2
    ragged = rng.random((max(3, n // 4), max(3, n // 4)), dtype=np.float32)
    ragged_img = np.asarray(
        Image.fromarray(ragged).resize((n, n), Image.Resampling.BILINEAR), dtype=np.float32
    )

    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        field_ = np.full(u.shape, -1.0, dtype=np.float32)
        for x, y, r in crowns:
            field_ = np.maximum(field_, 1.0 - np.sqrt((u - x) ** 2 + (v - y) ** 2) / r)
        return field_ + 0.35 * (ragged_img[: u.shape[0], : u.shape[1]] - 0.5) > 0

    return fn, bound


# ---------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Placed:
    category: str
    shape: _Shape
    color: str | None
    rgb: np.ndarray
    heading: float | None
    height: float  # shadow length in pixels
    style: str
    dims: dict[str, float] = field(default_factory=dict)


@dataclass
class _Road:
    cx: float
    cy: float
    theta: float
    width: float


@dataclass
class _Lot:
    cx: float
    cy: float
    theta: float
    length: float
    depth: float
    stall_w: float
    stall_d: float
    rows: int


class _Layout:
    """Regions and objects of one scene, built with the layout generator only (no rendering)."""

    def __init__(self, rng: np.random.Generator, size: int, scene_type: str) -> None:
        self.rng = rng
        self.size = size
        self.s = size / 256.0
        self.scene_type = scene_type
        self.theta = 0.0 if rng.random() < 0.6 else math.radians(rng.uniform(-35, 35))
        z = np.zeros((size, size), dtype=bool)
        self.water = z.copy()
        self.road = z.copy()
        self.lot = z.copy()
        self.apron = z.copy()
        self.shore = z.copy()
        self.water_kind: str | None = None
        self.sea_side: str | None = None
        self.sea_depth = 0.0
        self.river_angle: Callable[[float, float], float] | None = None
        self.roads: list[_Road] = []
        self.lots: list[_Lot] = []
        self.apron_rect: tuple[float, float, float, float, float] | None = None
        self.objects: list[_Placed] = []
        self.occupied = z.copy()
        self.label = np.full((size, size), -1, dtype=np.int32)
        self.border = max(2, round(3 * self.s))
        self._allowed: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ---- water ---------------------------------------------------------------------------------------

    def add_sea(self) -> None:
        rng, size = self.rng, self.size
        side = _SIDES[int(rng.integers(4))]
        t = np.arange(size, dtype=np.float32) + 0.5
        depth = size * rng.uniform(0.26, 0.42)
        b = depth + 8 * self.s * np.sin(
            2 * math.pi * t / (size * rng.uniform(0.6, 1.4)) + rng.uniform(0, 6.3)
        )
        b = b + 4 * self.s * np.sin(2 * math.pi * t / (size * rng.uniform(0.15, 0.3)) + rng.uniform(0, 6.3))
        coord = np.arange(size, dtype=np.float32)[:, None] + 0.5  # distance from the side
        water = coord < b[None, :]  # rows: distance from the side, columns: along it
        if side == "top":
            self.water = water
        elif side == "bottom":
            self.water = water[::-1]
        elif side == "left":
            self.water = water.T.copy()
        else:
            self.water = water.T[:, ::-1].copy()
        self.water_kind, self.sea_side = "sea", side
        self.sea_depth = float(b.max())

    def add_river(self) -> None:
        rng, size = self.rng, self.size
        width = size * rng.uniform(0.13, 0.19)
        centre = size * rng.uniform(0.3, 0.7)
        amp = size * rng.uniform(0.03, 0.1)
        wavelength = size * rng.uniform(0.8, 1.6)
        phase = rng.uniform(0, 2 * math.pi)
        vertical = bool(rng.random() < 0.5)
        t = np.arange(size, dtype=np.float32) + 0.5
        line = centre + amp * np.sin(2 * math.pi * t / wavelength + phase)
        coord = np.arange(size, dtype=np.float32)[:, None] + 0.5
        water = np.abs(coord - line[None, :]) < width / 2  # rows across the river, columns along it
        self.water = water.T.copy() if vertical else water
        self.water_kind = "river"

        def angle(x: float, y: float) -> float:
            along = y if vertical else x
            slope = amp * 2 * math.pi / wavelength * math.cos(2 * math.pi * along / wavelength + phase)
            a = math.atan(slope)
            return math.pi / 2 - a if vertical else a

        self.river_angle = angle

    def add_lake(self, small: bool = False) -> None:
        rng, size = self.rng, self.size
        radius = size * (rng.uniform(0.14, 0.2) if small else rng.uniform(0.18, 0.27))
        cx, cy = (size * rng.uniform(0.25, 0.75) for _ in range(2))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        noise = _smooth_noise(rng, size, 5)
        self.water = np.hypot(xx - cx, yy - cy) / radius + 0.55 * (noise - 0.5) < 1.0
        self.water_kind = "lake"

    # ---- roads, lots, apron -------------------------------------------------------------------------

    def _road_mask(self, road: _Road) -> np.ndarray:
        far = 2 * self.size
        c, s = math.cos(road.theta), math.sin(road.theta)
        im = Image.new("L", (self.size, self.size), 0)
        ImageDraw.Draw(im).line(
            [(road.cx - far * c, road.cy - far * s), (road.cx + far * c, road.cy + far * s)],
            fill=255,
            width=max(2, round(road.width)),
        )
        return np.asarray(im) > 0

    def _try_road(self, road: _Road, avoid: np.ndarray | None) -> bool:
        mask = self._road_mask(road)
        if avoid is not None and (mask & avoid).any():
            return False
        if self.water_kind == "sea":  # no bridges over the sea
            mask &= ~self.water
        mask &= ~self.apron
        if mask.sum() < 4 * self.size * self.s:
            return False
        self.road |= mask
        self.roads.append(road)
        return True

    def add_grid_roads(self, n_along: int, n_across: int) -> None:
        """Roads parallel / perpendicular to the scene's grid angle (bridges cross rivers, not lakes)."""
        rng, size = self.rng, self.size
        avoid = self.water if self.water_kind == "lake" else None
        half = size / 2
        for family, count in ((0, n_along), (1, n_across)):
            theta = self.theta + family * math.pi / 2
            nx, ny = -math.sin(theta), math.cos(theta)
            offsets: list[float] = []
            for _ in range(count * 8):
                if len(offsets) >= count:
                    break
                off = size * rng.uniform(-0.38, 0.38)
                if any(abs(off - o) < 0.28 * size for o in offsets):
                    continue
                width = 18 * self.s * rng.uniform(0.9, 1.15)
                if self._try_road(_Road(half + off * nx, half + off * ny, theta, width), avoid):
                    offsets.append(off)

    def add_coastal_roads(self) -> None:
        """A road parallel to the coast on land and one leading to the water."""
        rng, size = self.rng, self.size
        assert self.sea_side is not None
        inland = self.sea_depth + size * rng.uniform(0.1, 0.2)
        along = size * rng.uniform(0.2, 0.8)
        width = 18 * self.s * rng.uniform(0.9, 1.15)
        side = self.sea_side
        if side in ("top", "bottom"):
            y = inland if side == "top" else size - inland
            roads = [_Road(size / 2, y, 0.0, width), _Road(along, size / 2, math.pi / 2, width)]
        else:
            x = inland if side == "left" else size - inland
            roads = [_Road(x, size / 2, math.pi / 2, width), _Road(size / 2, along, 0.0, width)]
        self.theta = 0.0
        for i, road in enumerate(roads):
            if i == 0 or rng.random() < 0.7:
                self._try_road(road, None)

    def add_apron(self) -> None:
        """An airport apron along one side of the image, with an access road along its inner edge."""
        rng, size, s = self.rng, self.size, self.s
        side = _SIDES[int(rng.integers(4))]
        depth = size * rng.uniform(0.5, 0.6)
        m = 6 * s
        if side == "top":
            box = (m, m, size - m, m + depth)
        elif side == "bottom":
            box = (m, size - m - depth, size - m, size - m)
        elif side == "left":
            box = (m, m, m + depth, size - m)
        else:
            box = (size - m - depth, m, size - m, size - m)
        x0, y0, x1, y1 = box
        self.apron = _polygon_mask(size, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        self.apron_rect = (x0, y0, x1, y1, 0.0)
        self.theta = 0.0
        width = 18 * s * rng.uniform(0.9, 1.1)
        gap = 6 * s + width / 2
        if side == "top":
            road = _Road(size / 2, y1 + gap, 0.0, width)
        elif side == "bottom":
            road = _Road(size / 2, y0 - gap, 0.0, width)
        elif side == "left":
            road = _Road(x1 + gap, size / 2, math.pi / 2, width)
        else:
            road = _Road(x0 - gap, size / 2, math.pi / 2, width)
        self._try_road(road, None)

    def add_parking_lot(self) -> None:
        """A parking lot beside a road, with one or two rows of stalls perpendicular to it."""
        rng, size, s = self.rng, self.size, self.s
        if not self.roads:
            return
        for _ in range(25):
            road = self.roads[int(rng.integers(len(self.roads)))]
            rows = int(rng.integers(1, 3))
            stall_w, stall_d = 12 * s, 19 * s
            n_stalls = int(rng.integers(4, 8))
            length = n_stalls * stall_w + 4 * s
            depth = rows * stall_d + 4 * s
            t = rng.uniform(-0.4, 0.4) * size
            sign = 1 if rng.random() < 0.5 else -1
            c, sn = math.cos(road.theta), math.sin(road.theta)
            off = sign * (road.width / 2 + 3 * s + depth / 2)
            cx = road.cx + t * c - off * sn
            cy = road.cy + t * sn + off * c
            corners = _rect_corners(cx, cy, road.theta, length, depth)
            if not all(4 <= x <= size - 4 and 4 <= y <= size - 4 for x, y in corners):
                continue
            mask = _polygon_mask(size, corners)
            if (mask & _dilate(self.water | self.road | self.lot | self.apron, 2)).any():
                continue
            self.lot |= mask
            self.lots.append(_Lot(cx, cy, road.theta, length, depth, stall_w, stall_d, rows))
            return

    def finish_regions(self) -> None:
        """Shore band, then the masks of where each kind of object may stand."""
        if self.water_kind is not None:
            band = max(1, round((4 if self.water_kind == "sea" else 2) * self.s))
            self.shore = _dilate(self.water, band) & ~self.water & ~self.road
        blocked = self.water | self.road | self.lot | self.apron | self.shore
        land = ~blocked
        self._allowed = {}
        self._allowed_src = {
            "building": _erode(land, max(1, round(3 * self.s))),
            "sports field": _erode(land, max(1, round(3 * self.s))),
            "storage tank": _erode(land, max(1, round(2 * self.s))),
            "tree clump": _erode(land, 1),
            "ship": _erode(self.water & ~_dilate(self.road, 1), max(1, round(2 * self.s))),
            "airplane": _erode(self.apron, max(1, round(2 * self.s))),
            "apron": self.apron,
            "road": self.road,
            "parking lot": self.lot,
        }

    def allowed(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._allowed:
            mask = self._allowed_src[name]
            self._allowed[name] = (mask, np.flatnonzero(mask))
        return self._allowed[name]

    # ---- object placement -----------------------------------------------------------------------------

    def _shape_at(
        self,
        cx: float,
        cy: float,
        theta: float,
        radius: float,
        fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> _Shape | None:
        n = 2 * int(math.ceil(radius)) + 2
        x0, y0 = int(math.floor(cx - radius)), int(math.floor(cy - radius))
        b = self.border
        if x0 < b or y0 < b or x0 + n > self.size - b or y0 + n > self.size - b:
            return None
        xs = np.arange(x0, x0 + n, dtype=np.float32)[None, :]
        ys = np.arange(y0, y0 + n, dtype=np.float32)[:, None]
        u, v = _frame_coords(xs, ys, cx, cy, theta)
        mask = fn(u, v)
        if not mask.any():
            return None
        return _Shape(y0, x0, mask, u, v)

    def _fits(self, shape: _Shape, allowed: np.ndarray) -> bool:
        win = shape.window
        return bool(allowed[win][shape.mask].all()) and not bool((self.occupied[win] & shape.mask).any())

    def _commit(self, placed: _Placed, margin: int) -> None:
        shape = placed.shape
        index = len(self.objects)
        self.objects.append(placed)
        self.label[shape.window][shape.mask] = index
        m = max(1, margin)
        h, w = shape.mask.shape
        padded = np.zeros((h + 2 * m, w + 2 * m), dtype=bool)
        padded[m : m + h, m : m + w] = shape.mask
        padded = _dilate(padded, m)
        ya, xa = shape.y0 - m, shape.x0 - m
        y_lo, x_lo = max(ya, 0), max(xa, 0)
        y_hi, x_hi = min(ya + h + 2 * m, self.size), min(xa + w + 2 * m, self.size)
        self.occupied[y_lo:y_hi, x_lo:x_hi] |= padded[y_lo - ya : y_hi - ya, x_lo - xa : x_hi - xa]

    def _colour(self, category: str) -> tuple[str | None, np.ndarray]:
        palette = _CATEGORY_COLOURS[category]
        if not palette:
            base, name = _TREE_RGB, None
        else:
            names = list(palette)
            p = np.array([palette[k] for k in names], dtype=np.float64)
            name = names[int(self.rng.choice(len(names), p=p / p.sum()))]
            base = COLOURS[name]
        jitter = self.rng.integers(-10, 11, size=3)
        return name, np.clip(np.array(base) + jitter, 0, 255).astype(np.float32)

    def _place(
        self,
        category: str,
        region: str,
        fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
        radius: float,
        theta_fn: Callable[[float, float], float],
        make: Callable[[_Shape, float], _Placed],
        margin: int,
        tries: int = 40,
        centre: tuple[float, float, float] | None = None,
    ) -> bool:
        """Rejection-sample a position (inside ``region``, clear of other objects) and commit the object."""
        allowed, points = self.allowed(region)
        if len(points) == 0:
            return False
        for _ in range(tries):
            if centre is None:
                idx = int(points[int(self.rng.integers(len(points)))])
                cy, cx = divmod(idx, self.size)
                cx, cy = cx + float(self.rng.random()), cy + float(self.rng.random())
            else:
                a = self.rng.uniform(0, 2 * math.pi)
                d = centre[2] * math.sqrt(float(self.rng.random()))
                cx, cy = centre[0] + d * math.cos(a), centre[1] + d * math.sin(a)
            theta = theta_fn(cx, cy)
            shape = self._shape_at(cx, cy, theta, radius, fn)
            if shape is not None and self._fits(shape, allowed):
                self._commit(make(shape, theta), margin)
                return True
        return False

    def _grid_theta(self, jitter_deg: float = 3.0, free: float = 0.0) -> Callable[[float, float], float]:
        rng = self.rng
        if rng.random() < free:
            angle = rng.uniform(0, math.pi)
            return lambda x, y: angle
        base = self.theta + (math.pi / 2 if rng.random() < 0.5 else 0.0)
        angle = base + math.radians(rng.normal(0, jitter_deg))
        return lambda x, y: angle

    def place_buildings(self, count: int, large: bool = False) -> None:
        rng, s = self.rng, self.s
        for _ in range(count):
            if large:
                length, width = s * rng.uniform(30, 54), s * rng.uniform(20, 32)
            else:
                length, width = s * rng.uniform(16, 36), s * rng.uniform(12, 22)
            width = min(width, length)
            if rng.random() < 0.2:
                wing_len, wing_w = length * rng.uniform(0.35, 0.55), width * rng.uniform(0.5, 0.9)
                fn = _l_shape_fn(length, width, wing_len, wing_w)
                radius = math.hypot(length / 2, width / 2 + wing_w) + 1
                style = "flat_l"
            else:
                fn, radius = _rect_fn(length, width), math.hypot(length, width) / 2 + 1
                style = "gable" if rng.random() < 0.55 and not large else "flat"
            name, rgb = self._colour("building")
            height = s * rng.uniform(2.5, 6.5) * (1.3 if large else 1.0)
            n_units = int(rng.integers(0, 4))
            dims = {"L": length, "W": width, "units": float(n_units)}

            def make(shape: _Shape, theta: float, name=name, rgb=rgb, height=height, style=style, dims=dims):
                return _Placed("building", shape, name, rgb, None, height, style, dims)

            self._place("building", "building", fn, radius, self._grid_theta(3.0, 0.15), make, round(3 * s))

    def place_tanks(self, count: int) -> None:
        rng, s = self.rng, self.s
        allowed, points = self.allowed("storage tank")
        if count <= 0 or len(points) == 0:
            return
        n_clusters = 1 if count <= 4 else 2
        per = [count // n_clusters + (1 if i < count % n_clusters else 0) for i in range(n_clusters)]
        for n in per:
            idx = int(points[int(rng.integers(len(points)))])
            cy, cx = divmod(idx, self.size)
            base_r = s * rng.uniform(6.5, 12.5)
            for _ in range(n):
                radius = float(np.clip(base_r * rng.uniform(0.7, 1.35), 6 * s, 15 * s))
                name, rgb = self._colour("storage tank")

                def make(shape: _Shape, theta: float, name=name, rgb=rgb, radius=radius):
                    return _Placed(
                        "storage tank", shape, name, rgb, None, 0.45 * radius, "tank", {"R": radius}
                    )

                self._place(
                    "storage tank",
                    "storage tank",
                    _disc_fn(radius),
                    radius + 1,
                    lambda x, y: 0.0,
                    make,
                    round(2 * s),
                    tries=30,
                    centre=(cx + 0.5, cy + 0.5, 45 * s),
                )

    def place_trees(self, count: int) -> None:
        rng, s = self.rng, self.s
        for _ in range(count):
            radius = s * rng.uniform(9, 17)
            fn, bound = _tree_fn(rng, radius)
            rgb = np.clip(np.array(_TREE_RGB) + rng.integers(-8, 9, size=3), 0, 255).astype(np.float32)
            height = s * rng.uniform(2.5, 4.5)

            def make(shape: _Shape, theta: float, rgb=rgb, height=height):
                return _Placed("tree clump", shape, None, rgb, None, height, "trees")

            self._place("tree clump", "tree clump", fn, bound, lambda x, y: 0.0, make, round(2 * s))

    def place_fields(self, count: int) -> None:
        rng, s = self.rng, self.s
        for _ in range(count):
            name, rgb = self._colour("sports field")
            if name == "green":
                length, width, style = s * rng.uniform(48, 62), s * rng.uniform(30, 38), "soccer"
                fn = _rect_fn(length, width)
            elif name == "blue":
                length, width, style = s * rng.uniform(28, 36), s * rng.uniform(16, 20), "tennis"
                fn = _rect_fn(length, width)
            else:
                length, width, style = s * rng.uniform(64, 80), s * rng.uniform(36, 44), "track"
                fn = _stadium_fn(length, width)
            radius = math.hypot(length, width) / 2 + 1
            dims = {"L": length, "W": width}

            def make(shape: _Shape, theta: float, name=name, rgb=rgb, style=style, dims=dims):
                return _Placed("sports field", shape, name, rgb, None, 0.0, style, dims)

            self._place("sports field", "sports field", fn, radius, self._grid_theta(2.0), make, round(4 * s))

    def place_ships(self, count: int) -> None:
        rng, s = self.rng, self.s
        big = self.water_kind == "sea"
        for _ in range(count):
            length = s * (rng.uniform(24, 50) if big else rng.uniform(20, 32))
            width = length * rng.uniform(0.24, 0.3)
            name, rgb = self._colour("ship")
            flip = math.pi if rng.random() < 0.5 else 0.0
            if self.river_angle is not None:
                river = self.river_angle
                jitter = math.radians(rng.normal(0, 4))

                def theta_fn(x: float, y: float, river=river, flip=flip, jitter=jitter) -> float:
                    return river(x, y) + flip + jitter
            else:
                angle = rng.uniform(0, 2 * math.pi)

                def theta_fn(x: float, y: float, angle=angle) -> float:
                    return angle

            dims = {"L": length, "W": width}

            def make(shape: _Shape, theta: float, name=name, rgb=rgb, dims=dims):
                return _Placed(
                    "ship", shape, name, rgb, math.degrees(theta) % 360, 1.2 * self.s, "ship", dims
                )

            self._place("ship", "ship", _ship_fn(length, width), length / 2 + 2, theta_fn, make, round(4 * s))

    def place_airplanes(self, count: int) -> None:
        rng, s = self.rng, self.s
        for _ in range(count):
            length = s * rng.uniform(32, 48)
            span = length * rng.uniform(0.9, 1.05)
            name, rgb = self._colour("airplane")
            if rng.random() < 0.7:
                angle = math.radians(90 * int(rng.integers(4)) + rng.normal(0, 4))
            else:
                angle = rng.uniform(0, 2 * math.pi)
            dims = {"L": length, "span": span}

            def make(shape: _Shape, theta: float, name=name, rgb=rgb, dims=dims):
                return _Placed(
                    "airplane", shape, name, rgb, math.degrees(theta) % 360, 2.5 * self.s, "jet", dims
                )

            self._place(
                "airplane",
                "airplane",
                _airplane_fn(length, span),
                math.hypot(length, span) / 2 + 1,
                lambda x, y, angle=angle: angle,
                make,
                round(4 * s),
            )

    def _vehicle(self) -> tuple[float, float, str | None, np.ndarray, str]:
        rng, s = self.rng, self.s
        if rng.random() < 0.2:
            length, width, style = s * rng.uniform(18, 24), s * rng.uniform(8, 9.5), "truck"
        else:
            length, width, style = s * rng.uniform(13, 17), s * rng.uniform(7, 8.5), "car"
        name, rgb = self._colour("vehicle")
        return length, width, name, rgb, style

    def _make_vehicle(
        self, length: float, width: float, name: str | None, rgb: np.ndarray, style: str
    ) -> Callable[[_Shape, float], _Placed]:
        def make(shape: _Shape, theta: float) -> _Placed:
            return _Placed(
                "vehicle",
                shape,
                name,
                rgb,
                math.degrees(theta) % 360,
                1.2 * self.s,
                style,
                {"L": length, "W": width},
            )

        return make

    def place_vehicles_on_roads(self, count: int) -> None:
        rng, size = self.rng, self.size
        if not self.roads:
            return
        allowed, _ = self.allowed("road")
        for _ in range(count):
            length, width, name, rgb, style = self._vehicle()
            fn, radius = _rect_fn(length, width), math.hypot(length, width) / 2 + 1
            make = self._make_vehicle(length, width, name, rgb, style)
            for _try in range(30):
                road = self.roads[int(rng.integers(len(self.roads)))]
                lane = 1 if rng.random() < 0.5 else -1
                t = rng.uniform(-0.75, 0.75) * size
                c, sn = math.cos(road.theta), math.sin(road.theta)
                off = lane * road.width / 4
                cx, cy = road.cx + t * c - off * sn, road.cy + t * sn + off * c
                theta = road.theta + (0.0 if lane > 0 else math.pi) + math.radians(rng.normal(0, 2))
                shape = self._shape_at(cx, cy, theta, radius, fn)
                if shape is not None and self._fits(shape, allowed):
                    self._commit(make(shape, theta), round(3 * self.s))
                    break

    def place_vehicles_in_lots(self, count: int) -> None:
        rng = self.rng
        allowed, _ = self.allowed("parking lot")
        slots = []
        for lot in self.lots:
            n = round((lot.length - 4 * self.s) / lot.stall_w)
            for row in range(lot.rows):
                for k in range(n):
                    u = -lot.length / 2 + 2 * self.s + lot.stall_w * (k + 0.5)
                    v = -lot.depth / 2 + 2 * self.s + lot.stall_d * (row + 0.5)
                    c, sn = math.cos(lot.theta), math.sin(lot.theta)
                    flip = math.pi if row == 1 else 0.0
                    slots.append(
                        (lot.cx + u * c - v * sn, lot.cy + u * sn + v * c, lot.theta + math.pi / 2 + flip)
                    )
        if not slots:
            return
        order = rng.permutation(len(slots))[:count]
        for i in order:
            cx, cy, theta = slots[int(i)]
            length, width, name, rgb, style = self._vehicle()
            length = min(length, 17 * self.s)
            fn, radius = _rect_fn(length, width), math.hypot(length, width) / 2 + 1
            theta += math.radians(rng.normal(0, 2))
            shape = self._shape_at(cx + rng.normal(0, 0.6), cy + rng.normal(0, 0.6), theta, radius, fn)
            if shape is not None and self._fits(shape, allowed):
                self._commit(self._make_vehicle(length, width, name, rgb, style)(shape, theta), 1)

    def place_vehicles_on_apron(self, count: int) -> None:
        for _ in range(count):
            length, width, name, rgb, style = self._vehicle()
            fn, radius = _rect_fn(length, width), math.hypot(length, width) / 2 + 1
            angle = math.radians(90 * int(self.rng.integers(4)) + self.rng.normal(0, 3))
            self._place(
                "vehicle",
                "apron",
                fn,
                radius,
                lambda x, y, angle=angle: angle,
                self._make_vehicle(length, width, name, rgb, style),
                round(3 * self.s),
            )


def _build_layout(rng: np.random.Generator, size: int, scene_type: str) -> _Layout:
    lay = _Layout(rng, size, scene_type)

    def n(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1))

    if scene_type == "urban":
        if rng.random() < 0.3:
            lay.add_lake(small=True)
        lay.add_grid_roads(n(1, 2), n(1, 2))
        if rng.random() < 0.65:
            lay.add_parking_lot()
        lay.finish_regions()
        lay.place_fields(int(rng.random() < 0.5))
        lay.place_buildings(n(6, 11))
        lay.place_tanks(n(0, 2))
        if lay.water_kind:
            lay.place_ships(n(2, 3))
        lay.place_trees(n(2, 5))
        lay.place_vehicles_in_lots(n(2, 5))
        lay.place_vehicles_on_roads(n(3, 6))
    elif scene_type == "harbour":
        lay.add_sea()
        lay.add_coastal_roads()
        if rng.random() < 0.4:
            lay.add_parking_lot()
        lay.finish_regions()
        lay.place_tanks(n(3, 7))
        lay.place_buildings(n(3, 6), large=rng.random() < 0.5)
        lay.place_ships(n(3, 6))
        lay.place_trees(n(0, 3))
        lay.place_vehicles_in_lots(n(1, 4))
        lay.place_vehicles_on_roads(n(2, 4))
    elif scene_type == "airport":
        lay.add_apron()
        lay.finish_regions()
        lay.place_airplanes(n(2, 5))
        lay.place_buildings(n(2, 4), large=True)
        lay.place_buildings(n(0, 2))
        lay.place_tanks(n(0, 3))
        lay.place_trees(n(1, 4))
        lay.place_vehicles_on_apron(n(2, 4))
        lay.place_vehicles_on_roads(n(1, 3))
    elif scene_type == "industrial":
        if rng.random() < 0.3:
            lay.add_river()
        lay.add_grid_roads(n(1, 2), n(0, 1))
        if rng.random() < 0.5:
            lay.add_parking_lot()
        lay.finish_regions()
        lay.place_tanks(n(4, 9))
        lay.place_buildings(n(3, 6), large=True)
        lay.place_buildings(n(0, 2))
        if lay.water_kind:
            lay.place_ships(n(2, 3))
        lay.place_trees(n(0, 3))
        lay.place_vehicles_in_lots(n(1, 4))
        lay.place_vehicles_on_roads(n(2, 5))
    elif scene_type == "rural":
        r = rng.random()
        if r < 0.5:
            lay.add_lake()
        elif r < 0.75:
            lay.add_river()
        lay.add_grid_roads(1, n(0, 1))
        lay.finish_regions()
        lay.place_fields(n(2, 3))
        lay.place_buildings(n(2, 5))
        if lay.water_kind:
            lay.place_ships(n(2, 4))
        lay.place_trees(n(4, 8))
        lay.place_vehicles_on_roads(n(2, 4))
    else:
        raise ValueError(f"unknown scene type {scene_type!r}; expected one of {SCENE_TYPES}")
    return lay


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------

_LAND_COLOURS: dict[str, tuple[int, int, int]] = {
    "grass": (92, 118, 64),
    "dark grass": (70, 96, 52),
    "dry grass": (136, 134, 92),
    "soil": (154, 132, 102),
    "concrete": (160, 158, 150),
}
_LAND_PALETTES: dict[str, tuple[str, ...]] = {
    "urban": ("concrete", "grass", "dry grass"),
    "harbour": ("concrete", "soil", "dry grass"),
    "airport": ("grass", "dry grass", "dark grass"),
    "industrial": ("soil", "concrete", "dry grass"),
    "rural": ("grass", "dark grass", "dry grass", "soil"),
}
_CROP_COLOURS = ((118, 140, 70), (150, 146, 92), (100, 126, 60), (166, 148, 108), (84, 112, 56))


def _render(lay: _Layout, rng: np.random.Generator, noise: bool) -> np.ndarray:
    size, s = lay.size, lay.s
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    # land cover: a soft mix of the palette, low-frequency patches, fine texture
    palette = np.array([_LAND_COLOURS[k] for k in _LAND_PALETTES[lay.scene_type]], dtype=np.float32)
    logits = np.stack([_smooth_noise(rng, size, int(rng.integers(2, 6))) for _ in palette]) * 7.0
    weights = np.exp(logits - logits.max(axis=0))
    weights /= weights.sum(axis=0)
    img = np.einsum("khw,kc->hwc", weights, palette)
    img *= (1 + 0.12 * (_smooth_noise(rng, size, max(4, size // 6)) - 0.5))[..., None]
    if lay.scene_type == "rural":  # agricultural parcels with furrows
        for _ in range(int(rng.integers(2, 6))):
            cx, cy = rng.uniform(0, size, 2)
            length, depth = rng.uniform(0.3, 0.6, 2) * size
            theta = lay.theta + (math.pi / 2 if rng.random() < 0.5 else 0.0)
            parcel = _polygon_mask(size, _rect_corners(cx, cy, theta, length, depth))
            py, px = np.nonzero(parcel)
            u, _v = _frame_coords(px.astype(np.float32), py.astype(np.float32), cx, cy, theta)
            colour = np.array(_CROP_COLOURS[int(rng.integers(len(_CROP_COLOURS)))], dtype=np.float32)
            furrows = 1 + 0.06 * np.sin(2 * math.pi * u / (4.5 * s))
            img[py, px] = 0.35 * img[py, px] + 0.65 * colour * furrows[:, None]

    # water, shallow margin, shore
    if lay.water.any():
        deep = np.array((30, 62, 84), dtype=np.float32)
        shallow = np.array((54, 98, 104), dtype=np.float32)
        near = _dilate(~lay.water, max(1, round(4 * s))) & lay.water
        var = (1 + 0.1 * (_smooth_noise(rng, size, 6) - 0.5))[..., None]
        water_rgb = np.where(near[..., None], shallow, deep) * var
        img[lay.water] = water_rgb[lay.water]
        sand = np.array((186, 172, 136), dtype=np.float32)
        img[lay.shore] = 0.25 * img[lay.shore] + 0.75 * sand

    # apron: concrete slabs with joints and yellow taxi lines
    if lay.apron.any():
        slab = 14 * s
        joints = (np.mod(xx, slab) < 0.9) | (np.mod(yy, slab) < 0.9)
        concrete = np.array((170, 170, 164), dtype=np.float32)
        apron_rgb = concrete * np.where(joints, 0.92, 1.0)[..., None]
        x0, y0, x1, y1, _ = lay.apron_rect  # type: ignore[misc]
        taxi = (np.abs(yy - (y0 + y1) / 2) < 0.8 * s) | (np.abs(xx - (x0 + x1) / 2) < 0.8 * s)
        apron_rgb[taxi] = (206, 182, 74)
        img[lay.apron] = apron_rgb[lay.apron]

    # parking lots: light asphalt with white stall lines
    for lot in lay.lots:
        mask = _polygon_mask(size, _rect_corners(lot.cx, lot.cy, lot.theta, lot.length, lot.depth))
        py, px = np.nonzero(mask)
        u, v = _frame_coords(px.astype(np.float32), py.astype(np.float32), lot.cx, lot.cy, lot.theta)
        lines = np.abs(np.mod(u + lot.length / 2 - 2 * s, lot.stall_w)) < 0.8
        lines &= np.abs(u) < lot.length / 2 - 2 * s + 0.5
        if lot.rows == 2:
            lines |= np.abs(v) < 0.6
        img[py, px] = np.where(lines[:, None], np.float32(215), np.array((112, 112, 114), dtype=np.float32))

    # roads: asphalt, bright kerbs, dashed centre line
    if lay.road.any():
        asphalt = np.array((86, 86, 90), dtype=np.float32)
        road_rgb = asphalt * (1 + 0.08 * (_smooth_noise(rng, size, 12) - 0.5))[..., None]
        img[lay.road] = road_rgb[lay.road]
        py, px = np.nonzero(lay.road)
        fy, fx = py.astype(np.float32), px.astype(np.float32)
        for road in lay.roads:
            u, v = _frame_coords(fx, fy, road.cx, road.cy, road.theta)
            dash = (np.abs(v) < 0.7 * s) & (np.mod(u, 12 * s) < 6 * s)
            img[py[dash], px[dash]] = (212, 208, 190)
        kerb = _boundary(lay.road, outside=False) & ~lay.water
        img[kerb] = img[kerb] * 0.5 + 70

    objects_any = lay.label >= 0
    if noise:  # shadows on the ground, away from the sun
        sun = rng.uniform(0, 2 * math.pi)
        shadow = np.zeros((size, size), dtype=bool)
        for obj in lay.objects:
            if obj.height <= 0:
                continue
            dy, dx = round(obj.height * math.sin(sun)), round(obj.height * math.cos(sun))
            h, w = obj.shape.mask.shape
            for k in range(1, 4):  # a swept shadow, not just a shifted copy
                oy, ox = obj.shape.y0 + round(dy * k / 3), obj.shape.x0 + round(dx * k / 3)
                y_lo, x_lo, y_hi, x_hi = max(oy, 0), max(ox, 0), min(oy + h, size), min(ox + w, size)
                if y_lo < y_hi and x_lo < x_hi:
                    shadow[y_lo:y_hi, x_lo:x_hi] |= obj.shape.mask[
                        y_lo - oy : y_hi - oy, x_lo - ox : x_hi - ox
                    ]
        shadow &= ~objects_any
        img[shadow] *= 0.55
        light = np.array((math.cos(sun + math.pi), math.sin(sun + math.pi)), dtype=np.float32)
    else:
        light = np.zeros(2, dtype=np.float32)

    for index, obj in enumerate(lay.objects):
        win = obj.shape.window
        local = lay.label[win] == index  # the object's visible pixels
        if not local.any():
            continue
        if noise:
            colours = _paint(obj, local, rng, light, s)
        else:
            colours = np.broadcast_to(obj.rgb, (int(local.sum()), 3))
        region = img[win]
        region[local] = colours

    if not noise:
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)
    img *= (1 + 0.08 * (_smooth_noise(rng, size, 2) - 0.5))[..., None]  # uneven illumination
    img *= (1 + rng.normal(0, 0.025, 3)).astype(np.float32)  # colour cast of the acquisition
    out = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    out = out.filter(ImageFilter.GaussianBlur(0.55))
    arr = np.asarray(out, dtype=np.float32)
    arr += 3.0 * rng.standard_normal((size, size, 1), dtype=np.float32)  # luminance grain
    arr += 1.5 * rng.standard_normal((size, size, 3), dtype=np.float32)  # chroma grain
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _paint(
    obj: _Placed, local: np.ndarray, rng: np.random.Generator, light: np.ndarray, s: float
) -> np.ndarray:
    """Textured colours of an object's visible pixels (n, 3)."""
    u, v = obj.shape.u[local], obj.shape.v[local]
    base = obj.rgb
    shade = np.ones(u.shape, dtype=np.float32)
    colour = np.broadcast_to(base, (u.size, 3)).astype(np.float32)
    edge_local = local & ~_erode(local, 1)
    edge = edge_local[local]
    c = obj.category
    if c == "building":
        if obj.style == "gable":
            shade *= np.where(v >= 0, 1.0, 0.8)
            shade *= np.where(np.abs(v) < 0.7, 1.08, 1.0)
        else:
            shade *= np.where(edge, 0.8, 1.0)
            for _ in range(int(obj.dims.get("units", 0))):
                uc = rng.uniform(-0.3, 0.3) * obj.dims["L"]
                vc = rng.uniform(-0.25, 0.25) * obj.dims["W"]
                unit = (np.abs(u - uc) < 1.5 * s) & (np.abs(v - vc) < 1.5 * s)
                shade *= np.where(unit, 0.72, 1.0)
        shade *= 1 + rng.normal(0, 0.03, u.shape).astype(np.float32)
    elif c == "vehicle":
        length, width = obj.dims["L"], obj.dims["W"]
        glass = (u > 0.12 * length) & (u < 0.3 * length) & (np.abs(v) < width / 2 - 0.8)
        rear = (u < -0.3 * length) & (u > -0.4 * length) & (np.abs(v) < width / 2 - 0.8)
        if obj.style == "truck":
            glass = (u > 0.3 * length) & (u < 0.38 * length) & (np.abs(v) < width / 2 - 0.8)
            rear = np.abs(u - 0.26 * length) < 0.6
        colour = np.where(glass[:, None], np.float32(40), colour)
        shade *= np.where(rear, 0.55, 1.0) * np.where(edge, 0.85, 1.0)
    elif c == "ship":
        length, width = obj.dims["L"], obj.dims["W"]
        cabin = (u > -0.42 * length) & (u < -0.12 * length) & (np.abs(v) < 0.3 * width)
        cabin_rgb = np.float32(150) if obj.color == "white" else np.float32(232)
        colour = np.where(cabin[:, None], cabin_rgb, colour)
        if length > 34 * s:
            hatch = (
                (u > -0.05 * length)
                & (u < 0.3 * length)
                & (np.mod(u, 4 * s) < 1.0)
                & (np.abs(v) < 0.3 * width)
            )
            shade *= np.where(hatch, 0.85, 1.0)
        shade *= np.where(edge, 0.78, 1.0)
    elif c == "storage tank":
        radius = obj.dims["R"]
        r = np.hypot(u, v) / radius
        shade *= 1 - 0.1 * r
        shade *= np.where(r > 1 - 1.4 / radius, 0.7, 1.0)
        shade *= np.where(np.abs(r - 0.55) < 0.6 / radius, 0.86, 1.0)
        shade *= 1 + 0.08 * (u * light[0] + v * light[1]) / radius
    elif c == "airplane":
        length, span = obj.dims["L"], obj.dims["span"]
        body = np.abs(v) < 0.07 * length
        shade *= np.where(body, 1.04, 0.95)
        engine = (np.abs(np.abs(v) - 0.28 * span / 2 * 1.6) < 1.2 * s) & (
            np.abs(u - (0.12 * length - 0.42 * 0.22 * span)) < 1.8 * s
        )
        colour = np.where(engine[:, None], np.float32(80), colour)
        cockpit = (u > 0.4 * length) & (u < 0.45 * length) & (np.abs(v) < 0.04 * length)
        shade *= np.where(cockpit, 0.5, 1.0) * np.where(edge, 0.9, 1.0)
    elif c == "sports field":
        length, width = obj.dims["L"], obj.dims["W"]
        white = np.float32(232)
        if obj.style == "soccer":
            shade *= np.where(np.mod(u, 10 * s) < 5 * s, 0.94, 1.04)
            line = (np.abs(u) > length / 2 - 1.8 * s) | (np.abs(v) > width / 2 - 1.8 * s) | (np.abs(u) < 0.6)
            line |= np.abs(np.hypot(u, v) - 0.16 * width) < 0.6
            colour = np.where(line[:, None], white, colour)
        elif obj.style == "tennis":
            margin = (np.abs(u) > length / 2 - 3 * s) | (np.abs(v) > width / 2 - 3 * s)
            colour = np.where(margin[:, None], np.array((70, 126, 86), dtype=np.float32), colour)
            line = (np.abs(np.abs(u) - (length / 2 - 3 * s)) < 0.6) | (
                np.abs(np.abs(v) - (width / 2 - 3 * s)) < 0.6
            )
            line &= (np.abs(u) <= length / 2 - 3 * s + 0.6) & (np.abs(v) <= width / 2 - 3 * s + 0.6)
            line |= (np.abs(u) < 0.6) & ~margin
            colour = np.where(line[:, None], white, colour)
        else:  # running track around a grass infield
            straight = (length - width) / 2
            du = np.maximum(np.abs(u) - straight, 0.0)
            rr = np.hypot(du, v)
            infield = rr < width / 2 - 7 * s
            colour = np.where(infield[:, None], np.array((74, 140, 66), dtype=np.float32), colour)
            lanes = (np.abs(rr - (width / 2 - 3 * s)) < 0.5) | (np.abs(rr - (width / 2 - 7 * s)) < 0.7)
            colour = np.where(lanes[:, None], white, colour)
    elif c == "tree clump":
        h, w = local.shape
        grain = _smooth_noise(rng, max(h, w), max(2, max(h, w) // 3))[:h, :w][local]
        speck = rng.random(u.shape, dtype=np.float32)
        shade *= 0.72 + 0.45 * grain + 0.18 * (speck - 0.5)
        shade *= 1 + 0.12 * np.clip((u * light[0] + v * light[1]) / (np.hypot(u, v).max() + 1), -1, 1)
        shade *= np.where(edge, 0.8, 1.0)
    return colour * shade[:, None]


# ---------------------------------------------------------------------------------------------------------
# Scene generation
# ---------------------------------------------------------------------------------------------------------


def generate_scene(
    rng: np.random.Generator, size: int = 256, *, scene_type: str | None = None, noise: bool = True
) -> Scene:
    """Draw one top-down scene.

    Args:
        rng: the only source of randomness (same state, same scene).
        size: side of the square image in pixels; object sizes scale with ``size / 256``.
        scene_type: one of :data:`SCENE_TYPES`, or ``None`` to draw one.
        noise: ``False`` renders the same layout with every object painted in its flat ``rgb`` (no texture,
            shadows, blur or sensor noise), which makes masks checkable against the image.

    Returns:
        A :class:`Scene`; object masks are disjoint and inside the image.
    """
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    if scene_type is None:
        scene_type = SCENE_TYPES[int(rng.choice(len(SCENE_TYPES), p=np.array(_SCENE_TYPE_WEIGHTS)))]
    render_rng = np.random.default_rng(rng.integers(0, 2**63))
    lay = _build_layout(rng, size, scene_type)
    image = _render(lay, render_rng, noise)

    objects = []
    for index, placed in enumerate(lay.objects):
        win = placed.shape.window
        local = lay.label[win] == index
        mask = np.zeros((size, size), dtype=bool)
        mask[win] = local
        ys, xs = np.nonzero(local)
        ys = ys + placed.shape.y0
        xs = xs + placed.shape.x0
        area = int(ys.size)
        if area == 0:
            continue
        cx, cy = float(xs.mean() + 0.5), float(ys.mean() + 0.5)
        cov = np.cov(np.stack([xs, ys]).astype(np.float64)) if area > 2 else np.eye(2)
        evals, evecs = np.linalg.eigh(cov)
        major = evecs[:, 1]
        axis = math.degrees(math.atan2(major[1], major[0])) % 180.0
        elong = math.sqrt(max(evals[1], 1e-9) / max(evals[0], 1e-9))
        objects.append(
            SceneObject(
                category=placed.category,
                mask=mask,
                color=placed.color,
                rgb=tuple(int(round(float(c))) for c in placed.rgb),  # type: ignore[arg-type]
                area=area,
                bbox=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                centroid=(cx, cy),
                axis_angle=axis,
                elongation=elong,
                heading=placed.heading if placed.category in _HEADING_CATEGORIES else None,
                style=placed.style,
            )
        )
    regions: dict[str, np.ndarray] = {}
    for name, mask in (("road", lay.road), ("parking lot", lay.lot), ("apron", lay.apron)):
        if mask.any():
            regions[name] = mask
    if lay.water_kind is not None and lay.water.any():
        regions[lay.water_kind] = lay.water
    return Scene(size, image, objects, regions, scene_type, lay.water_kind)


# ---------------------------------------------------------------------------------------------------------
# Referring expressions: predicates
# ---------------------------------------------------------------------------------------------------------


def _tri_lt(values: np.ndarray, threshold: float, margin: float) -> np.ndarray:
    """Three-valued ``values < threshold`` with an ambiguous band of ``margin`` either side."""
    return np.where(
        values < threshold - margin, _YES, np.where(values > threshold + margin, _NO, _MAYBE)
    ).astype(np.int8)


def _nearest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distance from each of ``points`` (n, 2) to the nearest of ``targets`` (m, 2)."""
    if len(targets) == 0:
        return np.full(len(points), np.inf)
    d2 = (points * points).sum(1)[:, None] + (targets * targets).sum(1)[None, :] - 2.0 * points @ targets.T
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


class _Facts:
    """Per-object measurements of a scene and the three-valued predicates over them."""

    def __init__(self, scene: Scene, min_target_area: float = 80.0) -> None:
        objs = scene.objects
        self.scene = scene
        self.n = len(objs)
        self.size = scene.size
        self.s = scene.size / 256.0
        self.category = np.array([o.category for o in objs], dtype=object)
        self.colour = np.array([o.color or "" for o in objs], dtype=object)
        self.cx = np.array([o.centroid[0] for o in objs], dtype=np.float64)
        self.cy = np.array([o.centroid[1] for o in objs], dtype=np.float64)
        self.area = np.array([o.area for o in objs], dtype=np.float64)
        bbox = np.array([o.bbox for o in objs], dtype=np.float64).reshape(-1, 4)
        self.x0, self.y0, self.x1, self.y1 = bbox.T
        self.axis = np.array([o.axis_angle for o in objs], dtype=np.float64)
        self.elong = np.array([o.elongation for o in objs], dtype=np.float64)
        self.heading = np.array([np.nan if o.heading is None else o.heading for o in objs], dtype=np.float64)
        self.min_area = min_target_area * self.s * self.s
        self.eligible = self.area >= self.min_area
        self.pos_margin = 0.045 * self.size
        self.pos_gap = 0.04 * self.size
        pts, owner = [], []
        for i, o in enumerate(objs):
            x0, y0, x1, y1 = o.bbox
            local = o.mask[y0:y1, x0:x1]
            ys, xs = np.nonzero(_boundary(local))
            p = _subsample(np.stack([xs + x0 + 0.5, ys + y0 + 0.5], axis=1), 24)
            pts.append(p)
            owner.append(np.full(len(p), i))
        self.points = np.concatenate(pts) if pts else np.zeros((0, 2))
        self.owner = np.concatenate(owner) if owner else np.zeros(0, dtype=np.int64)
        self._cache: dict[Spec, np.ndarray] = {}
        self._dist_cache: dict[Any, np.ndarray] = {}

    # ---- helpers ---------------------------------------------------------------------------------------

    def members(self, category: str) -> np.ndarray:
        return np.where(self.category == category, _YES, _NO).astype(np.int8)

    def count(self, category: str) -> int:
        return int((self.category == category).sum())

    def _min_per_object(self, d: np.ndarray) -> np.ndarray:
        out = np.full(self.n, np.inf)
        np.minimum.at(out, self.owner, d)
        return out

    def object_distance(self, j: int) -> np.ndarray:
        """Gap in pixels between every object's outline and object ``j``'s outline."""
        key = ("obj", j)
        if key not in self._dist_cache:
            pj = self.points[self.owner == j]
            self._dist_cache[key] = self._min_per_object(_nearest(self.points, pj))
        return self._dist_cache[key]

    def region_fraction(self, region: str) -> np.ndarray:
        key = ("frac", region)
        if key not in self._dist_cache:
            mask = self.scene.regions.get(region)
            frac = np.zeros(self.n)
            if mask is not None:
                for i, o in enumerate(self.scene.objects):
                    x0, y0, x1, y1 = o.bbox
                    frac[i] = (mask[y0:y1, x0:x1] & o.mask[y0:y1, x0:x1]).sum() / max(o.area, 1)
            self._dist_cache[key] = frac
        return self._dist_cache[key]

    def region_distance(self, region: str) -> np.ndarray:
        """Gap in pixels between every object's outline and the region (0 when they overlap)."""
        key = ("dist", region)
        if key not in self._dist_cache:
            mask = self.scene.regions.get(region)
            if mask is None or self.n == 0:
                dist = np.full(self.n, np.inf)
            else:
                ys, xs = np.nonzero(_boundary(mask, outside=False) if mask.sum() > 50 else mask)
                rp = _subsample(np.stack([xs + 0.5, ys + 0.5], axis=1).astype(np.float64), 400)
                dist = self._min_per_object(_nearest(self.points, rp))
                dist[self.region_fraction(region) > 0] = 0.0
            self._dist_cache[key] = dist
        return self._dist_cache[key]

    def side_value(self, side: str) -> np.ndarray:
        """Smaller = further towards ``side`` (or larger / smaller for the size orderings)."""
        return {
            "left": self.cx,
            "right": -self.cx,
            "top": self.cy,
            "bottom": -self.cy,
            "largest": -np.log(self.area),
            "smallest": np.log(self.area),
        }[side]

    def ordering_gap(self, ordering: str) -> float:
        return math.log(1.3) if ordering in ("largest", "smallest") else self.pos_gap

    @staticmethod
    def superlative(values: np.ndarray, members: np.ndarray, gap: float) -> np.ndarray:
        """YES for the member with the smallest value if every other candidate is at least ``gap`` behind."""
        out = np.full(values.shape, _NO, dtype=np.int8)
        cand = np.flatnonzero(members >= _MAYBE)
        if cand.size == 0:
            return out
        best = cand[np.argmin(values[cand])]
        close = cand[values[cand] - values[best] < gap]
        if close.size == 1 and members[best] == _YES:
            out[best] = _YES
        else:
            out[close] = _MAYBE
        return out

    @staticmethod
    def ordinal(values: np.ndarray, members: np.ndarray, k: int, gap: float) -> np.ndarray:
        """YES for the k-th smallest member when it is separated by ``gap`` from its neighbours in rank."""
        out = np.full(values.shape, _NO, dtype=np.int8)
        cand = np.flatnonzero(members >= _MAYBE)
        if (members[cand] == _MAYBE).any():
            out[cand] = _MAYBE
            return out
        if cand.size < k:
            return out
        order = cand[np.argsort(values[cand], kind="stable")]
        target = order[k - 1]
        ok = values[target] - values[order[k - 2]] >= gap
        if k < order.size:
            ok = ok and values[order[k]] - values[target] >= gap
        if ok:
            out[target] = _YES
        else:
            out[order[max(0, k - 2) : k + 1]] = _MAYBE
        return out

    def grid_cell(self, row: int, col: int) -> np.ndarray:
        third, m = self.size / 3, self.pos_margin

        def band(values: np.ndarray, index: int) -> np.ndarray:
            low = _tri_lt(values, third, m)
            high = -_tri_lt(values, 2 * third, m)
            if index == 0:
                return low
            if index == 2:
                return high.astype(np.int8)
            return np.minimum(-low, -high).astype(np.int8)

        return np.minimum(band(self.cy, row), band(self.cx, col))

    def half(self, side: str) -> np.ndarray:
        mid, m = self.size / 2, self.pos_margin
        if side == "left":
            return _tri_lt(self.cx, mid, m)
        if side == "right":
            return (-_tri_lt(self.cx, mid, m)).astype(np.int8)
        if side == "top":
            return _tri_lt(self.cy, mid, m)
        return (-_tri_lt(self.cy, mid, m)).astype(np.int8)

    def orientation(self, orient: str) -> np.ndarray:
        a = self.axis
        dist = {
            "horizontal": np.minimum(a, 180 - a),
            "vertical": np.abs(a - 90),
            "diagonal": np.minimum(np.abs(a - 45), np.abs(a - 135)),
        }[orient]
        by_angle = np.where(dist <= 12, _YES, np.where(dist >= 30, _NO, _MAYBE))
        by_shape = np.where(self.elong >= 1.6, _YES, np.where(self.elong < 1.15, _NO, _MAYBE))
        return np.minimum(by_angle, by_shape).astype(np.int8)

    def facing(self, direction: str) -> np.ndarray:
        diff = np.abs((self.heading - _HEADING_ANGLES[direction] + 180) % 360 - 180)
        out = np.where(diff <= 22, _YES, np.where(diff >= 42, _NO, _MAYBE))
        return np.where(np.isnan(self.heading), _NO, out).astype(np.int8)

    def direction_of(self, direction: str, j: int) -> np.ndarray:
        """Is each object to the ``direction`` of object j, roughly in its row / column?"""
        s = self.s
        pad, far = 6 * s, 18 * s
        if direction in ("left", "right"):
            if direction == "left":
                clear, wrong = self.x1 <= self.x0[j] + 1, self.cx >= self.cx[j]
            else:
                clear, wrong = self.x0 >= self.x1[j] - 1, self.cx <= self.cx[j]
            lo, hi, c, t_lo, t_hi = self.y0[j], self.y1[j], self.cy, self.y0, self.y1
        else:
            if direction == "above":
                clear, wrong = self.y1 <= self.y0[j] + 1, self.cy >= self.cy[j]
            else:
                clear, wrong = self.y0 >= self.y1[j] - 1, self.cy <= self.cy[j]
            lo, hi, c, t_lo, t_hi = self.x0[j], self.x1[j], self.cx, self.x0, self.x1
        along = np.where(clear, _YES, np.where(wrong, _NO, _MAYBE))
        in_band = (c >= lo - pad) & (c <= hi + pad)
        outside = (t_hi < lo - far) | (t_lo > hi + far)
        across = np.where(in_band, _YES, np.where(outside, _NO, _MAYBE))
        return np.minimum(along, across).astype(np.int8)

    # ---- spec evaluation ------------------------------------------------------------------------------

    def evaluate(self, spec: Spec) -> np.ndarray:
        """Three-valued truth (int8: 1 yes, 0 maybe, -1 no) of ``spec`` for every object."""
        if spec not in self._cache:
            self._cache[spec] = self._evaluate(spec)
        return self._cache[spec]

    def unique(self, spec: Spec) -> int | None:
        """The single object ``spec`` refers to, or None when it is not exactly one (or any is ambiguous)."""
        vals = self.evaluate(spec)
        if np.count_nonzero(vals == _YES) != 1 or np.count_nonzero(vals == _MAYBE):
            return None
        return int(np.argmax(vals))

    def _evaluate(self, spec: Spec) -> np.ndarray:
        kind = spec[0]
        if self.n == 0:
            return np.zeros(0, dtype=np.int8)
        if kind == "and":
            return np.minimum(self.evaluate(spec[1]), self.evaluate(spec[2]))
        cat = spec[1]
        members = self.members(cat)
        if kind == "cat":
            return members
        if kind == "colour":
            return np.minimum(members, np.where(self.colour == spec[2], _YES, _NO)).astype(np.int8)
        if kind == "grid":
            return np.minimum(members, self.grid_cell(spec[2], spec[3]))
        if kind == "half":
            return np.minimum(members, self.half(spec[2]))
        if kind == "extreme":
            return self.superlative(self.side_value(spec[2]), members, self.pos_gap)
        if kind == "size":
            return self.superlative(self.side_value(spec[2]), members, math.log(1.3))
        if kind == "size2":
            if self.count(cat) != 2:
                return np.where(members == _YES, _MAYBE, _NO).astype(np.int8)
            ordering = "largest" if spec[2] == "larger" else "smallest"
            return self.superlative(self.side_value(ordering), members, math.log(1.45))
        if kind == "sizeord":
            return self.ordinal(self.side_value(spec[2]), members, spec[3], math.log(1.25))
        if kind == "axis":
            return np.minimum(members, self.orientation(spec[2]))
        if kind == "heading":
            return np.minimum(members, self.facing(spec[2]))
        if kind == "ordinal":
            return self.ordinal(self.side_value(spec[2]), members, spec[3], self.pos_gap)
        if kind == "in_region":
            frac = self.region_fraction(spec[2])
            inside = np.where(frac >= 0.75, _YES, np.where(frac <= 0.25, _NO, _MAYBE))
            return np.minimum(members, inside).astype(np.int8)
        if kind == "region_near":
            if spec[2] not in self.scene.regions:
                return np.where(members == _YES, _MAYBE, _NO).astype(np.int8)
            d = np.log(self.region_distance(spec[2]) + 8 * self.s)
            return self.superlative(d if spec[3] == "closest" else -d, members, math.log(1.4))
        if kind in ("rel_dir", "rel_near"):
            anchor = self.unique(spec[3])
            if anchor is None or not self.eligible[anchor]:
                return np.where(members == _YES, _MAYBE, _NO).astype(np.int8)
            members = members.copy()
            members[anchor] = _NO
            if kind == "rel_dir":
                return np.minimum(members, self.direction_of(spec[2], anchor)).astype(np.int8)
            gap = self.object_distance(anchor)
            if spec[2] == "beside":
                near = np.where(gap <= 7 * self.s, _YES, np.where(gap >= 16 * self.s, _NO, _MAYBE))
                return np.minimum(members, near).astype(np.int8)
            d = np.log(gap + 8 * self.s)
            return self.superlative(d if spec[2] == "closest" else -d, members, math.log(1.4))
        if kind == "restricted":
            filtered = np.minimum(members, self.evaluate(spec[3]))
            return self.superlative(self.side_value(spec[2]), filtered, self.ordering_gap(spec[2]))
        raise ValueError(f"unknown spec kind {kind!r}")


_KIND_TYPES = {
    "cat": "category",
    "colour": "colour",
    "size": "size",
    "size2": "size",
    "sizeord": "size",
    "axis": "orientation",
    "heading": "orientation",
    "grid": "absolute_position",
    "half": "absolute_position",
    "extreme": "extreme_position",
    "ordinal": "ordinal",
    "and": "compound",
    "restricted": "compound",
    "rel_dir": "spatial_relation",
    "rel_near": "proximity",
    "region_near": "proximity",
    "in_region": "context",
}


@dataclass(frozen=True)
class Referral:
    """A verified referring description: ``spec`` is true of exactly ``object_index`` (see evaluate_spec).

    Spec shapes (``cat`` a category, ``side`` one of left/right/top/bottom)::

        ("cat", cat)                          ("colour", cat, colour)
        ("grid", cat, row, col)  3x3 cells    ("half", cat, side)
        ("extreme", cat, side)   leftmost...  ("ordinal", cat, side, k)      k-th from a side
        ("size", cat, "largest"|"smallest")   ("size2", cat, "larger"|"smaller")  two instances
        ("sizeord", cat, "largest"|"smallest", k)
        ("axis", cat, "horizontal"|"vertical"|"diagonal")   ("heading", cat, "up"|"down"|"left"|"right")
        ("in_region", cat, region)            ("region_near", cat, region, "closest"|"farthest")
        ("rel_dir", cat, "left"|"right"|"above"|"below", anchor_spec)
        ("rel_near", cat, "closest"|"farthest"|"beside", anchor_spec)
        ("and", colour_or_axis_spec, grid_or_half_spec)
        ("restricted", cat, ordering, filter_spec)   superlative among the objects matching the filter
    """

    object_index: int
    spec: Spec
    expression_type: str


def _simple_specs(facts: _Facts, cat: str) -> list[Spec]:
    n = facts.count(cat)
    specs: list[Spec] = [("cat", cat)]
    colours = sorted({str(c) for c in facts.colour[facts.category == cat] if c})
    specs += [("colour", cat, c) for c in colours]
    specs += [("grid", cat, r, c) for r in range(3) for c in range(3)]
    specs += [("half", cat, side) for side in _SIDES]
    if n >= 2:
        specs += [("extreme", cat, side) for side in _SIDES]
    if n == 2:
        specs += [("size2", cat, "larger"), ("size2", cat, "smaller")]
    if n >= 3:
        specs += [("size", cat, "largest"), ("size", cat, "smallest")]
        specs += [("ordinal", cat, side, k) for side in _SIDES for k in (2, 3) if k < n]
    if n >= 4:
        specs += [("sizeord", cat, "largest", 2), ("sizeord", cat, "smallest", 2)]
    if cat in _AXIS_CATEGORIES:
        specs += [("axis", cat, o) for o in _T_AXIS]
    if cat in _HEADING_CATEGORIES:
        specs += [("heading", cat, d) for d in _HEADING_PHRASES]
    regions = [r for r in facts.scene.regions]
    if cat == "vehicle":
        specs += [("in_region", cat, r) for r in _REGIONS_IN if r in regions]
    if n >= 2:
        specs += [("region_near", cat, r, w) for r in regions for w in ("closest", "farthest")]
    return specs


_ANCHOR_KINDS = ("cat", "colour", "size", "size2", "extreme")


def referring_candidates(
    scene: Scene, rng: np.random.Generator, max_anchors: int = 8, min_target_area: float = 80.0
) -> list[Referral]:
    """Every verified description the generator knows for the scene's objects.

    Targets and anchors must cover at least ``min_target_area`` pixels (at 256², scaled with the image
    area); smaller objects still count as distractors. Relational descriptions use up to ``max_anchors``
    anchor objects (drawn with ``rng``), each described by its own unique simple description.
    """
    facts = _Facts(scene, min_target_area)
    out: list[Referral] = []
    seen: set[Spec] = set()

    def add(spec: Spec) -> int | None:
        target = facts.unique(spec)
        if target is None or not facts.eligible[target]:
            return None
        if spec not in seen:
            seen.add(spec)
            out.append(Referral(target, spec, _KIND_TYPES[spec[0]]))
        return target

    present = [c for c in CATEGORIES if facts.count(c)]
    simple_target: dict[Spec, int | None] = {}
    for cat in present:
        for spec in _simple_specs(facts, cat):
            simple_target[spec] = add(spec)

    # anchors: objects with a short unique description of their own
    anchor_specs: list[Spec] = []
    by_object: dict[int, list[Spec]] = {}
    for spec, target in simple_target.items():
        if target is not None and spec[0] in _ANCHOR_KINDS:
            by_object.setdefault(target, []).append(spec)
    for j in sorted(by_object):
        options = by_object[j]
        anchor_specs.append(options[int(rng.integers(len(options)))])
    if len(anchor_specs) > max_anchors:
        keep = sorted(rng.choice(len(anchor_specs), max_anchors, replace=False).tolist())
        anchor_specs = [anchor_specs[i] for i in keep]

    for cat in present:
        if facts.count(cat) < 2:
            continue
        for anchor in anchor_specs:
            for direction in _T_DIRECTION:
                add(("rel_dir", cat, direction, anchor))
            for which in _T_NEAR:
                add(("rel_near", cat, which, anchor))

        # compounds: only where neither part alone singles out the object
        colours = sorted({str(c) for c in facts.colour[facts.category == cat] if c})
        positions: list[Spec] = [("grid", cat, r, c) for r in range(3) for c in range(3)]
        positions += [("half", cat, side) for side in _SIDES]
        firsts: list[Spec] = [("colour", cat, c) for c in colours]
        if cat in _AXIS_CATEGORIES:
            firsts += [("axis", cat, o) for o in _T_AXIS]
        for first in firsts:
            if simple_target.get(first) is not None or not (facts.evaluate(first) == _YES).any():
                continue
            for pos in positions:
                if simple_target.get(pos) is None:
                    add(("and", first, pos))
        filters: list[Spec] = [("colour", cat, c) for c in colours] + [("half", cat, s) for s in _SIDES]
        for flt in filters:
            if (facts.evaluate(flt) == _YES).sum() < 2:
                continue
            for ordering in _ORDERINGS:
                plain: Spec = (
                    ("size", cat, ordering)
                    if ordering in ("largest", "smallest")
                    else (
                        "extreme",
                        cat,
                        ordering,
                    )
                )
                spec = ("restricted", cat, ordering, flt)
                target = facts.unique(spec)
                if target is not None and facts.unique(plain) != target:
                    add(spec)
    return out


def evaluate_spec(scene: Scene, spec: Spec, min_target_area: float = 80.0) -> np.ndarray:
    """Three-valued truth of a description for every object of ``scene`` (int8: 1 yes, 0 maybe, -1 no).

    This is the predicate :func:`referring_candidates` verifies with (``min_target_area`` only matters for
    relations, whose anchor must be large enough).
    """
    return _Facts(scene, min_target_area).evaluate(spec)


# ---------------------------------------------------------------------------------------------------------
# Referring expressions: phrasing
# ---------------------------------------------------------------------------------------------------------


def _phrase(spec: Spec, choose: Chooser) -> str:
    kind = spec[0]
    if kind == "and":
        first, pos = spec[1], spec[2]
        cat = first[1]
        p = _position_phrase(pos, choose)
        if first[0] == "colour":
            return choose(_T_AND_COLOUR).format(c=first[2], n=choose(CATEGORY_NOUNS[cat]), p=p)
        return choose(_T_AND_AXIS).format(x=first[2], n=choose(CATEGORY_NOUNS[cat]), p=p)
    cat = spec[1]
    noun = choose(CATEGORY_NOUNS[cat])
    if kind == "cat":
        return choose(_T_CATEGORY).format(n=noun)
    if kind == "colour":
        templates = _T_COLOUR + _T_COLOUR_BUILDING if cat == "building" else _T_COLOUR
        return choose(templates).format(c=spec[2], n=noun)
    if kind in ("grid", "half"):
        return choose(_T_POSITION).format(n=noun, p=_position_phrase(spec, choose))
    if kind == "extreme":
        return choose(_T_EXTREME[spec[2]]).format(n=noun)
    if kind in ("size", "size2"):
        return choose(_T_SIZE[spec[2]]).format(n=noun)
    if kind == "sizeord":
        return choose(_T_SIZE_ORDINAL[spec[2]]).format(n=noun)
    if kind == "axis":
        return choose(_T_AXIS[spec[2]]).format(n=noun)
    if kind == "heading":
        return f"the {noun} {choose(_HEADING_PHRASES[spec[2]])}"
    if kind == "ordinal":
        return choose(_T_ORDINAL).format(o=_ORDINAL_WORDS[spec[3]], n=noun, s=spec[2])
    if kind == "in_region":
        return f"the {noun} {choose(_IN_REGION_PHRASES[spec[2]])}"
    if kind == "region_near":
        return choose(_T_NEAR[spec[3]]).format(n=noun, a=choose(_REGION_NOUNS[spec[2]]))
    if kind in ("rel_dir", "rel_near"):
        # anchors use the two plainest phrasings of each choice (no "closest to ..." inside "closest to ...")
        anchor = _phrase(spec[3], lambda options: choose(options[:2]))
        table = _T_DIRECTION if kind == "rel_dir" else _T_NEAR
        return choose(table[spec[2]]).format(n=noun, a=anchor)
    if kind == "restricted":
        word = choose(_SUPERLATIVE_WORDS[spec[2]])
        flt = spec[3]
        if flt[0] == "colour":
            return choose(_T_RESTRICTED_COLOUR).format(w=word, c=flt[2], n=noun)
        return choose(_T_RESTRICTED_HALF).format(w=word, n=noun, p=_position_phrase(flt, choose))
    raise ValueError(f"unknown spec kind {kind!r}")


def _position_phrase(spec: Spec, choose: Chooser) -> str:
    if spec[0] == "grid":
        return choose(_GRID_PHRASES[(spec[2], spec[3])])
    return choose(_HALF_PHRASES[spec[2]])


def render_expression(spec: Spec, rng: np.random.Generator) -> str:
    """One natural phrasing of ``spec`` (templates and synonyms drawn with ``rng``)."""
    return _phrase(spec, lambda options: options[int(rng.integers(len(options)))])


def _select_balanced(
    referrals: list[Referral], facts_category: np.ndarray, count: int, rng: np.random.Generator
) -> list[Referral]:
    """Up to ``count`` referrals with distinct targets, mixing expression types by :data:`_TYPE_WEIGHTS`.

    Targets whose category has several instances are preferred, and with probability 0.6 a new target is
    taken from a category already used in the image, so one image carries contrasting expressions.
    """
    counts = Counter(facts_category.tolist())
    by_type: dict[str, list[Referral]] = {t: [] for t in _TYPE_WEIGHTS}
    for r in referrals:
        by_type[r.expression_type].append(r)
    chosen: list[Referral] = []
    used_targets: set[int] = set()
    used_types: Counter[str] = Counter()
    for _ in range(count):
        types, weights = [], []
        for t, w in _TYPE_WEIGHTS.items():
            if any(r.object_index not in used_targets for r in by_type[t]):
                types.append(t)
                weights.append(w / (1 + 2 * used_types[t]))
        if not types:
            break
        p = np.array(weights) / sum(weights)
        t = types[int(rng.choice(len(types), p=p))]
        pool = [r for r in by_type[t] if r.object_index not in used_targets]
        crowded = [r for r in pool if counts[facts_category[r.object_index]] >= 2]
        pool = crowded or pool
        used_cats = {facts_category[r.object_index] for r in chosen}
        same = [r for r in pool if facts_category[r.object_index] in used_cats]
        if same and rng.random() < 0.6:
            pool = same
        pick = pool[int(rng.integers(len(pool)))]
        chosen.append(pick)
        used_targets.add(pick.object_index)
        used_types[t] += 1
    return chosen


def make_expressions(
    scene: Scene, rng: np.random.Generator, max_expressions: int | None = None, min_target_area: float = 80.0
) -> list[tuple[int, str, str]]:
    """Referring expressions for ``scene`` as ``(object_index, expression, expression_type)``.

    Every expression is verified to single out its object (see module docstring). With ``max_expressions``
    ``None`` all verified descriptions are returned (one phrasing each); otherwise a balanced selection of at
    most that many, each for a different object. ``min_target_area``: see :func:`referring_candidates`.
    """
    referrals = referring_candidates(scene, rng, min_target_area=min_target_area)
    if max_expressions is not None:
        categories = np.array([o.category for o in scene.objects], dtype=object)
        referrals = _select_balanced(referrals, categories, max_expressions, rng)
    out = []
    for r in referrals:
        text = render_expression(r.spec, rng)
        if rng.random() < 0.08 and text.startswith("the "):
            text = text[4:]
        out.append((r.object_index, text, r.expression_type))
    return out


# ---------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------


def _all_specs() -> list[Spec]:
    """Every simple / compound spec shape over all categories, and relational ones over sample anchors."""
    specs: list[Spec] = []
    anchors: list[Spec] = [
        ("cat", "airplane"),
        ("colour", "building", "white"),
        ("colour", "vehicle", "red"),
        ("size", "storage tank", "largest"),
        ("size2", "ship", "smaller"),
        ("extreme", "tree clump", "left"),
        ("colour", "sports field", "green"),
    ]
    for cat in CATEGORIES:
        specs.append(("cat", cat))
        specs += [("colour", cat, c) for c in _CATEGORY_COLOURS[cat]]
        specs += [("grid", cat, r, c) for r in range(3) for c in range(3)]
        specs += [("half", cat, side) for side in _SIDES]
        specs += [("extreme", cat, side) for side in _SIDES]
        specs += [("size", cat, w) for w in ("largest", "smallest")]
        specs += [("size2", cat, w) for w in ("larger", "smaller")]
        specs += [("sizeord", cat, w, 2) for w in ("largest", "smallest")]
        specs += [("ordinal", cat, side, k) for side in _SIDES for k in (2, 3)]
        if cat in _AXIS_CATEGORIES:
            specs += [("axis", cat, o) for o in _T_AXIS]
            specs += [("and", ("axis", cat, o), ("half", cat, side)) for o in _T_AXIS for side in _SIDES]
        if cat in _HEADING_CATEGORIES:
            specs += [("heading", cat, d) for d in _HEADING_PHRASES]
        if cat == "vehicle":
            specs += [("in_region", cat, r) for r in _REGIONS_IN]
        specs += [("region_near", cat, r, w) for r in _REGION_NOUNS for w in ("closest", "farthest")]
        for anchor in anchors:
            specs += [("rel_dir", cat, d, anchor) for d in _T_DIRECTION]
            specs += [("rel_near", cat, w, anchor) for w in _T_NEAR]
        for c in _CATEGORY_COLOURS[cat]:
            specs += [("and", ("colour", cat, c), ("grid", cat, r, cc)) for r in range(3) for cc in range(3)]
            specs += [("and", ("colour", cat, c), ("half", cat, side)) for side in _SIDES]
            specs += [("restricted", cat, o, ("colour", cat, c)) for o in _ORDERINGS]
        specs += [("restricted", cat, o, ("half", cat, side)) for o in _ORDERINGS for side in _SIDES]
    return specs


def expression_vocabulary() -> list[str]:
    """Sample sentences covering every word the expression templates can produce (tokenizer training).

    Each spec shape is phrased several times with a cycling chooser, so every option at every choice point
    (template, synonym, position phrase, anchor phrasing) appears at least once. Sorted, without duplicates.
    """
    groups: list[Sequence[str]] = [_T_CATEGORY, _T_COLOUR + _T_COLOUR_BUILDING, _T_POSITION, _T_ORDINAL]
    groups += [_T_AND_COLOUR, _T_AND_AXIS, _T_RESTRICTED_COLOUR, _T_RESTRICTED_HALF]
    for table in (
        CATEGORY_NOUNS,
        _GRID_PHRASES,
        _HALF_PHRASES,
        _T_EXTREME,
        _T_SIZE,
        _T_SIZE_ORDINAL,
        _T_AXIS,
    ):
        groups += list(table.values())
    for table in (
        _HEADING_PHRASES,
        _IN_REGION_PHRASES,
        _REGION_NOUNS,
        _T_NEAR,
        _T_DIRECTION,
        _SUPERLATIVE_WORDS,
    ):
        groups += list(table.values())
    longest = max(len(g) for g in groups)
    sentences: set[str] = set()
    for spec in _all_specs():
        for j in range(longest):
            sentences.add(_phrase(spec, lambda options, j=j: options[j % len(options)]))
    for s in list(sentences):  # the article may be dropped
        if s.startswith("the "):
            sentences.add(s[4:])
    return sorted(sentences)


# ---------------------------------------------------------------------------------------------------------
# Dataset writer
# ---------------------------------------------------------------------------------------------------------

_AREA_BINS = (0, 80, 200, 500, 1000, 2000, 4000)


def _assign_splits(num_images: int, splits: Sequence[float], seed: int) -> list[str]:
    names = ("train", "val", "test")
    if len(splits) != 3 or any(f < 0 for f in splits) or sum(splits) <= 0:
        raise ValueError(f"splits must be three non-negative fractions (train, val, test), got {splits}")
    fractions = np.array(splits, dtype=np.float64) / sum(splits)
    counts = [0, 0, 0]
    for k in (1, 2):
        counts[k] = int(round(num_images * fractions[k]))
        if fractions[k] > 0 and counts[k] == 0 and num_images >= 3:
            counts[k] = 1
    counts[0] = num_images - counts[1] - counts[2]
    if counts[0] < 0 or (fractions[0] > 0 and counts[0] == 0 and num_images >= 3):
        raise ValueError(f"cannot split {num_images} images as {splits}")
    labels = [names[k] for k in range(3) for _ in range(counts[k])]
    order = np.random.default_rng([seed, 0x5B117]).permutation(num_images)
    out = [""] * num_images
    for label, i in zip(labels, order.tolist()):
        out[i] = label
    return out


def _tokens(sentence: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", sentence.lower())


def _distribution(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    return {
        "min": float(a.min()),
        "p10": float(np.percentile(a, 10)),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
        "mean": round(float(a.mean()), 2),
    }


def _histogram(values: Sequence[float]) -> dict[str, int]:
    edges = list(_AREA_BINS) + [math.inf]
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        label = f">={lo}" if hi == math.inf else f"{lo}-{hi}"
        out[label] = int(sum(1 for v in values if lo <= v < hi))
    return out


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=4)


def generate_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int,
    size: int = 256,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    expressions_per_image: int = 4,
    write_rrsisd: bool = True,
    min_target_area: float = 80.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate and write a synthetic referring dataset; deterministic by ``seed`` (byte-identical files).

    Writes under ``out_dir``: ``images/<image_id>.png``, ``masks/<sample_id>.png`` (0/255, mode L),
    ``manifest.jsonl`` (our manifest, one record per expression), ``stats.json``,
    ``expression_types.json`` (sample id → one of :data:`EXPRESSION_TYPES`, for per-type evaluation),
    and — with ``write_rrsisd`` — the RRSIS-D layout under ``rrsisd_layout/``
    (``images/rrsisd/JPEGImages/*.jpg``, ``rrsisd/refs(unc).p``, ``rrsisd/instances.json`` with COCO
    RLE annotations of every object).
    Splits are by image. Image ``i`` depends only on ``(seed, i)``, so a larger dataset extends a smaller one
    (its split assignment aside).

    Args:
        seed: non-negative integer.
        splits: fractions of images for train / val / test (each non-zero split gets at least one image
            when there are three or more images).
        min_target_area: smallest referred object in pixels at 256² (scaled with the image area).
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        The statistics (also written to ``stats.json``); see :func:`format_stats`.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if expressions_per_image < 1:
        raise ValueError(f"expressions_per_image must be >= 1, got {expressions_per_image}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if write_rrsisd:
        jpeg_dir = out / "rrsisd_layout" / "images" / "rrsisd" / "JPEGImages"
        jpeg_dir.mkdir(parents=True, exist_ok=True)
        (out / "rrsisd_layout" / "rrsisd").mkdir(parents=True, exist_ok=True)
    split_of = _assign_splits(num_images, splits, seed)

    records: list[ManifestRecord] = []
    refs: list[dict[str, Any]] = []
    coco_images: list[dict[str, Any]] = []
    coco_annotations: list[dict[str, Any]] = []
    object_areas: list[float] = []
    target_areas: list[float] = []
    objects_per_category: Counter[str] = Counter()
    targets_per_category: Counter[str] = Counter()
    types: Counter[str] = Counter()
    type_of_sample: dict[str, str] = {}
    scene_types: Counter[str] = Counter()
    split_images: Counter[str] = Counter()
    split_samples: Counter[str] = Counter()
    words: Counter[str] = Counter()
    lengths: list[int] = []
    next_ann_id, next_ref_id, next_sent_id = 1, 0, 0

    for i in range(num_images):
        for attempt in range(20):
            rng = np.random.default_rng([seed, i, attempt])
            scene = generate_scene(rng, size)
            expressions = make_expressions(scene, rng, expressions_per_image, min_target_area)
            if expressions:
                break
        else:  # pragma: no cover - practically unreachable
            raise RuntimeError(f"image {i}: no referable object in 20 attempts")
        image_id, split = f"{i:06d}", split_of[i]
        image_rel = f"images/{image_id}.png"
        _save_png(scene.image, out / image_rel)
        scene_types[scene.scene_type] += 1
        split_images[split] += 1
        for obj in scene.objects:
            objects_per_category[obj.category] += 1
            object_areas.append(obj.area)

        ann_ids: dict[int, int] = {}
        if write_rrsisd:
            file_name = f"{image_id}.jpg"
            Image.fromarray(scene.image).save(jpeg_dir / file_name, format="JPEG", quality=95)
            coco_image_id = i + 1
            coco_images.append({"id": coco_image_id, "file_name": file_name, "height": size, "width": size})
            for k, obj in enumerate(scene.objects):
                rle = encode_rle(obj.mask)
                x0, y0, x1, y1 = obj.bbox
                coco_annotations.append(
                    {
                        "id": next_ann_id,
                        "image_id": coco_image_id,
                        "category_id": CATEGORY_IDS[obj.category],
                        "segmentation": rle,
                        "area": int(obj.area),
                        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                        "iscrowd": 0,
                    }
                )
                ann_ids[k] = next_ann_id
                next_ann_id += 1

        ref_of_target: dict[int, dict[str, Any]] = {}
        for k, (index, text, etype) in enumerate(expressions):
            obj = scene.objects[index]
            sample_id = f"{image_id}-{k}"
            mask_rel = f"masks/{sample_id}.png"
            _save_png(obj.mask.astype(np.uint8) * 255, out / mask_rel)
            records.append(
                ManifestRecord(
                    id=sample_id,
                    image=image_rel,
                    expression=text,
                    mask=mask_rel,
                    split=split,
                    category=obj.category,
                    image_id=image_id,
                )
            )
            types[etype] += 1
            type_of_sample[sample_id] = etype
            targets_per_category[obj.category] += 1
            target_areas.append(obj.area)
            split_samples[split] += 1
            toks = _tokens(text)
            words.update(toks)
            lengths.append(len(toks))
            if write_rrsisd:
                ref = ref_of_target.get(index)
                if ref is None:
                    ref = {
                        "ref_id": next_ref_id,
                        "ann_id": ann_ids[index],
                        "image_id": i + 1,
                        "split": split,
                        "sentences": [],
                        "sent_ids": [],
                        "category_id": CATEGORY_IDS[obj.category],
                        "file_name": file_name,
                    }
                    next_ref_id += 1
                    ref_of_target[index] = ref
                    refs.append(ref)
                ref["sentences"].append(
                    {"raw": text, "sent": " ".join(toks), "tokens": toks, "sent_id": next_sent_id}
                )
                ref["sent_ids"].append(next_sent_id)
                next_sent_id += 1
        if progress is not None:
            progress(i + 1, num_images)

    write_manifest(out / "manifest.jsonl", records)
    if write_rrsisd:
        root = out / "rrsisd_layout" / "rrsisd"
        with (root / "refs(unc).p").open("wb") as f:
            pickle.dump(refs, f, protocol=4)
        instances = {
            "images": coco_images,
            "annotations": coco_annotations,
            "categories": [{"id": CATEGORY_IDS[c], "name": c} for c in CATEGORIES],
        }
        (root / "instances.json").write_text(json.dumps(instances), encoding="utf-8")

    stats: dict[str, Any] = {
        "num_images": num_images,
        "num_samples": len(records),
        "size": size,
        "seed": seed,
        "splits": {
            s: {"images": split_images[s], "samples": split_samples[s]} for s in ("train", "val", "test")
        },
        "scene_types": {t: scene_types[t] for t in SCENE_TYPES},
        "categories": {
            c: {"objects": objects_per_category[c], "targets": targets_per_category[c]} for c in CATEGORIES
        },
        "expression_types": {t: types[t] for t in EXPRESSION_TYPES},
        "objects_per_image": round(len(object_areas) / num_images, 2),
        "object_area": _distribution(object_areas),
        "target_area": _distribution(target_areas),
        "target_area_histogram": _histogram(target_areas),
        "expression_words": _distribution(lengths),
        "vocabulary_size": len(words),
        "min_target_area": min_target_area,
        "rrsisd_layout": write_rrsisd,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    (out / "expression_types.json").write_text(json.dumps(type_of_sample, indent=0) + "\n", encoding="utf-8")
    return stats


def format_stats(stats: dict[str, Any]) -> str:
    """Human-readable summary of :func:`generate_dataset` statistics."""
    lines = [
        f"images: {stats['num_images']}  samples: {stats['num_samples']}  size: {stats['size']}  "
        f"seed: {stats.get('seed')}",
        "splits: "
        + ", ".join(f"{s} {v['images']} images / {v['samples']} samples" for s, v in stats["splits"].items()),
        "scene types: " + ", ".join(f"{k} {v}" for k, v in stats["scene_types"].items()),
        f"objects per image: {stats['objects_per_image']}",
        "categories (objects / referred):",
    ]
    for cat, v in stats["categories"].items():
        lines.append(f"  {cat:<14} {v['objects']:>7} / {v['targets']:>6}")
    total = max(1, sum(stats["expression_types"].values()))
    lines.append("expression types:")
    for t, v in stats["expression_types"].items():
        lines.append(f"  {t:<18} {v:>6}  {100 * v / total:5.1f}%")

    def dist(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in d.items()) if d else "-"

    lines.append(f"object area (px): {dist(stats['object_area'])}")
    lines.append(f"target area (px): {dist(stats['target_area'])}")
    lines.append(
        "target area histogram: " + ", ".join(f"{k}: {v}" for k, v in stats["target_area_histogram"].items())
    )
    lines.append(f"expression length (words): {dist(stats['expression_words'])}")
    lines.append(f"distinct words used: {stats['vocabulary_size']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def _run_cli(args: argparse.Namespace) -> int:
    if args.num_images < 1:
        print("error: --num-images must be >= 1", file=sys.stderr)
        return 2
    if args.size < 64:
        print("error: --size must be >= 64", file=sys.stderr)
        return 2
    if args.expressions_per_image < 1:
        print("error: --expressions-per-image must be >= 1", file=sys.stderr)
        return 2
    if args.seed < 0:
        print("error: --seed must be >= 0", file=sys.stderr)
        return 2
    start = time.perf_counter()
    step = max(1, args.num_images // 10)

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done % step == 0 or done == total):
            print(f"  {done}/{total} images ({time.perf_counter() - start:.1f} s)", file=sys.stderr)

    stats = generate_dataset(
        args.out,
        args.num_images,
        args.seed,
        size=args.size,
        expressions_per_image=args.expressions_per_image,
        write_rrsisd=not args.no_rrsisd,
        min_target_area=args.min_target_area,
        progress=progress,
    )
    print(format_stats(stats))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0
