"""Training data: referring items (image, sentence, mask) to the model's training tensors
(:class:`TrainingSet`, with the optional RRSIS-D occlusion) and batches with tokenized sentences
(:class:`Collate`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..metrics import resize_mask_nearest

if TYPE_CHECKING:
    from ..data.dataset import OcclusionAugmentation
    from ..processing import RS2SAM2Processor


class TrainingSet(Dataset):
    """Referring items → training tensors, as the official dataset (``RS2-SAM2:train.py``).

    Item ``i`` of ``dataset`` (``image`` PIL, ``expression``, ``mask`` bool (H, W), ``id``) becomes
    ``sam_pixels`` (3, S, S), ``union_pixels`` (3, 224, 224), ``target`` (S, S) int64 in {0, 1} (mask
    resized with NEAREST), ``expression`` and ``id``.

    Occlusion: the subset of train refs is drawn once (:meth:`OcclusionAugmentation.select`); the boxes
    of item ``i`` in epoch ``e`` come from ``random.Random(f"{seed}:{e}:{i}")``, so they do not depend on
    worker processes or on resuming. Set :attr:`epoch` before each epoch.
    """

    def __init__(
        self,
        dataset: Any,
        processor: RS2SAM2Processor,
        *,
        occlusion: OcclusionAugmentation | None = None,
        seed: int = 2401,
    ) -> None:
        self.dataset = dataset
        self.processor = processor
        self.size = processor.config.image_size
        self.occlusion = occlusion
        self.seed = seed
        self.epoch = 0
        self.occluded: frozenset[int] = frozenset()
        if occlusion is not None:
            samples = getattr(dataset, "samples", None)
            if samples is None:
                raise ValueError("occlusion needs a ReferringDataset (with .samples) to choose the refs")
            if getattr(dataset, "occlusion", None) is not None:
                raise ValueError("the dataset already applies occlusion; open it without and pass it here")
            chosen = occlusion.select([s.group for s in samples if s.split == "train"])
            self.occluded = frozenset(
                i for i, s in enumerate(samples) if s.split == "train" and s.group in chosen
            )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        image = item["image"]
        if index in self.occluded:
            assert self.occlusion is not None
            image = self.occlusion.apply(image, rng=random.Random(f"{self.seed}:{self.epoch}:{index}"))
        sam, union, _ = self.processor.preprocess_image(image)
        target = resize_mask_nearest(np.asarray(item["mask"]).astype(bool), self.size)
        return {
            "sam_pixels": sam,
            "union_pixels": union,
            "target": torch.from_numpy(target.astype(np.int64)),
            "expression": item["expression"],
            "id": item["id"],
        }


class Collate:
    """Stack image tensors and targets; tokenize the batch's sentences (right-padded with the pad id)."""

    def __init__(self, processor: RS2SAM2Processor) -> None:
        self.processor = processor

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        input_ids, attention_mask = self.processor.tokenize([b["expression"] for b in batch])
        return {
            "sam_pixels": torch.stack([b["sam_pixels"] for b in batch]),
            "union_pixels": torch.stack([b["union_pixels"] for b in batch]),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "target": torch.stack([b["target"] for b in batch]),
            "ids": [b["id"] for b in batch],
        }
