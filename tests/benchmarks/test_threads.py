"""benchmarks/threads.py: 1 vs 2 intra-op threads on the tiny preset, idle and with a background load."""

from __future__ import annotations

import os

import pytest
import torch

from ..conftest import load_benchmark


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not running
        return f.read().split(")")[-1].split()[0] != "Z"


def test_background_load_spins_and_stops():
    bench = load_benchmark("threads")
    with bench.background_load(2, nice=19) as pids:
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    assert not any(_alive(p) for p in pids)


def test_run_reports_every_case_and_thread_count():
    bench = load_benchmark("threads")
    before = torch.get_num_threads()
    report = bench.run(["tiny"], runs=1, warmup=0, busy_procs=1, burner_nice=19)
    assert torch.get_num_threads() == before  # the script leaves torch as it found it
    got = [(r["preset"], r["case"], r["threads"]) for r in report["results"]]
    assert got == [("tiny", c, n) for c in ("idle", "busy") for n in (1, 2)]
    for r in report["results"]:
        assert r["runs"] == 1 and 0 < r["min_s"] <= r["median_s"] <= r["max_s"] and r["cpu_s_per_forward"] > 0
    slowdown = report["slowdown_2_vs_1"]["tiny"]
    assert set(slowdown) == {"idle", "busy"}
    by = {(r["case"], r["threads"]): r["median_s"] for r in report["results"]}
    assert slowdown["busy"] == pytest.approx(by["busy", 2] / by["busy", 1])
    assert report["busy_procs"] == 1 and len(report["loadavg_before"]) == 3
    with pytest.raises(ValueError, match="case"):
        bench.run(["tiny"], cases=["sleepy"], runs=1, warmup=0)
