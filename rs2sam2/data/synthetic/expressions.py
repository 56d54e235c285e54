"""Referring expressions that single out one object: candidate descriptions, the uniqueness check, and a
balanced selection per image.

:func:`referring_candidates` lists every description the generator knows for a scene (category, colour,
size, orientation and heading, absolute / extreme / ordinal position, compounds, relations to another
object or to a region) and keeps one only if its predicate (:mod:`.predicates`) is "yes" for exactly one
object and "no" for all others. :func:`make_expressions` phrases a balanced selection of them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .phrasing import render_expression
from .predicates import _YES, Spec, _Facts
from .scene import Scene
from .vocabulary import (
    _HEADING_PHRASES,
    _ORDERINGS,
    _SIDES,
    _T_AXIS,
    _T_DIRECTION,
    _T_NEAR,
    _TYPE_WEIGHTS,
    CATEGORIES,
    CATEGORY_TABLE,
)

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
    info = CATEGORY_TABLE[cat]
    if info.oriented:
        specs += [("axis", cat, o) for o in _T_AXIS]
    if info.heading:
        specs += [("heading", cat, d) for d in _HEADING_PHRASES]
    regions = [r for r in facts.scene.regions]
    specs += [("in_region", cat, r) for r in info.in_regions if r in regions]
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
        if CATEGORY_TABLE[cat].oriented:
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
