"""Regions of one scene: water (sea, river, lake), roads, parking lots, an airport apron, the shore band,
and where each kind of object may stand. Objects are placed on top of this by :mod:`.placement`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .shapes import _dilate, _erode, _polygon_mask, _rect_corners, _smooth_noise
from .vocabulary import _SIDES


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
    """Regions of one scene (no objects, no rendering); ``theta`` is the angle of its street grid."""

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
        """Where objects of kind ``name`` may stand: (bool (H, W) mask, flat indices of its pixels)."""
        if name not in self._allowed:
            mask = self._allowed_src[name]
            self._allowed[name] = (mask, np.flatnonzero(mask))
        return self._allowed[name]
