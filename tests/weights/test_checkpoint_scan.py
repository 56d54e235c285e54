"""Pickled checkpoints are refused when they declare more tensor bytes than the file holds, before
``torch.load`` allocates them (legacy format, zip format, zip entries claiming a huge size)."""

from __future__ import annotations

import collections
import pickle
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from rs2sam2.training.checkpoint import load_checkpoint
from rs2sam2.weights.checkpoint_scan import DeclaredSizeError, check_declared_sizes, declared_bytes
from rs2sam2.weights.state_dict import CheckpointError, read_state_dict

STATE = {"a": torch.zeros(100, 10), "b": torch.ones(7, dtype=torch.float16), "c": torch.arange(5)}
STATE_BYTES = 100 * 10 * 4 + 7 * 2 + 5 * 8


def legacy_bomb(path: Path, numel: int) -> Path:
    """A legacy (non-zip) torch checkpoint whose one float tensor declares ``numel`` elements (4 bytes of
    data on disk): ``torch.load`` would allocate ``4 × numel`` bytes before reading them."""
    marker = object()

    class Tensor:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (
                marker,
                0,
                (numel,),
                (1,),
                False,
                collections.OrderedDict(),
            )

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is marker else None

    with path.open("wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)  # torch's legacy magic number
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": sys.byteorder == "little",
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)  # fmt: skip
        Pickler(f, protocol=2).dump({"w": Tensor()})
        pickle.dump(["0"], f, protocol=2)
        f.write(numel.to_bytes(8, "little") + b"\0" * 4)
    return path


def test_declared_bytes_of_real_checkpoints(tmp_path):
    torch.save(STATE, tmp_path / "zip.pt")
    torch.save(STATE, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"model": STATE, "epoch": 3}, tmp_path / "wrapped.pt")
    for name in ("zip.pt", "legacy.pt", "wrapped.pt"):
        assert declared_bytes(tmp_path / name) == STATE_BYTES
        check_declared_sizes(tmp_path / name)
        assert set(read_state_dict(tmp_path / name)) == set(STATE)


def test_legacy_checkpoint_declaring_gigabytes_is_refused_before_allocating(tmp_path):
    path = legacy_bomb(tmp_path / "bomb.pt", 400_000_000)  # 1.6 GB declared
    assert path.stat().st_size < 1000
    assert declared_bytes(path) == 1_600_000_000
    with pytest.raises(
        CheckpointError, match=r"declares 1,600,000,000 bytes of tensors but the file is only"
    ):
        read_state_dict(path)
    with pytest.raises(DeclaredSizeError, match="refusing to allocate"):
        load_checkpoint(path)
    small = legacy_bomb(tmp_path / "ok.pt", 1)  # the same writer, honest: torch reads it
    check_declared_sizes(small)
    assert torch.load(small, weights_only=True)["w"].shape == (1,)


def test_zip_entry_claiming_more_than_the_archive_is_refused(tmp_path):
    torch.save(STATE, tmp_path / "good.pt")
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(tmp_path / "good.pt") as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        # 64 MB of zeros, deflated to about 64 KB
        dst.writestr("archive/data/99", zlib.decompress(zlib.compress(bytes(1 << 26))), zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(
        CheckpointError, match=r"zip entry '99' declares 67,108,864 bytes, more than the whole"
    ):
        read_state_dict(bomb)


def test_files_that_are_no_pickle_pass_to_torch_for_its_message(tmp_path):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    check_declared_sizes(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match=r"text\.pt"):  # torch.load's own error, wrapped
        read_state_dict(tmp_path / "text.pt")
