"""The GPU path of RS2-SAM2 measured in one prepared run: inference, agreement with the CPU, training.

Sections (in this order; each in its own subprocess, so that an out-of-memory error, a failed compilation
or a crashed CUDA context is recorded in the JSON and the next section still runs):

* ``environment``: torch, CUDA, the GPU's name and memory, the CUDA context's own memory;
* ``forward``: the ``official`` preset at 1024² + 12 tokens, batch 1 and 8, fp32 weights, bf16 autocast
  over fp32 weights, bf16 weights: latency (median, p95), peak GPU memory (``max_memory_allocated``),
  images/s; ``throughput`` names the fastest (mode, batch);
* ``correctness``: the same random weights and inputs on the CPU and on the device, fp32: max |Δ| of the
  logits; bf16 autocast and bf16 weights against device fp32: max |Δ| and mask IoU (at the model's
  threshold, and at the fp32 logits' median, where random weights give a half-full mask);
* ``train_step``: one training step of ``official`` (forward, official loss, backward, AdamW over the two
  official parameter groups) under bf16 autocast, without and with gradient checkpointing, batch 1–4:
  time, peak memory, and whether it fits a 24 GB card (peak reserved + the CUDA context ≤ 24 GiB);
* ``tiny_train``: the same step for the ``tiny`` preset as the bundled model trains (everything trainable),
  samples/s at batch 8 and 32, fp32 and bf16 autocast, and on the same machine's CPU for comparison;
* ``compile``: ``torch.compile`` (Inductor) of the fp32 model, batch 1 and 8: compilation time (the first
  call) apart from the latency after it. Last, as the slowest and likeliest to fail.

A global time budget (``--budget-s``, default 450 s) stops the run by itself: a section starts only with
time left, its configurations are skipped (``"status": "skipped"``) once the budget is spent, and a section
still running 20 s past the budget is killed, keeping what it had recorded. ``OUTDIR/gpu.json`` is rewritten
after every section; the same JSON is printed at the end. Examples::

    benchmarks/run_gpu.sh OUTDIR                            # the GPU run (python benchmarks/gpu.py OUTDIR)
    python benchmarks/gpu.py OUTDIR --device cpu --quick    # every section on the CPU, tiny sizes (a test)
    python benchmarks/gpu.py OUTDIR --sections forward correctness --budget-s 200

``--quick`` runs every section with the ``tiny`` preset and minimal sizes (the ``eager`` compile backend on
a CPU, as Inductor there needs minutes), so that the GPU run cannot fail on a typo.

Results: pending a GPU run. No GPU was available to this project's measurements so far, so the README has
no GPU table yet; the first run's ``gpu.json`` goes to ``benchmarks/results/`` with the GPU's name.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
from forward import model_inputs, p95, time_forward  # noqa: E402
from train_step import _peak_rss_mb, disc_target, time_steps  # noqa: E402

RESULT_NAME = "gpu.json"
CARD_MB = 24 * 1024  # a "24 GB" card (RTX 3090 / 4090, A10, L4 …) holds 24 GiB
KILL_GRACE_S = 20.0  # a section's subprocess may run this long past the budget before it is killed
ENTRY_MARGIN_S = 5.0  # no new configuration starts this close to the end of the budget


@dataclass(frozen=True)
class Plan:
    """What one run measures (a preset of sizes; ``PLANS`` names them)."""

    preset: str  # model of the forward, correctness, train_step and compile sections
    text_len: int
    forward_batches: tuple[int, ...]
    warmup: int
    runs: int
    train_batches: tuple[int, ...]
    train_steps: int
    tiny_batches: tuple[int, ...]
    tiny_steps: int
    compile_batches: tuple[int, ...]
    compile_backend: str


PLANS = {
    "full": Plan("official", 12, (1, 8), 2, 10, (1, 2, 3, 4), 2, (8, 32), 5, (1, 8), "inductor"),
    "quick": Plan("tiny", 12, (1, 2), 0, 2, (2,), 1, (2,), 1, (1,), "eager"),
}


@dataclass
class Context:
    """A section's inputs: the plan, the device, the wall-clock deadline, and ``flush(result)`` that
    saves what the section has recorded so far (its subprocess writes it; in-process: nothing)."""

    plan: Plan
    device: str
    deadline: float
    flush: Callable[[dict], None] = lambda result: None

    def out_of_time(self) -> bool:
        return time.time() > self.deadline - ENTRY_MARGIN_S


# ----------------------------------------------------------------------------------------- helpers
def _error(e: BaseException) -> dict:
    lines = str(e).strip().splitlines()
    return {"status": "error", "error": f"{type(e).__name__}: {lines[0][:500] if lines else ''}"}


def _free(device: str) -> None:
    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _memory(device: str) -> dict:
    """Peak memory since the last :func:`_free`: GPU allocations and the allocator's reservation (CUDA,
    MiB; None on the CPU) and the process's peak RSS."""
    import torch

    cuda = torch.device(device).type == "cuda"
    mb = lambda n: round(n / 2**20, 1)
    return {
        "peak_memory_mb": mb(torch.cuda.max_memory_allocated(device)) if cuda else None,
        "peak_reserved_mb": mb(torch.cuda.max_memory_reserved(device)) if cuda else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _allocated_mb(device: str) -> float | None:
    """GPU memory held by tensors now (CUDA, MiB; None on the CPU)."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return round(torch.cuda.memory_allocated(device) / 2**20, 1)


def _context_mb(device: str) -> float | None:
    """Device memory in use beyond PyTorch's reservation (the CUDA context, cuBLAS workspaces …), MiB."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    torch.zeros(1, device=device)
    free, total = torch.cuda.mem_get_info(device)
    return round((total - free - torch.cuda.memory_reserved(device)) / 2**20, 1)


def _entry(ctx: Context, result: dict, labels: dict, measure: Callable[[], dict]) -> None:
    """Append one configuration's figures (or its error, or ``skipped`` past the budget) to
    ``result["entries"]`` and flush."""
    if ctx.out_of_time():
        entry = {**labels, "status": "skipped", "error": "time budget spent"}
    else:
        try:
            _free(ctx.device)
            entry = {**labels, "status": "ok", **measure()}
        except Exception as e:  # an OOM or a compile error ends this configuration only
            entry = {**labels, **_error(e)}
        _free(ctx.device)
    result.setdefault("entries", []).append(entry)
    ctx.flush(result)


def _build(preset: str, device: str, seed: int = 0):
    """Random weights of ``preset`` (seed ``seed``), built directly on ``device`` where that works."""
    import torch

    from rs2sam2 import RS2SAM2, RS2SAM2Config

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    try:
        with torch.device(device):
            model = RS2SAM2(RS2SAM2Config.from_preset(preset))
        built_on = device
    except Exception:  # some upstream constructor may insist on the CPU
        torch.manual_seed(seed)
        model, built_on = RS2SAM2(RS2SAM2Config.from_preset(preset)), "cpu"
    model = model.to(device)
    return model, {"preset": preset, "built_on": built_on, "build_s": round(time.perf_counter() - t0, 2)}


def _latency(times: list[float], batch: int) -> dict:
    median = statistics.median(times)
    return {
        "median_s": round(median, 4),
        "p95_s": round(p95(times), 4),
        "min_s": round(min(times), 4),
        "images_per_s": round(batch / median, 3),
    }


def _iou(a, b) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


# ---------------------------------------------------------------------------------------- sections
def section_environment(ctx: Context) -> dict:
    import torch

    cuda = torch.device(ctx.device).type == "cuda"
    out = {
        "status": "ok",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    if cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        out |= {
            "gpu": props.name,
            "gpu_memory_mb": round(props.total_memory / 2**20, 1),
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "cuda_context_mb": _context_mb(ctx.device),
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
    return out


FORWARD_MODES = (  # (name, weights dtype, autocast dtype)
    ("fp32", "float32", None),
    ("bf16_autocast", "float32", "bfloat16"),
    ("bf16_weights", "bfloat16", None),
)


def section_forward(ctx: Context) -> dict:
    import torch

    model, build = _build(ctx.plan.preset, ctx.device)
    model.eval()
    cfg = model.config
    result = {"status": "ok", **build, "image_size": cfg.image_size, "text_tokens": ctx.plan.text_len}
    result["weights_fp32_mb"] = _allocated_mb(ctx.device)
    for mode, dtype, amp in FORWARD_MODES:
        model.to(getattr(torch, dtype))
        for batch in ctx.plan.forward_batches:

            def measure(batch=batch, amp=amp, dtype=dtype) -> dict:
                inputs = model_inputs(cfg, batch, ctx.plan.text_len, ctx.device, getattr(torch, dtype))
                times, _ = time_forward(model, inputs, ctx.plan.warmup, ctx.plan.runs, amp)
                return {**_latency(times, batch), **_memory(ctx.device)}

            _entry(ctx, result, {"mode": mode, "batch": batch}, measure)
    done = [e for e in result["entries"] if e["status"] == "ok"]
    if done:
        best = max(done, key=lambda e: e["images_per_s"])
        result["throughput"] = {k: best[k] for k in ("mode", "batch", "images_per_s")}
    return result


def section_correctness(ctx: Context) -> dict:
    import torch

    model, build = _build(ctx.plan.preset, "cpu")  # the reference, then the same weights moved
    model.eval()
    cfg, thr = model.config, model.config.mask_threshold

    def logits(dtype=torch.float32, amp=None, device=ctx.device):
        inputs = model_inputs(cfg, 1, ctx.plan.text_len, device, dtype)
        amp = torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bool(amp))
        with torch.inference_mode(), amp:
            return model(**inputs).logits.float().cpu()[0, 0]  # (S, S)

    cpu = logits(device="cpu")
    model.to(ctx.device)
    ref = logits()
    median = float(ref.median())
    result = {
        "status": "ok",
        **build,
        "reference": "CPU fp32, same weights and inputs, batch 1",
        "cpu_vs_device_fp32": {
            "max_abs_diff": float((cpu - ref).abs().max()),
            "mean_abs_diff": float((cpu - ref).abs().mean()),
            "logits_abs_max": float(cpu.abs().max()),
            "mask_iou": _iou(cpu > thr, ref > thr),
        },
        "foreground_fraction_fp32": float((ref > thr).float().mean()),
    }
    for name, dtype, amp in FORWARD_MODES[1:]:
        try:
            model.to(getattr(torch, dtype))
            x = logits(getattr(torch, dtype), amp)
            result[f"{name}_vs_fp32"] = {
                "max_abs_diff": float((x - ref).abs().max()),
                "mask_iou": _iou(x > thr, ref > thr),
                "mask_iou_at_median": _iou(x > median, ref > median),
            }
        except Exception as e:
            result[f"{name}_vs_fp32"] = _error(e)
    return result


def _train_entries(
    ctx: Context, result: dict, model, *, batches, steps: int, lrs, precisions, devices, labels=None
) -> None:
    """Training-step figures of ``model`` per (device, precision, batch) into ``result["entries"]``, each
    labelled with those and ``labels``; AdamW at learning rates ``lrs`` (base, BHFM + MPG)."""
    import torch

    from rs2sam2.training.config import PRECISIONS
    from rs2sam2.training.losses import build_loss

    loss_fn = build_loss("official")
    for device in devices:
        model.to(device)
        for precision in precisions:
            for batch in batches:

                def measure(batch=batch, precision=precision, device=device) -> dict:
                    optimizer = torch.optim.AdamW(model.parameter_groups(*lrs), weight_decay=0.01)
                    inputs = model_inputs(model.config, batch, ctx.plan.text_len, device)
                    target = disc_target(model.config.image_size, batch, device)
                    amp, warmup = PRECISIONS[precision], ctx.plan.warmup
                    try:
                        times, phases, loss = time_steps(
                            model, optimizer, loss_fn, inputs, target, amp, warmup, steps
                        )
                    finally:
                        model.zero_grad(set_to_none=True)  # also after an OOM: the next batch starts clean
                    mem = _memory(device)
                    return {
                        "step_median_s": round(statistics.median(times), 4),
                        "forward_s": round(statistics.median(p[0] for p in phases), 4),
                        "backward_s": round(statistics.median(p[1] for p in phases), 4),
                        "optimizer_s": round(statistics.median(p[2] for p in phases), 4),
                        "samples_per_s": round(batch / statistics.median(times), 3),
                        "final_loss": round(loss, 5),
                        **mem,
                        "fits_24gb": None
                        if mem["peak_reserved_mb"] is None
                        else mem["peak_reserved_mb"] + (result.get("cuda_context_mb") or 0) <= CARD_MB,
                    }

                names = {"device": device, "precision": precision, "batch": batch, **(labels or {})}
                _entry(ctx, result, names, measure)


def section_train_step(ctx: Context) -> dict:
    from rs2sam2.training.runtime import set_gradient_checkpointing

    model, build = _build(ctx.plan.preset, ctx.device)
    model.train()  # the official freeze policy (the model's default): SAM2 trunk and neck frozen
    result = {"status": "ok", **build, "cuda_context_mb": _context_mb(ctx.device), "loss": "official"}
    result["optimizer"] = "AdamW, two official groups (5e-5, BHFM + MPG 1e-4), weight decay 0.01"
    for checkpointing in (False, True):
        set_gradient_checkpointing(model, checkpointing)
        _train_entries(
            ctx, result, model, batches=ctx.plan.train_batches, steps=ctx.plan.train_steps, lrs=(5e-5, 1e-4),
            precisions=("bf16",), devices=(ctx.device,), labels={"gradient_checkpointing": checkpointing},
        )  # fmt: skip
    result["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return result


def section_tiny_train(ctx: Context) -> dict:
    model, build = _build("tiny", ctx.device)
    model.apply_freeze_policy("full")  # as demo/build_default_model.py trains it (no pretrained trunk)
    model.train()
    result = {"status": "ok", **build, "freeze_policy": "full"}
    plan, lrs = ctx.plan, (5e-4, 1e-3)  # demo/build_default_model.py's learning rates
    _train_entries(ctx, result, model, batches=plan.tiny_batches, steps=plan.tiny_steps, lrs=lrs,
                   precisions=("fp32", "bf16"), devices=(ctx.device,))  # fmt: skip
    if ctx.device != "cpu":  # what a GPU buys over the CPU of the same machine
        _train_entries(ctx, result, model, batches=plan.tiny_batches[:1], steps=plan.tiny_steps, lrs=lrs,
                       precisions=("fp32",), devices=("cpu",))  # fmt: skip
    return result


def section_compile(ctx: Context) -> dict:
    import torch

    model, build = _build(ctx.plan.preset, ctx.device)
    model.eval()
    backend = ctx.plan.compile_backend
    compiled = torch.compile(model, backend=backend, dynamic=False)  # one graph per batch size
    result = {"status": "ok", **build, "backend": backend, "weights": "float32"}
    try:
        for batch in ctx.plan.compile_batches:

            def measure(batch=batch) -> dict:
                inputs = model_inputs(model.config, batch, ctx.plan.text_len, ctx.device)
                times, first = time_forward(compiled, inputs, ctx.plan.warmup, ctx.plan.runs)
                return {"compile_s": round(first, 2), **_latency(times, batch), **_memory(ctx.device)}

            _entry(ctx, result, {"mode": "compile_fp32", "batch": batch}, measure)
    finally:
        torch._dynamo.reset()  # leave no compiled graphs behind (in-process runs)
    return result


SECTIONS: dict[str, Callable[[Context], dict]] = {
    "environment": section_environment,
    "forward": section_forward,
    "correctness": section_correctness,
    "train_step": section_train_step,
    "tiny_train": section_tiny_train,
    "compile": section_compile,
}


# ------------------------------------------------------------------------------------------ runner
def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _in_process(name: str, ctx: Context) -> dict:
    try:
        return SECTIONS[name](ctx)
    except Exception as e:  # the section's setup failed (e.g. the model does not fit): record, go on
        return _error(e)


def _in_subprocess(name: str, ctx: Context, plan_name: str, out_dir: Path) -> dict:
    partial = out_dir / f".{name}.json"
    partial.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, str(out_dir), "--device", ctx.device, "--plan", plan_name]
    cmd += ["--child", name, "--deadline", repr(ctx.deadline)]
    timeout = max(1.0, ctx.deadline - time.time() + KILL_GRACE_S)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        failure = None if proc.returncode == 0 else f"exit code {proc.returncode}: {proc.stderr[-1500:]}"
    except subprocess.TimeoutExpired:
        failure = f"killed after {timeout:.0f} s (over the time budget)"
    result = json.loads(partial.read_text()) if partial.exists() else {}
    partial.unlink(missing_ok=True)
    if failure is not None or not result:
        result = {**result, "status": "error", "error": failure or "the section wrote no result"}
    return result


def run_sections(
    out_dir: str | Path,
    device: str = "cuda",
    plan_name: str = "full",
    budget_s: float = 450.0,
    sections: list[str] | None = None,
    isolate: bool = True,
) -> dict:
    """Run ``sections`` (default: all, in order) within ``budget_s`` seconds; write and return the report
    ``{"benchmark", "device", "plan", "budget_s", "sections": {name: {"status": …, …}}, "elapsed_s"}``.
    ``isolate``: each section in its own subprocess (else in this process, for tests and debugging)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    ctx = Context(PLANS[plan_name], device, start + budget_s)
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(ctx.plan).items()}  # as JSON
    report = {"benchmark": "benchmarks/gpu.py", "device": device, "plan": plan_name,
              "plan_settings": settings, "budget_s": budget_s, "sections": {}}  # fmt: skip
    for name in sections or list(SECTIONS):
        t0 = time.time()
        if ctx.out_of_time():
            result = {"status": "skipped", "error": "time budget spent"}
        elif isolate:
            result = _in_subprocess(name, ctx, plan_name, out_dir)
        else:
            result = _in_process(name, ctx)
        report["sections"][name] = {**result, "seconds": round(time.time() - t0, 1)}
        report["elapsed_s"] = round(time.time() - start, 1)
        _write_json(out_dir / RESULT_NAME, report)
        print(f"{name}: {result['status']} ({time.time() - t0:.0f} s) {result.get('error', '')}", flush=True)
    return report


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", help="folder for gpu.json (created)")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu …")
    ap.add_argument("--quick", action="store_true", help="tiny preset, minimal sizes (= --plan quick)")
    ap.add_argument("--plan", choices=sorted(PLANS), default="full", help=argparse.SUPPRESS)
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop starting work after this (s)")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), help="default: all, in order")
    ap.add_argument("--in-process", action="store_true", help="no subprocess per section (debugging)")
    ap.add_argument("--child", choices=list(SECTIONS), help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    plan_name = "quick" if args.quick else args.plan
    out_dir = Path(args.out_dir)
    if args.child:  # one section in this subprocess, saving what it has after every configuration
        partial = out_dir / f".{args.child}.json"
        ctx = Context(PLANS[plan_name], args.device, args.deadline, lambda r: _write_json(partial, r))
        _write_json(partial, _in_process(args.child, ctx))
        return {}
    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here (use --device cpu --quick to test)")
    if args.budget_s <= 0:
        ap.error("--budget-s must be > 0")
    report = run_sections(out_dir, args.device, plan_name, args.budget_s, args.sections, not args.in_process)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
