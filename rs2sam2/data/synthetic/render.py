"""Rendering a laid-out scene as an aerial-like RGB image.

Land cover (a soft mix of the scene type's palette, crop parcels in rural scenes), water with a shallow
margin and a sandy shore, the apron's concrete slabs and taxi lines, parking stalls, roads with kerbs and
centre lines, shadows away from the sun, then every object textured by its category's painter
(:data:`_PAINTERS`), and finally uneven illumination, a colour cast, blur and sensor grain. With
``noise=False`` objects are painted in their flat colour (no texture, shadows, blur or noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFilter

from .shapes import _boundary, _dilate, _erode, _frame_coords, _polygon_mask, _rect_corners, _smooth_noise

if TYPE_CHECKING:
    from .placement import _Placed, _Placement

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


def _render(lay: _Placement, rng: np.random.Generator, noise: bool) -> np.ndarray:
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
    paint = _PAINTERS.get(obj.category)
    if paint is not None:
        colour, shade = paint(_Pixels(obj, local, u, v, edge, colour, shade), rng, light, s)
    return colour * shade[:, None]


class _Pixels:
    """An object's visible pixels for a painter: frame coordinates ``u``/``v`` (n,), outline flags ``edge``
    (n,), the (n, 3) ``colour`` and (n,) ``shade`` to modify; ``local`` is the (h, w) visibility window."""

    def __init__(
        self,
        obj: _Placed,
        local: np.ndarray,
        u: np.ndarray,
        v: np.ndarray,
        edge: np.ndarray,
        colour: np.ndarray,
        shade: np.ndarray,
    ) -> None:
        self.obj, self.local, self.u, self.v, self.edge = obj, local, u, v, edge
        self.colour, self.shade = colour, shade


Painter = Callable[[_Pixels, np.random.Generator, np.ndarray, float], tuple[np.ndarray, np.ndarray]]


def _paint_building(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """Gable roofs: two slopes and a ridge; flat roofs: a dark parapet and rooftop units."""
    obj, u, v, shade = p.obj, p.u, p.v, p.shade
    if obj.style == "gable":
        shade *= np.where(v >= 0, 1.0, 0.8)
        shade *= np.where(np.abs(v) < 0.7, 1.08, 1.0)
    else:
        shade *= np.where(p.edge, 0.8, 1.0)
        for _ in range(int(obj.dims.get("units", 0))):
            uc = rng.uniform(-0.3, 0.3) * obj.dims["L"]
            vc = rng.uniform(-0.25, 0.25) * obj.dims["W"]
            unit = (np.abs(u - uc) < 1.5 * s) & (np.abs(v - vc) < 1.5 * s)
            shade *= np.where(unit, 0.72, 1.0)
    shade *= 1 + rng.normal(0, 0.03, u.shape).astype(np.float32)
    return p.colour, shade


def _paint_vehicle(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """Windscreen and rear window (a truck: cab window and the gap behind the cab)."""
    obj, u, v, shade = p.obj, p.u, p.v, p.shade
    length, width = obj.dims["L"], obj.dims["W"]
    glass = (u > 0.12 * length) & (u < 0.3 * length) & (np.abs(v) < width / 2 - 0.8)
    rear = (u < -0.3 * length) & (u > -0.4 * length) & (np.abs(v) < width / 2 - 0.8)
    if obj.style == "truck":
        glass = (u > 0.3 * length) & (u < 0.38 * length) & (np.abs(v) < width / 2 - 0.8)
        rear = np.abs(u - 0.26 * length) < 0.6
    colour = np.where(glass[:, None], np.float32(40), p.colour)
    shade *= np.where(rear, 0.55, 1.0) * np.where(p.edge, 0.85, 1.0)
    return colour, shade


def _paint_ship(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """A cabin at the stern, cargo hatches on long ships, a darker hull edge."""
    obj, u, v, shade = p.obj, p.u, p.v, p.shade
    length, width = obj.dims["L"], obj.dims["W"]
    cabin = (u > -0.42 * length) & (u < -0.12 * length) & (np.abs(v) < 0.3 * width)
    cabin_rgb = np.float32(150) if obj.color == "white" else np.float32(232)
    colour = np.where(cabin[:, None], cabin_rgb, p.colour)
    if length > 34 * s:
        hatch = (
            (u > -0.05 * length) & (u < 0.3 * length) & (np.mod(u, 4 * s) < 1.0) & (np.abs(v) < 0.3 * width)
        )
        shade *= np.where(hatch, 0.85, 1.0)
    shade *= np.where(p.edge, 0.78, 1.0)
    return colour, shade


def _paint_tank(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """A lit dome with a dark rim and a ring."""
    u, v, shade = p.u, p.v, p.shade
    radius = p.obj.dims["R"]
    r = np.hypot(u, v) / radius
    shade *= 1 - 0.1 * r
    shade *= np.where(r > 1 - 1.4 / radius, 0.7, 1.0)
    shade *= np.where(np.abs(r - 0.55) < 0.6 / radius, 0.86, 1.0)
    shade *= 1 + 0.08 * (u * light[0] + v * light[1]) / radius
    return p.colour, shade


def _paint_airplane(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """A lighter fuselage, two engines under the wings, a dark cockpit."""
    obj, u, v, shade = p.obj, p.u, p.v, p.shade
    length, span = obj.dims["L"], obj.dims["span"]
    body = np.abs(v) < 0.07 * length
    shade *= np.where(body, 1.04, 0.95)
    engine = (np.abs(np.abs(v) - 0.28 * span / 2 * 1.6) < 1.2 * s) & (
        np.abs(u - (0.12 * length - 0.42 * 0.22 * span)) < 1.8 * s
    )
    colour = np.where(engine[:, None], np.float32(80), p.colour)
    cockpit = (u > 0.4 * length) & (u < 0.45 * length) & (np.abs(v) < 0.04 * length)
    shade *= np.where(cockpit, 0.5, 1.0) * np.where(p.edge, 0.9, 1.0)
    return colour, shade


def _paint_soccer(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """Mown stripes, touch lines, halfway line and centre circle."""
    obj, u, v, shade = p.obj, p.u, p.v, p.shade
    length, width = obj.dims["L"], obj.dims["W"]
    shade *= np.where(np.mod(u, 10 * s) < 5 * s, 0.94, 1.04)
    line = (np.abs(u) > length / 2 - 1.8 * s) | (np.abs(v) > width / 2 - 1.8 * s) | (np.abs(u) < 0.6)
    line |= np.abs(np.hypot(u, v) - 0.16 * width) < 0.6
    return np.where(line[:, None], _WHITE, p.colour), shade


def _paint_tennis(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """A green margin around the court, its outline and the net."""
    obj, u, v, colour = p.obj, p.u, p.v, p.colour
    length, width = obj.dims["L"], obj.dims["W"]
    margin = (np.abs(u) > length / 2 - 3 * s) | (np.abs(v) > width / 2 - 3 * s)
    colour = np.where(margin[:, None], np.array((70, 126, 86), dtype=np.float32), colour)
    line = (np.abs(np.abs(u) - (length / 2 - 3 * s)) < 0.6) | (np.abs(np.abs(v) - (width / 2 - 3 * s)) < 0.6)
    line &= (np.abs(u) <= length / 2 - 3 * s + 0.6) & (np.abs(v) <= width / 2 - 3 * s + 0.6)
    line |= (np.abs(u) < 0.6) & ~margin
    return np.where(line[:, None], _WHITE, colour), p.shade


def _paint_track(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """A running track around a grass infield, with lane lines."""
    obj, u, v, colour = p.obj, p.u, p.v, p.colour
    length, width = obj.dims["L"], obj.dims["W"]
    straight = (length - width) / 2
    du = np.maximum(np.abs(u) - straight, 0.0)
    rr = np.hypot(du, v)
    infield = rr < width / 2 - 7 * s
    colour = np.where(infield[:, None], np.array((74, 140, 66), dtype=np.float32), colour)
    lanes = (np.abs(rr - (width / 2 - 3 * s)) < 0.5) | (np.abs(rr - (width / 2 - 7 * s)) < 0.7)
    return np.where(lanes[:, None], _WHITE, colour), p.shade


def _paint_trees(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """Crowns: smooth grain, specks, light from the sun's side, darker outline."""
    local, u, v, shade = p.local, p.u, p.v, p.shade
    h, w = local.shape
    grain = _smooth_noise(rng, max(h, w), max(2, max(h, w) // 3))[:h, :w][local]
    speck = rng.random(u.shape, dtype=np.float32)
    shade *= 0.72 + 0.45 * grain + 0.18 * (speck - 0.5)
    shade *= 1 + 0.12 * np.clip((u * light[0] + v * light[1]) / (np.hypot(u, v).max() + 1), -1, 1)
    shade *= np.where(p.edge, 0.8, 1.0)
    return p.colour, shade


_WHITE = np.float32(232)
_FIELD_PAINTERS: dict[str, Painter] = {
    "soccer": _paint_soccer,
    "tennis": _paint_tennis,
    "track": _paint_track,
}


def _paint_field(p: _Pixels, rng: np.random.Generator, light: np.ndarray, s: float):
    """Sports fields by style (the style follows from the field's colour, see placement)."""
    return _FIELD_PAINTERS.get(p.obj.style, _paint_track)(p, rng, light, s)


# The texture of each category.
_PAINTERS: dict[str, Painter] = {
    "building": _paint_building,
    "vehicle": _paint_vehicle,
    "ship": _paint_ship,
    "storage tank": _paint_tank,
    "airplane": _paint_airplane,
    "sports field": _paint_field,
    "tree clump": _paint_trees,
}
