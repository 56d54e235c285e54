"""Geospatial workflows: GeoTIFF / COG in, GeoTIFF + GeoJSON / GeoPackage out, large-scene tiling.

Reading (``rasterio``, the optional ``geo`` dependency group). Bands are chosen 1-based like GDAL
(``bands=(3, 2, 1)``); by default a 1-, 3- or 4-band raster shows bands 1–3 (or band 1 as gray). 8-bit data
is used as is (as :func:`rs2sam2.processing.to_rgb` does); 16-bit, 32-bit and float data are stretched to
8-bit per band between the 2nd and 98th percentiles of the *whole scene*, computed once from a decimated
read (at most ``stats_side`` pixels a side, served from overviews when the file has them), so every window
is stretched identically. Nodata (the nodata value, internal masks, alpha, NaN) is excluded from the
percentiles, shown as 0 and never part of the mask.

Modes (:func:`predict_raster`), all reading windows so memory does not grow with the scene:

* ``single``: the whole scene, decimated to the model input S (``model.config.image_size``) when larger.
* ``tiles``: sliding windows of ``tile_size`` (a multiple of S; default S, i.e. native resolution) with
  ``overlap`` pixels (default ``tile_size // 4``); the last row/column of windows is aligned to the scene
  edge. In overlaps the windows' logits are merged by **mean** (default; seams disappear because each
  pixel's decision averages every window that saw it) or **max** (keeps an object that only one window
  sees well). Windows are processed row by row, up to ``batch_size`` windows of a row in one model
  forward (:data:`TILE_BATCH_SIZE`; the predictor's ``predict_batch``), and finished rows are written to
  the output at once, so peak memory is ≈ ``tile_size × width × 7`` bytes plus the model and the
  activations of one batch plus GDAL's block cache (capped at ``GDAL_CACHE_MB``), whatever the scene
  height.
* ``coarse-to-fine``: the scene decimated to S finds the referred object; the square window around the
  foreground's bounding box (plus ``margin``, at least S a side, clipped to the scene) is segmented
  again, at full resolution when the window is at most S a side (decimated to S otherwise).

Image size (:mod:`rs2sam2.pixel_budget`, ``max_pixels``): ``single`` and ``coarse-to-fine`` take scenes up
to the pixel budget (they decimate the whole scene in one read, which decodes all of a PNG / JPEG);
``tiles`` is the large-scene path: only each window (``tile_size``²) must fit the budget, the scene may be
any size (memory as above, time grows with the scene).

Logits at the model's read size are upsampled bilinearly (PyTorch ``align_corners=False`` convention)
strip by strip while writing, so no full-resolution float array of the scene is ever held.

Writing. The mask is a single-band uint8 GeoTIFF (values 0 / ``mask_value``; LZW, tiled) with the
source CRS and transform, or a PNG (no georeferencing). Vectors come from ``rasterio.features.shapes``
(4-connected polygons), in the source CRS, one feature per polygon with ``expression``, ``score`` (the
prediction's mean foreground probability), ``model``, ``area`` in square CRS units (``area_unit``) and
``pixels``. GeoJSON note: RFC 7946 only allows WGS 84 longitude/latitude. We keep the source CRS (no
reprojection, so areas and coordinates match the raster) and, when it is not EPSG:4326, add the
pre-RFC ``crs`` member (``urn:ogc:def:crs:EPSG::<code>``), which GDAL, QGIS and geopandas read. A raster
without a CRS gives coordinates in its own (pixel) frame, with a :class:`GeoWarning`. GeoPackage output
needs ``pyogrio``.

Modules: :mod:`~rs2sam2.geo.raster` (reading, bands, stretch), :mod:`~rs2sam2.geo.modes` (single, tiles,
coarse-to-fine), :mod:`~rs2sam2.geo.writing` (the mask, strip by strip), :mod:`~rs2sam2.geo.predict`
(:func:`predict_raster`), :mod:`~rs2sam2.geo.vectors` (polygons, GeoJSON, GeoPackage) and
:mod:`~rs2sam2.geo.jobs` (one image or a CSV batch to mask files, what ``rs2sam2 predict`` runs).
"""

from __future__ import annotations

from .modes import MERGES, MODES, TILE_BATCH_SIZE, GeoPrediction, MaskPredictor, tile_starts
from .predict import predict_raster
from .raster import (
    GEO_INSTALL_HINT,
    BandStretch,
    GeoWarning,
    compute_stretch,
    require_rasterio,
    resolve_bands,
)
from .vectors import MaskVectors, mask_vectors

__all__ = [
    "GEO_INSTALL_HINT",
    "MERGES",
    "MODES",
    "TILE_BATCH_SIZE",
    "BandStretch",
    "GeoPrediction",
    "GeoWarning",
    "MaskPredictor",
    "MaskVectors",
    "compute_stretch",
    "mask_vectors",
    "predict_raster",
    "require_rasterio",
    "resolve_bands",
    "tile_starts",
]
