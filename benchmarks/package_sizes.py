"""Sizes of rs2sam2 model packages (``model.safetensors``), computed without allocating any weights.

The model is built on the ``meta`` device; each package's size is the sum of numel × element size of the
tensors it stores, plus the safetensors header (8-byte length + JSON, padded to 8 bytes) computed the way
safetensors writes it (checked byte-exact against saved tiny packages). Variants: full float32 / bfloat16 /
float16, and compact packages that leave out the frozen Hiera trunk + FPN neck (restored from the base
SAM2 checkpoint at load time).

    python benchmarks/package_sizes.py                 # official preset, JSON on stdout
    python benchmarks/package_sizes.py --preset tiny
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from rs2sam2 import RS2SAM2, RS2SAM2Config
from rs2sam2.weights.compact import COMPACT_PREFIXES

_SAFETENSORS_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
VARIANTS: dict[str, tuple[torch.dtype, bool]] = {
    "float32": (torch.float32, False),
    "bfloat16": (torch.bfloat16, False),
    "float16": (torch.float16, False),
    "compact_float32": (torch.float32, True),
    "compact_bfloat16": (torch.bfloat16, True),
}
LIMIT_BYTES = 1.5e9  # goal for the official compact package


def header_bytes(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype) -> int:
    """Size of the safetensors header for these tensors (all of one dtype), as written by ``save_file``."""
    item = torch.empty(0, dtype=dtype).element_size()
    header: dict[str, object] = {"__metadata__": {"format": "pt", "library": "rs2sam2"}}
    offset = 0
    for name in sorted(shapes):
        size = item * _numel(shapes[name])
        header[name] = {
            "dtype": _SAFETENSORS_DTYPE[dtype],
            "shape": list(shapes[name]),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    n = len(json.dumps(header, separators=(",", ":")).encode())
    return 8 + n + (-n) % 8


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def package_sizes(config: RS2SAM2Config) -> dict[str, object]:
    with torch.device("meta"):
        model = RS2SAM2(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    omitted = {k for k in shapes if k.startswith(COMPACT_PREFIXES)}
    out: dict[str, object] = {
        "tensors": len(shapes),
        "parameters": sum(_numel(s) for s in shapes.values()),
        "omitted_in_compact": {
            "tensors": len(omitted),
            "parameters": sum(_numel(shapes[k]) for k in omitted),
        },
        "packages": {},
    }
    for name, (dtype, compact) in VARIANTS.items():
        kept = {k: s for k, s in shapes.items() if not (compact and k in omitted)}
        data = sum(_numel(s) for s in kept.values()) * torch.empty(0, dtype=dtype).element_size()
        total = data + header_bytes(kept, dtype)
        out["packages"][name] = {"bytes": total, "GB": round(total / 1e9, 3), "GiB": round(total / 2**30, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="official")
    args = parser.parse_args(argv)
    result: dict[str, object] = {
        "preset": args.preset,
        **package_sizes(RS2SAM2Config.from_preset(args.preset)),
    }
    compact = result["packages"]["compact_bfloat16"]["bytes"]  # type: ignore[index]
    result["compact_bfloat16_within_1.5GB"] = compact <= LIMIT_BYTES
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
