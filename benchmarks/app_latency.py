"""End-to-end latency of the Gradio demo: ``app.demo`` served locally, called through ``gradio_client``.

Each request uploads the image, runs ``/segment`` (model + all panels + downloads) and fetches every output
file, like a remote user. The model's own ``predict`` time on the same input is reported alongside, so the
app's overhead is visible. Prints one JSON object. Examples::

    python benchmarks/app_latency.py                               # bundled model (random tiny if absent)
    python benchmarks/app_latency.py --model random-tiny --requests 20
    python benchmarks/app_latency.py --model path/to/model --image scene.tif --bands 3,2,1 --concurrency 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RANDOM_TINY = "random-tiny"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _random_tiny_predictor(folder: Path):
    import torch

    from rs2sam2 import RS2SAM2, RS2SAM2Config
    from rs2sam2.predictor import RS2SAM2Predictor
    from rs2sam2.processing import RS2SAM2Processor
    from rs2sam2.testing import make_test_tokenizer
    from rs2sam2.text import load_tokenizer

    make_test_tokenizer(folder)
    cfg = RS2SAM2Config.from_preset("tiny")
    tok = load_tokenizer(
        folder, min_vocab_size=cfg.tokenizer.min_vocab_size, max_vocab_size=cfg.union_encoder.vocab_size
    )
    torch.manual_seed(0)
    return RS2SAM2Predictor(RS2SAM2(cfg), RS2SAM2Processor(cfg, tok))


def _default_input(folder: Path) -> tuple[str, str]:
    import numpy as np
    from PIL import Image

    from rs2sam2 import app as app_logic

    examples = app_logic.load_examples()
    if examples:
        return examples[0][0], examples[0][1]
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (512, 512, 3), dtype=np.uint8)
    image[150:300, 180:380] = (210, 50, 40)
    path = folder / "scene.png"
    Image.fromarray(image).save(path)
    return str(path), "the red roof in the middle"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or folder (default: bundled, else random-tiny)")
    ap.add_argument("--image", default=None, help="default: the first example, else a generated scene")
    ap.add_argument("--expression", default=None)
    ap.add_argument("--bands", default="", help="1-based band choice as typed in the UI, e.g. 3,2,1")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=1, help="requests in flight at once")
    args = ap.parse_args(argv)

    from gradio_client import Client, handle_file

    from rs2sam2 import app as app_logic
    from rs2sam2.predictor import DEFAULT_MODEL
    from rs2sam2.testing import register_app_predictor, serve_app_locally

    work = Path(tempfile.mkdtemp(prefix="rs2sam2-bench-"))
    model = args.model or (app_logic.BUNDLED_MODEL_ID if DEFAULT_MODEL.is_dir() else RANDOM_TINY)
    if model == RANDOM_TINY:
        register_app_predictor(RANDOM_TINY, _random_tiny_predictor(work / "tokenizer"))
    t0 = time.perf_counter()
    predictor = app_logic.get_predictor(model)
    load_s = time.perf_counter() - t0
    image, expression = _default_input(work)
    image = args.image or image
    expression = args.expression or expression

    rgb = app_logic.prepare_image(app_logic.read_image(image), app_logic.parse_bands(args.bands))
    predict_times = []
    for _ in range(args.warmup + 5):
        t = time.perf_counter()
        predictor.predict(rgb, expression, output_attentions=True)
        predict_times.append(time.perf_counter() - t)
    predict_times = predict_times[args.warmup :]

    from app import demo

    url = serve_app_locally(demo)
    try:
        client = Client(url, verbose=False)
        model_choice, custom = (
            (model, "") if model in app_logic.MODEL_CHOICES else (app_logic.BUNDLED_MODEL_ID, model)
        )

        def request(_: int) -> float:
            t = time.perf_counter()
            out = client.predict(
                handle_file(image),
                expression,
                model_choice,
                custom,
                args.bands,
                app_logic.DEFAULT_THRESHOLD,
                app_logic.DEFAULT_STAGE,
                api_name="/segment",
            )
            elapsed = time.perf_counter() - t
            assert json.loads(Path(out[7]).read_text())["expression"] == expression
            return elapsed

        for i in range(args.warmup):
            request(i)
        t_all = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            latencies = list(pool.map(request, range(args.requests)))
        wall = time.perf_counter() - t_all
    finally:
        demo.close()

    import torch

    w, h = rgb.size
    result = {
        "model": model,
        "image": Path(image).name,
        "image_size": [h, w],
        "expression": expression,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "server_concurrency_limit": app_logic.CONCURRENCY_LIMIT,
        "median_s": round(statistics.median(latencies), 4),
        "p95_s": round(_percentile(latencies, 0.95), 4),
        "min_s": round(min(latencies), 4),
        "throughput_rps": round(args.requests / wall, 2),
        "predict_median_s": round(statistics.median(predict_times), 4),
        "model_load_s": round(load_s, 2),
        "torch_threads": torch.get_num_threads(),
        "device": str(predictor.device),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # app.py lives at the repo root
    main()
