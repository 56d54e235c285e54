"""Vectorising a mask: 4-connected polygons (``rasterio.features.shapes``) in the source CRS, as GeoJSON or
GeoPackage, one feature per polygon with ``expression``, ``score``, ``model``, ``area`` (square CRS
units, ``area_unit``) and ``pixels``.

GeoJSON note: RFC 7946 only allows WGS 84 longitude/latitude. We keep the source CRS (no reprojection, so
areas and coordinates match the raster) and, when it is not EPSG:4326, add the pre-RFC ``crs`` member
(``urn:ogc:def:crs:EPSG::<code>``), which GDAL, QGIS and geopandas read. A mask without a CRS gives
coordinates in its own (pixel) frame, with a :class:`~rs2sam2.geo.raster.GeoWarning`. GeoPackage output
needs ``pyogrio``. Large mask GeoTIFFs are read in strips; polygons cut by a strip border are re-joined
with ``shapely``.
"""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .raster import GeoWarning, area_unit, require_rasterio


@dataclass
class MaskVectors:
    """Polygons of a mask in the source CRS (``crs``: ``"EPSG:<code>"``, WKT or None)."""

    features: list[dict[str, Any]]
    crs: str | None

    def to_geojson(self) -> dict[str, Any]:
        """A FeatureCollection; a ``crs`` member names the CRS unless it is EPSG:4326 (see module doc)."""
        collection: dict[str, Any] = {"type": "FeatureCollection"}
        member = _crs_member(self.crs)
        if member is not None:
            collection["crs"] = member
        collection["features"] = self.features
        return collection

    def write(self, path: str | Path) -> Path:
        """Save as GeoJSON (``.geojson``/``.json``) or GeoPackage (``.gpkg``, needs pyogrio)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".geojson", ".json"):
            path.write_text(json.dumps(self.to_geojson()))
        elif suffix == ".gpkg":
            self._write_gpkg(path)
        else:
            raise ValueError(f"vector output must end in .geojson, .json or .gpkg, got {path.name!r}")
        return path

    def _write_gpkg(self, path: Path) -> None:
        try:
            from pyogrio.raw import write
        except ImportError as e:
            raise ImportError("GeoPackage output needs pyogrio: pip install pyogrio") from e
        from rasterio.crs import CRS

        props = [f["properties"] for f in self.features]
        names = ["expression", "score", "model", "area", "area_unit", "pixels"]
        kinds = [object, np.float64, object, np.float64, object, np.int64]
        columns = [np.array([p[n] for p in props], dtype=t) for n, t in zip(names, kinds)]
        geometry = np.array([_polygon_wkb(f["geometry"]["coordinates"]) for f in self.features], dtype=object)
        crs = CRS.from_user_input(self.crs).to_wkt() if self.crs else None
        if path.exists():
            path.unlink()  # the driver would otherwise add a layer to the old file
        write(
            str(path), geometry, columns, names, layer="mask", driver="GPKG", geometry_type="Polygon", crs=crs
        )


def _crs_member(crs: str | None) -> dict[str, Any] | None:
    if crs is None:
        return None
    from rasterio.crs import CRS

    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    if epsg == 4326:
        return None
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else parsed.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def _polygon_wkb(rings: list[list[list[float]]]) -> bytes:
    """ISO WKB of a polygon (little endian)."""
    parts = [struct.pack("<BII", 1, 3, len(rings))]
    for ring in rings:
        parts.append(struct.pack("<I", len(ring)))
        parts.append(np.asarray(ring, dtype="<f8").tobytes())
    return b"".join(parts)


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _pixel_polygons(mask: np.ndarray, row0: int = 0) -> Iterator[list[np.ndarray]]:
    """4-connected foreground polygons of a (h, W) strip starting at scene row ``row0``, pixel coords."""
    from rasterio.features import shapes
    from rasterio.transform import Affine

    m = np.ascontiguousarray(mask.astype(np.uint8))
    for geom, _ in shapes(m, mask=m > 0, connectivity=4, transform=Affine.translation(0, row0)):
        yield [np.asarray(r, dtype=np.float64) for r in geom["coordinates"]]


def _strip_polygons(
    read_rows: Callable[[int, int], np.ndarray], height: int, width: int, max_pixels: int
) -> Iterator[list[np.ndarray]]:
    """Polygons of a mask read in strips; pieces cut by a strip border are re-joined with shapely."""
    step = max(1, max_pixels // max(width, 1))
    if step >= height:
        yield from _pixel_polygons(read_rows(0, height))
        return
    try:
        from shapely.geometry import Polygon
        from shapely.ops import unary_union
    except ImportError as e:
        raise ImportError(
            f"polygonising a mask of {height}×{width} pixels in strips needs shapely: pip install shapely"
        ) from e
    cut = []
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        for rings in _pixel_polygons(read_rows(r0, r1), r0):
            ys = rings[0][:, 1]
            if (r0 > 0 and ys.min() == r0) or (r1 < height and ys.max() == r1):
                cut.append(Polygon(rings[0], rings[1:]))
            else:
                yield rings
    if cut:
        merged = unary_union(cut)
        for poly in getattr(merged, "geoms", [merged]):
            yield [np.asarray(poly.exterior.coords)] + [np.asarray(i.coords) for i in poly.interiors]


def mask_vectors(
    mask: np.ndarray | str | Path,
    *,
    text: str,
    score: float,
    model_id: str,
    transform: Sequence[float] | None = None,
    crs: str | None = None,
    max_pixels: int = 1 << 26,
) -> MaskVectors:
    """Polygons of a mask array (with ``transform``/``crs``) or of a mask GeoTIFF (read in strips of
    ≤ ``max_pixels``; its own transform and CRS are used). Exterior rings are counter-clockwise in map
    coordinates (RFC 7946 right-hand rule)."""
    if isinstance(mask, (str, Path)):
        rasterio = require_rasterio()
        from rasterio.windows import Window

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(mask) as src:
                t = tuple(src.transform)[:6]
                crs = src.crs.to_string() if src.crs else None
                read = lambda r0, r1: src.read(1, window=Window(0, r0, src.width, r1 - r0)) > 0
                polygons = list(_strip_polygons(read, src.height, src.width, max_pixels))
    else:
        require_rasterio()
        arr = np.asarray(mask) > 0
        t = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0) if transform is None else tuple(transform)[:6]
        polygons = list(_strip_polygons(lambda r0, r1: arr[r0:r1], *arr.shape, max_pixels))
    if crs is None and (isinstance(mask, (str, Path)) or transform is not None):
        warnings.warn(
            "mask has no CRS: polygon coordinates are in its pixel/transform frame", GeoWarning, stacklevel=2
        )
    a, b, c, d, e, f = t
    det = a * e - b * d
    unit = "square pixel"
    if crs is not None:
        from rasterio.crs import CRS

        unit = area_unit(CRS.from_user_input(crs))
    features = []
    for rings in polygons:
        pixels = abs(_signed_area(rings[0])) - sum(abs(_signed_area(r)) for r in rings[1:])
        mapped = []
        for i, ring in enumerate(rings):
            xy = np.stack([a * ring[:, 0] + b * ring[:, 1] + c, d * ring[:, 0] + e * ring[:, 1] + f], 1)
            if (_signed_area(xy) > 0) != (i == 0):  # exterior CCW, holes CW
                xy = xy[::-1]
            mapped.append(xy.tolist())
        n = int(round(pixels))
        features.append(
            {
                "type": "Feature",
                "id": len(features),
                "properties": {
                    "expression": text,
                    "score": float(score),
                    "model": model_id,
                    "area": n * abs(det),
                    "area_unit": unit,
                    "pixels": n,
                },
                "geometry": {"type": "Polygon", "coordinates": mapped},
            }
        )
    return MaskVectors(features, crs)
