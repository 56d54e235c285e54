"""Resident memory of a CPU process: the heap a forward pass freed, and the pages of memory-mapped weights.

Both matter on small machines (a 2-vCPU Space, a laptop): the ``official`` model's fp32 weights alone are
3.5 GiB. Everything here is Linux/glibc-specific and a silent no-op elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import re
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

_MADV_DONTNEED = 4
_SMAPS_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s*(.*)$")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
        + ("fordblks", "keepcost")
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc ≥ 2.33 (``mallinfo2`` and ``malloc_trim``), else None."""
    libc = _libc()
    if libc is None:
        return None
    try:
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except AttributeError:
        return None
    return libc


def release_cpu_memory(min_free_bytes: int = 32 << 20) -> bool:
    """Give the heap memory that a forward pass freed back to the OS, if at least ``min_free_bytes`` of it.

    glibc keeps freed activations in its heap for reuse; over repeated forwards of a large model that
    retained, fragmented memory raises the resident size (by 0.3–0.5 GB for the ``official`` preset
    on a 1024² image) although no tensor uses it. ``malloc_trim`` returns it (about 10 ms). The
    predictor calls this after every CPU forward. Returns whether it trimmed; False off glibc.
    """
    libc = _glibc()
    if libc is None or libc.mallinfo2().fordblks < min_free_bytes:
        return False
    libc.malloc_trim(0)
    return True


def clean_file_mappings() -> list[tuple[int, int]]:
    """Address ranges ``[start, end)`` of this process's file-backed mappings without a private page.

    Such a mapping holds nothing but copies of its file (no page was written, so none was copied on
    write: ``Anonymous: 0 kB`` in ``/proc/self/smaps``), so its resident pages can be dropped without
    loss: the next access reads them from the file (usually from the page cache) again. Empty off Linux.
    """
    try:
        with open("/proc/self/smaps") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    ranges: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in lines:
        header = _SMAPS_HEADER.match(line)
        if header:
            start, end, inode, path = header.groups()
            file_backed = inode != "0" and path and not path.startswith("[")
            current = (int(start, 16), int(end, 16)) if file_backed else None
        elif current is not None and line.startswith("Anonymous:"):
            if int(line.split()[1]) == 0:
                ranges.append(current)
            current = None
    return ranges


class FilePages:
    """Drops the resident pages of tensors that lie in memory-mapped files (checkpoints read with mmap).

    A checkpoint read with ``mmap`` (safetensors, ``torch.load(mmap=True)``) occupies memory only where it
    is read. Checking every value (for NaN/Inf) reads all of it, which would leave, e.g., the union
    encoder's 64,010-row text embedding (250 MiB in fp32) resident although a forward pass reads a dozen
    rows of it. :meth:`release` after each check hands those pages back; the weights a forward pass uses
    come back from the page cache on first use. The mappings are listed once, at construction: create
    it after the files are mapped and before anything writes to them.
    """

    def __init__(self) -> None:
        self._libc = _libc()
        self._ranges = clean_file_mappings() if self._libc is not None else []
        self._released: list[tuple[int, int]] = []
        self.released_bytes = 0

    def release(self, tensor: torch.Tensor) -> bool:
        """Drop the resident pages under ``tensor`` (CPU, contiguous) if they lie in one clean file mapping.
        Returns whether it did; tensors in ordinary (anonymous) memory are left alone."""
        if not self._ranges or tensor.device.type != "cpu" or not tensor.is_contiguous():
            return False
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        if end == start:
            return False
        for lo, hi in self._ranges:
            if lo <= start and end <= hi:
                page = os.sysconf("SC_PAGE_SIZE")
                # Whole pages, widened over the tensor's ends: the neighbours' parts are file copies too.
                a, b = start // page * page, min(hi, -(-end // page) * page)
                if not self._drop(a, b):
                    return False
                self._released.append((a, b))
                self.released_bytes += b - a
                return True
        return False

    def finish(self) -> None:
        """Drop every released range once more. Reading a tensor also maps neighbouring pages of the file
        (the kernel's fault-around, 64 KiB), which may belong to tensors released before it; after a pass
        over many small tensors these crumbs add up (7 MB of the ``tiny`` model's 48 MB)."""
        for a, b in self._released:
            self._drop(a, b)

    def _drop(self, a: int, b: int) -> bool:
        return self._libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a), _MADV_DONTNEED) == 0


def all_finite(tensor: torch.Tensor, chunk_elements: int = 1 << 24) -> bool:
    """``torch.isfinite(tensor).all()`` in chunks, so that the mask never takes more than 16 MB."""
    if not tensor.is_contiguous() or tensor.numel() <= chunk_elements:
        return bool(torch.isfinite(tensor).all())
    flat = tensor.view(-1)
    chunks = range(0, flat.numel(), chunk_elements)
    return all(bool(torch.isfinite(flat[i : i + chunk_elements]).all()) for i in chunks)


# In-place ops that only set values: what weight initialisation does to a parameter.
_VALUE_OPS = frozenset(
    ("normal_", "uniform_", "trunc_normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_")
    + ("kaiming_normal_", "zeros_", "ones_", "constant_", "zero_", "fill_", "erfinv_", "mul_", "add_")
    + ("sub_", "div_", "clamp_", "copy_")
)


class _SkipParameterInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in _VALUE_OPS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))  # nn.init passes tensor=
            if isinstance(target, torch.nn.Parameter):
                return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def skip_parameter_init() -> Iterator[None]:
    """Build modules without initialising their parameters, for a model that is about to receive every
    parameter from a checkpoint (a strict ``load_state_dict(..., assign=True)``).

    A parameter's storage is then allocated but never written, so the OS never backs it with memory
    before the checkpoint's tensor replaces it; buffers are computed as usual (they need not all be in a
    checkpoint). Building on the ``meta`` device instead would also avoid the memory, but in this torch
    the first meta-tensor op imports ``torch._dynamo`` and Triton: 150 MiB resident and a second of
    import that a model loaded for inference never needs.
    """
    with _SkipParameterInit():
        yield
