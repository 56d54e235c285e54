"""Forward latency and peak memory of RS2-SAM2 (batch 1, one image + one sentence).

The model is loaded as users load one, with ``RS2SAM2.from_pretrained`` from a model folder: ``--weights``
(e.g. the converted official release), or by default random weights of ``--preset`` that a helper process
saves to a temporary folder first. ``--in-memory`` builds the random model in the measuring process
instead (all its memory is then anonymous and resident, the 250 MiB text embedding included, whereas a
loaded checkpoint is memory-mapped and resident only where a forward pass reads it).

Each configuration runs in its own subprocess so that peak RSS is its own (``peak_rss_mb`` includes loading
the fp32 model, also for ``--quantize int8``; ``loaded_rss_mb`` is the footprint once the model is ready
and ``inference_peak_rss_mb`` the peak while it runs, measured apart from the loading).
Prints one JSON object per configuration, then a summary table. Examples::

    python benchmarks/forward.py                        # official + tiny, fp32, CPU
    python benchmarks/forward.py --weights path/to/rrsisd --runs 5   # a real checkpoint folder
    python benchmarks/forward.py --preset tiny --runs 20
    python benchmarks/forward.py --preset official --dtype bfloat16 --runs 3
    python benchmarks/forward.py --preset official --autocast bfloat16 --device cuda   # fp32 weights
    python benchmarks/forward.py --preset official --quantize int8 --runs 3   # int8 nn.Linear, CPU
    python benchmarks/forward.py --preset tiny --compile     # torch.compile (first call timed apart)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

SHORT = {"bfloat16": "bf16", "float16": "fp16"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _status_mb(field: str) -> float:
    """A memory field of ``/proc/self/status`` (Linux) in MB: ``VmRSS`` (current) or ``VmHWM`` (peak)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:")) / 1024.0


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS count (VmHWM) at the current RSS, so that the inference peak is
    measured apart from the build (Linux ``clear_refs``; False where unsupported)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def model_inputs(config, batch: int, text_len: int, device: str, dtype=None, seed: int = 0) -> dict:
    """Random model inputs for ``batch`` images + sentences of ``text_len`` tokens (``<s>`` … ``</s>``),
    drawn on the CPU from ``seed`` (the same values on every device), then moved to ``device`` (pixels
    cast to ``dtype`` when given)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    s, u = config.image_size, config.union_encoder.img_size
    ids = torch.randint(4, min(1000, config.union_encoder.vocab_size - 1), (batch, text_len), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    return {
        "sam_pixels": torch.randn(batch, 3, s, s, generator=g).to(device=device, dtype=dtype),
        "union_pixels": torch.randn(batch, 3, u, u, generator=g).to(device=device, dtype=dtype),
        "input_ids": ids.to(device),
        "attention_mask": torch.ones(batch, text_len, dtype=torch.bool, device=device),
    }


def synchronize(device) -> None:
    """Wait for the device's queued kernels (CUDA), so that a wall-clock time covers them."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(run, inputs: dict, warmup: int, runs: int, autocast: str | None = None):
    """``warmup`` + ``runs`` forwards of ``run`` (the model, or its compiled form) under inference mode.

    ``autocast``: run fp32 weights with matmuls in this dtype (``"bfloat16"``, as training does on CUDA);
    None: the weights' own dtype. Returns ``(times of the timed runs in s, time of the first call in s)``
    (the first call includes the compilation of a compiled model).
    """
    import torch

    from rs2sam2.predictor import release_cpu_memory

    device = inputs["sam_pixels"].device
    amp = torch.autocast(device.type, dtype=getattr(torch, autocast)) if autocast else nullcontext()
    times, first_call_s = [], None
    with torch.inference_mode():
        for i in range(warmup + runs):
            synchronize(device)
            t = time.perf_counter()
            with amp:
                out = run(**inputs)
            synchronize(device)
            if i == 0:
                first_call_s = time.perf_counter() - t
            if i >= warmup:
                times.append(time.perf_counter() - t)
            assert torch.isfinite(out.logits.float()).all()
            del out  # a serving process keeps the mask, not the whole output (fused features: 70 MB)
            if device.type == "cpu":
                release_cpu_memory()  # as RS2SAM2Predictor does after every CPU forward
    return times, first_call_s


def p95(times: list[float]) -> float:
    """The 95th percentile (nearest rank) of ``times``."""
    times = sorted(times)
    return times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def run_one(
    preset: str,
    runs: int,
    warmup: int,
    dtype: str,
    device: str,
    text_len: int,
    quantize: str | None,
    compile: bool = False,
    chunk_tokens: int | None = None,
    autocast: str | None = None,
    weights: str | None = None,
) -> dict:
    """One configuration in this process. ``weights``: a model folder to load (``preset`` is then only a
    label); None builds random weights of ``preset`` in memory."""
    import torch

    from rs2sam2 import RS2SAM2, RS2SAM2Config
    from rs2sam2.predictor import quantize_int8, release_cpu_memory

    torch_dtype = getattr(torch, dtype)
    t0 = time.perf_counter()
    if weights is None:  # random weights, built here
        torch.manual_seed(0)
        model = RS2SAM2(RS2SAM2Config.from_preset(preset)).eval()
    else:
        model = RS2SAM2.from_pretrained(weights, dtype=torch_dtype)
    build_s = time.perf_counter() - t0
    cfg = model.config
    model = model.to(device=device, dtype=torch_dtype)
    parameters = sum(p.numel() for p in model.parameters())  # before quantisation packs nn.Linear weights
    if quantize == "int8":
        quantize_int8(model)
    if chunk_tokens is not None:
        model.image_encoder.inference_chunk_tokens = chunk_tokens
    gc.collect()
    release_cpu_memory()  # what loading freed (the predictor does the same)
    loaded_rss = _status_mb("VmRSS")
    build_peak = _peak_rss_mb()
    reset = _reset_peak_rss()
    inputs = model_inputs(cfg, 1, text_len, device, torch_dtype)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    run = torch.compile(model) if compile else model
    times, first_call_s = time_forward(run, inputs, warmup, runs, autocast)
    return {
        "preset": preset,
        "weights": "in memory (random)" if weights is None else "loaded from a model folder",
        "dtype": dtype,
        "autocast": autocast,
        "quantize": quantize,
        "compile": compile,
        "chunk_tokens": model.image_encoder.inference_chunk_tokens,
        "device": device,
        "threads": torch.get_num_threads(),
        "image_size": cfg.image_size,
        "text_tokens": text_len,
        "runs": runs,
        "median_s": round(statistics.median(times), 4),
        "p95_s": round(p95(times), 4),
        "min_s": round(min(times), 4),
        "build_s": round(build_s, 2),
        "first_call_s": round(first_call_s, 2),
        "loaded_rss_mb": round(loaded_rss, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "build_peak_rss_mb": round(build_peak, 1),
        # the peak while running inference on the loaded model (what a serving process holds)
        "inference_peak_rss_mb": round(_status_mb("VmHWM"), 1) if reset else None,
        # what a serving process holds between requests (a loaded checkpoint is resident once read)
        "after_runs_rss_mb": round(_status_mb("VmRSS"), 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
        "parameters": parameters,
    }


def save_random(preset: str, folder: str) -> None:
    """Random weights of ``preset`` (seed 0, as ``--in-memory`` builds them) saved as a model folder."""
    import torch

    from rs2sam2 import RS2SAM2, RS2SAM2Config

    torch.manual_seed(0)
    RS2SAM2(RS2SAM2Config.from_preset(preset)).save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", help="official and/or tiny (default: both)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs (default: 3 official, 20 tiny)")
    ap.add_argument(
        "--warmup", type=int, help="untimed runs (default: 3 tiny, whose first calls settle slowly; 1 else)"
    )
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument(
        "--autocast", choices=["bfloat16", "float16"], help="run under torch.autocast (weights stay --dtype)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quantize", choices=["int8"], help="int8 dynamic quantisation of nn.Linear (CPU, fp32)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (Inductor)")
    ap.add_argument(
        "--chunk-tokens",
        type=int,
        help="tokens per band of the banded inference path (default: the model's; 0: one piece)",
    )
    ap.add_argument("--text-len", type=int, default=12, help="text tokens incl. <s> and </s>")
    ap.add_argument("--weights", help="a model folder to load instead of random weights (one configuration)")
    ap.add_argument(
        "--in-memory", action="store_true", help="random weights built in the measuring process, not loaded"
    )
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--save-random", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    presets = args.preset or ["official", "tiny"]
    if args.quantize and (args.dtype != "float32" or args.device != "cpu"):
        ap.error(f"--quantize {args.quantize} needs --dtype float32 and --device cpu")
    if args.autocast and (args.dtype != "float32" or args.quantize):
        ap.error("--autocast runs fp32 weights: it takes neither --dtype nor --quantize")
    if args.weights and not args.child and (args.in_memory or args.preset):
        ap.error("--weights measures that folder: it takes neither --preset nor --in-memory")
    if args.save_random:
        save_random(presets[0], args.save_random)
        return
    if args.child:
        runs = args.runs or (20 if presets[0] == "tiny" else 3)
        res = run_one(
            presets[0],
            runs,
            args.warmup if args.warmup is not None else (3 if presets[0] == "tiny" else 1),
            args.dtype,
            args.device,
            args.text_len,
            args.quantize,
            args.compile,
            args.chunk_tokens,
            args.autocast,
            args.weights,
        )
        print(json.dumps(res))
        return
    if args.weights:
        presets = [Path(args.weights).name]
    results = []
    for preset in presets:
        cmd = [sys.executable, __file__, "--child", "--preset", preset]
        if args.warmup is not None:
            cmd += ["--warmup", str(args.warmup)]
        cmd += ["--dtype", args.dtype, "--device", args.device, "--text-len", str(args.text_len)]
        if args.quantize:
            cmd += ["--quantize", args.quantize]
        if args.compile:
            cmd += ["--compile"]
        if args.autocast:
            cmd += ["--autocast", args.autocast]
        if args.chunk_tokens is not None:
            cmd += ["--chunk-tokens", str(args.chunk_tokens)]
        if args.runs:
            cmd += ["--runs", str(args.runs)]
        with tempfile.TemporaryDirectory(prefix=f"rs2sam2-{preset}-") as tmp:
            if args.weights:
                cmd += ["--weights", args.weights]
            elif not args.in_memory:
                folder = str(Path(tmp) / preset)
                helper = [sys.executable, __file__, "--save-random", folder, "--preset", preset]
                subprocess.run(helper, check=True, capture_output=True, text=True)
                cmd += ["--weights", folder]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(res))
        results.append(res)
    print(
        f"\n{'preset':<10}{'weights':<18}{'threads':>8}{'median s':>10}{'p95 s':>9}"
        f"{'loaded RSS MB':>15}{'inference peak MB':>19}{'after runs MB':>15}"
    )
    for r in results:
        weights = (r["quantize"] or r["dtype"]) + (
            f" amp {SHORT[r['autocast']]}" if r.get("autocast") else ""
        )
        weights += " +compile" if r.get("compile") else ""
        inference_peak = r["inference_peak_rss_mb"] or float("nan")
        print(
            f"{r['preset']:<10}{weights:<18}{r['threads']:>8}{r['median_s']:>10.3f}{r['p95_s']:>9.3f}"
            f"{r['loaded_rss_mb']:>15.0f}{inference_peak:>19.0f}{r['after_runs_rss_mb']:>15.0f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
