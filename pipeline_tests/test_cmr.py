"""pipeline_tests.test_cmr: CMR granule search against the loopback stand-in, granule parsing and sensor planning."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests

from pipeline.lib.cmr import (
    CmrClient,
    CmrError,
    Granule,
    cursor_updated_since,
    granule_day,
    parse_atom_entry,
    parse_umm_item,
    plan_granule_runs,
)
from pipeline.standins.cmr import CmrStandin

SHORT, VERSION = "OMDOAO3e", "003"
T0 = datetime(2022, 1, 22, 7, 31, 12, tzinfo=UTC)
SEARCH = r"^/search/granules\.(umm_json|json)$"


@pytest.fixture
def cmr():
    with CmrStandin() as server:
        yield server


@pytest.fixture
def client(cmr, sleeps):
    return CmrClient(base_url=f"{cmr.url}/search", max_retries=2, backoff=0.01, sleep=sleeps)


def _add(cmr, n, first="2022-01-20", start=T0):
    """n consecutive days, revision dates one minute apart from `start`."""
    first_day = datetime.fromisoformat(first).date()
    return [
        cmr.add_granule(SHORT, VERSION, first_day + timedelta(days=i), revision_date=start + timedelta(minutes=i))
        for i in range(n)
    ]


# -- search: paging, headers, parameters ------------------------------------------------------------------------
def test_search_pages_only_by_search_after_header(cmr, client):
    records = _add(cmr, 5)
    granules = list(client.search_granules(SHORT, VERSION, page_size=2))
    assert [g.concept_id for g in granules] == [r.concept_id for r in records]  # revision_date order
    calls = cmr.calls_to(SEARCH)
    assert len(calls) == 3  # 2 + 2 + 1; CMR-Hits (5) says the last page is complete, so no empty page is asked for
    assert "CMR-Search-After" not in calls[0].headers
    # Each later request resends the token of the previous page's last granule, never page_num/offset.
    resent = [json.loads(c.headers["CMR-Search-After"]) for c in calls[1:]]
    assert [token[-1] for token in resent] == [records[1].concept_id, records[3].concept_id]
    assert all(c.query == calls[0].query for c in calls)
    assert calls[0].query == {
        "short_name": [SHORT],
        "version": [VERSION],
        "page_size": ["2"],
        "sort_key[]": ["revision_date"],
    }
    assert not any("page_num" in c.query or "offset" in c.query for c in calls)
    assert client.last_hits == 5


def test_without_cmr_hits_paging_stops_at_an_empty_page(cmr, client):
    records = _add(cmr, 3)
    cmr.omit_hits = True
    got = list(client.search_granules(SHORT, VERSION, page_size=2))
    assert [g.concept_id for g in got] == [r.concept_id for r in records]
    assert len(cmr.calls_to(SEARCH)) == 3  # 2 + 1, then the empty page that ends it


def test_client_id_always_sent_and_bearer_only_when_configured(cmr, sleeps):
    _add(cmr, 3)
    anonymous = CmrClient(base_url=f"{cmr.url}/search", client_id="geopump-test", sleep=sleeps)
    assert len(list(anonymous.search_granules(SHORT, VERSION, page_size=2))) == 3
    calls = cmr.calls_to(SEARCH)
    assert [c.headers.get("Client-Id") for c in calls] == ["geopump-test"] * 2
    assert all("Authorization" not in c.headers for c in calls)

    cmr.calls.clear()
    authed = CmrClient(base_url=f"{cmr.url}/search", token="edl-token-xyz", sleep=sleeps)
    assert len(list(authed.search_granules(SHORT, VERSION, page_size=2))) == 3
    calls = cmr.calls_to(SEARCH)
    assert [c.headers.get("Authorization") for c in calls] == ["Bearer edl-token-xyz"] * 2
    assert [c.headers.get("Client-Id") for c in calls] == ["geopump"] * 2


def test_stand_in_refuses_a_request_without_client_id(cmr):
    resp = requests.get(f"{cmr.url}/search/granules.umm_json", params={"short_name": SHORT}, timeout=5)
    assert resp.status_code == 400 and "Client-Id" in resp.json()["errors"][0]


def test_time_parameters_are_utc_with_z_and_filter_results(cmr, client):
    records = _add(cmr, 4)  # 2022-01-20 .. 2022-01-23, revised T0, T0+1m, ...
    cest = timezone(timedelta(hours=2))
    got = list(
        client.search_granules(
            SHORT,
            VERSION,
            temporal=(datetime(2022, 1, 21, tzinfo=UTC), datetime(2022, 1, 22, 23, 59, 59, tzinfo=UTC)),
            updated_since=datetime(2022, 1, 22, 9, 33, 0, tzinfo=cest),  # 07:33:00Z
            revision_date=(T0, None),
        )
    )
    call = cmr.calls_to(SEARCH)[0]
    assert call.q("temporal") == "2022-01-21T00:00:00Z,2022-01-22T23:59:59Z"
    assert call.q("updated_since") == "2022-01-22T07:33:00Z"
    assert call.q("revision_date[]") == "2022-01-22T07:31:12Z,"
    # Days 21 and 22 overlap the window; of those only day 22 was revised at or after 07:33.
    assert [g.concept_id for g in got] == [records[2].concept_id]
    with pytest.raises(ValueError, match="naive"):
        client.search_granules(SHORT, VERSION, updated_since=datetime(2022, 1, 1))


def test_milliseconds_of_a_high_water_mark_are_kept(cmr, client):
    list(client.search_granules(SHORT, VERSION, updated_since=T0 + timedelta(milliseconds=250)))
    assert cmr.calls_to(SEARCH)[0].q("updated_since") == "2022-01-22T07:31:12.250Z"


def test_429_retry_after_is_honoured(cmr, client, sleeps):
    _add(cmr, 3)
    cmr.fail_next(SEARCH, 429, {"errors": ["Too many requests."]}, headers={"Retry-After": "7"})
    assert len(list(client.search_granules(SHORT, VERSION))) == 3
    assert sleeps == [7.0]
    assert len(cmr.calls_to(SEARCH)) == 2  # 429, then the page


def test_throttled_until_retries_run_out_raises_cmr_error(cmr, client):
    cmr.fail_next(SEARCH, 429, {"errors": ["Too many requests."]}, headers={"Retry-After": "1"}, times=5)
    with pytest.raises(CmrError, match="Too many requests") as err:
        list(client.search_granules(SHORT, VERSION))
    assert err.value.status == 429
    assert len(cmr.calls_to(SEARCH)) == 3  # 1 + max_retries


def test_5xx_is_retried_mid_paging_without_losing_the_page(cmr, client, sleeps):
    records = _add(cmr, 4)
    pages = iter(client.search_granules(SHORT, VERSION, page_size=2))
    first_two = [next(pages), next(pages)]
    cmr.fail_next(SEARCH, 503, "Service Unavailable", times=2)
    rest = list(pages)
    assert [g.concept_id for g in first_two + rest] == [r.concept_id for r in records]
    assert sleeps == [0.01, 0.02]
    calls = cmr.calls_to(SEARCH)
    # The two failed attempts and the success all carried the same search-after token.
    assert calls[1].headers["CMR-Search-After"] == calls[2].headers["CMR-Search-After"]
    assert calls[2].headers["CMR-Search-After"] == calls[3].headers["CMR-Search-After"]


def test_400_errors_body_is_surfaced(cmr, client):
    with pytest.raises(CmrError) as err:
        list(client.search_granules(SHORT, VERSION, sort_key="size_in_furlongs"))
    assert err.value.status == 400
    assert "The sort key [size_in_furlongs] is not a valid field for sorting granules." in str(err.value)
    assert len(cmr.calls_to(SEARCH)) == 1  # a 400 is not retried

    cmr.fail_next(SEARCH, 400, {"errors": ["Parameter [foo] was not recognized.", "Second problem."]})
    with pytest.raises(CmrError, match=r"Parameter \[foo\] was not recognized\.; Second problem\."):
        list(client.search_granules(SHORT, VERSION))


@pytest.mark.parametrize("bad", [0, -1, 2001, "10", 10.0, True, None])
def test_page_size_is_validated_before_any_request(cmr, client, bad):
    with pytest.raises(ValueError, match="page_size"):
        client.search_granules(SHORT, VERSION, page_size=bad)
    assert cmr.calls == []


def test_stand_in_rejects_page_size_over_2000(cmr):
    resp = requests.get(
        f"{cmr.url}/search/granules.umm_json", params={"page_size": 2001}, headers={"Client-Id": "t"}, timeout=5
    )
    assert resp.status_code == 400
    assert resp.json() == {"errors": ["page_size must be a number between 0 and 2000"]}


def test_partial_results_are_retried_then_fail(cmr, client, sleeps):
    records = _add(cmr, 4)
    cmr.time_out_next(1)
    got = list(client.search_granules(SHORT, VERSION))
    assert [g.concept_id for g in got] == [r.concept_id for r in records]  # the partial page was not used
    assert len(cmr.calls_to(SEARCH)) == 2  # timed-out page, full page

    cmr.calls.clear()
    cmr.time_out_next(10)
    with pytest.raises(CmrError, match="partial results .CMR-Time-Out: true. 4 times"):
        list(client.search_granules(SHORT, VERSION))
    assert len(cmr.calls_to(SEARCH)) == 4  # time_out_retries=3 by default


def test_long_query_goes_as_post_form_body(cmr, client):
    records = _add(cmr, 6)
    wanted = [records[1].concept_id, records[4].concept_id]
    decoys = [f"G{9000000000 + i}-GES_DISC" for i in range(400)]
    got = list(client.search_granules(SHORT, VERSION, concept_ids=decoys + wanted, page_size=1))
    assert [g.concept_id for g in got] == wanted
    calls = cmr.calls_to(SEARCH)
    assert [c.method for c in calls] == ["POST"] * 2
    assert all(c.query == {} and b"concept_id%5B%5D=" in c.body for c in calls)
    assert "CMR-Search-After" in calls[1].headers


def test_max_items_stops_paging(cmr, client):
    _add(cmr, 5)
    assert len(list(client.search_granules(SHORT, VERSION, page_size=2, max_items=3))) == 3
    assert len(cmr.calls_to(SEARCH)) == 2


def test_default_order_without_sort_key_is_by_start_date(cmr, client):
    late = cmr.add_granule(SHORT, VERSION, "2022-01-25", revision_date=T0)
    early = cmr.add_granule(SHORT, VERSION, "2022-01-21", revision_date=T0 + timedelta(hours=1))
    by_revision = [g.concept_id for g in client.search_granules(SHORT, VERSION)]
    by_start = [g.concept_id for g in client.search_granules(SHORT, VERSION, sort_key=None)]
    assert by_revision == [late.concept_id, early.concept_id]
    assert by_start == [early.concept_id, late.concept_id]
    assert "sort_key[]" not in cmr.calls_to(SEARCH)[-1].query


def test_version_must_match_exactly(cmr, client):
    _add(cmr, 2)
    assert list(client.search_granules(SHORT, "3")) == []
    assert len(list(client.search_granules(SHORT, "003"))) == 2


# -- parsing ---------------------------------------------------------------------------------------------------------
def test_umm_json_and_atom_json_parse_to_the_same_granules(cmr, client):
    _add(cmr, 3)
    umm = list(client.search_granules(SHORT, VERSION, page_size=2, fmt="umm_json"))
    atom = list(client.search_granules(SHORT, VERSION, page_size=2, fmt="json"))
    assert len(umm) == len(atom) == 3
    assert any(c.path.endswith(".json") and not c.path.endswith("umm_json") for c in cmr.calls)
    # ATOM-JSON carries no revision id/date and no exact size; everything else must agree.
    assert atom == [replace(g, revision_id=None, revision_date=None, size_bytes=None) for g in umm]
    g = umm[0]
    assert g.native_id == "OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5"
    assert g.granule_ur == f"OMDOAO3e.003:{g.native_id}"
    assert g.concept_id.startswith("G") and g.concept_id.endswith("-GES_DISC")
    assert g.collection_concept_id == "C1266136037-GES_DISC"
    assert (g.short_name, g.version, g.revision_id, g.size_bytes) == (SHORT, VERSION, 1, 8_500_000)
    assert g.revision_date == T0 and g.revision_date.tzinfo is not None
    assert g.time_start == datetime(2022, 1, 20, tzinfo=UTC)
    assert g.time_end == datetime(2022, 1, 20, 23, 59, 59, tzinfo=UTC)
    assert g.data_url == (
        "https://acdisc.gesdisc.eosdis.nasa.gov/data//Aura_OMI_Level3/OMDOAO3e.003/2022/" + g.native_id
    )
    assert granule_day(g) == "2022-01-20"
    assert g.raw["meta"]["concept-id"] == g.concept_id and "links" in atom[0].raw


# The two documented examples of external-apis.md §6 (same granule, both formats).
NAME = "OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5"
URL = f"https://acdisc.gesdisc.eosdis.nasa.gov/data//Aura_OMI_Level3/OMDOAO3e.003/2022/{NAME}"
UMM_ITEM = {
    "meta": {
        "concept-type": "granule",
        "concept-id": "G2205784904-GES_DISC",
        "collection-concept-id": "C1266136037-GES_DISC",
        "provider-id": "GES_DISC",
        "native-id": NAME,
        "revision-id": 1,
        "revision-date": "2022-01-22T07:31:12.000Z",
        "format": "application/echo10+xml",
    },
    "umm": {
        "GranuleUR": NAME,
        "CollectionReference": {"ShortName": "OMDOAO3e", "Version": "003"},
        "TemporalExtent": {
            "RangeDateTime": {
                "BeginningDateTime": "2022-01-20T00:00:00.000Z",
                "EndingDateTime": "2022-01-20T23:59:59.000Z",
            }
        },
        "DataGranule": {"ArchiveAndDistributionInformation": [{"Name": NAME, "SizeInBytes": 8500000}]},
        "RelatedUrls": [{"URL": URL, "Type": "GET DATA"}],
    },
}
ATOM_ENTRY = {
    "id": "G2205784904-GES_DISC",
    "title": NAME,
    "updated": "2022-01-22T07:31:12.000Z",
    "collection_concept_id": "C1266136037-GES_DISC",
    "producer_granule_id": NAME,
    "granule_size": "8.1",
    "time_start": "2022-01-20T00:00:00.000Z",
    "time_end": "2022-01-20T23:59:59.000Z",
    "links": [
        {"rel": "http://esipfed.org/ns/fedsearch/1.1/data#", "type": "application/x-hdfeos", "href": URL},
        {"rel": "http://esipfed.org/ns/fedsearch/1.1/documentation#", "href": "https://x/doc", "inherited": True},
    ],
}


def test_documented_examples_parse_alike():
    umm = parse_umm_item(UMM_ITEM)
    atom = parse_atom_entry(ATOM_ENTRY, short_name="OMDOAO3e", version="003")
    assert atom == replace(umm, revision_id=None, revision_date=None, size_bytes=None)
    assert umm.data_url == URL and umm.size_bytes == 8_500_000 and umm.revision_id == 1
    # The include regex picks the data link; nothing matching leaves data_url empty.
    assert parse_umm_item(UMM_ITEM, include=r"\.nc4$").data_url is None
    assert parse_atom_entry(ATOM_ENTRY, include=r"\.nc4$").data_url is None


# -- sensor planning (pure) -----------------------------------------------------------------------------------------
def gran(n: int, day: str, rev: int = 1, at: datetime = T0) -> Granule:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return Granule(
        concept_id=f"G{2205784904 + n}-GES_DISC",
        granule_ur=f"OMDOAO3e.003:g{n}.he5",
        native_id=f"g{n}.he5",
        revision_id=rev,
        revision_date=at,
        short_name=SHORT,
        version=VERSION,
        collection_concept_id="C1266136037-GES_DISC",
        time_start=start,
        time_end=start + timedelta(days=1, seconds=-1),
        data_url=f"https://data/g{n}.he5",
        size_bytes=100,
    )


def keys(plan):
    return [run.run_key for run in plan.runs]


def test_first_tick_plans_everything_with_a_small_cursor():
    granules = [gran(i, f"2022-01-{20 + i}", at=T0 + timedelta(seconds=i)) for i in range(3)]
    plan = plan_granule_runs(granules, None, collection_id="omi_ozone")
    assert keys(plan) == [
        "omi_ozone:2022-01-20:G2205784904-GES_DISC:r1",
        "omi_ozone:2022-01-21:G2205784905-GES_DISC:r1",
        "omi_ozone:2022-01-22:G2205784906-GES_DISC:r1",
    ]
    assert [run.partition_key for run in plan.runs] == ["2022-01-20", "2022-01-21", "2022-01-22"]
    assert plan.runs[0].granule is granules[0]
    assert plan.skipped == [] and plan.notes == []
    assert json.loads(plan.cursor)["at_mark"] == [["G2205784906-GES_DISC", 1]]
    assert cursor_updated_since(plan.cursor) == T0 + timedelta(seconds=2) == plan.high_water
    assert cursor_updated_since(None) is None


def test_nothing_new_keeps_the_cursor_and_plans_nothing():
    granules = [gran(i, f"2022-01-{20 + i}", at=T0 + timedelta(seconds=i)) for i in range(3)]
    first = plan_granule_runs(granules, None, collection_id="omi")
    # updated_since is inclusive: CMR hands back the granule at the high-water mark.
    again = plan_granule_runs([granules[-1]], first.cursor, collection_id="omi")
    assert again.runs == []
    assert again.cursor == first.cursor
    assert [s.reason for s in again.skipped] == ["already planned (at the cursor's high-water mark)"]
    assert plan_granule_runs([], first.cursor, collection_id="omi").cursor == first.cursor


def test_new_and_revised_granules_get_new_run_keys():
    g1, g2 = gran(1, "2022-01-20", at=T0), gran(2, "2022-01-21", at=T0 + timedelta(seconds=1))
    first = plan_granule_runs([g1, g2], None, collection_id="omi")
    g3 = gran(3, "2022-01-22", at=T0 + timedelta(minutes=5))
    g1_rev2 = replace(g1, revision_id=2, revision_date=T0 + timedelta(minutes=6))
    plan = plan_granule_runs([g2, g3, g1_rev2], first.cursor, collection_id="omi")
    assert keys(plan) == ["omi:2022-01-20:G2205784905-GES_DISC:r2", "omi:2022-01-22:G2205784907-GES_DISC:r1"]
    assert plan.runs[0].partition_key == first.runs[0].partition_key  # same partition, new run key
    assert keys(first)[0] == "omi:2022-01-20:G2205784905-GES_DISC:r1"
    # Planning the same revision again is idempotent: identical run keys.
    assert keys(plan_granule_runs([g2, g3, g1_rev2], first.cursor, collection_id="omi")) == keys(plan)


@pytest.mark.parametrize(
    "cursor",
    [
        "not json{",
        "[1, 2]",
        '{"v": 1, "updated_since": 5, "at_mark": []}',
        '{"v": 1, "updated_since": "yesterday", "at_mark": []}',
        '{"v": 1, "updated_since": "2022-01-22T07:31:12.000000Z", "at_mark": "G1"}',
        '{"v": 1, "updated_since": "2022-01-22T07:31:12.000000Z", "at_mark": [["G1", "1"]]}',
        '{"v": 99, "updated_since": null, "at_mark": []}',
    ],
)
def test_corrupt_cursor_is_treated_as_first_tick(cursor):
    granules = [gran(i, f"2022-01-{20 + i}", at=T0) for i in range(3)]
    plan = plan_granule_runs(granules, cursor, collection_id="omi")
    assert len(plan.runs) == 3
    assert len(plan.notes) == 1 and "treated as a first tick" in plan.notes[0]
    assert cursor_updated_since(cursor) is None
    assert cursor_updated_since(plan.cursor) == T0


def test_boundary_duplicates_are_filtered_but_late_arrivals_at_the_mark_run():
    a, b = gran(1, "2022-01-20", at=T0), gran(2, "2022-01-21", at=T0)
    first = plan_granule_runs([gran(0, "2022-01-19", at=T0 - timedelta(hours=1)), a, b], None, collection_id="omi")
    assert len(first.runs) == 3
    assert sorted(json.loads(first.cursor)["at_mark"]) == [[a.concept_id, 1], [b.concept_id, 1]]
    late = gran(3, "2022-01-22", at=T0)  # same revision instant, indexed after the first search
    plan = plan_granule_runs([a, b, late], first.cursor, collection_id="omi")
    assert keys(plan) == [f"omi:2022-01-22:{late.concept_id}:r1"]
    assert len(json.loads(plan.cursor)["at_mark"]) == 3
    # Moving past the mark forgets the old pairs.
    later = gran(4, "2022-01-23", at=T0 + timedelta(seconds=1))
    moved = plan_granule_runs([later], plan.cursor, collection_id="omi")
    assert json.loads(moved.cursor)["at_mark"] == [[later.concept_id, 1]]


def test_only_the_newest_revision_per_granule_and_day_runs():
    r1 = gran(1, "2022-01-20", rev=1, at=T0)
    r2 = replace(r1, revision_id=2, revision_date=T0 + timedelta(seconds=5))
    reprocessed = gran(2, "2022-01-20", at=T0 + timedelta(seconds=9))  # a new granule for the same day
    other_day = gran(3, "2022-01-21", at=T0 + timedelta(seconds=1))
    plan = plan_granule_runs([r2, r1, reprocessed, other_day], None, collection_id="omi")
    assert keys(plan) == [f"omi:2022-01-20:{reprocessed.concept_id}:r1", f"omi:2022-01-21:{other_day.concept_id}:r1"]
    reasons = {(s.concept_id, s.revision_id): s.reason for s in plan.skipped}
    assert "superseded by revision 2" in reasons[(r1.concept_id, 1)]
    assert reprocessed.concept_id in reasons[(r1.concept_id, 2)]
    plain = plan_granule_runs([r2, r1, reprocessed], None, collection_id="omi", one_per_day=False)
    assert keys(plain) == [f"omi:2022-01-20:{r1.concept_id}:r2", f"omi:2022-01-20:{reprocessed.concept_id}:r1"]


def test_granules_before_start_date_are_skipped():
    granules = [gran(i, f"2022-01-{18 + i}", at=T0 + timedelta(seconds=i)) for i in range(4)]
    plan = plan_granule_runs(granules, None, collection_id="omi", start_date="2022-01-20")
    assert [r.partition_key for r in plan.runs] == ["2022-01-20", "2022-01-21"]
    assert [s.day for s in plan.skipped] == ["2022-01-18", "2022-01-19"]
    assert all("before start_date 2022-01-20" in s.reason for s in plan.skipped)


def test_max_runs_defers_the_rest_without_losing_them():
    granules = [gran(i, f"2022-01-{20 + i}", at=T0 + timedelta(seconds=i)) for i in range(5)]
    first = plan_granule_runs(granules, None, collection_id="omi", max_runs=2)
    assert [r.partition_key for r in first.runs] == ["2022-01-20", "2022-01-21"]
    assert "3 run(s) deferred" in first.notes[0]
    mark = cursor_updated_since(first.cursor)
    assert mark == T0 + timedelta(seconds=1)
    again = [g for g in granules if g.revision_date >= mark]  # what CMR returns for updated_since=mark
    second = plan_granule_runs(again, first.cursor, collection_id="omi")
    assert [r.partition_key for r in second.runs] == ["2022-01-22", "2022-01-23", "2022-01-24"]


def test_atom_granules_cannot_be_planned():
    with pytest.raises(ValueError, match="umm_json"):
        plan_granule_runs([replace(gran(1, "2022-01-20"), revision_id=None)], None, collection_id="omi")


def test_planning_5000_granules_is_fast_and_the_cursor_stays_small():
    granules = [
        gran(i, (datetime(2005, 1, 1) + timedelta(days=i)).date().isoformat(), at=T0 + timedelta(milliseconds=i))
        for i in range(5000)
    ]
    started = time.perf_counter()
    plan = plan_granule_runs(granules, None, collection_id="omi")
    again = plan_granule_runs(granules[-10:], plan.cursor, collection_id="omi")
    elapsed = time.perf_counter() - started
    assert len(plan.runs) == 5000 and again.runs == []
    assert elapsed < 0.5, f"planning took {elapsed:.3f}s"
    assert len(plan.cursor) < 200


def test_sensor_ticks_against_the_stand_in(cmr, client):
    """Search + plan as a sensor would: tick 1 plans all, tick 2 nothing, then a revision and a new day."""
    records = _add(cmr, 3)

    def tick(cursor):
        found = client.search_granules(SHORT, VERSION, updated_since=cursor_updated_since(cursor))
        return plan_granule_runs(found, cursor, collection_id="omi")

    first = tick(None)
    assert [r.granule.concept_id for r in first.runs] == [r.concept_id for r in records]
    assert "updated_since" not in cmr.calls_to(SEARCH)[0].query
    second = tick(first.cursor)
    assert second.runs == [] and second.cursor == first.cursor
    assert cmr.calls_to(SEARCH)[-1].q("updated_since") == "2022-01-22T07:33:12Z"
    revised = cmr.revise_granule(records[0].concept_id, revision_date=T0 + timedelta(hours=1))
    new = cmr.add_granule(SHORT, VERSION, "2022-01-23", revision_date=T0 + timedelta(hours=2))
    third = tick(second.cursor)
    assert keys(third) == [
        f"omi:2022-01-20:{revised.concept_id}:r2",
        f"omi:2022-01-23:{new.concept_id}:r1",
    ]
    assert tick(third.cursor).runs == []
