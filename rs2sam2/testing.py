"""What tests and benchmarks need from the package: decompression-bomb files (small on disk), a tiny
tokenizer trained on a remote-sensing style corpus, and the demo app served in-process with a predictor
primed in its cache.

Each bomb writer streams its compressed data, so making a bomb never holds its decoded size in memory.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def _deflate_zeros(n_bytes: int, row: bytes | None = None, rows: int = 0) -> bytes:
    """zlib stream of ``n_bytes`` zero bytes (or of ``rows`` copies of ``row``)."""
    c = zlib.compressobj(9)
    parts = []
    if row is not None:
        block = row * max(1, _CHUNK // len(row))
        per = len(block) // len(row)
        for start in range(0, rows, per):
            parts.append(c.compress(block[: len(row) * min(per, rows - start)]))
    else:
        zeros = bytes(_CHUNK)
        for start in range(0, n_bytes, _CHUNK):
            parts.append(c.compress(zeros[: min(_CHUNK, n_bytes - start)]))
    parts.append(c.flush())
    return b"".join(parts)


def palette_png_bomb(path: str | Path, width: int = 13000, height: int = 13000) -> Path:
    """A valid 1-bit palette PNG of ``width`` × ``height`` black pixels (13000² is about 20 KB on disk;
    PIL decodes it to one byte per pixel, and to four as RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed 1-bit indices
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)  # bit depth 1, colour type 3 (palette)
    body = chunk(b"IHDR", ihdr) + chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff")
    body += chunk(b"IDAT", _deflate_zeros(0, row=row, rows=height)) + chunk(b"IEND", b"")
    path = Path(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def multipage_tiff_bomb(path: str | Path, pages: int = 64, width: int = 8000, height: int = 8000) -> Path:
    """A valid little-endian TIFF of ``pages`` 8-bit grey pages of ``width`` × ``height`` zeros, all
    pointing at one shared deflate strip (64 pages of 8000² decode to 4 GB; about 64 KB on disk)."""
    strip = _deflate_zeros(width * height)
    n_tags = 9
    ifd_size = 2 + 12 * n_tags + 4
    data_offset = 8
    first_ifd = data_offset + len(strip) + (len(strip) & 1)
    out = bytearray(b"II*\x00" + struct.pack("<I", first_ifd))
    out += strip + b"\x00" * (len(strip) & 1)
    for i in range(pages):
        here = first_ifd + i * ifd_size
        nxt = here + ifd_size if i + 1 < pages else 0
        tags = [  # (tag, type, count, value): type 3 SHORT, 4 LONG
            (256, 4, 1, width),
            (257, 4, 1, height),
            (258, 3, 1, 8),
            (259, 3, 1, 8),  # Adobe deflate
            (262, 3, 1, 1),  # BlackIsZero
            (273, 4, 1, data_offset),
            (277, 3, 1, 1),
            (278, 4, 1, height),
            (279, 4, 1, len(strip)),
        ]
        out += struct.pack("<H", n_tags)
        for tag, kind, count, value in tags:
            packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, count) + packed
        out += struct.pack("<I", nxt)
    path = Path(path)
    path.write_bytes(bytes(out))
    return path


def jpeg_header_bomb(path: str | Path, width: int = 60000, height: int = 60000) -> Path:
    """A small JPEG whose frame header (SOF0) declares ``width`` × ``height`` pixels."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 60)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path = Path(path)
    path.write_bytes(bytes(data))
    return path


# ------------------------------------------------------------------------------------------ tiny tokenizer
_COLOURS = ("white", "red", "blue", "green", "gray", "dark", "black", "yellow", "orange", "brown", "silver")
_SIZES = ("large", "small", "big", "tiny", "long", "round", "square", "rectangular", "narrow", "wide")
_OBJECTS = (
    "storage tank", "ship", "airplane", "vehicle", "bridge", "harbor", "tennis court", "baseball field",
    "basketball court", "ground track field", "windmill", "chimney", "dam", "stadium", "train station",
    "overpass", "golf field", "airport", "expressway service area", "expressway toll station", "building",
    "roof", "swimming pool", "parking lot", "roundabout", "helicopter", "boat", "truck", "container",
    "warehouse", "greenhouse", "soccer field", "wind turbine", "oil tank", "pier", "crane",
)  # fmt: skip
_STATES = ("parked", "docked", "moored", "located", "standing", "lying", "sitting", "placed")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "last")
_DIRECTIONS = (
    "top",
    "bottom",
    "left",
    "right",
    "upper left",
    "lower right",
    "north",
    "south",
    "east",
    "west",
)
_LANDMARKS = (
    "the road", "the river", "the runway", "the coast", "the parking lot", "the field", "the dam",
    "the highway", "the lake", "the forest", "the railway", "the canal", "the beach", "the shadow",
)  # fmt: skip
_RELATIONS = (
    "closest to {landmark}",
    "next to {landmark}",
    "on the {direction} of the image",
    "in the {direction} corner",
    "at the {direction}",
    "near {landmark}",
    "far from {landmark}",
    "in the middle",
    "between {landmark} and the {object}",
    "above the {object}",
    "below the {object}",
    "{state} beside {landmark}",
    "{state} along {landmark}",
    "surrounded by trees",
    "with a shadow pointing {direction}",
)


def remote_sensing_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Generate ``n`` deterministic referring expressions in the style of remote sensing datasets."""
    rng = random.Random(seed)
    phrases: list[str] = []
    for _ in range(n):
        obj = rng.choice(_OBJECTS)
        relation = rng.choice(_RELATIONS).format(
            landmark=rng.choice(_LANDMARKS),
            direction=rng.choice(_DIRECTIONS),
            object=rng.choice(_OBJECTS),
            state=rng.choice(_STATES),
        )
        style = rng.randrange(3)
        if style == 0:
            phrase = f"the {rng.choice(_COLOURS)} {obj} {relation}"
        elif style == 1:
            phrase = f"the {rng.choice(_ORDINALS)} {obj} from the {rng.choice(_DIRECTIONS)}"
        else:
            phrase = f"the {rng.choice(_SIZES)} {rng.choice(_COLOURS)} {obj} {relation}"
        phrases.append(phrase)
    return phrases


def make_test_tokenizer(
    out_dir: str | os.PathLike[str], vocab_size: int = 128, *, model_type: str = "unigram"
) -> Path:
    """Train a tiny tokenizer on :func:`remote_sensing_corpus` and save it to ``out_dir`` (well under 2 s).

    The folder is laid out like a released checkpoint's; ``len(load_tokenizer(out_dir, ...))`` is
    ``vocab_size + 3``. ``vocab_size`` can be at most 170 (unigram) or 871 (bpe) for this corpus.
    """
    from .text import train_sentencepiece_tokenizer

    return train_sentencepiece_tokenizer(remote_sensing_corpus(), out_dir, vocab_size, model_type=model_type)


# ------------------------------------------------------------------------------------------------ the app
def register_app_predictor(model_id: str, predictor: Any) -> None:
    """Put a ready predictor in the demo app's cache under ``model_id`` (tests and benchmarks prime it this
    way instead of loading a model)."""
    from .app import models

    models._predictors[model_id] = predictor


def serve_app_locally(demo: Any) -> str:
    """Serve the Gradio ``demo`` in this process on a free port of 127.0.0.1, launched as app.py launches it
    (tests, benchmarks); returns its URL. ``demo.close()`` stops it."""
    import socket

    from .app import LAUNCH_OPTIONS

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        **LAUNCH_OPTIONS,
    )
    return url
