"""What limits a trained model: its prompt generator or its decoder? Prints JSON.

For every sample of a split (the image at the model's input size, its target reduced to the 14×14
pseudo-mask grid as training does), three forwards of the same model:

* ``own_prompt``: the model as it is (SAM2's dense prompt = the mask prompt generator's pseudo-mask);
* ``oracle_prompt``: the dense prompt replaced by the target on the grid (``forward(forced_prompt=...)``,
  the teacher-forcing path) — what the decoder reaches when the prompt is right;
* ``blank_prompt``: the dense prompt replaced by zeros — what the decoder does from the text and the
  sparse token alone.

and how well the pseudo-mask localises the target: the share of samples whose highest cell lies on the
target (``peak_in_target``), and its mean on target / background cells. mIoU / oIoU are computed at the
model's input size (S×S), so they differ slightly from ``rs2sam2 evaluate --resolution native``.

    python benchmarks/prompt_oracle.py --model demo/rs2sam2-tiny-synthetic --data DIR/test --split test
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from rs2sam2.data.readers import open_dataset
from rs2sam2.evaluate import load_model_and_processor, peak_in_target, pseudo_mask_separation
from rs2sam2.metrics import MetricAccumulator
from rs2sam2.processing import grid_target


def run(model_path: str | None, data: str, split: str, limit: int | None, batch_size: int) -> dict:
    model, processor = load_model_and_processor(model_path, device="cpu")
    model.eval()
    dataset = open_dataset(data, split)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    size, grid = model.config.image_size, model.config.union_encoder.grid_size
    variants = ("own_prompt", "oracle_prompt", "blank_prompt")
    acc = {v: MetricAccumulator(eval_size=None) for v in variants}
    peak_hits, on_means, off_means = 0, [], []
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, n))]
        inputs = processor([it["image"] for it in items], [it["expression"] for it in items]).model_inputs()
        masks = [torch.as_tensor(it["mask"], dtype=torch.float32)[None, None] for it in items]
        target = torch.cat([F.interpolate(m, size=(size, size), mode="nearest") for m in masks])[:, 0] > 0.5
        cells = grid_target(target, grid)  # (B, 1, g, g)
        prompts = {"own_prompt": None, "oracle_prompt": cells, "blank_prompt": torch.zeros_like(cells)}
        with torch.inference_mode():
            for name, forced in prompts.items():
                out = model(**inputs, forced_prompt=forced)
                pred = out.logits[:, 0] > model.config.mask_threshold
                for i, u in zip((pred & target).flatten(1).sum(1), (pred | target).flatten(1).sum(1)):
                    acc[name].add_iu(int(i), int(u))
                if name == "own_prompt":
                    peak_hits += int(peak_in_target(out.pseudo_mask, target).sum())
                    on, off = pseudo_mask_separation(out.pseudo_mask, target)
                    on_means += [float(v) for v in on if not torch.isnan(v)]
                    off_means += [float(v) for v in off]
    result = {"model": model_path or "bundled", "data": data, "split": split, "samples": n}
    for name in variants:
        m = acc[name].compute()
        result[name] = {k: round(float(m[k]), 2) for k in ("mIoU", "oIoU", "Pr@0.5")}
    result["pseudo_mask"] = {
        "peak_in_target_percent": round(100 * peak_hits / n, 2),
        "mean_on_target": round(sum(on_means) / max(len(on_means), 1), 4),
        "mean_on_background": round(sum(off_means) / max(len(off_means), 1), 4),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--data", required=True, help="manifest.jsonl or a folder holding one")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    result = run(args.model, args.data, args.split, args.limit, args.batch_size)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
