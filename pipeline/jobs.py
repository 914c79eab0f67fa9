"""pipeline.jobs: the jobs users and automation launch, and the nightly schedule."""

from datetime import timedelta

import dagster as dg

from pipeline import constants as C
from pipeline.assets.boundaries import ADMIN_BOUNDARIES
from pipeline.assets.fire_stats import daily_key
from pipeline.assets.publish import PUBLISHED, ZONAL_PUBLISHED
from pipeline.assets.zonal_stats import ADMIN_SET, USER_AREAS_SET

#: The static admin-boundary feature set is recomputed when a release or the boundaries change, not nightly.
_STATIC = dg.AssetSelection.assets(ADMIN_BOUNDARIES, ADMIN_SET.tcl_key, ADMIN_SET.alerts_key)

#: Everything GFW's datapump did at night: fires, areas, statistics, publishing.
nightly_sync = dg.define_asset_job(
    "nightly_sync",
    selection=dg.AssetSelection.groups(C.FIRES, C.AREAS, C.FIRE_STATS, C.PUBLISH, C.ZONAL) - _STATIC,
    description=(
        "The nightly sync for one UTC day: fetch VIIRS and MODIS fire alerts, sync pending user areas, count "
        "fires for all areas (full history for new areas), publish to the GFW Data API and mark areas saved."
    ),
)


def fires_job(product: str):
    """One product's alerts for a day, its per-area counts and publishing (what the FIRMS sensor runs)."""
    return dg.define_asset_job(
        f"{product}_fires_job",
        selection=dg.AssetSelection.assets(dg.AssetKey([C.FIRES, f"{product}_alerts"]), daily_key(product), PUBLISHED),
        description=f"Re-fetch one day of {product.upper()} alerts, recount it for all areas and publish the change.",
    )


viirs_fires_job = fires_job("viirs")
modis_fires_job = fires_job("modis")


@dg.schedule(
    name="nightly_sync_schedule",
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    job=nightly_sync,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="02:00 UTC, like datapump's fire cron: runs nightly_sync for the last complete UTC day.",
)
def nightly_schedule(context: dg.ScheduleEvaluationContext):
    # build_schedule_from_partitioned_job would pick *today* here, because the daily partitions
    # include the current day (end_offset=1); the nightly run wants the completed day before.
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(partition_key=day, run_key=f"nightly:{day}")


def _tile_jobs():
    from pipeline.assets.deforestation import PRODUCTS, product_key, release_key

    tiles = {
        p: dg.define_asset_job(
            f"{p}_tiles_job",
            selection=dg.AssetSelection.assets(product_key(p)),
            description=f"Build {p} tiles (one run per tile) for one release.",
        )
        for p in PRODUCTS
    }
    releases = {
        p: dg.define_asset_job(
            f"{p}_release_job",
            selection=dg.AssetSelection.assets(release_key(p)),
            description=f"Publish a complete {p} release and prune old versions.",
        )
        for p in PRODUCTS
    }
    return tiles, releases


TILE_JOBS, RELEASE_JOBS = _tile_jobs()

#: Zonal statistics of user areas for a range of syncs (what `zonal_on_new_release` runs).
zonal_job = dg.define_asset_job(
    "zonal_user_areas_job",
    selection=dg.AssetSelection.assets(USER_AREAS_SET.tcl_key, USER_AREAS_SET.alerts_key),
    description="Tree cover loss and integrated-alert statistics for the areas of a range of syncs.",
)

#: Zonal statistics of the static feature sets, then publishing every zonal table.
zonal_static_job = dg.define_asset_job(
    "zonal_feature_sets_job",
    selection=dg.AssetSelection.assets(ADMIN_SET.tcl_key, ADMIN_SET.alerts_key, ZONAL_PUBLISHED),
    description=(
        "Tree cover loss and integrated-alert statistics for the admin boundaries, then publishes every zonal table "
        "(user areas and boundaries) to the GFW Data API."
    ),
)

JOBS = [
    nightly_sync,
    viirs_fires_job,
    modis_fires_job,
    zonal_job,
    zonal_static_job,
    *TILE_JOBS.values(),
    *RELEASE_JOBS.values(),
]
SCHEDULES = [nightly_schedule]


def cog_job(config):
    """A collection's COG and STAC assets for a day (what its granule sensor runs)."""
    from pipeline.assets.cogs import cog_key
    from pipeline.assets.stac import stac_key

    return dg.define_asset_job(
        f"{config.id}_cog_job",
        selection=dg.AssetSelection.assets(cog_key(config), stac_key(config)),
        description=f"Granule to COG to STAC for {config.short_name} v{config.version}, one day or a range of days.",
    )
