"""Tiles mode on a large synthetic GeoTIFF with the tiny model: wall time and peak RSS (target < 3 GB).

The scene (default 10,000 × 10,000 × 3 uint8, EPSG:32633, 0.5 m pixels: fields, roads, buildings and a
lake; ``--size WxH`` for another shape) is written strip by strip (``--jpeg``: then saved as a JPEG, which
has no georeferencing, as a photo would be), then segmented in a fresh subprocess so the peak RSS is the
prediction's alone. Peak RSS is ``VmHWM`` from ``/proc/self/status`` where available: ``getrusage``'s
``ru_maxrss`` also counts the parent's RSS at fork time on Linux. ``--batch-sizes`` runs one subprocess per
number of windows per forward (1 is the one-window-at-a-time path before batching) and reports each and
the speed-up over the first. Prints one JSON object. Examples::

    python benchmarks/geo_tiles.py                                  # bundled model, 10k², tiles of 1024
    python benchmarks/geo_tiles.py --size 3000 --tile-size 256 --overlap 64
    python benchmarks/geo_tiles.py --model path/to/model --keep /tmp/scene.tif
    # the 3000 × 2000 JPEG of issue 17 (176 windows of 256), one window at a time vs batches of 4:
    python benchmarks/geo_tiles.py --size 3000x2000 --jpeg --tile-size 256 --overlap 64 --batch-sizes 1 4

Without a bundled or given model, a randomly initialised tiny model (with a test tokenizer) runs instead:
the timing and memory are the same, the mask is meaningless (``"model"`` in the output says which).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_PEAK_RSS_MB = 3 * 1024


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


def parse_size(text: str) -> tuple[int, int]:
    """``"3000x2000"`` → (3000, 2000) (width, height); ``"5000"`` → (5000, 5000)."""
    parts = text.lower().split("x")
    try:
        width, height = (int(parts[0]),) * 2 if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected N or WxH, e.g. 3000x2000, got {text!r}") from None
    if len(parts) > 2 or min(width, height) < 64:
        raise argparse.ArgumentTypeError(f"expected N or WxH with sides >= 64, got {text!r}")
    return width, height


def write_scene(path: Path, size: int | tuple[int, int], strip: int = 512, seed: int = 0) -> None:
    """A width × height (``size``: one side or (width, height)) RGB GeoTIFF written in strips (never held
    whole in memory)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    buildings = rng.integers(0, min(width, height) - 60, (width * height // 40_000, 2))  # ~one per 200²
    buildings[:, 1] = rng.integers(0, width - 60, len(buildings))
    sides = rng.integers(12, 60, (len(buildings), 2))
    lake = (0.3 * height, 0.6 * width, 0.12 * min(width, height))  # centre row, centre col, radius
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500_000.0, 5_000_000.0, 0.5, 0.5),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    cols = np.arange(width)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, strip):
            rows = np.arange(r0, min(height, r0 + strip))
            yy, xx = np.meshgrid(rows, cols, indexing="ij")
            field = ((yy // 700 + xx // 900) % 3).astype(np.uint8)  # agricultural parcels
            rgb = np.stack([70 + 25 * field, 100 + 20 * field, 60 + 10 * field]).astype(np.uint8)
            rgb[:, (yy % 1500) < 12] = 150  # roads
            rgb[:, (xx % 2100) < 12] = 150
            water = (yy - lake[0]) ** 2 + (xx - lake[1]) ** 2 < lake[2] ** 2
            rgb[:, water] = np.array([30, 60, 110], np.uint8)[:, None]
            for (br, bc), (h, w) in zip(buildings, sides):
                if br + h > rows[0] and br < rows[-1] + 1:
                    a, b = max(br, rows[0]) - rows[0], min(br + h, rows[-1] + 1) - rows[0]
                    rgb[:, a:b, bc : bc + w] = np.array([200, 80, 70], np.uint8)[:, None, None]
            dst.write(rgb, window=Window(0, r0, width, len(rows)))


def write_jpeg(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    """The same scene as a JPEG (read whole once: for scenes a photo can be, up to 100 megapixels)."""
    import numpy as np
    import rasterio
    from PIL import Image

    if size[0] * size[1] > 100_000_000:
        raise SystemExit("--jpeg is for scenes up to 100 megapixels")
    tif = path.with_name(f"{path.stem}.scene-tmp.tif")
    write_scene(tif, size, seed=seed)
    with rasterio.open(tif) as src:
        Image.fromarray(np.moveaxis(src.read(), 0, -1)).save(path, quality=90)
    tif.unlink()


def load_predictor(model: str | None, device: str | None) -> tuple[object, str]:
    """The given or bundled model, else a random tiny one (identical cost, meaningless mask)."""
    from rs2sam2.predictor import DEFAULT_MODEL, RS2SAM2Predictor

    if model is not None or (DEFAULT_MODEL / "config.json").is_file():
        return RS2SAM2Predictor.from_pretrained(model, device=device), str(model or DEFAULT_MODEL.name)
    import torch

    from rs2sam2 import RS2SAM2, RS2SAM2Config
    from rs2sam2.processing import RS2SAM2Processor
    from rs2sam2.testing import make_test_tokenizer
    from rs2sam2.text import load_tokenizer

    cfg = RS2SAM2Config.from_preset("tiny")
    folder = make_test_tokenizer(tempfile.mkdtemp(prefix="rs2sam2-tok-"), vocab_size=150)
    tok = load_tokenizer(
        folder, min_vocab_size=cfg.tokenizer.min_vocab_size, max_vocab_size=cfg.union_encoder.vocab_size
    )
    torch.manual_seed(0)
    predictor = RS2SAM2Predictor(RS2SAM2(cfg), RS2SAM2Processor(cfg, tok), device=device)
    return predictor, "random tiny (no bundled model found)"


def run_child(args: argparse.Namespace) -> dict:
    """Load the model and segment the scene in tiles mode; runs in its own process."""
    import torch

    from rs2sam2.geo import predict_raster

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    predictor, model_id = load_predictor(args.model, args.device)
    load_s = time.perf_counter() - t0
    rss_after_load = peak_rss_mb()
    t0 = time.perf_counter()
    res = predict_raster(
        predictor,
        args.scene,
        args.text,
        args.out,
        mode="tiles",
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.tile_batch,
    )
    predict_s = time.perf_counter() - t0
    peak = peak_rss_mb()
    return {
        "scene": f"{res.width}x{res.height}x3 uint8 {'JPEG' if args.scene.suffix == '.jpg' else 'GeoTIFF'}",
        "mode": "tiles",
        "tile_size": args.tile_size or int(predictor.model.config.image_size),
        "overlap": args.overlap,
        "tile_batch": args.tile_batch,
        "model": model_id,
        "device": str(predictor.device),
        "torch_threads": torch.get_num_threads(),
        "windows": res.windows,
        "load_seconds": round(load_s, 2),
        "predict_seconds": round(predict_s, 2),
        "seconds_per_window": round(predict_s / max(res.windows, 1), 3),
        "foreground_pixels": res.foreground_pixels,
        "peak_rss_after_load_mb": round(rss_after_load, 1),
        "peak_rss_mb": round(peak, 1),
        "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
        "within_target": peak < TARGET_PEAK_RSS_MB,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=(10_000, 10_000), help="scene side N or WxH")
    parser.add_argument("--jpeg", action="store_true", help="save the scene as a JPEG (no georeferencing)")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="windows per forward, one run each (default: 4)",
    )
    parser.add_argument("--tile-batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tile-size", type=int, default=1024, help="window side (multiple of model input)")
    parser.add_argument("--overlap", type=int, default=256)
    parser.add_argument("--model", help="model folder or Hub id (default: bundled, else random tiny)")
    parser.add_argument("--device")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--text", default="the lake")
    parser.add_argument("--keep", type=Path, help="write (or reuse) the scene here instead of a temp dir")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return
    from rs2sam2.geo import TILE_BATCH_SIZE

    batch_sizes = args.batch_sizes or [TILE_BATCH_SIZE]
    with tempfile.TemporaryDirectory(prefix="rs2sam2-geo-bench-") as tmp:
        scene = args.keep or Path(tmp) / ("scene.jpg" if args.jpeg else "scene.tif")
        t0 = time.perf_counter()
        if not scene.is_file():
            write_jpeg(scene, args.size) if args.jpeg else write_scene(scene, args.size)
        write_s = time.perf_counter() - t0
        runs = [run_parent(args, scene, Path(tmp), n) for n in batch_sizes]
    for r in runs:
        r["scene_write_seconds"] = round(write_s, 2)
    if len(runs) == 1:
        print(json.dumps(runs[0], indent=2))
        return
    first = runs[0]["predict_seconds"]
    speedup = {str(r["tile_batch"]): round(first / r["predict_seconds"], 3) for r in runs}
    print(json.dumps({"runs": runs, f"speedup_vs_tile_batch_{batch_sizes[0]}": speedup}, indent=2))


def run_parent(args: argparse.Namespace, scene: Path, tmp: Path, tile_batch: int) -> dict:
    """One child process segmenting ``scene`` with ``tile_batch`` windows per forward; its JSON result."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--scene",
        str(scene),
        "--out",
        str(tmp / f"mask_{tile_batch}.tif"),
        "--tile-size",
        str(args.tile_size),
        "--overlap",
        str(args.overlap),
        "--text",
        args.text,
        "--tile-batch",
        str(tile_batch),
    ]
    for flag, value in (("--model", args.model), ("--device", args.device), ("--threads", args.threads)):
        if value is not None:
            cmd += [flag, str(value)]
    t0 = time.perf_counter()
    child = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if child.returncode != 0:
        sys.exit(f"benchmark child failed:\n{child.stderr}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["child_wall_seconds"] = round(time.perf_counter() - t0, 2)
    return result


if __name__ == "__main__":
    main()
