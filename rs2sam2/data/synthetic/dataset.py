"""Writing a synthetic dataset: scenes, expressions and masks in our manifest format (and the RRSIS-D
layout), deterministic by seed, with statistics.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..manifest import ManifestRecord, write_manifest
from ..masks import encode_rle, write_mask_png
from .expressions import make_expressions
from .scene import Scene, generate_scene
from .vocabulary import CATEGORIES, CATEGORY_IDS, EXPRESSION_TYPES, SCENE_TYPES

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
    """An RGB image as PNG (the compression level is part of the byte-identical output)."""
    Image.fromarray(array).save(path, format="PNG", compress_level=4)


def generate_image(
    seed: int, index: int, size: int, expressions_per_image: int, min_target_area: float
) -> tuple[Scene, list[tuple[int, str, str]]]:
    """Image ``index`` of the dataset of ``seed``: its scene and its expressions ``(object index, text,
    type)``. Depends only on these arguments, so any image of a dataset can be generated again alone."""
    for attempt in range(20):
        rng = np.random.default_rng([seed, index, attempt])
        scene = generate_scene(rng, size)
        expressions = make_expressions(scene, rng, expressions_per_image, min_target_area)
        if expressions:
            return scene, expressions
    raise RuntimeError(f"image {index}: no referable object in 20 attempts")  # pragma: no cover


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
        scene, expressions = generate_image(seed, i, size, expressions_per_image, min_target_area)
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
            write_mask_png(obj.mask, out / mask_rel)
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
