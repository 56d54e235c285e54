"""Scenes drawn once per test module for the synthetic-generator tests."""

from __future__ import annotations

import numpy as np

from rs2sam2.data import synthetic as syn


def _scenes(n: int = 10, size: int = 256) -> list[syn.Scene]:
    return [
        syn.generate_scene(np.random.default_rng([5, k]), size, scene_type=syn.SCENE_TYPES[k % 5])
        for k in range(n)
    ]
