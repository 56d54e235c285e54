"""Training-step time and peak memory of RS2-SAM2 (random weights, batch 1, one image + one sentence).

One step = forward, the official loss (0.9·CE + 0.1·Dice + 0.2·L_tbl at S×S), backward and an AdamW step
over the two official parameter groups — what :class:`rs2sam2.training.trainer.Trainer` does per sample. Each
configuration runs in its own subprocess so that its peak RSS is its own; the RSS after building the
model (weights only) is reported too, and the optimiser state appears at the first step. Prints one JSON
object per configuration, then a summary table. Examples::

    python benchmarks/train_step.py                              # official + tiny, fp32, CPU
    python benchmarks/train_step.py --preset official --gradient-checkpointing
    python benchmarks/train_step.py --preset tiny --steps 10
    python benchmarks/train_step.py --preset official --device cuda --precision bf16

Memory (fp32): the official model has 935 M parameters (3.7 GB), 722 M trainable (2.9 GB of gradients,
5.8 GB of AdamW moments). Without gradient checkpointing the activations of the 48 fused Hiera blocks at
1024² come on top (the BHFM layers in every block need the gradient through the whole frozen trunk).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
from forward import model_inputs, synchronize  # noqa: E402


def _rss_mb() -> float:
    """Current resident set size (Linux ``/proc``), MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def disc_target(size: int, batch: int, device):
    """A (batch, size, size) {0, 1} int64 target: one disc of radius size/5 left of the centre."""
    import torch

    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 3) ** 2) < (size / 5) ** 2).long()
    return disc.expand(batch, size, size).contiguous().to(device)


def time_steps(model, optimizer, loss_fn, inputs: dict, target, autocast_dtype, warmup: int, steps: int):
    """``warmup`` + ``steps`` training steps: forward (under ``autocast_dtype`` autocast unless None), the
    loss on the fp32 logits, backward, optimiser step. Returns ``(step times in s, (forward, backward,
    optimiser) times per step, the last loss)`` of the timed steps; raises on a non-finite loss."""
    import torch

    device = target.device
    times, phases = [], []
    for i in range(warmup + steps):
        synchronize(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext():
            out = model(**inputs)
        loss = loss_fn(out.logits.float(), target, out.text_weight.float()).total
        synchronize(device)
        t_fwd = time.perf_counter()
        loss.backward()
        synchronize(device)
        t_bwd = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        t_end = time.perf_counter()
        if i >= warmup:
            times.append(t_end - t)
            phases.append((t_fwd - t, t_bwd - t_fwd, t_end - t_bwd))
        del out
    final = float(loss.detach())
    if not math.isfinite(final):
        raise FloatingPointError(f"non-finite training loss {final}")
    return times, phases, final


def run_one(
    preset: str, steps: int, warmup: int, device: str, precision: str, checkpointing: bool, text_len: int
) -> dict:
    import torch

    from rs2sam2 import RS2SAM2, RS2SAM2Config
    from rs2sam2.training.config import PRECISIONS
    from rs2sam2.training.losses import build_loss
    from rs2sam2.training.runtime import set_gradient_checkpointing

    torch.manual_seed(0)
    cfg = RS2SAM2Config.from_preset(preset)
    t0 = time.perf_counter()
    model = RS2SAM2(cfg).to(device).train()
    build_s = time.perf_counter() - t0
    set_gradient_checkpointing(model, checkpointing)
    rss_model = _rss_mb()
    optimizer = torch.optim.AdamW(model.parameter_groups(5e-5, 1e-4), weight_decay=0.01)
    loss_fn = build_loss("official")
    autocast_dtype = PRECISIONS[precision]
    cuda = torch.device(device).type == "cuda"  # also "cuda:1"
    if autocast_dtype is not None and not cuda:
        raise SystemExit("bf16 autocast is benchmarked on CUDA only (as the trainer allows)")
    inputs = model_inputs(cfg, 1, text_len, device)
    target = disc_target(cfg.image_size, 1, device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times, phases, loss = time_steps(model, optimizer, loss_fn, inputs, target, autocast_dtype, warmup, steps)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = {
        "preset": preset,
        "device": device,
        "precision": precision,
        "gradient_checkpointing": checkpointing,
        "threads": torch.get_num_threads(),
        "image_size": cfg.image_size,
        "text_tokens": text_len,
        "steps": steps,
        "warmup": warmup,
        "step_median_s": round(statistics.median(times), 3),
        "step_min_s": round(min(times), 3),
        "forward_s": round(statistics.median(p[0] for p in phases), 3),
        "backward_s": round(statistics.median(p[1] for p in phases), 3),
        "optimizer_s": round(statistics.median(p[2] for p in phases), 3),
        "build_s": round(build_s, 2),
        "rss_after_build_mb": round(rss_model, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": trainable,
        "final_loss": round(loss, 5),
    }
    if cuda:
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", help="official and/or tiny (default: both)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 2 official, 10 tiny)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--text-len", type=int, default=12, help="text tokens incl. <s> and </s>")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    presets = args.preset or ["official", "tiny"]
    if args.child:
        steps = args.steps or (2 if presets[0] == "official" else 10)
        res = run_one(
            presets[0], steps, args.warmup, args.device, args.precision, args.gradient_checkpointing,
            args.text_len,
        )  # fmt: skip
        print(json.dumps(res))
        return
    results = []
    for preset in presets:
        cmd = [sys.executable, __file__, "--child", "--preset", preset, "--warmup", str(args.warmup)]
        cmd += ["--device", args.device, "--precision", args.precision, "--text-len", str(args.text_len)]
        if args.gradient_checkpointing:
            cmd.append("--gradient-checkpointing")
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(res), flush=True)
        results.append(res)
    head = f"{'preset':<10}{'ckpt':>5}{'threads':>8}{'step s':>9}{'fwd s':>8}{'bwd s':>8}{'opt s':>8}"
    print(f"\n{head}{'peak RSS MB':>13}")
    for r in results:
        print(
            f"{r['preset']:<10}{'yes' if r['gradient_checkpointing'] else 'no':>5}{r['threads']:>8}"
            f"{r['step_median_s']:>9.2f}{r['forward_s']:>8.2f}{r['backward_s']:>8.2f}{r['optimizer_s']:>8.2f}"
            f"{r['peak_rss_mb']:>13.0f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
