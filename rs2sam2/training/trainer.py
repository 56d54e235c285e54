"""The training loop of RS2-SAM2 (:class:`Trainer`), single process or ``torchrun`` + DDP (the recipe:
:mod:`rs2sam2.training`). One epoch: this process's shard of the :class:`~.data.TrainingSet`, forward,
objective and backward per micro-batch, an AdamW step per accumulation window, a JSON-lines record every
``log_every`` steps; then the schedule steps, the val split is evaluated, the best epoch is kept as a
model folder and the checkpoint is written.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler

from ..evaluate import (
    evaluate,
    metrics_from_rows,
    peak_in_target,
    pseudo_mask_separation,
    pseudo_mask_summary,
)
from ..processing import grid_target
from .checkpoint import (
    BEST_DIR,
    CHECKPOINT_NAME,
    METRICS_NAME,
    Checkpointing,
    save_model_folder,
    seed_everything,
)
from .config import PRECISIONS, EpochDecay, TrainConfig, loss_from_config, teacher_forcing_probability
from .data import Collate, TrainingSet
from .grounding import GroundingInputs, combine_grounding_metrics, freeze_for_grounding, grounding_metrics
from .losses import RS2SAM2Loss, pseudo_mask_loss
from .positions import init_patch_positions
from .runtime import LossInputs, configure_determinism, dist_info, set_gradient_checkpointing

if TYPE_CHECKING:
    from ..processing import RS2SAM2Processor
    from ..weights.pretrained import RS2SAM2


#: Per-micro-batch figures summed into the log window: the loss terms, the mean IoU of the thresholded
#: training logits with the target, then the pseudo-mask's mean probability on the target's grid cells and
#: on the others (:func:`rs2sam2.evaluate.pseudo_mask_separation`), and how many peak on the target.
WINDOW_KEYS = ("total", "ce", "dice", "boundary", "pseudo_mask", "iou", "pm_target", "pm_background", "peak")


def _empty_window() -> dict[str, float]:
    return {**dict.fromkeys(WINDOW_KEYS, 0.0), "n": 0.0, "n_target": 0.0}


class Trainer(Checkpointing):
    """Trains an :class:`~rs2sam2.RS2SAM2` (the recipe: :mod:`rs2sam2.training`).

    Under ``torchrun`` (an initialised process group) the model is wrapped in ``DistributedDataParallel``
    (``find_unused_parameters=True``: SAM2's IoU and object-score heads get no gradient), each process
    reads its ``DistributedSampler`` shard, validation is sharded and gathered, and only rank 0 writes.
    Saving and restoring its progress (``save_checkpoint``, ``resume``) come from :class:`Checkpointing`.

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
        self.rank, self.world_size = dist_info()
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
        init_patch_positions(self.model.union_encoder, config.position_init)
        self.model.apply_freeze_policy(config.freeze_policy)  # before DDP and the optimiser see the params
        set_gradient_checkpointing(self.model, config.gradient_checkpointing)
        self.grounding = config.stage == "grounding"
        if self.grounding:
            freeze_for_grounding(self.model)
        self.forward_module: nn.Module = (GroundingInputs if self.grounding else LossInputs)(self.model)
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
            from ..data.dataset import OcclusionAugmentation

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
        if self.grounding:
            with no_sync():
                with autocast:
                    pseudo_logits = self.forward_module(**inputs).float()
                lc = self.loss_fn.config
                loss = pseudo_mask_loss(
                    pseudo_logits, target, lc.pseudo_mask_target, kind=lc.pseudo_mask_kind
                )
                (loss / accumulate).backward()
            value = float(loss.detach())
            return {"total": value, "pseudo_mask": value, **self._pseudo_stats(pseudo_logits, target)}
        with no_sync():
            with autocast:
                logits, text_weight, pseudo_logits = self.forward_module(**inputs)
            losses = self.loss_fn(logits.float(), target, text_weight.float(), pseudo_logits.float())
            (losses.total / accumulate).backward()
        pred = logits.detach()[:, 0] > self.model.config.mask_threshold
        fg = target.bool()
        inter, union = (pred & fg).flatten(1).sum(1), (pred | fg).flatten(1).sum(1)
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter, dtype=torch.float))
        return {**losses.as_dict(), "iou": float(iou.mean()), **self._pseudo_stats(pseudo_logits, target)}

    @staticmethod
    def _pseudo_stats(pseudo_logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Log-window sums of a micro-batch's pseudo-mask: probability on / off the target, peaks on it."""
        logits = pseudo_logits.detach().float()
        on, off = pseudo_mask_separation(torch.sigmoid(logits), target)
        has = ~torch.isnan(on)
        return {
            "pm_target": float(on[has].sum()),  # sums; the log divides by the counts
            "pm_background": float(off.mean()),
            "peak": float((peak_in_target(logits, target) & has).sum()),
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
            score = float(metrics["peak_in_target"] if self.grounding else metrics["mIoU"] + metrics["oIoU"])
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
        assert self.val_dataset is not None
        indices = range(self.rank, len(self.val_dataset), self.world_size)
        if self.grounding:
            return self._validate_grounding(list(indices))
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

    def _validate_grounding(self, indices: list[int]) -> dict[str, float | int]:
        """The grounding stage's validation: the pseudo-mask's peak-in-target rate and separation."""
        loader = DataLoader(
            TrainingSet(self.val_dataset, self.processor),
            batch_size=self.config.eval_batch_size,
            sampler=indices,
            collate_fn=self.collate,
        )
        self.model.eval()
        metrics = grounding_metrics(GroundingInputs(self.model), loader, self.device)
        self.model.train()
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, metrics)
            metrics = combine_grounding_metrics(gathered)
        return metrics

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
        for k in ("total",) if self.grounding else ("total", "ce", "dice", "boundary"):
            record["loss" if k == "total" else k] = self._all_mean(window[k], n)
        if self.loss_fn.config.pseudo_mask_weight > 0 and not self.grounding:
            record["pseudo_mask"] = self._all_mean(window.get("pseudo_mask", 0.0), n)
        if not self.grounding:
            record["train_iou"] = self._all_mean(window.get("iou", 0.0), n)
        n_target = int(window.get("n_target", 0))
        record["peak_in_target"] = 100.0 * self._all_mean(window.get("peak", 0.0), n_target)
        record["pm_target"] = self._all_mean(window.get("pm_target", 0.0), n_target)
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
