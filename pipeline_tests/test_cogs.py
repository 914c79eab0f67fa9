"""Tests for pipeline.assets.cogs / stac and the granule sensor: CMR granule -> COG -> STAC, against stand-ins."""

import json
from datetime import date

import dagster as dg
import numpy as np
import pystac
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from pipeline.assets.cogs import cog_asset, cog_key
from pipeline.assets.stac import stac_asset, stac_key
from pipeline.jobs import cog_job
from pipeline.lib.cogify import cog_relpath, sidecar_relpath
from pipeline.lib.collections import load_collections
from pipeline.lib.storage import Storage
from pipeline.resources import (
    CmrResource,
    DaskResource,
    EarthdataResource,
    StacApiResource,
    StorageResource,
)
from pipeline.sensors import granule_sensor
from pipeline.standins.cmr import CmrStandin, EarthdataStandin
from pipeline.standins.granule_samples import seed_days

COLLECTIONS = load_collections()
OMI = COLLECTIONS["OMDOAO3e_003"]
USER, PASSWORD = "geopump-user", "s3cret-Pa55"


@pytest.fixture
def hosts():
    with EarthdataStandin(users={USER: PASSWORD}) as data, CmrStandin(data_base_url=data.url) as cmr:
        yield cmr, data


def resources(url, cmr, data, stac_url=None, allow_private_urls=True):
    return {
        "storage": StorageResource(url=url),
        "cmr": CmrResource(base_url=f"{cmr.url}/search", backoff=0.01, max_retries=1),
        "earthdata": EarthdataResource(
            username=USER,
            password=PASSWORD,
            urs_host=data.urs.url.split("://", 1)[1],
            allow_private_urls=allow_private_urls,  # the stand-ins live on loopback
            backoff=0.01,
            max_retries=1,
        ),
        "stac_api": StacApiResource(base_url=stac_url),
        "dask": DaskResource(processes=False, n_workers=2),
    }


ASSETS = [cog_asset(OMI), stac_asset(OMI)]


def range_tags(first: str, last: str) -> dict:
    """A partition-range run, as a backfill launches it."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def test_one_day_becomes_a_valid_cog_with_statistics_preview_and_a_stac_item(local_storage_url, hosts):
    cmr, data = hosts
    day = "2022-01-20"
    expected = seed_days(cmr, data, OMI, [day])[day]
    st = Storage(local_storage_url)
    with dg.instance_for_test() as instance:
        out = dg.materialize(
            ASSETS, partition_key=day, resources=resources(local_storage_url, cmr, data), instance=instance
        )
        assert out.success
        meta = instance.get_latest_materialization_event(cog_key(OMI)).asset_materialization.metadata
    path = st.uri(cog_relpath(OMI, day))
    assert meta["dagster/uri"].value == path
    assert cog_validate(path)[0]
    with rasterio.open(path) as ds:
        assert ds.dtypes[0] == "float32" and ds.crs.to_epsg() == 4326
        assert tuple(ds.transform)[:6] == (0.25, 0.0, -180.0, 0.0, -0.25, 90.0)
        got = ds.read(1)
        assert ds.nodata == pytest.approx(OMI.nodata)
        assert ds.overviews(1)
    np.testing.assert_array_equal(got, expected)
    valid = expected[expected > OMI.nodata]
    assert meta["mean"].value == pytest.approx(float(valid.astype(np.float64).mean()), rel=1e-9)
    assert meta["valid_percent"].value == pytest.approx(100 * valid.size / expected.size)
    assert meta["preview"].value.startswith("![OMDOAO3e_003_2022-01-20](data:image/png;base64,")
    # Logged in through URS with basic auth; the data host never saw the password.
    assert all("Authorization" not in c.headers for c in data.calls)
    assert all(c.headers.get("Client-Id") for c in cmr.calls)
    # The STAC item, in a catalog pystac can read.
    from pipeline.lib.stac import validate_stac

    item = st.read_json(f"stac/{OMI.id}/items/{OMI.id}_{day}.json")
    validate_stac(item)
    assert item["assets"]["cog_default"]["href"] == path
    assert item["assets"]["cog_default"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    band = item["assets"]["cog_default"]["raster:bands"][0]
    assert band["unit"] == "DU" and band["statistics"]["mean"] == pytest.approx(meta["mean"].value)
    assert item["properties"]["datetime"].startswith("2022-01-20T00:00:00")
    catalog = pystac.Catalog.from_file(st.uri("stac/catalog.json"))
    assert [i.id for i in catalog.get_items(recursive=True)] == [f"{OMI.id}_{day}"]


def test_a_range_fails_only_its_bad_days_and_keeps_their_previous_outputs(local_storage_url, hosts):
    cmr, data = hosts
    days = ["2022-02-01", "2022-02-02", "2022-02-03", "2022-02-04", "2022-02-05"]
    st = Storage(local_storage_url)
    res = resources(local_storage_url, cmr, data)
    seed_days(cmr, data, OMI, days[:4])  # 02-05 has no granule in CMR at all
    with dg.instance_for_test() as instance:
        first = dg.materialize(ASSETS[:1], partition_key="2022-02-02", resources=res, instance=instance)
        assert first.success
        before = st.read_bytes(cog_relpath(OMI, "2022-02-02"))
        # Reprocessed granules: 02-02 now lacks the variable, 02-03 is all fill, 02-04 is truncated.
        kinds = {"2022-02-02": "missing_variable", "2022-02-03": "all_fill", "2022-02-04": "truncated"}
        seed_days(cmr, data, OMI, days[1:4], kinds=kinds, revision=2)
        out = dg.materialize(
            ASSETS[:1],
            tags=range_tags(days[0], days[-1]),
            resources=res,
            instance=instance,
            raise_on_error=False,
        )
        assert not out.success
        failure = out.failure_data_for_node("cogs__OMDOAO3e_003").error.message
        for day, rule in (
            ("2022-02-02", "not found"),
            ("2022-02-03", "fill"),
            ("2022-02-04", "HDF5"),
            ("2022-02-05", "no granule in CMR"),
        ):
            assert f"{day}" in failure and rule in failure.split(day, 1)[1].split(";")[0], (day, failure)
        materialized = instance.get_materialized_partitions(cog_key(OMI))
    assert "2022-02-01" in materialized
    assert st.exists(sidecar_relpath(OMI, "2022-02-01"))
    assert st.read_bytes(cog_relpath(OMI, "2022-02-02")) == before  # the previous good COG is intact
    for day in days[2:]:
        assert not st.exists(cog_relpath(OMI, day)) and not st.exists(sidecar_relpath(OMI, day))


def test_stac_step_refuses_days_without_a_valid_cog(local_storage_url, hosts):
    cmr, data = hosts
    res = resources(local_storage_url, cmr, data)
    with dg.instance_for_test() as instance:
        out = dg.materialize(
            ASSETS[1:], partition_key="2022-03-01", resources=res, instance=instance, raise_on_error=False
        )
    assert not out.success
    assert "no valid COG for day(s) ['2022-03-01']" in out.failure_data_for_node("stac__OMDOAO3e_003").error.message
    assert not Storage(local_storage_url).list("stac")


def test_second_collection_of_another_shape_runs_end_to_end(local_storage_url, hosts):
    cmr, data = hosts
    toms = COLLECTIONS["OMTO3d_003"]
    day = "2023-06-01"
    expected = seed_days(cmr, data, toms, [day])[day]
    with dg.instance_for_test() as instance:
        out = dg.materialize(
            [cog_asset(toms), stac_asset(toms)],
            partition_key=day,
            resources=resources(local_storage_url, cmr, data),
            instance=instance,
        )
    assert out.success
    with rasterio.open(Storage(local_storage_url).uri(cog_relpath(toms, day))) as ds:
        assert ds.shape == (180, 360) and tuple(ds.transform)[:6] == (1.0, 0.0, -180.0, 0.0, -1.0, 90.0)
        np.testing.assert_array_equal(ds.read(1), expected)


def _tick(cmr_url, cursor=None, instance=None):
    sensor = granule_sensor(OMI, cog_job(OMI))
    ctx = dg.build_sensor_context(
        cursor=cursor, instance=instance, resources={"cmr": CmrResource(base_url=cmr_url, backoff=0.01, max_retries=1)}
    )
    return sensor(ctx)


def test_granule_sensor_first_tick_nothing_new_revision_and_corrupt_cursor(hosts):
    cmr, data = hosts
    seed_days(cmr, data, OMI, ["2022-01-20", "2022-01-21", "2022-01-22"])
    url = f"{cmr.url}/search"
    first = _tick(url)
    keys = sorted(r.partition_key for r in first.run_requests)
    assert keys == ["2022-01-20", "2022-01-21", "2022-01-22"]
    assert all(r.run_key.startswith("OMDOAO3e_003:") and r.run_key.endswith(":r1") for r in first.run_requests)
    assert len(first.cursor) < 300 and json.loads(first.cursor)
    nothing = _tick(url, first.cursor)
    assert not nothing.run_requests
    # A reprocessed granule: a new revision of 01-21 gives one run with a new run key, same partition.
    cmr.revise_granule(next(r.concept_id for r in cmr.records.values() if r.time_start.date() == date(2022, 1, 21)))
    revised = _tick(url, nothing.cursor)
    assert [(r.partition_key, r.run_key[-3:]) for r in revised.run_requests] == [("2022-01-21", ":r2")]
    # A corrupt cursor starts over: the same run keys again (Dagster drops repeats of a run key).
    corrupt = _tick(url, "{not json")
    assert {r.run_key for r in corrupt.run_requests} >= {r.run_key for r in revised.run_requests}
    # CMR down: the tick skips and keeps its cursor.
    cmr.fail_next(r"/search/granules", status=503, times=5)
    down = _tick(url, revised.cursor)
    assert not down.run_requests and down.cursor == revised.cursor


@pytest.mark.db
def test_stac_api_publish_replaces_items_and_never_duplicates(local_storage_url, hosts, stac_api_url):
    import requests

    cmr, data = hosts
    day = "2022-01-20"
    seed_days(cmr, data, OMI, [day, "2022-01-21"])
    res = resources(local_storage_url, cmr, data, stac_url=stac_api_url)
    with dg.instance_for_test() as instance:
        assert dg.materialize(ASSETS, tags=range_tags(day, "2022-01-21"), resources=res, instance=instance).success
        seed_days(cmr, data, OMI, [day], revision=2)
        assert dg.materialize(ASSETS, partition_key=day, resources=res, instance=instance).success
        meta = instance.get_latest_materialization_event(stac_key(OMI)).asset_materialization.metadata
    assert meta["stac_api"].value == {day: "replaced"}
    found = requests.get(f"{stac_api_url}/collections/{OMI.id}/items", params={"limit": 100}, timeout=30).json()
    ids = sorted(f["id"] for f in found["features"])
    assert ids == [f"{OMI.id}_2022-01-20", f"{OMI.id}_2022-01-21"]
    item = next(f for f in found["features"] if f["id"].endswith(day))
    assert item["properties"]["geopump:granule_revision"] == 2
    st = Storage(local_storage_url)
    assert sorted(st.list(f"stac/{OMI.id}/items")) == [
        f"stac/{OMI.id}/items/{OMI.id}_2022-01-20.json",
        f"stac/{OMI.id}/items/{OMI.id}_2022-01-21.json",
    ]


def test_granule_links_from_cmr_must_pass_the_url_policy(local_storage_url, hosts):
    cmr, data = hosts
    day = "2022-01-20"
    seed_days(cmr, data, OMI, [day])
    res = resources(local_storage_url, cmr, data, allow_private_urls=False)
    with dg.instance_for_test() as instance:
        out = dg.materialize(ASSETS[:1], partition_key=day, resources=res, instance=instance, raise_on_error=False)
    assert not out.success
    message = out.failure_data_for_node("cogs__OMDOAO3e_003").error.message
    assert "granule URL http://127.0.0.1" in message and "is not allowed" in message
    assert not [c for c in data.calls if c.path.endswith(".he5")]  # never fetched


def test_granule_sensor_works_through_thousands_of_granules_in_bounded_ticks(hosts):
    cmr, _ = hosts
    cmr.add_days(OMI.short_name, OMI.version, "2010-01-01", 2500)
    sensor = granule_sensor(OMI, cog_job(OMI))
    res = {"cmr": CmrResource(base_url=f"{cmr.url}/search", max_runs_per_tick=1000, backoff=0.01, max_retries=1)}
    cursor, seen, sizes = None, set(), []
    for _ in range(4):
        result = sensor(dg.build_sensor_context(cursor=cursor, resources=res))
        sizes.append(len(result.run_requests))
        seen.update(r.partition_key for r in result.run_requests)
        cursor = result.cursor
        assert len(cursor) < 300  # the cursor stays small however many granules there are
    assert sizes == [1000, 1000, 500, 0]
    assert len(seen) == 2500
