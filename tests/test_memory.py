"""Resident memory: freed heap handed back after CPU forwards (glibc ``malloc_trim``), memory-mapped
checkpoint pages released after their check, models built without initialising their parameters."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rs2sam2 import predictor as predictor_module
from rs2sam2.memory import (
    FilePages,
    _glibc,
    all_finite,
    clean_file_mappings,
    release_cpu_memory,
    skip_parameter_init,
)
from rs2sam2.weights.state_dict import CheckpointError, check_finite

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


# ------------------------------------------------------------------- memory-mapped checkpoint pages
linux_only = pytest.mark.skipif(not clean_file_mappings(), reason="needs /proc/self/smaps (Linux)")
MB = 1 << 20


def _mapped(tmp_path, mb: int = 64) -> torch.Tensor:
    """A ``mb`` MB float32 tensor of ones read (memory-mapped) from a safetensors file."""
    from safetensors.torch import load_file, save_file

    path = tmp_path / "big.safetensors"
    save_file({"w": torch.ones(mb * MB // 4), "b": torch.arange(3.0)}, str(path))
    return load_file(str(path))["w"]


def _resident_mb(t: torch.Tensor) -> float:
    """Resident size of the file mapping that holds ``t`` (``Rss`` in ``/proc/self/smaps``)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= t.data_ptr() < hi
            elif inside and line.startswith("Rss:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("tensor not in any mapping")


@linux_only
def test_file_pages_are_released_and_read_back(tmp_path):
    w = _mapped(tmp_path)
    assert _resident_mb(w) < 4  # mapped, not read yet
    assert float(w.sum()) == w.numel()  # reading it brings all 64 MB in
    assert _resident_mb(w) > 63
    pages = FilePages()
    assert pages.release(w)
    assert pages.released_bytes >= 64 * MB
    assert _resident_mb(w) < 1
    float(w[: 64 * MB // 8].sum())  # half of it back, then all of it handed back again
    pages.finish()
    assert _resident_mb(w) < 1
    assert float(w.sum()) == w.numel()  # read back from the file: nothing lost


@linux_only
def test_anonymous_and_written_memory_is_never_released(tmp_path):
    anon = torch.ones(16 * MB // 4)
    assert not FilePages().release(anon)
    assert float(anon.sum()) == anon.numel()
    w = _mapped(tmp_path, 8)
    w[0] = 5.0  # a private copy of that page now exists: its mapping is no longer a clean file copy
    pages = FilePages()
    assert not pages.release(w) and pages.released_bytes == 0
    assert float(w[0]) == 5.0 and float(w.sum()) == w.numel() + 4


@linux_only
def test_check_finite_leaves_a_mapped_checkpoint_unresident(tmp_path):
    w = _mapped(tmp_path)
    check_finite({"w": w}, "test")  # reads all 64 MB
    assert _resident_mb(w) < 1
    w[-1] = float("nan")
    with pytest.raises(CheckpointError, match="1 tensors: w"):
        check_finite({"w": w}, "test")


def test_all_finite_in_chunks():
    x = torch.zeros(1000)
    assert all_finite(x, chunk_elements=64)
    x[999] = float("inf")  # in the last, partial chunk
    assert not all_finite(x, chunk_elements=64)
    assert not all_finite(x.view(10, 100).t(), chunk_elements=64)  # non-contiguous: one piece
    assert all_finite(torch.empty(0), chunk_elements=64)


# ------------------------------------------------------------------------- building without init
class _WithBuffer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4096, 4096)  # 64 MB of weight
        self.register_buffer("steps", torch.zeros(3).add_(2.0), persistent=False)


@linux_only
def test_skip_parameter_init_writes_no_parameter_but_computes_buffers():
    before = _rss_mb()
    with skip_parameter_init():
        module = _WithBuffer()
    assert _rss_mb() < before + 16  # the 64 MB weight was allocated, never written
    assert module.steps.tolist() == [2.0, 2.0, 2.0]
    torch.nn.init.zeros_(module.linear.bias)  # outside the context: initialisation works again
    assert not module.linear.bias.detach().any()


def test_loading_a_model_imports_neither_dynamo_nor_triton():
    # Building on the meta device would import torch._dynamo and Triton (150 MiB resident).
    code = (
        "import sys\n"
        "from rs2sam2 import RS2SAM2\n"
        "from rs2sam2.predictor import DEFAULT_MODEL\n"
        "RS2SAM2.from_pretrained(DEFAULT_MODEL)\n"
        "print(sorted(m for m in ('torch._dynamo', 'triton') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


@linux_only
def test_casting_a_mapped_checkpoint_hands_each_source_tensor_back(tmp_path):
    from rs2sam2.weights.state_dict import cast_state_dict as _cast

    w = _mapped(tmp_path)
    out = _cast({"w": w, "steps": torch.arange(3)}, torch.bfloat16)
    assert out["w"].dtype == torch.bfloat16 and float(out["w"].float().sum()) == w.numel()
    assert out["steps"].dtype == torch.int64  # integers are kept
    assert _resident_mb(w) < 1  # the fp32 source went back as soon as it was converted


@linux_only
def test_int8_quantisation_hands_back_the_fp32_weights_it_replaced(tmp_path, tiny_config):
    from rs2sam2 import RS2SAM2
    from rs2sam2.predictor import quantize_int8

    RS2SAM2(tiny_config).save_pretrained(tmp_path / "m")
    model = RS2SAM2.from_pretrained(tmp_path / "m")
    weight = model.image_encoder.trunk.blocks[0].mlp.layers[0].weight  # in the mapped model.safetensors
    float(weight.sum())  # resident now, as in a forward pass
    assert _resident_mb(weight) > weight.numel() * 4 / MB
    quantize_int8(model)
    assert type(model.image_encoder.trunk.blocks[0].mlp.layers[0]).__name__ == "Linear"  # the dynamic one
    assert "dynamic" in type(model.image_encoder.trunk.blocks[0].mlp.layers[0]).__module__
    # quantising read every nn.Linear (most of the 48 MB file); under 1 MB of the file stays mapped
    assert _resident_mb(weight) < 1.5
