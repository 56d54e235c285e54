"""The training set (rs2sam2.training.data): nearest-neighbour mask resizing and deterministic occlusion."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rs2sam2.data.dataset import OcclusionAugmentation
from rs2sam2.training.data import TrainingSet

from .conftest import IMAGE_SIZE, _build

pytestmark = pytest.mark.usefixtures("one_thread")


class _Items(list):
    """Referring items plus the ``samples`` (split, ref group) :class:`TrainingSet` reads for occlusion."""

    samples: list


def test_training_set_resizes_the_mask_with_nearest_and_occludes_deterministically(ws, tmp_path):
    img = np.full((40, 50, 3), 200, dtype=np.uint8)
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:20, 5:45] = True
    image = Image.fromarray(img)
    items = _Items({"image": image, "mask": mask, "expression": "the roof", "id": str(i)} for i in range(4))
    items.samples = [SimpleNamespace(split="train", group=str(i)) for i in range(4)]
    _, processor = _build(ws)
    occlusion = OcclusionAugmentation(fraction=0.5, min_boxes=2, max_boxes=3, box_size=8, seed=7)
    ts = TrainingSet(items, processor, occlusion=occlusion, seed=7)
    assert len(ts.occluded) == 2
    plain = next(i for i in range(4) if i not in ts.occluded)
    hidden = next(iter(ts.occluded))
    a = ts[plain]
    assert a["sam_pixels"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) and a["union_pixels"].shape == (3, 224, 224)
    assert a["target"].dtype == torch.int64 and set(a["target"].unique().tolist()) == {0, 1}
    expected = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((IMAGE_SIZE,) * 2, Image.NEAREST))
    assert torch.equal(a["target"], torch.from_numpy(expected.astype(np.int64)))
    assert torch.equal(a["sam_pixels"], ts[plain]["sam_pixels"])  # not occluded: untouched
    first = ts[hidden]["sam_pixels"]
    assert not torch.equal(first, a["sam_pixels"])  # black boxes pasted
    assert torch.equal(first, ts[hidden]["sam_pixels"])  # same epoch, same boxes
    ts.epoch = 1
    assert not torch.equal(first, ts[hidden]["sam_pixels"])  # new epoch, new boxes
