"""benchmarks/grounding_probe.py: union encoder + prompt generator trained alone; peak-in-target on val."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rs2sam2.data.manifest import read_manifest
from rs2sam2.data.synthetic import CATEGORIES, COLOURS, generate_dataset, generate_image
from rs2sam2.training.positions import init_patch_positions, sincos_2d

from ..conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_probe_measures_where_the_pseudo_mask_peaks(tmp_path):
    """From the bundled model (one step at the warm-up's tiny learning rate) the pseudo-mask peaks on the
    target far more often than from random weights (measured on 600 val expressions: about 30 % against
    under 5 %); a union-encoder override changes the model it builds; the cache is written once."""
    probe = load_benchmark("grounding_probe")
    data = tmp_path / "scenes"
    generate_dataset(data, 24, seed=3, splits=(0.5, 0.5, 0), write_rrsisd=False)
    common = ["--data", str(data), "--samples", "8", "--batch-size", "8", "--eval-every", "1"]
    out = tmp_path / "bundled.jsonl"
    assert probe.main([*common, "--init", str(probe.default_model_dir()), "--out", str(out)]) == 0
    bundled = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in bundled] == [1, 1] and bundled[-1]["final"] is True
    assert (data / probe.CACHE_NAME).is_file()
    cached = (data / probe.CACHE_NAME).stat().st_mtime_ns
    scratch_out = tmp_path / "scratch.jsonl"
    assert probe.main([*common, "--union-encoder", '{"num_layers": 1}', "--out", str(scratch_out)]) == 0
    scratch = [json.loads(line) for line in scratch_out.read_text().splitlines()]
    assert (data / probe.CACHE_NAME).stat().st_mtime_ns == cached  # same grid: the cache is reused
    assert 0 <= scratch[-1]["peak"] <= 100 and 0 <= bundled[-1]["peak"] <= 100
    assert bundled[-1]["peak"] > scratch[-1]["peak"] + 10, (bundled, scratch)


def test_dense_labels_and_the_probe_options(tmp_path):
    """The dense labels mark the cells of every object's category and colour (checked against the scene
    generated again) and nothing on empty cells; a probe with sine-cosine positions and the dense loss runs
    and reports where the peak lies (on the target, on the named category)."""
    probe = load_benchmark("grounding_probe")
    g = probe.RS2SAM2Config.from_json(probe.default_model_dir() / "config.json").union_encoder.grid_size
    data = tmp_path / "scenes"
    stats = generate_dataset(data, 6, seed=5, splits=(0.5, 0.5, 0), write_rrsisd=False)
    scenes = probe.scene_labels(data, g)
    labels = scenes["cells"]
    assert labels.shape == (6, len(CATEGORIES) + len(COLOURS), g, g)
    scene, _ = generate_image(5, 2, stats["size"], 4, stats["min_target_area"])
    assert scenes["counts"][2].tolist() == [sum(o.category == c for o in scene.objects) for c in CATEGORIES]
    occupied = np.zeros((stats["size"],) * 2, bool)
    for obj in scene.objects:
        occupied |= obj.mask
        weights = np.zeros((g, g))
        cell = stats["size"] / g
        for yy, xx in zip(*np.nonzero(obj.mask), strict=True):
            weights[int(yy // cell), int(xx // cell)] += 1
        fullest = np.unravel_index(np.argmax(weights), weights.shape)
        assert labels[2, CATEGORIES.index(obj.category), fullest[0], fullest[1]] == 1
        if obj.color is not None:
            assert labels[2, len(CATEGORIES) + list(COLOURS).index(obj.color), fullest[0], fullest[1]] == 1

    def near_an_object(r: int, c: int) -> bool:  # the cell, one pixel wider on each side
        return occupied[
            int(r * cell) : int((r + 1) * cell) + 1, int(c * cell) : int((c + 1) * cell) + 1
        ].any()

    empty = [(r, c) for r in range(g) for c in range(g) if not near_an_object(r, c)]
    assert empty and all(labels[2, :, r, c].sum() == 0 for r, c in empty)
    assert (data / probe.DENSE_CACHE_NAME).is_file()

    out = tmp_path / "both.jsonl"
    common = [
        "--data",
        str(data),
        "--samples",
        "6",
        "--batch-size",
        "6",
        "--eval-every",
        "1",
        "--out",
        str(out),
    ]
    assert probe.main([*common, "--position-init", "sincos", "--dense-aux", "1.0"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[-1]["final"] is True and np.isfinite(records[0]["loss"])
    assert 0 <= records[-1]["peak"] <= records[-1]["peak_category"] <= 100  # the target is of its category
    assert 0 <= records[0]["train_peak"] <= 100 and "train_peak" not in records[-1]
    assert len(records[-1]["token_position_r2"]) == 2 and all(
        r <= 1 for r in records[-1]["token_position_r2"]
    )
    val = [r for r in read_manifest(data / "manifest.jsonl") if r.split == "val"]
    per_sample = [1 / scenes["counts"][int(r.image_id), CATEGORIES.index(r.category)] for r in val]
    assert records[-1]["chance"] == pytest.approx(100 * float(np.mean(per_sample)), abs=0.01)
    by_type = records[-1]["by_type"]  # from the dataset's expression_types.json: every val expression once
    assert sum(n for n, *_ in by_type.values()) == sum(
        r.split == "val" for r in read_manifest(data / "manifest.jsonl")
    )

    weights = tmp_path / "grounding.safetensors"
    assert probe.main([*common, "--save", str(weights)]) == 0
    saved = load_file(weights)
    assert {k.split(".")[0] for k in saved} == {"union_encoder", "prompt_generator"}
    assert saved["union_encoder.beit3.encoder.embed_positions.A.weight"].shape == (g * g + 3, 128)

    # --eval-only measures the starting model: the same figures as a run whose learning rate is 0
    bundled = ["--data", str(data), "--init", str(probe.default_model_dir()), "--batch-size", "6"]
    frozen, measured = tmp_path / "frozen.jsonl", tmp_path / "measured.jsonl"
    assert probe.main([*bundled, "--samples", "6", "--lr", "0", "--out", str(frozen)]) == 0
    assert probe.main([*bundled, "--eval-only", "--out", str(measured)]) == 0
    (only,) = [json.loads(line) for line in measured.read_text().splitlines()]
    last = json.loads(frozen.read_text().splitlines()[-1])
    assert only["step"] == 0 and only["final"] is True
    assert {k: only[k] for k in ("peak", "peak_category", "chance", "by_type")} == {
        k: last[k] for k in ("peak", "peak_category", "chance", "by_type")
    }


def test_position_geometry_tells_codes_from_a_random_table():
    probe = load_benchmark("grounding_probe")
    config = probe.RS2SAM2Config.from_json(probe.default_model_dir() / "config.json").union_encoder
    torch.manual_seed(0)
    union = probe.UnionEncoder(config)
    random_r2 = probe.position_geometry(union)
    init_patch_positions(union, "sincos")
    codes_r2 = probe.position_geometry(union)
    assert all(r > 0.99 for r in codes_r2), codes_r2
    assert all(r < 0.5 for r in random_r2), random_r2


def test_token_geometry_reads_positions_from_output_tokens():
    """Output tokens that carry sine-cosine codes (plus per-image noise) have a linear geometry at held-out
    positions and images; the same per-position vectors drawn at random have none, nor tokens without any
    position; a hand-made case: tokens equal to (row, column) give exactly 1."""
    probe = load_benchmark("grounding_probe")
    g, n, c = 14, 20, 64
    torch.manual_seed(0)
    noise = 0.1 * torch.randn(n, g * g, c)
    codes = sincos_2d(g, c).float()
    assert all(r > 0.95 for r in probe.token_geometry(codes[None] + noise))
    assert all(r < 0.3 for r in probe.token_geometry(torch.randn(g * g, c)[None] + noise))
    assert all(r < 0.05 for r in probe.token_geometry(torch.randn(n, 1, c).expand(n, g * g, c) + noise))
    coords = torch.stack([torch.arange(g * g) // g, torch.arange(g * g) % g], dim=1).float()
    exact = probe.token_geometry(coords[None].expand(n, g * g, 2).contiguous())
    assert exact == pytest.approx([1.0, 1.0], abs=2e-3)  # the ridge's λ = 1 shrinks a hair


def test_training_on_some_expression_types(tmp_path):
    """``--train-types`` keeps the training samples of those types and measures the val ones apart; an
    unknown type is a clear error. A run's ``peak_trained_types`` is the final record's per-type peak."""
    probe = load_benchmark("grounding_probe")
    splits = ["train", "val", "train", "val", "train", "val"]
    type_of = dict(enumerate(["colour", "colour", "size", "size", "colour", "ordinal"]))
    assert probe.split_indices(splits, type_of, "val", None) == ([0, 2, 4], [1, 3, 5], [1, 3, 5])
    assert probe.split_indices(splits, type_of, "val", ["colour"]) == ([0, 4], [1, 3, 5], [1])
    assert probe.split_indices(splits, type_of, "val", ["colour", "size"]) == ([0, 2, 4], [1, 3, 5], [1, 3])
    with pytest.raises(SystemExit, match="unknown expression types \\['colour_'\\]"):
        probe.split_indices(splits, type_of, "val", ["colour_"])
    with pytest.raises(SystemExit, match="no expressions of split 'test'"):
        probe.split_indices(splits, type_of, "test", None)

    data = tmp_path / "scenes"
    generate_dataset(data, 12, seed=4, splits=(0.5, 0.5, 0), write_rrsisd=False)
    types = json.loads((data / "expression_types.json").read_text())
    records = read_manifest(data / "manifest.jsonl")
    in_both = {types[r.id] for r in records if r.split == "train"} & {
        types[r.id] for r in records if r.split == "val"
    }
    trained = sorted(in_both, key=lambda t: -sum(types[r.id] == t for r in records if r.split == "train"))[0]
    out = tmp_path / "typed.jsonl"
    args = ["--data", str(data), "--samples", "4", "--batch-size", "4", "--eval-every", "1"]
    assert probe.main([*args, "--out", str(out), "--train-types", trained]) == 0
    first, last = (json.loads(line) for line in out.read_text().splitlines())
    assert first["peak_trained_types"] == last["by_type"][trained][1]  # the same weights, measured apart
    with pytest.raises(SystemExit, match="unknown expression types"):
        probe.main([*args, "--train-types", "no_such_type"])
    with pytest.raises(SystemExit, match="fewer than a batch of 1000"):
        probe.main([*args, "--batch-size", "1000"])
