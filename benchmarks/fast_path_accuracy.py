"""How far the fast CPU paths (bf16 weights, int8 dynamic quantisation) move the output from fp32.

For each fast path: the largest absolute logit difference to the fp32 path, and the IoU of its mask
(logit > threshold, at native size) with the fp32 mask — on the bundled model over the demo examples and
a held-out synthetic test set, and on the ``official`` preset with random weights (one 1024² input).
Prints one JSON object. Examples::

    python benchmarks/fast_path_accuracy.py                    # bundled model + official preset
    python benchmarks/fast_path_accuracy.py --skip-official --test-data data/synth_test/manifest.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
PATHS = ("bfloat16", "int8")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0  # both empty: identical


def _fast_models(model):
    from rs2sam2.predictor import quantize_int8

    yield "bfloat16", copy.deepcopy(model).to(torch.bfloat16)
    yield "int8", quantize_int8(copy.deepcopy(model))


def _summary(ref: list[np.ndarray], got: list[np.ndarray], errors: list[float]) -> dict:
    """Mask agreement of a fast path with fp32 over samples. Besides per-sample IoU: the pooled IoU (all
    samples' pixels together, as oIoU pools them) and, for the samples under IoU 0.98, how many pixels
    flipped and how large the fp32 mask is — on small masks one flipped border pixel costs 1–2 %."""
    ious = np.asarray([_iou(a, b) for a, b in zip(ref, got)])
    inter = sum(int(np.logical_and(a, b).sum()) for a, b in zip(ref, got))
    union = sum(int(np.logical_or(a, b).sum()) for a, b in zip(ref, got))
    low = [i for i, v in enumerate(ious) if v < 0.98]
    return {
        "samples": len(ious),
        "mask_iou_mean": round(float(ious.mean()), 4),
        "mask_iou_min": round(float(ious.min()), 4),
        "share_iou_ge_0.98": round(float(np.mean(ious >= 0.98)), 4),
        "pooled_mask_iou": round(inter / union, 4) if union else 1.0,
        "under_0.98_flipped_pixels_median": float(np.median([np.sum(ref[i] != got[i]) for i in low]))
        if low
        else 0.0,
        "under_0.98_fp32_mask_pixels_median": float(np.median([ref[i].sum() for i in low])) if low else 0.0,
        "logit_max_abs_error": round(float(np.max(errors)), 4),
    }


def bundled(test_data: str | None, limit: int) -> dict:
    """Fast paths vs fp32 of the bundled model on the demo examples (+ a test set)."""
    from PIL import Image

    from rs2sam2 import RS2SAM2Predictor
    from rs2sam2.predictor import DEFAULT_MODEL

    pairs = [
        (REPO / e["image"], e["expression"])
        for e in json.loads((REPO / "demo" / "examples.json").read_text())
    ]
    if test_data:
        from rs2sam2.data.readers import read_samples

        pairs += [(s.image_path, s.expression) for s in read_samples(test_data, "test")[:limit]]
    reference = RS2SAM2Predictor.from_pretrained(DEFAULT_MODEL)
    images = {p: Image.open(p).convert("RGB") for p in {p for p, _ in pairs}}
    ref = [reference.predict(images[p], t) for p, t in pairs]
    out = {}
    for name, model in _fast_models(reference.model):
        fast = RS2SAM2Predictor(
            model, reference.processor, dtype=torch.bfloat16 if name == "bfloat16" else None
        )
        preds = [fast.predict(images[p], t) for p, t in pairs]
        errors = [float(np.abs(a.logits - b.logits).max()) for a, b in zip(ref, preds)]
        out[name] = _summary([a.mask for a in ref], [b.mask for b in preds], errors)
    return out


def official(seed: int) -> dict:
    """Fast paths vs fp32 of the ``official`` preset, random weights, one random 1024² input."""
    from rs2sam2 import RS2SAM2, RS2SAM2Config

    torch.manual_seed(seed)
    cfg = RS2SAM2Config.from_preset("official")
    model = RS2SAM2(cfg).eval()
    s, u = cfg.image_size, cfg.union_encoder.img_size
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "sam_pixels": torch.randn(1, 3, s, s, generator=g),
        "union_pixels": torch.randn(1, 3, u, u, generator=g),
        "input_ids": torch.cat(
            [torch.tensor([[0]]), torch.randint(4, 1000, (1, 10), generator=g), torch.tensor([[2]])], 1
        ),
        "attention_mask": torch.ones(1, 12, dtype=torch.bool),
    }
    thr = cfg.mask_threshold
    with torch.inference_mode():
        ref = model(**inputs).logits.float()
        out = {"threshold": thr, "fp32_foreground_share": round(float((ref > thr).float().mean()), 4)}
        for name, fast in _fast_models(model):
            dtype = torch.bfloat16 if name == "bfloat16" else torch.float32
            t0 = time.perf_counter()
            got = fast(
                **{k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
            ).logits.float()
            seconds = time.perf_counter() - t0
            # Random weights leave the mask at the model's threshold (nearly) empty; the masks at the fp32
            # logits' median (half of the image foreground) show how far the fast path moves the map.
            median = float(ref.median())
            out[name] = {
                **_summary([(ref > thr).numpy()], [(got > thr).numpy()], [float((ref - got).abs().max())]),
                "mask_iou_at_median_logit": round(_iou((ref > median).numpy(), (got > median).numpy()), 4),
                "logit_mean_abs_error": round(float((ref - got).abs().mean()), 4),
                "seconds": round(seconds, 2),
            }
            del fast
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test-data", help="a manifest/dataset with a 'test' split to add to the demo examples")
    ap.add_argument("--limit", type=int, default=200, help="test samples at most")
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    result = {"bundled": bundled(args.test_data, args.limit), "torch_threads": torch.get_num_threads()}
    if not args.skip_official:
        result["official_random"] = official(args.seed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
