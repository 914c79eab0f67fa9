"""Tests for pipeline.assets.deforestation: tiles to COGs, releases, publishing, integrated alerts, sensors."""

import json
from datetime import date

import dagster as dg
import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from pipeline.assets.deforestation import (
    RELEASE_ASSETS,
    RELEASE_TAG,
    TILE_ASSETS,
    pointer_path,
    published,
    stored_tiles,
    tile_path,
)
from pipeline.lib import encodings as E
from pipeline.lib.storage import Storage
from pipeline.resources import StorageResource, TileSourcesResource
from pipeline.standins import tile_samples as S
from pipeline.standins.gcs import GcsStandin

TODAY = date(2026, 11, 20)
SIZE = 64


@pytest.fixture
def gcs():
    with GcsStandin() as srv:
        expected = srv.seed_sources(TODAY, size=SIZE)
        yield srv, expected


def resources(storage_url, gcs_url, n_tiles=4, keep=2):
    return {
        "storage": StorageResource(url=storage_url),
        "sources": TileSourcesResource(
            base_url=gcs_url,
            hansen_tiles=n_tiles,
            glad_l_tiles=n_tiles,
            glad_s2_tiles=n_tiles,
            radd_tiles=[n_tiles],
            keep_versions=keep,
            today=TODAY.isoformat(),
            backoff=0.01,
            max_retries=1,
        ),
    }


def build(product, tiles, res, instance, version=None):
    tags = {RELEASE_TAG: version} if version else None
    for tile in tiles:
        out = dg.materialize(
            [TILE_ASSETS[product]],
            partition_key=tile,
            resources=res,
            instance=instance,
            tags=tags,
            raise_on_error=False,
        )
        assert out.success, tile
    return dg.materialize([RELEASE_ASSETS[product]], resources=res, instance=instance, raise_on_error=False)


def build_all(expected, res, instance):
    """Publish every product (loss, density, the three alert systems) and the integrated alerts."""
    for product, src in (
        ("tree_cover_loss", "hansen"),
        ("tree_cover_density_2000", "hansen"),
        ("glad_landsat_alerts", "glad_l"),
        ("glad_s2_alerts", "glad_s2"),
        ("radd_alerts", "radd"),
    ):
        assert build(product, expected[src]["tiles"], res, instance).success
    assert build("integrated_alerts", expected["radd"]["tiles"], res, instance).success


def read_cog(st, rel):
    with rasterio.open(st.uri(rel)) as ds:
        return ds.read(1), ds.nodata, ds.dtypes[0]


def test_glad_l_release_to_published_cogs_equal_the_encoding_oracle(local_storage_url, gcs):
    srv, expected = gcs
    st = Storage(local_storage_url)
    res = resources(local_storage_url, srv.url)
    version, tiles = expected["glad_l"]["version"], expected["glad_l"]["tiles"]
    with dg.instance_for_test() as instance:
        rel = build("glad_landsat_alerts", tiles, res, instance)
        assert rel.success
        checks = rel.get_asset_check_evaluations()
        assert [c.passed for c in checks] == [True]
    assert published(st, "glad_landsat_alerts") == {"version": version, "tiles": tiles}
    tile = tiles[0]
    path = st.uri(tile_path("glad_landsat_alerts", version, tile))
    assert cog_validate(path)[0]
    got, nodata, dtype = read_cog(st, tile_path("glad_landsat_alerts", version, tile))
    assert (nodata, dtype) == (0, "uint16")
    # Oracle: the source pixels of every data year, combined the documented way, earlier years first.
    layers = {}
    for year in range(2021, TODAY.year + 1):
        a = S.read_array(S.glad_l_alert(tile, year, SIZE, as_of=TODAY))
        d = S.read_array(S.glad_l_alert_date(tile, year, SIZE, as_of=TODAY))
        layers[year] = (a, d)
    expect = np.zeros((SIZE, SIZE), dtype="int64")
    for year in sorted(layers, reverse=True):  # later years first, earlier years overwrite
        a, d = layers[year]
        days = (date(year, 1, 1) - date(2014, 12, 31)).days - 1 + d.astype("int64")
        val = np.where(a > 0, 20000 + 10000 * (a > 2) + days, 0)
        expect = np.where(a > 0, val, expect)
    np.testing.assert_array_equal(got, expect)
    assert (got > 0).any()


def test_incomplete_release_is_never_published(local_storage_url, gcs):
    srv, expected = gcs
    st = Storage(local_storage_url)
    res = resources(local_storage_url, srv.url)
    tiles = expected["radd"]["tiles"]
    with dg.instance_for_test() as instance:
        out = build("radd_alerts", tiles[:2], res, instance)  # two of four tiles stored
    [check] = out.get_asset_check_evaluations()
    assert not check.passed and check.metadata["stored"].value == 2
    assert not st.exists(pointer_path("radd_alerts"))


def test_corrupt_download_fails_naming_the_tile_and_keeps_the_old_version(local_storage_url, gcs):
    srv, expected = gcs
    st = Storage(local_storage_url)
    res = resources(local_storage_url, srv.url)
    hansen = expected["hansen"]
    tile = hansen["tiles"][0]
    with dg.instance_for_test() as instance:
        ok = dg.materialize([TILE_ASSETS["tree_cover_loss"]], partition_key=tile, resources=res, instance=instance)
        assert ok.success
        before = st.read_bytes(tile_path("tree_cover_loss", hansen["version"], tile))
        name = f"{hansen['version']}/Hansen_{hansen['version']}_lossyear_{tile}.tif"
        srv.corrupt_next("earthenginepartners-hansen", name, times=10)
        bad = dg.materialize(
            [TILE_ASSETS["tree_cover_loss"]], partition_key=tile, resources=res, instance=instance, raise_on_error=False
        )
    assert not bad.success
    errors = []
    for e in bad.all_events:
        if e.event_type_value == "STEP_FAILURE":
            err = e.event_specific_data.error
            while err is not None:
                errors.append(err.message)
                err = err.cause
    assert tile in "\n".join(errors) or name in "\n".join(errors)
    assert st.read_bytes(tile_path("tree_cover_loss", hansen["version"], tile)) == before


def test_integrated_alerts_combine_the_published_products(local_storage_url, gcs):
    srv, expected = gcs
    st = Storage(local_storage_url)
    res = resources(local_storage_url, srv.url)
    with dg.instance_for_test() as instance:
        for product, src in (("glad_landsat_alerts", "glad_l"), ("glad_s2_alerts", "glad_s2"), ("radd_alerts", "radd")):
            assert build(product, expected[src]["tiles"], res, instance).success
        out = build("integrated_alerts", expected["radd"]["tiles"], res, instance)
        assert out.success
    pub = published(st, "integrated_alerts")
    tile = pub["tiles"][0]
    got, _, _ = read_cog(st, tile_path("integrated_alerts", pub["version"], tile))
    inputs = [
        read_cog(st, tile_path(p, published(st, p)["version"], tile))[0]
        for p in ("glad_landsat_alerts", "glad_s2_alerts", "radd_alerts")
    ]
    # Slow oracle, pixel by pixel: earliest date; 2/3 for one system by its confidence, 4 for two or more.
    flat = [a.ravel() for a in inputs]
    expect = np.zeros(got.size, dtype="int64")
    for i in range(got.size):
        vals = [int(f[i]) for f in flat if f[i] > 0]
        if not vals:
            continue
        day = min(v % 10000 for v in vals)
        conf = 4 if len(vals) > 1 else vals[0] // 10000
        expect[i] = conf * 10000 + day
    np.testing.assert_array_equal(got.ravel(), expect)
    assert (got >= 40000).any() and ((got > 0) & (got < 40000)).any()
    days, conf = E.decode_date_conf(got)
    assert set(np.unique(conf)) <= {0, 2, 3, 4}


def test_old_versions_are_pruned(local_storage_url, gcs):
    srv, expected = gcs
    st = Storage(local_storage_url)
    res = resources(local_storage_url, srv.url, keep=1)
    tiles = expected["hansen"]["tiles"]
    with dg.instance_for_test() as instance:
        assert build("tree_cover_loss", tiles, res, instance).success
        first = published(st, "tree_cover_loss")["version"]
        srv.publish_hansen("GFC-2099-v9.99", tiles, SIZE)
        assert build("tree_cover_loss", tiles, res, instance).success
    assert published(st, "tree_cover_loss")["version"] == "GFC-2099-v9.99"
    assert stored_tiles(st, "tree_cover_loss", first) == []  # pruned beyond keep_versions=1
    assert stored_tiles(st, "tree_cover_loss", "GFC-2099-v9.99") == tiles


def test_release_sensor_requests_tiles_then_publish(local_storage_url, gcs):
    from pipeline.definitions import build_defs, resources_from_env
    from pipeline.sensors import _release_sensors

    srv, expected = gcs
    res = resources(local_storage_url, srv.url)
    sensor = {s.name: s for s in _release_sensors()}["radd_alerts_release_sensor"]
    version, tiles = expected["radd"]["version"], expected["radd"]["tiles"]
    defs = build_defs({**resources_from_env(), **res})
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, cursor=None, resources=res, definitions=defs)
        first = sensor(ctx)
        assert sorted(r.partition_key for r in first.run_requests) == tiles
        assert {r.tags[RELEASE_TAG] for r in first.run_requests} == {version}
        # Nothing ran yet: the sensor waits.
        ctx = dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=res, definitions=defs)
        waiting = sensor(ctx)
        assert not waiting.run_requests and "not done yet" in waiting.skip_reason.skip_message
        # Run every tile the way the daemon would (job + tags), then the sensor asks for the publish run.
        job = defs.resolve_job_def("radd_alerts_tiles_job")
        for r in first.run_requests:
            assert job.execute_in_process(partition_key=r.partition_key, tags=r.tags, instance=instance).success
        ctx = dg.build_sensor_context(instance=instance, cursor=waiting.cursor, resources=res, definitions=defs)
        publish = sensor(ctx)
        assert [r.job_name for r in publish.run_requests] == ["radd_alerts_release_job"]
        assert json.loads(publish.cursor) == {"version": version, "published": True}
        # Corrupt cursor: start over (request the tiles again with the same idempotent run keys).
        ctx = dg.build_sensor_context(instance=instance, cursor="{oops", resources=res, definitions=defs)
        again = sensor(ctx)
        assert {r.run_key for r in again.run_requests} == {r.run_key for r in first.run_requests}


def test_zonal_statistics_for_user_areas(local_storage_url, gcs):
    import geopandas as gpd
    import rasterio.features
    from shapely.geometry import box

    from pipeline import constants as C
    from pipeline.assets.zonal_stats import (
        ALERT_PREFIX,
        alerts_path,
        tcl_path,
        user_area_integrated_alerts,
        user_area_tree_cover_loss,
    )
    from pipeline.resources import DaskResource

    srv, expected = gcs
    st = Storage(local_storage_url)
    res = {**resources(local_storage_url, srv.url), "dask": DaskResource(processes=False, n_workers=1)}
    sync = "2026-11-19"
    # Two areas inside the first seeded tile and one crossing into its eastern neighbour's column.
    tile = expected["radd"]["tiles"][0]
    from pipeline.lib.tiles import tile_bounds

    w, s, e, n = tile_bounds(tile)
    geoms = [box(w + 1, s + 1, w + 4, s + 4), box(w + 5, s + 5, w + 9.5, s + 9), box(w + 2, s + 2, w + 3, s + 3)]
    ids = [f"{i:032x}" for i in range(3)]
    areas = gpd.GeoDataFrame({"area_id": ids, "geostore__id": ids, "status": "accepted"}, geometry=geoms, crs=4326)
    st.write_parquet(C.user_areas_path(sync), areas)
    with dg.instance_for_test() as instance:
        # Nothing published yet: both assets record why and write nothing.
        early = dg.materialize([user_area_integrated_alerts], partition_key=sync, resources=res, instance=instance)
        assert early.success and not st.list("zonal")
        build_all(expected, res, instance)
        out = dg.materialize(
            [user_area_tree_cover_loss, user_area_integrated_alerts],
            partition_key=sync,
            resources=res,
            instance=instance,
        )
        assert out.success
    alerts_v = published(st, "integrated_alerts")["version"]
    daily = st.read_parquet(alerts_path(alerts_v, "daily_alerts", sync))
    weekly = st.read_parquet(alerts_path(alerts_v, "weekly_alerts", sync))
    tcl = st.read_parquet(tcl_path(published(st, "tree_cover_loss")["version"], sync))
    assert daily.alert__count.sum() == weekly.alert__count.sum() > 0
    assert set(tcl.umd_tree_cover_density_2000__threshold) == {10, 15, 20, 25, 30, 50, 75}
    # Oracle: per area, alert pixels whose centre is inside (rasterize), straight from the published COG.
    with rasterio.open(st.uri(tile_path("integrated_alerts", alerts_v, tile))) as ds:
        data = ds.read(1)
        for gid, geom in zip(ids, geoms, strict=True):
            mask = rasterio.features.rasterize([(geom, 1)], out_shape=data.shape, transform=ds.transform) == 1
            got = int(daily.loc[daily.geostore__id == gid, "alert__count"].sum())
            assert got == int(((data > 0) & mask).sum()), gid
    assert f"{ALERT_PREFIX}__confidence" in daily.columns


def test_zonal_statistics_for_a_sync_without_areas(local_storage_url, gcs):
    import geopandas as gpd

    from pipeline import constants as C
    from pipeline.assets.zonal_stats import alerts_path, user_area_integrated_alerts, user_area_tree_cover_loss
    from pipeline.resources import DaskResource

    srv, expected = gcs
    st = Storage(local_storage_url)
    res = {**resources(local_storage_url, srv.url), "dask": DaskResource(processes=False, n_workers=1)}
    sync = "2026-11-19"
    empty = gpd.GeoDataFrame({"area_id": [], "geostore__id": [], "status": []}, geometry=[], crs=4326)
    st.write_parquet(C.user_areas_path(sync), empty)
    with dg.instance_for_test() as instance:
        build_all(expected, res, instance)
        out = dg.materialize(
            [user_area_tree_cover_loss, user_area_integrated_alerts],
            partition_key=sync,
            resources=res,
            instance=instance,
        )
    assert out.success
    daily = st.read_parquet(alerts_path(published(st, "integrated_alerts")["version"], "daily_alerts", sync))
    assert daily.empty and "alert__count" in daily.columns
