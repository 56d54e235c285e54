"""Procedural referring remote sensing benchmark: aerial-like scenes, referring expressions, dataset writer.

No real benchmark can be downloaded everywhere, so this package draws top-down scenes that read as remote
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
* ``rs2sam2 synth`` — the command line front end (:mod:`rs2sam2.cli.synth`).

Modules, in the order a scene is made: :mod:`.vocabulary` (categories as data tables, colours, phrase
templates), :mod:`.shapes` (raster helpers, shape primitives), :mod:`.layout` (regions: water, roads, lots,
apron), :mod:`.placement` (objects), :mod:`.render` (the image, one painter per category), :mod:`.scene`
(scene types, :func:`generate_scene`), :mod:`.predicates` (three-valued truth of a description),
:mod:`.expressions` (candidates, the uniqueness check, selection), :mod:`.phrasing` (templates to English),
:mod:`.dataset` (the dataset writer and its statistics).
"""

from .dataset import format_stats, generate_dataset, generate_image
from .expressions import Referral, evaluate_spec, make_expressions, referring_candidates
from .phrasing import expression_vocabulary, render_expression
from .scene import Scene, SceneObject, generate_scene
from .vocabulary import CATEGORIES, CATEGORY_IDS, CATEGORY_NOUNS, COLOURS, EXPRESSION_TYPES, SCENE_TYPES

__all__ = [
    "CATEGORIES",
    "CATEGORY_IDS",
    "CATEGORY_NOUNS",
    "COLOURS",
    "EXPRESSION_TYPES",
    "SCENE_TYPES",
    "Referral",
    "Scene",
    "SceneObject",
    "evaluate_spec",
    "expression_vocabulary",
    "format_stats",
    "generate_dataset",
    "generate_image",
    "generate_scene",
    "make_expressions",
    "referring_candidates",
    "render_expression",
]
