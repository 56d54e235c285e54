"""Broken dataset samples (``docs/robustness.md``): a message naming the sample by default, skipped with a
warning on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from rs2sam2.data.readers import open_dataset
from rs2sam2.data.samples import SampleError

from ..conftest import (
    make_rrsisd,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ data
@pytest.fixture()
def broken_rrsisd(tmp_path) -> Path:
    """Train refs: 0-0 fine, 1-0 mask/image size mismatch, 2-0 image missing, 3-0 empty mask, 4-0 unknown
    annotation (tests/conftest.py::make_rrsisd, which ``data validate`` reports in full)."""
    return make_rrsisd(tmp_path / "rrsisd")


def test_broken_samples_raise_a_message_naming_the_sample_by_default(broken_rrsisd):
    ds = open_dataset(broken_rrsisd, "train")
    ids = [s.id for s in ds.samples]
    assert ids == ["0-0", "1-0", "2-0", "3-0", "4-0"]
    expected = {
        "1-0": r"sample '1-0': mask 6×8 does not match image 6×10",
        "2-0": r"sample '2-0': cannot read image .*gone\.jpg",
        "4-0": r"sample '4-0': cannot read mask \(KeyError",
    }
    for sample_id, message in expected.items():
        with pytest.raises(SampleError, match=message):
            ds[ids.index(sample_id)]
    assert ds[0]["mask"].any() and not ds[ids.index("3-0")]["mask"].any()  # empty masks kept (official)
    with pytest.raises(SampleError, match="no foreground pixel"):
        open_dataset(broken_rrsisd, "train", empty_masks="raise")[ids.index("3-0")]
    with pytest.raises(SampleError, match="sample '1-0'"):  # checked up front when empty masks are skipped
        open_dataset(broken_rrsisd, "train", empty_masks="skip")


def test_broken_samples_are_skipped_with_a_warning_on_request(broken_rrsisd):
    with pytest.warns(UserWarning, match=r"skipped 3 of 5 samples \(1-0, 2-0, 4-0\)"):
        ds = open_dataset(broken_rrsisd, "train", on_error="skip")
    assert [s.id for s in ds.samples] == ["0-0", "3-0"] and len(ds) == 2
    assert [i for i, _ in ds.skipped] == ["1-0", "2-0", "4-0"]
    assert all(ds[i]["image"].size == ds[i]["mask"].shape[::-1] for i in range(len(ds)))
    with pytest.warns(UserWarning, match="skipped 4 of 5"):
        ds = open_dataset(broken_rrsisd, "train", on_error="skip", empty_masks="skip")
    assert [s.id for s in ds.samples] == ["0-0"]
    with pytest.raises(ValueError, match="on_error must be"):
        open_dataset(broken_rrsisd, "train", on_error="ignore")
