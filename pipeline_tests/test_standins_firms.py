"""pipeline_tests.test_standins_firms: the real FirmsClient against the loopback FIRMS stand-in."""

from __future__ import annotations

import email.utils
import logging
import re
from collections import Counter
from datetime import date, timedelta

import pandas as pd
import pytest
import requests

from pipeline.lib.firms import (
    AREA_SOURCES,
    GLOBAL_PRODUCTS,
    FirmsClient,
    FirmsError,
    FirmsFormatError,
    dedupe_alerts,
)
from pipeline.lib.http import SourceError
from pipeline.standins.fire_samples import (
    CSV_COLUMNS,
    SAMPLE_HOTSPOTS,
    generate_fires,
    to_csv_text,
)
from pipeline.standins.firms import MALFORMED_PER_FILE, OVER_QUOTA_BODY, FirmsStandin

TODAY = date(2026, 9, 27)
KEY = "s3cr3t-map-key-0123456789"


@pytest.fixture(scope="module")
def shared_server():
    with FirmsStandin(today=TODAY, map_key=KEY, seed=7, days_back=90) as srv:
        yield srv


@pytest.fixture
def server(shared_server):
    """The shared stand-in with an empty call log; tests using it must not change its data."""
    shared_server.reset_log()
    yield shared_server
    assert shared_server.today == TODAY, "a test changed the shared stand-in's data; use fresh_server"


@pytest.fixture
def fresh_server():
    """A private stand-in for tests that add fires or move 'today'."""
    with FirmsStandin(today=TODAY, map_key=KEY, seed=7, days_back=90) as srv:
        yield srv


class SleepLog(list):
    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def sleeps():
    return SleepLog()


@pytest.fixture
def client(server, sleeps):
    return FirmsClient(server.url, map_key=KEY, timeout=5, max_retries=3, backoff=0.001, sleep=sleeps)


def days_ago(*offsets):
    return [TODAY - timedelta(days=o) for o in offsets]


def truth_keys(server, instrument, days, satellites=None, bbox=None):
    """Detection keys the stand-in holds (dedupe key form) for these days."""
    frames = [server.rows_for(instrument, d) for d in days]
    df = pd.concat(frames, ignore_index=True)
    if satellites is not None:
        df = df[df["satellite"].isin(satellites)]
    if bbox is not None:
        w, s, e, n = bbox
        df = df[df["longitude"].between(w, e) & df["latitude"].between(s, n)]
    return Counter(
        (round(lat, 5), round(lon, 5), d, f"{int(t):04d}", sat)
        for lat, lon, d, t, sat in zip(
            df["latitude"], df["longitude"], df["acq_date"], df["acq_time"], df["satellite"], strict=True
        )
    )


def parsed_keys(df):
    return Counter(
        (round(lat, 5), round(lon, 5), d, t, sat)
        for lat, lon, d, t, sat in zip(
            df["latitude"], df["longitude"], df["acq_date"], df["acq_time"], df["satellite"], strict=True
        )
    )


def area_calls(server):
    """(source, first_day, day_range) of every area-API call the stand-in saw."""
    out = []
    for call in server.calls_to(r"^/api/area/csv/"):
        _, _, _, _, key, source, area, day_range, first = call.path.split("/")
        out.append((source, date.fromisoformat(first), int(day_range)))
    return out


# -- sample generator ---------------------------------------------------------------------------------


def test_generate_fires_is_deterministic_and_realistic():
    a = generate_fires(TODAY, "VIIRS", seed=3)
    b = generate_fires(TODAY, "viirs", seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not generate_fires(TODAY - timedelta(days=1), "VIIRS", seed=3).equals(a)
    assert not generate_fires(TODAY, "VIIRS", seed=4).equals(a)
    assert list(a.columns) == CSV_COLUMNS["VIIRS"] and 1800 <= len(a) <= 2200
    assert set(a["satellite"]) == {"N", "N20", "N21"} and set(a["confidence"]) == {"l", "n", "h"}
    assert set(a["daynight"]) == {"D", "N"} and set(a["version"]) == {"2.0NRT"}
    assert any(len(t) < 4 for t in a["acq_time"]), "some acq_time values must be unpadded, as seen in real data"

    m = generate_fires(TODAY, "MODIS")
    assert list(m.columns) == CSV_COLUMNS["MODIS"] and 450 <= len(m) <= 550
    assert set(m["satellite"]) == {"Terra", "Aqua"} and m["confidence"].between(0, 100).all()

    lines = to_csv_text(a.head(3)).splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS["VIIRS"])
    assert re.match(r"^-?\d+\.\d{5},-?\d+\.\d{5},", lines[1])


def test_fires_cluster_around_sample_hotspots():
    df = generate_fires(TODAY, "VIIRS", seed=1)
    inside = pd.Series(False, index=df.index)
    for spot in SAMPLE_HOTSPOTS:
        w, s, e, n = spot.bbox
        inside |= df["longitude"].between(w, e) & df["latitude"].between(s, n)
    assert inside.mean() > 0.85
    spot = SAMPLE_HOTSPOTS[0]
    only = generate_fires(TODAY, "MODIS", n=200, clusters=[spot])
    assert (abs(only["longitude"] - spot.lon) < 3 * spot.radius_deg).all()


# -- global files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("product_key", list(GLOBAL_PRODUCTS))
def test_global_7d_fetch_equals_ground_truth(server, client, product_key):
    product = GLOBAL_PRODUCTS[product_key]
    parsed = client.fetch_global(product_key, "7d")
    expected = truth_keys(server, product.instrument, days_ago(*range(6, -1, -1)), product.satellites)
    assert parsed_keys(parsed.df) == expected
    assert parsed.dropped == MALFORMED_PER_FILE and len(parsed.problems) == MALFORMED_PER_FILE
    assert parsed.rows_read == sum(expected.values()) + MALFORMED_PER_FILE
    assert set(parsed.df["source"]) == {f"{product.name}_7d.csv"}
    assert len(server.calls_to(rf"/{product.name}_7d\.csv$", method="GET")) == 1


def test_global_24h_spans_today_and_yesterday(fresh_server):
    server, client = fresh_server, FirmsClient(fresh_server.url)
    parsed = client.fetch_global("MODIS", "24h")
    assert set(parsed.df["acq_date"]) == {str(TODAY - timedelta(days=1)), str(TODAY)}
    server.set_today(TODAY + timedelta(days=1))
    moved = client.fetch_global("MODIS", "24h")
    assert set(moved.df["acq_date"]) == {str(TODAY), str(TODAY + timedelta(days=1))}


def test_head_reports_freshness_headers(server, client):
    head = client.head_global("VIIRS_NOAA20", "7d")
    body = requests.get(client.global_file_url("VIIRS_NOAA20", "7d"), timeout=5).content
    assert head["content_length"] == len(body)
    assert email.utils.parsedate_to_datetime(head["last_modified"]).tzinfo is not None
    assert head["etag"].startswith('"') and len(server.calls_to(r"J1_VIIRS_C2_Global_7d", method="HEAD")) == 1


def test_last_modified_and_etag_change_after_new_data(fresh_server):
    server, client = fresh_server, FirmsClient(fresh_server.url)
    before = {key: client.head_global(key, "7d") for key in GLOBAL_PRODUCTS}
    rows_before = len(client.fetch_global("MODIS", "7d").df)
    added = server.add_fires(TODAY, "MODIS", n=40, seed=99)
    after = {key: client.head_global(key, "7d") for key in GLOBAL_PRODUCTS}
    assert after["MODIS"]["last_modified"] != before["MODIS"]["last_modified"]
    assert after["MODIS"]["etag"] != before["MODIS"]["etag"]
    assert email.utils.parsedate_to_datetime(after["MODIS"]["last_modified"]) > email.utils.parsedate_to_datetime(
        before["MODIS"]["last_modified"]
    )
    assert after["VIIRS_SNPP"] == before["VIIRS_SNPP"]  # only the changed product moves
    assert len(client.fetch_global("MODIS", "7d").df) == rows_before + len(added) == rows_before + 40


def test_unknown_global_file_is_404(server):
    resp = requests.get(f"{server.url}/data/active_fire/modis-c6.1/csv/MODIS_C6_1_Global_30d.csv", timeout=5)
    assert resp.status_code == 404


# -- area API ---------------------------------------------------------------------------------------------


def test_fetch_area_returns_exactly_the_requested_days(server, client):
    first = TODAY - timedelta(days=20)
    parsed = client.fetch_area("VIIRS_NOAA20_NRT", first, 5)
    days = [first + timedelta(days=i) for i in range(5)]
    assert set(parsed.df["acq_date"]) == {d.isoformat() for d in days}
    assert parsed_keys(parsed.df) == truth_keys(server, "VIIRS", days, ("N20",))
    assert parsed.dropped == MALFORMED_PER_FILE
    assert area_calls(server) == [("VIIRS_NOAA20_NRT", first, 5)]


def test_area_bbox_and_sp_version(server, client):
    spot = SAMPLE_HOTSPOTS[3]
    day = TODAY - timedelta(days=70)
    parsed = client.fetch_area("MODIS_SP", day, 1, area=spot.bbox)
    assert len(parsed.df) > 0
    assert parsed_keys(parsed.df) == truth_keys(server, "MODIS", [day], bbox=spot.bbox)
    assert set(parsed.df["version"]) == {"6.1"}


def test_area_outside_served_range_is_header_only(server, client):
    parsed = client.fetch_area("MODIS_SP", TODAY - timedelta(days=400), 2)
    assert (len(parsed.df), parsed.rows_read, parsed.dropped) == (0, 0, 0)


def test_standin_rejects_bad_day_range_and_source(server):
    base = f"{server.url}/api/area/csv/{KEY}"
    for path in ("/MODIS_NRT/world/6/2026-09-20", "/MODIS_NRT/world/0", "/GOES_NRT/world/1"):
        resp = requests.get(base + path, timeout=5)
        assert resp.status_code == 400 and "latitude" not in resp.text.splitlines()[0]
    ok = requests.get(base + "/MODIS_NRT/world/1", timeout=5)
    assert ok.status_code == 200 and ok.text.startswith("latitude,")


def test_invalid_map_key_is_400_and_key_never_in_error_or_logs(server, caplog):
    bad_key = "WRONG-key-abcdef987654"
    client = FirmsClient(server.url, map_key=bad_key, max_retries=3, backoff=0.001, sleep=lambda s: None)
    with caplog.at_level(logging.DEBUG), pytest.raises(FirmsError) as err:
        client.fetch_area("VIIRS_SNPP_NRT", TODAY, 1)
    assert err.value.status == 400
    assert "Invalid MAP_KEY." in str(err.value) and "FIRMS_MAP_KEY" in str(err.value)
    assert bad_key not in str(err.value) and bad_key not in repr(err.value) and bad_key not in err.value.body
    assert bad_key not in caplog.text
    assert len(server.calls) == 1  # a 400 is not retried
    assert bad_key in server.calls[0].path  # ...but the key really was sent


def test_error_body_with_200_raises_format_error(server, client):
    server.fail_next(r"^/api/area/", 200, OVER_QUOTA_BODY)
    with pytest.raises(FirmsFormatError) as err:
        client.fetch_area("VIIRS_SNPP_NRT", TODAY, 1)
    assert "VIIRS_SNPP_NRT" in str(err.value) and "exceeded your transaction" in str(err.value)


def test_key_status_counts_transactions(server, client):
    assert client.key_status()["current_transactions"] == 0
    client.fetch_area("MODIS_NRT", TODAY - timedelta(days=10), 3)
    status = client.key_status()
    assert status == {
        "transaction_limit": 5000,
        "current_transactions": 3,
        "transaction_interval": "10 minutes",
    }


# -- fetch_days -------------------------------------------------------------------------------------------


def test_fetch_days_mixes_global_and_area_and_fetches_each_day_once(server, client):
    nrt_days = days_ago(*range(10, 22))  # 12 consecutive days -> chunks of 5, 5, 2
    sp_days = days_ago(65, 66)
    recent = days_ago(0, 2)
    wanted = recent + nrt_days + sp_days
    result = client.fetch_days("VIIRS", wanted, today=TODAY, sp_after_days=60)

    # Each global 7d file once, nothing else from the global tree.
    global_calls = server.calls_to(r"^/data/active_fire/")
    assert sorted(c.path.rsplit("/", 1)[1] for c in global_calls) == [
        "J1_VIIRS_C2_Global_7d.csv",
        "J2_VIIRS_C2_Global_7d.csv",
        "SUOMI_VIIRS_C2_Global_7d.csv",
    ]
    # Area calls: every day covered exactly once per source, chunks <= 5, SP only for SNPP/NOAA20.
    calls = area_calls(server)
    assert all(1 <= n <= 5 for _, _, n in calls)
    covered: dict[str, Counter] = {}
    for source, first, n in calls:
        covered.setdefault(source, Counter()).update(first + timedelta(days=i) for i in range(n))
    for source in AREA_SOURCES["VIIRS"]["NRT"]:
        assert covered[source] == Counter(nrt_days), source
    for source in AREA_SOURCES["VIIRS"]["SP"]:
        assert covered[source] == Counter(sp_days), source
    assert "VIIRS_NOAA21_SP" not in covered
    assert sorted(n for s, _, n in calls if s == "VIIRS_SNPP_NRT") == [2, 5, 5]
    assert len(server.calls) == len(result.requests) == 3 + 9 + 2

    # Results: every requested day present, equal to the stand-in's ground truth.
    assert set(result.by_day) == set(wanted)
    for day in wanted:
        df = result.by_day[day]
        assert set(df["acq_date"]) == {day.isoformat()}
        sats = ("N", "N20") if day in sp_days else None  # no NOAA-21 archive
        assert parsed_keys(df) == truth_keys(server, "VIIRS", [day], sats), day
        assert df.index.tolist() == list(range(len(df)))
    assert result.dropped == MALFORMED_PER_FILE * (3 + 9 + 2)
    assert all(KEY not in url for url in result.requests) and "***" in result.requests[-1]


def test_fetch_days_without_key_for_old_days_names_days_and_makes_no_call(server):
    client = FirmsClient(server.url, map_key=None)
    with pytest.raises(FirmsError) as err:
        client.fetch_days("MODIS", days_ago(1, 9, 10), today=TODAY)
    message = str(err.value)
    assert "FIRMS_MAP_KEY" in message and "2026-09-18" in message and "2026-09-17" in message
    assert "2026-09-26" not in message
    assert server.calls == []


def test_fetch_days_recent_only_needs_no_key_and_keeps_empty_days(server):
    client = FirmsClient(server.url, map_key=None)
    result = client.fetch_days("MODIS", days_ago(1, 3), today=TODAY)
    assert [c.path.rsplit("/", 1)[1] for c in server.calls] == ["MODIS_C6_1_Global_7d.csv"]
    for day in days_ago(1, 3):
        assert parsed_keys(result.by_day[day]) == truth_keys(server, "MODIS", [day])
    # A day with no detections is still present, as an empty frame with the schema.
    quiet = FirmsStandin(today=TODAY, map_key=KEY, days_back=0)
    with quiet:
        result = FirmsClient(quiet.url).fetch_days("MODIS", days_ago(0, 1), today=TODAY)
    assert len(result.by_day[TODAY]) > 0 and result.by_day[TODAY - timedelta(days=1)].empty
    assert list(result.by_day[TODAY - timedelta(days=1)].columns) == list(result.by_day[TODAY].columns)


def test_fetch_days_dedupes_overlapping_rows(server, client):
    result = client.fetch_days("MODIS", days_ago(0), today=TODAY)
    df = result.by_day[TODAY]
    assert len(df) == len(dedupe_alerts(df))
    assert list(
        df.sort_values(["acq_date", "acq_time", "satellite", "latitude", "longitude"], kind="mergesort").index
    ) == list(df.index)


# -- retries and failures ------------------------------------------------------------------------------


def test_429_with_retry_after_then_success(server, client, sleeps):
    server.fail_next(r"^/api/area/", 429, "Too Many Requests", headers={"Retry-After": "7"}, times=2)
    parsed = client.fetch_area("MODIS_NRT", TODAY - timedelta(days=8), 1)
    assert len(parsed.df) > 0
    assert len(server.calls_to(r"^/api/area/")) == 3
    assert sleeps == [7.0, 7.0]


def test_5xx_exhausted_raises_source_error_naming_firms(server, client):
    server.fail_next(r"_7d\.csv$", 503, "Service Unavailable", times=10)
    with pytest.raises(SourceError) as err:
        client.fetch_global("VIIRS_SNPP", "7d")
    assert str(err.value).startswith("FIRMS:") and err.value.status == 503
    assert "4 attempts" in str(err.value)
    assert len(server.calls) == 4  # 1 + max_retries


def test_timeout_without_retries_raises(server):
    client = FirmsClient(server.url, map_key=KEY, timeout=0.3, max_retries=0, sleep=lambda s: None)
    server.fail_next(r"_24h\.csv$", 200, "latitude\n", delay=1.5)
    with pytest.raises(FirmsError, match="Timeout"):
        client.fetch_global("MODIS", "24h")
    assert len(server.calls) == 1


def test_timeout_then_retry_succeeds(server, sleeps):
    client = FirmsClient(server.url, map_key=KEY, timeout=0.3, max_retries=2, backoff=0.001, sleep=sleeps)
    server.fail_next(r"_24h\.csv$", 200, "latitude\n", delay=1.5)
    parsed = client.fetch_global("MODIS", "24h")
    assert len(parsed.df) > 0 and len(server.calls) == 2 and len(sleeps) == 1
