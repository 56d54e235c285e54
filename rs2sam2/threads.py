"""How many threads torch uses inside one operator (intra-op threads) for inference and training.

On a machine that other processes keep busy, torch's default (one thread per core) can be much slower
than one thread: the threads of one matmul wait for each other while the cores run something else. The
choice, first match wins: an explicit ``num_threads`` (``RS2SAM2Predictor.from_pretrained(num_threads=N)``,
``rs2sam2 predict --threads N``), then the environment variable ``RS2SAM2_NUM_THREADS``, then
:data:`DEFAULT_NUM_THREADS` (``None``: leave torch's own default). ``benchmarks/threads.py`` measures 1 vs
2 threads on an idle and on a busy machine.

This module imports torch only when it sets a thread count, so the command line can use it for free.
"""

from __future__ import annotations

import os

ENV_VAR = "RS2SAM2_NUM_THREADS"
#: Used when neither an argument nor the environment variable says; ``None`` keeps torch's default.
DEFAULT_NUM_THREADS: int | None = None


def resolve_num_threads(num_threads: int | None = None) -> int | None:
    """The thread count to use: ``num_threads``, else ``$RS2SAM2_NUM_THREADS``, else the default.

    Raises ``ValueError`` for anything but a positive integer.
    """
    if num_threads is None:
        text = os.environ.get(ENV_VAR, "").strip()
        if not text:
            return DEFAULT_NUM_THREADS
        try:
            num_threads = int(text)
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be a positive integer, got {text!r}") from None
        if num_threads < 1:
            raise ValueError(f"{ENV_VAR} must be a positive integer, got {text!r}")
        return num_threads
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    return num_threads


def apply_num_threads(num_threads: int | None = None) -> int | None:
    """Set torch's intra-op thread count as :func:`resolve_num_threads` says; returns it (None: unchanged).

    The setting is process-wide (it is torch's); nothing is imported or changed when there is nothing to set.
    """
    n = resolve_num_threads(num_threads)
    if n is None:
        return None
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
