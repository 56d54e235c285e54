"""Training of RS2-SAM2 (spec §6 losses, §7 training), single process or ``torchrun`` + DDP.

What the official recipe (``RS2-SAM2:train.py``, ``fine.sh``/``fine_rs.sh``) does, and where it lives here:

* data: one sample per sentence; the image resized to S×S and 224×224 (:class:`TrainingSet` via the
  processor), the GT mask nearest-resized to S×S; optional RRSIS-D random-box occlusion (``occlusion``);
  ``DistributedSampler(shuffle=True)`` re-shuffled every epoch, ``drop_last``;
* objective: :class:`~rs2sam2.losses.RS2SAM2Loss` (0.9·CE + 0.1·Dice + 0.2·L_tbl) on the S×S logits;
* optimiser: AdamW, weight decay 0.01 on every parameter, two groups from
  :meth:`~rs2sam2.RS2SAM2.parameter_groups` (BHFM + MPG at ``fusion_lr`` 1e-4, the rest at ``base_lr``
  5e-5); no warm-up, no clipping;
* schedule (:data:`SCHEDULES`): ``official`` ×0.1 from epoch index 50 on (never reached in 40 epochs, spec
  §14.2), ``paper`` ×0.1 for the last ``decay_epochs`` epochs, or ``constant``;
* selection: after every epoch evaluate on val (:func:`rs2sam2.evaluate.evaluate`, official resolution)
  and keep the epoch maximising mIoU + oIoU, saved as a model folder ``OUT/best``;
* seed 2401, deterministic algorithms where available.

Additions: gradient accumulation, bf16 autocast (CUDA), gradient checkpointing (union-encoder layers and
Hiera blocks), JSON-lines metrics (``OUT/metrics.jsonl``), an atomically written checkpoint
(``OUT/checkpoint.pt``: model, optimiser, scheduler, RNG states, epoch, step, position in the epoch) after
every epoch (and every ``save_every_steps`` steps), and exact resumption from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .config import RS2SAM2Config
from .evaluate import RESOLUTIONS
from .losses import LOSS_VARIANTS, RS2SAM2Loss, build_loss, grid_target, pseudo_mask_separation
from .metrics import resize_mask_nearest
from .modeling.rs2sam2 import FREEZE_POLICIES

if TYPE_CHECKING:
    from .data.dataset import OcclusionAugmentation
    from .modeling import RS2SAM2
    from .processing import RS2SAM2Processor

Precision = Literal["fp32", "bf16"]
CHECKPOINT_NAME = "checkpoint.pt"
BEST_DIR = "best"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_FORMAT = 1


# ------------------------------------------------------------------------------------------- config
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
        loss: loss variant (:data:`rs2sam2.losses.LOSS_VARIANTS`).
        class_weights: the CE class weights (background, foreground) instead of the variant's (official
            0.9, 1.1) — for targets much smaller than RRSIS-D's; ``None`` keeps the variant's.
        pseudo_mask_loss: weight of the loss on the mask prompt generator's pseudo-mask
            (:func:`rs2sam2.losses.pseudo_mask_loss`); 0 = off (official). Not in the paper: for training
            from random initialisation, where the generator learns nothing from the final loss alone.
        pseudo_mask_kind: ``"bce_dice"`` or ``"bce_softmax"`` (:func:`rs2sam2.losses.pseudo_mask_loss`).
        teacher_forcing: probability, per training sample, that SAM2's dense prompt is the target on the
            pseudo-mask grid instead of the generator's pseudo-mask (so the decoder learns to follow a good
            prompt while the generator learns from its own loss); 0 = off (official).
        teacher_forcing_steps: anneal ``teacher_forcing`` linearly to 0 over this many optimiser steps
            (0: keep it constant).
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
        if self.teacher_forcing_steps < 0:
            raise ValueError(f"teacher_forcing_steps must be >= 0, got {self.teacher_forcing_steps}")
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


# --------------------------------------------------------------------------------------- utilities
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


def pseudo_mask_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean pseudo-mask probability on target cells and on background cells over evaluation rows that
    carry them (``pm_target`` / ``pm_background``, from :func:`rs2sam2.evaluate.evaluate`)."""
    on = [r["pm_target"] for r in rows if r.get("pm_target") is not None and not math.isnan(r["pm_target"])]
    off = [r["pm_background"] for r in rows if r.get("pm_background") is not None]
    out = {}
    if on:
        out["pm_target"] = float(np.mean(on))
    if off:
        out["pm_background"] = float(np.mean(off))
    return out


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (all devices), as the official ``seed_everything``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_determinism(device: torch.device) -> None:
    """Deterministic algorithms where PyTorch has them (warn-only elsewhere) and deterministic cuDNN."""
    if device.type == "cuda":
        # Needed by deterministic cuBLAS; must be set before the first cuBLAS call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def set_gradient_checkpointing(model: RS2SAM2, enabled: bool = True) -> None:
    """Recompute the union encoder's layers and the fused Hiera blocks in the backward pass.

    Outputs and gradients are unchanged; activation memory drops to about one layer/block per stack.
    """
    model.union_encoder.beit3.gradient_checkpointing = enabled
    model.image_encoder.gradient_checkpointing = enabled


def capture_rng_state(device: torch.device | str | None = None) -> dict[str, Any]:
    """Python, numpy and torch generator states, as plain values and tensors: the CPU's, and the CUDA
    generator of ``device`` when it is a CUDA device (only that GPU's: asking every visible GPU would
    create a CUDA context on each, in every ``torchrun`` process)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device is not None and torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | str | None = None) -> None:
    """Inverse of :func:`capture_rng_state`; the CUDA state goes to ``device`` (when a CUDA device).

    Checkpoints written before held one CUDA state per visible GPU: ``device``'s index picks one (the
    last if it has fewer), so resuming on a machine with fewer GPUs works."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and device is not None and torch.device(device).type == "cuda":
        if isinstance(cuda, (list, tuple)):  # the older format, one state per GPU
            index = torch.device(device).index
            cuda = cuda[min(torch.cuda.current_device() if index is None else index, len(cuda) - 1)]
        torch.cuda.set_rng_state(cuda, device)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` onto ``path``.

    A crash at any point leaves either the previous file or the new one, never a truncated file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the half-written temporaries (``.<name>.<pid>.tmp``: files of :func:`atomic_torch_save`,
    folders of :func:`save_model_folder`) of writers whose process died (killed mid-write), so that
    repeated kills do not fill the disk with checkpoint-sized files."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would signal (or end) the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else, or the platform cannot tell
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only``: no code runs while loading)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    from .checkpoint_scan import check_declared_sizes

    check_declared_sizes(path)  # DeclaredSizeError (a ValueError) before torch.load allocates
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle errors come in many types; all mean "not loadable"
        if "weights_only" in str(e) or "Weights only load failed" in str(e):
            raise ValueError(
                f"{path} holds objects other than tensors and plain values; refusing to unpickle it "
                "(weights_only=True: a checkpoint can run code when unpickled)"
            ) from None
        raise ValueError(
            f"cannot read {path} ({path.stat().st_size:,} bytes) as a training checkpoint; is it empty, "
            f"truncated or corrupt? ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an rs2sam2 training checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def save_model_folder(model: RS2SAM2, processor: RS2SAM2Processor | None, folder: str | Path) -> Path:
    """Write a Hub-style model folder (config, safetensors, tokenizer), replacing ``folder`` atomically.

    The folder is written next to ``folder`` under a temporary name and swapped in, so an interrupted save
    leaves the previous folder in place.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # left over by a killed run
        tmp.mkdir()
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp, processor=processor)
        else:
            from .hub import save_pretrained

            save_pretrained(model, tmp, processor=processor)
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# -------------------------------------------------------------------------------------------- data
class TrainingSet(Dataset):
    """Referring items → training tensors, as the official dataset (spec §7).

    Item ``i`` of ``dataset`` (``image`` PIL, ``expression``, ``mask`` bool (H, W), ``id``) becomes
    ``sam_pixels`` (3, S, S), ``union_pixels`` (3, 224, 224), ``target`` (S, S) int64 in {0, 1} (mask
    resized with NEAREST), ``expression`` and ``id``.

    Occlusion: the subset of train refs is drawn once (:meth:`OcclusionAugmentation.select`); the boxes
    of item ``i`` in epoch ``e`` come from ``random.Random(f"{seed}:{e}:{i}")``, so they do not depend on
    worker processes or on resuming. Set :attr:`epoch` before each epoch.
    """

    def __init__(
        self,
        dataset: Any,
        processor: RS2SAM2Processor,
        *,
        occlusion: OcclusionAugmentation | None = None,
        seed: int = 2401,
    ) -> None:
        self.dataset = dataset
        self.processor = processor
        self.size = processor.config.image_size
        self.occlusion = occlusion
        self.seed = seed
        self.epoch = 0
        self.occluded: frozenset[int] = frozenset()
        if occlusion is not None:
            samples = getattr(dataset, "samples", None)
            if samples is None:
                raise ValueError("occlusion needs a ReferringDataset (with .samples) to choose the refs")
            if getattr(dataset, "occlusion", None) is not None:
                raise ValueError("the dataset already applies occlusion; open it without and pass it here")
            chosen = occlusion.select([s.group for s in samples if s.split == "train"])
            self.occluded = frozenset(
                i for i, s in enumerate(samples) if s.split == "train" and s.group in chosen
            )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        image = item["image"]
        if index in self.occluded:
            assert self.occlusion is not None
            image = self.occlusion.apply(image, rng=random.Random(f"{self.seed}:{self.epoch}:{index}"))
        sam, union, _ = self.processor.preprocess_image(image)
        target = resize_mask_nearest(np.asarray(item["mask"]).astype(bool), self.size)
        return {
            "sam_pixels": sam,
            "union_pixels": union,
            "target": torch.from_numpy(target.astype(np.int64)),
            "expression": item["expression"],
            "id": item["id"],
        }


class Collate:
    """Stack image tensors and targets; tokenize the batch's sentences (right-padded with the pad id)."""

    def __init__(self, processor: RS2SAM2Processor) -> None:
        self.processor = processor

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        input_ids, attention_mask = self.processor.tokenize([b["expression"] for b in batch])
        return {
            "sam_pixels": torch.stack([b["sam_pixels"] for b in batch]),
            "union_pixels": torch.stack([b["union_pixels"] for b in batch]),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "target": torch.stack([b["target"] for b in batch]),
            "ids": [b["id"] for b in batch],
        }


# ----------------------------------------------------------------------------------------- trainer
#: Per-micro-batch figures summed into the log window: the loss terms, the mean IoU of the thresholded
#: training logits with the target, then the pseudo-mask's mean probability on the target's grid cells and
#: on the others (:func:`rs2sam2.losses.pseudo_mask_separation`).
WINDOW_KEYS = ("total", "ce", "dice", "boundary", "pseudo_mask", "iou", "pm_target", "pm_background")


def _empty_window() -> dict[str, float]:
    return {**dict.fromkeys(WINDOW_KEYS, 0.0), "n": 0.0, "n_target": 0.0}


class LossInputs(nn.Module):
    """The model reduced to what the loss reads: ``(logits (B, 1, S, S), text_weight (B, 1),
    pseudo_logits (B, 1, g, g))``.

    DDP with ``find_unused_parameters`` treats every parameter that reaches *an output* as used; returning
    the IoU / object-score predictions (which no loss reads) would make it wait forever for their gradients.
    """

    def __init__(self, model: RS2SAM2) -> None:
        super().__init__()
        self.model = model

    def forward(self, **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(**inputs)
        return out.logits, out.text_weight, out.pseudo_logits


class Trainer:
    """Trains an :class:`~rs2sam2.RS2SAM2` (see the module docstring for the recipe).

    Under ``torchrun`` (an initialised process group) the model is wrapped in ``DistributedDataParallel``
    (``find_unused_parameters=True``: SAM2's IoU and object-score heads get no gradient), each process
    reads its ``DistributedSampler`` shard, validation is sharded and gathered, and only rank 0 writes.

    Args:
        model: the model (moved to the training device).
        processor: its processor (tokenizer); saved with the best model.
        train_dataset: referring items of the train split (see :class:`TrainingSet`).
        config: :class:`TrainConfig`.
        val_dataset: referring items for model selection; ``None``: ``best`` follows the latest epoch.
        loss: the objective (default: :func:`loss_from_config`).
    """

    def __init__(
        self,
        model: RS2SAM2,
        processor: RS2SAM2Processor,
        train_dataset: Any,
        config: TrainConfig,
        *,
        val_dataset: Any | None = None,
        loss: RS2SAM2Loss | None = None,
    ) -> None:
        self.config = config
        self.rank, self.world_size = _dist_info()
        self.device = self._resolve_device(config.device)
        self.autocast_dtype = PRECISIONS[config.precision]
        if self.autocast_dtype is not None and self.device.type != "cuda":
            raise ValueError(
                f"precision {config.precision!r} (autocast) is supported on CUDA only; "
                f"use precision 'fp32' on {self.device.type}"
            )
        if config.deterministic:
            configure_determinism(self.device)
        self.output_dir = Path(config.output_dir)
        self.processor = processor
        self.model = model.to(self.device)
        self.model.apply_freeze_policy(config.freeze_policy)  # before DDP and the optimiser see the params
        set_gradient_checkpointing(self.model, config.gradient_checkpointing)
        self.forward_module: nn.Module = LossInputs(self.model)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_module = DistributedDataParallel(
                self.forward_module, device_ids=ids, find_unused_parameters=True
            )
        self.loss_fn = loss if loss is not None else loss_from_config(config)
        self.optimizer = torch.optim.AdamW(
            self.model.parameter_groups(config.base_lr, config.fusion_lr),
            lr=config.base_lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
        self.scheduler = LambdaLR(self.optimizer, EpochDecay.from_config(config))
        occlusion = None
        if config.occlusion:
            from .data.dataset import OcclusionAugmentation

            occlusion = OcclusionAugmentation(seed=config.seed)
        self.train_set = TrainingSet(train_dataset, processor, occlusion=occlusion, seed=config.seed)
        self.val_dataset = val_dataset if val_dataset is not None and len(val_dataset) > 0 else None
        self.collate = Collate(processor)
        # Progress, all restored on resume.
        self.epoch = 0  # epochs completed = index of the current epoch
        self.step = 0  # optimiser steps taken
        self.epoch_batches = 0  # micro-batches of the current epoch already consumed
        self.epoch_loss = [0.0, 0]  # (sum, count) of the current epoch's micro-batch losses
        self.log_window = _empty_window()  # loss sums since the last train record
        self.best: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------- properties
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path:
        return self.output_dir / CHECKPOINT_NAME

    @property
    def best_dir(self) -> Path:
        return self.output_dir / BEST_DIR

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / METRICS_NAME

    def _resolve_device(self, name: str | None) -> torch.device:
        if name is not None:
            return torch.device(name)
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")

    def steps_per_epoch(self) -> int:
        """Optimiser steps of one epoch (incomplete batches and accumulation windows are dropped)."""
        return self._batches_per_epoch() // self.config.grad_accumulation

    def _batches_per_epoch(self) -> int:
        per_rank = math.ceil(len(self.train_set) / self.world_size)  # DistributedSampler pads
        batches = per_rank // self.config.batch_size
        return batches - batches % self.config.grad_accumulation

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, scheduler, RNGs, progress."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng_state(self.device),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_batches": self.epoch_batches,
            "epoch_loss": list(self.epoch_loss),
            "log_window": dict(self.log_window),
            "best": self.best,
            "world_size": self.world_size,
            "train_config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``OUT/checkpoint.pt`` atomically (rank 0 only; returns ``None`` elsewhere)."""
        if not self.is_main:
            return None
        return atomic_torch_save(self.state_dict(), self.checkpoint_path)

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (model strictly, optimiser, scheduler, RNGs, progress)."""
        if ckpt.get("world_size", 1) != self.world_size:
            warnings.warn(
                f"checkpoint was written with {ckpt['world_size']} processes, resuming with "
                f"{self.world_size}: the data order from here on differs from an uninterrupted run",
                stacklevel=2,
            )
        self.model.load_state_dict(ckpt["model"], strict=True)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng_state(ckpt["rng"], self.device)
        self.epoch = int(ckpt["epoch"])
        self.step = int(ckpt["step"])
        self.epoch_batches = int(ckpt["epoch_batches"])
        self.epoch_loss = [float(ckpt["epoch_loss"][0]), int(ckpt["epoch_loss"][1])]
        self.log_window = {k: float(v) for k, v in ckpt["log_window"].items()}
        self.best = ckpt["best"]

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from a checkpoint (default ``OUT/checkpoint.pt``); later metrics records are dropped.

        Later means a later step, or the end of an epoch the checkpoint had not finished: a checkpoint
        written at an epoch's last step (``save_every_steps``) precedes that epoch's ``epoch`` and ``val``
        records, which share its step and are written again after the resume."""
        self.load_state_dict(load_checkpoint(path or self.checkpoint_path))
        if self.is_main and self.metrics_path.exists():
            kept = []
            for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else None
                if record is None or record.get("step", 0) > self.step:
                    continue
                if record.get("event") in ("epoch", "val") and record.get("epoch", 0) > self.epoch:
                    continue  # "epoch" k+1 / "val" after it are logged once epoch index k has ended
                kept.append(line)
            self.metrics_path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    # --------------------------------------------------------------------------------- training
    def train(self, resume: str | Path | None = None) -> dict[str, Any]:
        """Run (or continue) training to ``config.epochs`` or ``config.max_steps``.

        Returns:
            ``{"epoch", "step", "best"}`` at the end (``best``: epoch, step, score and val metrics).
        """
        cfg = self.config
        if resume is not None:
            self.resume(resume)
        elif self.step == 0 and self.epoch_batches == 0:
            seed_everything(cfg.seed)
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        if self._batches_per_epoch() == 0:
            raise ValueError(
                f"{len(self.train_set)} training samples make no full batch of {cfg.batch_size} × "
                f"{cfg.grad_accumulation} accumulation on {self.world_size} process(es)"
            )
        while self.epoch < cfg.epochs and not self._reached_max_steps():
            self._train_epoch()
            if self.epoch_batches < self._batches_per_epoch():  # stopped by max_steps mid-epoch
                self.save_checkpoint()
                break
            self._end_epoch()
        return {"epoch": self.epoch, "step": self.step, "best": self.best}

    def _reached_max_steps(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _loader(self) -> DataLoader:
        cfg = self.config
        sampler = DistributedSampler(
            self.train_set, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=cfg.seed
        )
        sampler.set_epoch(self.epoch)
        self.train_set.epoch = self.epoch
        indices = list(sampler)[: self._batches_per_epoch() * cfg.batch_size]
        remaining = indices[self.epoch_batches * cfg.batch_size :]  # skip what a resumed run already saw
        return DataLoader(
            self.train_set,
            batch_size=cfg.batch_size,
            sampler=remaining,
            num_workers=cfg.num_workers,
            collate_fn=self.collate,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed + self.epoch),
        )

    def _train_epoch(self) -> None:
        cfg = self.config
        self.model.train()
        loader = self._loader()
        bar = None
        if cfg.progress and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=self._batches_per_epoch(),
                initial=self.epoch_batches,
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                unit="batch",
                dynamic_ncols=True,
            )
        window = self.log_window
        tic = time.perf_counter()
        try:
            for batch in loader:
                losses = self._forward_backward(batch)
                for k in WINDOW_KEYS:
                    window[k] = window.get(k, 0.0) + losses.get(k, 0.0)  # old checkpoints lack some keys
                window["n"] += 1
                window["n_target"] = window.get("n_target", 0.0) + losses["n_target"]
                self.epoch_loss[0] += losses["total"]
                self.epoch_loss[1] += 1
                self.epoch_batches += 1
                if bar is not None:
                    bar.set_postfix(loss=f"{losses['total']:.4f}", step=self.step)
                    bar.update(1)
                if self.epoch_batches % cfg.grad_accumulation:
                    continue
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                if self.step % cfg.log_every == 0:
                    self._log_train(window, time.perf_counter() - tic)
                    window = self.log_window = _empty_window()
                    tic = time.perf_counter()
                if cfg.save_every_steps and self.step % cfg.save_every_steps == 0:
                    self.save_checkpoint()
                if self._reached_max_steps():
                    break
        finally:
            if bar is not None:
                bar.close()

    def _forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        """One micro-batch: forward, loss, backward (gradient sync only on the accumulation's last)."""
        accumulate = self.config.grad_accumulation
        syncs = (self.epoch_batches + 1) % accumulate == 0
        no_sync = self.forward_module.no_sync if self.world_size > 1 and not syncs else nullcontext
        dev = self.device
        inputs = {
            k: batch[k].to(dev, non_blocking=True)
            for k in ("sam_pixels", "union_pixels", "input_ids", "attention_mask")
        }
        target = batch["target"].to(dev, non_blocking=True)
        forced = self._forced_prompt(target)
        if forced is not None:
            inputs["forced_prompt"] = forced
        autocast = (
            torch.autocast(dev.type, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()
        )
        with no_sync():
            with autocast:
                logits, text_weight, pseudo_logits = self.forward_module(**inputs)
            losses = self.loss_fn(logits.float(), target, text_weight.float(), pseudo_logits.float())
            (losses.total / accumulate).backward()
        on, off = pseudo_mask_separation(torch.sigmoid(pseudo_logits.detach().float()), target)
        has = ~torch.isnan(on)
        pred = logits.detach()[:, 0] > self.model.config.mask_threshold
        fg = target.bool()
        inter, union = (pred & fg).flatten(1).sum(1), (pred | fg).flatten(1).sum(1)
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter, dtype=torch.float))
        return {
            **losses.as_dict(),
            "iou": float(iou.mean()),
            "pm_target": float(on[has].sum()),  # sums; the log divides by the counts
            "pm_background": float(off.mean()),
            "n_target": float(has.sum()),
        }

    def _forced_prompt(self, target: torch.Tensor) -> torch.Tensor | None:
        """Teacher forcing: the target on the pseudo-mask grid for the chosen samples, NaN for the others
        (``RS2SAM2.forward(forced_prompt=...)``); ``None`` when no sample is chosen. The draw depends on
        the seed, the step and the position in the epoch only (reproducible on resume)."""
        p = teacher_forcing_probability(self.config, self.step)
        if p <= 0:
            return None
        rng = random.Random(f"{self.config.seed}:teacher:{self.epoch}:{self.epoch_batches}:{self.rank}")
        chosen = torch.tensor([rng.random() < p for _ in range(target.shape[0])], device=target.device)
        if not bool(chosen.any()):
            return None
        grid = self.model.config.union_encoder.grid_size
        forced = grid_target(target, grid, self.loss_fn.config.pseudo_mask_target)
        return torch.where(chosen.view(-1, 1, 1, 1), forced, torch.full_like(forced, float("nan")))

    def _end_epoch(self) -> None:
        cfg = self.config
        epoch = self.epoch
        mean_loss = self._all_mean(self.epoch_loss[0], self.epoch_loss[1])
        self._log({"event": "epoch", "epoch": epoch + 1, "step": self.step, "train_loss": mean_loss})
        self.scheduler.step()
        self.epoch += 1
        self.epoch_batches = 0
        self.epoch_loss = [0.0, 0]
        last = self.epoch == cfg.epochs or self._reached_max_steps()
        due = cfg.eval_every > 0 and (self.epoch % cfg.eval_every == 0 or last)
        if self.val_dataset is not None and due:
            metrics = self.validate()
            score = float(metrics["mIoU"] + metrics["oIoU"])
            improved = self.best is None or score > self.best["score"]
            if improved:
                self.best = {"epoch": self.epoch, "step": self.step, "score": score, "metrics": metrics}
                self._save_best()
            record = {"event": "val", "epoch": self.epoch, "step": self.step, **metrics, "score": score}
            self._log({**record, "best_epoch": self.best["epoch"] if self.best else None})
        elif self.val_dataset is None:
            self.best = {"epoch": self.epoch, "step": self.step, "score": None, "metrics": None}
            self._save_best()
        self.save_checkpoint()

    def validate(self) -> dict[str, float | int]:
        """Metrics of the current model on the val set (sharded over processes, gathered)."""
        from .evaluate import evaluate, metrics_from_rows

        assert self.val_dataset is not None
        indices = range(self.rank, len(self.val_dataset), self.world_size)
        metrics, rows = evaluate(
            self.model,
            self.processor,
            self.val_dataset,
            resolution=self.config.eval_resolution,  # type: ignore[arg-type]
            batch_size=self.config.eval_batch_size,
            indices=list(indices),
            autocast_dtype=self.autocast_dtype,
            progress=self.config.progress and self.is_main,
        )
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
            metrics = metrics_from_rows(rows)
        self.model.train()
        return {**metrics, **pseudo_mask_summary(rows)}

    def _save_best(self) -> None:
        if not self.is_main:
            return
        save_model_folder(self.model, self.processor, self.best_dir)
        (self.output_dir / "best.json").write_text(json.dumps(self.best, indent=2) + "\n")

    # ---------------------------------------------------------------------------------- logging
    def _all_mean(self, total: float, count: int) -> float:
        if self.world_size > 1:
            t = torch.tensor([total, float(count)], dtype=torch.float64, device=self._comm_device())
            dist.all_reduce(t)
            total, count = float(t[0]), int(t[1])
        return total / max(count, 1)

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def _log_train(self, window: dict[str, float], seconds: float) -> None:
        n = int(window["n"])
        record: dict[str, Any] = {"event": "train", "epoch": self.epoch + 1, "step": self.step}
        for k in ("total", "ce", "dice", "boundary"):
            record["loss" if k == "total" else k] = self._all_mean(window[k], n)
        if self.loss_fn.config.pseudo_mask_weight > 0:
            record["pseudo_mask"] = self._all_mean(window.get("pseudo_mask", 0.0), n)
        record["train_iou"] = self._all_mean(window.get("iou", 0.0), n)
        record["pm_target"] = self._all_mean(window.get("pm_target", 0.0), int(window.get("n_target", 0)))
        record["pm_background"] = self._all_mean(window.get("pm_background", 0.0), n)
        if self.config.teacher_forcing > 0:
            record["teacher_forcing"] = teacher_forcing_probability(self.config, self.step)
        for i, group in enumerate(self.optimizer.param_groups):
            record[f"lr_{group.get('name', i)}"] = group["lr"]
        samples = n * self.config.batch_size * self.world_size
        record["samples_per_s"] = samples / seconds if seconds > 0 else None
        self._log(record)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        record = {**record, "time": time.time()}
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


# -------------------------------------------------------------------------------------------- CLI
def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of ``rs2sam2 train`` (rs2sam2.cli.train); options left out (None) keep its default."""
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
    from .modeling import RS2SAM2
    from .processing import RS2SAM2Processor

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
        from .convert import load_beit3_checkpoint, load_sam2_checkpoint

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


def init_distributed() -> bool:
    """Join the ``torchrun`` process group (nccl on CUDA, gloo on CPU) when ``WORLD_SIZE`` > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def _cli_train(args: argparse.Namespace) -> int:
    from .data.readers import open_dataset

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
