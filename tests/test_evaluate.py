"""Evaluation: metric conventions at both resolutions, the CLI's JSON/CSV/table, the shuffled-text control."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.cli import main
from rs2sam2.data.readers import open_dataset
from rs2sam2.data.synthetic import generate_dataset
from rs2sam2.evaluate import (
    CSV_COLUMNS,
    PAPER_RESULTS,
    derangement,
    evaluate,
    format_table,
    metrics_from_rows,
)
from rs2sam2.processing import RS2SAM2Processor
from rs2sam2.testing import make_test_tokenizer
from rs2sam2.training.checkpoint import save_model_folder

IMAGE_SIZE = 64
JSON_KEYS = {"mIoU", "oIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "num_samples"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> SimpleNamespace:
    """A random tiny model folder (with tokenizer); a 4-image synthetic dataset (4 train, 2 val, 2 test)."""
    root = tmp_path_factory.mktemp("eval_ws")
    tokenizer = make_test_tokenizer(root / "tokenizer", vocab_size=120)
    generate_dataset(
        root / "data", 4, seed=0, size=64, splits=(0.5, 0.25, 0.25), expressions_per_image=2,
        write_rrsisd=False,
    )  # fmt: skip
    d = RS2SAM2Config.from_preset("tiny").to_dict()
    d["image_size"] = IMAGE_SIZE
    d["union_encoder"]["vocab_size"] = 128
    config = RS2SAM2Config.from_dict(d)
    torch.manual_seed(0)
    processor = RS2SAM2Processor.from_pretrained(tokenizer, config)
    save_model_folder(RS2SAM2(config), processor, root / "model")
    return SimpleNamespace(root=root, data=root / "data", model=root / "model", processor=processor)


# ------------------------------------------------------------------------------- an oracle model
@dataclass
class _Out:
    logits: torch.Tensor


class _Oracle(nn.Module):
    """Reads the answer off the image: logits = normalised red channel of the S×S input (bright = mask)."""

    def __init__(self, config: RS2SAM2Config) -> None:
        super().__init__()
        self.config = config
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device and dtype

    def forward(self, sam_pixels, union_pixels, input_ids, attention_mask) -> _Out:
        return _Out(sam_pixels[:, :1])  # white (2.25) > 0.5 > dark (< -0.4)


def _oracle_items(shapes: list[tuple[int, int]]) -> list[dict]:
    """Non-square images whose bright pixels are exactly the mask; the last sample has an empty mask."""
    items = []
    for k, (h, w) in enumerate(shapes):
        mask = np.zeros((h, w), dtype=bool)
        if k < len(shapes) - 1:
            mask[h // 4 : h // 4 + h // 2, w // 8 : w // 8 + w // 3 + 4 * k] = True
        img = np.where(mask[..., None], 255, 60).astype(np.uint8).repeat(3, axis=2)
        items.append({"image": Image.fromarray(img), "mask": mask, "expression": f"the roof {k}",
                      "id": f"s{k}", "category": "building"})  # fmt: skip
    return items


def test_evaluate_official_and_native_resolution(ws):
    oracle = _Oracle(ws.processor.config)
    items = _oracle_items([(48, 40), (30, 52), (40, 40)])
    official, rows_o = evaluate(oracle, ws.processor, items, resolution="official")
    native, rows_n = evaluate(oracle, ws.processor, items, resolution="native")
    assert set(official) == JSON_KEYS and official["num_samples"] == 3
    for rows in (rows_o, rows_n):
        assert [r["id"] for r in rows] == ["s0", "s1", "s2"]
        assert list(rows[0]) == list(CSV_COLUMNS)
        assert all(r["IoU"] > 0.85 for r in rows[:2])
        assert rows[2]["U"] == 0 and rows[2]["IoU"] == 0.0  # empty union counts as IoU 0 (official)
    # Official: compared on the S×S grid (GT nearest-resized); native: at the GT's own size.
    for k, (h, w) in enumerate([(48, 40), (30, 52)]):
        gt_native = int(items[k]["mask"].sum())
        assert rows_n[k]["U"] >= gt_native
        assert rows_o[k]["U"] == pytest.approx(gt_native * IMAGE_SIZE**2 / (h * w), rel=0.15)
    # Two of three samples are right, the empty one scores 0: Pr@t = 66.67 %, mIoU ≈ 2/3 · 100.
    for m in (official, native):
        assert m["Pr@0.5"] == pytest.approx(200 / 3)
        assert 57 < m["mIoU"] <= 200 / 3
        assert m["oIoU"] > 85


def test_metrics_from_rows_pools_intersections_and_unions():
    rows = [{"I": 5, "U": 10}, {"I": 0, "U": 0}, {"I": 9, "U": 10}]
    m = metrics_from_rows(rows)
    assert m["oIoU"] == pytest.approx(100 * 14 / 20)
    assert m["mIoU"] == pytest.approx(100 * (0.5 + 0 + 0.9) / 3)
    assert m["Pr@0.5"] == pytest.approx(200 / 3) and m["Pr@0.9"] == pytest.approx(100 / 3)


# ----------------------------------------------------------------------------------------- derangement
@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_has_no_fixed_points_and_is_seeded(n):
    perm = derangement(n, seed=3)
    assert sorted(perm) == list(range(n))
    assert all(perm[i] != i for i in range(n))
    assert perm == derangement(n, seed=3)
    if n > 3:
        assert perm != derangement(n, seed=4)


def test_derangement_avoids_the_same_group_when_possible():
    groups = ["a"] * 3 + ["b"] * 2 + ["c"] * 4 + ["d"]
    for seed in range(20):
        perm = derangement(len(groups), seed=seed, groups=groups)
        assert sorted(perm) == list(range(len(groups)))
        assert all(groups[perm[i]] != groups[i] for i in range(len(groups)))
    with pytest.warns(UserWarning, match="same image"):
        perm = derangement(4, seed=0, groups=["a", "a", "a", "b"])
    assert all(perm[i] != i for i in range(4))
    with pytest.raises(ValueError):
        derangement(1, seed=0)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_writes_exact_json_keys_csv_and_the_paper_table(ws, tmp_path, capsys):
    out_json, out_csv = tmp_path / "m.json", tmp_path / "rows.csv"
    args = ["evaluate", "--model", str(ws.model), "--data", str(ws.data), "--split", "test",
            "--json", str(out_json), "--csv", str(out_csv), "--compare-paper", "refsegrs",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out_json.read_text())
    assert set(metrics) == JSON_KEYS
    assert metrics["num_samples"] == 2
    assert all(0.0 <= metrics[k] <= 100.0 for k in JSON_KEYS - {"num_samples"})
    with out_csv.open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    test = open_dataset(ws.data, "test")
    assert [r["id"] for r in rows] == [s.id for s in test.samples]
    assert [r["expression"] for r in rows] == [s.expression for s in test.samples]
    for r in rows:
        i, u = int(r["I"]), int(r["U"])
        assert float(r["IoU"]) == pytest.approx(i / u if u else 0.0)
    # The paper's layout, our row and the paper's RefSegRS test row beside it.
    header = next(line for line in printed.splitlines() if "Pr@0.5" in line)
    assert header.split()[1:] == ["Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "oIoU", "mIoU"]
    paper = next(line for line in printed.splitlines() if line.startswith("RS2-SAM2 paper (RefSegRS test)"))
    assert paper.split()[-7:] == ["84.31", "79.42", "70.89", "55.70", "21.19", "80.87", "73.90"]


def test_cli_shuffle_text_uses_a_derangement(ws, tmp_path):
    out_csv = tmp_path / "shuffled.csv"
    args = ["evaluate", "--model", str(ws.model), "--data", str(ws.data), "--split", "train",
            "--shuffle-text", "--csv", str(out_csv), "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    samples = {s.id: s for s in open_dataset(ws.data, "train").samples}
    by_text = {s.expression: s for s in samples.values()}
    assert len(by_text) == len(samples) == len(rows) == 4  # the expressions identify their sample
    used = [by_text[r["expression"]] for r in rows]
    assert sorted(s.id for s in used) == sorted(samples)  # a permutation of the split's sentences …
    for r, source in zip(rows, used):
        assert source.id != r["id"]  # … with no sample keeping its own sentence …
        assert source.image_id != samples[r["id"]].image_id  # … nor one of its image's sentences


def test_paper_rows_and_table_format():
    assert PAPER_RESULTS["rrsisd"]["test"]["mIoU"] == 66.72
    assert PAPER_RESULTS["refsegrs"]["val"]["oIoU"] == 88.03
    table = format_table([("ours", {"Pr@0.5": 50.0, "mIoU": float("nan")})])
    last = table.splitlines()[-1].split()
    assert last[0] == "ours" and last[1] == "50.00" and last[-1] == "–"


def test_cli_without_model_evaluates_the_bundled_model(ws, tmp_path, monkeypatch):
    """``rs2sam2 evaluate --data D`` loads the default model, as ``rs2sam2 predict`` does (its scores are
    the bundled model's business: only the run and the metrics' form are checked)."""
    from rs2sam2 import predictor

    loaded = []
    original = predictor.RS2SAM2Predictor.from_pretrained.__func__

    def record(cls, path_or_repo=None, **kwargs):
        loaded.append(path_or_repo)
        return original(cls, path_or_repo, **kwargs)

    monkeypatch.setattr(predictor.RS2SAM2Predictor, "from_pretrained", classmethod(record))
    out_json = tmp_path / "m.json"
    args = ["evaluate", "--data", str(ws.data), "--split", "test", "--json", str(out_json), "--device", "cpu",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert loaded == [None]  # None: RS2SAM2Predictor.from_pretrained's default, the bundled model
    metrics = json.loads(out_json.read_text())
    assert set(metrics) == JSON_KEYS and metrics["num_samples"] == 2
