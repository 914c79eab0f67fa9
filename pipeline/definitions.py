"""pipeline.definitions: the composition root; builds `defs` and picks resources per environment."""

import os

import dagster as dg

from pipeline.assets import areas, boundaries, cogs, deforestation, fire_stats, fires, publish, stac, zonal_stats
from pipeline.jobs import JOBS, SCHEDULES, cog_job
from pipeline.lib.collections import load_collections
from pipeline.resources import (
    AreasResource,
    BoundariesResource,
    CmrResource,
    DaskResource,
    DataApiResource,
    EarthdataResource,
    FirmsResource,
    SlackResource,
    StacApiResource,
    StorageResource,
    TileSourcesResource,
)
from pipeline.sensors import SENSORS, granule_sensor

#: Default output folder (relative to the working directory, i.e. the project root under `dagster dev`).
DEFAULT_STORAGE = ".geopump/storage"

#: Every environment variable geopump reads, with its default (None = unset / feature off).
ENV_DEFAULTS: dict[str, str | None] = {
    "GEOPUMP_STORAGE_URL": DEFAULT_STORAGE,
    "FIRMS_URL": "https://firms.modaps.eosdis.nasa.gov",
    "FIRMS_MAP_KEY": None,
    "GFW_API_URL": "https://api.resourcewatch.org",
    "GFW_API_TOKEN": None,
    "GFW_API_KEY": None,
    "GFW_DATA_API_URL": None,
    "GFW_DATA_API_TOKEN": None,
    "DASK_SCHEDULER_ADDRESS": None,
    "SLACK_WEBHOOK_URL": None,
    "GCS_URL": "https://storage.googleapis.com",
    "GCS_TOKEN": None,
    "GEOPUMP_EXPECTED_TILES": None,
    "GEOPUMP_BOUNDARIES_URL": None,
    "CMR_URL": "https://cmr.earthdata.nasa.gov/search",
    "EARTHDATA_TOKEN": None,
    "EARTHDATA_USERNAME": None,
    "EARTHDATA_PASSWORD": None,
    "EARTHDATA_URS_HOST": "urs.earthdata.nasa.gov",
    "STAC_API_URL": None,
    "STAC_API_TOKEN": None,
    "GEOPUMP_COLLECTIONS_DIR": None,
    "GEOPUMP_ALLOW_PRIVATE_URLS": None,
}


def _env(name: str):
    """`dg.EnvVar(name)` when the variable is set, else its default.

    Only the *presence* of the variable is looked at here; its value is resolved by Dagster at run
    time through EnvVar, so secrets never reach the UI, logs or metadata.
    """
    return dg.EnvVar(name) if os.environ.get(name) else ENV_DEFAULTS[name]


def resources_from_env() -> dict:
    return {
        "storage": StorageResource(url=_env("GEOPUMP_STORAGE_URL")),
        "firms": FirmsResource(base_url=_env("FIRMS_URL"), map_key=_env("FIRMS_MAP_KEY")),
        "areas": AreasResource(base_url=_env("GFW_API_URL"), token=_env("GFW_API_TOKEN"), api_key=_env("GFW_API_KEY")),
        "data_api": DataApiResource(base_url=_env("GFW_DATA_API_URL"), token=_env("GFW_DATA_API_TOKEN")),
        "dask": DaskResource(scheduler_address=_env("DASK_SCHEDULER_ADDRESS")),
        "slack": SlackResource(webhook_url=_env("SLACK_WEBHOOK_URL")),
        "boundaries": BoundariesResource(url=_env("GEOPUMP_BOUNDARIES_URL")),
        "cmr": CmrResource(base_url=_env("CMR_URL"), token=_env("EARTHDATA_TOKEN")),
        "earthdata": EarthdataResource(
            token=_env("EARTHDATA_TOKEN"),
            username=_env("EARTHDATA_USERNAME"),
            password=_env("EARTHDATA_PASSWORD"),
            urs_host=_env("EARTHDATA_URS_HOST"),
            allow_private_urls=os.environ.get("GEOPUMP_ALLOW_PRIVATE_URLS", "").strip().lower() in ("1", "true", "yes"),
        ),
        "stac_api": StacApiResource(base_url=_env("STAC_API_URL"), token=_env("STAC_API_TOKEN")),
        "sources": TileSourcesResource(
            base_url=_env("GCS_URL"), token=_env("GCS_TOKEN"), expected_tiles=_env("GEOPUMP_EXPECTED_TILES")
        ),
    }


#: Gridded collections (COG + STAC), one YAML file each: the shipped ones plus GEOPUMP_COLLECTIONS_DIR.
COLLECTIONS = load_collections(extra_dir=os.environ.get("GEOPUMP_COLLECTIONS_DIR") or None)
COG_JOBS = {cid: cog_job(c) for cid, c in COLLECTIONS.items()}

ASSETS = [
    *fires.ASSETS,
    *areas.ASSETS,
    *boundaries.ASSETS,
    *fire_stats.ASSETS,
    *publish.ASSETS,
    *deforestation.ASSETS,
    *zonal_stats.ASSETS,
    *(cogs.cog_asset(c) for c in COLLECTIONS.values()),
    *(stac.stac_asset(c) for c in COLLECTIONS.values()),
]


def build_defs(resources: dict | None = None) -> dg.Definitions:
    """The code location's definitions; `resources` (tests, embedding) override those from the environment."""
    return dg.Definitions(
        assets=ASSETS,
        jobs=[*JOBS, *COG_JOBS.values()],
        schedules=SCHEDULES,
        sensors=[*SENSORS, *(granule_sensor(COLLECTIONS[cid], job) for cid, job in COG_JOBS.items())],
        # Given resources override the environment's (tests pass the ones they exercise).
        resources={**resources_from_env(), **(resources or {})},
    )


defs = build_defs()
