"""Tests for pipeline.sensors: the FIRMS cursor logic, the sensor against the FIRMS stand-in, Slack alerts."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import dagster as dg
import pandas as pd
import pytest

from pipeline.sensors import PRODUCT_FILES, day_fingerprints, parse_cursor, plan_firms_runs


def frame(rows):
    return pd.DataFrame(rows, columns=["latitude", "longitude", "acq_date", "acq_time", "satellite"])


class FakeFeed:
    """Inputs to the pure planning function: HEAD stamps and parsed files per product file."""

    def __init__(self):
        self.stamps = {fk: "t0" for files in PRODUCT_FILES.values() for fk in files}
        self.data = {fk: frame([]) for fk in self.stamps}
        self.fetched = []

    def head(self, fk):
        return {"last_modified": self.stamps[fk], "etag": None}

    def fetch(self, fk):
        self.fetched.append(fk)
        return self.data[fk]


def test_first_tick_requests_every_day_present():
    feed = FakeFeed()
    feed.data["VIIRS_NOAA20"] = frame(
        [(1.0, 2.0, "2026-11-23", "0100", "N20"), (1.0, 2.0, "2026-11-24", "0200", "N20")]
    )
    feed.data["MODIS"] = frame([(3.0, 4.0, "2026-11-24", "0300", "Aqua")])
    reqs, state, logs = plan_firms_runs(None, feed.head, feed.fetch)
    assert sorted((p, d) for p, d, _ in reqs) == [
        ("modis", "2026-11-24"),
        ("viirs", "2026-11-23"),
        ("viirs", "2026-11-24"),
    ]
    assert logs == []
    assert len(json.dumps(state)) < 2000  # the cursor stays small


def test_nothing_new_fetches_nothing_and_requests_nothing():
    feed = FakeFeed()
    feed.data["VIIRS_SNPP"] = frame([(1.0, 2.0, "2026-11-24", "0100", "N")])
    _, state, _ = plan_firms_runs(None, feed.head, feed.fetch)
    feed.fetched.clear()
    reqs, state2, _ = plan_firms_runs(json.dumps(state), feed.head, feed.fetch)
    assert reqs == [] and feed.fetched == []
    assert state2["days"] == state["days"]


def test_new_detections_request_only_the_changed_day():
    feed = FakeFeed()
    feed.data["VIIRS_SNPP"] = frame([(1.0, 2.0, "2026-11-23", "0100", "N"), (1.0, 2.0, "2026-11-24", "0200", "N")])
    _, state, _ = plan_firms_runs(None, feed.head, feed.fetch)
    # A new pass adds detections to 11-24 only; the file's Last-Modified changes.
    feed.data["VIIRS_SNPP"] = frame(
        [
            (1.0, 2.0, "2026-11-23", "0100", "N"),
            (1.0, 2.0, "2026-11-24", "0200", "N"),
            (5.0, 6.0, "2026-11-24", "1300", "N"),
        ]
    )
    feed.stamps["VIIRS_SNPP"] = "t1"
    feed.fetched.clear()
    reqs, _, _ = plan_firms_runs(json.dumps(state), feed.head, feed.fetch)
    assert [(p, d) for p, d, _ in reqs] == [("viirs", "2026-11-24")]
    assert feed.fetched == ["VIIRS_SNPP"]  # unchanged files are not downloaded


def test_file_rewritten_with_same_rows_requests_nothing():
    feed = FakeFeed()
    feed.data["MODIS"] = frame([(3.0, 4.0, "2026-11-24", "0300", "Aqua")])
    _, state, _ = plan_firms_runs(None, feed.head, feed.fetch)
    feed.stamps["MODIS"] = "t9"
    reqs, _, _ = plan_firms_runs(json.dumps(state), feed.head, feed.fetch)
    assert reqs == []


@pytest.mark.parametrize("bad", ["{not json", "[]", '{"v": 99}', '{"v": 1, "files": 3, "days": {}}'])
def test_corrupt_cursor_starts_over_with_a_warning(bad):
    state, warning = parse_cursor(bad)
    assert state == {"v": 1, "files": {}, "days": {}}
    assert "ignoring unreadable cursor" in warning
    feed = FakeFeed()
    feed.data["MODIS"] = frame([(3.0, 4.0, "2026-11-24", "0300", "Aqua")])
    reqs, _, logs = plan_firms_runs(bad, feed.head, feed.fetch)
    assert [(p, d) for p, d, _ in reqs] == [("modis", "2026-11-24")] and logs


def test_invalid_days_are_not_requested():
    feed = FakeFeed()
    feed.data["MODIS"] = frame([(3.0, 4.0, "2099-01-01", "0300", "Aqua")])
    reqs, _, _ = plan_firms_runs(None, feed.head, feed.fetch, valid_day=lambda d: d < "2030")
    assert reqs == []


def test_fingerprint_is_order_independent_and_sensitive():
    a = frame([(1.0, 2.0, "2026-11-24", "0100", "N"), (3.0, 4.0, "2026-11-24", "0200", "N")])
    assert day_fingerprints(a) == day_fingerprints(a.iloc[::-1])
    b = a.copy()
    b.loc[0, "acq_time"] = "0101"
    assert day_fingerprints(a) != day_fingerprints(b)


def _sensor_tick(sensor, firms_url, map_key, cursor, instance):
    from pipeline.definitions import build_defs
    from pipeline.resources import FirmsResource

    resources = {"firms": FirmsResource(base_url=firms_url, map_key=map_key, backoff=0.01, max_retries=1)}
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=build_defs())
    return sensor(ctx)


def test_firms_sensor_against_the_standin():
    from datetime import datetime

    from pipeline.sensors import firms_new_data_sensor
    from pipeline.standins.firms import FirmsStandin

    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    with FirmsStandin(today=today, seed=11, days_back=10) as firms, dg.instance_for_test() as instance:
        # First tick: both days of every 24h file are new.
        first = _sensor_tick(firms_new_data_sensor, firms.url, firms.map_key, None, instance)
        got = sorted((r.job_name, r.partition_key) for r in first.run_requests)
        assert got == sorted((f"{p}_fires_job", d.isoformat()) for p in ("viirs", "modis") for d in (yesterday, today))
        assert len({r.run_key for r in first.run_requests}) == 4
        assert len(first.cursor) < 4000
        # Nothing new: HEAD requests only, no downloads, no runs.
        n_gets = len(firms.calls_to(r"_24h\.csv$", method="GET"))
        second = _sensor_tick(firms_new_data_sensor, firms.url, firms.map_key, first.cursor, instance)
        assert not second.run_requests and second.skip_reason
        assert len(firms.calls_to(r"_24h\.csv$", method="GET")) == n_gets
        # New MODIS detections for today: one run, for MODIS today only.
        firms.add_fires(today, "MODIS", n=25, seed=5)
        third = _sensor_tick(firms_new_data_sensor, firms.url, firms.map_key, second.cursor, instance)
        assert [(r.job_name, r.partition_key) for r in third.run_requests] == [("modis_fires_job", today.isoformat())]
        assert third.run_requests[0].run_key not in {r.run_key for r in first.run_requests}
        # A corrupt cursor is survived: everything is requested again, with the same idempotent run keys.
        fourth = _sensor_tick(firms_new_data_sensor, firms.url, firms.map_key, "{garbage", instance)
        assert {r.run_key for r in fourth.run_requests} >= {r.run_key for r in third.run_requests}
