"""pipeline.lib.tiles: the GFW / Hansen 10x10° tile grid: tile ids, GLAD names, bounds and tile look-ups.

A GFW tile id names the TOP-LEFT corner of a 10x10° tile with a 2-digit latitude and a 3-digit longitude
(`10N_020E`, `00N_060W`, `80N_180W`; external-apis.md §2.5, §3). GLAD alert source files use a 4-part name
`{left}_{bottom}_{right}_{top}` (`020E_10S_030E_00N`; §2.2). The Hansen grid has 504 tiles (§3): 36 columns
(left edges 180W..170E) x 14 rows (tops 80N..50S), so it covers 80N..60S.

Ownership of points on tile edges follows raster convention (a tile owns its top and left edges): a point at
(lon 20, lat 0) lies in tile `00N_020E`. Boxes and geometries with area only claim tiles they overlap with
positive area; edges that merely touch a tile do not count.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from affine import Affine

TILE_SIZE_DEG = 10
GRID_NORTH = 80  # top of the northernmost row
GRID_SOUTH = -60  # bottom of the southernmost row (tile 50S_...)
TOP_LATS = tuple(range(GRID_NORTH, GRID_SOUTH, -TILE_SIZE_DEG))  # 80 .. -50: 14 rows
LEFT_LONS = tuple(range(-180, 180, TILE_SIZE_DEG))  # -180 .. 170

_TILE_ID = re.compile(r"^(?P<lat>\d{2})(?P<ns>[NS])_(?P<lon>\d{3})(?P<ew>[EW])$")
_GLAD_ID = re.compile(
    r"^(?P<lon0>\d{3})(?P<ew0>[EW])_(?P<lat0>\d{2})(?P<ns0>[NS])_(?P<lon1>\d{3})(?P<ew1>[EW])_(?P<lat1>\d{2})(?P<ns1>[NS])$"
)


class TileIdError(ValueError):
    """A tile id or GLAD tile name is malformed or outside the 10x10° grid."""


def _signed(value: str, hemi: str) -> int:
    return -int(value) if hemi in "SW" else int(value)


def _lat_str(lat: int) -> str:
    # Zero is always written N (and lon 0 always E), as in every GFW and Hansen file name.
    return f"{abs(lat):02d}{'N' if lat >= 0 else 'S'}"


def _lon_str(lon: int) -> str:
    return f"{abs(lon):03d}{'E' if lon >= 0 else 'W'}"


def _check_corner(top_lat: int, left_lon: int, what: str) -> None:
    for name, value in (("latitude", top_lat), ("longitude", left_lon)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TileIdError(f"{what}: {name} {value!r} must be an integer")
        if value % TILE_SIZE_DEG:
            raise TileIdError(f"{what}: {name} {value} must be a multiple of {TILE_SIZE_DEG}")
    if not TOP_LATS[-1] <= top_lat <= TOP_LATS[0]:
        raise TileIdError(
            f"{what}: top latitude {top_lat} is outside the grid (tile tops run from {TOP_LATS[0]}N to "
            f"{-TOP_LATS[-1]}S, so tiles cover {GRID_NORTH}N..{-GRID_SOUTH}S)"
        )
    if not LEFT_LONS[0] <= left_lon <= LEFT_LONS[-1]:
        raise TileIdError(
            f"{what}: left longitude {left_lon} is outside the grid (tile left edges run from 180W to 170E)"
        )


def parse_tile_id(tile_id: str) -> tuple[int, int]:
    """Parse a GFW tile id into its top-left corner.

    Args:
        tile_id: e.g. `10N_020E` (2-digit latitude, 3-digit longitude; zero is written `00N` / `000E`).

    Returns:
        (top_lat, left_lon) in whole degrees, e.g. (10, 20); `00N_060W` -> (0, -60).

    Raises:
        TileIdError: malformed id, non-canonical zero (`00S`, `000W`), or a corner outside the grid.
    """
    if not isinstance(tile_id, str):
        raise TileIdError(f"tile id {tile_id!r} must be a string like 10N_020E")
    m = _TILE_ID.match(tile_id)
    if not m:
        raise TileIdError(f"tile id {tile_id!r} must look like 10N_020E (2-digit latitude, 3-digit longitude)")
    top, left = _signed(m["lat"], m["ns"]), _signed(m["lon"], m["ew"])
    _check_corner(top, left, f"tile id {tile_id!r}")
    if format_tile_id(top, left) != tile_id:
        # Only the canonical spelling is accepted so that ids are usable as unique partition keys.
        raise TileIdError(f"tile id {tile_id!r} is not canonical: write it as {format_tile_id(top, left)}")
    return top, left


def format_tile_id(top_lat: int, left_lon: int) -> str:
    """The GFW tile id of the tile whose top-left corner is (top_lat, left_lon), e.g. (10, 20) -> `10N_020E`.

    Raises:
        TileIdError: the corner is not a multiple of 10 or lies outside the grid.
    """
    _check_corner(top_lat, left_lon, f"tile corner ({top_lat!r}, {left_lon!r})")
    return f"{_lat_str(int(top_lat))}_{_lon_str(int(left_lon))}"


# Static partition keys of tile assets: north to south, then west to east.
HANSEN_TILE_IDS: list[str] = [format_tile_id(top, left) for top in TOP_LATS for left in LEFT_LONS]


def tile_bounds(tile_id: str) -> tuple[int, int, int, int]:
    """(west, south, east, north) of a tile in degrees, e.g. `00N_020E` -> (20, -10, 30, 0)."""
    top, left = parse_tile_id(tile_id)
    return left, top - TILE_SIZE_DEG, left + TILE_SIZE_DEG, top


def to_glad_id(tile_id: str) -> str:
    """The 4-part GLAD name `{left}_{bottom}_{right}_{top}` of a GFW tile, e.g. `00N_020E` -> `020E_10S_030E_00N`."""
    west, south, east, north = tile_bounds(tile_id)
    return f"{_lon_str(west)}_{_lat_str(south)}_{_lon_str(east)}_{_lat_str(north)}"


def from_glad_id(glad_id: str) -> str:
    """The GFW tile id of a 4-part GLAD name, e.g. `020E_10S_030E_00N` -> `00N_020E`.

    Raises:
        TileIdError: malformed name, a box that is not one 10x10° grid cell, or a non-canonical spelling.
    """
    if not isinstance(glad_id, str):
        raise TileIdError(f"GLAD tile name {glad_id!r} must be a string like 020E_10S_030E_00N")
    m = _GLAD_ID.match(glad_id)
    if not m:
        raise TileIdError(
            f"GLAD tile name {glad_id!r} must look like 020E_10S_030E_00N (left lon, bottom lat, right lon, top lat)"
        )
    left, bottom = _signed(m["lon0"], m["ew0"]), _signed(m["lat0"], m["ns0"])
    right, top = _signed(m["lon1"], m["ew1"]), _signed(m["lat1"], m["ns1"])
    if right - left != TILE_SIZE_DEG or top - bottom != TILE_SIZE_DEG:
        raise TileIdError(f"GLAD tile name {glad_id!r} must span exactly 10x10° (left, bottom, right, top)")
    tile_id = format_tile_id(top, left)
    if to_glad_id(tile_id) != glad_id:
        raise TileIdError(f"GLAD tile name {glad_id!r} is not canonical: write it as {to_glad_id(tile_id)}")
    return tile_id


def tile_transform(tile_id: str, size: int) -> Affine:
    """The north-up affine transform of a `size` x `size` raster covering the tile (pixel size 10/size degrees)."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
        raise ValueError(f"tile raster size {size!r} must be a positive integer")
    west, _, _, north = tile_bounds(tile_id)
    res = TILE_SIZE_DEG / size
    return Affine(res, 0.0, float(west), 0.0, -res, float(north))


def _check_box(west: float, south: float, east: float, north: float) -> None:
    values = {"west": west, "south": south, "east": east, "north": north}
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not np.isfinite(v):
            raise ValueError(f"box {name} {v!r} must be a finite number")
    for name in ("west", "east"):
        if not -180 <= values[name] <= 180:
            raise ValueError(f"box {name} {values[name]} must be a longitude in [-180, 180]")
    for name in ("south", "north"):
        if not -90 <= values[name] <= 90:
            raise ValueError(f"box {name} {values[name]} must be a latitude in [-90, 90]")
    if south > north:
        raise ValueError(f"box south {south} must not be greater than north {north}")


def tiles_for_bounds(west: float, south: float, east: float, north: float) -> list[str]:
    """Every grid tile a lon/lat box overlaps, in `HANSEN_TILE_IDS` order.

    Each axis is handled on its own. Along an axis with positive extent, a tile counts when the overlap has
    positive length, so a box edge lying on a tile edge does not pull in the neighbouring tile. Along an axis with
    zero extent (a point, or a line of constant latitude or longitude) the tile that owns that coordinate counts:
    tiles own their top and left edges, and lon 180 is the meridian -180. If `west > east` the box crosses the
    antimeridian and is split into [west, 180] and [-180, east]. The box is clipped to the grid (80N..60S); a box
    entirely outside gives [].

    Raises:
        ValueError: a non-finite value, longitudes outside [-180, 180], latitudes outside [-90, 90], south > north.
    """
    _check_box(west, south, east, north)
    if south == north:
        top = int(np.ceil(south / TILE_SIZE_DEG)) * TILE_SIZE_DEG
        rows = {top} if GRID_SOUTH < south <= GRID_NORTH else set()
    else:
        rows = {t for t in TOP_LATS if south < t and north > t - TILE_SIZE_DEG}
    if west == east:
        cols = {int(np.floor(((west + 180) % 360 - 180) / TILE_SIZE_DEG)) * TILE_SIZE_DEG}
    else:
        lon_ranges = [(west, 180.0), (-180.0, east)] if west > east else [(west, east)]
        cols = {w for lo, hi in lon_ranges for w in LEFT_LONS if lo < w + TILE_SIZE_DEG and hi > w}
    return [format_tile_id(t, w) for t in TOP_LATS if t in rows for w in LEFT_LONS if w in cols]


_TILE_INDEX = {t: i for i, t in enumerate(HANSEN_TILE_IDS)}


@lru_cache(maxsize=1)
def _tile_boxes():
    import shapely

    return np.array([shapely.box(*tile_bounds(t)) for t in HANSEN_TILE_IDS])


def _wrap_longitudes(geom):
    """Split a geometry whose longitudes leave [-180, 180] (e.g. 170..190) at ±180 and shift the parts back."""
    import shapely

    xmin, _, xmax, _ = geom.bounds
    if xmin >= -180 and xmax <= 180:
        return geom
    parts = []
    for k in range(int(np.floor((xmin + 180) / 360)), int(np.floor((xmax + 180) / 360)) + 1):
        part = shapely.clip_by_rect(geom, -180 + 360 * k, -90, 180 + 360 * k, 90)
        if not part.is_empty:
            parts.append(shapely.transform(part, lambda c, k=k: c - np.array([360.0 * k, 0.0])))
    return shapely.GeometryCollection(parts) if len(parts) != 1 else parts[0]


def tiles_for_geometry(geom) -> list[str]:
    """Every grid tile a shapely geometry (lon/lat, EPSG:4326) truly overlaps, in `HANSEN_TILE_IDS` order.

    Candidates come from each part's bounds; a tile is kept only if the part meets the tile's interior (touching an
    edge is not enough, so a polygon sharing only an edge with a tile does not claim it). A part that lies only on
    grid lines (a point or line on a tile edge) gets the tiles owning it, as in `tiles_for_bounds`. Longitudes beyond
    ±180 (a polygon drawn 170..190) are split at the antimeridian and wrapped; a multipolygon with parts on both
    sides of ±180 needs nothing special. Empty geometries give [].

    Raises:
        TypeError: `geom` is not a shapely geometry.
    """
    import shapely

    if not isinstance(geom, shapely.Geometry):
        raise TypeError(f"geometry {geom!r} must be a shapely geometry")
    if geom.is_empty:
        return []
    geom = _wrap_longitudes(geom)
    boxes = _tile_boxes()
    found: set[str] = set()
    for part in shapely.get_parts(geom):
        west, south, east, north = part.bounds
        if part.is_empty or north < GRID_SOUTH or south > GRID_NORTH:
            continue
        candidates = tiles_for_bounds(west, max(south, -90.0), east, min(north, 90.0))
        if not candidates:
            continue
        shapely.prepare(part)
        cand = boxes[[_TILE_INDEX[t] for t in candidates]]
        meets = shapely.intersects(part, cand)
        # Interiors meet = intersects and does not merely touch (positive area for polygons).
        hit = meets & ~shapely.touches(part, cand)
        if hit.any():
            found.update(t for t, h in zip(candidates, hit, strict=True) if h)
        elif meets.any():
            # The part lies on grid lines only, so each of its segments is axis-aligned: use the ownership rule.
            xy = shapely.get_coordinates(part)
            pairs = zip(xy, xy[1:], strict=False) if len(xy) > 1 else [(xy[0], xy[0])]
            for (x0, y0), (x1, y1) in pairs:
                found.update(tiles_for_bounds(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return [t for t in HANSEN_TILE_IDS if t in found]
