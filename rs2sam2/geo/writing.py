"""Writing the mask of :func:`rs2sam2.geo.predict_raster` as consecutive full-width row strips.

The mask is a single-band uint8 GeoTIFF (values 0 / ``mask_value``; LZW, tiled) with the source CRS and
transform, or a PNG (no georeferencing). Logits at the model's read size are upsampled bilinearly (PyTorch
``align_corners=False`` convention) strip by strip, so no full-resolution float array of the scene is held.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STRIP_PIXELS = 1 << 22  # rows written per strip ≈ this many pixels (16 MiB of float32 logits)


class MaskSink:
    """Receives the mask as consecutive full-width row strips; GeoTIFF (streamed) or PNG (in memory)."""

    def __init__(self, path: Path, src: Any, mask_value: int) -> None:
        self.path, self.mask_value = path, mask_value
        self.height, self.width = src.height, src.width
        suffix = path.suffix.lower()
        if suffix in (".tif", ".tiff"):
            import rasterio

            tiled = min(src.height, src.width) >= 256
            blocks = {"blockxsize": 256, "blockysize": 256} if tiled else {}
            self.dst = rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=src.width,
                height=src.height,
                count=1,
                dtype="uint8",
                crs=src.crs,
                transform=src.transform,
                compress="lzw",
                tiled=tiled,
                BIGTIFF="IF_SAFER",
                **blocks,
            )
            self.array = None
        elif suffix == ".png":
            self.dst, self.array = None, np.zeros((src.height, src.width), np.uint8)
        else:
            raise ValueError(f"mask output must end in .tif, .tiff or .png, got {path.name!r}")
        self.row = 0

    def write(self, mask: np.ndarray) -> None:
        """Append (n, W) bool rows."""
        from rasterio.windows import Window

        block = mask.astype(np.uint8) * np.uint8(self.mask_value)
        if self.dst is not None:
            self.dst.write(block, 1, window=Window(0, self.row, self.width, len(block)))
        else:
            self.array[self.row : self.row + len(block)] = block
        self.row += len(block)

    def write_empty(self, rows: int) -> None:
        """Append ``rows`` background rows."""
        step = max(1, STRIP_PIXELS // self.width)
        for r in range(0, rows, step):
            self.write(np.zeros((min(step, rows - r), self.width), bool))

    def abort(self) -> None:
        """Close and delete a partly written output."""
        if self.dst is not None:
            self.dst.close()
            self.path.unlink(missing_ok=True)

    def close(self, tags: dict[str, str]) -> None:
        assert self.row == self.height, f"wrote {self.row} of {self.height} rows"
        if self.dst is not None:
            self.dst.update_tags(**tags)
            self.dst.close()
        else:
            from PIL import Image

            Image.fromarray(self.array).save(self.path)  # (H, W) uint8 → mode L


@dataclass
class MaskStats:
    """Running foreground count and probability sum (for the score)."""

    pixels: int = 0
    prob_sum: float = 0.0

    def add(self, logits: np.ndarray, mask: np.ndarray) -> None:
        x = logits[mask].astype(np.float64)
        self.pixels += int(x.size)
        self.prob_sum += float((1.0 / (1.0 + np.exp(-(2.0 * x - 1.0)))).sum())  # p_fg = sigmoid(2x − 1)

    @property
    def score(self) -> float:
        return self.prob_sum / self.pixels if self.pixels else 0.0


def _bilinear_axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weights for ``align_corners=False`` bilinear resizing along one axis."""
    pos = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _resize_rows(logits: np.ndarray, out_shape: tuple[int, int], r0: int, r1: int) -> np.ndarray:
    """Rows [r0, r1) of ``logits`` (h, w) bilinearly resized to ``out_shape`` (as F.interpolate would)."""
    y0, y1, wy = (a[r0:r1] for a in _bilinear_axis(out_shape[0], logits.shape[0]))
    x0, x1, wx = _bilinear_axis(out_shape[1], logits.shape[1])
    rows = logits[y0] * (1.0 - wy)[:, None] + logits[y1] * wy[:, None]  # (n, w)
    return rows[:, x0] * (1.0 - wx) + rows[:, x1] * wx  # (n, W)
