"""Peak memory of the served demo app on decompression bombs, and that it keeps answering afterwards.

The app (``app.demo``, bundled model, else a random tiny one under the bundled name) runs in a child
process; for each bomb (made here, small on disk: :mod:`rs2sam2.testing`) the child's peak RSS (VmHWM,
reset through ``/proc/<pid>/clear_refs`` before each case) is read around a ``/preview`` and a ``/segment``
request through ``gradio_client``, then a normal request must still succeed. ``near-limit`` is an image just
inside the pixel budget (accepted: the cost of the largest request the app serves). Prints one JSON object
(memory figures; times are indicative only). Linux only (``/proc``). Example::

    python benchmarks/app_bombs.py            # all cases
    python benchmarks/app_bombs.py --no-near-limit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = "the large white building"


def serve() -> None:
    """Child: serve the app on 127.0.0.1, print its URL, run until stdin closes."""
    sys.path.insert(0, str(ROOT))
    from rs2sam2 import app as app_logic
    from rs2sam2.predictor import DEFAULT_MODEL
    from rs2sam2.testing import register_app_predictor, serve_app_locally

    if not DEFAULT_MODEL.is_dir():
        from benchmarks.app_latency import _random_tiny_predictor

        folder = Path(tempfile.mkdtemp(prefix="rs2sam2-bombs-"))
        register_app_predictor(app_logic.BUNDLED_MODEL_ID, _random_tiny_predictor(folder / "tok"))
    from app import demo

    url = serve_app_locally(demo)
    print(url, flush=True)
    sys.stdin.read()
    demo.close()


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS
        return True
    except OSError:
        return False


def make_cases(folder: Path, near_limit: bool) -> dict[str, Path]:
    from PIL import Image

    from rs2sam2.app import app_max_pixels
    from rs2sam2.testing import jpeg_header_bomb, multipage_tiff_bomb, palette_png_bomb

    cases = {
        "palette-png-13000x13000": palette_png_bomb(folder / "palette.png", 13000, 13000),
        "multipage-tiff-64x8000x8000": multipage_tiff_bomb(folder / "pages.tif", 64, 8000, 8000),
        "jpeg-header-60000x60000": jpeg_header_bomb(folder / "header.jpg", 60000, 60000),
        "png-header-100000x100000": palette_png_bomb(folder / "huge.png", 100_000, 100_000),
    }
    if near_limit:
        side = int(app_max_pixels() ** 0.5)  # exactly at the app's budget (6144²), accepted
        cases[f"near-limit-palette-png-{side}x{side}"] = palette_png_bomb(folder / "near.png", side, side)
    Image.new("RGB", (256, 256), (120, 110, 90)).save(folder / "good.png")
    return cases


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-near-limit", action="store_true", help="skip the accepted near-limit image")
    args = ap.parse_args(argv)
    if args.serve:
        serve()
        return {}
    from gradio_client import Client, handle_file

    from rs2sam2 import app as app_logic

    work = Path(tempfile.mkdtemp(prefix="rs2sam2-bombs-"))
    cases = make_cases(work, near_limit=not args.no_near_limit)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = child.stdout.readline().strip()
        client = Client(url, verbose=False)

        def segment(path: Path) -> str:
            try:
                out = client.predict(
                    handle_file(str(path)),
                    TEXT,
                    app_logic.BUNDLED_MODEL_ID,
                    "",
                    "",
                    0.5,
                    0,
                    api_name="/segment",
                )
            except Exception as e:  # the app's refusal, as the client sees it
                return f"error: {str(e).splitlines()[0][:160]}"
            return "ok: " + json.dumps(json.loads(Path(out[7]).read_text())["image_size"])

        def preview(path: Path) -> str:
            try:
                _, info = client.predict(handle_file(str(path)), "", api_name="/preview")
            except Exception as e:
                return f"error: {str(e).splitlines()[0][:160]}"
            return str(info)[:160]

        assert segment(work / "good.png").startswith("ok"), "the app does not answer"  # loads the model
        baseline = _rss_mb(child.pid, "VmRSS")
        results = {}
        for name, path in cases.items():
            resettable = _reset_peak(child.pid)
            t = time.perf_counter()
            answers = {"preview": preview(path), "segment": segment(path)}
            seconds = time.perf_counter() - t
            peak = _rss_mb(child.pid, "VmHWM")
            results[name] = {
                "file_bytes": path.stat().st_size,
                "peak_rss_mb": round(peak, 1),
                "peak_is_per_case": resettable,
                "seconds": round(seconds, 2),
                **answers,
                "answers_afterwards": segment(work / "good.png").startswith("ok"),
            }
        report = {
            "baseline_rss_mb": round(baseline, 1),
            "limit_mb": 1536,
            "all_under_limit": all(r["peak_rss_mb"] < 1536 for r in results.values()),
            "all_answer_afterwards": all(r["answers_afterwards"] for r in results.values()),
            "cases": results,
        }
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
