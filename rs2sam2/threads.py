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
#: Models with fewer parameters than this run on one thread unless told otherwise
#: (:func:`threads_for_model`): measured with ``benchmarks/threads.py`` on 2 cores, the ``tiny`` preset
#: takes 39 ms with 1 thread and 32 ms with 2 on an idle machine, but 70 ms against 3.83 s (54× slower)
#: while two other processes keep both cores busy. A small model gains little from a second thread and
#: risks a lot (a shared Space, a laptop running something else).
SMALL_MODEL_PARAMETERS = 50_000_000


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


def threads_for_model(num_parameters: int, num_threads: int | None = None) -> int | None:
    """The thread count for a model of ``num_parameters``: :func:`resolve_num_threads` when the argument or
    ``$RS2SAM2_NUM_THREADS`` says; else 1 for a small model (< :data:`SMALL_MODEL_PARAMETERS`, e.g. the
    bundled ``tiny`` one); else :data:`DEFAULT_NUM_THREADS` (``None``: torch's default, one per core —
    the ``official`` preset gains from every core on an idle machine)."""
    chosen = resolve_num_threads(num_threads)
    if chosen is not None:
        return chosen
    return 1 if num_parameters < SMALL_MODEL_PARAMETERS else DEFAULT_NUM_THREADS
