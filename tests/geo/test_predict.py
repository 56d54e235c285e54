"""predict_raster (rs2sam2.geo.predict): a PNG output from a GeoTIFF warns that georeferencing is lost, and
a large scene in tiles mode has bounded peak memory.

A stub predictor that marks bright pixels (logit +4 where the RGB mean is above 128, −4 elsewhere) stands
in for the model, so every assertion checks the georeferencing, stretching and tiling machinery exactly.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

from rs2sam2.geo import (  # noqa: E402
    GeoWarning,
    predict_raster,
)

from ..conftest import GSD, UTM, X0, Y0, StubPredictor, scene, write_tif  # noqa: E402


def test_png_output_from_a_geotiff_warns_that_georeferencing_is_lost(tmp_path):
    src = write_tif(tmp_path / "s.tif", scene(64, 64, [(8, 24, 8, 24)]))
    with pytest.warns(GeoWarning, match="PNG masks carry no georeferencing"):
        res = predict_raster(StubPredictor(), src, "x", tmp_path / "m.png", mask_value=255)
    from PIL import Image

    assert set(np.unique(np.asarray(Image.open(res.out)))) == {0, 255}


# ---------------------------------------------------------------------------------- large scene
_LARGE_SCENE_SCRIPT = """
from types import SimpleNamespace
import numpy as np
import rasterio
from rs2sam2.geo import predict_raster

class Stub:  # numpy only, so that torch's import does not set the high-water mark
    model = SimpleNamespace(config=SimpleNamespace(image_size=256, mask_threshold=0.5))
    def predict(self, image, text, threshold=None):
        return SimpleNamespace(logits=np.where(image.mean(-1) > 128, 4.0, -4.0).astype(np.float32))

def rss_mb(peak):
    # VmHWM, not getrusage's ru_maxrss: after fork + exec Linux reports the parent's RSS in ru_maxrss
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    return int(status["VmHWM" if peak else "VmRSS"].split()[0]) / 1024

before = rss_mb(peak=False)
res = predict_raster(Stub(), {src!r}, "x", {out!r}, mode="tiles", tile_size=512, overlap=64)
tiles = rss_mb(peak=True)
with rasterio.open({src!r}) as ds:
    scene = ds.read()  # control: what holding the scene would cost
print(before, tiles, rss_mb(peak=True), res.foreground_pixels, res.windows)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_large_scene_tiles_mode_has_bounded_peak_memory(tmp_path):
    h = w = 3000
    boxes = [(1000, 1400, 1000, 1400), (2950, 3000, 0, 3000)]
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 4,
        "dtype": "float32",
        "crs": UTM,
        "transform": from_origin(X0, Y0, GSD, GSD),
        "tiled": True,
    }
    with rasterio.open(tmp_path / "big.tif", "w", **profile) as dst:
        for r in range(0, h, 500):  # written in strips: the test process never holds the scene either
            strip = np.full((4, 500, w), 10.0, np.float32)
            for r0, r1, c0, c1 in boxes:
                strip[:, max(r0 - r, 0) : max(min(r1 - r, 500), 0), c0:c1] = 100.0
            dst.write(strip, window=rasterio.windows.Window(0, r, w, 500))
    script = _LARGE_SCENE_SCRIPT.format(src=str(tmp_path / "big.tif"), out=str(tmp_path / "m.tif"))
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    before, tiles, control, pixels, windows = (float(v) for v in run.stdout.split())
    assert pixels == 400 * 400 + 50 * 3000 and windows == 49
    # the scene is 144 MB of float32: tiles mode must stay far below it, the control read must not
    assert tiles - before < 100, run.stdout
    assert control - before > 140, run.stdout
