"""benchmarks/gpu.py: the quick CPU run of every section, so that the GPU run cannot fail on a typo."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")

gpu = load_benchmark("gpu")


def _ok_entries(section: dict, n: int) -> list[dict]:
    assert section["status"] == "ok", section
    entries = section["entries"]
    assert len(entries) == n and all(e["status"] == "ok" for e in entries), entries
    return entries


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    report = gpu.run_sections(out, "cpu", "quick", budget_s=600, isolate=False)
    return out, report


def test_quick_run_writes_every_section_with_figures(quick_report):
    out, report = quick_report
    assert json.loads((out / gpu.RESULT_NAME).read_text()) == report  # the file is the final report
    assert list(report["sections"]) == list(gpu.SECTIONS)
    plan = gpu.PLANS["quick"]
    s = report["sections"]
    assert s["environment"]["status"] == "ok" and s["environment"]["torch"]

    fwd = _ok_entries(s["forward"], len(gpu.FORWARD_MODES) * len(plan.forward_batches))
    assert [(e["mode"], e["batch"]) for e in fwd] == [
        (m, b) for m, _, _ in gpu.FORWARD_MODES for b in plan.forward_batches
    ]
    for e in fwd:
        assert 0 < e["min_s"] <= e["median_s"] <= e["p95_s"]
        assert e["images_per_s"] == pytest.approx(e["batch"] / e["median_s"], rel=0.01, abs=1e-3)
        assert e["peak_memory_mb"] is None and e["peak_rss_mb"] > 100  # no GPU counters on the CPU
    best = max(fwd, key=lambda e: e["images_per_s"])
    assert s["forward"]["throughput"] == {k: best[k] for k in ("mode", "batch", "images_per_s")}

    c = s["correctness"]
    assert c["status"] == "ok"
    assert c["cpu_vs_device_fp32"]["max_abs_diff"] <= 1e-5  # CPU against CPU: the same computation
    assert c["cpu_vs_device_fp32"]["mask_iou"] == 1.0 and c["cpu_vs_device_fp32"]["logits_abs_max"] > 0
    for name in ("bf16_autocast_vs_fp32", "bf16_weights_vs_fp32"):
        assert 0 < c[name]["max_abs_diff"] < 1.0  # bf16 rounding: some difference, not a different model
        assert 0.0 <= c[name]["mask_iou"] <= 1.0 and 0.5 < c[name]["mask_iou_at_median"] <= 1.0

    train = _ok_entries(s["train_step"], 2 * len(plan.train_batches))
    assert [e["gradient_checkpointing"] for e in train] == [False] * len(plan.train_batches) + [True] * len(
        plan.train_batches
    )
    tiny = _ok_entries(s["tiny_train"], 2 * len(plan.tiny_batches))
    assert [e["precision"] for e in tiny] == ["fp32"] * len(plan.tiny_batches) + ["bf16"] * len(
        plan.tiny_batches
    )
    for e in train + tiny:
        assert e["device"] == "cpu" and e["fits_24gb"] is None
        assert math.isfinite(e["final_loss"]) and e["final_loss"] > 0
        phases = e["forward_s"] + e["backward_s"] + e["optimizer_s"]
        assert e["step_median_s"] == pytest.approx(phases, abs=1e-3)  # one timed step: its phases add up
        assert e["samples_per_s"] == pytest.approx(e["batch"] / e["step_median_s"], rel=0.01, abs=1e-3)
    assert s["train_step"]["trainable_parameters"] > 1_000_000

    (comp,) = _ok_entries(s["compile"], len(plan.compile_batches))
    assert s["compile"]["backend"] == "eager" and comp["compile_s"] > 0 and comp["median_s"] > 0
    assert 0 < report["elapsed_s"] and all(r["seconds"] >= 0 for r in s.values())


def test_a_spent_budget_skips_the_remaining_sections_cleanly(tmp_path):
    report = gpu.run_sections(tmp_path, "cpu", "quick", budget_s=1, isolate=False)
    assert list(report["sections"]) == list(gpu.SECTIONS)
    assert all(r == {"status": "skipped", "error": "time budget spent", "seconds": r["seconds"]}
               for r in report["sections"].values())  # fmt: skip


def test_a_failing_configuration_is_recorded_and_the_rest_runs(tmp_path, monkeypatch):
    calls = []

    def fail_on_batch_1(run, inputs, warmup, runs, autocast=None):
        calls.append(inputs["sam_pixels"].shape[0])
        if inputs["sam_pixels"].shape[0] == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return [0.5, 0.25], 1.0

    monkeypatch.setattr(gpu, "time_forward", fail_on_batch_1)
    monkeypatch.setattr(gpu, "SECTIONS", {"forward": gpu.section_forward, "boom": lambda ctx: 1 / 0})
    report = gpu.run_sections(tmp_path, "cpu", "quick", budget_s=600, isolate=False)
    forward, boom = report["sections"]["forward"], report["sections"]["boom"]
    assert boom["status"] == "error" and boom["error"] == "ZeroDivisionError: division by zero"
    assert calls == [1, 2] * len(gpu.FORWARD_MODES)
    errors = [e for e in forward["entries"] if e["batch"] == 1]
    assert all(e["status"] == "error" for e in errors)
    assert errors[0]["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    ok = [e for e in forward["entries"] if e["batch"] == 2]
    assert all(e["status"] == "ok" and e["median_s"] == 0.375 and e["images_per_s"] == 5.333 for e in ok)
    assert forward["throughput"]["batch"] == 2


def test_sections_run_in_subprocesses_and_write_the_json(tmp_path):
    report = gpu.main([str(tmp_path), "--device", "cpu", "--quick", "--sections", "environment"])
    env = report["sections"]["environment"]
    assert env["status"] == "ok" and env["cuda_available"] in (True, False) and env["cpu_count"] >= 1
    assert json.loads((tmp_path / "gpu.json").read_text()) == report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.json"]  # the section's partial file is gone


def test_a_section_killed_past_the_budget_keeps_what_it_recorded(tmp_path, monkeypatch):
    ctx = gpu.Context(gpu.PLANS["quick"], "cpu", 0.0)  # the deadline has passed: 20 s of grace remain
    seen = {}

    def child_killed_after_one_entry(cmd, capture_output, text, timeout):
        seen["cmd"], seen["timeout"] = cmd, timeout
        (tmp_path / ".forward.json").write_text(json.dumps({"status": "ok", "entries": [{"mode": "fp32"}]}))
        raise gpu.subprocess.TimeoutExpired(cmd, timeout)

    monkeypatch.setattr(gpu.subprocess, "run", child_killed_after_one_entry)
    result = gpu._in_subprocess("forward", ctx, "quick", tmp_path)
    assert result == {"status": "error", "error": "killed after 1 s (over the time budget)",
                      "entries": [{"mode": "fp32"}]}  # fmt: skip
    assert seen["timeout"] == 1.0 and seen["cmd"][-4:] == ["--child", "forward", "--deadline", "0.0"]
    assert not (tmp_path / ".forward.json").exists()


def test_a_crashed_section_reports_its_exit_code_and_stderr(tmp_path, monkeypatch):
    ctx = gpu.Context(gpu.PLANS["quick"], "cpu", 1e12)
    crash = gpu.subprocess.CompletedProcess([], -11, "", "Fatal Python error: Segmentation fault\n")
    monkeypatch.setattr(gpu.subprocess, "run", lambda cmd, **kw: crash)
    result = gpu._in_subprocess("compile", ctx, "quick", tmp_path)
    assert result == {"status": "error", "error": "exit code -11: Fatal Python error: Segmentation fault\n"}


RUN_GPU = Path(__file__).resolve().parents[2] / "benchmarks" / "run_gpu.sh"


def test_the_shell_entry_runs_the_benchmark_and_keeps_its_log(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}  # the later --device cpu overrides the script's cuda
    cmd = ["bash", str(RUN_GPU), str(out), "--device", "cpu", "--quick", "--sections", "environment"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=300)
    report = json.loads((out / "gpu.json").read_text())
    assert report["device"] == "cpu" and report["sections"]["environment"]["status"] == "ok"
    assert "environment: ok" in (out / "gpu.log").read_text()


def test_the_shell_entry_prepares_the_pure_python_dependencies(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_SITE": str(tmp_path / "site")}
    subprocess.run(["bash", str(RUN_GPU), "--prepare"], check=True, capture_output=True, env=env, timeout=300)
    names = sorted(p.name for p in (tmp_path / "site").iterdir())
    assert names == ["antlr4", "hydra", "iopath", "omegaconf", "sam2"]
    assert (tmp_path / "site" / "sam2" / "modeling" / "backbones" / "hieradet.py").is_file()
    assert not list((tmp_path / "site").rglob("__pycache__"))
