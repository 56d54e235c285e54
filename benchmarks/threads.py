"""Forward latency with 1 vs 2 torch intra-op threads, on an idle and on a busy machine.

The number behind the thread policy (``rs2sam2.threads``): torch's default is one intra-op thread per core;
when other processes keep the cores busy, the threads of one operator wait for each other and a forward
can get many times slower than with one thread. For each preset (``tiny``; ``official`` with
``--official``: random weights, about 4 GB of RAM and seconds per forward on a CPU) and each thread
count, the batch-1 forward (one image, one sentence, under ``torch.inference_mode``) is timed

* ``idle``: as the machine is (``loadavg_before`` says how idle it was: run it with nothing else going),
* ``busy``: with ``--busy-procs`` background processes (default: one per core) spinning
  ``while True: pass`` at the same priority, started here and stopped before the script ends.

Prints one JSON object: every measurement, and ``slowdown_2_vs_1`` (median with 2 threads / median with 1
thread, per preset and case; above 1 means one thread is faster). Examples::

    python benchmarks/threads.py                     # tiny, idle and busy, 1 and 2 threads
    python benchmarks/threads.py --official --runs 5 # tiny and official
    python benchmarks/threads.py --cases busy --threads 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

CASES = ("idle", "busy")
BURN = "while True: pass"


@contextmanager
def background_load(procs: int, nice: int = 0) -> Iterator[list[int]]:
    """``procs`` processes spinning on the CPU for the duration of the block (their pids)."""
    started = []
    try:
        for _ in range(procs):
            pre = (lambda: os.nice(nice)) if nice else None
            started.append(subprocess.Popen([sys.executable, "-c", BURN], preexec_fn=pre))
        time.sleep(0.2)  # let them reach the spinning loop
        yield [p.pid for p in started]
    finally:
        for p in started:
            p.kill()
        for p in started:
            p.wait()


def build(preset: str, text_len: int = 12):
    """A randomly initialised model of ``preset`` in eval mode and batch-1 inputs for it."""
    import torch

    from rs2sam2 import RS2SAM2, RS2SAM2Config

    torch.manual_seed(0)
    model = RS2SAM2(RS2SAM2Config.from_preset(preset)).eval()
    s, u = model.config.image_size, model.config.union_encoder.img_size
    ids = torch.randint(4, 1000, (1, text_len))
    ids[0, 0], ids[0, -1] = 0, 2
    inputs = {
        "sam_pixels": torch.randn(1, 3, s, s),
        "union_pixels": torch.randn(1, 3, u, u),
        "input_ids": ids,
        "attention_mask": torch.ones(1, text_len, dtype=torch.bool),
    }
    return model, inputs


def time_forward(model, inputs: dict, threads: int, runs: int, warmup: int) -> dict:
    """Wall and CPU seconds of ``runs`` forwards with ``threads`` intra-op threads (after ``warmup``)."""
    import torch

    from rs2sam2.memory import release_cpu_memory

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        walls, cpus = [], []
        with torch.inference_mode():
            for i in range(warmup + runs):
                t, c = time.perf_counter(), time.process_time()
                out = model(**inputs)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                assert torch.isfinite(out.logits).all()
                del out
                release_cpu_memory()  # as RS2SAM2Predictor does after every CPU forward
                if i >= warmup:
                    walls.append(wall)
                    cpus.append(cpu)
    finally:
        torch.set_num_threads(before)
    return {
        "threads": threads,
        "runs": runs,
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_s_per_forward": statistics.median(cpus),
    }


def run(
    presets: Sequence[str] = ("tiny",),
    cases: Sequence[str] = CASES,
    threads: Sequence[int] = (1, 2),
    runs: int = 10,
    warmup: int = 2,
    busy_procs: int | None = None,
    burner_nice: int = 0,
) -> dict:
    """Every (preset, case, thread count) measurement, as one JSON-ready dict."""
    import torch

    for case in cases:
        if case not in CASES:
            raise ValueError(f"case must be one of {CASES}, got {case!r}")
    if busy_procs is None:
        busy_procs = os.cpu_count() or 2
    report = {
        "benchmark": "threads",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "loadavg_before": list(os.getloadavg()),
        "busy_procs": busy_procs,
        "results": [],
        "slowdown_2_vs_1": {},
    }
    for preset in presets:
        model, inputs = build(preset)
        medians = {}
        for case in cases:
            with background_load(busy_procs if case == "busy" else 0, nice=burner_nice):
                for n in threads:
                    res = {"preset": preset, "case": case, **time_forward(model, inputs, n, runs, warmup)}
                    report["results"].append(res)
                    medians[case, n] = res["median_s"]
        report["slowdown_2_vs_1"][preset] = {
            case: medians[case, 2] / medians[case, 1]
            for case in cases
            if (case, 1) in medians and (case, 2) in medians
        }
        del model, inputs
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", action="store_true", help="also the official preset (4 GB of RAM)")
    parser.add_argument("--presets", nargs="+", default=None, help="presets to run (default: tiny)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--busy-procs", type=int, default=None, help="background spinners (default: one a core)"
    )
    args = parser.parse_args(argv)
    presets = args.presets or ["tiny", *(["official"] if args.official else [])]
    report = run(presets, args.cases, args.threads, args.runs, args.warmup, args.busy_procs)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
