"""Tests for pipeline.lib.fire_tables: table maintenance, idempotent merges, history on a real Dask cluster."""

import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from pipeline import constants as C
from pipeline.lib import fire_tables as T
from pipeline.lib.storage import Storage
from pipeline_tests.conftest import free_port

DAYS = [(date(2026, 11, 2) + timedelta(days=i)).isoformat() for i in range(6)]


def seed_alerts(st: Storage, product="viirs", n=400, seed=0):
    rng = np.random.default_rng(seed)
    for day in DAYS:
        df = pd.DataFrame(
            {
                "longitude": rng.uniform(0, 10, n),
                "latitude": rng.uniform(0, 10, n),
                "acq_date": day,
                "confidence__cat": rng.choice(["l", "n", "h"], n),
            }
        )
        st.write_parquet(
            C.alerts_path(product, day),
            gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df.longitude, df.latitude), crs="EPSG:4326"),
        )


def features(n=12, seed=1):
    rng = np.random.default_rng(seed)
    geoms = []
    for _ in range(n):
        x, y = rng.uniform(0, 9, 2)
        geoms.append(box(x, y, x + rng.uniform(0.3, 2), y + rng.uniform(0.3, 2)))
    return gpd.GeoDataFrame({T.ID: [f"{i:032x}" for i in range(n)]}, geometry=geoms, crs="EPSG:4326")


def slow_count(st, day, feats):
    """Oracle: per feature, per point, shapely intersects."""
    pts = st.read_parquet(C.alerts_path("viirs", day))
    out = {}
    for fid, geom in zip(feats[T.ID], feats.geometry, strict=False):
        for conf, g in pts.groupby("confidence__cat"):
            n = int(sum(geom.intersects(p) for p in g.geometry))
            if n:
                out[(fid, day, conf)] = n
    return out


def test_merge_replaces_only_the_given_areas():
    cur = pd.DataFrame(
        {T.ID: ["a", "b"], "alert__date": ["d", "d"], "confidence__cat": ["h", "h"], "alert__count": [1, 2]}
    )
    new = pd.DataFrame(
        {T.ID: ["b", "c"], "alert__date": ["d", "d"], "confidence__cat": ["h", "l"], "alert__count": [5, 1]}
    )
    out = T.merge_area_rows(cur, new, ["b", "c"])
    assert out.values.tolist() == [["a", "d", "h", 1], ["b", "d", "h", 5], ["c", "d", "l", 1]]
    # Idempotent: merging the same rows again changes nothing.
    assert T.merge_area_rows(out, new, ["b", "c"]).equals(out)


def test_iso_weeks_and_weekly_rebuild(tmp_path):
    assert T.iso_week("2021-01-03") == (2020, 53) and T.iso_week("2024-12-30") == (2025, 1)
    assert T.days_of_iso_week(2020, 53) == [f"2020-12-{d}" for d in range(28, 32)] + [
        "2021-01-01",
        "2021-01-02",
        "2021-01-03",
    ]
    st = Storage(str(tmp_path))
    for day, n in (("2020-12-31", 2), ("2021-01-03", 3), ("2021-01-04", 7)):
        T.write_daily(
            st,
            "viirs",
            day,
            pd.DataFrame({T.ID: ["a"], "alert__date": [day], "confidence__cat": ["h"], "alert__count": [n]}),
        )
    T.rebuild_weekly(st, "viirs", ["2020-12-31", "2021-01-04"])
    w53 = st.read_parquet(C.weekly_table_path("viirs", 2020, 53))
    w1 = st.read_parquet(C.weekly_table_path("viirs", 2021, 1))
    assert w53.alert__count.tolist() == [5] and w1.alert__count.tolist() == [7]


def test_missing_alert_partition_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="fires/viirs_alerts partition 2026-01-01 is not materialised"):
        T.read_alerts(Storage(str(tmp_path)), "viirs", "2026-01-01")


def test_history_counts_match_a_slow_oracle(tmp_path):
    st = Storage(str(tmp_path))
    seed_alerts(st, n=120)
    feats = features(5)
    got = T.history_counts(st, "viirs", feats, DAYS[:2])
    for day in DAYS[:2]:
        table = got[day]
        as_dict = {(r[T.ID], r.alert__date, r.confidence__cat): r.alert__count for _, r in table.iterrows()}
        assert as_dict == slow_count(st, day, feats)


@pytest.fixture
def dask_cluster(tmp_path):
    """A real scheduler and a two-process worker pool on loopback."""
    port = free_port()
    exe = shutil.which("dask") or str(Path(sys.executable).parent / "dask")
    sched = subprocess.Popen(
        [exe, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [
            exe,
            "worker",
            f"tcp://127.0.0.1:{port}",
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--local-directory",
            str(tmp_path / "dask"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from distributed import Client

    address = f"tcp://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with Client(address, timeout="5s") as c:
                    c.wait_for_workers(2, timeout=30)
                    break
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    raise
                time.sleep(1)
        yield address
    finally:
        for p in (worker, sched):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.cluster
@pytest.mark.slow
def test_history_on_a_real_dask_cluster_equals_local(tmp_path, dask_cluster):
    import os

    from distributed import Client, get_task_stream

    st = Storage(str(tmp_path / "st"))
    seed_alerts(st, n=3000, seed=4)
    feats = features(40, seed=9)
    local = T.history_counts(st, "viirs", feats, DAYS)
    with Client(dask_cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        with get_task_stream(client) as ts:
            remote = T.history_counts(st, "viirs", feats, DAYS, dask_client=client, days_per_task=2)
    assert os.getpid() not in worker_pids and len(worker_pids) == 2
    ran = [t for t in ts.data if "_count_days_task" in t["key"]]
    assert len(ran) == 3  # six days, two per task, all executed on the cluster's workers
    for day in DAYS:
        pd.testing.assert_frame_equal(remote[day], local[day])
    assert sum(len(t) for t in remote.values()) > 0


@pytest.mark.cluster
@pytest.mark.slow
def test_history_asset_uses_the_configured_scheduler(tmp_path, dask_cluster):
    import dagster as dg
    from distributed import Client

    from pipeline.assets.fire_stats import viirs_area_history
    from pipeline.resources import DaskResource, StorageResource

    st = Storage(str(tmp_path / "st"))
    seed_alerts(st, n=500, seed=2)
    feats = features(10, seed=3)
    ua = feats.assign(area_id=[f"a{i}" for i in range(len(feats))], status="accepted")
    st.write_parquet(C.user_areas_path("2026-11-07"), ua)
    with Client(dask_cluster) as c:
        before = sum(v for v in c.run(lambda dask_worker: dask_worker.state.executed_count).values())
    with dg.instance_for_test() as instance:
        res = dg.materialize(
            [viirs_area_history],
            partition_key="2026-11-07",
            instance=instance,
            resources={"storage": StorageResource(url=st.url), "dask": DaskResource(scheduler_address=dask_cluster)},
        )
    assert res.success
    with Client(dask_cluster) as c:
        after = sum(v for v in c.run(lambda dask_worker: dask_worker.state.executed_count).values())
    assert after > before
    marker = st.read_json(C.history_marker_path("viirs", "2026-11-07"))
    assert marker["fire_days"] == len(DAYS) and len(marker["geostores"]) == 10
    for day in DAYS:
        expected = T.count_day(st, "viirs", day, feats)
        got = st.read_parquet(C.daily_table_path("viirs", day))
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False)
