"""Objects of one scene: rejection-sampled positions inside the allowed regions, clear of each other.

:class:`_Placement` extends the regions of :class:`.layout._Layout` with the objects: one ``place_*``
method per kind of object draws its size, colour and angle, and commits its exact mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .layout import _Layout
from .shapes import (
    _airplane_fn,
    _dilate,
    _disc_fn,
    _frame_coords,
    _l_shape_fn,
    _rect_fn,
    _Shape,
    _ship_fn,
    _stadium_fn,
    _tree_fn,
)
from .vocabulary import _TREE_RGB, CATEGORY_TABLE, COLOURS


@dataclass
class _Placed:
    """An object as placed, before rendering: its shape, colour, heading (degrees), shadow height, drawing
    style and the dimensions its painter needs (``dims``)."""

    category: str
    shape: _Shape
    color: str | None
    rgb: np.ndarray
    heading: float | None
    height: float  # shadow length in pixels
    style: str
    dims: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _FieldKind:
    """A kind of sports field: its drawing style, size ranges at 256² (pixels) and outline."""

    style: str
    length: tuple[float, float]
    width: tuple[float, float]
    outline: Callable[[float, float], Callable[[np.ndarray, np.ndarray], np.ndarray]]


# The colour drawn for a sports field decides what it is: a grass pitch, a tennis court or a running track.
_FIELD_KINDS: dict[str, _FieldKind] = {
    "green": _FieldKind("soccer", (48, 62), (30, 38), _rect_fn),
    "blue": _FieldKind("tennis", (28, 36), (16, 20), _rect_fn),
    "red": _FieldKind("track", (64, 80), (36, 44), _stadium_fn),
}


class _Placement(_Layout):
    """Regions and objects of one scene, built with the layout generator only (no rendering)."""

    def __init__(self, rng: np.random.Generator, size: int, scene_type: str) -> None:
        super().__init__(rng, size, scene_type)
        self.objects: list[_Placed] = []
        self.occupied = np.zeros((size, size), dtype=bool)
        self.label = np.full((size, size), -1, dtype=np.int32)
        self.border = max(2, round(3 * self.s))

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
        palette = CATEGORY_TABLE[category].colours
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
            kind = _FIELD_KINDS[name]
            length, width, style = s * rng.uniform(*kind.length), s * rng.uniform(*kind.width), kind.style
            fn = kind.outline(length, width)
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
