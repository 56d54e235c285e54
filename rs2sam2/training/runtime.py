"""The process a training run executes in: joining ``torchrun``'s process group, this process's rank,
deterministic algorithms, gradient checkpointing, and :class:`LossInputs`, the module that
``DistributedDataParallel`` wraps.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from ..weights.pretrained import RS2SAM2


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


def dist_info() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
