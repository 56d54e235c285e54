"""The common referring dataset (rs2sam2.data.dataset): occlusion boxes replay their RNG and cover only the
training references."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image

from rs2sam2.data.dataset import OcclusionAugmentation, ReferringDataset
from rs2sam2.data.samples import Sample


# ------------------------------------------------------------------------------------------------ occlusion
def test_occlusion_boxes_replay_rng(tmp_path):
    img = Image.new("RGB", (100, 70), (255, 255, 255))
    aug = OcclusionAugmentation()
    out = np.asarray(aug.apply(img, rng=random.Random(5)))
    replay = random.Random(5)
    expected = np.full((70, 100), 255, np.uint8)
    n = replay.randint(20, 60)
    for _ in range(n):
        y, x = replay.randint(0, 70 - 32), replay.randint(0, 100 - 32)
        expected[y : y + 32, x : x + 32] = 0
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)
    assert 20 <= n <= 60
    assert np.asarray(img).min() == 255  # input untouched


def _white_samples(tmp_path: Path, n_train_refs=10, n_val=3):
    path = tmp_path / "white.png"
    Image.new("RGB", (64, 64), (255, 255, 255)).save(path)
    zeros = lambda: np.zeros((64, 64), bool)  # noqa: E731
    samples = []
    for r in range(n_train_refs):
        for k in range(2):  # two sentences per ref share the ref's fate
            samples.append(Sample(f"{r}-{k}", path, "x", "train", zeros, ref_id=str(r)))
    for r in range(n_val):
        samples.append(Sample(f"v{r}", path, "x", "val", zeros, ref_id=f"v{r}"))
    return samples


def test_occlusion_subset_of_train_refs(tmp_path):
    samples = _white_samples(tmp_path)
    ds = ReferringDataset(samples, occlusion=True)
    assert ds.occlusion == OcclusionAugmentation()
    assert len(ds.occluded_groups) == 2  # int(10 * 0.2)
    assert ds.occluded_groups <= {str(r) for r in range(10)}
    assert ReferringDataset(samples, occlusion=True).occluded_groups == ds.occluded_groups  # seeded
    assert (
        len(ReferringDataset(samples, occlusion=OcclusionAugmentation(seed=1, fraction=0.5)).occluded_groups)
        == 5
    )
    random.seed(0)
    for i, s in enumerate(samples):
        darkened = ds[i]["image"].getextrema()[0][0] == 0
        assert darkened == (s.split == "train" and s.ref_id in ds.occluded_groups)
        assert ds.is_occluded(i) == darkened
    plain = ReferringDataset(samples)
    assert not any(plain.is_occluded(i) for i in range(len(samples)))
