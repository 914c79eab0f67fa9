"""Tests for pipeline.cli: `geopump demo` and `geopump sync` run as real commands."""

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from pipeline.lib.storage import Storage
from pipeline.standins import standin_env
from pipeline.standins.area_samples import generate_areas
from pipeline.standins.areas import AreasStandin
from pipeline.standins.data_api import DataApiStandin
from pipeline.standins.fire_samples import SAMPLE_HOTSPOTS
from pipeline.standins.firms import FirmsStandin

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def geopump(*args, env=None, cwd=None, timeout=600):
    exe = shutil.which("geopump")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "pipeline.cli", *args]
    return subprocess.run(
        cmd, env=env, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_demo_runs_the_nightly_sync_against_standins(tmp_path):
    out = geopump("demo", "--dir", str(tmp_path / "demo"), "--days", "2", "--areas", "60")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for key in (
        "fires/viirs_alerts",
        "fires/modis_alerts",
        "areas/user_areas",
        "fire_stats/viirs_daily_alerts",
        "fire_stats/modis_area_history",
        "publish/gfw_fire_tables",
    ):
        assert key in text, key
    assert "demo finished: success" in text
    saved = int(text.split("areas: ")[1].split(" saved")[0])
    assert saved > 0
    # A real instance recorded the runs, and the outputs are on disk.
    with dg.DagsterInstance.from_config(str(tmp_path / "demo" / "dagster_home")) as instance:
        runs = instance.get_runs()
        assert len([r for r in runs if r.job_name == "nightly_sync"]) == 2
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    st = Storage(str(tmp_path / "demo" / "storage"))
    assert len(st.list("fires/viirs_alerts")) == 2 and st.list("fire_stats/viirs/daily_alerts")
    # The tile releases were built from the GCS stand-in and published.
    assert "integrated_alerts" in text and st.exists("deforestation/integrated_alerts/LATEST.json")
    # Two days of each shipped collection became COGs and STAC items in the static catalog.
    import pystac

    catalog = pystac.Catalog.from_file(st.uri("stac/catalog.json"))
    items = sorted(i.id for i in catalog.get_items(recursive=True))
    assert len(items) == 4 and all(i.startswith(("OMDOAO3e_003_", "OMTO3d_003_")) for i in items)
    assert text.count("COG + STAC item") == 4


@pytest.fixture
def standins():
    today = datetime.now(UTC).date()
    areas, geostores = generate_areas(20, seed=2, hotspots=[(h.lon, h.lat) for h in SAMPLE_HOTSPOTS])
    with (
        FirmsStandin(today=today, seed=2) as firms,
        AreasStandin(areas=areas, geostores=geostores) as gfw,
        DataApiStandin() as dapi,
    ):
        yield today, firms, gfw, dapi


def sync_env(tmp_path, firms, gfw, dapi):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GEOPUMP_STORAGE_URL": str(tmp_path / "storage"),
        **standin_env(firms, gfw, dapi),
    }


def test_sync_succeeds_against_configured_endpoints(tmp_path, standins):
    today, firms, gfw, dapi = standins
    day = (today - timedelta(days=1)).isoformat()
    out = geopump("sync", "--date", day, env=sync_env(tmp_path, firms, gfw, dapi))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "success" in out.stdout
    assert Storage(str(tmp_path / "storage")).exists(f"fires/viirs_alerts/date={day}.parquet")
    assert dapi.datasets  # tables were published
    assert firms.map_key not in out.stdout + out.stderr and gfw.token not in out.stdout + out.stderr


def test_sync_exits_nonzero_when_a_source_is_down(tmp_path, standins):
    today, firms, gfw, dapi = standins
    # Retry-After: 0 keeps the client's bounded retries but skips the production back-off waits.
    firms.fail_next(r"/data/active_fire/", 500, "Internal Server Error", times=1000, headers={"Retry-After": "0"})
    env = sync_env(tmp_path, firms, gfw, dapi)
    out = geopump("sync", "--date", (today - timedelta(days=1)).isoformat(), env=env, timeout=900)
    assert out.returncode == 1
    assert "FAILED" in out.stdout and "FIRMS" in out.stderr


def test_sync_rejects_a_bad_date(tmp_path):
    out = geopump("sync", "--date", "2026-02-30", env={**os.environ, "DAGSTER_HOME": str(tmp_path)})
    assert out.returncode == 2 and "is not a YYYY-MM-DD date" in out.stderr
