"""Tests for pipeline.assets: the nightly sync materialised through Dagster against the stand-ins."""

from datetime import date, timedelta

import dagster as dg
import geopandas as gpd
import pandas as pd
import pytest
import shapely
import shapely.geometry

from pipeline import constants as C
from pipeline.assets.fire_stats import read_table
from pipeline.definitions import build_defs
from pipeline.lib.areas import geostore_ids_to_fetch
from pipeline.lib.storage import Storage
from pipeline.resources import (
    AreasResource,
    DaskResource,
    DataApiResource,
    FirmsResource,
    SlackResource,
    StorageResource,
    TileSourcesResource,
)
from pipeline.standins.area_samples import approx_area_ha, generate_areas, geostore_hash
from pipeline.standins.areas import AreasStandin
from pipeline.standins.data_api import DataApiStandin
from pipeline.standins.fire_samples import SAMPLE_HOTSPOTS
from pipeline.standins.firms import FirmsStandin
from pipeline_tests.conftest import read_s3_uri

TODAY = date(2026, 11, 20)
HOTSPOTS = [(h.lon, h.lat) for h in SAMPLE_HOTSPOTS]


@pytest.fixture
def services():
    areas, geostores = generate_areas(40, seed=3, hotspots=HOTSPOTS)
    with (
        FirmsStandin(today=TODAY, seed=3, days_back=30) as firms,
        AreasStandin(areas=areas, geostores=geostores) as gfw,
        DataApiStandin(source_reader=read_s3_uri) as dapi,
    ):
        yield firms, gfw, dapi


def make_resources(storage_url, firms, gfw, dapi, data_api=True):
    return {
        "storage": StorageResource(url=storage_url),
        "firms": FirmsResource(
            base_url=firms.url, map_key=firms.map_key, today=TODAY.isoformat(), backoff=0.01, max_retries=1
        ),
        "areas": AreasResource(base_url=gfw.url, token=gfw.token, api_key=gfw.api_key, backoff=0.01, max_retries=1),
        "data_api": DataApiResource(
            base_url=dapi.url if data_api else None, token=dapi.token, backoff=0.01, poll_interval=0.01, poll_timeout=10
        ),
        "dask": DaskResource(n_workers=1, processes=False),
        "slack": SlackResource(),
        "sources": TileSourcesResource(),
    }


def run(defs, job, instance, day=None, start=None, end=None):
    jd = defs.resolve_job_def(job)
    if day:
        return jd.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
    return jd.execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
    )


def step_errors(res) -> str:
    """Every step failure's message, with the whole cause chain (Dagster wraps the asset's error)."""
    out = []
    for e in res.all_events:
        if e.event_type_value == "STEP_FAILURE":
            err = e.event_specific_data.error
            while err is not None:
                out.append(err.message)
                err = err.cause
    return "\n".join(out)


def oracle_counts(st: Storage, product: str, days: list[str]) -> pd.DataFrame:
    """Independent count: geopandas.sjoin of the stored alerts with every accepted area."""
    areas = pd.concat([st.read_parquet(f) for f in st.list("areas/user_areas")], ignore_index=True)
    areas = gpd.GeoDataFrame(areas[areas.status == "accepted"].drop_duplicates("geostore__id"), crs="EPSG:4326")
    frames = []
    for d in days:
        pts = st.read_parquet(C.alerts_path(product, d))
        j = gpd.sjoin(pts, areas[["geostore__id", "geometry"]], predicate="intersects")
        frames.append(
            j.groupby(["geostore__id", "acq_date", "confidence__cat"]).size().rename("alert__count").reset_index()
        )
    out = pd.concat(frames, ignore_index=True).rename(columns={"acq_date": "alert__date"})
    return out.sort_values(["geostore__id", "alert__date", "confidence__cat"]).reset_index(drop=True)


def table(st, product, agg="daily_alerts"):
    t = read_table(st, product, agg)
    keys = [c for c in t.columns if c != "alert__count"]
    return t.sort_values(keys).reset_index(drop=True)


def test_nightly_sync_end_to_end(storage_url, services):
    firms, gfw, dapi = services
    st = Storage(storage_url)
    defs = build_defs(make_resources(storage_url, firms, gfw, dapi))
    d1, d2 = (TODAY - timedelta(days=2)).isoformat(), (TODAY - timedelta(days=1)).isoformat()
    with dg.instance_for_test() as instance:
        r1 = run(defs, "nightly_sync", instance, day=d1)
        assert r1.success
        # Fire alerts: exactly the stand-in's valid rows (malformed lines dropped), de-duplicated.
        for product, inst in (("viirs", "VIIRS"), ("modis", "MODIS")):
            stored = st.read_parquet(C.alerts_path(product, d1))
            truth = firms.rows_for(inst, date.fromisoformat(d1))
            assert len(stored) == len(
                truth.drop_duplicates(["latitude", "longitude", "acq_date", "acq_time", "satellite"])
            )
            assert set(stored.confidence__cat) <= {"l", "n", "h"} and stored.crs.to_epsg() == 4326
        mats = {m.asset_key.to_user_string(): m for m in r1.asset_materializations_for_node("fires__viirs_alerts")}
        meta = mats["fires/viirs_alerts"].metadata
        assert meta["dagster/row_count"].value == len(st.read_parquet(C.alerts_path("viirs", d1)))
        assert {"dagster/uri", "dagster/column_schema"} <= set(meta)
        assert meta["rows_dropped"].value > 0  # the stand-in serves malformed lines
        checks = {e.check_name: e.passed for e in r1.get_asset_check_evaluations()}
        assert checks["schema_matches"] and checks["coordinates_in_range"] and checks["no_duplicate_detections"]

        # Areas: every pending area recorded; rejected ones set to error, accepted ones saved.
        ua = st.read_parquet(C.user_areas_path(d1))
        assert len(ua) == 40 and (ua.status == "rejected").sum() >= 1
        assert all(r for r in ua.loc[ua.status == "rejected", "reason"])
        statuses = gfw.statuses()
        for row in ua.itertuples():
            expected = "saved" if row.status == "accepted" else "error"
            if row.status == "rejected" and not row.geostore__id:
                continue  # no valid geostore id: nothing to update by geostore
            assert statuses[row.area_id] == expected, (row.area_id, row.reason)

        # Counts equal an independent sjoin oracle, over days d1 (nightly) only so far.
        daily = table(st, "viirs")
        assert len(daily) > 0
        pd.testing.assert_frame_equal(daily, oracle_counts(st, "viirs", [d1]), check_dtype=False)

        # Published rows sum to the table.
        ds = C.dataset_name("viirs", "daily_alerts")
        pub = pd.DataFrame([r for v in dapi.datasets[ds]["versions"] for r in dapi.rows(ds, v)])
        assert int(pub["alert__count"].astype(int).sum()) == int(daily.alert__count.sum())

        # Every materialisation says where its output lives, how many rows and which columns;
        # no secret appears in any event (metadata or log).
        for mat in r1.get_asset_materialization_events():
            meta = mat.event_specific_data.materialization.metadata
            assert {"dagster/uri", "dagster/row_count", "dagster/column_schema"} <= set(meta), mat.asset_key
        everything = "\n".join(str(e) for e in instance.all_logs(r1.run_id))
        for secret in (firms.map_key, gfw.token, gfw.api_key, dapi.token):
            assert secret not in everything

        # Re-running the same partition changes nothing and appends nothing.
        n_appends = sum(len(dapi.appended(ds, v)) for v in dapi.datasets[ds]["versions"])
        r1b = run(defs, "nightly_sync", instance, day=d1)
        assert r1b.success
        pd.testing.assert_frame_equal(table(st, "viirs"), daily)
        assert sum(len(dapi.appended(ds, v)) for v in dapi.datasets[ds]["versions"]) == n_appends

        # Next night: new areas arrive; they get the full history (d1 too), nothing is double counted.
        # New areas are boxes around some of day 1's detections, so they must get day-1 counts.
        pts = st.read_parquet(C.alerts_path("viirs", d1)).iloc[::97].head(4)
        new_ids = set()
        for i, p in enumerate(pts.itertuples()):
            box = shapely.geometry.box(p.longitude - 0.05, p.latitude - 0.05, p.longitude + 0.05, p.latitude + 0.05)
            geometry = shapely.geometry.mapping(box)
            gid = geostore_hash(geometry)
            gfw.add_geostore(
                gid,
                {
                    "geojson": {
                        "type": "FeatureCollection",
                        "features": [{"type": "Feature", "properties": None, "geometry": geometry}],
                    },
                    "hash": gid,
                    "areaHa": approx_area_ha(box),
                    "bbox": list(box.bounds),
                    "lock": False,
                    "info": {"use": {}},
                },
            )
            gfw.add_area(gid, name=f"new area {i}")
            new_ids.add(gid)
        r2 = run(defs, "nightly_sync", instance, day=d2)
        assert r2.success
        daily = table(st, "viirs")
        assert not daily.duplicated(["geostore__id", "alert__date", "confidence__cat"]).any()
        pd.testing.assert_frame_equal(daily, oracle_counts(st, "viirs", [d1, d2]), check_dtype=False)
        assert new_ids <= set(daily[daily.alert__date == d1].geostore__id), "new areas lack history for day 1"
        # Weekly table equals the daily table summed by ISO week.
        weekly = table(st, "viirs", "weekly_alerts")
        iso = pd.to_datetime(daily.alert__date).dt.isocalendar()
        expect = (
            daily.assign(alert__year=iso.year.astype(int), alert__week=iso.week.astype(int))
            .groupby(["geostore__id", "alert__year", "alert__week", "confidence__cat"], as_index=False)["alert__count"]
            .sum()
        )
        assert weekly.alert__count.sum() == expect.alert__count.sum()
        pub = pd.DataFrame([r for v in dapi.datasets[ds]["versions"] for r in dapi.rows(ds, v)])
        assert int(pub["alert__count"].astype(int).sum()) == int(daily.alert__count.sum())


def test_backfill_range_fetches_each_day_once(local_storage_url, services):
    firms, gfw, dapi = services
    defs = build_defs(make_resources(local_storage_url, firms, gfw, dapi))
    start, end = (TODAY - timedelta(days=20)).isoformat(), (TODAY - timedelta(days=16)).isoformat()
    with dg.instance_for_test() as instance:
        res = run(defs, "viirs_fires_job", instance, start=start, end=end)
        assert res.success
        assert instance.get_materialized_partitions(dg.AssetKey(["fires", "viirs_alerts"])) == {
            (TODAY - timedelta(days=i)).isoformat() for i in range(16, 21)
        }
    area_calls = firms.calls_to(r"^/api/area/csv/")
    # Five consecutive past days, one call per VIIRS NRT source: S-NPP, NOAA-20, NOAA-21.
    assert len(area_calls) == 3, [c.path for c in area_calls]
    assert all(c.path.split("/")[-2] == "5" for c in area_calls)
    assert not firms.calls_to(r"^/data/active_fire/")


def test_failed_fetch_keeps_previous_output(local_storage_url, services):
    firms, gfw, dapi = services
    st = Storage(local_storage_url)
    defs = build_defs(make_resources(local_storage_url, firms, gfw, dapi, data_api=False))
    day = (TODAY - timedelta(days=1)).isoformat()
    with dg.instance_for_test() as instance:
        assert run(defs, "modis_fires_job", instance, day=day).success
        before = st.read_bytes(C.alerts_path("modis", day))
        firms.fail_next(r"MODIS_C6_1_Global_7d\.csv", 503, "Service Unavailable", times=10)
        res = run(defs, "modis_fires_job", instance, day=day)
        assert not res.success
        message = step_errors(res)
        assert "FIRMS" in message and "503" in message
        assert st.read_bytes(C.alerts_path("modis", day)) == before


def test_error_body_instead_of_csv_fails_without_leaking_the_key(local_storage_url, services):
    firms, gfw, dapi = services
    defs = build_defs(make_resources(local_storage_url, firms, gfw, dapi, data_api=False))
    res_defs = make_resources(local_storage_url, firms, gfw, dapi, data_api=False)
    res_defs["firms"] = FirmsResource(
        base_url=firms.url, map_key="wrong-secret-key", today=TODAY.isoformat(), backoff=0.01
    )
    defs = build_defs(res_defs)
    day = (TODAY - timedelta(days=12)).isoformat()
    with dg.instance_for_test() as instance:
        res = run(defs, "viirs_fires_job", instance, day=day)
        assert not res.success
        text = step_errors(res)
        assert "Invalid MAP_KEY" in text and "wrong-secret-key" not in text
        all_logs = "\n".join(str(e.message) for e in res.all_events)
        assert "wrong-secret-key" not in all_logs


@pytest.mark.slow
def test_user_areas_holds_10000_pending_areas_in_one_sync(local_storage_url):
    from pipeline.assets.areas import user_areas

    areas, geostores = generate_areas(10_000, seed=21, hotspots=HOTSPOTS)
    with AreasStandin(areas=areas, geostores=geostores) as gfw, dg.instance_for_test() as instance:
        res = dg.materialize(
            [user_areas],
            partition_key="2026-11-19",
            instance=instance,
            resources={
                "storage": StorageResource(url=local_storage_url),
                "areas": AreasResource(base_url=gfw.url, token=gfw.token, api_key=gfw.api_key, backoff=0.01),
            },
        )
        assert res.success
        table = Storage(local_storage_url).read_parquet(C.user_areas_path("2026-11-19"))
        assert len(table) == 10_000 and table.area_id.is_unique
        distinct_ids = geostore_ids_to_fetch([a["attributes"] for a in areas])
        # Paged listing (25 per page) and geostores in blocks of 25, as the contract says.
        assert len(gfw.calls_to(r"^/v2/area$", method="GET")) == 400
        blocks = gfw.calls_to(r"^/v2/geostore/find-by-ids$", method="POST")
        assert all(len(c.json()["geostores"]) <= 25 for c in blocks)
        assert sum(len(c.json()["geostores"]) for c in blocks) == len(distinct_ids)
        assert len(blocks) == -(-len(distinct_ids) // 25)
        meta = res.asset_materializations_for_node("areas__user_areas")[0].metadata
        assert meta["dagster/row_count"].value == 10_000
        assert meta["rejected_areas"].value == int((table.status == "rejected").sum()) > 0


def test_without_data_api_tables_stay_in_storage(local_storage_url, services):
    firms, gfw, dapi = services
    st = Storage(local_storage_url)
    defs = build_defs(make_resources(local_storage_url, firms, gfw, dapi, data_api=False))
    with dg.instance_for_test() as instance:
        assert run(defs, "nightly_sync", instance, day=(TODAY - timedelta(days=1)).isoformat()).success
    assert dapi.calls == []  # never contacted
    assert st.list("fire_stats/viirs/daily_alerts") and st.list("fire_stats/modis/weekly_alerts")
    assert "saved" in set(gfw.statuses().values())  # statistics are ready in storage


def test_dead_source_fails_the_step_naming_it(local_storage_url, services):
    from pipeline_tests.conftest import free_port

    firms, gfw, dapi = services
    resources = make_resources(local_storage_url, firms, gfw, dapi, data_api=False)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    resources["firms"] = FirmsResource(base_url=dead, today=TODAY.isoformat(), backoff=0.01, max_retries=2, timeout=2)
    with dg.instance_for_test() as instance:
        res = run(build_defs(resources), "viirs_fires_job", instance, day=(TODAY - timedelta(days=1)).isoformat())
    assert not res.success
    text = step_errors(res)
    assert "FIRMS" in text and "after 3 attempts" in text and "ConnectionError" in text
