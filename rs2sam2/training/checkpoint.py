"""Crash-safe training state: seeding and capturing the random generators, the atomically written
``checkpoint.pt`` and its strict (``weights_only``) reading, the atomically swapped ``best`` model folder,
and :class:`Checkpointing`, the part of the :class:`~rs2sam2.training.trainer.Trainer` that saves and
restores its progress for an exact resume.

A checkpoint holds tensors and plain values only (no pickled classes), so it loads with
``weights_only=True`` whatever module the code that wrote it lived in.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

    from ..processing import RS2SAM2Processor
    from ..weights.pretrained import RS2SAM2
    from .config import TrainConfig

CHECKPOINT_NAME = "checkpoint.pt"
BEST_DIR = "best"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_FORMAT = 1


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (all devices), as the official ``seed_everything``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    from ..weights.checkpoint_scan import check_declared_sizes

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
            from ..weights.hub import save_pretrained

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


class Checkpointing:
    """What :class:`~rs2sam2.training.trainer.Trainer` saves and restores: its weights, optimiser,
    scheduler, random generators and progress (the attributes the trainer sets up)."""

    config: TrainConfig
    model: RS2SAM2
    optimizer: Optimizer
    scheduler: LRScheduler
    device: torch.device
    world_size: int
    epoch: int
    step: int
    epoch_batches: int
    epoch_loss: list
    log_window: dict[str, float]
    best: dict[str, Any] | None
    checkpoint_path: Path
    metrics_path: Path
    is_main: bool

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
