"""benchmarks/flops.py: per-stage FLOP counts on the ``meta`` device."""

from __future__ import annotations

import pytest
import torch

from rs2sam2 import RS2SAM2Config

from ..conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


flops_bench = load_benchmark("flops")
STAGE_NAMES = [s.name for s in flops_bench.STAGES]


def test_tiny_stages_sum_to_total(tiny_config):
    flops = flops_bench.count_flops(tiny_config)
    assert flops["unattributed"] == 0  # every counted op runs inside some stage's module
    assert sum(flops[name] for name in STAGE_NAMES) == flops["total"]
    assert all(flops[name] > 0 for name in STAGE_NAMES), flops
    groups = flops_bench.group_totals(flops)
    assert sum(groups.values()) == flops["total"]
    assert 0 < flops["nn_linear"] < flops["total"]


def test_meta_count_equals_real_cpu_count(tiny_config):
    # meta tensors do no arithmetic; the count must still be the one of a real forward (same SDPA path)
    assert flops_bench.count_flops(tiny_config, device="meta") == flops_bench.count_flops(
        tiny_config, device="cpu"
    )


def test_cpu_inference_bands_do_the_same_arithmetic(tiny_config):
    # the banded CPU inference path (window rows, FPN rows) adds no work: same total as one piece
    one_piece = flops_bench.count_flops(tiny_config, device="cpu")
    banded = flops_bench.count_flops(tiny_config, device="cpu", chunk_tokens=500)
    assert banded["total"] == one_piece["total"]
    # really banded: the bands call the fusion attention's parts directly, outside the stage hooks
    assert banded["unattributed"] > 0 == one_piece["unattributed"]


def test_official_counts_match_reference():
    # Meta device, no arithmetic: ~4 s (Hiera is built on the CPU, then moved: ~0.9 GB for a moment).
    flops = flops_bench.count_flops(RS2SAM2Config.from_preset("official"), batch=1, text_len=12)
    gflop = {k: v / 1e9 for k, v in flops.items()}
    assert gflop["total"] == pytest.approx(2126, rel=0.03)
    assert gflop["hiera_blocks"] + gflop["fusion_layers"] == pytest.approx(1979, rel=0.03)
    assert gflop["fusion_layers"] == pytest.approx(167, rel=0.03)
    assert gflop["union_encoder"] == pytest.approx(131, rel=0.03)
    rest = gflop["total"] - gflop["hiera_blocks"] - gflop["fusion_layers"] - gflop["union_encoder"]
    assert 0 < rest < 20
    assert flops["nn_linear"] / flops["total"] == pytest.approx(0.88, abs=0.02)  # what int8 speeds up


def test_products_are_recorded_with_their_shapes_and_replayed(tiny_config):
    calls = flops_bench.ProductCalls()
    flops = flops_bench.count_flops(tiny_config, product_calls=calls)
    ops = {str(func) for func, _ in calls.calls}
    assert {"aten.linear.default", "aten.conv2d.default", "aten.scaled_dot_product_attention.default"} <= ops
    # the linear calls' FLOPs, from their recorded shapes (2·M·K·N), cover every nn.Linear and stay in total
    linear = 0
    for (func, spec), count in calls.calls.items():
        if str(func) == "aten.linear.default":
            (_, x_shape, _), (_, w_shape, _) = spec[0], spec[1]
            m = 1
            for d in x_shape[:-1]:
                m *= d
            linear += 2 * m * w_shape[0] * w_shape[1] * count
    assert flops["nn_linear"] <= linear < flops["total"]
    # replay: real tensors of the recorded shapes and dtypes, timed per call
    assert flops_bench.products_seconds(calls.calls, torch.float32) > 0
    assert flops_bench.products_seconds(calls.calls, torch.float32, ops=()) == 0
    mask = flops_bench._operand(("tensor", (1, 1, 3, 4), torch.bool), torch.bfloat16)
    assert mask.dtype == torch.bool and mask.shape == (1, 1, 3, 4)
    assert flops_bench._operand(("tensor", (2, 5), torch.float32), torch.bfloat16).dtype == torch.bfloat16
