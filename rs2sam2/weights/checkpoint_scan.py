"""Bound what a pickled torch checkpoint may allocate, before ``torch.load`` reads it.

``torch.load(weights_only=True)`` runs no code, but it trusts the sizes a file declares: a legacy (non-zip)
checkpoint allocates every storage at its declared size before reading its bytes, and a zip entry may
declare an uncompressed size far beyond the archive. :func:`check_declared_sizes` reads the pickle with an
unpickler that builds nothing (every global becomes an inert stand-in, every storage a record of its
declared size) and refuses the file when the storages declare more bytes than the file holds, or a zip
entry claims to be larger than the archive.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

# Bytes per element of the typed storages torch writes (``torch.FloatStorage`` …); ``UntypedStorage``
# counts bytes. Anything else is counted at 16 bytes, the widest type.
_ITEM_BYTES = {
    "UntypedStorage": 1, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1, "QUInt8Storage": 1,
    "QInt8Storage": 1, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "Float8_e4m3fnStorage": 1,
    "Float8_e5m2Storage": 1, "ShortStorage": 2, "HalfStorage": 2, "BFloat16Storage": 2, "IntStorage": 4,
    "FloatStorage": 4, "QInt32Storage": 4, "LongStorage": 8, "DoubleStorage": 8, "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
}  # fmt: skip
_WIDEST = 16


class DeclaredSizeError(ValueError):
    """The checkpoint declares more data than the file can hold."""


class _Inert:
    """Stands in for every object the pickle names: accepts any construction and any state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _SizeScan(pickle.Unpickler):
    def __init__(self, f: BinaryIO) -> None:
        super().__init__(f, encoding="latin1")
        self.declared = 0
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key not in self._classes:  # a fresh inert class, so NEWOBJ and REDUCE both work
            self._classes[key] = type(name, (_Inert,), {})
        return self._classes[key]

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            kind = getattr(pid[1], "__name__", str(pid[1]))
            numel = pid[4]
            if not isinstance(numel, int) or numel < 0:
                raise DeclaredSizeError(f"a storage declares {numel!r} elements")
            self.declared += numel * _ITEM_BYTES.get(kind, _WIDEST)
        return _Inert()


def declared_bytes(path: str | Path) -> int:
    """Total bytes the storages of a torch checkpoint declare (zip or legacy format), read from the pickle
    alone; raises :class:`DeclaredSizeError` for a zip entry larger than the archive."""
    path = Path(path)
    size = path.stat().st_size
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            pickles = []
            for info in z.infolist():
                if info.file_size > size:
                    raise DeclaredSizeError(
                        f"zip entry {info.filename.rsplit('/', 1)[-1]!r} declares {info.file_size:,} bytes, "
                        f"more than the whole {size:,}-byte file"
                    )
                if info.filename.endswith("data.pkl"):
                    pickles.append(info)
            total = 0
            for info in pickles:
                scan = _SizeScan(io.BytesIO(z.read(info)))
                scan.load()
                total += scan.declared
            return total
    with path.open("rb") as f:  # legacy: magic, protocol, sys info, then the object pickle
        scan = _SizeScan(f)
        for _ in range(4):
            scan.load()
        return scan.declared


def check_declared_sizes(path: str | Path) -> None:
    """Raise :class:`DeclaredSizeError` when ``path`` declares more tensor bytes than it holds; files that
    are no torch pickle pass (``torch.load`` gives their error)."""
    path = Path(path)
    size = path.stat().st_size
    try:
        total = declared_bytes(path)
    except DeclaredSizeError:
        raise
    except Exception:  # not a pickle / not a checkpoint: torch.load says what is wrong
        return
    if total > size:
        raise DeclaredSizeError(
            f"{path.name} declares {total:,} bytes of tensors but the file is only {size:,} bytes: it is "
            "truncated or forged; refusing to allocate"
        )
