"""pipeline.sensors: start runs on new FIRMS detections, tile releases and CMR granules; alert on failed runs."""

import hashlib
import json
from collections.abc import Callable

import dagster as dg
import pandas as pd

from pipeline.jobs import modis_fires_job, viirs_fires_job
from pipeline.lib.http import SourceError
from pipeline.resources import CmrResource, FirmsResource, SlackResource, StorageResource, TileSourcesResource

#: FIRMS global products per fire product. The sensor polls the small 24h files (today and
#: yesterday, UTC); the 7-day files cost up to ~100 MB per tick and the sensor has 60 s.
PRODUCT_FILES = {"viirs": ("VIIRS_SNPP", "VIIRS_NOAA20", "VIIRS_NOAA21"), "modis": ("MODIS",)}
WINDOW = "24h"
CURSOR_VERSION = 1


def day_fingerprints(df: pd.DataFrame) -> dict[str, str]:
    """Per acquisition day, a short digest of the set of detections (order-independent)."""
    out = {}
    if df is None or df.empty:
        return out
    cols = ["latitude", "longitude", "acq_date", "acq_time", "satellite"]
    for day, g in df[cols].groupby("acq_date"):
        keys = g.astype(str).agg("|".join, axis=1).sort_values()
        digest = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:16]
        out[str(day)] = f"{len(g)}:{digest}"
    return out


def parse_cursor(raw: str | None) -> tuple[dict, str | None]:
    """The cursor state, or a fresh one and a warning when it is missing or unreadable."""
    fresh = {"v": CURSOR_VERSION, "files": {}, "days": {}}
    if not raw:
        return fresh, None
    try:
        state = json.loads(raw)
        if not isinstance(state, dict) or state.get("v") != CURSOR_VERSION:
            raise ValueError("unknown cursor version")
        if not isinstance(state.get("files"), dict) or not isinstance(state.get("days"), dict):
            raise ValueError("cursor lacks files/days")
        return state, None
    except (ValueError, TypeError) as exc:
        return fresh, f"ignoring unreadable cursor ({exc}); starting over"


def plan_firms_runs(
    raw_cursor: str | None,
    head: Callable[[str], dict],
    fetch: Callable[[str], pd.DataFrame],
    valid_day: Callable[[str], bool] = lambda d: True,
) -> tuple[list[tuple[str, str, str]], dict, list[str]]:
    """Decide which (product, day) runs to request.

    Args:
        raw_cursor: the sensor's JSON cursor from the last tick.
        head: product file key -> {"last_modified", "etag"}; cheap HEAD request.
        fetch: product file key -> parsed detections of the 24h file (only called when it changed).
        valid_day: whether a day is an existing partition.

    Returns:
        (requests as (product, day, fingerprint), new cursor state, log messages)
    """
    state, warning = parse_cursor(raw_cursor)
    logs = [warning] if warning else []
    requests = []
    new_state = {"v": CURSOR_VERSION, "files": dict(state["files"]), "days": {}}
    for product, files in PRODUCT_FILES.items():
        old_days = state["days"].get(product, {})
        per_file_days: dict[str, dict[str, str]] = {}
        changed_any = False
        for fk in files:
            info = head(fk)
            stamp = f"{info.get('etag') or ''}|{info.get('last_modified') or ''}"
            old_file = state["files"].get(fk)
            if old_file is not None and old_file.get("stamp") == stamp:
                per_file_days[fk] = old_file.get("days", {})
                continue
            changed_any = True
            per_file_days[fk] = day_fingerprints(fetch(fk))
            new_state["files"][fk] = {"stamp": stamp, "days": per_file_days[fk]}
        # Combine the products' per-day digests into the product's day fingerprint.
        days = sorted({d for fd in per_file_days.values() for d in fd})
        combined = {
            d: hashlib.sha1("|".join(per_file_days[fk].get(d, "-") for fk in files).encode()).hexdigest()[:16]
            for d in days
        }
        new_state["days"][product] = combined
        if not changed_any:
            continue
        for d in days:
            if old_days.get(d) != combined[d] and valid_day(d):
                requests.append((product, d, combined[d]))
    # Keep the cursor small: file entries only for the files we watch.
    watched = {fk for files in PRODUCT_FILES.values() for fk in files}
    new_state["files"] = {k: v for k, v in new_state["files"].items() if k in watched}
    return requests, new_state, logs


@dg.sensor(
    name="firms_new_data_sensor",
    jobs=[viirs_fires_job, modis_fires_job],
    minimum_interval_seconds=900,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Polls FIRMS' global 24h files with HEAD (Last-Modified/ETag). When a file changed it downloads it, "
        "fingerprints each UTC day and starts a fires job only for the days whose detections changed."
    ),
)
def firms_new_data_sensor(context: dg.SensorEvaluationContext, firms: FirmsResource) -> dg.SensorResult | dg.SkipReason:
    client = firms.client()
    from pipeline.partitions import daily_partitions

    def valid_day(d: str) -> bool:
        return daily_partitions.has_partition_key(d)

    requests, state, logs = plan_firms_runs(
        context.cursor,
        head=lambda fk: client.head_global(fk, WINDOW),
        fetch=lambda fk: client.fetch_global(fk, WINDOW).df,
        valid_day=valid_day,
    )
    for msg in logs:
        context.log.warning(msg)
    cursor = json.dumps(state, separators=(",", ":"), sort_keys=True)
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new FIRMS detections"), cursor=cursor)
    jobs = {"viirs": viirs_fires_job.name, "modis": modis_fires_job.name}
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(job_name=jobs[p], partition_key=d, run_key=f"{p}:{d}:{fp}", tags={"geopump/trigger": "firms"})
            for p, d, fp in requests
        ],
        cursor=cursor,
    )


def failure_message(job_name: str, run_id: str, error: str | None, step_keys: list[str]) -> str:
    steps = ", ".join(step_keys) or "unknown step"
    return (
        f":red_circle: geopump run failed: job `{job_name}`, run `{run_id}`, step(s) {steps}.\n{(error or '')[:1500]}"
    )


@dg.run_failure_sensor(
    name="slack_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed runs to SLACK_WEBHOOK_URL (when set); secrets are scrubbed from the message.",
)
def slack_on_run_failure(context: dg.RunFailureSensorContext, slack: SlackResource):
    notifier = slack.notifier()
    if notifier is None:
        return dg.SkipReason("SLACK_WEBHOOK_URL is not set")
    steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    error = context.failure_event.message
    for e in context.get_step_failure_events():
        err = getattr(e.event_specific_data, "error", None)
        # Dagster wraps the asset's exception; the user-facing reason is the innermost cause.
        while err is not None and err.cause is not None:
            err = err.cause
        if err is not None:
            error = err.message
            break
    notifier.post(failure_message(context.dagster_run.job_name, context.dagster_run.run_id, error, steps))


# -- tile releases ---------------------------------------------------------------------------------------


def plan_release(raw_cursor: str | None, latest: tuple[str, list[str]] | None, tile_runs: dict[str, str]):
    """What a release sensor does this tick.

    Args:
        raw_cursor: {"version", "published"} from the last tick (anything unreadable starts over).
        latest: (version, tiles) of the newest complete upstream release, or None if there is none.
        tile_runs: tile -> status of the newest run of this version's tile job ("SUCCESS", "FAILURE", ...).

    Returns:
        (action, version, tiles, cursor) with action "tiles" (request every tile), "publish", "wait" or "none".
    """
    try:
        state = json.loads(raw_cursor) if raw_cursor else {}
        if not isinstance(state, dict):
            state = {}
    except ValueError:
        state = {}
    if latest is None:
        return "none", None, [], state
    version, tiles = latest
    if state.get("version") != version:
        return "tiles", version, tiles, {"version": version, "published": False}
    if state.get("published"):
        return "none", version, [], state
    if all(tile_runs.get(t) == "SUCCESS" for t in tiles):
        return "publish", version, [], {"version": version, "published": True}
    return "wait", version, [t for t in tiles if tile_runs.get(t) != "SUCCESS"], state


def build_release_sensor(product: str, tiles_job, release_job):
    from pipeline.assets.deforestation import RELEASE_TAG, discover_release, integrated_inputs

    @dg.sensor(
        name=f"{product}_release_sensor",
        jobs=[tiles_job, release_job],
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Detects a new complete {product} release, requests every tile of it, and once all tile runs "
            "succeeded requests the release run that publishes it. Run keys carry the version."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, sources: TileSourcesResource, storage: StorageResource):
        try:
            if product == "integrated_alerts":
                info = integrated_inputs(storage.storage())
                latest = (info["version"], info["tiles"])
            else:
                rel = discover_release(product, sources)
                latest = (rel.version, sorted(rel.tiles))
        except (ValueError, SourceError) as exc:  # no complete release yet, or the source is down
            return dg.SkipReason(f"no complete {product} release: {exc}")
        runs = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=tiles_job.name, tags={RELEASE_TAG: latest[0]}), limit=5000
        )
        tile_runs: dict[str, str] = {}
        for run in reversed(list(runs)):  # oldest first, so the newest run of a tile wins
            tile_runs[run.tags.get("dagster/partition", "")] = run.status.value
        action, version, tiles, state = plan_release(context.cursor, latest, tile_runs)
        cursor = json.dumps(state, sort_keys=True)
        if action == "tiles":
            return dg.SensorResult(
                run_requests=[
                    dg.RunRequest(
                        job_name=tiles_job.name,
                        partition_key=t,
                        run_key=f"{product}:{version}:{t}",
                        tags={RELEASE_TAG: version},
                    )
                    for t in tiles
                ],
                cursor=cursor,
            )
        if action == "publish":
            return dg.SensorResult(
                run_requests=[
                    dg.RunRequest(
                        job_name=release_job.name, run_key=f"{product}:{version}:publish", tags={RELEASE_TAG: version}
                    )
                ],
                cursor=cursor,
            )
        reason = f"{len(tiles)} tiles of {version} not done yet" if action == "wait" else "nothing new"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)

    return _sensor


def _release_sensors():
    from pipeline.jobs import RELEASE_JOBS, TILE_JOBS

    return [build_release_sensor(p, TILE_JOBS[p], RELEASE_JOBS[p]) for p in TILE_JOBS]


def range_chunks(keys: list[str], size: int = 5) -> list[tuple[str, str]]:
    """Consecutive daily keys grouped into (start, end) ranges of at most `size` days."""
    from datetime import date as _date

    out: list[tuple[str, str]] = []
    start = prev = None
    n = 0
    for k in sorted(keys):
        d = _date.fromisoformat(k)
        if start is not None and n < size and (d - prev).days == 1:
            prev, n = d, n + 1
            continue
        if start is not None:
            out.append((start.isoformat(), prev.isoformat()))
        start = prev = d
        n = 1
    if start is not None:
        out.append((start.isoformat(), prev.isoformat()))
    return out


@dg.sensor(
    name="zonal_on_new_release",
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "When a new tree cover loss or integrated alerts version is published, recomputes the zonal statistics of "
        "every area sync against it (range runs of up to 5 syncs) and of the admin boundaries, then publishes them "
        "(run keys carry the versions)."
    ),
)
def zonal_on_new_release(context: dg.SensorEvaluationContext, storage: StorageResource):
    from pipeline.assets.areas import USER_AREAS
    from pipeline.assets.deforestation import published
    from pipeline.jobs import zonal_job, zonal_static_job

    st = storage.storage()
    now = {
        "tcl": (published(st, "tree_cover_loss") or {}).get("version"),
        "alerts": (published(st, "integrated_alerts") or {}).get("version"),
    }
    try:
        before = json.loads(context.cursor) if context.cursor else {}
        if not isinstance(before, dict):
            before = {}
    except ValueError:
        before = {}
    cursor = json.dumps(now, sort_keys=True)
    if not any(now.values()) or now == {k: before.get(k) for k in now}:
        return dg.SensorResult(skip_reason=dg.SkipReason("no newly published version"), cursor=cursor)
    syncs = sorted(context.instance.get_materialized_partitions(USER_AREAS))
    requests = [
        dg.RunRequest(
            job_name=zonal_job.name,
            run_key=f"zonal:{now['tcl']}:{now['alerts']}:{a}:{b}",
            tags={"dagster/asset_partition_range_start": a, "dagster/asset_partition_range_end": b},
        )
        for a, b in range_chunks(syncs)
    ]
    # Static feature sets (admin boundaries) and the Data API publication of every zonal table.
    requests.append(dg.RunRequest(job_name=zonal_static_job.name, run_key=f"zonal-static:{now['tcl']}:{now['alerts']}"))
    return dg.SensorResult(run_requests=requests, cursor=cursor)


SENSORS = [firms_new_data_sensor, slack_on_run_failure, zonal_on_new_release, *_release_sensors()]


def granule_sensor(config, job) -> dg.SensorDefinition:
    from pipeline.assets.cogs import collection_partitions

    partitions = collection_partitions(config)

    """A collection's sensor: CMR granules new or revised since the cursor's high-water mark -> daily runs."""

    @dg.sensor(
        name=f"{config.id}_granule_sensor",
        job=job,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Asks CMR for {config.short_name} v{config.version} granules whose revision date is at or after the "
            "cursor's high-water mark and requests the day of each new or revised granule (run keys carry the "
            "granule revision, so a revised granule runs again and a seen one never does). Up to "
            "`max_runs_per_tick` runs per tick; the rest come on the next tick."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, cmr: CmrResource):
        from pipeline.lib.cmr import cursor_updated_since, plan_granule_runs

        since = cursor_updated_since(context.cursor)
        try:
            granules = cmr.client().search_granules(
                config.short_name,
                config.version,
                updated_since=since,
                include=config.include,
                page_size=cmr.page_size,
            )
            plan = plan_granule_runs(
                granules,
                context.cursor,
                collection_id=config.id,
                start_date=config.start_date.isoformat(),
                max_runs=cmr.max_runs_per_tick,
            )
        except SourceError as exc:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"CMR unavailable: {exc}"), cursor=context.cursor)
        for note in plan.notes:
            context.log.warning(note)
        runs = [
            dg.RunRequest(
                partition_key=run.partition_key,
                run_key=run.run_key,
                tags={"geopump/granule": run.granule.concept_id, "geopump/revision": str(run.granule.revision_id)},
            )
            for run in plan.runs
            if partitions.has_partition_key(run.partition_key)  # a granule dated after tomorrow is not a day yet
        ]
        if not runs:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new or revised granules"), cursor=plan.cursor)
        return dg.SensorResult(run_requests=runs, cursor=plan.cursor)

    return _sensor
