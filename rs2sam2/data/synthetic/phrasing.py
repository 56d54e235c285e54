"""Phrasing a spec as English: template and synonym choices, and the vocabulary of every phrasing.

:func:`render_expression` draws one phrasing with an rng; :func:`expression_vocabulary` phrases every spec
shape with a cycling chooser so that every template and synonym appears (tokenizer training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .predicates import Spec
from .vocabulary import (
    _GRID_PHRASES,
    _HALF_PHRASES,
    _HEADING_PHRASES,
    _IN_REGION_PHRASES,
    _ORDERINGS,
    _ORDINAL_WORDS,
    _REGION_NOUNS,
    _SIDES,
    _SUPERLATIVE_WORDS,
    _T_AND_AXIS,
    _T_AND_COLOUR,
    _T_AXIS,
    _T_CATEGORY,
    _T_COLOUR,
    _T_DIRECTION,
    _T_EXTREME,
    _T_NEAR,
    _T_ORDINAL,
    _T_POSITION,
    _T_RESTRICTED_COLOUR,
    _T_RESTRICTED_HALF,
    _T_SIZE,
    _T_SIZE_ORDINAL,
    CATEGORIES,
    CATEGORY_NOUNS,
    CATEGORY_TABLE,
)

Chooser = Callable[[Sequence[str]], str]


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
        return choose(_T_COLOUR + CATEGORY_TABLE[cat].colour_templates).format(c=spec[2], n=noun)
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
        info = CATEGORY_TABLE[cat]
        specs += [("colour", cat, c) for c in info.colours]
        specs += [("grid", cat, r, c) for r in range(3) for c in range(3)]
        specs += [("half", cat, side) for side in _SIDES]
        specs += [("extreme", cat, side) for side in _SIDES]
        specs += [("size", cat, w) for w in ("largest", "smallest")]
        specs += [("size2", cat, w) for w in ("larger", "smaller")]
        specs += [("sizeord", cat, w, 2) for w in ("largest", "smallest")]
        specs += [("ordinal", cat, side, k) for side in _SIDES for k in (2, 3)]
        if info.oriented:
            specs += [("axis", cat, o) for o in _T_AXIS]
            specs += [("and", ("axis", cat, o), ("half", cat, side)) for o in _T_AXIS for side in _SIDES]
        if info.heading:
            specs += [("heading", cat, d) for d in _HEADING_PHRASES]
        specs += [("in_region", cat, r) for r in info.in_regions]
        specs += [("region_near", cat, r, w) for r in _REGION_NOUNS for w in ("closest", "farthest")]
        for anchor in anchors:
            specs += [("rel_dir", cat, d, anchor) for d in _T_DIRECTION]
            specs += [("rel_near", cat, w, anchor) for w in _T_NEAR]
        for c in info.colours:
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
    groups: list[Sequence[str]] = [_T_CATEGORY, _T_POSITION, _T_ORDINAL]
    groups += [_T_COLOUR + c.colour_templates for c in CATEGORY_TABLE.values()]
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
