"""Tests for pipeline.definitions: the code location loads, resources come from the environment, schedule."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from pipeline.definitions import ENV_DEFAULTS, build_defs, defs, resources_from_env

EXPECTED_ASSETS = {
    "fires/viirs_alerts",
    "fires/modis_alerts",
    "areas/user_areas",
    "fire_stats/viirs_daily_alerts",
    "fire_stats/modis_daily_alerts",
    "fire_stats/viirs_area_history",
    "fire_stats/modis_area_history",
    "publish/gfw_fire_tables",
}


def test_code_location_loads_with_every_asset_job_schedule_and_sensor():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys
    for name in ("nightly_sync", "viirs_fires_job", "modis_fires_job"):
        assert defs.resolve_job_def(name)
    assert {s.name for s in repo.schedule_defs} == {"nightly_sync_schedule"}
    assert {s.name for s in repo.sensor_defs} >= {"firms_new_data_sensor", "slack_on_run_failure"}
    for key in EXPECTED_ASSETS:
        node = repo.asset_graph.get(dg.AssetKey.from_user_string(key))
        assert node.description and len(node.description) > 60, key  # written for the UI reader
        assert node.group_name == key.split("/")[0]


def test_resources_use_envvar_for_values_and_defaults_when_unset(monkeypatch):
    for name in ENV_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    res = resources_from_env()
    assert res["storage"].url == ".geopump/storage"
    assert res["firms"].base_url == "https://firms.modaps.eosdis.nasa.gov"
    assert res["firms"].map_key is None
    assert res["data_api"].enabled is False  # no Data API URL: tables stay in storage
    assert res["dask"].scheduler_address is None  # local cluster

    monkeypatch.setenv("FIRMS_MAP_KEY", "very-secret-key")
    monkeypatch.setenv("GEOPUMP_STORAGE_URL", "s3://bucket/prefix")
    res = resources_from_env()
    # The definitions hold the variable's *name*; the value is resolved at run time only.
    assert isinstance(res["firms"].map_key, dg.EnvVar) and res["firms"].map_key.env_var_name == "FIRMS_MAP_KEY"
    assert "very-secret-key" not in repr(res["firms"])
    assert res["firms"].process_config_and_initialize().map_key == "very-secret-key"
    assert res["storage"].process_config_and_initialize().url == "s3://bucket/prefix"


def test_nightly_schedule_runs_the_last_complete_day():
    sched = build_defs().get_schedule_def("nightly_sync_schedule")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 11, 24, 2, 0, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        )
        data = sched.evaluate_tick(ctx)
    assert sched.cron_schedule == "0 2 * * *"
    assert [r.partition_key for r in data.run_requests] == ["2026-11-23"]
    assert data.run_requests[0].run_key == "nightly:2026-11-23"


def test_daily_partitions_include_today_and_start_with_viirs():
    from pipeline.partitions import daily_partitions

    keys = daily_partitions.get_partition_keys(current_time=datetime(2026, 11, 24, 12, tzinfo=UTC))
    assert keys[0] == "2012-01-20" and keys[-1] == "2026-11-24"


@pytest.mark.parametrize("bad", ["2026-13-01", "../../etc", "2026-01-01|x"])
def test_bad_partition_keys_are_rejected(bad):
    from pipeline.partitions import daily_partitions

    assert not daily_partitions.has_partition_key(bad)


@pytest.mark.slow
def test_dg_check_defs_accepts_the_project(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    exe = shutil.which("dg") or str(Path(sys.executable).parent / "dg")
    out = subprocess.run(
        [exe, "check", "defs"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All definitions loaded successfully" in out.stdout + out.stderr
