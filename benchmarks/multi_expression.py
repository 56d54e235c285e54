"""Throughput for several expressions on one image: one batched forward against one forward per sentence.

RS2-SAM2 conditions every image-encoder block on the sentence, so nothing but the image preprocessing can
be shared between the sentences of one image; batching them only lets the matmuls run on more rows at once.
For each number of sentences N it reports the seconds per image and the expressions per second of both
ways, and the largest logit difference between them (they compute the same thing).

* ``--preset tiny|official``: random weights, model inputs built directly (batch N vs N × batch 1).
* ``--bundled``: the bundled model through ``RS2SAM2Predictor.predict_batch`` vs ``predict`` per sentence,
  on a demo example with real sentences (preprocessing and post-processing included).

Prints one JSON object per configuration. Examples::

    python benchmarks/multi_expression.py --bundled --n 1 4 8 16
    python benchmarks/multi_expression.py --preset official --n 1 4 --repeats 1
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
SENTENCES = [
    "the vehicle nearest to the playing field",
    "the largest building",
    "the white storage tank",
    "the tree clump at the top left",
    "the ship closest to the shore",
    "the second building from the left",
    "the small red vehicle",
    "the airplane on the apron",
]


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _row(name: str, n: int, sequential_s: float, batched_s: float, max_diff: float) -> dict:
    return {
        "model": name,
        "expressions": n,
        "threads": torch.get_num_threads(),
        "sequential_s_per_image": round(sequential_s, 4),
        "batched_s_per_image": round(batched_s, 4),
        "sequential_expressions_per_s": round(n / sequential_s, 2),
        "batched_expressions_per_s": round(n / batched_s, 2),
        "batched_speedup": round(sequential_s / batched_s, 3),
        "logit_max_abs_diff": max_diff,
    }


def _one_by_one(model, sam, union, ids, mask) -> torch.Tensor:
    return torch.cat([model(sam, union, ids[i : i + 1], mask[i : i + 1]).logits for i in range(len(ids))])


def _batched(model, sam, union, ids, mask) -> torch.Tensor:
    n = len(ids)
    return model(sam.expand(n, -1, -1, -1), union.expand(n, -1, -1, -1), ids, mask).logits


def random_preset(preset: str, counts: list[int], repeats: int) -> list[dict]:
    from rs2sam2 import RS2SAM2, RS2SAM2Config

    torch.manual_seed(0)
    cfg = RS2SAM2Config.from_preset(preset)
    model = RS2SAM2(cfg).eval()
    s, u = cfg.image_size, cfg.union_encoder.img_size
    sam, union = torch.randn(1, 3, s, s), torch.randn(1, 3, u, u)
    rows = []
    with torch.inference_mode():
        model(sam, union, torch.tensor([[0, 5, 2]]), torch.ones(1, 3, dtype=torch.bool))  # warm-up
        for n in counts:
            ids = torch.randint(4, 300, (n, 12), generator=torch.Generator().manual_seed(n))
            ids[:, 0], ids[:, -1] = 0, 2
            mask = torch.ones(n, 12, dtype=torch.bool)

            sequential = functools.partial(_one_by_one, model, sam, union, ids, mask)
            batched = functools.partial(_batched, model, sam, union, ids, mask)

            seq_s, a = _timed(sequential, repeats)
            bat_s, b = _timed(batched, repeats)
            rows.append(_row(f"{preset} (random weights)", n, seq_s, bat_s, float((a - b).abs().max())))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _predict_each(predictor, image, texts: list[str]) -> list:
    return [predictor.predict(image, t) for t in texts]


def bundled(counts: list[int], repeats: int) -> list[dict]:
    import numpy as np
    from PIL import Image

    from rs2sam2 import RS2SAM2Predictor

    example = json.loads((REPO / "demo" / "examples.json").read_text())[0]
    image = Image.open(REPO / example["image"]).convert("RGB")
    predictor = RS2SAM2Predictor.from_pretrained()
    predictor.predict(image, SENTENCES[0])  # warm-up
    rows = []
    for n in counts:
        texts = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
        seq_s, a = _timed(functools.partial(_predict_each, predictor, image, texts), repeats)
        bat_s, b = _timed(functools.partial(predictor.predict_batch, image, texts), repeats)
        diff = max(float(np.abs(x.logits - y.logits).max()) for x, y in zip(a, b))
        rows.append(_row("bundled (predictor)", n, seq_s, bat_s, diff))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", choices=["tiny", "official"], help="random-weight preset(s)")
    ap.add_argument("--bundled", action="store_true", help="the bundled model through the predictor")
    ap.add_argument("--n", type=int, nargs="+", default=[1, 4, 8], help="sentences per image")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per configuration (median)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    if not args.preset and not args.bundled:
        args.bundled = True
    rows = bundled(args.n, args.repeats) if args.bundled else []
    for preset in args.preset or []:
        rows += random_preset(preset, args.n, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
