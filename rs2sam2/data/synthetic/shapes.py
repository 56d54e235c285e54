"""Raster helpers and the shape primitives objects are drawn from.

Morphology on boolean masks (square dilation / erosion, outlines), smooth value noise, polygons, and the
object frame: a shape predicate maps pixel-centre coordinates ``(u, v)`` in an object's frame (``u`` along
its heading / long axis) to a boolean mask, so one predicate rasterises a rectangle, L-shaped building,
disc, stadium, ship hull, airplane or tree clump at any position and angle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


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
