"""``validate_dataset`` finds every planted problem; ``rs2sam2 data validate`` exit codes."""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rs2sam2.cli.data import add_cli_parser, data_subcommands
from rs2sam2.data.manifest import ManifestRecord, write_manifest
from rs2sam2.data.masks import encode_rle
from rs2sam2.data.validate import validate_dataset

from ..conftest import make_rrsisd

FG = np.array([[0, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 0]], np.uint8)  # (3, 4)


def _img(path: Path, size=(4, 3)) -> None:
    Image.new("RGB", size, (1, 2, 3)).save(path)


def _mask(path: Path, arr=FG) -> None:
    Image.fromarray(arr).save(path)


def make_clean_refsegrs(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in (1, 2, 3):
        _img(root / "images" / f"{i}.tif")
        _mask(root / "masks" / f"{i}.tif")
    for i, split in ((1, "train"), (2, "val"), (3, "test")):
        (root / f"output_phrase_{split}.txt").write_text(f"{i} the object\n")
    return root


def make_broken_refsegrs(root: Path) -> Path:
    make_clean_refsegrs(root)
    lines = ["1 fine one", "20 image is missing", "30 mask is missing", "40 image is garbage",
             "50 mask has another size", "60 mask is empty", "70 mask is garbage", "80 "]  # fmt: skip
    (root / "output_phrase_train.txt").write_text("\n".join(lines) + "\n")
    _mask(root / "masks" / "20.tif")
    _img(root / "images" / "30.tif")
    (root / "images" / "40.tif").write_bytes(b"not a tiff at all")
    _mask(root / "masks" / "40.tif")
    _img(root / "images" / "50.tif")
    _mask(root / "masks" / "50.tif", np.full((5, 5), 255, np.uint8))
    _img(root / "images" / "60.tif")
    _mask(root / "masks" / "60.tif", np.full((3, 4), 50, np.uint8))  # 50 is not > 50: empty
    _img(root / "images" / "70.tif")
    (root / "masks" / "70.tif").write_bytes(b"\x00\x01garbage")
    _img(root / "images" / "80.tif")
    _mask(root / "masks" / "80.tif")
    return root


def _by_kind(report) -> dict[str, set]:
    out: dict[str, set] = {}
    for p in report.problems:
        out.setdefault(p.kind, set()).add(p.sample_id)
    return out


def test_clean_refsegrs_is_ok(tmp_path):
    report = validate_dataset(make_clean_refsegrs(tmp_path / "rs"))
    assert report.ok, report.summary()
    assert report.layout == "refsegrs" and report.num_samples == 3


def test_every_planted_refsegrs_problem_is_found(tmp_path):
    report = validate_dataset(make_broken_refsegrs(tmp_path / "rs"), split="train")
    kinds = _by_kind(report)
    assert kinds == {
        "missing_file": {"20-0", "30-0"},
        "unreadable_image": {"40-0"},
        "size_mismatch": {"50-0"},
        "empty_mask": {"60-0"},
        "unreadable_mask": {"70-0"},
        "empty_expression": {"80-0"},
    }
    assert report.num_samples == 8 and not report.ok
    missing = {Path(p.path).name for p in report.problems if p.kind == "missing_file"}
    assert missing == {"20.tif", "30.tif"}
    assert report.counts()["missing_file"] == 2


def test_missing_phrase_file_reported(tmp_path):
    root = make_clean_refsegrs(tmp_path / "rs")
    (root / "output_phrase_val.txt").unlink()
    report = validate_dataset(root)
    assert [(p.kind, Path(p.path).name) for p in report.problems] == [
        ("missing_file", "output_phrase_val.txt")
    ]
    assert validate_dataset(root, split="train").ok


def test_rrsisd_problems(tmp_path):
    root = make_rrsisd(tmp_path / "rrsisd")
    report = validate_dataset(root, split="train")
    assert report.layout == "rrsisd" and report.num_samples == 5
    assert _by_kind(report) == {
        "size_mismatch": {"1-0"},
        "missing_file": {"2-0"},
        "empty_mask": {"3-0"},
        "missing_annotation": {"4-0"},
    }
    assert validate_dataset(root, split="test").ok


def test_rrsisd_index_problems(tmp_path):
    root = make_rrsisd(tmp_path / "rrsisd")
    (root / "rrsisd" / "instances.json").unlink()
    report = validate_dataset(root)
    assert [p.kind for p in report.problems] == ["missing_file"]
    assert "instances.json" in report.problems[0].path
    root2 = make_rrsisd(tmp_path / "evil")
    (root2 / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps([argparse.Namespace()]))
    report = validate_dataset(root2)
    assert [p.kind for p in report.problems] == ["unreadable_index"]
    assert "argparse.Namespace" in report.problems[0].message


def test_manifest_problems(tmp_path):
    _img(tmp_path / "a.png")
    full = np.zeros((3, 4), bool)
    full[1, 1] = True
    recs = [
        ManifestRecord("x", "a.png", "first", encode_rle(full), "train"),
        ManifestRecord("x", "a.png", "dup id", encode_rle(full), "train"),
        ManifestRecord("y", "missing.png", "no image", encode_rle(full), "val"),
        ManifestRecord("z", "a.png", "no mask", "masks/z.png", "val"),
    ]
    write_manifest(tmp_path / "manifest.jsonl", recs)
    report = validate_dataset(tmp_path)
    assert _by_kind(report) == {"duplicate_id": {"x"}, "missing_file": {"y", "z"}}
    assert validate_dataset(tmp_path / "manifest.jsonl", split="train").kinds() == {"duplicate_id"}
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    assert validate_dataset(tmp_path / "bad.jsonl").kinds() == {"unreadable_index"}


# ----------------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rs2sam2")
    add_cli_parser(parser.add_subparsers(dest="command"))
    return parser


def _run(argv) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_cli_exit_codes(tmp_path, capsys):
    clean = make_clean_refsegrs(tmp_path / "clean")
    broken = make_broken_refsegrs(tmp_path / "broken")
    assert _run(["data", "validate", str(clean)]) == 0
    out_json = tmp_path / "report.json"
    assert _run(["data", "validate", str(broken), "--split", "train", "--json", str(out_json)]) == 1
    data = json.loads(out_json.read_text())
    assert data["ok"] is False and data["counts"]["missing_file"] == 2 and data["num_samples"] == 8
    assert "unreadable_image" in capsys.readouterr().out
    assert _run(["data", "validate", str(tmp_path / "does-not-exist")]) == 2
    (tmp_path / "empty").mkdir()
    assert _run(["data", "validate", str(tmp_path / "empty")]) == 2
    assert "unknown dataset layout" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["data", "validate", str(clean), "--split", "training"])
    assert exc.value.code == 2
    assert _run(["data"]) == 2  # group without subcommand: help + usage error


def test_data_group_is_shared(tmp_path):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    other = data_subcommands(sub).add_parser("other")  # e.g. another module's ``data`` command
    other.set_defaults(func=lambda a: 0)
    add_cli_parser(sub)
    assert parser.parse_args(["data", "other"]).func(None) == 0
    assert parser.parse_args(["data", "validate", "x"]).root == "x"


def test_cli_main_entry_point(tmp_path):
    from rs2sam2.cli import main

    assert main(["data", "validate", str(make_clean_refsegrs(tmp_path / "rs"))]) == 0
