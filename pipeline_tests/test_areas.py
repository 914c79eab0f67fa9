"""Tests for pipeline.lib.areas against the loopback Areas/Geostore stand-in."""

from __future__ import annotations

import math
import time
from datetime import date

import pytest
import requests
import shapely
from shapely.geometry import shape

from pipeline.lib.areas import (
    USER_AREA_COLUMNS,
    USER_AREA_SCHEMA,
    AreasClient,
    accepted_features,
    geostore_ids_to_fetch,
    normalize_geostore_id,
    validate_areas,
)
from pipeline.lib.http import SourceError
from pipeline.standins.area_samples import EXPECTED_REASON, generate_areas, generate_areas_with_kinds
from pipeline.standins.areas import AreasStandin

TOKEN = "admin-token-s3cr3t-7f9a"
API_KEY = "api-key-s3cr3t-1b2c"


def gs(geometry: dict | None, area_ha: float | None = 1000.0, hash_: str = "") -> dict:
    features = [] if geometry is None else [{"type": "Feature", "properties": None, "geometry": geometry}]
    return {
        "geojson": {"type": "FeatureCollection", "features": features, "crs": {}},
        "hash": hash_,
        "areaHa": area_ha,
    }


SQUARE = {
    "type": "Polygon",
    "coordinates": [[[29.1, -6.9], [29.3, -6.9], [29.3, -6.7], [29.1, -6.7], [29.1, -6.9]]],
}
BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
HOLED = {
    "type": "Polygon",
    "coordinates": [
        [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]],
        [[1, 1], [1, 3], [3, 3], [3, 1], [1, 1]],
    ],
}


@pytest.fixture
def standin():
    with AreasStandin(token=TOKEN, api_key=API_KEY) as srv:
        yield srv


@pytest.fixture
def client(standin, sleeps):
    return AreasClient(standin.url, token=TOKEN, api_key=API_KEY, sleep=sleeps, backoff=0.001, max_retries=3)


# -- validation rules ---------------------------------------------------------------------------
def test_each_rule_gives_its_reason():
    g_ok, g_huge, g_line, g_empty, g_nogeom, g_point, g_coll = (f"{i:032x}".replace("0", "a") for i in range(1, 8))
    geostores = {
        g_ok: gs(SQUARE, 49321.7),
        g_huge: gs(SQUARE, 2.3e9),
        g_line: gs({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
        g_empty: gs({"type": "Polygon", "coordinates": []}),
        g_nogeom: gs(None),
        g_point: gs({"type": "Point", "coordinates": [1, 2]}),
        g_coll: gs({"type": "GeometryCollection", "geometries": [SQUARE]}),
    }
    areas = [
        {
            "id": "a1",
            "geostore": g_ok,
            "name": "ok",
            "application": "gfw",
            "createdAt": "2026-09-26T10:01:02.000Z",
        },
        {"id": "a2", "geostore": "abc"},
        {"id": "a3", "geostore": g_ok.upper()},
        {"id": "a4", "geostore": None},
        {"id": "a5", "geostore": "f" * 32},  # well-formed but unknown
        {"id": "a6", "geostore": g_huge},
        {"id": "a7", "geostore": g_line},
        {"id": "a8", "geostore": g_empty},
        {"id": "a9", "geostore": g_nogeom},
        {"id": "a10", "geostore": g_point},
        {"id": "a11", "geostore": g_coll},
    ]
    gdf = validate_areas(areas, geostores).set_index("area_id")
    reasons = gdf["reason"].to_dict()
    assert gdf.loc["a1", "status"] == "accepted" and isinstance(reasons["a1"], float) and math.isnan(reasons["a1"])
    assert reasons["a2"] == "geostore id 'abc' is not 32 hex characters (0-9a-f)"
    assert reasons["a3"] == f"geostore id '{g_ok.upper()}' is not 32 hex characters (0-9a-f)"
    assert reasons["a4"] == "geostore id is missing"
    assert reasons["a5"] == "geostore not found"
    assert reasons["a6"] == "areaHa 2.3e9 >= 1e9"
    assert reasons["a7"] == "geometry type LineString is not Polygon/MultiPolygon"
    assert reasons["a8"] == "geometry is empty"
    assert reasons["a9"] == "geometry is empty"
    assert reasons["a10"] == "geometry type Point is not Polygon/MultiPolygon"
    assert reasons["a11"] == "geometry type GeometryCollection is not Polygon/MultiPolygon"
    rejected = gdf[gdf["status"] == "rejected"]
    assert len(rejected) == 10
    assert rejected.geometry.isna().all()
    assert not rejected["repaired"].any()
    assert gdf.loc["a1", "area__ha"] == pytest.approx(49321.7)
    assert math.isnan(gdf.loc["a5", "area__ha"])
    assert gdf.loc["a6", "area__ha"] == pytest.approx(2.3e9)
    assert gdf.loc["a1", "created_at"] == "2026-09-26T10:01:02.000Z"
    assert gdf.loc["a1", "geometry"].equals(shape(SQUARE))


def test_schema_columns_dtypes_and_crs():
    gdf = validate_areas([{"id": "a1", "geostore": "0" * 32}], {"0" * 32: gs(SQUARE)})
    assert list(gdf.columns) == USER_AREA_COLUMNS == [n for n, _, _ in USER_AREA_SCHEMA]
    assert {c: str(gdf[c].dtype) for c in gdf.columns} == {n: d for n, d, _ in USER_AREA_SCHEMA}
    assert gdf.crs.to_epsg() == 4326
    empty = validate_areas([], {})
    assert list(empty.columns) == USER_AREA_COLUMNS and len(empty) == 0
    assert {c: str(empty[c].dtype) for c in empty.columns} == {n: d for n, d, _ in USER_AREA_SCHEMA}


def test_bowtie_is_repaired_and_accepted_with_both_lobes():
    gid = "ab" * 16
    gdf = validate_areas([{"id": "bow", "geostore": gid}], {gid: gs(BOWTIE, 5.0)})
    row = gdf.iloc[0]
    assert row["status"] == "accepted"
    assert bool(row["repaired"]) is True
    assert row["geometry"].is_valid
    assert row["geometry"].geom_type == "MultiPolygon"
    assert row["geometry"].area == pytest.approx(0.5)  # both triangles (buffer(0) would keep 0.25)


def test_valid_geometry_is_not_marked_repaired_and_hole_is_kept():
    gid = "cd" * 16
    gdf = validate_areas([{"id": "h", "geostore": gid}], {gid: gs(HOLED)})
    row = gdf.iloc[0]
    assert row["status"] == "accepted" and not row["repaired"]
    assert row["geometry"].area == pytest.approx(12.0)
    assert len(row["geometry"].interiors) == 1


def test_uuid_like_ids_are_normalised_and_shared_geostores_keep_every_area():
    gid = "8ba2bcb78154e69daa00508b8c872574"
    uuid_like = "8ba2bcb7-8154-e69d-aa00-508b8c872574"
    assert normalize_geostore_id(uuid_like) == gid
    areas = [
        {"id": "a", "geostore": uuid_like},
        {"id": "b", "geostore": gid},
        {"id": "c", "geostore": "nope"},
    ]
    assert geostore_ids_to_fetch(areas) == [gid]
    gdf = validate_areas(areas, {gid: gs(SQUARE)})
    assert gdf["status"].tolist() == ["accepted", "accepted", "rejected"]
    assert gdf["geostore__id"].tolist() == [gid, gid, "nope"]
    feats = accepted_features(gdf)
    assert list(feats.columns) == ["geostore__id", "geometry"]
    assert feats["geostore__id"].tolist() == [gid]
    assert feats.crs.to_epsg() == 4326


def test_z_coordinates_are_dropped():
    gid = "ef" * 16
    poly_z = {"type": "Polygon", "coordinates": [[[0, 0, 5], [1, 0, 5], [1, 1, 5], [0, 1, 5], [0, 0, 5]]]}
    gdf = validate_areas([{"id": "z", "geostore": gid}], {gid: gs(poly_z)})
    assert not shapely.has_z(gdf.geometry.iloc[0])


def test_samples_validate_to_their_expected_outcome():
    areas, geostores, kinds = generate_areas_with_kinds(600, seed=3, invalid_fraction=0.1)
    assert (
        len(set(kinds.values()) & {"bad_id", "huge", "linestring", "empty", "bowtie", "missing_geostore", "shared"})
        == 7
    )
    flat = [{"id": a["id"], **a["attributes"]} for a in areas]
    gdf = validate_areas(flat, geostores)
    assert len(gdf) == 600
    for row in gdf.itertuples():
        expected = EXPECTED_REASON[kinds[row.area_id]]
        if expected is None:
            assert row.status == "accepted", (kinds[row.area_id], row.reason)
        else:
            assert row.status == "rejected" and expected in row.reason, (kinds[row.area_id], row.reason)
    bowties = [aid for aid, k in kinds.items() if k == "bowtie"]
    assert gdf.set_index("area_id").loc[bowties, "repaired"].all()
    assert generate_areas(50, seed=3) == generate_areas(50, seed=3)
    assert generate_areas(50, seed=3) != generate_areas(50, seed=4)


# -- client against the stand-in -----------------------------------------------------------------
def test_10000_areas_paging_geostore_blocks_validation_and_status_updates():
    areas, geostores, kinds = generate_areas_with_kinds(10_000, seed=7)
    with AreasStandin(token=TOKEN, api_key=API_KEY, areas=areas, geostores=geostores) as srv:
        client = AreasClient(srv.url, token=TOKEN, api_key=API_KEY, sleep=lambda s: None)
        started = time.monotonic()
        pending = client.pending_areas()
        assert len(pending) == 10_000
        assert {a["id"] for a in pending} == {a["id"] for a in areas}
        assert len(srv.calls_to(r"^/v2/area$", "GET")) == 400
        created = [a["createdAt"] for a in pending]
        assert created == sorted(created, reverse=True)

        ids = geostore_ids_to_fetch(pending)
        found = client.find_geostores(ids)
        assert len(srv.calls_to(r"^/v2/geostore/find-by-ids$", "POST")) == math.ceil(len(ids) / 25)
        assert all(len(c.json()["geostores"]) <= 25 for c in srv.calls_to("find-by-ids"))
        assert set(found) == set(ids) & set(geostores)

        gdf = validate_areas(pending, found)
        elapsed = time.monotonic() - started
        assert elapsed < 20, f"10,000 areas took {elapsed:.1f}s"
        expected_rejected = sum(1 for k in kinds.values() if EXPECTED_REASON[k] is not None)
        assert (gdf["status"] == "rejected").sum() == expected_rejected

        saved_ids = accepted_features(gdf)["geostore__id"].tolist()
        error_ids = gdf.loc[gdf["status"] == "rejected", "geostore__id"].tolist()
        n_saved = client.update_status(saved_ids, "saved")
        n_error = client.update_status(error_ids, "error")
        assert n_saved == (gdf["status"] == "accepted").sum()  # shared geostores update every area
        assert len(srv.calls_to(r"^/v2/area/update$")) == math.ceil(len(saved_ids) / 100) + math.ceil(
            len(set(error_ids) - {""}) / 100
        )
        statuses = srv.statuses()
        for row in gdf.itertuples():
            want = "saved" if row.status == "accepted" else "error"
            if row.geostore__id:
                assert statuses[row.area_id] == want
        assert n_error == sum(1 for s in statuses.values() if s == "error")
        assert client.pending_areas() == []


def test_update_status_changes_stand_in_status_and_validates_input(client, standin):
    g1, g2 = "1" * 32, "2" * 32
    a1 = standin.add_area(g1)
    a2 = standin.add_area(g1)
    a3 = standin.add_area(g2)
    with pytest.raises(ValueError, match="status 'done' is not one of 'saved', 'error'"):
        client.update_status([g1], "done")
    assert standin.calls == []
    assert client.update_status([g1, g1], "saved") == 2
    assert (standin.status_of(a1), standin.status_of(a2), standin.status_of(a3)) == (
        "saved",
        "saved",
        "pending",
    )
    assert standin.updates == [{"geostores": [g1], "status": "saved", "updated": 2}]
    assert client.update_status([], "error") == 0
    assert len(standin.calls) == 1


def test_standin_update_rejects_bad_status_with_validation_error(standin):
    resp = requests.post(
        f"{standin.url}/v2/area/update",
        json={"geostores": ["1" * 32], "update_params": {"status": "done"}},
        headers={"Authorization": f"Bearer {TOKEN}", "x-api-key": API_KEY},
        timeout=5,
    )
    assert resp.status_code == 400
    err = resp.json()["errors"][0]
    assert err["source"] == {"parameter": "status"} and err["code"] == "invalid_body_parameter"


def test_find_geostores_none_found_is_empty_not_error(client, standin):
    gid = "3" * 32
    standin.add_geostore(gid, gs(SQUARE))
    assert client.find_geostores(["4" * 32, "5" * 32]) == {}
    found = client.find_geostores([gid, gid, "4" * 32])
    assert list(found) == [gid] and found[gid]["areaHa"] == 1000.0
    assert [c.json()["geostores"] for c in standin.calls_to("find-by-ids")] == [
        ["4" * 32, "5" * 32],
        [gid, "4" * 32],
    ]
    assert client.find_geostores([]) == {}
    assert len(standin.calls_to("find-by-ids")) == 2


def test_find_geostores_other_404_is_an_error(client, standin):
    standin.fail_next("find-by-ids", 404, {"errors": [{"status": 404, "detail": "Endpoint not found"}]})
    with pytest.raises(SourceError, match="Endpoint not found"):
        client.find_geostores(["3" * 32])


def test_paging_stops_on_empty_page_and_on_repeated_page(client, standin):
    for i in range(30):
        standin.add_area("6" * 32, created_at=f"2026-09-26T10:{i:02d}:00.000Z")
    page1 = requests.get(
        f"{standin.url}/v2/area",
        params={
            "status": "pending",
            "all": "true",
            "sort": "-createdAt",
            "page[number]": 1,
            "page[size]": 25,
        },
        headers={"Authorization": f"Bearer {TOKEN}", "x-api-key": API_KEY},
        timeout=5,
    ).json()
    assert page1["meta"] == {"total-pages": 2, "total-items": 30, "size": 25}
    assert page1["links"]["prev"].endswith("page%5Bnumber%5D=1&page%5Bsize%5D=25")
    assert page1["links"]["last"].endswith("page%5Bnumber%5D=2&page%5Bsize%5D=25")
    standin.calls.clear()

    # A server that keeps answering page 1 with self != last must not loop forever.
    broken = dict(page1, links={"self": "x", "last": "y"}, meta={})
    standin.fail_next(r"^/v2/area$", 200, broken, times=50)
    got = client.pending_areas()
    assert len(got) == 25
    assert len(standin.calls_to(r"^/v2/area$")) == 2

    standin.calls.clear()
    standin._faults.clear()
    standin.fail_next(r"^/v2/area$", 200, {"data": [], "links": {"self": "x", "last": "y"}}, times=50)
    assert client.pending_areas() == []
    assert len(standin.calls_to(r"^/v2/area$")) == 1


def test_listing_is_newest_first_and_deduplicated(client, standin):
    ids = [standin.add_area("7" * 32, created_at=f"2026-09-2{d}T00:00:00.000Z") for d in (1, 3, 2)]
    standin.add_area("7" * 32, status="saved")
    got = client.pending_areas()
    assert [a["id"] for a in got] == [ids[1], ids[2], ids[0]]
    assert got[0]["geostore"] == "7" * 32 and got[0]["status"] == "pending"
    call = standin.calls_to(r"^/v2/area$")[0]
    assert call.q("status") == "pending" and call.q("all") == "true" and call.q("page[size]") == "25"
    assert call.headers["Authorization"] == f"Bearer {TOKEN}" and call.headers["x-api-key"] == API_KEY


def test_sync_creates_areas_from_subscriptions(client, standin):
    standin.add_subscription("8" * 32, name="sub A", created_at="2026-09-25T08:00:00.000Z")
    standin.add_subscription("9" * 32, name="old", created_at="2026-01-01T08:00:00.000Z")
    data = client.sync_areas(date(2026, 9, 24), date(2026, 9, 26))
    assert data["createdAreas"] == 1 and data["syncedAreas"] == 0 and data["totalSubscriptions"] == 1
    (new_id,) = data["affectedAreaIds"]
    assert standin.status_of(new_id) == "pending"
    assert standin.calls_to("sync")[0].q("startDate") == "2026-09-24"
    assert standin.calls_to("sync")[0].q("endDate") == "2026-09-26"
    again = client.sync_areas(date(2026, 9, 24))
    assert again["createdAreas"] == 0 and again["syncedAreas"] == 1
    with pytest.raises(ValueError, match="before start_date"):
        client.sync_areas(date(2026, 9, 24), date(2026, 9, 1))


# -- errors, auth, retries ------------------------------------------------------------------------
def test_wrong_token_gives_401_without_leaking_it(standin, sleeps):
    bad = AreasClient(standin.url, token="wrong-token-0xDEADBEEF", api_key=API_KEY, sleep=sleeps)
    with pytest.raises(SourceError) as info:
        bad.sync_areas(date(2026, 9, 25))
    msg = str(info.value)
    assert info.value.status == 401
    assert msg.startswith("GFW Areas API") and "401" in msg and "Unauthorized" in msg
    assert "wrong-token-0xDEADBEEF" not in msg and API_KEY not in msg
    assert len(standin.calls) == 1 and sleeps == []

    no_key = AreasClient(standin.url, token=TOKEN, sleep=sleeps)
    with pytest.raises(SourceError, match="401: Unauthorized"):
        no_key.pending_areas()
    resp = requests.get(f"{standin.url}/v2/area", timeout=5)
    assert resp.status_code == 401 and resp.headers["Content-Type"] == "application/vnd.api+json"


def test_jsonapi_error_detail_is_surfaced(client, standin):
    standin.fail_next(
        "sync",
        400,
        {"errors": [{"status": 400, "detail": "startDate is in the future"}]},
        content_type="application/vnd.api+json",
    )
    with pytest.raises(SourceError, match="POST /v2/area/sync returned HTTP 400: startDate is in the future"):
        client.sync_areas(date(2026, 9, 25))


def test_429_retry_after_is_honoured(client, standin, sleeps):
    standin.fail_next(
        "sync",
        429,
        {"errors": [{"status": 429, "detail": "Too Many Requests"}]},
        headers={"Retry-After": "7"},
    )
    data = client.sync_areas(date(2026, 9, 25))
    assert data["createdAreas"] == 0
    assert sleeps == [7.0]
    assert len(standin.calls_to("sync")) == 2


def test_5xx_exhausted_names_the_source(client, standin, sleeps):
    standin.fail_next(r"^/v2/area$", 503, "Service Unavailable", times=10)
    with pytest.raises(SourceError) as info:
        client.pending_areas()
    assert str(info.value).startswith("GFW Areas API:")
    assert "4 attempts" in str(info.value) and "503" in str(info.value)
    assert len(standin.calls_to(r"^/v2/area$")) == 4 and len(sleeps) == 3
    assert TOKEN not in str(info.value)
