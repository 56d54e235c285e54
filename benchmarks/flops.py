"""FLOPs of one RS2-SAM2 forward, by stage, and the CPU time they need at least (random weights).

The model and its inputs live on the ``meta`` device: shapes only, no memory and no arithmetic, so the
official model is counted in seconds. ``torch.utils.flop_counter.FlopCounterMode`` counts matmuls and
convolutions (2 FLOPs per multiply-add); elementwise ops, norms and softmax are not counted. Attention is
counted through SDPA's math decomposition (``SDPBackend.MATH``, what ``meta`` tensors run anyway): with
real CPU tensors the fused ``_scaled_dot_product_flash_attention_for_cpu`` kernel would be missed by the
counter. Each FLOP is charged to the innermost stage whose module is running (forward hooks), so the
stages add up to the total exactly.

It also times a 4096² matmul in fp32 and bf16 on this machine and prints ``total FLOPs / fp32 rate``, a
lower bound on the fp32 forward time; and, tighter, the time of the forward's own products (every
nn.Linear, convolution and attention call, recorded with its shapes and replayed alone on real tensors):
what its matmuls need at the shapes the model gives them, whatever else it does.
Prints one JSON object, then a table. Examples::

    python benchmarks/flops.py                          # official preset, 2 threads
    python benchmarks/flops.py --preset tiny --no-matmul
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from rs2sam2 import RS2SAM2, RS2SAM2Config


@dataclass(frozen=True)
class Stage:
    name: str
    group: str  # the box of the pipeline diagram (STYLE.md) it belongs to
    modules: tuple[str, ...]  # module paths in RS2SAM2; their submodules belong to the stage too


STAGES: tuple[Stage, ...] = (
    Stage("union_encoder", "union encoder (BEiT-3)", ("union_encoder",)),
    Stage("text_projections", "union encoder (BEiT-3)", ("text_proj", "text_weight_head")),
    Stage("hiera_blocks", "Hiera trunk", ("image_encoder.trunk",)),
    Stage("fusion_layers", "Hiera trunk", ("image_encoder.fusion_layers",)),
    Stage("fpn_neck", "FPN neck", ("image_encoder.neck",)),
    Stage("prompt_generator", "mask prompt generator", ("prompt_generator",)),
    Stage("post_encoding_fusion", "SAM decoder", ("sam_decoder.text_fusion",)),
    Stage("prompt_encoder", "SAM decoder", ("sam_decoder.prompt_encoder",)),
    Stage("mask_decoder", "SAM decoder", ("sam_decoder.mask_decoder",)),
    # What SAMDecoder runs itself, outside its submodules: the dense positional-encoding matmul.
    Stage("dense_pe", "SAM decoder", ("sam_decoder",)),
)
UNATTRIBUTED = "unattributed"


class _StageMeter:
    """Charges the counter's running total to the innermost active stage at every module entry/exit."""

    def __init__(self, counter: FlopCounterMode) -> None:
        self.counter = counter
        self.flops: dict[str, int] = {s.name: 0 for s in STAGES}
        self.flops[UNATTRIBUTED] = 0
        self._stack: list[list] = []  # [stage name, nesting depth of that stage's modules]
        self._last = 0

    def _charge(self) -> None:
        now = self.counter.get_total_flops()
        self.flops[self._stack[-1][0] if self._stack else UNATTRIBUTED] += now - self._last
        self._last = now

    def enter(self, stage: str) -> None:
        self._charge()
        if self._stack and self._stack[-1][0] == stage:
            self._stack[-1][1] += 1
        else:
            self._stack.append([stage, 1])

    def exit(self, stage: str) -> None:
        self._charge()
        top = self._stack[-1]
        if top[0] != stage:
            raise RuntimeError(f"stage {stage!r} exited while {top[0]!r} is running")
        top[1] -= 1
        if top[1] == 0:
            self._stack.pop()

    def finish(self) -> dict[str, int]:
        self._charge()
        return self.flops


def _stage_of(name: str) -> str | None:
    """The stage of module ``name``: the one with the longest matching module path."""
    best, best_len = None, -1
    for stage in STAGES:
        for path in stage.modules:
            if (name == path or name.startswith(path + ".")) and len(path) > best_len:
                best, best_len = stage.name, len(path)
    return best


_aten = torch.ops.aten
_DENSE_OPS = (
    _aten.linear.default,
    _aten.conv2d.default,
    _aten.conv_transpose2d.input,
    _aten.convolution.default,
    _aten.mm.default,
    _aten.addmm.default,
)
_ATTENTION_OPS = (_aten.scaled_dot_product_attention.default,)


class ProductCalls(TorchDispatchMode):
    """Records every product of the forward with its operand shapes and other arguments, to replay them on
    real tensors (:func:`products_seconds`): dense layers (nn.Linear and convolutions: ``linear``,
    ``conv2d``, … as the model calls them) and attention (``scaled_dot_product_attention``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _DENSE_OPS or func in _ATTENTION_OPS:
            spec = tuple(
                ("tensor", tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a for a in args
            )
            self.calls[(func, _frozen(spec))] += 1
        return func(*args, **(kwargs or {}))


def _frozen(value):
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _operand(spec, dtype: torch.dtype):
    if isinstance(spec, tuple) and spec[:1] == ("tensor",):
        _, shape, recorded = spec
        return (
            torch.randn(shape).to(dtype) if recorded.is_floating_point else torch.ones(shape, dtype=recorded)
        )
    return list(spec) if isinstance(spec, tuple) else spec


def products_seconds(calls: Counter, dtype: torch.dtype, ops: Sequence = _DENSE_OPS, reps: int = 2) -> float:
    """Time the recorded products among ``ops`` on this CPU, each alone at its own shapes in ``dtype``
    (best of ``reps`` after a warm-up; attention with the CPU's own SDPA kernel), weighted by how often
    the forward runs each: the time the forward's matmuls need, whatever else it does."""
    total = 0.0
    for (func, spec), count in calls.items():
        if func not in ops:
            continue
        args = [_operand(a, dtype) for a in spec]
        func(*args)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            func(*args)
            best = min(best, time.perf_counter() - t)
        total += best * count
    return total


def _model_inputs(config: RS2SAM2Config, batch: int, text_len: int) -> dict[str, torch.Tensor]:
    s, u = config.image_size, config.union_encoder.img_size
    ids = torch.full((batch, text_len), 4, dtype=torch.long)
    return {
        "sam_pixels": torch.zeros(batch, 3, s, s),
        "union_pixels": torch.zeros(batch, 3, u, u),
        "input_ids": ids,
        "attention_mask": torch.ones(batch, text_len, dtype=torch.bool),
    }


def count_flops(
    config: RS2SAM2Config,
    *,
    batch: int = 1,
    text_len: int = 12,
    device: str | torch.device = "meta",
    chunk_tokens: int = 0,
    product_calls: ProductCalls | None = None,
) -> dict[str, int]:
    """FLOPs of one forward, per stage name of :data:`STAGES` plus ``"unattributed"`` (0 for this model)
    and ``"total"``; also ``"nn_linear"``: the part inside ``nn.Linear`` modules, which is what
    ``quantize="int8"`` runs in int8. ``device="cpu"`` runs real arithmetic (to check the ``meta`` count).

    Stages are told apart by module hooks, so the image encoder runs in one piece (``chunk_tokens=0``):
    its CPU inference bands (``FusedImageEncoder.inference_chunk_tokens``) call some submodules' parts
    directly. They do the same arithmetic: ``chunk_tokens > 0`` on the CPU gives the same total.
    ``product_calls`` (a :class:`ProductCalls`) also records the products with their shapes."""
    with torch.device(device):
        model = RS2SAM2(config).eval()
        inputs = _model_inputs(config, batch, text_len)
    model.image_encoder.inference_chunk_tokens = chunk_tokens
    counter = FlopCounterMode(display=False)
    meter = _StageMeter(counter)
    linear = {"flops": 0, "start": 0}

    def linear_enter(*_) -> None:
        linear["start"] = counter.get_total_flops()

    def linear_exit(*_) -> None:
        linear["flops"] += counter.get_total_flops() - linear["start"]  # nn.Linear is a leaf: no nesting

    handles = []
    for name, module in model.named_modules():
        stage = _stage_of(name)
        if stage is not None:
            handles.append(module.register_forward_pre_hook(lambda m, a, s=stage: meter.enter(s)))
            handles.append(module.register_forward_hook(lambda m, a, o, s=stage: meter.exit(s)))
        if type(module) is nn.Linear:
            handles.append(module.register_forward_pre_hook(linear_enter))
            handles.append(module.register_forward_hook(linear_exit))
    try:
        with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
            if product_calls is None:
                model(**inputs)
            else:
                with product_calls:
                    model(**inputs)
    finally:
        for h in handles:
            h.remove()
    flops = meter.finish()
    flops["total"] = counter.get_total_flops()
    flops["nn_linear"] = linear["flops"]
    return flops


def matmul_gflops(dtype: torch.dtype, size: int = 4096, reps: int = 3) -> float:
    """Sustained GFLOP/s of a ``size``² matmul in ``dtype`` (best of ``reps`` after one warm-up)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def group_totals(flops: dict[str, int]) -> dict[str, int]:
    groups: dict[str, int] = {}
    for stage in STAGES:
        groups[stage.group] = groups.get(stage.group, 0) + flops[stage.name]
    return groups


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="official", help="official or tiny")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--text-len", type=int, default=12, help="text tokens incl. <s> and </s>")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for the matmul timing")
    ap.add_argument("--matmul-size", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3, help="timed matmuls per dtype")
    ap.add_argument("--no-matmul", action="store_true", help="count FLOPs only")
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args(argv)

    cfg = RS2SAM2Config.from_preset(args.preset)
    t = time.perf_counter()
    calls = ProductCalls()
    flops = count_flops(cfg, batch=args.batch, text_len=args.text_len, product_calls=calls)
    count_s = time.perf_counter() - t
    total = flops["total"]
    result: dict = {
        "preset": args.preset,
        "batch": args.batch,
        "image_size": cfg.image_size,
        "union_image_size": cfg.union_encoder.img_size,
        "text_tokens": args.text_len,
        "count_device": "meta",
        "count_s": round(count_s, 2),
        "gflop": {k: round(v / 1e9, 3) for k, v in flops.items()},
        "gflop_by_group": {k: round(v / 1e9, 3) for k, v in group_totals(flops).items()},
    }
    if not args.no_matmul:
        torch.set_num_threads(args.threads)
        fp32 = matmul_gflops(torch.float32, args.matmul_size, args.reps)
        bf16 = matmul_gflops(torch.bfloat16, args.matmul_size, args.reps)
        result["matmul"] = {
            "threads": torch.get_num_threads(),
            "size": args.matmul_size,
            "fp32_gflops_per_s": round(fp32, 1),
            "bf16_gflops_per_s": round(bf16, 1),
        }
        result["lower_bound_s"] = {"fp32": round(total / 1e9 / fp32, 3), "bf16": round(total / 1e9 / bf16, 3)}
        # The same products at the model's own shapes (small ones run far below the 4096² rate): the time
        # a forward needs for its matmuls alone; forward.py's median over this = share spent in them.
        result["products_alone_s"] = {
            name: {
                "dense_layers": round(dense := products_seconds(calls.calls, dtype, _DENSE_OPS), 3),
                "attention": round(attention := products_seconds(calls.calls, dtype, _ATTENTION_OPS), 3),
                "total": round(dense + attention, 3),
            }
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
        }
    print(json.dumps(result, ensure_ascii=False))

    print(f"\n{'stage':<24}{'group':<28}{'GFLOP':>12}{'share':>8}")
    for stage in STAGES:
        v = flops[stage.name]
        print(f"{stage.name:<24}{stage.group:<28}{v / 1e9:>12.3f}{100 * v / total:>7.2f}%")
    if flops[UNATTRIBUTED]:
        print(f"{UNATTRIBUTED:<24}{'':<28}{flops[UNATTRIBUTED] / 1e9:>12.3f}")
    print(f"{'total':<52}{total / 1e9:>12.3f}")
    print(f"{'  of which in nn.Linear (int8 with --quantize)':<52}{flops['nn_linear'] / 1e9:>12.3f}", end="")
    print(f"{100 * flops['nn_linear'] / total:>7.2f}%")
    print()
    for group, v in group_totals(flops).items():
        print(f"{group:<52}{v / 1e9:>12.3f}{100 * v / total:>7.2f}%")
    if "matmul" in result:
        m = result["matmul"]
        print(
            f"\nmatmul {m['size']}² on {m['threads']} threads: fp32 {m['fp32_gflops_per_s']:.0f} GFLOP/s, "
            f"bf16 {m['bf16_gflops_per_s']:.0f} GFLOP/s → forward ≥ {result['lower_bound_s']['fp32']:.2f} s "
            f"fp32 ({result['lower_bound_s']['bf16']:.2f} s at the bf16 rate)"
        )
        for name, p in result["products_alone_s"].items():
            print(
                f"its products alone, at their own shapes, {name}: {p['total']:.2f} s (dense layers "
                f"{p['dense_layers']:.2f} s, attention {p['attention']:.2f} s)"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
