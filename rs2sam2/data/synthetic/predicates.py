"""Three-valued predicates over a scene's objects: is a description true of each object (yes / maybe / no)?

A description is a *spec*, a tuple such as ``("colour", "vehicle", "red")`` or ``("rel_dir", "ship",
"left", anchor_spec)`` (every shape is listed on :class:`.expressions.Referral`). :class:`_Facts` measures
every object once (centroid, box, area, principal axis, heading, outline points) and evaluates specs to
int8 arrays (1 yes, 0 maybe, -1 no); borderline values fall in a "maybe" band so that ambiguous
descriptions can be dropped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .shapes import _boundary, _subsample
from .vocabulary import _HEADING_ANGLES

if TYPE_CHECKING:
    from .scene import Scene

Spec = tuple[Any, ...]

_YES, _MAYBE, _NO = 1, 0, -1


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
