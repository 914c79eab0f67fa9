"""pipeline.constants: asset groups, key prefixes, pools and storage layout, defined in one place."""

# Asset groups (the UI's lineage groups) and key prefixes. Keys read `fires/viirs_alerts`.
FIRES = "fires"
AREAS = "areas"
FIRE_STATS = "fire_stats"
PUBLISH = "publish"
FOREST = "forest"
DEFORESTATION = "deforestation"
ZONAL = "zonal"
COGS = "cogs"
STAC = "stac"

# Concurrency pools (limits in dagster.yaml / Helm). One writer per fire-stats product, so the
# daily-table merges of the day asset and the new-area history asset never race.
POOL_FIRMS = "firms_api"
POOL_GFW_AREAS = "gfw_api"
POOL_DATA_API = "gfw_data_api"
# One writer per static STAC catalog: the collection file is rebuilt from the item files after each run.
POOL_STAC = "stac_catalog"


def pool_fire_stats(product: str) -> str:
    return f"fire_stats_{product}"


# First day of the fire-alert partitions: VIIRS S-NPP data starts on 2012-01-20 (MODIS is older,
# but one shared daily partitioning lets the nightly job cover every daily asset in one run).
HISTORY_START = "2012-01-20"

# Fire products and their FIRMS instrument.
PRODUCTS = ("viirs", "modis")


# Storage layout (relative to GEOPUMP_STORAGE_URL). Keys are sanitised before they get here.
def alerts_path(product: str, day: str) -> str:
    return f"fires/{product}_alerts/date={day}.parquet"


def user_areas_path(sync_day: str) -> str:
    return f"areas/user_areas/date={sync_day}.parquet"


def daily_table_path(product: str, day: str) -> str:
    return f"fire_stats/{product}/daily_alerts/date={day}.parquet"


def weekly_table_path(product: str, iso_year: int, iso_week: int) -> str:
    return f"fire_stats/{product}/weekly_alerts/week={iso_year:04d}-W{iso_week:02d}.parquet"


def history_marker_path(product: str, sync_day: str) -> str:
    return f"fire_stats/{product}/area_history/date={sync_day}.json"


def dataset_name(product: str, agg: str) -> str:
    """GFW Data API dataset for a geostore fire table, e.g. `geostore__viirs__daily_alerts`."""
    return f"geostore__{product}__{agg}"


BOUNDARIES_PATH = "areas/admin_boundaries/boundaries.parquet"
