"""benchmarks/forward.py: one configuration measured in-process on the ``tiny`` preset."""

from __future__ import annotations

import pytest

from ..conftest import load_benchmark


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"autocast": "bfloat16", "chunk_tokens": 0},
        {"dtype": "bfloat16", "chunk_tokens": 300},
    ],
)
def test_run_one_reports_what_it_ran(kwargs):
    fwd = load_benchmark("forward")
    args = {"dtype": "float32", "quantize": None, **kwargs}
    res = fwd.run_one("tiny", 2, 1, args.pop("dtype"), "cpu", 9, args.pop("quantize"), **args)
    assert res["preset"] == "tiny" and res["runs"] == 2 and res["text_tokens"] == 9
    assert res["dtype"] == kwargs.get("dtype", "float32") and res["autocast"] == kwargs.get("autocast")
    assert res["chunk_tokens"] == kwargs.get("chunk_tokens", 2048)  # the model's default unless set
    assert 0 < res["min_s"] <= res["median_s"] <= res["p95_s"]
    assert res["parameters"] > 3_000_000
    # the kernel updates its peak counters lazily: equal within a page or two is all one can ask
    assert res["loaded_rss_mb"] > 0 and res["peak_rss_mb"] >= 0.99 * res["loaded_rss_mb"]
    assert res["peak_rss_mb"] >= 0.99 * res["after_runs_rss_mb"] > 0
    assert res["weights"] == "in memory (random)" and res["peak_cuda_mb"] is None  # no GPU counters


def test_run_one_loads_a_model_folder(tmp_path):
    fwd = load_benchmark("forward")
    fwd.save_random("tiny", str(tmp_path / "tiny"))
    assert (tmp_path / "tiny" / "model.safetensors").stat().st_size > 40_000_000
    res = fwd.run_one("tiny", 2, 1, "bfloat16", "cpu", 12, None, weights=str(tmp_path / "tiny"))
    assert res["weights"] == "loaded from a model folder" and res["dtype"] == "bfloat16"
    assert res["image_size"] == 256 and res["parameters"] > 3_000_000
    assert 0 < res["min_s"] <= res["median_s"]
