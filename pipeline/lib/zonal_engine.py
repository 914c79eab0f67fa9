"""pipeline.lib.zonal_engine: windowed pixel-centre zonal class histograms with ellipsoidal pixel areas."""

# The engine behind `pipeline.lib.zonal` (tree cover loss, deforestation alerts). It answers one question:
# for every polygon feature and every integer class, how many pixels (and how many hectares) whose centre
# lies inside the feature carry that class? A caller-supplied ``key_fn`` turns the pixel values of one or
# more aligned raster layers into class codes, so the same engine serves any "area by category" analysis.
#
# Pixel rule: A pixel belongs to a feature when its centre is inside it, exactly as
# ``rasterio.features.rasterize(..., all_touched=False)`` decides (GDAL's scanline fill): `pixel_spans`
# re-implements GDAL's ``GDALdllImageFilledPolygon`` operation for operation (pixel coordinates from the
# inverted geotransform, row centres at ``row + 0.5``, half-open edge rows, ``floor(x + 0.5)`` crossings,
# even-odd pairing per polygon part, rings turned clockwise before the bottom-horizontal-edge rule, parts
# of a MultiPolygon OR-ed), so the masks are bit-identical to rasterio's for the same tile grid. Doing it
# in numpy avoids rasterio's per-vertex Python conversion, which cost more than the whole histogram.
#
# Pixel area: Each pixel weighs the exact area of its quadrangle on the WGS84 ellipsoid, from the
# closed form of the ellipsoidal zone area (see `cell_area_m2`). One value per raster row; no 2-D float
# array is ever built.
#
# Memory: Work is cut into jobs = (feature, tile, row strip): a strip holds at most
# ``max_window_pixels`` pixels, so memory never scales with feature or raster size. Inside a strip the
# histogram is built in cache-sized chunks of rows. Overlapping features are independent jobs (no shared
# label raster). GDAL's block cache is capped (``gdal_cache_bytes``); jobs run in a spatially coherent
# order so neighbouring windows reuse decoded blocks.
#
# Determinism: The job list depends only on the inputs and ``max_window_pixels``; every job computes
# the same partial sums wherever it runs, and partial results are combined in canonical job order. So
# the sequential path and any Dask / process-pool split give identical output, bit for bit.
#
# Ellipsoid vs sphere (cell of 0.00025° x 0.00025°, i.e. one 30 m Hansen pixel): the ellipsoidal cell
# area is 769.317 m² at 0°, 547.648 m² at 45° and 266.259 m² at 70° latitude. A sphere of the mean
# radius R = 6,371,008.8 m gives 772.772 / 546.431 / 264.302 m², i.e. +0.449% / -0.222% / -0.735%; a
# sphere of R = 6,378,137 m (exactextract's ``area_spherical_m2``) gives +0.674% / +0.001% / -0.513%.
# Summed over the globe the authalic sphere is exact, but per pixel the error is latitude-dependent, which
# is why a per-feature hectare figure needs the ellipsoid.

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.windows import Window

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

WGS84_A = 6_378_137.0
WGS84_F = 1.0 / 298.257223563
_E2 = WGS84_F * (2.0 - WGS84_F)
_E = math.sqrt(_E2)
_B2 = WGS84_A * WGS84_A * (1.0 - _E2)

DEFAULT_ID_COLUMN = "geostore__id"
#: Columns of `class_histograms`; the first one is replaced by `id_column`.
HISTOGRAM_COLUMNS = [DEFAULT_ID_COLUMN, "class", "pixel_count", "area_ha"]

DEFAULT_MAX_WINDOW_PIXELS = 1 << 23  # ~8.4 M pixels per strip: a few tens of MB per layer at most
DEFAULT_GDAL_CACHE_BYTES = 64 << 20  # measured: bigger caches only add RSS (and page faults) here
_CHUNK_PIXELS = 1 << 17  # ~128 k pixels per histogram chunk: int64 temporaries stay in L2/L3 cache
_DENSE_MAX_CLASSES = 4096  # above this a (row, class) table is never dense; use sort-based counting
_I32 = float(1 << 31)

KeyFn = Callable[[Mapping[str, np.ndarray]], Any]


# --------------------------------------------------------------------------------------------
# Ellipsoidal pixel area
# --------------------------------------------------------------------------------------------


def cell_area_m2(lat_north: Any, lat_south: Any, dlon_deg: float) -> np.ndarray:
    """Exact area of lon/lat quadrangles on the WGS84 ellipsoid, in square metres.

    Uses the closed form of the ellipsoidal zone area: with s = sin(lat),
    ``A = dlon * b² * [G(s_n) - G(s_s)]`` where ``G(s) = s / (2 (1 - e² s²)) + atanh(e s) / (2 e)``
    (the authalic-latitude integral, b² = a²(1 - e²)). The difference is evaluated in a cancellation-free
    form (``s_n - s_s = 2 cos(mean) sin(half difference)``, atanh of a difference), so a 1-arc-second cell
    keeps ~1e-15 relative precision instead of the ~1e-11 of subtracting two zone areas.

    Args:
        lat_north: Northern edge latitude(s) in degrees (array-like).
        lat_south: Southern edge latitude(s) in degrees, same shape.
        dlon_deg: Width of the cells in degrees of longitude.

    Returns:
        Areas in m², positive when ``lat_north > lat_south``.
    """
    p1 = np.radians(np.clip(np.asarray(lat_north, dtype=np.float64), -90.0, 90.0))
    p2 = np.radians(np.clip(np.asarray(lat_south, dtype=np.float64), -90.0, 90.0))
    s1, s2 = np.sin(p1), np.sin(p2)
    ds = 2.0 * np.cos((p1 + p2) / 2.0) * np.sin((p1 - p2) / 2.0)
    d1 = 1.0 - _E2 * s1 * s1
    d2 = 1.0 - _E2 * s2 * s2
    zone = ds * (1.0 + _E2 * s1 * s2) / (2.0 * d1 * d2) + np.arctanh(_E * ds / (1.0 - _E2 * s1 * s2)) / (2.0 * _E)
    return math.radians(abs(dlon_deg)) * _B2 * zone


def row_areas_ha(transform: Any, row_start: int, row_stop: int) -> np.ndarray:
    """Ellipsoidal pixel area in hectares of each raster row in ``[row_start, row_stop)``.

    Args:
        transform: North-up geotransform of a geographic (degrees) raster, an ``affine.Affine`` or a
            6-tuple ``(a, b, c, d, e, f)``.
        row_start: First row.
        row_stop: One past the last row.

    Returns:
        float64 array of length ``row_stop - row_start``.
    """
    a, _, _, _, e, f = tuple(transform)[:6]
    edges = f + e * np.arange(row_start, row_stop + 1, dtype=np.float64)
    return cell_area_m2(edges[:-1], edges[1:], a) / 1e4


# --------------------------------------------------------------------------------------------
# Pixel-centre rasterisation (GDAL-exact), as row spans
# --------------------------------------------------------------------------------------------


def _first_row_at_or_after(y: np.ndarray) -> np.ndarray:
    """Smallest integer r with ``r + 0.5 >= y`` (exact: the estimate is corrected with GDAL's own test)."""
    r = np.ceil(y - 0.5)
    r = np.where((r - 1.0) + 0.5 >= y, r - 1.0, r)
    r = np.where(r + 0.5 < y, r + 1.0, r)
    return np.clip(r, -_I32, _I32).astype(np.int64)


def pixel_spans(
    geom: Any,
    transform: Any,
    height: int,
    width: int,
    rows: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels whose centre is inside a polygon, as row spans, bit-identical to rasterio's rasterize.

    Equals ``rasterio.features.rasterize([geom], out_shape=(height, width), transform=transform)``
    (``all_touched=False``) on the same grid: the same pixel coordinates (GDAL's inverse geotransform
    arithmetic), crossings, rounding and tie rules. Holes and MultiPolygons are handled like GDAL
    (even-odd within a polygon, union of parts); non-polygonal parts are ignored.

    Args:
        geom: Shapely Polygon, MultiPolygon or GeometryCollection in the raster's CRS.
        transform: North-up geotransform ``(a, 0, c, 0, e, f)`` with a > 0 > e.
        height: Raster rows.
        width: Raster columns.
        rows: Optional ``(first, stop)`` row range to compute (a horizontal strip); spans keep full-raster
            row numbers, so strips of one raster give exactly the rows of the whole.

    Returns:
        ``(row, start, stop)`` int64 arrays: pixels ``[start, stop)`` of ``row`` are inside. Spans are
        disjoint, clipped to the raster and sorted by row, then start.
    """
    a, b, c, d, e, f = tuple(transform)[:6]
    if b != 0 or d != 0 or a <= 0 or e >= 0:
        raise ValueError(f"only north-up, non-rotated transforms are supported, got {tuple(transform)[:6]}")
    r_lo, r_hi = (0, height) if rows is None else (max(0, rows[0]), min(height, rows[1]))
    empty = np.zeros(0, dtype=np.int64)
    if r_hi <= r_lo or geom is None:
        return empty, empty, empty
    parts = shapely.get_parts(np.asarray([geom], dtype=object))
    parts = parts[shapely.get_type_id(parts) == 3]  # polygons only
    if parts.size == 0:
        return empty, empty, empty
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    if xy.shape[0] < 2:
        return empty, empty, empty
    if not np.isfinite(xy).all():
        log.warning("skipping a geometry with non-finite coordinates (no pixels counted for it)")
        return empty, empty, empty
    # GDAL: GDALInvGeoTransform (no-rotation branch), then x' = inv0 + x * inv1 (+ y * 0).
    px = (-c / a) + xy[:, 0] * (1.0 / a)
    py = (-f / e) + xy[:, 1] * (1.0 / e)
    # Rings are closed, so consecutive coordinates within a ring are exactly GDAL's edges.
    same = ring_of[:-1] == ring_of[1:]
    x1, x2, y1, y2 = px[:-1][same], px[1:][same], py[:-1][same], py[1:][same]
    edge_ring = ring_of[:-1][same]

    span_rows: list[np.ndarray] = []
    span_lo: list[np.ndarray] = []
    span_hi: list[np.ndarray] = []

    # Non-horizontal edges: crossings with row centres, half-open [y_top, y_bottom).
    down = y1 < y2
    nh = y1 != y2
    yt = np.where(down, y1, y2)[nh]
    yb = np.where(down, y2, y1)[nh]
    xt = np.where(down, x1, x2)[nh]
    dxe = np.where(down, x2, x1)[nh] - xt
    dye = yb - yt
    epart = ring_part[edge_ring[nh]]
    rf = np.clip(_first_row_at_or_after(yt), r_lo, r_hi)
    n = np.clip(_first_row_at_or_after(yb), r_lo, r_hi) - rf
    hit = n > 0
    if not hit.all():
        rf, n, yt, xt, dxe, dye, epart = rf[hit], n[hit], yt[hit], xt[hit], dxe[hit], dye[hit], epart[hit]
    total = int(n.sum())
    if total:
        # One crossing per (edge, row). np.repeat of per-edge values is much cheaper than fancy indexing.
        row = np.repeat(rf - (np.cumsum(n) - n), n)
        row += np.arange(total)
        # GDAL: intersect = (dy - dy1) * (dx2 - dx1) / (dy2 - dy1) + dx1; crossing = (int) floor(intersect + 0.5).
        # Same operations in the same order (in place), so the same doubles.
        x = row + 0.5
        x -= np.repeat(yt, n)
        x *= np.repeat(dxe, n)
        x /= np.repeat(dye, n)
        x += np.repeat(xt, n)
        x += 0.5
        np.floor(x, out=x)
        col = x.astype(np.int64)
        del x
        # Sort crossings by (part, row, col) as one int64 key, then pair them (even-odd rule per part).
        cmin = int(col.min())
        crange = int(col.max()) - cmin + 1
        nrow = r_hi - r_lo
        key = row
        key -= r_lo
        if parts.size > 1:
            key += np.repeat(epart.astype(np.int64) * nrow, n)
        key *= crange
        key += col
        key -= cmin
        del col
        if (parts.size * nrow) * crange < (1 << 31):
            key = key.astype(np.int32)  # int32 sorts ~1.8x faster than int64
        key.sort()
        if key.size % 2:
            raise ValueError("polygon crossings do not pair up (non-finite coordinates?)")
        k_lo, k_hi = key[0::2], key[1::2]
        g_lo, g_hi = k_lo // crange, k_hi // crange
        if (g_lo != g_hi).any():
            # Cannot happen for finite closed rings; a NaN vertex would get here.
            raise ValueError("polygon crossings do not pair up (non-finite coordinates?)")
        span_rows.append((g_lo % nrow if parts.size > 1 else g_lo).astype(np.int64) + r_lo)
        span_lo.append((k_lo - g_lo * crange).astype(np.int64) + cmin)
        span_hi.append((k_hi - g_hi * crange).astype(np.int64) + cmin)

    # Horizontal edges lying exactly on a row centre: GDAL burns those running right to left once the
    # ring is clockwise (in world coordinates), i.e. bottom edges of rings.
    hz = (y1 == y2) & (x1 != x2)
    if hz.any():
        hy = y1[hz]
        hr = np.floor(hy)
        on = (hr + 0.5 == hy) & (hr >= r_lo) & (hr < r_hi)
        if on.any():
            hx1, hx2 = x1[hz][on], x2[hz][on]
            ccw = shapely.is_ccw(rings[edge_ring[hz][on]])
            burn = (hx1 > hx2) != ccw
            if burn.any():
                span_rows.append(hr[on][burn].astype(np.int64))
                span_lo.append(np.floor(np.minimum(hx1, hx2)[burn] + 0.5).astype(np.int64))
                span_hi.append(np.floor(np.maximum(hx1, hx2)[burn] + 0.5).astype(np.int64))

    if not span_rows:
        return empty, empty, empty
    row = np.concatenate(span_rows)
    lo = np.clip(np.concatenate(span_lo), 0, width)
    hi = np.clip(np.concatenate(span_hi), 0, width)
    keep = lo < hi
    row, lo, hi = row[keep], lo[keep], hi[keep]
    if row.size and (len(span_rows) > 1 or parts.size > 1):
        # Several parts (or extra horizontal spans): sort and merge overlapping spans (union).
        order = np.lexsort((lo, row))
        row, lo, hi = row[order], lo[order], hi[order]
        stride = width + 1
        run_max = np.maximum.accumulate(row * stride + hi)
        new = np.ones(row.size, dtype=bool)
        new[1:] = run_max[:-1] < row[1:] * stride + lo[1:]
        first = np.flatnonzero(new)
        row, lo, hi = row[first], lo[first], np.maximum.reduceat(hi, first)
    return row, lo, hi


def rasterize_mask(geom: Any, transform: Any, shape: tuple[int, int]) -> np.ndarray:
    """Boolean pixel-centre mask of `geom` on a grid (same pixels as rasterio's rasterize).

    Args:
        geom: Shapely polygonal geometry in the grid's CRS.
        transform: North-up geotransform.
        shape: ``(height, width)``.

    Returns:
        bool array of `shape`.
    """
    height, width = shape
    row, lo, hi = pixel_spans(geom, transform, height, width)
    return _spans_mask(row, lo, hi, 0, height, width).reshape(height, width)


def _spans_mask(row: np.ndarray, lo: np.ndarray, hi: np.ndarray, r0: int, nrows: int, width: int) -> np.ndarray:
    """Flat bool mask of rows [r0, r0 + nrows) x [0, width) from disjoint sorted spans (run-length expand)."""
    bounds = np.empty(2 * row.size + 2, dtype=np.int64)
    bounds[0] = 0
    base = (row - r0) * width
    bounds[1:-1:2] = base + lo
    bounds[2:-1:2] = base + hi
    bounds[-1] = nrows * width
    pattern = np.zeros(bounds.size - 1, dtype=bool)
    pattern[1::2] = True
    # np.repeat of a two-value pattern by run lengths is a memset per run: ~0.05 ns per pixel.
    return np.repeat(pattern, np.diff(bounds))


# --------------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One grid cell of aligned layers: a path and nodata value per layer, plus the shared grid."""

    paths: tuple[str, ...]
    nodata: tuple[float | None, ...]
    transform: tuple[float, float, float, float, float, float]
    height: int
    width: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        a, _, c, _, e, f = self.transform
        return c, f + e * self.height, c + a * self.width, f


def _tile_path(tile: Any) -> tuple[str, Any]:
    """(path, open dataset or None) of a tile given as a path or an open rasterio dataset."""
    if hasattr(tile, "read") and hasattr(tile, "transform"):
        return str(tile.name), tile
    return os.fspath(tile), None


def open_tiles(layers: Mapping[str, Sequence[Any]]) -> tuple[list[str], list[Tile]]:
    """Match the tiles of several layers by grid position and return one `Tile` per grid cell.

    The first layer defines the cells; every other layer must have a tile with the same transform
    and size for each of them. Only band 1 of each file is used.

    Args:
        layers: Layer name -> list of tiles (paths or open rasterio datasets), in any order.

    Returns:
        ``(layer_names, tiles)``.

    Raises:
        ValueError: If a layer lacks a tile for a cell, a grid is rotated / not north-up / not in a
            geographic CRS, or tiles of the first layer overlap.
    """
    names = list(layers)
    if not names:
        raise ValueError("no layers given")
    meta: dict[str, dict[tuple[int, int, int, int], tuple[str, float | None, tuple]]] = {}
    crs = None
    for name in names:
        cells: dict[tuple[int, int, int, int], tuple[str, float | None, tuple]] = {}
        for item in layers[name]:
            path, ds = _tile_path(item)
            src = ds if ds is not None else rasterio.open(path)
            try:
                t = tuple(src.transform)[:6]
                if src.crs is None or not src.crs.is_geographic:
                    raise ValueError(f"{path}: zonal areas need a geographic (lon/lat degrees) CRS, got {src.crs}")
                if crs is None:
                    crs = src.crs
                elif src.crs != crs:
                    raise ValueError(f"{path}: CRS {src.crs} differs from {crs}")
                if t[1] != 0 or t[3] != 0 or t[0] <= 0 or t[4] >= 0:
                    raise ValueError(f"{path}: only north-up, non-rotated grids are supported, got {t}")
                key = (round(t[2] / t[0]), round(t[5] / t[4]), src.width, src.height)
                nodata = src.nodatavals[0] if src.nodatavals else None
                if key in cells and cells[key][0] != path:
                    raise ValueError(f"layer {name!r}: {cells[key][0]} and {path} cover the same grid cell")
                cells[key] = (path, nodata, (t, src.height, src.width))
            finally:
                if ds is None:
                    src.close()
        meta[name] = cells
    tiles = []
    for key, (path0, nodata0, (t, h, w)) in sorted(meta[names[0]].items()):
        paths, nodatas = [path0], [nodata0]
        for name in names[1:]:
            other = meta[name].get(key)
            if other is None:
                raise ValueError(f"layer {name!r} has no tile aligned with {path0}")
            ot = other[2][0]
            if any(abs(u - v) > 1e-9 * max(abs(t[0]), abs(t[4])) for u, v in zip(ot, t, strict=True)):
                raise ValueError(f"layer {name!r} tile {other[0]} is not aligned with {path0}")
            paths.append(other[0])
            nodatas.append(other[1])
        tiles.append(Tile(tuple(paths), tuple(nodatas), tuple(float(v) for v in t), int(h), int(w)))
    boxes = shapely.box(*np.array([tl.bounds for tl in tiles]).T)
    tree = shapely.STRtree(boxes)
    i, j = tree.query(boxes, predicate="intersects")
    for a_idx, b_idx in zip(i[i < j], j[i < j], strict=True):
        inter = shapely.intersection(boxes[a_idx], boxes[b_idx])
        px = tiles[a_idx].transform[0] * -tiles[a_idx].transform[4]
        if shapely.area(inter) > 0.25 * px:
            raise ValueError(f"tiles overlap: {tiles[a_idx].paths[0]} and {tiles[b_idx].paths[0]}")
    return names, tiles


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _unwrap_ring(xy: np.ndarray) -> np.ndarray:
    """Make ring longitudes continuous: an edge longer than 180° is taken to cross the antimeridian."""
    d = np.diff(xy[:, 0])
    jump = np.abs(d) > 180.0
    if not jump.any():
        return xy
    out = xy.copy()
    out[1:, 0] -= np.cumsum(np.where(jump, 360.0 * np.round(d / 360.0), 0.0))
    return out


def unwrap_antimeridian(geom: Any) -> Any:
    """Return `geom` with longitudes made continuous across ±180° (RFC 7946 edge convention).

    A ring edge spanning more than 180° of longitude is taken to cross the antimeridian, so a ring
    like (179, -179, -179, 179) becomes (179, 181, 181, 179). Holes are shifted by whole turns next
    to their shell. Geometries without such edges are returned unchanged. Rings that still do not
    close after unwrapping (they encircle a pole) are left as they are.

    Args:
        geom: Shapely (Multi)Polygon in degrees.

    Returns:
        The geometry with continuous longitudes (may extend beyond ±180).
    """
    if geom is None or geom.is_empty:
        return geom
    minx, _, maxx, _ = geom.bounds
    if maxx - minx <= 180.0:
        return geom
    polys = []
    for part in shapely.get_parts(geom):
        if part.geom_type != "Polygon":
            continue
        shell = _unwrap_ring(np.asarray(part.exterior.coords)[:, :2])
        if shell[0, 0] != shell[-1, 0]:
            log.warning("ring encircles a pole; antimeridian unwrapping skipped for it")
            polys.append(part)
            continue
        centre = shell[:, 0].mean()
        holes = []
        for ring in part.interiors:
            hole = _unwrap_ring(np.asarray(ring.coords)[:, :2])
            hole[:, 0] -= 360.0 * np.round((hole[:, 0].mean() - centre) / 360.0)
            holes.append(hole)
        polys.append(shapely.Polygon(shell, holes))
    if not polys:
        return geom
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


# --------------------------------------------------------------------------------------------
# Job planning
# --------------------------------------------------------------------------------------------

# Job columns (int64): feature position, tile index, longitude turn k (tile shifted by 360k), row0,
# row1, col0, col1 of the strip window (rows/cols in the tile's own pixel grid).
_JF, _JT, _JK, _JR0, _JR1, _JC0, _JC1 = range(7)


def _morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Z-order code of non-negative 16-bit block coordinates (spatially coherent job order)."""

    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.int64) & 0xFFFF
        v = (v | (v << 8)) & 0x00FF00FF
        v = (v | (v << 4)) & 0x0F0F0F0F
        v = (v | (v << 2)) & 0x33333333
        return (v | (v << 1)) & 0x55555555

    return spread(x) | (spread(y) << 1)


def plan_jobs(geoms: np.ndarray, tiles: Sequence[Tile], max_window_pixels: int) -> np.ndarray:
    """Cut (feature x tile) windows into row strips of at most `max_window_pixels` pixels.

    Args:
        geoms: Shapely geometries (already antimeridian-unwrapped), one per feature position.
        tiles: The grid cells.
        max_window_pixels: Largest strip (rows x bbox columns).

    Returns:
        int64 array (n_jobs, 7) in canonical order: by tile, longitude turn, Z-order of the window's
        512-pixel block, feature, row.
    """
    empty = np.zeros((0, 7), dtype=np.int64)
    if len(tiles) == 0 or geoms.size == 0:
        return empty
    usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    fb = np.full((geoms.size, 4), np.nan)
    fb[usable] = shapely.bounds(geoms[usable])
    tb = np.array([t.bounds for t in tiles])
    tree = shapely.STRtree(shapely.box(*tb.T))
    rows = []
    for k in (-1, 0, 1):
        # Feature boxes shifted by -360k against unshifted tiles == tiles shifted by +360k.
        ok = np.flatnonzero(usable & np.isfinite(fb).all(axis=1))
        if ok.size == 0:
            continue
        qb = shapely.box(fb[ok, 0] - 360.0 * k, fb[ok, 1], fb[ok, 2] - 360.0 * k, fb[ok, 3])
        fi, ti = tree.query(qb, predicate="intersects")
        if fi.size == 0:
            continue
        fi = ok[fi]
        tr = np.array([tiles[t].transform for t in ti])
        a, c, e, f = tr[:, 0], tr[:, 2] + 360.0 * k, tr[:, 4], tr[:, 5]
        hh = np.array([tiles[t].height for t in ti])
        ww = np.array([tiles[t].width for t in ti])
        # Columns/rows whose centre can be inside the bbox, plus a 1-pixel margin against rounding.
        c0 = np.clip(np.floor((fb[fi, 0] - c) / a - 0.5) - 1, 0, ww).astype(np.int64)
        c1 = np.clip(np.ceil((fb[fi, 2] - c) / a - 0.5) + 2, 0, ww).astype(np.int64)
        r0 = np.clip(np.floor((fb[fi, 3] - f) / e - 0.5) - 1, 0, hh).astype(np.int64)
        r1 = np.clip(np.ceil((fb[fi, 1] - f) / e - 0.5) + 2, 0, hh).astype(np.int64)
        good = (c1 > c0) & (r1 > r0)
        rows.append(np.column_stack([fi, ti, np.full(fi.size, k), r0, r1, c0, c1])[good])
    if not rows:
        return empty
    win = np.concatenate(rows).astype(np.int64)
    # Split tall windows into strips of at most max_window_pixels.
    per = np.maximum(1, max_window_pixels // (win[:, _JC1] - win[:, _JC0]))
    nstrip = -(-(win[:, _JR1] - win[:, _JR0]) // per)
    jobs = np.repeat(win, nstrip, axis=0)
    first = np.repeat(np.cumsum(nstrip) - nstrip, nstrip)
    s = np.arange(jobs.shape[0]) - first
    step = np.repeat(per, nstrip)
    start = jobs[:, _JR0] + s * step
    jobs[:, _JR1] = np.minimum(jobs[:, _JR1], start + step)
    jobs[:, _JR0] = start
    z = _morton(jobs[:, _JC0] // 512, jobs[:, _JR0] // 512)
    order = np.lexsort((jobs[:, _JR0], jobs[:, _JF], z, jobs[:, _JK], jobs[:, _JT]))
    return jobs[order]


# --------------------------------------------------------------------------------------------
# Job execution
# --------------------------------------------------------------------------------------------


def _normalise_codes(result: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """key_fn output -> (integer codes, validity mask or None when every pixel is valid)."""
    valid = None
    if isinstance(result, tuple):
        codes, valid = result
        valid = np.asarray(valid, dtype=bool)
    codes = np.asarray(codes if isinstance(result, tuple) else result)
    if codes.shape != (n,) or (valid is not None and valid.shape != (n,)):
        raise ValueError(f"key_fn returned shape {codes.shape} for {n} pixels")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"key_fn must return integer codes, got {codes.dtype}")
    if codes.dtype.kind == "i" and codes.size and int(codes.min()) < 0:
        valid = codes >= 0 if valid is None else valid & (codes >= 0)
    return codes, valid


def _nodata_mask(values: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Boolean mask of nodata pixels, or None when there are none (or the value cannot occur)."""
    if nodata is None:
        return None
    if math.isnan(nodata):
        bad = np.isnan(values) if np.issubdtype(values.dtype, np.floating) else None
    elif np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(values.dtype)
        if nodata != int(nodata) or not info.min <= nodata <= info.max:
            return None  # a nodata value the dtype cannot hold never matches a pixel
        bad = values == values.dtype.type(int(nodata))
    else:
        bad = values == nodata
    return bad if bad is not None and bad.any() else None


class _OpenFiles:
    """Open rasterio datasets and reusable read buffers of one thread.

    Workers keep one per thread across tasks (``persistent``): closing a dataset drops its decoded blocks
    from GDAL's cache, and the next task on the same tile would decode them again. Datasets are keyed by
    path, size and mtime (a replaced file is reopened) and at most `max_open` stay open.
    """

    def __init__(self, max_open: int = 16) -> None:
        self.max_open = max_open
        self.datasets: dict[tuple[str, int, int], Any] = {}
        self.buffers: dict[tuple[int, np.dtype], np.ndarray] = {}

    def dataset(self, path: str) -> Any:
        try:
            st = os.stat(path)
            key = (path, st.st_size, st.st_mtime_ns)
        except OSError:  # /vsi paths (MemoryFile, cloud storage): no stat, trust the path
            key = (path, -1, -1)
        ds = self.datasets.pop(key, None)
        if ds is None:
            ds = rasterio.open(path)
            while len(self.datasets) >= self.max_open:
                self.datasets.pop(next(iter(self.datasets))).close()
        self.datasets[key] = ds  # re-insert: most recently used last
        return ds

    def close(self) -> None:
        for ds in self.datasets.values():
            ds.close()
        self.datasets.clear()
        self.buffers.clear()


_THREAD_STATE = threading.local()


def _worker_files() -> _OpenFiles:
    files = getattr(_THREAD_STATE, "files", None)
    if files is None:
        files = _THREAD_STATE.files = _OpenFiles()
    return files


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@contextlib.contextmanager
def _numpy_friendly_malloc() -> Any:
    """Keep glibc from mmap-ing (and page-faulting) every ~1 MB numpy temporary.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which freezes glibc's mmap
    threshold at 128 KB: every chunk-sized temporary is then a fresh mmap whose pages fault on first
    touch, making the same job ~2x slower in a worker than in a plain process (measured). Raise both
    thresholds while jobs run, then restore the trim threshold and hand free memory back with malloc_trim.
    """
    libc = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's own dynamic maximum on 64-bit
            libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
        except (OSError, AttributeError):
            libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_TRIM_THRESHOLD, int(os.environ.get("MALLOC_TRIM_THRESHOLD_", 128 * 1024)))
            libc.malloc_trim(0)


class _Runner:
    """Executes jobs in one thread: datasets, read buffers and per-tile row areas."""

    def __init__(
        self,
        names: Sequence[str],
        tiles: Sequence[Tile],
        key_fn: KeyFn,
        n_classes: int,
        max_window_pixels: int,
        files: _OpenFiles,
    ) -> None:
        self.names = list(names)
        self.tiles = tiles
        self.key_fn = key_fn
        self.n_classes = int(n_classes)
        self.max_window_pixels = max_window_pixels
        self.files = files
        self.row_area: dict[int, np.ndarray] = {}

    def _read(self, layer: int, path: str, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Read a window into a reused buffer: avoids re-faulting fresh pages for every window."""
        ds = self.files.dataset(path)
        dtype = np.dtype(ds.dtypes[0])
        n = (r1 - r0) * (c1 - c0)
        buf = self.files.buffers.get((layer, dtype))
        if buf is None or buf.size < n:
            buf = self.files.buffers[(layer, dtype)] = np.empty(max(n, min(self.max_window_pixels, 1 << 22)), dtype)
        out = buf[:n].reshape(r1 - r0, c1 - c0)
        ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), out=out)
        return out

    def _areas(self, t: int) -> np.ndarray:
        areas = self.row_area.get(t)
        if areas is None:
            tile = self.tiles[t]
            areas = self.row_area[t] = row_areas_ha(tile.transform, 0, tile.height)
        return areas

    def run(self, jobs: np.ndarray, geoms: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run jobs; return (job position, class, pixel count, area ha) for every non-zero cell."""
        out_j, out_c, out_n, out_a = [], [], [], []
        for pos in range(jobs.shape[0]):
            codes, counts, areas = self.run_job(jobs[pos], geoms[int(jobs[pos, _JF])])
            if codes.size:
                out_j.append(np.full(codes.size, pos, dtype=np.int64))
                out_c.append(codes)
                out_n.append(counts)
                out_a.append(areas)
        if not out_j:
            e = np.zeros(0, dtype=np.int64)
            return e, e.copy(), e.copy(), np.zeros(0)
        return np.concatenate(out_j), np.concatenate(out_c), np.concatenate(out_n), np.concatenate(out_a)

    def run_job(self, job: np.ndarray, geom: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One (feature, tile, strip): spans, windowed read, chunked (row, class) histogram."""
        t, k = int(job[_JT]), int(job[_JK])
        tile = self.tiles[t]
        a, b, c, d, e, f = tile.transform
        row, lo, hi = pixel_spans(geom, (a, b, c + 360.0 * k, d, e, f), tile.height, tile.width, (job[_JR0], job[_JR1]))
        empty = np.zeros(0, dtype=np.int64)
        if row.size == 0:
            return empty, empty.copy(), np.zeros(0)
        # Tight window around the spans: read exactly the rectangle that holds inside pixels.
        r0, r1 = int(row[0]), int(row[-1]) + 1
        c0, c1 = int(lo.min()), int(hi.max())
        w = c1 - c0
        data = [self._read(i, p, r0, r1, c0, c1) for i, p in enumerate(tile.paths)]
        areas = self._areas(t)[r0:r1]
        n_cls = self.n_classes
        dense = n_cls <= _DENSE_MAX_CLASSES
        if dense:
            # (row, class) keys of a chunk fit in uint16 whenever possible: a quarter of int64's memory traffic.
            step = max(1, min(_CHUNK_PIXELS // w, (1 << 16) // n_cls))
            key_dtype = np.uint16 if step * n_cls <= (1 << 16) else np.int64
            counts = np.zeros(n_cls, dtype=np.int64)
            area = np.zeros(n_cls, dtype=np.float64)
            base = np.arange(0, step * n_cls, n_cls).astype(key_dtype)
        else:
            step = max(1, _CHUNK_PIXELS // w)
            sp_c, sp_n, sp_a = [], [], []
        lo_rel, hi_rel = lo - c0, hi - c0
        span_starts = np.searchsorted(row, np.arange(r0, r1 + step, step))
        for ci, ra in enumerate(range(r0, r1, step)):
            rb = min(ra + step, r1)
            s0, s1 = span_starts[ci], span_starts[ci + 1]
            if s1 == s0:
                continue
            srow = row[s0:s1] - ra
            mask = _spans_mask(srow, lo_rel[s0:s1], hi_rel[s0:s1], 0, rb - ra, w)
            vals = {name: arr[ra - r0 : rb - r0].reshape(-1)[mask] for name, arr in zip(self.names, data, strict=True)}
            codes, valid = _normalise_codes(self.key_fn(vals), next(iter(vals.values())).size)
            for name, nd in zip(self.names, tile.nodata, strict=True):
                bad = _nodata_mask(vals[name], nd)
                if bad is not None:
                    valid = ~bad if valid is None else valid & ~bad
            # Counted pixels: all, or those in `valid` (no nodata, code >= 0). Never build a -1-filled copy.
            kept = codes if valid is None else codes[valid]
            if kept.size == 0:
                continue
            cmax = int(kept.max())
            if cmax >= n_cls:
                raise ValueError(f"key_fn returned class {cmax} >= n_classes={n_cls}")
            per_row = np.bincount(srow, weights=hi_rel[s0:s1] - lo_rel[s0:s1], minlength=rb - ra).astype(np.int64)
            if dense:
                key = np.repeat(base[: rb - ra], per_row)
                # Wraps around for ignored codes (negative or any value), whose keys are dropped below.
                np.add(key, codes, out=key, casting="unsafe")
                if valid is not None:
                    dominant = -1
                    key = key[valid]
                else:
                    # Usually one class fills most pixels (e.g. "no loss"). Count only the others and get
                    # the guessed dominant class per row by subtraction: the guess never changes the result.
                    dominant = int(codes[codes.size // 2])
                    key = key[codes != dominant]
                hist = np.bincount(key, minlength=(rb - ra) * n_cls).reshape(rb - ra, n_cls)
                if dominant >= 0:
                    hist[:, dominant] += per_row - hist.sum(axis=1)
                counts += hist.sum(axis=0)
                area += (hist * areas[ra - r0 : rb - r0, None]).sum(axis=0)
            else:
                # Sparse classes (e.g. alert dates): locate the few kept pixels' rows by binary search.
                idx = np.flatnonzero(valid) if valid is not None else np.arange(codes.size)
                rr = np.searchsorted(np.cumsum(per_row), idx, side="right")
                u, cnt = np.unique(rr * n_cls + kept.astype(np.int64), return_counts=True)
                sp_c.append(u % n_cls)
                sp_n.append(cnt)
                sp_a.append(cnt * areas[ra - r0 + u // n_cls])
        if dense:
            nz = np.flatnonzero(counts)
            return nz.astype(np.int64), counts[nz], area[nz]
        if not sp_c:
            return empty, empty.copy(), np.zeros(0)
        allc = np.concatenate(sp_c)
        uc, inv = np.unique(allc, return_inverse=True)
        return (
            uc.astype(np.int64),
            np.bincount(inv, weights=np.concatenate(sp_n), minlength=uc.size).astype(np.int64),
            np.bincount(inv, weights=np.concatenate(sp_a), minlength=uc.size),
        )


def _encode_geoms(geoms: np.ndarray) -> tuple[str, Any]:
    """Geometries for a task payload: shapely's ragged arrays (coordinates + offsets) when they are all
    (Multi)Polygons, else WKB.

    Dask sends numpy buffers as zero-copy frames but pickles bytes objects, which on 2 cores made the WKB of
    1.6 M vertices (26 MB) cost ~4x as much client, scheduler and worker time (bench/zonal.py). Polygons
    come back as MultiPolygons, which `pixel_spans` treats the same (it works on the polygon parts).
    """
    if geoms.size and np.isin(shapely.get_type_id(geoms), (3, 6)).all():
        return "ragged", shapely.to_ragged_array(geoms, include_z=False)
    return "wkb", shapely.to_wkb(geoms)


def _decode_geoms(encoded: tuple[str, Any]) -> np.ndarray:
    kind, data = encoded
    if kind == "ragged":
        geom_type, coords, offsets = data
        return shapely.from_ragged_array(geom_type, coords, offsets)
    return shapely.from_wkb(data)


def _run_task(payload: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Worker entry point: rebuild geometries (`_decode_geoms`), run the task's jobs, return partial results.

    Returns global job indices (``payload["job_ids"]``) instead of task-local positions.
    """
    geoms = _decode_geoms(payload["geoms"])
    with rasterio.Env(GDAL_CACHEMAX=payload["gdal_cache_bytes"]), _numpy_friendly_malloc():
        runner = _Runner(
            payload["names"],
            payload["tiles"],
            payload["key_fn"],
            payload["n_classes"],
            payload["max_window_pixels"],
            _worker_files(),
        )
        j, c, n, a = runner.run(payload["jobs"], geoms)
    return payload["job_ids"][j], c, n, a


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def prepare_features(features: gpd.GeoDataFrame, id_column: str, crs: Any) -> tuple[np.ndarray, pd.Index, np.ndarray]:
    """Validate features and return (unwrapped geometries, unique ids, id code per feature).

    Features with a missing id or a None/empty geometry are dropped. Features sharing an id are one
    area: their histograms are summed (GFW cuts large areas on a 1x1° grid into pieces with one id).

    Args:
        features: Polygons with an id column and a CRS.
        id_column: Name of the id column.
        crs: The tiles' CRS (rasterio or pyproj CRS, or None to keep the features' CRS); features in
            another CRS are reprojected to it.

    Returns:
        ``(geoms, uniques, codes)``: antimeridian-unwrapped geometries (object array), the sorted unique
        ids, and for each geometry the position of its id in `uniques`.

    Raises:
        KeyError: If `id_column` is missing.
        ValueError: If the features have no CRS.
    """
    if id_column not in features.columns:
        raise KeyError(f"features lack the id column {id_column!r}")
    if features.crs is None:
        raise ValueError("features have no CRS (crs=None); set it, e.g. features.set_crs('EPSG:4326')")
    if crs is not None:
        import pyproj

        target = pyproj.CRS.from_wkt(crs.to_wkt()) if hasattr(crs, "to_wkt") else pyproj.CRS.from_user_input(crs)
        if not pyproj.CRS.from_user_input(features.crs).equals(target, ignore_axis_order=True):
            features = features.to_crs(target)
    keep = features[id_column].notna().to_numpy() & ~(
        shapely.is_missing(features.geometry.values) | shapely.is_empty(features.geometry.values)
    )
    features = features[keep]
    geoms = np.asarray(features.geometry.values, dtype=object)
    bounds = shapely.bounds(geoms) if geoms.size else np.zeros((0, 4))
    wide = np.flatnonzero(bounds[:, 2] - bounds[:, 0] > 180.0)
    if wide.size:
        geoms = geoms.copy()
        for i in wide:
            geoms[i] = unwrap_antimeridian(geoms[i])
    codes, uniques = pd.factorize(features[id_column], sort=True)
    return geoms, pd.Index(uniques), codes.astype(np.int64)


def _client_workers(client: Any) -> int:
    """Number of parallel slots of a Dask client or concurrent.futures executor."""
    if hasattr(client, "nthreads"):
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a client without workers yet: assume 2
            return 2
    return max(1, int(getattr(client, "_max_workers", 2) or 2))


def _split_tasks(jobs: np.ndarray, geoms: np.ndarray, n_tasks: int) -> list[np.ndarray]:
    """Cut the canonical job list into contiguous runs of decreasing estimated cost.

    Tasks shrink from 1.5x to 0.5x the mean (guided scheduling): workers take them in order, so the
    small ones at the end even out the finish times without many tiny tasks overall.
    """
    if jobs.shape[0] == 0:
        return []
    n_vertices = shapely.get_num_coordinates(geoms[jobs[:, _JF]])
    cost = (jobs[:, _JR1] - jobs[:, _JR0]) * (jobs[:, _JC1] - jobs[:, _JC0]) + 200 * n_vertices + 50_000
    cum = np.cumsum(cost, dtype=np.float64)
    weights = np.linspace(1.5, 0.5, n_tasks)
    cuts = np.searchsorted(cum, cum[-1] * np.cumsum(weights)[:-1] / weights.sum())
    edges = np.unique(np.concatenate([[0], cuts, [jobs.shape[0]]]))
    return [np.arange(edges[i], edges[i + 1]) for i in range(edges.size - 1) if edges[i + 1] > edges[i]]


def run_histogram_jobs(
    names: Sequence[str],
    tiles: Sequence[Tile],
    geoms: np.ndarray,
    jobs: np.ndarray,
    key_fn: KeyFn,
    n_classes: int,
    *,
    client: Any = None,
    n_tasks: int | None = None,
    max_window_pixels: int = DEFAULT_MAX_WINDOW_PIXELS,
    gdal_cache_bytes: int = DEFAULT_GDAL_CACHE_BYTES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run planned jobs sequentially or on `client`; return per-job (job index, class, count, area).

    Args:
        names: Layer names (keys of the arrays passed to `key_fn`).
        tiles: Grid cells from `open_tiles`.
        geoms: Feature geometries indexed by the jobs' feature positions.
        jobs: Output of `plan_jobs`.
        key_fn: Maps ``{layer: 1-D pixel values}`` to integer class codes (negative = ignore), or to
            ``(codes, valid_mask)``. Must be picklable (a module-level function) for process pools.
        n_classes: Codes must be in ``[0, n_classes)``.
        client: None (run here), a ``distributed.Client`` or a ``concurrent.futures.Executor``.
        n_tasks: Number of tasks for a client; default 4 per worker slot.
        max_window_pixels: Must equal the value used by `plan_jobs` (recorded in the payload).
        gdal_cache_bytes: GDAL block cache per process.

    Returns:
        Arrays (job index, class, pixel count, area ha), job indices into `jobs`.
    """
    if client is None or jobs.shape[0] == 0:
        files = _OpenFiles()
        # In a process started with a fixed MALLOC_TRIM_THRESHOLD_ (a Dask worker running this call) the
        # allocator needs the same tuning as in `_run_task`; elsewhere glibc's dynamic threshold is fine.
        malloc = _numpy_friendly_malloc() if os.environ.get("MALLOC_TRIM_THRESHOLD_") else contextlib.nullcontext()
        with rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes), malloc:
            try:
                return _Runner(names, tiles, key_fn, n_classes, max_window_pixels, files).run(jobs, geoms)
            finally:
                files.close()
    n_tasks = n_tasks or 4 * _client_workers(client)
    is_dask = hasattr(client, "gather") and hasattr(client, "scheduler_info")
    futures = []
    with warnings.catch_warnings():
        # Payloads (coordinates + job table, a few MB) travel with the task on purpose: workers need no shared
        # storage.
        warnings.filterwarnings("ignore", message=".*[Ll]arge object.*")
        warnings.filterwarnings("ignore", message=".*[Ss]ending large graph.*")
        for idx in _split_tasks(jobs, geoms, n_tasks):
            sub = jobs[idx].copy()
            feat_u, feat_local = np.unique(sub[:, _JF], return_inverse=True)
            tile_u, tile_local = np.unique(sub[:, _JT], return_inverse=True)
            sub[:, _JF] = feat_local
            sub[:, _JT] = tile_local
            payload = {
                "names": list(names),
                "tiles": [tiles[t] for t in tile_u],
                # Encoded per task, right before its submission: the first task starts without waiting.
                "geoms": _encode_geoms(geoms[feat_u]),
                "jobs": sub,
                "job_ids": idx,
                "key_fn": key_fn,
                "n_classes": int(n_classes),
                "max_window_pixels": max_window_pixels,
                "gdal_cache_bytes": gdal_cache_bytes,
            }
            # Submitted one by one, so the first task runs while the next payloads are being built.
            futures.append(
                client.submit(_run_task, payload, pure=False) if is_dask else client.submit(_run_task, payload)
            )
    results = client.gather(futures) if is_dask else [f.result() for f in futures]
    e = np.zeros(0, dtype=np.int64)
    if not results:
        return e, e.copy(), e.copy(), np.zeros(0)
    return tuple(np.concatenate([r[i] for r in results]) for i in range(4))  # type: ignore[return-value]


def combine(
    jobs: np.ndarray,
    id_codes: np.ndarray,
    job_idx: np.ndarray,
    cls: np.ndarray,
    count: np.ndarray,
    area: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum per-job partial results per (id, class) in canonical job order (deterministic float sums).

    Args:
        jobs: The planned jobs (`plan_jobs`).
        id_codes: Id code of each feature position (`prepare_features`).
        job_idx: Job index of each partial row (`run_histogram_jobs`).
        cls: Class of each partial row.
        count: Pixel count of each partial row.
        area: Hectares of each partial row.

    Returns:
        ``(id_code, class, pixel_count, area_ha)`` sorted by id code, then class.
    """
    if job_idx.size == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), e.copy(), np.zeros(0)
    idc = id_codes[jobs[job_idx, _JF]]
    order = np.lexsort((job_idx, cls, idc))
    idc, cls, count, area = idc[order], cls[order], count[order], area[order]
    new = np.ones(idc.size, dtype=bool)
    new[1:] = (idc[1:] != idc[:-1]) | (cls[1:] != cls[:-1])
    first = np.flatnonzero(new)
    # Each group is summed in canonical job order, so the floats do not depend on how jobs were split.
    return idc[first], cls[first], np.add.reduceat(count, first), np.add.reduceat(area, first)


def class_histograms(
    layers: Mapping[str, Sequence[Any]],
    features: gpd.GeoDataFrame,
    key_fn: KeyFn,
    n_classes: int,
    id_column: str = DEFAULT_ID_COLUMN,
    *,
    client: Any = None,
    n_tasks: int | None = None,
    max_window_pixels: int = DEFAULT_MAX_WINDOW_PIXELS,
    gdal_cache_bytes: int = DEFAULT_GDAL_CACHE_BYTES,
) -> pd.DataFrame:
    """Pixel count and ellipsoidal area per (feature id, class) over aligned raster tiles.

    For every feature and every tile it intersects, only the window of the feature's bounding box is
    read (in strips of at most `max_window_pixels`); pixels whose centre lies inside the feature (GDAL /
    rasterio ``all_touched=False`` rule) are passed, one 1-D array per layer, to `key_fn`, and counted
    per returned class code, weighted by the WGS84-ellipsoid area of their row (`row_areas_ha`).
    A pixel is ignored when any layer holds its tile's nodata value there or `key_fn` gives it a
    negative code. Features crossing tile edges get the sum over the tiles; features outside all tiles
    (or with no valid pixel) get no rows. Overlapping features are counted independently. Features
    sharing an id are summed. An edge spanning more than 180° of longitude is taken to cross the
    antimeridian (`unwrap_antimeridian`), and tiles are matched modulo 360°.

    Args:
        layers: Layer name -> tiles (file paths or open rasterio datasets, band 1) on one lon/lat grid;
            the first layer's tiles define the grid cells, other layers need a tile for each cell.
            Datasets are reopened by name, so with a `client` they must be files the workers can read.
        features: Polygons (EPSG:4326 or reprojected to the tiles' CRS) with an id column.
        key_fn: ``{layer: values} -> codes`` (int array, negative = ignore) or ``(codes, valid)``.
            Called on 1-D arrays of the pixels inside a feature, in row-major order, up to ~130 k
            pixels at a time. Must be picklable (module-level) if `client` is a process pool.
        n_classes: Upper bound (exclusive) of the class codes.
        id_column: Feature id column; the first output column.
        client: None for this process, or a ``distributed.Client`` / ``concurrent.futures.Executor``:
            jobs are split into tasks (tile paths + coordinates, never open datasets) and the partial results
            summed. The output is identical to the sequential one.
        n_tasks: Tasks for a client (default 4 per worker slot).
        max_window_pixels: Largest strip of a feature's window held in memory at once.
        gdal_cache_bytes: GDAL block cache size per process.

    Returns:
        DataFrame ``[id_column, "class", "pixel_count", "area_ha"]`` (id dtype as in `features`,
        int64, int64, float64), one row per (id, class) with pixel_count > 0, sorted by id and class.

    Raises:
        KeyError: If `id_column` is missing.
        ValueError: On misaligned / rotated / non-geographic tiles, features without CRS, or a class
            code >= `n_classes`.
    """
    names, tiles = open_tiles(layers)
    with rasterio.open(tiles[0].paths[0]) as src:
        crs = src.crs
    geoms, uniques, id_codes = prepare_features(features, id_column, crs)
    jobs = plan_jobs(geoms, tiles, max_window_pixels)
    parts = run_histogram_jobs(
        names,
        tiles,
        geoms,
        jobs,
        key_fn,
        n_classes,
        client=client,
        n_tasks=n_tasks,
        max_window_pixels=max_window_pixels,
        gdal_cache_bytes=gdal_cache_bytes,
    )
    idc, cls, cnt, area = combine(jobs, id_codes, *parts)
    return pd.DataFrame(
        {
            id_column: pd.Series(uniques.take(idc)).astype(features[id_column].dtype).to_numpy(),
            "class": cls.astype(np.int64),
            "pixel_count": cnt.astype(np.int64),
            "area_ha": area.astype(np.float64),
        }
    )
