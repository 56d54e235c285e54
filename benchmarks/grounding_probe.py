"""How fast can a union encoder of a given size learn to find the referred object? Prints JSON lines.

A probe for choosing the union encoder (BEiT-3) size of a model trained from random weights: it trains
only the union encoder and the mask prompt generator, on the pseudo-mask loss (``bce_softmax``), from
scratch or from a model folder, and every ``--eval-every`` steps reports how often the pseudo-mask's
highest cell lies on the target on the val split (``peak``, %; :func:`rs2sam2.evaluate.peak_in_target`).
Unlike ``rs2sam2 train --stage grounding`` it keeps every image preprocessed in memory
(the 224² union-encoder input, stored as float16) and runs a fixed sample budget with a warm-up and a cosine
schedule, so probes of different sizes compare at equal samples seen.

    python benchmarks/grounding_probe.py --data DIR/train --out probe.jsonl --samples 46496 \\
        --union-encoder '{"num_layers": 8}'

``DIR/train`` is the train/val folder of ``demo/build_default_model.py --steps data``. The preprocessed
images are cached in ``DIR/train/.grounding_probe_cache.pt`` (about 0.75 GB for its 2,500 images).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rs2sam2 import RS2SAM2Config
from rs2sam2.evaluate import peak_in_target
from rs2sam2.modeling.prompt_generator import MaskPromptGenerator
from rs2sam2.modeling.union_encoder import UnionEncoder
from rs2sam2.processing import RS2SAM2Processor, grid_target
from rs2sam2.training.losses import pseudo_mask_loss
from rs2sam2.weights.bundled import default_model_dir

CACHE_NAME = ".grounding_probe_cache.pt"


def load_split_tensors(data: Path, processor: RS2SAM2Processor, grid: int) -> dict:
    """Every sample of ``data/manifest.jsonl`` as tensors: images (one per image file, float16), image
    index, target on the ``grid``, token ids, attention mask, split. Cached next to the manifest."""
    cache = data / CACHE_NAME
    if cache.is_file():
        cached = torch.load(cache)
        if cached["grid"].shape[-1] == grid:
            return cached
    lines = (data / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    images, index_of = [], {}
    for r in records:
        if r["image"] not in index_of:
            index_of[r["image"]] = len(images)
            _, union, _ = processor.preprocess_image(Image.open(data / r["image"]).convert("RGB"))
            images.append(union.half())
    masks = torch.stack([torch.from_numpy(np.array(Image.open(data / r["mask"])) > 0) for r in records])
    ids, attention = processor.tokenize([r["expression"] for r in records])
    tensors = {
        "images": torch.stack(images),
        "image": torch.tensor([index_of[r["image"]] for r in records]),
        "grid": grid_target(masks, grid),
        "ids": ids,
        "attention": attention,
        "split": [r["split"] for r in records],
    }
    torch.save(tensors, cache)
    return tensors


def run(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    base = Path(args.init) if args.init else default_model_dir()
    config = RS2SAM2Config.from_json(base / "config.json")
    for key, value in json.loads(args.union_encoder).items():
        setattr(config.union_encoder, key, value)
    processor = RS2SAM2Processor.from_pretrained(base, config)
    ue_config = config.union_encoder
    grid = ue_config.grid_size
    union = UnionEncoder(ue_config)
    generator = MaskPromptGenerator(
        ue_config.embed_dim, config.text_dim, num_heads=config.prompt_generator.num_heads, grid_size=grid,
        prompt_size=config.image_size // 4,
    )  # fmt: skip
    if args.init:
        from safetensors.torch import load_file

        weights = load_file(base / "model.safetensors")
        for prefix, module in (("union_encoder.", union), ("prompt_generator.", generator)):
            module.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    data = load_split_tensors(Path(args.data), processor, grid)
    train = [i for i, s in enumerate(data["split"]) if s == "train"]
    val = [i for i, s in enumerate(data["split"]) if s == "val"]
    params = [*union.parameters(), *generator.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)

    def forward(index) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index)
        ids, attention = data["ids"][index], data["attention"][index]
        length = int(attention.sum(1).max())
        out = union(data["images"][data["image"][index]].float(), ids[:, :length], attention[:, :length])
        return generator(out.cls_token, out.patch_tokens).pseudo_logits, data["grid"][index]

    @torch.no_grad()
    def peak() -> float:
        union.eval(), generator.eval()
        hits = 0
        for start in range(0, len(val), 64):
            logits, target = forward(val[start : start + 64])
            hits += int(peak_in_target(logits, target[:, 0]).sum())
        union.train(), generator.train()
        return round(100 * hits / max(len(val), 1), 2)

    start, step, rng, records = time.time(), 0, np.random.default_rng(0), []

    def progress() -> float:
        if args.samples:
            return step * args.batch_size / args.samples
        return (time.time() - start) / (60 * args.minutes)

    def emit(record: dict) -> None:
        records.append(record)
        print(json.dumps(record), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    while progress() < 1:
        order = rng.permutation(train)
        for first in range(0, len(order) - args.batch_size + 1, args.batch_size):
            cosine = 0.5 * (1 + math.cos(math.pi * min(progress(), 1)))
            lr = args.lr * min(1, (step + 1) / args.warmup) * cosine
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits, target = forward(order[first : first + args.batch_size])
            loss = pseudo_mask_loss(logits, target[:, 0], kind="bce_softmax")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            if step % args.eval_every == 0:
                emit({"step": step, "samples": step * args.batch_size, "seconds": round(time.time() - start),
                      "loss": round(loss.item(), 3), "peak": peak()})  # fmt: skip
            if progress() >= 1:
                break
    emit({"step": step, "samples": step * args.batch_size, "seconds": round(time.time() - start),
          "final": True, "peak": peak()})  # fmt: skip
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with manifest.jsonl (train and val splits)")
    ap.add_argument("--out", help="also append the JSON lines to this file")
    ap.add_argument("--init", help="start from this model folder (default: random weights)")
    ap.add_argument("--union-encoder", default="{}", help="JSON overrides of the union encoder config")
    ap.add_argument("--samples", type=int, default=0, help="sample budget (the cosine runs over it)")
    ap.add_argument("--minutes", type=float, default=20.0, help="time budget when --samples is 0")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
