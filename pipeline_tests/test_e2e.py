"""End-to-end: the real dagster-webserver and dagster-daemon run a partition backfill launched over GraphQL."""

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from pipeline import constants as C
from pipeline.lib.storage import Storage
from pipeline.standins import standin_env
from pipeline.standins.area_samples import generate_areas
from pipeline.standins.areas import AreasStandin
from pipeline.standins.cmr import CmrStandin, EarthdataStandin
from pipeline.standins.data_api import DataApiStandin
from pipeline.standins.fire_samples import SAMPLE_HOTSPOTS
from pipeline.standins.firms import FirmsStandin
from pipeline_tests.conftest import free_port, make_bucket, read_s3_uri

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.cluster]

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  }
}"""

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions }
    ... on PythonError { message }
  }
}"""


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def _kill(proc: subprocess.Popen) -> None:
    # dagster spawns children (code server, gRPC); kill the whole process group.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except Exception:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(params=["sqlite-local", pytest.param("postgres-s3", marks=[pytest.mark.db, pytest.mark.s3])])
def dagster_stack(tmp_path, request, monkeypatch):
    """Stand-ins + webserver + daemon with a temporary DAGSTER_HOME.

    Two deployments: the embedded default (SQLite instance, local outputs) and the scaled-out one
    (Postgres instance via deploy/dagster-postgres.yaml, outputs on S3 through the moto server).
    """
    today = datetime.now(UTC).date()
    areas, geostores = generate_areas(30, seed=5, hotspots=[(h.lon, h.lat) for h in SAMPLE_HOTSPOTS])
    firms = FirmsStandin(today=today, seed=5).start()
    gfw = AreasStandin(areas=areas, geostores=geostores).start()
    dapi = DataApiStandin().start()
    data_host = EarthdataStandin(users={"e2e-user": "e2e-pass"}).start()
    cmr = CmrStandin(data_base_url=data_host.url).start()
    home = tmp_path / "home"
    home.mkdir()
    extra_env = {}
    if request.param == "postgres-s3":
        shutil.copy(ROOT / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
        db = request.getfixturevalue("temp_pg_database")
        extra_env = {
            "DAGSTER_PG_USERNAME": "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_DB": db,
        }
        for k, v in extra_env.items():
            monkeypatch.setenv(k, v)  # the test process reads the same instance back
        endpoint = request.getfixturevalue("moto_s3")
        storage_url = f"s3://{make_bucket(endpoint)}/geopump"
        dapi.source_reader = read_s3_uri
    else:
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        storage_url = str(tmp_path / "storage")
    env = {
        **os.environ,
        **extra_env,
        "DAGSTER_HOME": str(home),
        "GEOPUMP_STORAGE_URL": storage_url,
        **standin_env(firms, gfw, dapi),
        "CMR_URL": f"{cmr.url}/search",
        "EARTHDATA_USERNAME": "e2e-user",
        "EARTHDATA_PASSWORD": "e2e-pass",
        "EARTHDATA_URS_HOST": data_host.urs.url.split("://", 1)[1],
        "GEOPUMP_ALLOW_PRIVATE_URLS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    for name, args in (
        ("webserver", [_bin("dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]),
        ("daemon", [_bin("dagster-daemon"), "run", "-w", "workspace.yaml"]),
    ):
        out = open(logs / f"{name}.log", "wb")
        procs.append(
            subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        else:
            pytest.fail("dagster-webserver did not start:\n" + (logs / "webserver.log").read_text()[-3000:])
        yield {
            "url": url,
            "home": home,
            "storage": Storage(storage_url),
            "firms": firms,
            "gfw": gfw,
            "dapi": dapi,
            "cmr": cmr,
            "data_host": data_host,
            "today": today,
            "logs": logs,
        }
    finally:
        for p in procs:
            _kill(p)
        for s in (firms, gfw, dapi, cmr, data_host):
            s.stop()


def gql(url: str, query: str, variables: dict) -> dict:
    resp = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    resp.raise_for_status()
    body = resp.json()
    assert "errors" not in body, body
    return body["data"]


def wait_for_backfill(s, backfill_id: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = gql(s["url"], STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if status.get("status") not in ("REQUESTED", "CANCELING", None):
            break
        time.sleep(3)
    daemon_log = (s["logs"] / "daemon.log").read_text()[-4000:]
    assert status and status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (status, daemon_log)
    return status


def launch_backfill(s, paths: list[list[str]], partitions: list[str]) -> str:
    params = {"assetSelection": [{"path": p} for p in paths], "partitionNames": partitions}
    data = gql(s["url"], LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    return data["backfillId"]


def test_partition_backfill_through_webserver_and_daemon(dagster_stack):
    s = dagster_stack
    days = [(s["today"] - timedelta(days=i)).isoformat() for i in (3, 2, 1)]
    backfill_id = launch_backfill(s, [["fires", "viirs_alerts"], ["fires", "modis_alerts"]], days)
    status = wait_for_backfill(s, backfill_id, 420)
    assert status["numPartitions"] == 3

    import dagster as dg

    with dg.DagsterInstance.from_config(str(s["home"])) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        for product in ("viirs", "modis"):
            assert instance.get_materialized_partitions(dg.AssetKey(["fires", f"{product}_alerts"])) == set(days)
    # The tables are in storage and match the stand-in's valid rows; each day's 7d file was read once per run.
    st = s["storage"]
    for d in days:
        stored = st.read_parquet(C.alerts_path("viirs", d))
        truth = s["firms"].rows_for("VIIRS", datetime.fromisoformat(d).date())
        assert len(stored) == len(truth.drop_duplicates(["latitude", "longitude", "acq_date", "acq_time", "satellite"]))
    assert not s["firms"].calls_to(r"^/api/area/")  # recent days come from the global files only


def test_a_year_of_granules_backfills_to_cogs_and_stac(dagster_stack):
    """365 daily partitions of a collection, launched like the UI does: 31-day runs converting days on Dask."""
    import dagster as dg

    from pipeline.lib.cogify import cog_relpath
    from pipeline.lib.collections import load_collections
    from pipeline.standins.granule_samples import seed_days

    s = dagster_stack
    toms = load_collections()["OMTO3d_003"]
    days = [(datetime(2023, 1, 1) + timedelta(days=i)).date().isoformat() for i in range(365)]
    seed_days(s["cmr"], s["data_host"], toms, days)
    backfill_id = launch_backfill(s, [["cogs", toms.id], ["stac", toms.id]], days)
    status = wait_for_backfill(s, backfill_id, 900)
    assert status["numPartitions"] == 365
    with dg.DagsterInstance.from_config(str(s["home"])) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert len(runs) == 12 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)  # ceil(365 / 31)
        for key in (dg.AssetKey(["cogs", toms.id]), dg.AssetKey(["stac", toms.id])):
            assert instance.get_materialized_partitions(key) == set(days)
    st = s["storage"]
    assert st.exists(cog_relpath(toms, "2023-12-31"))
    items = [p for p in st.list(f"stac/{toms.id}/items") if p.endswith(".json")]
    assert len(items) == 365
    collection = st.read_json(f"stac/{toms.id}/collection.json")
    assert len([link for link in collection["links"] if link["rel"] == "item"]) == 365
    # One CMR search per run, never one per day.
    assert len(s["cmr"].calls_to(r"/search/granules")) == 12
