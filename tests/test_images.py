"""The one image reader and band parser (rs2sam2.images): formats, EXIF, the pixel budget, band numbering."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from rs2sam2 import images
from rs2sam2.pixel_budget import ImageTooLargeError


def test_parse_bands_is_1_based_and_band_indices_is_0_based():
    assert images.parse_bands(None) is None and images.parse_bands("  ") is None
    assert images.parse_bands("3,2,1") == (3, 2, 1)
    assert images.parse_bands(" 4 3;2 ") == (4, 3, 2)
    assert images.parse_bands("5") == (5,)
    assert images.band_indices((3, 2, 1)) == (2, 1, 0) and images.band_indices(None) is None
    for text, message in (("a,b", "whole numbers"), ("1,2", "one band"), ("0,1,2", "counted from 1")):
        with pytest.raises(images.BandError, match=message):
            images.parse_bands(text)


def exif_rotated(path, orientation: int = 6):
    image = Image.new("RGB", (40, 60))
    image.paste((255, 0, 0), (0, 0, 40, 10))  # a red strip on top of the stored pixels
    exif = image.getexif()
    exif[images.EXIF_ORIENTATION] = orientation
    image.save(path, exif=exif.tobytes())
    return path


def test_exif_orientation_is_applied_unless_asked_not_to(tmp_path):
    path = exif_rotated(tmp_path / "r.jpg")
    assert images.load_image(path).size == (60, 40)  # displayed orientation (W, H)
    assert images.read_rgb(path).size == (60, 40)
    assert images.load_image(path, exif_transpose=False).size == (40, 60)  # the stored pixel grid
    assert images.read_rgb(path, exif_transpose=False).mode == "RGB"
    assert images.verify_image(path) == 6


def test_tiffs_of_any_band_count_are_arrays_of_their_own_dtype(tmp_path):
    cube = np.random.default_rng(0).integers(0, 4000, (12, 9, 5), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", cube, photometric="minisblack", planarconfig="contig")
    out = images.read_image(tmp_path / "c.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, cube)
    np.testing.assert_array_equal(images.read_tiff(tmp_path / "c.tif"), cube)
    Image.new("RGB", (9, 12)).save(tmp_path / "p.png")
    assert isinstance(images.read_image(tmp_path / "p.png"), Image.Image)


def test_read_grey_keeps_the_native_depth(tmp_path):
    grey16 = np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 500
    Image.fromarray(grey16).save(tmp_path / "g.png")
    out = images.read_grey(tmp_path / "g.png")
    assert out.dtype in (np.uint16, np.int32) and out.max() == grey16.max()
    Image.new("RGB", (9, 12), (255, 255, 255)).save(tmp_path / "w.png")
    assert images.read_grey(tmp_path / "w.png").dtype == np.uint8


def test_the_budget_is_checked_before_decoding_in_every_reader(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((20, 20, 3), np.uint8))
    for read in (images.load_image, images.read_rgb, images.read_grey):
        with pytest.raises(ImageTooLargeError, match="20×20 pixels"):
            read(tmp_path / "a.png", 399)
    for name in ("a.png", "a.tif"):
        with pytest.raises(ImageTooLargeError, match="20×20 pixels"):
            images.read_image(tmp_path / name, 399)
    assert images.read_image(tmp_path / "a.tif", 400).shape == (20, 20, 3)


def test_missing_empty_and_damaged_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        images.read_image(tmp_path / "missing.png")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty \(0 bytes\)"):
        images.read_image(tmp_path / "empty.tif")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or truncated"):
        images.verify_image(tmp_path / "cut.png")
