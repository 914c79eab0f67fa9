"""Tests for pipeline.lib.publish: incremental, idempotent appends to the GFW Data API (stand-in)."""

import pandas as pd
import pytest

from pipeline.lib.data_api import DataApiClient, DataApiError
from pipeline.lib.publish import publish_incremental, table_delta
from pipeline.lib.storage import Storage
from pipeline.standins.data_api import DataApiStandin

KEYS = ["geostore__id", "alert__date", "confidence__cat"]
DS = "geostore__viirs__daily_alerts"


def day_table(rows):
    return pd.DataFrame(rows, columns=KEYS + ["alert__count"])


def published_sum(dapi, ds=DS):
    rows = [r for v in dapi.datasets[ds]["versions"] for r in dapi.rows(ds, v)]
    df = pd.DataFrame(rows)
    df["alert__count"] = df["alert__count"].astype(int)
    return df.groupby(KEYS)["alert__count"].sum().to_dict()


def test_table_delta_new_changed_and_removed_rows():
    old = day_table([("a", "2026-11-01", "h", 3), ("b", "2026-11-01", "l", 2)])
    new = day_table([("a", "2026-11-01", "h", 5), ("c", "2026-11-01", "n", 1)])
    delta = table_delta(new, old, KEYS, "alert__count")
    assert delta.values.tolist() == [
        ["a", "2026-11-01", "h", 2],  # late detections: +2
        ["b", "2026-11-01", "l", -2],  # row gone: correction
        ["c", "2026-11-01", "n", 1],  # new row
    ]
    assert table_delta(new, new, KEYS, "alert__count").empty


def test_table_delta_with_several_float_values_keeps_exact_sums():
    keys = ["geostore__id", "umd_tree_cover_loss__year"]
    cols = keys + ["umd_tree_cover_loss__ha", "area__ha"]
    old = pd.DataFrame([("a", 2001, 1.5, 10.0), ("a", 2002, 2.0, 10.0)], columns=cols)
    new = pd.DataFrame([("a", 2001, 1.5, 10.0), ("a", 2002, 2.25, 10.0), ("b", 2001, 0.5, 3.0)], columns=cols)
    delta = table_delta(new, old, keys, ["umd_tree_cover_loss__ha", "area__ha"])
    assert delta.values.tolist() == [["a", 2002, 0.25, 0.0], ["b", 2001, 0.5, 3.0]]  # unchanged row dropped
    assert str(delta.umd_tree_cover_loss__ha.dtype) == "float64"
    assert table_delta(new, new, keys, ["umd_tree_cover_loss__ha", "area__ha"]).empty


@pytest.fixture
def env(tmp_path):
    with DataApiStandin() as dapi:
        client = DataApiClient(base_url=dapi.url, token=dapi.token, backoff=0.01, poll_interval=0.01, poll_timeout=10)
        yield Storage(str(tmp_path / "st")), client, dapi


def test_publish_is_incremental_and_idempotent(env):
    st, client, dapi = env
    st.write_parquet(
        "fire_stats/viirs/daily_alerts/date=2026-11-01.parquet",
        day_table([("a", "2026-11-01", "h", 3), ("b", "2026-11-01", "l", 2)]),
    )
    r1 = publish_incremental(st, client, DS, "fire_stats/viirs/daily_alerts", KEYS)
    assert r1.rows_appended == 2 and r1.files_changed == 1
    assert published_sum(dapi) == {("a", "2026-11-01", "h"): 3, ("b", "2026-11-01", "l"): 2}

    # Same content again: nothing appended, no Data API call at all.
    n_calls = len(dapi.calls)
    r2 = publish_incremental(st, client, DS, "fire_stats/viirs/daily_alerts", KEYS)
    assert r2.rows_appended == 0 and r2.files_changed == 0 and len(dapi.calls) == n_calls

    # The day gets late detections and a second day appears: only the difference is appended.
    st.write_parquet(
        "fire_stats/viirs/daily_alerts/date=2026-11-01.parquet",
        day_table([("a", "2026-11-01", "h", 5), ("b", "2026-11-01", "l", 2)]),
    )
    st.write_parquet("fire_stats/viirs/daily_alerts/date=2026-11-02.parquet", day_table([("a", "2026-11-02", "n", 1)]))
    r3 = publish_incremental(st, client, DS, "fire_stats/viirs/daily_alerts", KEYS)
    assert r3.rows_appended == 2 and r3.files_changed == 2
    assert published_sum(dapi) == {
        ("a", "2026-11-01", "h"): 5,
        ("b", "2026-11-01", "l"): 2,
        ("a", "2026-11-02", "n"): 1,
    }


def test_failed_append_fails_loudly_and_is_retried_without_duplicates(env):
    st, client, dapi = env
    st.write_parquet("t/daily/date=2026-11-01.parquet", day_table([("a", "2026-11-01", "h", 3)]))
    publish_incremental(st, client, DS, "t/daily", KEYS)
    version = next(iter(dapi.datasets[DS]["versions"]))
    st.write_parquet("t/daily/date=2026-11-01.parquet", day_table([("a", "2026-11-01", "h", 4)]))
    dapi.fail_version(DS, version, "source file schema mismatch")
    with pytest.raises(DataApiError, match="failed"):
        publish_incremental(st, client, DS, "t/daily", KEYS)
    # The version stays `failed` upstream: retries keep failing loudly, the ledger does not move.
    with pytest.raises(DataApiError, match="failed"):
        publish_incremental(st, client, DS, "t/daily", KEYS)
    # Once an operator repairs the version, the next run appends the pending +1 exactly once.
    dapi.version(DS, version)["status"] = "saved"
    publish_incremental(st, client, DS, "t/daily", KEYS)
    publish_incremental(st, client, DS, "t/daily", KEYS)
    assert published_sum(dapi) == {("a", "2026-11-01", "h"): 4}
