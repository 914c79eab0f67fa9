"""pipeline.cli: the `geopump` command: `geopump demo` and `geopump sync`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _utc_today() -> date:
    return datetime.now(UTC).date()


def prepare_home(home: Path) -> Path:
    """A DAGSTER_HOME with the project's local instance config (SQLite under that folder)."""
    home.mkdir(parents=True, exist_ok=True)
    src = PROJECT_ROOT / "dagster.yaml"
    if src.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(src, home / "dagster.yaml")
    return home


def run_nightly(day: str, echo=click.echo) -> bool:
    """Run the nightly sync job for one day through the Dagster instance at DAGSTER_HOME."""
    import dagster as dg

    from pipeline.definitions import build_defs

    defs = build_defs()
    job = defs.resolve_job_def("nightly_sync")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            rows = mat.metadata.get("dagster/row_count")
            echo(
                f"  {mat.asset_key.to_user_string():32s} partition {mat.partition or '-':10s} "
                f"rows {rows.value if rows is not None else '-'}"
            )
        for event in result.all_events:
            if event.event_type_value == "STEP_FAILURE":
                echo(f"  FAILED {event.step_key}: {event.event_specific_data.error.message.strip()[:500]}", err=True)
        return result.success


#: Demo tiles under the sample hotspots (Rondônia, Pará, Congo basin, Kalimantan), so areas get statistics.
DEMO_TILES = ("10S_070W", "00N_060W", "00N_020E", "00N_110E")


def build_releases(echo=click.echo) -> bool:
    """Build every product's tiles for its newest release and publish it, as the release sensors would."""
    import dagster as dg

    from pipeline.assets.deforestation import PRODUCTS, RELEASE_TAG, discover_release, integrated_inputs
    from pipeline.definitions import build_defs, resources_from_env
    from pipeline.lib.storage import Storage

    resources = resources_from_env()
    defs = build_defs(resources)
    # Resolve the EnvVar-backed resources the way a run would, to discover the releases.
    sources = resources["sources"].process_config_and_initialize()
    storage = Storage(resources["storage"].process_config_and_initialize().url)
    ok = True
    with dg.DagsterInstance.get() as instance:
        for product in PRODUCTS:
            if product == "integrated_alerts":
                info = integrated_inputs(storage)
                version, tiles = info["version"], info["tiles"]
            else:
                rel = discover_release(product, sources)
                version, tiles = rel.version, sorted(rel.tiles)
            job = defs.resolve_job_def(f"{product}_tiles_job")
            for tile in tiles:
                res = job.execute_in_process(
                    partition_key=tile, tags={RELEASE_TAG: version}, instance=instance, raise_on_error=False
                )
                ok = ok and res.success
            res = defs.resolve_job_def(f"{product}_release_job").execute_in_process(
                tags={RELEASE_TAG: version}, instance=instance, raise_on_error=False
            )
            ok = ok and res.success
            echo(f"  {product:26s} {version:22s} {len(tiles)} tiles {'published' if res.success else 'FAILED'}")
    return ok


def build_cogs(days: list[str], echo=click.echo) -> bool:
    """Run every collection's COG + STAC job for `days`, as its granule sensor would."""
    import dagster as dg

    from pipeline.definitions import COG_JOBS, build_defs

    defs = build_defs()
    ok = True
    with dg.DagsterInstance.get() as instance:
        for cid in COG_JOBS:
            job = defs.resolve_job_def(f"{cid}_cog_job")
            for day in days:
                res = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
                ok = ok and res.success
                echo(f"  {cid:16s} {day} {'COG + STAC item' if res.success else 'FAILED'}")
    return ok


@click.group()
def main():
    """geopump: Dagster assets for forest and fire monitoring."""


@main.command()
@click.option("--date", "day", default=None, help="UTC day to sync (YYYY-MM-DD); default: yesterday.")
def sync(day: str | None):
    """Run the nightly sync (the job the schedule launches) against the configured endpoints."""
    day = day or (_utc_today() - timedelta(days=1)).isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter(f"--date {day!r} is not a YYYY-MM-DD date") from None
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(prepare_home(Path(".geopump/dagster_home").resolve()))
    click.echo(f"nightly sync for {day} (instance {os.environ['DAGSTER_HOME']})")
    ok = run_nightly(day)
    click.echo("success" if ok else "FAILED")
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--dir", "workdir", default=".geopump/demo", show_default=True, help="Where the demo keeps its data.")
@click.option("--days", default=3, show_default=True, help="How many recent UTC days to sync.")
@click.option("--areas", "n_areas", default=300, show_default=True, help="Pending user areas to seed.")
@click.option("--ui", is_flag=True, help="Keep the stand-ins running and start `dagster dev` against them.")
@click.option("--port", default=3000, show_default=True, help="Dagster UI port with --ui.")
def demo(workdir: str, days: int, n_areas: int, ui: bool, port: int):
    """Start local stand-ins with sample data and run the nightly sync through a real Dagster instance."""
    from pipeline.standins import standin_env
    from pipeline.standins.area_samples import generate_areas
    from pipeline.standins.areas import AreasStandin
    from pipeline.standins.data_api import DataApiStandin
    from pipeline.standins.fire_samples import SAMPLE_HOTSPOTS
    from pipeline.standins.firms import FirmsStandin

    root = Path(workdir).resolve()
    if root.exists():
        shutil.rmtree(root)
    home = prepare_home(root / "dagster_home")
    today = _utc_today()
    areas, geostores = generate_areas(n_areas, seed=7, hotspots=[(h.lon, h.lat) for h in SAMPLE_HOTSPOTS])
    from pipeline.standins.gcs import GcsStandin

    firms = FirmsStandin(today=today, seed=7).start()
    gcs = GcsStandin().start()
    gcs.seed_sources(today, size=256, tiles=DEMO_TILES)
    gfw = AreasStandin(areas=areas, geostores=geostores).start()
    data_api = DataApiStandin().start()
    from pipeline.lib.collections import load_collections
    from pipeline.standins.cmr import CmrStandin, EarthdataStandin
    from pipeline.standins.granule_samples import seed_days

    data_host = EarthdataStandin(users={"demo-user": "demo-password"}).start()
    cmr = CmrStandin(data_base_url=data_host.url).start()
    granule_days = [(today - timedelta(days=i)).isoformat() for i in range(days, 0, -1)]
    for config in load_collections().values():
        seed_days(cmr, data_host, config, granule_days)
    env = {
        "DAGSTER_HOME": str(home),
        "GEOPUMP_STORAGE_URL": str(root / "storage"),
        **standin_env(firms, gfw, data_api),
        "GCS_URL": gcs.url,
        "GEOPUMP_EXPECTED_TILES": str(len(DEMO_TILES)),
        "CMR_URL": f"{cmr.url}/search",
        "EARTHDATA_USERNAME": "demo-user",
        "EARTHDATA_PASSWORD": "demo-password",
        "EARTHDATA_URS_HOST": data_host.urs.url.split("://", 1)[1],
        "GEOPUMP_ALLOW_PRIVATE_URLS": "1",  # the stand-ins live on loopback
    }
    os.environ.update(env)
    click.echo(f"stand-ins: FIRMS {firms.url}  Areas/Geostore {gfw.url}  Data API {data_api.url}  GCS {gcs.url}")
    click.echo(f"           CMR {cmr.url}  Earthdata {data_host.url} (login {data_host.urs.url})")
    click.echo(f"instance: {home}   storage: {env['GEOPUMP_STORAGE_URL']}")
    ok = True
    try:
        click.echo("tile releases (GCS stand-in -> COGs -> published versions)")
        ok = build_releases() and ok
        for i in range(days - 1, -1, -1):
            day = (today - timedelta(days=i)).isoformat()
            click.echo(f"nightly_sync {day}")
            ok = run_nightly(day) and ok
        published = {
            f"{ds}/{v}": len(data_api.rows(ds, v)) for ds, d in data_api.datasets.items() for v in d["versions"]
        }
        click.echo(f"Data API tables (rows): {published}")
        saved = sum(1 for a in gfw.areas.values() if a["attributes"]["status"] == "saved")
        errored = sum(1 for a in gfw.areas.values() if a["attributes"]["status"] == "error")
        click.echo(f"areas: {saved} saved, {errored} error, of {len(gfw.areas)}")
        click.echo("granules (CMR + Earthdata stand-ins -> COGs -> STAC catalog)")
        ok = build_cogs(granule_days) and ok
        if ui:
            click.echo(f"starting the Dagster UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
            proc = subprocess.Popen(
                ["dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                cwd=PROJECT_ROOT,
                env={**os.environ, **env},
                start_new_session=True,
            )
            try:
                while proc.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    finally:
        for srv in (firms, gfw, data_api, gcs, cmr, data_host):
            srv.stop()
    click.echo("demo finished: success" if ok else "demo finished: FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
