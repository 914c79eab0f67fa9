"""Tests for pipeline.assets.zonal_stats: zonal statistics for any feature set, their publication and sensor."""

import json

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
from shapely.geometry import MultiPolygon, box

from pipeline import constants as C
from pipeline.assets.areas import USER_AREAS
from pipeline.assets.boundaries import admin_boundaries
from pipeline.assets.deforestation import published, tile_path
from pipeline.assets.publish import ZONAL_PUBLISHED, data_api_version, gfw_zonal_tables
from pipeline.assets.zonal_stats import (
    ADMIN_SET,
    ALERT_PREFIX,
    USER_AREAS_SET,
    admin_boundary_integrated_alerts,
    admin_boundary_tree_cover_loss,
    user_area_integrated_alerts,
    user_area_tree_cover_loss,
)
from pipeline.lib import zonal as Z
from pipeline.lib.storage import Storage
from pipeline.lib.tiles import tile_bounds
from pipeline.resources import BoundariesResource, DaskResource, DataApiResource
from pipeline.sensors import zonal_on_new_release
from pipeline.standins.data_api import DataApiStandin
from pipeline.standins.gcs import GcsStandin
from pipeline_tests.test_deforestation import TODAY, build_all, resources

SYNC = "2026-11-19"


def boundary_frame():
    """Four admin boundaries: two in one tile, one multipolygon across a tile corner, one outside all tiles."""
    w, s, _, _ = tile_bounds("00N_020E")
    cw, _, _, cn = tile_bounds("10S_060W")  # its top-left corner touches 00N_070W's bottom-right corner
    return gpd.GeoDataFrame(
        {
            "iso": ["COD", "COD", "BRA", "ISL"],
            "adm1": [1, 1, 4, 1],
            "adm2": [1, 2, 9, 1],
        },
        geometry=[
            box(w + 1, s + 1, w + 4, s + 4),
            box(w + 5, s + 5, w + 9.5, s + 9),
            MultiPolygon([box(cw - 3, cn - 1, cw + 2, cn + 3), box(cw + 4, cn - 6, cw + 6, cn - 4)]),
            box(-20, 63, -15, 66),  # Iceland: no tile there
        ],
        crs="EPSG:4326",
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Published releases of every product, one user-area sync and an admin-boundary file, computed once."""
    root = tmp_path_factory.mktemp("zonal")
    url = str(root / "storage")
    st = Storage(url)
    boundary_file = root / "gadm.gpkg"
    boundary_frame().to_file(boundary_file, layer="adm2", driver="GPKG")
    with GcsStandin() as srv, DataApiStandin() as dapi, dg.instance_for_test() as instance:
        expected = srv.seed_sources(TODAY, size=64)
        res = {
            **resources(url, srv.url),
            "dask": DaskResource(processes=False, n_workers=2),
            "boundaries": BoundariesResource(url=str(boundary_file), layer="adm2"),
            "data_api": DataApiResource(base_url=dapi.url, token=dapi.token, backoff=0.01, poll_interval=0.01),
        }
        build_all(expected, res, instance)
        w, s, _, _ = tile_bounds("00N_020E")
        ids = [f"{i:032x}" for i in range(2)]
        areas = gpd.GeoDataFrame(
            {"area_id": ids, "geostore__id": ids, "status": "accepted"},
            geometry=[box(w + 1, s + 1, w + 4, s + 4), box(w + 2, s + 2, w + 8, s + 3)],
            crs=4326,
        )
        st.write_parquet(C.user_areas_path(SYNC), areas)
        out = dg.materialize(
            [user_area_tree_cover_loss, user_area_integrated_alerts],
            partition_key=SYNC,
            resources=res,
            instance=instance,
        )
        assert out.success
        out = dg.materialize(
            [admin_boundaries, admin_boundary_tree_cover_loss, admin_boundary_integrated_alerts],
            resources=res,
            instance=instance,
        )
        assert out.success
        yield {"st": st, "res": res, "instance": instance, "dapi": dapi, "expected": expected, "out": out}


def test_admin_boundary_alerts_equal_a_rasterize_oracle_per_boundary(world):
    st = world["st"]
    version = published(st, "integrated_alerts")["version"]
    daily = st.read_parquet(ADMIN_SET.alerts_path(version, "daily_alerts", "all"))
    assert list(daily.columns[:3]) == ["iso", "adm1", "adm2"]
    got = daily.groupby(["iso", "adm1", "adm2"])["alert__count"].sum().to_dict()
    tiles = published(st, "integrated_alerts")["tiles"]
    expected = {}
    for row in boundary_frame().itertuples():
        count = 0
        for tile in tiles:
            with rasterio.open(st.uri(tile_path("integrated_alerts", version, tile))) as ds:
                data = ds.read(1)
                mask = rasterio.features.rasterize([(row.geometry, 1)], out_shape=data.shape, transform=ds.transform)
                count += int(((data > 0) & (mask == 1)).sum())
        if count:
            expected[(row.iso, row.adm1, row.adm2)] = count
    assert got == expected
    assert ("BRA", 4, 9) in got  # the multipolygon across a tile corner counts pixels of both tiles
    assert ("ISL", 1, 1) not in got  # outside all tiles: no rows, no error
    weekly = st.read_parquet(ADMIN_SET.alerts_path(version, "weekly_alerts", "all"))
    assert weekly.groupby(["iso", "adm1", "adm2"])["alert__count"].sum().to_dict() == got
    assert set(weekly[f"{ALERT_PREFIX}__confidence"]) <= {"nominal", "high", "highest"}


def test_admin_boundary_tree_cover_loss_equals_the_engine_per_boundary_id(world):
    st = world["st"]
    loss, tcd = published(st, "tree_cover_loss"), published(st, "tree_cover_density_2000")
    table = st.read_parquet(ADMIN_SET.tcl_path(loss["version"], "all"))
    # Independent id handling: run the engine sequentially with a plain string id per boundary.
    gdf = boundary_frame()
    gdf["key"] = gdf.iso + "|" + gdf.adm1.astype(str) + "|" + gdf.adm2.astype(str)
    tiles = sorted(set(loss["tiles"]) & set(tcd["tiles"]))
    ref = Z.tcl_stats(
        [st.uri(tile_path("tree_cover_loss", loss["version"], t)) for t in tiles],
        [st.uri(tile_path("tree_cover_density_2000", tcd["version"], t)) for t in tiles],
        gdf[["key", "geometry"]],
        id_column="key",
    )
    parts = ref.key.str.split("|", expand=True)
    ref = ref.assign(iso=parts[0], adm1=parts[1].astype("int64"), adm2=parts[2].astype("int64")).drop(columns="key")
    ref = ref[list(table.columns)].sort_values(list(table.columns[:5])).reset_index(drop=True)
    got = table.sort_values(list(table.columns[:5])).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    assert set(got.iso) == {"COD", "BRA"}
    meta = world["instance"].get_latest_materialization_event(ADMIN_SET.tcl_key).asset_materialization.metadata
    assert meta["dagster/row_count"].value == len(table)
    assert meta["dagster/uri"].value.endswith("all.parquet")


def test_rematerialising_a_static_feature_set_is_idempotent(world):
    st = world["st"]
    version = published(st, "integrated_alerts")["version"]
    rel = ADMIN_SET.alerts_path(version, "daily_alerts", "all")
    before = st.read_bytes(rel)
    out = dg.materialize([admin_boundary_integrated_alerts], resources=world["res"], instance=world["instance"])
    assert out.success and st.read_bytes(rel) == before


def test_zonal_tables_publish_once_per_analysis_version_with_gfw_names(world):
    st, dapi = world["st"], world["dapi"]
    res, instance = world["res"], world["instance"]
    out = dg.materialize([gfw_zonal_tables], resources=res, instance=instance)
    assert out.success
    tcl_v = data_api_version(published(st, "tree_cover_loss")["version"])
    alert_v = data_api_version(published(st, "integrated_alerts")["version"])
    assert {
        "geostore__tcl__change",
        "geostore__integrated_alerts__daily_alerts",
        "geostore__integrated_alerts__weekly_alerts",
        "gadm__tcl__adm2_change",
        "gadm__integrated_alerts__adm2_daily_alerts",
        "gadm__integrated_alerts__adm2_weekly_alerts",
    } <= set(dapi.datasets)
    assert dapi.version("gadm__tcl__adm2_change", tcl_v)["is_latest"]
    assert dapi.version("geostore__integrated_alerts__daily_alerts", alert_v)["is_latest"]
    # What the Data API holds sums to geopump's tables.
    rows = pd.DataFrame(dapi.rows("gadm__integrated_alerts__adm2_daily_alerts", alert_v))
    local = st.read_parquet(ADMIN_SET.alerts_path(published(st, "integrated_alerts")["version"], "daily_alerts", "all"))
    assert rows.alert__count.astype(int).sum() == local.alert__count.sum() > 0
    tcl_rows = pd.DataFrame(dapi.rows("geostore__tcl__change", tcl_v))
    tcl_local = st.read_parquet(USER_AREAS_SET.tcl_path(published(st, "tree_cover_loss")["version"], SYNC))
    assert np.isclose(tcl_rows.umd_tree_cover_loss__ha.astype(float).sum(), tcl_local.umd_tree_cover_loss__ha.sum())
    assert len(tcl_rows) == len(tcl_local)
    # Publishing again appends nothing.
    appends = len(dapi.calls_to(r"/append$"))
    again = dg.materialize([gfw_zonal_tables], resources=res, instance=instance)
    assert again.success
    meta = instance.get_latest_materialization_event(ZONAL_PUBLISHED).asset_materialization.metadata
    assert meta["dagster/row_count"].value == 0
    assert len(dapi.calls_to(r"/append$")) == appends


def _sensor(instance, st_url, cursor=None):
    from pipeline.resources import StorageResource

    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": StorageResource(url=st_url)})
    return zonal_on_new_release(ctx)


def test_zonal_sensor_first_tick_nothing_new_new_version_and_corrupt_cursor(tmp_path):
    url = str(tmp_path / "st")
    st = Storage(url)
    with dg.instance_for_test() as instance:
        first = _sensor(instance, url)
        assert not first.run_requests and json.loads(first.cursor) == {"alerts": None, "tcl": None}
        for day in ("2026-11-01", "2026-11-02", "2026-11-04"):
            instance.report_runless_asset_event(dg.AssetMaterialization(USER_AREAS, partition=day))
        st.write_json("forest/tree_cover_loss/LATEST.json", {"version": "GFC-2024-v1.12", "tiles": []})
        new = _sensor(instance, url, first.cursor)
        ranges = [
            (r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end"))
            for r in new.run_requests
            if r.job_name == "zonal_user_areas_job"
        ]
        assert ranges == [("2026-11-01", "2026-11-02"), ("2026-11-04", "2026-11-04")]
        static = [r for r in new.run_requests if r.job_name == "zonal_feature_sets_job"]
        assert [r.run_key for r in static] == ["zonal-static:GFC-2024-v1.12:None"]
        assert all("GFC-2024-v1.12" in r.run_key for r in new.run_requests)
        same = _sensor(instance, url, new.cursor)
        assert not same.run_requests
        corrupt = _sensor(instance, url, "{not json")
        assert len(corrupt.run_requests) == len(new.run_requests)  # treated as a first tick with data
        assert json.loads(corrupt.cursor) == json.loads(new.cursor)
