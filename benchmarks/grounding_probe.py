"""How fast does a union encoder learn to find the referred object, and what does it miss? Prints JSON lines.

A probe for choosing the union encoder (BEiT-3) recipe of a model trained from random weights: it trains
only the union encoder and the mask prompt generator, on the pseudo-mask loss (``bce_softmax``), from
scratch or from a model folder, and every ``--eval-every`` steps reports how often the pseudo-mask's
highest cell lies on the target on the val split (``peak``, %; :func:`rs2sam2.evaluate.peak_in_target`)
and on as many training expressions (``train_peak``). On a synthetic dataset (``rs2sam2 synth``, whose
scenes it generates again) it also reports how often the peak lies on *any* object of the named category
(``peak_category``); the last record adds ``chance``, the rate of a peak on a random object of that
category, everything per expression type (``by_type``: expressions, peak, peak_category, chance), and
``position_r2``, how well a patch's row and column can be read linearly from its position vector, and
``token_position_r2``, the same from the union encoder's output patch tokens.
Unlike ``rs2sam2 train --stage grounding`` it keeps every image preprocessed in memory
(the 224² union-encoder input, stored as float16) and runs a fixed sample budget with a warm-up and a cosine
schedule, so probes compare at equal samples seen. Options beyond the model's size: ``--position-init``
(as ``rs2sam2 train``), ``--dense-aux W`` (a loss on which categories and colours each patch holds, from
the regenerated scenes), ``--train-types`` (train on some expression types only; the records add
``peak_trained_types``, the val peak on those types), ``--eval-only`` (measure the starting model),
``--save`` (keep the trained part).

    python benchmarks/grounding_probe.py --data DIR/train --out probe.jsonl --samples 46496 \\
        --union-encoder '{"num_layers": 8}'
    python benchmarks/grounding_probe.py --data DIR/train --init demo/rs2sam2-tiny-synthetic --eval-only

``DIR/train`` is the train/val folder of ``demo/build_default_model.py --steps data``. The preprocessed
images are cached in ``DIR/train/.grounding_probe_cache.pt`` (about 0.75 GB for its 2,500 images), the
regenerated scenes' labels in ``DIR/train/.grounding_probe_dense.pt`` (about 2 minutes to build).
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
from rs2sam2.data.synthetic import CATEGORIES
from rs2sam2.evaluate import peak_in_target
from rs2sam2.modeling.prompt_generator import MaskPromptGenerator
from rs2sam2.modeling.union_encoder import UnionEncoder
from rs2sam2.processing import RS2SAM2Processor, grid_target
from rs2sam2.training.losses import pseudo_mask_loss
from rs2sam2.training.positions import POSITION_INITS, init_patch_positions
from rs2sam2.weights.bundled import default_model_dir

CACHE_NAME = ".grounding_probe_cache.pt"
DENSE_CACHE_NAME = ".grounding_probe_dense.pt"


def scene_labels(data: Path, grid: int) -> dict[str, torch.Tensor]:
    """What every image of ``data`` (a ``rs2sam2 synth`` folder) holds, from its scene generated again
    (``stats.json``'s seed; generation is deterministic per image): ``cells`` (I, K, grid, grid) float,
    which categories and which colours are present in each cell, K = 7 categories + 8 colours (a cell holds
    an object when at least 4 % of the cell is that object, or it is the object's fullest cell), and
    ``counts`` (I, 7), how many objects of each category the image holds."""
    from rs2sam2.data.synthetic.dataset import generate_image
    from rs2sam2.data.synthetic.vocabulary import COLOURS

    cache = data / DENSE_CACHE_NAME
    if cache.is_file():
        cached = torch.load(cache)
        if isinstance(cached, dict) and cached["cells"].shape[-1] == grid:
            return cached
    stats = json.loads((data / "stats.json").read_text())
    lines = (data / "manifest.jsonl").read_text().splitlines()
    image_ids = list(dict.fromkeys(json.loads(line)["image_id"] for line in lines if line.strip()))
    channels = [*CATEGORIES, *COLOURS]
    labels = torch.zeros(len(image_ids), len(channels), grid, grid)
    counts = torch.zeros(len(image_ids), len(CATEGORIES))
    for n, image_id in enumerate(image_ids):
        scene, _ = generate_image(stats["seed"], int(image_id), stats["size"], 4, stats["min_target_area"])
        for obj in scene.objects:
            counts[n, CATEGORIES.index(obj.category)] += 1
            cells = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(obj.mask).float()[None], grid)[0]
            present = (cells >= 0.04) | (cells == cells.max())
            for name in (obj.category, obj.color):
                if name is not None:
                    k = channels.index(name)
                    labels[n, k] = torch.maximum(labels[n, k], present.float())
    out = {"cells": labels, "counts": counts}
    torch.save(out, cache)
    return out


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
    targets = []  # reduced to the grid a mask at a time: a whole dataset of full-size masks need not fit
    for r in records:
        mask = torch.from_numpy(np.array(Image.open(data / r["mask"])) > 0)
        targets.append(grid_target(mask[None], grid)[0])
    ids, attention = processor.tokenize([r["expression"] for r in records])
    tensors = {
        "images": torch.stack(images),
        "image": torch.tensor([index_of[r["image"]] for r in records]),
        "grid": torch.stack(targets),
        "ids": ids,
        "attention": attention,
        "split": [r["split"] for r in records],
    }
    torch.save(tensors, cache)
    return tensors


def _held_out_r2(x: torch.Tensor, coords: torch.Tensor, fit: torch.Tensor, held: torch.Tensor) -> list[float]:
    """R² on the ``held`` rows of a ridge regression (λ = 1, with intercept) fitted on the ``fit`` rows, of
    each column of ``coords`` (N, 2) from ``x`` (N, C); rounded to 3 decimals."""
    x = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    a = x[fit]
    out = []
    for y in coords.double().T:
        beta = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1], dtype=torch.float64), a.T @ y[fit])
        residual = ((x[held] @ beta - y[held]) ** 2).sum()
        out.append(round(float(1 - residual / ((y[held] - y[held].mean()) ** 2).sum()), 3))
    return out


def _patch_coords(g: int) -> torch.Tensor:
    """(g², 2): the row and column of each patch, in the union encoder's raster order."""
    return torch.stack([torch.arange(g * g) // g, torch.arange(g * g) % g], dim=1)


def _half_of_the_patches(g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random half of the g² patch positions and the other half."""
    order = torch.randperm(g * g, generator=torch.Generator().manual_seed(0))
    return order[: g * g // 2], order[g * g // 2 :]


def position_geometry(union: UnionEncoder) -> list[float]:
    """How well a patch's row and column can be read linearly from its position vector: held-out R² of a
    ridge regression (λ = 1) fitted on a fixed random half of the patches, ``[row, column]``. Near 1 for
    sine-cosine codes; near or below 0 for a table with no geometry, such as a random one."""
    cfg = union.config
    g, first = cfg.grid_size, cfg.position_offset + 1
    table = union.beit3.encoder.embed_positions.A.weight.detach()[first : first + g * g]
    fit, held = _half_of_the_patches(g)
    return _held_out_r2(table, _patch_coords(g), fit, held)


def token_geometry(patch_tokens: torch.Tensor) -> list[float]:
    """The same for the union encoder's *output* patch tokens (N, g², C) of N images, which the prompt
    generator reads: fitted on the first half of the images at half of the patch positions, R² on the other
    images at the other positions, ``[row, column]``. A sentence such as "in the lower half" can only select
    cells through a linear function of these tokens; below 0 there is no such geometry to use."""
    n, p, c = patch_tokens.shape
    g = math.isqrt(p)
    fit_at, held_at = _half_of_the_patches(g)
    images = torch.arange(n)
    fit = (images[: n // 2, None] * p + fit_at[None]).flatten()
    held = (images[n // 2 :, None] * p + held_at[None]).flatten()
    coords = _patch_coords(g).repeat(n, 1)
    return _held_out_r2(patch_tokens.detach().reshape(n * p, c), coords, fit, held)


def split_indices(
    splits: list[str], type_of: dict[int, str], val_split: str, train_types: list[str] | None
) -> tuple[list[int], list[int], list[int]]:
    """The samples trained on, the samples measured (split ``val_split``) and, of those, the ones of the
    trained types: all of them without ``train_types``, else only expressions of those types (``type_of``:
    sample index -> expression type). Unknown types or an empty split are a clear error."""
    train = [i for i, s in enumerate(splits) if s == "train"]
    val = [i for i, s in enumerate(splits) if s == val_split]
    if not val:
        raise SystemExit(f"no expressions of split {val_split!r} in the dataset")
    if not train_types:
        return train, val, val
    unknown = sorted(set(train_types) - set(type_of.values()))
    if unknown:
        known = sorted(set(type_of.values())) or "none (no expression_types.json)"
        raise SystemExit(f"--train-types: unknown expression types {unknown}; the dataset has {known}")
    train = [i for i in train if type_of[i] in train_types]
    return train, val, [i for i in val if type_of[i] in train_types]


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
    init_patch_positions(union, args.position_init)
    data = load_split_tensors(Path(args.data), processor, grid)
    lines = (Path(args.data) / "manifest.jsonl").read_text().splitlines()
    manifest = [json.loads(line) for line in lines if line.strip()]
    aux_head, labels, category = None, None, None
    if (Path(args.data) / "stats.json").is_file():  # a synthetic dataset: every object is known
        scenes = scene_labels(Path(args.data), grid)
        labels = scenes["cells"]
        category = torch.tensor([CATEGORIES.index(r["category"]) for r in manifest])
    if args.dense_aux:
        if labels is None:
            raise SystemExit("--dense-aux needs a synthetic dataset (rs2sam2 synth: stats.json)")
        aux_head = torch.nn.Linear(ue_config.embed_dim, labels.shape[1])
    params = [*union.parameters(), *generator.parameters(), *(aux_head.parameters() if aux_head else ())]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)

    def forward(index) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pseudo-mask logits, grid targets and the union encoder's patch tokens of samples ``index``."""
        index = torch.as_tensor(index)
        ids, attention = data["ids"][index], data["attention"][index]
        length = int(attention.sum(1).max())
        out = union(data["images"][data["image"][index]].float(), ids[:, :length], attention[:, :length])
        logits = generator(out.cls_token, out.patch_tokens).pseudo_logits
        return logits, data["grid"][index], out.patch_tokens

    type_of = {}
    if (Path(args.data) / "expression_types.json").is_file():
        types = json.loads((Path(args.data) / "expression_types.json").read_text())
        type_of = {i: types.get(r["id"], "unknown") for i, r in enumerate(manifest)}

    train, val, val_trained = split_indices(data["split"], type_of, args.val_split, args.train_types)
    if len(train) < args.batch_size and not args.eval_only:
        raise SystemExit(f"{len(train)} training expressions, fewer than a batch of {args.batch_size}")

    @torch.no_grad()
    def peak(by_type: bool = False, split: list[int] = val) -> dict:
        """% of the ``split`` (val) expressions whose pseudo-mask peaks on the target, and (synthetic data)
        on any object of the named category: the gap between the two is choosing the wrong instance.
        ``by_type``: also ``chance``, the rate of a pseudo-mask that peaks on a random object of the named
        category (the mean of 1 / that category's objects in the scene), and all per expression type,
        ``{type: [expressions, peak, peak_category, chance]}``."""
        union.eval(), generator.eval()
        hits, on_category, chance = [], [], []
        for start in range(0, len(split), 64):
            index = torch.tensor(split[start : start + 64])
            logits, target, _ = forward(index)
            hits += peak_in_target(logits, target[:, 0]).tolist()
            if labels is not None:
                cells = labels[data["image"][index], category[index]].flatten(1)  # (B, g²) named category
                cells = torch.maximum(cells, target[:, 0].flatten(1))  # the target counts in full
                on_category += (cells.gather(1, logits.flatten(1).argmax(1, keepdim=True))[:, 0] > 0).tolist()
                chance += (1 / scenes["counts"][data["image"][index], category[index]]).tolist()
        union.train(), generator.train()

        def percent(flags: list) -> float:
            return round(100 * sum(flags) / max(len(flags), 1), 2)

        out = {"peak": percent(hits)}
        if labels is not None:
            out["peak_category"] = percent(on_category)
        if by_type and labels is not None:
            out["chance"] = percent(chance)
        if by_type and type_of and labels is not None:
            groups: dict[str, list[int]] = {}
            for j, i in enumerate(split):
                groups.setdefault(type_of[i], []).append(j)
            out["by_type"] = {
                t: [len(js), *(percent([flags[j] for j in js]) for flags in (hits, on_category, chance))]
                for t, js in sorted(groups.items(), key=lambda kv: -len(kv[1]))
            }
        return out

    @torch.no_grad()
    def val_token_geometry() -> list[float]:
        """:func:`token_geometry` of the output patch tokens of the first (up to) 200 val expressions."""
        union.eval(), generator.eval()
        first = val[:200]
        tokens = torch.cat([forward(first[i : i + 64])[2] for i in range(0, len(first), 64)])
        union.train(), generator.train()
        return token_geometry(tokens)

    # A fixed sample of training expressions, as many as val, measured the same way: the gap between the two
    # tells memorising from learning.
    train_probe = sorted(
        np.random.default_rng(1).choice(train, min(len(train), len(val)), replace=False).tolist()
    )
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

    while progress() < 1 and not args.eval_only:
        order = rng.permutation(train)
        for first in range(0, len(order) - args.batch_size + 1, args.batch_size):
            cosine = 0.5 * (1 + math.cos(math.pi * min(progress(), 1)))
            lr = args.lr * min(1, (step + 1) / args.warmup) * cosine
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = torch.as_tensor(order[first : first + args.batch_size])
            logits, target, patches = forward(index)
            loss = pseudo_mask_loss(logits, target[:, 0], kind="bce_softmax")
            if aux_head is not None:  # which categories and colours each patch holds
                cells = aux_head(patches).transpose(1, 2).reshape(len(index), -1, grid, grid)
                truth = labels[data["image"][index]]
                dense = torch.nn.functional.binary_cross_entropy_with_logits(cells, truth)
                loss = loss + args.dense_aux * dense
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            if step % args.eval_every == 0:
                trained = {}
                if args.train_types:  # None: the val split holds no expression of those types
                    trained["peak_trained_types"] = peak(split=val_trained)["peak"] if val_trained else None
                emit({"step": step, "samples": step * args.batch_size, "seconds": round(time.time() - start),
                      "loss": round(loss.item(), 3), **peak(),
                      "train_peak": peak(split=train_probe)["peak"], **trained})  # fmt: skip
            if progress() >= 1:
                break
    emit({"step": step, "samples": step * args.batch_size, "seconds": round(time.time() - start),
          "final": True, **peak(by_type=True), "position_r2": position_geometry(union),
          "token_position_r2": val_token_geometry()})  # fmt: skip
    if args.save:
        from safetensors.torch import save_file

        weights = {f"union_encoder.{k}": v for k, v in union.state_dict().items()}
        weights |= {f"prompt_generator.{k}": v for k, v in generator.state_dict().items()}
        save_file({k: v.contiguous() for k, v in weights.items()}, args.save)
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
    ap.add_argument(
        "--position-init",
        choices=POSITION_INITS,
        default="model",
        help="patch positions: the model's table, 2-D sine-cosine codes instead, or added to it",
    )
    ap.add_argument(
        "--dense-aux", type=float, default=0.0, help="weight of a loss: categories/colours per patch"
    )
    ap.add_argument(
        "--train-types", nargs="+", help="train on these expression types only (expression_types.json)"
    )
    ap.add_argument("--eval-only", action="store_true", help="only evaluate the starting model")
    ap.add_argument("--val-split", default="val", help="the split measured (default: val)")
    ap.add_argument("--save", help="write the trained union encoder + prompt generator (.safetensors)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
