"""pipeline_tests.test_fire_stats: fire counting against slow shapely loops and geopandas.sjoin."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from pipeline.lib.fire_stats import (
    DAILY_COLUMNS,
    DAILY_SCHEMA,
    WEEKLY_COLUMNS,
    WEEKLY_SCHEMA,
    count_points_in_polygons,
    fire_counts,
    weekly_counts,
)

# --------------------------------------------------------------------------------------------
# Oracles: slow and obvious
# --------------------------------------------------------------------------------------------


def oracle_loop(lon, lat, polygons, group=None):
    """Per polygon, shapely `intersects` against each point, one Point at a time."""
    group = np.zeros(len(lon), dtype=int) if group is None else group
    counts: dict[tuple[int, int], int] = {}
    for i, poly in enumerate(polygons):
        if poly is None or poly.is_empty or not poly.is_valid:
            continue
        for x, y, g in zip(lon, lat, group, strict=False):
            if g < 0 or not (np.isfinite(x) and np.isfinite(y)):
                continue
            if poly.intersects(Point(x, y)):
                counts[(i, int(g))] = counts.get((i, int(g)), 0) + 1
    return sorted((p, g, c) for (p, g), c in counts.items())


def oracle_sjoin(lon, lat, polygons, group):
    """geopandas.sjoin with the documented predicate ("intersects"), grouped by (polygon, group)."""
    pts = gpd.GeoDataFrame({"group": group}, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    polys = gpd.GeoDataFrame({"pid": np.arange(len(polygons))}, geometry=list(polygons), crs="EPSG:4326")
    joined = gpd.sjoin(pts, polys, predicate="intersects")
    sizes = joined.groupby(["pid", "group"]).size()
    return sorted((int(p), int(g), int(c)) for (p, g), c in sizes.items())


def as_triples(result):
    pi, gi, ci = result
    return list(zip(pi.tolist(), gi.tolist(), ci.tolist(), strict=False))


def star(cx, cy, r, n, rng):
    """Random star-shaped ring (always simple): increasing angles, positive radii."""
    a = np.unique(np.sort(rng.uniform(0, 2 * np.pi, n)))
    rr = r * rng.uniform(0.5, 1.0, a.size)
    return np.column_stack([cx + rr * np.cos(a), cy + rr * np.sin(a)])


def random_polygons(rng, n):
    polys = []
    for _ in range(n):
        cx, cy, r = rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(0.3, 3)
        kind = rng.random()
        if kind < 0.2:
            polys.append(MultiPolygon([Polygon(star(cx, cy, r, 40, rng)), Polygon(star(cx + 2.5 * r, cy, r, 30, rng))]))
        elif kind < 0.4:
            polys.append(Polygon(star(cx, cy, r, 60, rng), [star(cx, cy, 0.2 * r, 12, rng)[::-1]]))
        else:
            polys.append(Polygon(star(cx, cy, r, int(rng.integers(3, 200)), rng)))
    assert all(p.is_valid for p in polys)
    return polys


# --------------------------------------------------------------------------------------------
# count_points_in_polygons
# --------------------------------------------------------------------------------------------


def test_overlapping_polygons_each_count_the_point():
    a, b = box(0, 0, 2, 2), box(1, 1, 3, 3)
    lon = np.array([0.5, 1.5, 1.5, 2.5, 10.0])
    lat = np.array([0.5, 1.5, 1.2, 2.5, 10.0])
    result = as_triples(count_points_in_polygons(lon, lat, [a, b]))
    # a: (0.5,.5), (1.5,1.5), (1.5,1.2); b: (1.5,1.5), (1.5,1.2), (2.5,2.5); (10,10) in neither.
    assert result == [(0, 0, 3), (1, 0, 3)]
    assert result == oracle_loop(lon, lat, [a, b])


def test_multipolygon_with_hole_and_boundary_points():
    # Part 1: 0..4 square with a 1..3 hole; part 2: 10..12 square.
    part1 = Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], [[(1, 1), (1, 3), (3, 3), (3, 1)]])
    part2 = box(10, 0, 12, 2)
    mp = MultiPolygon([part1, part2])
    assert mp.is_valid
    pts = {
        "inside ring": (0.5, 0.5, 1),
        "in hole": (2.0, 2.0, 0),
        "on hole edge": (2.0, 1.0, 1),
        "on hole vertex": (3.0, 3.0, 1),
        "outer vertex": (4.0, 4.0, 1),
        "outer edge": (0.0, 2.0, 1),
        "second part": (11.0, 1.0, 1),
        "second part vertex": (12.0, 0.0, 1),
        "between parts": (7.0, 1.0, 0),
        "just outside": (4.0 + 1e-9, 2.0, 0),
    }
    lon = np.array([p[0] for p in pts.values()])
    lat = np.array([p[1] for p in pts.values()])
    expected = sum(p[2] for p in pts.values())
    result = as_triples(count_points_in_polygons(lon, lat, [mp]))
    assert result == [(0, 0, expected)]
    assert result == oracle_loop(lon, lat, [mp])
    # Each point on its own says which ones count (intersects: boundary in, hole out).
    for name, (x, y, want) in pts.items():
        got = count_points_in_polygons(np.array([x]), np.array([y]), [mp])[2]
        assert got.tolist() == ([1] if want else []), name


def test_points_outside_everything_give_nothing():
    lon = np.array([50.0, -50.0, 0.0])
    lat = np.array([50.0, -50.0, 99.0])
    pi, gi, ci = count_points_in_polygons(lon, lat, [box(0, 0, 1, 1), box(5, 5, 6, 6)])
    assert pi.size == gi.size == ci.size == 0


def test_none_empty_and_invalid_geometries_are_skipped():
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])  # self-intersecting
    assert not bowtie.is_valid
    polys = [None, Polygon(), bowtie, box(0, 0, 2, 2)]
    lon = np.array([0.5, 1.5, 1.0])
    lat = np.array([1.0, 1.0, 0.2])
    assert as_triples(count_points_in_polygons(lon, lat, polys)) == [(3, 0, 3)]
    assert as_triples(count_points_in_polygons(lon, lat, gpd.GeoSeries(polys))) == [(3, 0, 3)]


def test_groups_nan_points_and_negative_codes():
    poly = box(0, 0, 10, 10)
    lon = np.array([1.0, 2.0, 3.0, np.nan, 4.0, 5.0, 50.0])
    lat = np.array([1.0, 2.0, 3.0, 1.0, np.inf, 5.0, 5.0])
    group = np.array([2, 0, 2, 0, 0, -1, 1])
    result = as_triples(count_points_in_polygons(lon, lat, [poly], group=group, n_groups=3))
    assert result == [(0, 0, 1), (0, 2, 2)]
    with pytest.raises(ValueError, match="out of range"):
        count_points_in_polygons(lon, lat, [poly], group=group, n_groups=2)
    with pytest.raises(ValueError, match="length"):
        count_points_in_polygons(lon, lat[:3], [poly])


def test_empty_points_or_polygons():
    for result in (
        count_points_in_polygons(np.array([]), np.array([]), [box(0, 0, 1, 1)]),
        count_points_in_polygons(np.array([0.5]), np.array([0.5]), []),
    ):
        assert all(a.size == 0 for a in result)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_shapes_match_shapely_loop_and_sjoin(seed):
    rng = np.random.default_rng(seed)
    polys = random_polygons(rng, 25)
    n = 1500
    lon, lat = rng.uniform(-9, 12, n), rng.uniform(-9, 9, n)
    # Put some points exactly on polygon vertices (boundary: counted under `intersects`).
    coords = shapely.get_coordinates(polys)
    picks = coords[rng.integers(0, len(coords), 150)]
    lon[:150], lat[:150] = picks[:, 0], picks[:, 1]
    group = rng.integers(0, 4, n)
    group[rng.random(n) < 0.05] = -1
    result = as_triples(count_points_in_polygons(lon, lat, polys, group=group, n_groups=4))
    assert result, "test data should produce matches"
    assert result == oracle_loop(lon, lat, polys, group)
    keep = group >= 0
    assert result == oracle_sjoin(lon[keep], lat[keep], polys, group[keep])
    # Many small chunks must give the same answer as one.
    assert as_triples(count_points_in_polygons(lon, lat, polys, group=group, n_groups=4, chunk_size=97)) == result


def test_prepared_state_of_caller_geometries_is_left_alone():
    mine, theirs = box(0, 0, 1, 1), box(0, 0, 2, 2)
    shapely.prepare(theirs)
    count_points_in_polygons(np.array([0.5]), np.array([0.5]), [mine, theirs])
    assert not shapely.is_prepared(mine)
    assert shapely.is_prepared(theirs)


# --------------------------------------------------------------------------------------------
# fire_counts
# --------------------------------------------------------------------------------------------


def features_frame(ids, geoms, crs="EPSG:4326", id_column="geostore__id"):
    return gpd.GeoDataFrame({id_column: ids}, geometry=geoms, crs=crs)


def hand_alerts():
    # Feature "b" = box(0,0,2,2) listed first; feature "a" = box(1,1,3,3). Overlap 1..2.
    rows = [
        # lon, lat, date, conf
        (0.5, 0.5, "2026-11-20", "h"),  # b
        (0.6, 0.5, "2026-11-20", "h"),  # b
        (0.7, 0.5, "2026-11-20", "l"),  # b
        (1.5, 1.5, "2026-11-20", "h"),  # a and b
        (2.5, 2.5, "2026-11-19", "n"),  # a
        (2.5, 2.6, "2026-11-21", "n"),  # a
        (2.0, 2.0, "2026-11-21", "n"),  # a and b (corner of b: boundary counts)
        (9.0, 9.0, "2026-11-20", "h"),  # nowhere
    ]
    return pd.DataFrame(rows, columns=["longitude", "latitude", "acq_date", "confidence__cat"])


def hand_features():
    return features_frame(["b", "a"], [box(0, 0, 2, 2), box(1, 1, 3, 3)])


HAND_EXPECTED = pd.DataFrame(
    {
        "geostore__id": ["a", "a", "a", "b", "b", "b"],
        "alert__date": ["2026-11-19", "2026-11-20", "2026-11-21", "2026-11-20", "2026-11-20", "2026-11-21"],
        "confidence__cat": ["n", "h", "n", "h", "l", "n"],
        "alert__count": np.array([1, 1, 2, 3, 1, 1], dtype="int64"),
    }
)


def test_fire_counts_hand_made_example():
    out = fire_counts(hand_alerts(), hand_features())
    pd.testing.assert_frame_equal(out, HAND_EXPECTED)
    assert list(out.columns) == DAILY_COLUMNS
    assert out["alert__count"].dtype == np.int64


def test_fire_counts_accepts_datetime_dates_and_rejects_bad_ones():
    alerts = hand_alerts()
    alerts["acq_date"] = pd.to_datetime(alerts["acq_date"])
    pd.testing.assert_frame_equal(fire_counts(alerts, hand_features()), HAND_EXPECTED)
    bad = hand_alerts()
    bad.loc[0, "acq_date"] = "20/11/2026"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        fire_counts(bad, hand_features())


def test_fire_counts_ignores_alerts_with_missing_values():
    alerts = hand_alerts()
    extra = pd.DataFrame(
        {
            "longitude": [0.5, 0.5, np.nan],
            "latitude": [0.5, 0.5, 0.5],
            "acq_date": [None, "2026-11-20", "2026-11-20"],
            "confidence__cat": ["h", None, "h"],
        }
    )
    out = fire_counts(pd.concat([alerts, extra], ignore_index=True), hand_features())
    pd.testing.assert_frame_equal(out, HAND_EXPECTED)


def test_fire_counts_custom_id_column_and_int_ids():
    feats = features_frame([7, 3], [box(0, 0, 2, 2), box(1, 1, 3, 3)], id_column="feature__id")
    out = fire_counts(hand_alerts(), feats, id_column="feature__id")
    expected = HAND_EXPECTED.rename(columns={"geostore__id": "feature__id"})
    expected["feature__id"] = expected["feature__id"].map({"b": 7, "a": 3}).astype(feats["feature__id"].dtype)
    pd.testing.assert_frame_equal(out, expected)


def test_fire_counts_duplicate_ids_keep_first_feature():
    feats = features_frame(["b", "a", "b"], [box(0, 0, 2, 2), box(1, 1, 3, 3), box(-100, -100, 100, 100)])
    pd.testing.assert_frame_equal(fire_counts(hand_alerts(), feats), HAND_EXPECTED)


def test_fire_counts_reprojects_and_requires_a_crs():
    feats_3857 = hand_features().to_crs(epsg=3857)
    # The round trip through metres moves vertices by ~1e-9 deg, so leave out the alert on b's corner.
    inner = hand_alerts().iloc[:6]
    expected = fire_counts(inner, hand_features())
    assert len(expected) == 5
    pd.testing.assert_frame_equal(fire_counts(inner, feats_3857), expected)
    # Metre coordinates read as degrees give other counts: the reprojection is what matters.
    assert not fire_counts(inner, feats_3857.set_crs(4326, allow_override=True)).equals(expected)
    no_crs = hand_features().set_crs(None, allow_override=True)
    with pytest.raises(ValueError, match="CRS"):
        fire_counts(hand_alerts(), no_crs)


@pytest.mark.parametrize("case", ["no alerts", "no features", "no matches"])
def test_fire_counts_empty_inputs(case):
    alerts, feats = hand_alerts(), hand_features()
    if case == "no alerts":
        alerts = alerts.iloc[:0]
    elif case == "no features":
        feats = feats.iloc[:0]
    else:
        alerts = alerts.iloc[[-1]]
    out = fire_counts(alerts, feats)
    assert len(out) == 0
    assert list(out.columns) == DAILY_COLUMNS
    assert out.dtypes.astype(str).tolist() == ["str", "str", "str", "int64"]


def test_fire_counts_missing_columns():
    with pytest.raises(KeyError, match="acq_date"):
        fire_counts(hand_alerts().drop(columns="acq_date"), hand_features())
    with pytest.raises(KeyError, match="feature__id"):
        fire_counts(hand_alerts(), hand_features(), id_column="feature__id")


def test_fire_counts_random_matches_sjoin_groupby():
    rng = np.random.default_rng(11)
    polys = random_polygons(rng, 20)
    n = 4000
    alerts = pd.DataFrame(
        {
            "longitude": rng.uniform(-9, 12, n),
            "latitude": rng.uniform(-9, 9, n),
            "acq_date": rng.choice(["2026-11-01", "2026-11-02", "2026-10-31"], n),
            "confidence__cat": rng.choice(["l", "n", "h"], n),
        }
    )
    feats = features_frame([f"id{i:02d}" for i in range(len(polys))][::-1], polys)
    out = fire_counts(alerts, feats)
    pts = gpd.GeoDataFrame(alerts, geometry=gpd.points_from_xy(alerts.longitude, alerts.latitude), crs=4326)
    joined = gpd.sjoin(pts, feats, predicate="intersects")
    expected = (
        joined.groupby(["geostore__id", "acq_date", "confidence__cat"])
        .size()
        .reset_index(name="alert__count")
        .rename(columns={"acq_date": "alert__date"})
    )
    expected["alert__count"] = expected["alert__count"].astype("int64")
    assert len(expected) > 50
    pd.testing.assert_frame_equal(out, expected[DAILY_COLUMNS].reset_index(drop=True), check_dtype=False)
    assert out["alert__count"].dtype == np.int64


# --------------------------------------------------------------------------------------------
# weekly_counts
# --------------------------------------------------------------------------------------------


def test_weekly_counts_iso_year_boundaries():
    daily = pd.DataFrame(
        {
            "geostore__id": ["x", "x", "x", "x", "x", "y"],
            "alert__date": ["2020-12-31", "2021-01-03", "2021-01-04", "2024-12-30", "2024-12-29", "2021-01-03"],
            "confidence__cat": ["h", "h", "h", "n", "n", "h"],
            "alert__count": np.array([2, 3, 5, 7, 11, 13], dtype="int64"),
        }
    )
    out = weekly_counts(daily)
    expected = pd.DataFrame(
        {
            "geostore__id": ["x", "x", "x", "x", "y"],
            "alert__year": np.array([2020, 2021, 2024, 2025, 2020], dtype="int64"),
            "alert__week": np.array([53, 1, 52, 1, 53], dtype="int64"),
            "confidence__cat": ["h", "h", "n", "n", "h"],
            "alert__count": np.array([5, 5, 11, 7, 13], dtype="int64"),
        }
    )
    pd.testing.assert_frame_equal(out, expected)
    assert list(out.columns) == WEEKLY_COLUMNS


def test_weekly_counts_of_fire_counts_keeps_totals():
    daily = fire_counts(hand_alerts(), hand_features())
    weekly = weekly_counts(daily)
    # 2026-11-19..21 are Thu..Sat of ISO week 47.
    assert set(weekly["alert__week"]) == {47}
    assert weekly.groupby("geostore__id")["alert__count"].sum().to_dict() == {"a": 4, "b": 5}


def test_weekly_counts_empty_and_custom_id():
    daily = fire_counts(hand_alerts().iloc[:0], hand_features())
    out = weekly_counts(daily)
    assert len(out) == 0 and list(out.columns) == WEEKLY_COLUMNS
    assert out.dtypes.astype(str).tolist() == ["str", "int64", "int64", "str", "int64"]
    renamed = HAND_EXPECTED.rename(columns={"geostore__id": "feature__id"})
    assert weekly_counts(renamed, id_column="feature__id").columns[0] == "feature__id"


def test_schemas_document_every_column():
    assert [c[0] for c in DAILY_SCHEMA] == DAILY_COLUMNS
    assert [c[0] for c in WEEKLY_SCHEMA] == WEEKLY_COLUMNS
    assert all(desc.strip() for _, _, desc in DAILY_SCHEMA + WEEKLY_SCHEMA)
