"""Handing freed heap memory back to the OS after CPU forwards (glibc ``malloc_trim``)."""

from __future__ import annotations

import pytest
import torch

from rs2sam2 import predictor as predictor_module
from rs2sam2.predictor import _glibc, release_cpu_memory

needs_glibc = pytest.mark.skipif(_glibc() is None, reason="needs glibc ≥ 2.33 (mallinfo2, malloc_trim)")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024.0


@needs_glibc
def test_release_returns_freed_heap_memory_to_the_os():
    # 3,000 tensors of 64 KiB live in the heap; the last one pins its top, so freeing the others leaves
    # ~190 MB of free heap that glibc keeps resident.
    parts = [torch.ones(16384) for _ in range(3000)]
    pin = parts[-1]
    del parts[-1]
    del parts
    before = _rss_mb()
    assert _glibc().mallinfo2().fordblks > 150 << 20
    assert not release_cpu_memory(min_free_bytes=1 << 40)  # under its threshold: nothing to do
    assert release_cpu_memory()
    assert _rss_mb() < before - 100
    assert float(pin.sum()) == 16384.0


def test_predictor_releases_memory_after_a_cpu_forward(monkeypatch):
    from rs2sam2 import RS2SAM2Predictor

    predictor = RS2SAM2Predictor.from_pretrained()  # the bundled model, on the CPU
    calls = []
    monkeypatch.setattr(predictor_module, "release_cpu_memory", lambda: calls.append(1))
    image = torch.zeros(64, 64, 3, dtype=torch.uint8).numpy()
    predictor.predict(image, "the building")
    assert calls == [1]
