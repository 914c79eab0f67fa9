"""pipeline_tests.test_tiles: the 10x10° grid against hand-written ids and brute-force overlap oracles."""

from __future__ import annotations

import random

import pytest
import shapely
from affine import Affine

from pipeline.lib.tiles import (
    HANSEN_TILE_IDS,
    TileIdError,
    format_tile_id,
    from_glad_id,
    parse_tile_id,
    tile_bounds,
    tile_transform,
    tiles_for_bounds,
    tiles_for_geometry,
    to_glad_id,
)

# Written out by hand, independent of the module's arithmetic.
LAT_NAMES = ["80N", "70N", "60N", "50N", "40N", "30N", "20N", "10N", "00N", "10S", "20S", "30S", "40S", "50S"]
LON_NAMES = [f"{v:03d}W" for v in range(180, 0, -10)] + [f"{v:03d}E" for v in range(0, 180, 10)]


def _brute_bounds(west, south, east, north):
    """Slow oracle: every tile whose box overlaps the box with positive area (box assumed not to wrap)."""
    out = []
    for t in HANSEN_TILE_IDS:
        lat, lon = t.split("_")
        top = int(lat[:2]) * (1 if lat[2] == "N" else -1)
        left = int(lon[:3]) * (1 if lon[3] == "E" else -1)
        if min(east, left + 10) - max(west, left) > 0 and min(north, top) - max(south, top - 10) > 0:
            out.append(t)
    return out


def test_hansen_grid_has_504_tiles_north_to_south_west_to_east():
    assert len(LON_NAMES) == 36 and LON_NAMES[0] == "180W" and LON_NAMES[-1] == "170E"
    assert HANSEN_TILE_IDS == [f"{lat}_{lon}" for lat in LAT_NAMES for lon in LON_NAMES]
    assert len(HANSEN_TILE_IDS) == len(set(HANSEN_TILE_IDS)) == 504
    assert HANSEN_TILE_IDS[0] == "80N_180W" and HANSEN_TILE_IDS[-1] == "50S_170E"
    assert "00N_000E" in HANSEN_TILE_IDS and "40N_080W" in HANSEN_TILE_IDS and "10S_070W" in HANSEN_TILE_IDS


@pytest.mark.parametrize(
    ("tile_id", "corner", "bounds"),
    [
        ("10N_020E", (10, 20), (20, 0, 30, 10)),
        ("00N_060W", (0, -60), (-60, -10, -50, 0)),
        ("80N_180W", (80, -180), (-180, 70, -170, 80)),
        ("50S_170E", (-50, 170), (170, -60, 180, -50)),
        ("00N_000E", (0, 0), (0, -10, 10, 0)),
    ],
)
def test_parse_format_and_bounds(tile_id, corner, bounds):
    assert parse_tile_id(tile_id) == corner
    assert format_tile_id(*corner) == tile_id
    assert tile_bounds(tile_id) == bounds


def test_parse_format_round_trip_all_tiles():
    for t in HANSEN_TILE_IDS:
        assert format_tile_id(*parse_tile_id(t)) == t


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("5N_020E", "'5N_020E' must look like 10N_020E"),
        ("050N_110W", "must look like 10N_020E"),
        ("10n_020e", "must look like 10N_020E"),
        ("15N_020E", "latitude 15 must be a multiple of 10"),
        ("10N_025E", "longitude 25 must be a multiple of 10"),
        ("90N_000E", "top latitude 90 is outside the grid"),
        ("60S_000E", "top latitude -60 is outside the grid"),
        ("00N_180E", "left longitude 180 is outside the grid"),
        ("00S_000E", "not canonical: write it as 00N_000E"),
        ("10N_000W", "not canonical: write it as 10N_000E"),
    ],
)
def test_parse_rejects_bad_ids_naming_input_and_rule(bad, message):
    with pytest.raises(TileIdError, match=message):
        parse_tile_id(bad)


def test_format_rejects_bad_corners():
    with pytest.raises(TileIdError, match="multiple of 10"):
        format_tile_id(5, 0)
    with pytest.raises(TileIdError, match="outside the grid"):
        format_tile_id(10, 180)
    with pytest.raises(TileIdError, match="must be an integer"):
        format_tile_id(10.0, 20)


@pytest.mark.parametrize(
    ("tile_id", "glad"),
    [
        ("00N_020E", "020E_10S_030E_00N"),  # the contract's example
        ("00N_070W", "070W_10S_060W_00N"),  # the GLAD-S2 example name
        ("10N_000E", "000E_00N_010E_10N"),
        ("80N_180W", "180W_70N_170W_80N"),
        ("50S_170E", "170E_60S_180E_50S"),
    ],
)
def test_glad_names(tile_id, glad):
    assert to_glad_id(tile_id) == glad
    assert from_glad_id(glad) == tile_id


def test_glad_round_trip_all_tiles():
    names = [to_glad_id(t) for t in HANSEN_TILE_IDS]
    assert len(set(names)) == 504
    assert [from_glad_id(n) for n in names] == HANSEN_TILE_IDS


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("020E_10S_040E_00N", "must span exactly 10x10"),
        ("020E_00N_030E_10S", "must span exactly 10x10"),
        ("20E_10S_30E_00N", "must look like 020E_10S_030E_00N"),
        ("010W_00N_000W_10N", "not canonical: write it as 010W_00N_000E_10N"),
    ],
)
def test_from_glad_id_rejects(bad, message):
    with pytest.raises(TileIdError, match=message):
        from_glad_id(bad)


def test_tiles_for_bounds_hand_cases():
    assert tiles_for_bounds(5, -5, 15, 5) == ["10N_000E", "10N_010E", "00N_000E", "00N_010E"]
    # Edges lying on tile edges do not pull in neighbours.
    assert tiles_for_bounds(20, -10, 30, 0) == ["00N_020E"]
    assert tiles_for_bounds(20, -10, 40, 10) == ["10N_020E", "10N_030E", "00N_020E", "00N_030E"]
    # Antimeridian: west > east is split into [175, 180] and [-180, -175].
    assert tiles_for_bounds(175, -5, -175, 5) == ["10N_180W", "10N_170E", "00N_180W", "00N_170E"]
    # Clipped to the grid (80N..60S).
    assert tiles_for_bounds(0, -89, 10, -60) == []
    assert tiles_for_bounds(0, 80, 10, 90) == []
    assert tiles_for_bounds(0, -65, 5, -55) == ["50S_000E"]
    assert tiles_for_bounds(0, 75, 5, 89) == ["80N_000E"]
    assert len(tiles_for_bounds(-180, -90, 180, 90)) == 504


def test_tiles_for_bounds_points_and_lines_use_edge_ownership():
    assert tiles_for_bounds(25, -5, 25, -5) == ["00N_020E"]  # interior point
    assert tiles_for_bounds(20, 0, 20, 0) == ["00N_020E"]  # a tile owns its top and left edges
    assert tiles_for_bounds(180, 0, 180, 0) == ["00N_180W"]  # lon 180 is lon -180
    assert tiles_for_bounds(5, 0, 15, 0) == ["00N_000E", "00N_010E"]  # along lat 0
    assert tiles_for_bounds(20, -5, 20, 5) == ["10N_020E", "00N_020E"]  # along lon 20
    assert tiles_for_bounds(0, -60, 0, -60) == []  # the grid's bottom edge belongs to the row below it


def test_tiles_for_bounds_matches_brute_force():
    rng = random.Random(7)
    for _ in range(300):
        w, e = sorted(rng.choice([rng.uniform(-180, 180), rng.randrange(-18, 19) * 10]) for _ in range(2))
        s, n = sorted(rng.choice([rng.uniform(-90, 90), rng.randrange(-9, 10) * 10]) for _ in range(2))
        if w == e or s == n:
            continue
        assert tiles_for_bounds(w, s, e, n) == _brute_bounds(w, s, e, n), (w, s, e, n)
        if w > -180 and e < 180:
            wrapped = tiles_for_bounds(e, s, w, n)  # the complement in longitude, across the antimeridian
            expect = _brute_bounds(e, s, 180, n) + _brute_bounds(-180, s, w, n)
            assert wrapped == [t for t in HANSEN_TILE_IDS if t in expect], (e, s, w, n)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((0, 10, 10, 0), "south 10 must not be greater than north 0"),
        ((0, 0, 200, 10), "east 200 must be a longitude in"),
        ((0, -95, 10, 0), "south -95 must be a latitude in"),
        ((float("nan"), 0, 10, 10), "west nan must be a finite number"),
    ],
)
def test_tiles_for_bounds_rejects(box, message):
    with pytest.raises(ValueError, match=message):
        tiles_for_bounds(*box)


def test_tiles_for_geometry_triangle_only_true_overlaps():
    # Hypotenuse x - y = 30 passes exactly through the corners (20, -10) and (10, -20): those tiles are only touched.
    tri = shapely.Polygon([(1, -1), (29, -1), (1, -29)])
    assert len(tiles_for_bounds(*tri.bounds)) == 9
    assert tiles_for_geometry(tri) == ["00N_000E", "00N_010E", "00N_020E", "10S_000E", "10S_010E", "20S_000E"]


def test_tiles_for_geometry_edges_points_lines():
    assert tiles_for_geometry(shapely.box(20, -10, 30, 0)) == ["00N_020E"]
    assert tiles_for_geometry(shapely.Point(25, -5)) == ["00N_020E"]
    assert tiles_for_geometry(shapely.Point(20, 0)) == ["00N_020E"]
    assert tiles_for_geometry(shapely.LineString([(5, 0), (15, 0)])) == ["00N_000E", "00N_010E"]
    assert tiles_for_geometry(shapely.LineString([(5, 5), (15, 5)])) == ["10N_000E", "10N_010E"]
    assert tiles_for_geometry(shapely.Polygon()) == []
    assert tiles_for_geometry(shapely.box(0, -85, 10, -70)) == []  # south of the grid
    with pytest.raises(TypeError, match="must be a shapely geometry"):
        tiles_for_geometry((0, 0, 1, 1))


def test_tiles_for_geometry_antimeridian():
    expect = ["10N_180W", "10N_170E", "00N_180W", "00N_170E"]
    # Drawn past 180 (175..185) and as two parts on both sides of the antimeridian.
    assert tiles_for_geometry(shapely.box(175, -5, 185, 5)) == expect
    assert tiles_for_geometry(shapely.box(-185, -5, -175, 5)) == expect
    two_parts = shapely.MultiPolygon([shapely.box(175, -5, 180, 5), shapely.box(-180, -5, -175, 5)])
    assert tiles_for_geometry(two_parts) == expect
    # A thin sliver on one side only must not claim the whole latitude band.
    assert tiles_for_geometry(shapely.box(178, 41, 182, 42)) == ["50N_180W", "50N_170E"]


def test_tiles_for_geometry_matches_area_oracle():
    """Random quads/triangles against a slow loop over all 504 tiles keeping those with intersection area > 0."""
    rng = random.Random(11)
    boxes = {t: shapely.box(*tile_bounds(t)) for t in HANSEN_TILE_IDS}
    for _ in range(25):
        cx, cy = rng.uniform(-170, 170), rng.uniform(-55, 75)
        pts = [(cx + rng.uniform(-15, 15), cy + rng.uniform(-12, 12)) for _ in range(rng.choice([3, 4]))]
        poly = shapely.convex_hull(shapely.MultiPoint(pts))
        if poly.area == 0:
            continue
        expect = [t for t, b in boxes.items() if poly.intersection(b).area > 0]
        assert tiles_for_geometry(poly) == expect


def test_tile_transform():
    tr = tile_transform("00N_020E", 400)
    assert tr == Affine(0.025, 0.0, 20.0, 0.0, -0.025, 0.0)
    assert tr @ (0, 0) == (20.0, 0.0)
    assert tr @ (400, 400) == pytest.approx((30.0, -10.0))
    assert tile_transform("50S_170E", 40000) @ (40000, 40000) == pytest.approx((180.0, -60.0))
    with pytest.raises(ValueError, match="size 0 must be a positive integer"):
        tile_transform("00N_020E", 0)
    with pytest.raises(TileIdError, match="must look like"):
        tile_transform("bad", 400)
