"""The ``rs2sam2 synth`` command (rs2sam2.cli.synth): help and a run."""

from __future__ import annotations

import pytest
from PIL import Image

from rs2sam2.cli import main as cli_main
from rs2sam2.data.manifest import read_manifest

# ---- command line ----------------------------------------------------------------------------------------


def test_cli_help_and_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["synth", "--help"])
    assert exc.value.code == 0
    assert "--num-images" in capsys.readouterr().out

    out = tmp_path / "cli"
    assert cli_main(["synth", "--out", str(out), "--num-images", "3", "--seed", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "images: 3" in printed and "expression types" in printed
    assert len(list((out / "images").glob("*.png"))) == 3
    assert (out / "rrsisd_layout" / "rrsisd" / "instances.json").is_file()
    assert len(read_manifest(out / "manifest.jsonl")) >= 3

    out2 = tmp_path / "cli2"
    args = ["synth", "--out", str(out2), "--num-images", "2", "--seed", "2", "--size", "128", "--no-rrsisd"]
    assert cli_main([*args, "--quiet"]) == 0
    assert not (out2 / "rrsisd_layout").exists()
    with Image.open(next((out2 / "images").glob("*.png"))) as im:
        assert im.size == (128, 128)
    assert cli_main(["synth", "--out", str(out2), "--num-images", "0"]) == 2
