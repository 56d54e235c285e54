"""One generated scene: its data (:class:`Scene`, :class:`SceneObject`), what each scene type contains
(:data:`_RECIPES`), and :func:`generate_scene`, which lays it out, renders it and measures every object.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .placement import _Placement
from .render import _render
from .vocabulary import _SCENE_TYPE_WEIGHTS, CATEGORY_TABLE, SCENE_TYPES


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


def _urban(lay: _Placement, rng: np.random.Generator, n: Callable[[int, int], int]) -> None:
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


def _harbour(lay: _Placement, rng: np.random.Generator, n: Callable[[int, int], int]) -> None:
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


def _airport(lay: _Placement, rng: np.random.Generator, n: Callable[[int, int], int]) -> None:
    lay.add_apron()
    lay.finish_regions()
    lay.place_airplanes(n(2, 5))
    lay.place_buildings(n(2, 4), large=True)
    lay.place_buildings(n(0, 2))
    lay.place_tanks(n(0, 3))
    lay.place_trees(n(1, 4))
    lay.place_vehicles_on_apron(n(2, 4))
    lay.place_vehicles_on_roads(n(1, 3))


def _industrial(lay: _Placement, rng: np.random.Generator, n: Callable[[int, int], int]) -> None:
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


def _rural(lay: _Placement, rng: np.random.Generator, n: Callable[[int, int], int]) -> None:
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


# What each scene type contains, in drawing order (every call draws from ``rng`` in this order).
_RECIPES: dict[str, Callable[[_Placement, np.random.Generator, Callable[[int, int], int]], None]] = {
    "urban": _urban,
    "harbour": _harbour,
    "airport": _airport,
    "industrial": _industrial,
    "rural": _rural,
}


def _build_layout(rng: np.random.Generator, size: int, scene_type: str) -> _Placement:
    lay = _Placement(rng, size, scene_type)
    if scene_type not in _RECIPES:
        raise ValueError(f"unknown scene type {scene_type!r}; expected one of {SCENE_TYPES}")

    def n(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1))

    _RECIPES[scene_type](lay, rng, n)
    return lay


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
                heading=placed.heading if CATEGORY_TABLE[placed.category].heading else None,
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
