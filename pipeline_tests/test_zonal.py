"""pipeline_tests.test_zonal: zonal engine vs rasterio rasterize, geodesic areas, exactextract; tcl and alert tables."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Polygon, box

from pipeline.lib import zonal as Z
from pipeline.lib import zonal_engine as E

# --------------------------------------------------------------------------------------------
# Helpers and oracles
# --------------------------------------------------------------------------------------------

PX = 1 / 1024  # dyadic pixel size: tile origins and pixel edges are exact, so ties are the same everywhere


def write_tile(path, data, transform, nodata=None, crs="EPSG:4326"):
    """Write a single-band tiled GeoTIFF and return its path as str."""
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return str(path)


def star(cx, cy, r, n, rng):
    """Random star-shaped ring (always simple): one vertex per equal sector, positive radii."""
    a = (np.arange(n) + rng.uniform(0, 1, n)) * (2 * np.pi / n)
    rr = r * rng.uniform(0.4, 1.0, n)
    return np.column_stack([cx + rr * np.cos(a), cy + rr * np.sin(a)])


def frame(geoms, ids=None):
    ids = ids if ids is not None else [f"f{i:03d}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({"geostore__id": ids}, geometry=list(geoms), crs="EPSG:4326")


def oracle_histograms(geoms, ids, data, transform, n_classes, nodata=None):
    """Slow reference: one full-grid rasterio.rasterize per feature, then bincount of classes and row areas."""
    rows_area = E.row_areas_ha(transform, 0, data.shape[0])
    out = {}
    for gid, geom in zip(ids, geoms, strict=True):
        mask = rasterize([(geom, 1)], out_shape=data.shape, transform=transform, fill=0, dtype="uint8").astype(bool)
        if nodata is not None:
            mask &= data != nodata
        r = np.nonzero(mask)[0]
        v = data[mask].astype(np.int64)
        cnt = np.bincount(v, minlength=n_classes)
        area = np.bincount(v, weights=rows_area[r], minlength=n_classes)
        prev = out.get(gid)
        out[gid] = (cnt, area) if prev is None else (prev[0] + cnt, prev[1] + area)
    return out


def as_dict(hist, n_classes):
    out = {}
    for gid, sub in hist.groupby("geostore__id"):
        cnt = np.zeros(n_classes, dtype=np.int64)
        area = np.zeros(n_classes)
        cnt[sub["class"].to_numpy()] = sub["pixel_count"].to_numpy()
        area[sub["class"].to_numpy()] = sub["area_ha"].to_numpy()
        out[gid] = (cnt, area)
    return out


def assert_same_histograms(got, want):
    want = {k: v for k, v in want.items() if v[0].sum() > 0}  # features without pixels have no rows
    assert sorted(got) == sorted(want)
    for gid in want:
        np.testing.assert_array_equal(got[gid][0], want[gid][0], err_msg=f"pixel counts of {gid}")
        np.testing.assert_allclose(got[gid][1], want[gid][1], rtol=1e-9, atol=0, err_msg=f"areas of {gid}")


def value(arrays):
    """Module-level key function (picklable): the pixel value is the class."""
    return arrays["v"]


N_CLASSES = 7


@pytest.fixture(scope="module")
def two_tiles(tmp_path_factory):
    """Two side-by-side uint8 tiles (lon 10..10.25 and 10.25..10.5, lat 4.75..5) plus their mosaic."""
    tmp = tmp_path_factory.mktemp("zonal_tiles")
    rng = np.random.default_rng(3)
    h, w = 256, 256
    mosaic = rng.integers(0, N_CLASSES, (h, 2 * w)).astype(np.uint8)
    t_mosaic = Affine(PX, 0, 10.0, 0, -PX, 5.0)
    paths = [
        write_tile(tmp / "a.tif", np.ascontiguousarray(mosaic[:, :w]), t_mosaic),
        write_tile(tmp / "b.tif", np.ascontiguousarray(mosaic[:, w:]), t_mosaic @ Affine.translation(w, 0)),
    ]
    return paths, mosaic, t_mosaic


def varied_shapes(rng):
    """Stars, a MultiPolygon, holes, a sub-pixel polygon, overlaps, a feature across both tiles, edge ties."""
    x0, y0 = 10.0, 5.0
    shapes = []
    for _ in range(12):
        cx, cy, r = x0 + rng.uniform(0.02, 0.48), y0 - rng.uniform(0.02, 0.23), rng.uniform(0.003, 0.08)
        shapes.append(Polygon(star(cx, cy, r, int(rng.integers(3, 400)), rng)))
    shapes.append(
        MultiPolygon(
            [
                Polygon(star(10.1, 4.9, 0.03, 50, rng)),
                Polygon(star(10.2, 4.9, 0.03, 40, rng)),
                box(10.3, 4.8, 10.32, 4.82),
            ]
        )
    )
    shapes.append(Polygon(star(10.12, 4.85, 0.06, 120, rng), [star(10.12, 4.85, 0.02, 30, rng)[::-1]]))
    shapes.append(box(10.0402, 4.9102, 10.0406, 4.9105))  # smaller than a pixel, centre not covered
    shapes.append(box(10.0 + 40.3 * PX, 5.0 - 60.7 * PX, 10.0 + 40.8 * PX, 5.0 - 60.2 * PX))  # covers one centre
    shapes.append(shapes[0].buffer(0.01))  # overlaps shapes[0]
    shapes.append(Polygon(star(10.25, 4.87, 0.09, 300, rng)))  # crosses the tile edge at lon 10.25
    # Edges exactly on pixel centres and on pixel boundaries (both ring orientations, and a hole).
    shapes.append(box(10.0 + 100.5 * PX, 5.0 - 80.5 * PX, 10.0 + 300.5 * PX, 5.0 - 20.5 * PX, ccw=True))
    shapes.append(box(10.0 + 10 * PX, 5.0 - 200 * PX, 10.0 + 50 * PX, 5.0 - 150 * PX, ccw=False))
    outer = box(10.0 + 200.5 * PX, 5.0 - 250.5 * PX, 10.0 + 240.5 * PX, 5.0 - 210.5 * PX)
    inner = box(10.0 + 210.5 * PX, 5.0 - 240.5 * PX, 10.0 + 230.5 * PX, 5.0 - 220.5 * PX)
    shapes.append(Polygon(outer.exterior.coords, [inner.exterior.coords]))
    shapes.append(box(10.45, 4.70, 10.60, 4.80))  # partly outside the mosaic
    shapes.append(box(11.0, 4.0, 11.1, 4.1))  # outside every tile
    assert all(s.is_valid for s in shapes)
    return shapes


# --------------------------------------------------------------------------------------------
# Pixel assignment: bit-for-bit against rasterio
# --------------------------------------------------------------------------------------------


def test_pixel_spans_equal_rasterio_on_random_and_lattice_shapes():
    rng = np.random.default_rng(11)
    h, w = 64, 80
    tr = Affine(1 / 64, 0, -3.0, 0, -1 / 64, 2.0)
    checked = 0
    for trial in range(300):
        if trial % 2:
            # Vertices on the half-pixel lattice: many centres exactly on edges and vertices.
            n = int(rng.integers(3, 10))
            pts = np.column_stack(
                [-3.0 + rng.integers(-4, 2 * w + 4, n) / 128, 2.0 - rng.integers(-4, 2 * h + 4, n) / 128]
            )
            geom = shapely.make_valid(Polygon(pts))
        else:
            geom = Polygon(star(rng.uniform(-3, -1.75), rng.uniform(1, 2), rng.uniform(0.01, 0.7), 60, rng))
        if geom.is_empty or geom.area == 0:
            continue
        want = rasterize([(geom, 1)], out_shape=(h, w), transform=tr, fill=0, dtype="uint8").astype(bool)
        got = Z.rasterize_mask(geom, tr, (h, w))
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}: {geom.wkt[:200]}")
        checked += 1
    assert checked > 250


def test_class_histograms_match_per_polygon_rasterize(two_tiles):
    paths, mosaic, t_mosaic = two_tiles
    shapes = varied_shapes(np.random.default_rng(5))
    feats = frame(shapes)
    got = as_dict(Z.class_histograms({"v": paths}, feats, value, N_CLASSES), N_CLASSES)
    want = oracle_histograms(shapes, list(feats["geostore__id"]), mosaic, t_mosaic, N_CLASSES)
    assert_same_histograms(got, want)
    assert "f031" not in got  # the feature outside every tile has no rows, and no error
    # The oracle can fail: dropping one tile loses the pixels of the feature that crosses the edge.
    partial = as_dict(Z.class_histograms({"v": paths[:1]}, feats, value, N_CLASSES), N_CLASSES)
    assert partial["f017"][0].sum() < want["f017"][0].sum()


def test_strips_and_tile_order_do_not_change_counts(two_tiles):
    paths, mosaic, t_mosaic = two_tiles
    feats = frame(varied_shapes(np.random.default_rng(6)))
    full = Z.class_histograms({"v": paths}, feats, value, N_CLASSES)
    strips = Z.class_histograms({"v": paths[::-1]}, feats, value, N_CLASSES, max_window_pixels=700)
    pd.testing.assert_frame_equal(full.drop(columns="area_ha"), strips.drop(columns="area_ha"))
    np.testing.assert_allclose(strips["area_ha"], full["area_ha"], rtol=1e-12)


def test_nodata_ids_and_open_datasets(tmp_path):
    data = np.arange(16, dtype=np.uint8).reshape(4, 4) % 5
    data[1, 2] = 9  # nodata
    tr = Affine(0.25, 0, 0.0, 0, -0.25, 1.0)
    path = write_tile(tmp_path / "t.tif", data, tr, nodata=9)
    left, right = box(0, 0, 0.5, 1), box(0.5, 0, 1, 1)
    feats = frame([left, right, box(0.25, 0.25, 0.75, 0.75)], ids=["a", "a", "b"])  # "a" in two pieces
    with rasterio.open(path) as ds:
        hist = Z.class_histograms({"v": [ds]}, feats, value, 10)
    got = as_dict(hist, 10)
    want = oracle_histograms([left, right, box(0.25, 0.25, 0.75, 0.75)], ["a", "a", "b"], data, tr, 10, nodata=9)
    assert_same_histograms(got, want)
    assert got["a"][0].sum() == 15 and got["b"][0].sum() == 3 and got["a"][0][9] == 0
    # A nodata value outside the class range is fine (it is never counted), a real value there is not.
    data255 = np.where(data == 9, 255, data).astype(np.uint8)
    path255 = write_tile(tmp_path / "t255.tif", data255, tr, nodata=255)
    pd.testing.assert_frame_equal(Z.class_histograms({"v": [path255]}, feats, value, 5), hist[hist["class"] < 5])
    with pytest.raises(ValueError, match="n_classes"):
        Z.class_histograms({"v": [write_tile(tmp_path / "t_nond.tif", data255, tr)]}, feats, value, 5)


def test_antimeridian_feature_is_split_over_both_sides(tmp_path):
    rng = np.random.default_rng(8)
    h, w = 64, 64
    east = rng.integers(0, 5, (h, w)).astype(np.uint8)
    west = rng.integers(0, 5, (h, w)).astype(np.uint8)
    t_east = Affine(PX * 4, 0, 180.0 - w * PX * 4, 0, -PX * 4, 1.0)
    t_west = Affine(PX * 4, 0, -180.0, 0, -PX * 4, 1.0)
    paths = [write_tile(tmp_path / "e.tif", east, t_east), write_tile(tmp_path / "w.tif", west, t_west)]
    ring = [(179.9, 0.95), (-179.85, 0.97), (-179.9, 0.85), (179.93, 0.88)]  # edges > 180° long cross ±180
    crossing = Polygon(ring)
    assert crossing.bounds[2] - crossing.bounds[0] > 180
    got = as_dict(Z.class_histograms({"v": paths}, frame([crossing]), value, 5), 5)
    unwrapped = Polygon([(x + 360 if x < 0 else x, y) for x, y in ring])
    want_e = oracle_histograms([unwrapped], ["f000"], east, t_east, 5)["f000"]
    want_w = oracle_histograms([unwrapped], ["f000"], west, t_west, 5)
    shifted = oracle_histograms([shapely.affinity.translate(unwrapped, -360)], ["f000"], west, t_west, 5)["f000"]
    assert want_w["f000"][0].sum() == 0  # the unshifted polygon misses the western tile: the shift matters
    want = {"f000": (want_e[0] + shifted[0], want_e[1] + shifted[1])}
    assert want_e[0].sum() > 0 and shifted[0].sum() > 0
    assert_same_histograms(got, want)


def test_errors_are_reported(two_tiles, tmp_path):
    paths, mosaic, t_mosaic = two_tiles
    feats = frame([box(10.01, 4.8, 10.1, 4.9)])
    with pytest.raises(ValueError, match="n_classes"):
        Z.class_histograms({"v": paths}, feats, value, 3)
    other = write_tile(tmp_path / "o.tif", mosaic[:10, :10].copy(), Affine(PX, 0, 20.0, 0, -PX, 5.0))
    with pytest.raises(ValueError, match="no tile aligned"):
        Z.class_histograms({"v": paths[:1], "w": [other]}, feats, value, N_CLASSES)
    with pytest.raises(ValueError, match="no CRS"):
        Z.class_histograms(
            {"v": paths}, gpd.GeoDataFrame({"geostore__id": ["x"]}, geometry=[box(0, 0, 1, 1)]), value, 7
        )
    shifted = write_tile(tmp_path / "s.tif", mosaic[:, :256].copy(), t_mosaic @ Affine.translation(128, 0))
    with pytest.raises(ValueError, match="overlap"):
        Z.class_histograms({"v": [paths[0], shifted]}, feats, value, N_CLASSES)
    same_cell = write_tile(tmp_path / "c.tif", mosaic[:, :256].copy(), t_mosaic)
    with pytest.raises(ValueError, match="same grid cell"):
        Z.class_histograms({"v": [paths[0], same_cell]}, feats, value, N_CLASSES)
    # The same file listed twice is one tile, not double counting.
    once = Z.class_histograms({"v": paths}, feats, value, N_CLASSES)
    pd.testing.assert_frame_equal(Z.class_histograms({"v": paths + paths[:1]}, feats, value, N_CLASSES), once)


# --------------------------------------------------------------------------------------------
# Ellipsoidal pixel area
# --------------------------------------------------------------------------------------------


def geodesic_band_area(west, east, south, north, n=10_001):
    """Area of a lon/lat band on WGS84 by geographiclib, parallels densified so geodesic edges follow them."""
    from pyproj import Geod

    lons = np.linspace(west, east, n)
    lon = np.concatenate([lons, lons[::-1]])
    lat = np.concatenate([np.full(n, south), np.full(n, north)])
    area, _ = Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)
    return abs(area)


@pytest.mark.parametrize("north", [10.0, 50.0, 80.0, -30.0])
def test_row_areas_sum_to_geodesic_band_area(north):
    # A full 10x10° Hansen tile: 40000 rows of 1 arc-second-ish (0.00025°) pixels.
    tr = (0.00025, 0.0, 20.0, 0.0, -0.00025, north)
    rows = E.row_areas_ha(tr, 0, 40000)
    band = rows.sum() * 40000 * 1e4
    assert band == pytest.approx(geodesic_band_area(20.0, 30.0, north - 10.0, north), rel=1e-9)
    # And single rows (a 10° x 0.00025° strip) at 0°, 45°, 70°.
    for lat in (0.0, 45.0, 70.0):
        strip = E.cell_area_m2(lat + 0.00025, lat, 10.0)
        assert strip == pytest.approx(geodesic_band_area(0.0, 10.0, lat, lat + 0.00025, n=4001), rel=1e-9)


def test_ellipsoid_numbers_in_the_docstring_and_sphere_differs():
    cell = 0.00025
    ell = [E.cell_area_m2(lat + cell, lat, cell) for lat in (0.0, 45.0, 70.0)]
    np.testing.assert_allclose(ell, [769.317, 547.648, 266.259], atol=5e-4)
    r = 6_371_008.8
    sphere = [
        np.radians(cell) * r * r * (np.sin(np.radians(lat + cell)) - np.sin(np.radians(lat))) for lat in (0, 45, 70)
    ]
    np.testing.assert_allclose(np.array(sphere) / ell - 1, [0.00449, -0.00222, -0.00735], atol=1e-5)
    assert E.cell_area_m2(90.0, -90.0, 360.0) == pytest.approx(510_065_621_724_088.5, rel=1e-14)


# --------------------------------------------------------------------------------------------
# exactextract agreement (area-weighted, exact partial coverage)
# --------------------------------------------------------------------------------------------


def smooth_loss_field(rng, n, cell):
    """Patchy 0/1..9 loss-year raster: bilinear upsampling of a coarse random grid, thresholded."""
    coarse = rng.standard_normal((n // cell + 2, n // cell + 2))
    y = np.arange(n) / cell
    i0 = y.astype(int)
    t = y - i0
    rows = coarse[i0] * (1 - t)[:, None] + coarse[i0 + 1] * t[:, None]
    field = rows[:, i0] * (1 - t) + rows[:, i0 + 1] * t
    years = rng.integers(1, 10, (n // 64 + 1, n // 64 + 1))[np.arange(n)[:, None] // 64, np.arange(n)[None, :] // 64]
    return np.where(field > 0.8, years, 0).astype(np.uint8)


def test_loss_area_agrees_with_exactextract(tmp_path):
    exactextract = pytest.importorskip("exactextract")
    rng = np.random.default_rng(12)
    n, px = 2000, 0.0005  # 1°x1° at ~55 m, south of the equator like the benchmark
    data = smooth_loss_field(rng, n, 40)
    tr = Affine(px, 0, -55.0, 0, -px, -3.0)
    path = write_tile(tmp_path / "loss.tif", data, tr)
    geoms = []
    for _ in range(16):
        r = rng.uniform(0.1, 0.22)  # ~150-1500 km²
        geoms.append(Polygon(star(-54.5 + rng.uniform(-0.25, 0.25), -3.5 + rng.uniform(-0.25, 0.25), r, 300, rng)))
    feats = frame(geoms)
    assert (feats.to_crs("ESRI:54034").area > 100e6).all()
    hist = Z.class_histograms({"v": [path]}, feats, value, 10)
    ours = hist[hist["class"] > 0].groupby("geostore__id")["area_ha"].sum()
    with rasterio.open(path) as src:
        ee = exactextract.exact_extract(
            src,
            feats,
            ["frac(coverage_weight=area_spherical_m2)", "unique", "count(coverage_weight=area_spherical_m2)"],
            include_cols=["geostore__id"],
            output="pandas",
        )
    theirs = {}
    for gid, frac, uniq, count, g in zip(ee["geostore__id"], ee["frac"], ee["unique"], ee["count"], geoms, strict=True):
        loss_m2 = float(np.sum(np.asarray(frac)[np.asarray(uniq) > 0])) * count
        # exactextract weighs cells on a sphere of R = 6,378,137 m: rescale to the ellipsoid at the feature's latitude.
        lat = g.centroid.y
        sphere = np.radians(px) * 6_378_137.0**2 * (np.sin(np.radians(lat + px / 2)) - np.sin(np.radians(lat - px / 2)))
        theirs[gid] = loss_m2 / 1e4 * E.cell_area_m2(lat + px / 2, lat - px / 2, px) / sphere
    dev = np.array([abs(ours[g] / theirs[g] - 1) for g in feats["geostore__id"]])
    assert np.quantile(dev, 0.95) <= 0.005, dev
    assert dev.max() > 0  # pixel centres are not exact coverage: the comparison is not trivially equal


# --------------------------------------------------------------------------------------------
# Tree cover loss table
# --------------------------------------------------------------------------------------------

TCD = np.array([[10, 11, 15, 16], [20, 21, 25, 26], [30, 31, 50, 51], [75, 76, 100, 255]], dtype=np.uint8)
LOSS = np.array([[0, 1, 2, 0], [3, 0, 0, 1], [24, 24, 0, 200], [0, 5, 5, 7]], dtype=np.uint8)


@pytest.fixture()
def tcl_tiles(tmp_path):
    tr = Affine(0.01, 0, 20.0, 0, -0.01, 10.0)
    loss = write_tile(tmp_path / "loss.tif", LOSS, tr, nodata=200)
    tcd = write_tile(tmp_path / "tcd.tif", TCD, tr, nodata=255)
    return loss, tcd, tr


def test_tcl_thresholds_follow_strictly_greater_than(tcl_tiles):
    loss, tcd, tr = tcl_tiles
    feats = frame(
        [box(20.0, 9.96, 20.04, 10.0), box(20.0, 9.98, 20.02, 10.0), box(30, 30, 31, 31)], ids=["all", "nw", "out"]
    )
    table = Z.tcl_stats([loss], [tcd], feats)
    assert list(table.columns) == Z.TCL_COLUMNS
    assert table.dtypes.tolist()[1:] == [np.int64, pd.Int64Dtype(), np.float64, np.float64, np.float64]
    assert "out" not in set(table["geostore__id"])  # outside the tiles: no rows, no error
    row_ha = E.row_areas_ha(tr, 0, 4)
    # Valid pixels: canopy nodata (255) at [3,3] and loss nodata (200) at [2,3] are excluded.
    valid = (TCD != 255) & (LOSS != 200)
    rr = np.nonzero(valid)[0]
    canopy, year = TCD[valid].astype(int), LOSS[valid].astype(int)
    pa = row_ha[rr]
    # Written out by hand from the documented rule: threshold T counts canopy > T.
    members = {
        10: {11, 15, 16, 20, 21, 25, 26, 30, 31, 50, 75, 76, 100},  # 51 sits on loss nodata
        30: {31, 50, 75, 76, 100},
        75: {76, 100},
    }
    for t, expected in members.items():
        assert {int(c) for c in canopy if c > t} == expected
    sub = table[table["geostore__id"] == "all"]
    assert sub["umd_tree_cover_density_2000__threshold"].unique().tolist() == list(Z.TCD_THRESHOLDS)
    for t in Z.TCD_THRESHOLDS:
        rows = sub[sub["umd_tree_cover_density_2000__threshold"] == t]
        above = canopy > t
        assert rows["umd_tree_cover_extent_2000__ha"].iloc[0] == pytest.approx(pa[above].sum(), rel=1e-12)
        np.testing.assert_allclose(rows["area__ha"], pa.sum(), rtol=1e-12)
        want = {2000 + y: pa[above & (year == y)].sum() for y in sorted(set(year[above & (year > 0)].tolist()))}
        if want:
            got = dict(zip(rows["umd_tree_cover_loss__year"].astype(int), rows["umd_tree_cover_loss__ha"], strict=True))
            assert got.keys() == want.keys()
            for y in want:
                assert got[y] == pytest.approx(want[y], rel=1e-12)
        else:
            assert len(rows) == 1 and pd.isna(rows["umd_tree_cover_loss__year"].iloc[0])
            assert rows["umd_tree_cover_loss__ha"].iloc[0] == 0
    # T=75: only canopy 76 (loss 2005) and 100 (loss 2005) -> one loss year.
    t75 = sub[sub["umd_tree_cover_density_2000__threshold"] == 75]
    assert t75["umd_tree_cover_loss__year"].tolist() == [2005]
    assert t75["umd_tree_cover_loss__ha"].iloc[0] == pytest.approx(row_ha[3] * 2, rel=1e-12)
    # "nw" = canopy 10, 11, 20, 21 with loss 0, 2001 (canopy 11), 2003 (canopy 20), 0.
    nw = table[table["geostore__id"] == "nw"].set_index("umd_tree_cover_density_2000__threshold")
    assert nw.loc[10, "umd_tree_cover_loss__year"].tolist() == [2001, 2003]
    assert pd.isna(nw.loc[25, "umd_tree_cover_loss__year"]) and nw.loc[25, "umd_tree_cover_loss__ha"] == 0
    assert nw.loc[25, "area__ha"] == pytest.approx(2 * row_ha[0] + 2 * row_ha[1], rel=1e-12)


def test_tcl_no_valid_pixels_gives_no_rows(tcl_tiles):
    loss, tcd, tr = tcl_tiles
    only_nodata = box(20.03, 9.96, 20.04, 9.98)  # pixels [2,3] (loss nodata) and [3,3] (canopy nodata)
    table = Z.tcl_stats([loss], [tcd], frame([only_nodata]))
    assert table.empty and list(table.columns) == Z.TCL_COLUMNS


# --------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------


def date_conf(day: date, conf: int) -> int:
    return conf * 10000 + (day - date(2014, 12, 31)).days


def test_alert_daily_and_iso_weekly_tables(tmp_path, caplog):
    d = date_conf
    grid = np.array(
        [
            [0, d(date(2015, 1, 1), 2), d(date(2015, 1, 1), 2), d(date(2015, 2, 24), 3)],
            [d(date(2020, 12, 31), 4), d(date(2021, 1, 3), 4), d(date(2021, 1, 4), 4), 0],
            [d(date(2024, 12, 30), 2), d(date(2024, 12, 29), 3), 15000, d(date(2021, 1, 3), 2)],
        ],
        dtype=np.uint16,
    )
    assert grid[0, 1] == 20001 and grid[0, 3] == 30055  # the documented examples
    tr = Affine(0.01, 0, 100.0, 0, -0.01, 0.0)
    path = write_tile(tmp_path / "dc.tif", grid, tr, nodata=0)
    feats = frame([box(100.0, -0.03, 100.04, 0.0), box(100.0, -0.01, 100.01, 0.0)], ids=["A", "B"])
    with caplog.at_level("WARNING"):
        daily = Z.alert_stats([path], feats, prefix="gfw_integrated_alerts")
    assert "unknown confidence" in caplog.text  # 15000 (confidence digit 1) is dropped
    assert list(daily.columns) == Z.alert_daily_columns()
    a = E.row_areas_ha(tr, 0, 3)
    want = pd.DataFrame(
        [
            ("A", "2015-01-01", "nominal", 2, 2 * a[0]),
            ("A", "2015-02-24", "high", 1, a[0]),
            ("A", "2020-12-31", "highest", 1, a[1]),
            ("A", "2021-01-03", "nominal", 1, a[2]),
            ("A", "2021-01-03", "highest", 1, a[1]),
            ("A", "2021-01-04", "highest", 1, a[1]),
            ("A", "2024-12-29", "high", 1, a[2]),
            ("A", "2024-12-30", "nominal", 1, a[2]),
        ],
        columns=Z.alert_daily_columns(),
    )
    got_a = daily[daily["geostore__id"] == "A"].reset_index(drop=True)
    pd.testing.assert_frame_equal(got_a, want, check_dtype=False, rtol=1e-12)
    assert daily["alert__count"].dtype == np.int64 and daily["alert_area__ha"].dtype == np.float64
    assert (daily["geostore__id"] == "B").sum() == 0  # B covers only pixel [0,0] = no alert

    weekly = Z.alert_weekly(daily)
    assert list(weekly.columns) == Z.alert_weekly_columns()
    got = {
        (r.alert__year, r.alert__week, r.gfw_integrated_alerts__confidence): (r.alert__count, r.alert_area__ha)
        for r in weekly.itertuples()
    }
    assert got == {
        (2015, 1, "nominal"): (2, pytest.approx(2 * a[0])),
        (2015, 9, "high"): (1, pytest.approx(a[0])),
        (2020, 53, "highest"): (2, pytest.approx(2 * a[1])),  # 2020-12-31 and 2021-01-03 are 2020-W53
        (2020, 53, "nominal"): (1, pytest.approx(a[2])),
        (2021, 1, "highest"): (1, pytest.approx(a[1])),  # 2021-01-04 is the first Monday of 2021-W01
        (2024, 52, "high"): (1, pytest.approx(a[2])),  # 2024-12-29 is a Sunday
        (2025, 1, "nominal"): (1, pytest.approx(a[2])),  # 2024-12-30 belongs to 2025-W01
    }
    # 0 means "no alert" even when the file declares no nodata value.
    undeclared = write_tile(tmp_path / "dc_nonodata.tif", grid, tr, nodata=None)
    pd.testing.assert_frame_equal(Z.alert_stats([undeclared], feats), daily)
    window = Z.alert_stats([path], feats, start_date="2020-12-31", end_date=date(2021, 1, 3))
    assert window["gfw_integrated_alerts__date"].tolist() == ["2020-12-31", "2021-01-03", "2021-01-03"]
    assert date(2014, 12, 31) + timedelta(days=55) == date(2015, 2, 24)


# --------------------------------------------------------------------------------------------
# Parallel execution gives the sequential result, bit for bit
# --------------------------------------------------------------------------------------------


def test_dask_and_executor_equal_sequential(two_tiles, tmp_path):
    distributed = pytest.importorskip("distributed")
    paths, mosaic, t_mosaic = two_tiles
    rng = np.random.default_rng(21)
    tcd_paths = []
    for i, p in enumerate(paths):
        with rasterio.open(p) as src:
            tcd = rng.integers(0, 101, (src.height, src.width)).astype(np.uint8)
            tcd_paths.append(write_tile(tmp_path / f"tcd{i}.tif", tcd, src.transform))
    shapes = varied_shapes(rng) + [Polygon(star(10.25, 4.88, 0.1, 500, rng)) for _ in range(6)]
    # A GeometryCollection sends its task's geometries as WKB; the (Multi)Polygon-only tasks as ragged arrays.
    shapes.append(GeometryCollection([box(10.1, 4.6, 10.3, 4.8), LineString([(10.0, 4.5), (10.4, 4.9)])]))
    feats = frame(shapes)
    seq = Z.tcl_stats(paths, tcd_paths, feats, max_window_pixels=5000)
    seq_hist = Z.class_histograms({"v": paths}, feats, value, N_CLASSES, max_window_pixels=5000)
    with ThreadPoolExecutor(2) as pool:
        threaded = Z.class_histograms({"v": paths}, feats, value, N_CLASSES, max_window_pixels=5000, client=pool)
    pd.testing.assert_frame_equal(threaded, seq_hist, check_exact=True)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        par = Z.tcl_stats(paths, tcd_paths, feats, client=client, n_tasks=7, max_window_pixels=5000)
        par_hist = Z.class_histograms({"v": paths}, feats, value, N_CLASSES, client=client, max_window_pixels=5000)
        ran_on = client.run(lambda: __import__("os").getpid())
    assert len(set(ran_on.values())) == 2
    pd.testing.assert_frame_equal(par, seq, check_exact=True)
    pd.testing.assert_frame_equal(par_hist, seq_hist, check_exact=True)
    assert len(seq) > 100
    assert (seq_hist["geostore__id"] == feats["geostore__id"].iloc[-1]).any()  # the collection's polygon counted


def test_task_geometries_round_trip_as_ragged_arrays_or_wkb():
    rng = np.random.default_rng(5)
    polys = np.array(varied_shapes(rng), dtype=object)
    kind, _ = E._encode_geoms(polys)
    back = E._decode_geoms(E._encode_geoms(polys))
    assert kind == "ragged"
    # Polygons come back as MultiPolygons: same rings and coordinates, so the same pixels.
    assert np.array_equal(shapely.get_coordinates(back), shapely.get_coordinates(polys))
    assert np.array_equal(
        shapely.get_num_interior_rings(shapely.get_parts(back)),
        shapely.get_num_interior_rings(shapely.get_parts(polys)),
    )
    mixed = np.append(polys, GeometryCollection([box(0, 0, 1, 1), LineString([(0, 0), (2, 2)])]))
    kind, _ = E._encode_geoms(mixed)
    assert kind == "wkb"
    assert shapely.equals_exact(E._decode_geoms(E._encode_geoms(mixed)), mixed, tolerance=0).all()
