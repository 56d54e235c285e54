"""Configuration of a training run: :class:`TrainConfig` (hyper-parameters and bookkeeping), the
learning-rate schedules (:data:`SCHEDULES`, applied per epoch by :class:`EpochDecay`), the autocast
precisions, and what the config implies for the objective (:func:`loss_from_config`) and for teacher
forcing (:func:`teacher_forcing_probability`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..evaluate import RESOLUTIONS
from ..modeling.rs2sam2 import FREEZE_POLICIES
from .losses import LOSS_VARIANTS, RS2SAM2Loss, build_loss
from .positions import POSITION_INITS

Precision = Literal["fp32", "bf16"]
#: What a run trains: the whole model, or only the grounding half (:mod:`.grounding`).
STAGES = ("full", "grounding")


@dataclass
class TrainConfig:
    """Hyper-parameters and bookkeeping of a training run. Defaults = the official RefSegRS recipe.

    Attributes:
        output_dir: where checkpoint, metrics and the best model go.
        epochs: training epochs (official: 60 RefSegRS, 40 RRSIS-D).
        batch_size: samples per process per forward (official 1 per GPU).
        grad_accumulation: forwards per optimiser step; effective batch = batch × accumulation × processes.
        base_lr: learning rate of everything trainable but BHFM + MPG (official 5e-5).
        fusion_lr: learning rate of BHFM (BL + BC) and the MPG (official 1e-4).
        weight_decay: AdamW weight decay, on every parameter (official 0.01).
        betas, eps: AdamW defaults.
        schedule: ``"official"``, ``"paper"`` or ``"constant"`` (:data:`SCHEDULES`).
        decay_factor: learning-rate multiplier after the decay (0.1).
        decay_after_epoch: ``official``: the decay applies from epoch index ``decay_after_epoch + 1`` on (49).
        decay_epochs: ``paper``: the decay applies to the last ``decay_epochs`` epochs (10).
        seed: seeds python, numpy and torch (official 2401).
        num_workers: DataLoader worker processes.
        precision: ``"fp32"`` or ``"bf16"`` (autocast; CUDA only).
        gradient_checkpointing: recompute union-encoder layers and Hiera blocks in the backward pass.
        freeze_policy: what trains (:meth:`~rs2sam2.RS2SAM2.apply_freeze_policy`): ``"official"`` (SAM2 trunk
            and neck frozen) or ``"full"`` (everything, for training from scratch).
        eval_every: validate every this many epochs (0: never); the last epoch is always validated.
        eval_resolution: ``"official"`` or ``"native"`` (see :mod:`rs2sam2.evaluate`).
        eval_batch_size: validation batch size (1 as the official evaluation).
        train_split, val_split: dataset splits.
        loss: loss variant (:data:`.losses.LOSS_VARIANTS`).
        class_weights: the CE class weights (background, foreground) instead of the variant's (official
            0.9, 1.1) — for targets much smaller than RRSIS-D's; ``None`` keeps the variant's.
        pseudo_mask_loss: weight of the loss on the mask prompt generator's pseudo-mask
            (:func:`.losses.pseudo_mask_loss`); 0 = off (official). Not in the paper: for training
            from random initialisation, where the generator learns nothing from the final loss alone.
        pseudo_mask_kind: ``"bce_dice"`` or ``"bce_softmax"`` (:func:`.losses.pseudo_mask_loss`).
        teacher_forcing: probability, per training sample, that SAM2's dense prompt is the target on the
            pseudo-mask grid instead of the generator's pseudo-mask (so the decoder learns to follow a good
            prompt while the generator learns from its own loss); 0 = off (official).
        teacher_forcing_steps: anneal ``teacher_forcing`` linearly to 0 over this many optimiser steps
            (0: keep it constant).
        stage: ``"full"`` (the whole model on the configured loss, as the paper) or ``"grounding"`` (only
            the union encoder and the mask prompt generator, on the pseudo-mask loss of kind
            ``pseudo_mask_kind`` alone, with SAM2 not run; validation and the best epoch go by how often
            the pseudo-mask peaks on the target: :mod:`.grounding`). Not in the paper: a cheap first stage
            for models trained from random weights.
        position_init: where the union encoder's patch position table starts
            (:data:`.positions.POSITION_INITS`): ``"model"`` as built or loaded (official), ``"sincos"``
            fixed 2-D sine-cosine codes of each patch's row and column written over it, ``"add-sincos"``
            those codes added to it. Applied once, when the trainer is built (a resumed run restores the
            table from its checkpoint); the table stays trainable. Not in the paper: for union encoders
            trained from random weights, whose learned table keeps no geometry (:mod:`.positions`).
        occlusion: RRSIS-D random-box occlusion of 20 % of the train refs (official for RRSIS-D only).
        max_steps: stop after this many optimiser steps (quick runs); ``None``: run all epochs.
        log_every: write a train record to ``metrics.jsonl`` every this many steps.
        save_every_steps: also checkpoint every this many steps (0: only after every epoch).
        deterministic: ``torch.use_deterministic_algorithms`` (warn-only) and deterministic cuDNN.
        progress: tqdm progress bars (rank 0).
        device: ``"cpu"``, ``"cuda"``… (default: ``cuda:LOCAL_RANK`` when available, else CPU).
    """

    output_dir: str = "runs/rs2sam2"
    epochs: int = 60
    batch_size: int = 1
    grad_accumulation: int = 1
    base_lr: float = 5e-5
    fusion_lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "official"
    decay_factor: float = 0.1
    decay_after_epoch: int = 49
    decay_epochs: int = 10
    seed: int = 2401
    num_workers: int = 0
    precision: Precision = "fp32"
    gradient_checkpointing: bool = False
    freeze_policy: str = "official"
    eval_every: int = 1
    eval_resolution: str = "official"
    eval_batch_size: int = 1
    train_split: str = "train"
    val_split: str = "val"
    loss: str = "official"
    class_weights: tuple[float, float] | None = None
    pseudo_mask_loss: float = 0.0
    pseudo_mask_kind: str = "bce_dice"
    teacher_forcing: float = 0.0
    teacher_forcing_steps: int = 0
    stage: str = "full"
    position_init: str = "model"
    occlusion: bool = False
    max_steps: int | None = None
    log_every: int = 10
    save_every_steps: int = 0
    deterministic: bool = True
    progress: bool = True
    device: str | None = None

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.loss not in LOSS_VARIANTS:
            raise ValueError(f"loss must be one of {sorted(LOSS_VARIANTS)}, got {self.loss!r}")
        if self.class_weights is not None:
            if len(self.class_weights) != 2 or min(self.class_weights) <= 0:
                raise ValueError(f"class_weights must be two positive numbers, got {self.class_weights!r}")
            self.class_weights = (float(self.class_weights[0]), float(self.class_weights[1]))
        for name in ("epochs", "batch_size", "grad_accumulation", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.pseudo_mask_loss >= 0:
            raise ValueError(f"pseudo_mask_loss must be >= 0, got {self.pseudo_mask_loss!r}")
        if self.pseudo_mask_kind not in ("bce_dice", "bce_softmax"):
            raise ValueError(
                f"pseudo_mask_kind must be 'bce_dice' or 'bce_softmax', got {self.pseudo_mask_kind!r}"
            )
        if not 0 <= self.teacher_forcing <= 1:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], got {self.teacher_forcing!r}")
        if self.position_init not in POSITION_INITS:
            raise ValueError(f"position_init must be one of {POSITION_INITS}, got {self.position_init!r}")
        if self.teacher_forcing_steps < 0:
            raise ValueError(f"teacher_forcing_steps must be >= 0, got {self.teacher_forcing_steps}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == "grounding" and self.teacher_forcing > 0:
            raise ValueError("teacher forcing feeds SAM2's prompt, which the grounding stage does not run")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.eval_every < 0 or self.save_every_steps < 0 or self.num_workers < 0:
            raise ValueError("eval_every, save_every_steps and num_workers must be >= 0")
        if self.freeze_policy not in FREEZE_POLICIES:
            raise ValueError(f"freeze_policy must be one of {FREEZE_POLICIES}, got {self.freeze_policy!r}")
        if self.eval_resolution not in RESOLUTIONS:
            raise ValueError(f"eval_resolution must be one of {RESOLUTIONS}, got {self.eval_resolution!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class EpochDecay:
    """The ``LambdaLR`` multiplier: ``SCHEDULES[schedule](self, epoch)`` for the 0-based epoch index.

    Plain fields, so ``LambdaLR.state_dict`` stores them in the checkpoint.
    """

    schedule: str
    epochs: int
    decay_factor: float
    decay_after_epoch: int
    decay_epochs: int

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> EpochDecay:
        return cls(cfg.schedule, cfg.epochs, cfg.decay_factor, cfg.decay_after_epoch, cfg.decay_epochs)

    def __call__(self, epoch: int) -> float:
        return SCHEDULES[self.schedule](self, epoch)


def _official_factor(d: EpochDecay, epoch: int) -> float:
    return d.decay_factor if epoch > d.decay_after_epoch else 1.0


def _paper_factor(d: EpochDecay, epoch: int) -> float:
    return d.decay_factor if epoch >= d.epochs - d.decay_epochs else 1.0


def _constant_factor(d: EpochDecay, epoch: int) -> float:
    return 1.0


#: Learning-rate multiplier of epoch index ``e`` (0-based) per schedule name.
SCHEDULES: dict[str, Callable[[EpochDecay, int], float]] = {
    "official": _official_factor,  # RS2-SAM2:train.py: ×0.1 after epoch index 49
    "paper": _paper_factor,  # AAAI paper: ×0.1 for the last 10 epochs
    "constant": _constant_factor,
}

#: Autocast dtype per precision name (``None``: plain fp32).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def loss_from_config(config: TrainConfig) -> RS2SAM2Loss:
    """The training objective of ``config``: its loss variant, with its CE class weights if it sets them,
    and its pseudo-mask loss weight."""
    overrides: dict[str, Any] = {
        "pseudo_mask_weight": config.pseudo_mask_loss,
        "pseudo_mask_kind": config.pseudo_mask_kind,
    }
    if config.class_weights is not None:
        overrides["class_weights"] = config.class_weights
    return build_loss(config.loss, **overrides)


def teacher_forcing_probability(config: TrainConfig, step: int) -> float:
    """The teacher-forcing probability at optimiser step ``step`` (linear anneal: :class:`TrainConfig`)."""
    if config.teacher_forcing_steps == 0:
        return config.teacher_forcing
    return config.teacher_forcing * max(0.0, 1.0 - step / config.teacher_forcing_steps)
