"""``rs2sam2 train``: its arguments, and the run they describe (model, processor, datasets, a
:class:`~rs2sam2.training.trainer.Trainer`). The training itself is :mod:`rs2sam2.training`, imported when
the command runs.

Options that have a TrainConfig field default to None here, which means "TrainConfig's default"
(:func:`train_config_from_args` drops them), so the defaults live in one place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import PRESETS, RS2SAM2Config
from .common import add_threads_argument

if TYPE_CHECKING:
    from ..processing import RS2SAM2Processor
    from ..training.config import TrainConfig
    from ..weights.pretrained import RS2SAM2

# Copies of rs2sam2.training.config.SCHEDULES / PRECISIONS / STAGES, rs2sam2.training.losses.LOSS_VARIANTS,
# rs2sam2.training.positions.POSITION_INITS,
# FREEZE_POLICIES and rs2sam2.evaluate.RESOLUTIONS, so that --help does not import torch
# (tests/cli/test_cli.py checks they agree).
SCHEDULES = ("constant", "official", "paper")
PRECISIONS = ("bf16", "fp32")
LOSS_VARIANTS = ("differentiable", "official", "paper")
FREEZE_POLICIES = ("official", "full")
RESOLUTIONS = ("official", "native")
STAGES = ("full", "grounding")
POSITION_INITS = ("model", "sincos", "add-sincos")

DESCRIPTION = """\
Train or fine-tune RS2-SAM2, in one process or under torchrun (one process per GPU, DistributedDataParallel).

The defaults are the official recipe: one sample per sentence, AdamW with weight decay 0.01, learning rate
5e-5 (1e-4 for the fusion layers and the mask prompt generator), the loss 0.9 cross-entropy + 0.1 Dice +
0.2 text-boundary loss, seed 2401. After every epoch the model is evaluated on the validation split and the
epoch with the best mIoU + oIoU is saved as a model folder OUT/best. OUT/checkpoint.pt (written after every
epoch, and every --save-every-steps steps) lets --resume continue exactly where a run stopped; the metrics
go to OUT/metrics.jsonl, one JSON object per line.
"""


def add_cli_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune RS2-SAM2 (single process or torchrun)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("data and output")
    g.add_argument("--data", required=True, help="manifest.jsonl, a folder holding one, or a benchmark root")
    g.add_argument("--out", required=True, help="output folder (checkpoint, metrics.jsonl, best/)")
    g.add_argument("--train-split", help="split to train on (default: train)")
    g.add_argument("--val-split", help="model selection split (default: val; 'none' to skip)")
    g.add_argument("--occlusion", action="store_true", help="RRSIS-D random-box occlusion (official)")
    g.add_argument(
        "--on-error",
        default="raise",
        choices=("raise", "skip"),
        help="broken samples (missing/unreadable image or mask, mask size != image size): stop with a "
        "message naming the sample (default), or check every sample first and leave them out",
    )
    g.add_argument(
        "--empty-masks",
        default="keep",
        choices=("keep", "skip", "raise"),
        help="samples whose mask is empty: train on them (default, official), leave them out, or stop",
    )
    g = p.add_argument_group("model")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default: official")
    src.add_argument("--config", default=None, help="RS2SAM2Config JSON file")
    src.add_argument("--init-from", default=None, help="start from this model folder / Hub repo")
    g.add_argument("--subfolder", default=None, help="folder inside --init-from (official: rrsisd, refseg)")
    g.add_argument("--image-size", type=int, default=None, help="override the SAM2 input side S")
    g.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the --init-from folder)")
    g.add_argument("--sam2-checkpoint", default=None, help="initialise SAM2 from a Meta SAM2 checkpoint")
    g.add_argument("--beit3-checkpoint", default=None, help="initialise the union encoder from BEiT-3")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help="default: 60")
    g.add_argument("--batch-size", type=int, help="per process (default: 1)")
    g.add_argument("--grad-accumulation", type=int, help="forwards per optimiser step (default: 1)")
    g.add_argument("--lr", type=float, help="base learning rate (default: 5e-5)")
    g.add_argument("--fusion-lr", type=float, help="learning rate of the fusion layers (default: 1e-4)")
    g.add_argument("--weight-decay", type=float, help="default: 0.01")
    g.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (default: official)")
    g.add_argument("--decay-epochs", type=int, help="'paper' schedule: the last N epochs decay (default: 10)")
    g.add_argument("--loss", choices=LOSS_VARIANTS, help="default: official")
    g.add_argument(
        "--class-weights",
        nargs=2,
        type=float,
        metavar=("BG", "FG"),
        help="CE class weights instead of the loss variant's (official 0.9 1.1), e.g. for tiny targets",
    )
    g.add_argument(
        "--pseudo-mask-loss",
        type=float,
        metavar="W",
        help="weight of a loss on the mask prompt generator's 14x14 pseudo-mask against the target (BCE + "
        "Dice; default 0 = off, as in the paper). Not part of RS2-SAM2: use it when training from random "
        "weights, where the prompt generator learns nothing from the final loss alone",
    )
    g.add_argument(
        "--pseudo-mask-kind",
        choices=("bce_dice", "bce_softmax"),
        help="form of the pseudo-mask loss: BCE + Dice (default), or BCE + a softmax over the 14x14 cells",
    )
    g.add_argument(
        "--teacher-forcing",
        type=float,
        metavar="P",
        help="probability per sample of giving SAM2 the target (on the pseudo-mask grid) as its dense "
        "prompt instead of the pseudo-mask (default 0 = off)",
    )
    g.add_argument(
        "--teacher-forcing-steps",
        type=int,
        metavar="N",
        help="lower the teacher-forcing probability linearly to 0 over N optimiser steps (0: constant)",
    )
    g.add_argument(
        "--stage",
        choices=STAGES,
        help="full (default): the whole model, as the paper. grounding: only the union encoder and the "
        "mask prompt generator, on the pseudo-mask loss alone (SAM2 is not run: about 3x the samples per "
        "second of a full step on a CPU, tiny preset); validation and the best epoch go by how often the "
        "pseudo-mask peaks on the target. Not part of RS2-SAM2: for measuring or training the grounding "
        "of a model trained from random weights; a full stage must follow for SAM2 to use new prompts",
    )
    g.add_argument(
        "--position-init",
        choices=POSITION_INITS,
        help="where the union encoder's patch position table starts: model (default: as built or loaded), "
        "sincos (fixed 2-D sine-cosine codes of each patch's row and column written over it) or add-sincos "
        "(added to it); it stays trainable. Not part of RS2-SAM2: a table trained from random weights "
        "keeps no geometry",
    )
    g.add_argument("--precision", choices=PRECISIONS, help="bf16: autocast, CUDA only (default: fp32)")
    g.add_argument("--gradient-checkpointing", action="store_true")
    g.add_argument("--freeze-policy", choices=FREEZE_POLICIES, help="what trains (default: official)")
    g.add_argument("--seed", type=int, help="default: 2401")
    g = p.add_argument_group("run")
    g.add_argument("--max-steps", type=int, default=None)
    g.add_argument("--eval-every", type=int, help="epochs (0: never; default: 1)")
    g.add_argument("--eval-resolution", choices=RESOLUTIONS, help="default: official")
    g.add_argument("--log-every", type=int, help="steps (default: 10)")
    g.add_argument("--save-every-steps", type=int, help="also checkpoint every N steps (default: 0, never)")
    g.add_argument("--workers", type=int, help="data loader processes (default: 0)")
    g.add_argument("--device", default=None)
    add_threads_argument(g)
    g.add_argument("--resume", nargs="?", const="auto", default=None, help="continue from OUT/checkpoint.pt")
    g.add_argument("--no-deterministic", action="store_true")
    g.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of ``rs2sam2 train``; options left out (None) keep its default."""
    from ..training.config import TrainConfig

    values = dict(
        output_dir=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accumulation=args.grad_accumulation,
        base_lr=args.lr,
        fusion_lr=args.fusion_lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        decay_epochs=args.decay_epochs,
        seed=args.seed,
        num_workers=args.workers,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
        freeze_policy=args.freeze_policy,
        eval_every=args.eval_every,
        eval_resolution=args.eval_resolution,
        train_split=args.train_split,
        val_split=args.val_split,
        loss=args.loss,
        class_weights=tuple(args.class_weights) if args.class_weights else None,
        pseudo_mask_loss=args.pseudo_mask_loss,
        pseudo_mask_kind=args.pseudo_mask_kind,
        teacher_forcing=args.teacher_forcing,
        teacher_forcing_steps=args.teacher_forcing_steps,
        stage=args.stage,
        position_init=args.position_init,
        occlusion=args.occlusion,
        max_steps=args.max_steps,
        log_every=args.log_every,
        save_every_steps=args.save_every_steps,
        deterministic=not args.no_deterministic,
        progress=not args.no_progress,
        device=args.device,
    )
    return TrainConfig(**{k: v for k, v in values.items() if v is not None})


def build_model(args: argparse.Namespace) -> tuple[RS2SAM2, RS2SAM2Processor]:
    """Model and processor from the CLI arguments (seeded beforehand by the caller)."""
    from ..processing import RS2SAM2Processor
    from ..weights.pretrained import RS2SAM2

    if args.init_from:
        model = RS2SAM2.from_pretrained(args.init_from, subfolder=args.subfolder)
        config = model.config
        if args.image_size is not None and args.image_size != config.image_size:
            raise ValueError("--image-size cannot change the architecture of an --init-from model")
    else:
        if args.config:
            config = RS2SAM2Config.from_json(Path(args.config))
        else:
            config = RS2SAM2Config.from_preset(args.preset or "official")
        if args.image_size is not None:
            config = RS2SAM2Config.from_dict({**config.to_dict(), "image_size": args.image_size})
        model = RS2SAM2(config)
    if args.sam2_checkpoint or args.beit3_checkpoint:
        from ..weights.base_checkpoints import load_beit3_checkpoint, load_sam2_checkpoint

        if args.sam2_checkpoint:
            print(load_sam2_checkpoint(model, args.sam2_checkpoint), file=sys.stderr)
        if args.beit3_checkpoint:
            print(load_beit3_checkpoint(model, args.beit3_checkpoint), file=sys.stderr)
    if args.tokenizer:
        return model, RS2SAM2Processor.from_pretrained(args.tokenizer, config)
    if args.init_from:
        return model, RS2SAM2Processor.from_pretrained(args.init_from, config, subfolder=args.subfolder)
    raise ValueError(
        "training needs a tokenizer: pass --tokenizer FOLDER (holding sentencepiece.bpe.model, e.g. "
        "BEiT-3's) or --init-from a model folder that holds one"
    )


def _run(args: argparse.Namespace) -> int:
    """The command: join the process group under ``torchrun``, build the run, train, print the result."""
    import torch.distributed as dist

    from ..data.readers import open_dataset
    from ..training.checkpoint import seed_everything
    from ..training.runtime import init_distributed
    from ..training.trainer import Trainer

    config = train_config_from_args(args)
    started = init_distributed()
    try:
        seed_everything(config.seed)  # the fresh model's initialisation is part of the run
        model, processor = build_model(args)
        data_options = {"on_error": args.on_error, "empty_masks": args.empty_masks}
        train_set = open_dataset(args.data, config.train_split, **data_options)
        if len(train_set) == 0:
            print(f"error: no {config.train_split!r} samples in {args.data}", file=sys.stderr)
            return 2
        val_set = None
        if config.val_split.lower() != "none":
            val_set = open_dataset(args.data, config.val_split, **data_options)
        trainer = Trainer(model, processor, train_set, config, val_dataset=val_set)
        resume = None
        if args.resume is not None:
            resume = trainer.checkpoint_path if args.resume == "auto" else Path(args.resume)
        result = trainer.train(resume=resume)
        if trainer.is_main:
            print(json.dumps({"output_dir": str(trainer.output_dir), **result}, default=str))
        return 0
    finally:
        if started:
            dist.destroy_process_group()
