"""pipeline.assets.publish: publish fire and zonal tables to the GFW Data API, then mark areas saved."""

import re

import dagster as dg

from pipeline import constants as C
from pipeline.assets.areas import USER_AREAS
from pipeline.assets.common import column_schema
from pipeline.assets.fire_stats import daily_key, history_key
from pipeline.assets.zonal_stats import ALERT_PREFIX, FEATURE_SETS
from pipeline.lib.fire_stats import DAILY_SCHEMA
from pipeline.lib.fire_tables import ID
from pipeline.lib.publish import publish_incremental
from pipeline.resources import AreasResource, DataApiResource, StorageResource

PUBLISHED = dg.AssetKey([C.PUBLISH, "gfw_fire_tables"])
ZONAL_PUBLISHED = dg.AssetKey([C.PUBLISH, "gfw_zonal_tables"])
SAVED_LEDGER = "publish/areas_saved.json"

TABLES = {
    "daily_alerts": [ID, "alert__date", "confidence__cat"],
    "weekly_alerts": [ID, "alert__year", "alert__week", "confidence__cat"],
}


def ready_geostores(storage) -> set[str]:
    """Areas whose full history is counted for every fire product."""
    per_product = []
    for product in C.PRODUCTS:
        ids: set[str] = set()
        for rel in storage.list(f"fire_stats/{product}/area_history"):
            ids.update(storage.read_json(rel, default={}).get("geostores", []))
        per_product.append(ids)
    return set.intersection(*per_product) if per_product else set()


@dg.asset(
    key=PUBLISHED,
    group_name=C.PUBLISH,
    deps=[USER_AREAS] + [daily_key(p) for p in C.PRODUCTS] + [history_key(p) for p in C.PRODUCTS],
    pool=C.POOL_DATA_API,
    kinds={"gfw"},
    description=(
        "Appends what changed in the geostore fire tables (`geostore__{viirs,modis}__{daily,weekly}_alerts`) to the "
        "GFW Data API: creates the dataset/version when missing, appends, waits until the version is `saved` and "
        "fails on `failed`. A ledger in storage makes it idempotent (re-running appends nothing). Then sets areas "
        "whose full history is counted to `saved` in the Areas API. Without GFW_DATA_API_URL the tables stay in "
        "storage only."
    ),
    code_version="1",
)
def gfw_fire_tables(
    context: dg.AssetExecutionContext, storage: StorageResource, data_api: DataApiResource, areas: AreasResource
) -> dg.MaterializeResult:
    st = storage.storage()
    reports = {}
    if data_api.enabled:
        client = data_api.client()
        for product in C.PRODUCTS:
            for agg, keys in TABLES.items():
                ds = C.dataset_name(product, agg)
                rep = publish_incremental(st, client, ds, f"fire_stats/{product}/{agg}", keys)
                reports[ds] = {
                    "rows_appended": rep.rows_appended,
                    "files_changed": rep.files_changed,
                    "version": rep.version,
                }
                context.log.info(f"{ds}: appended {rep.rows_appended} rows from {rep.files_changed} changed files")
    else:
        context.log.info("GFW_DATA_API_URL is not set: tables stay in storage as Parquet only")

    saved = set(st.read_json(SAVED_LEDGER, default={}).get("geostores", []))
    to_save = sorted(ready_geostores(st) - saved)
    if to_save:
        areas.client().update_status(to_save, "saved")
        st.write_json(SAVED_LEDGER, {"geostores": sorted(saved | set(to_save))})
    return dg.MaterializeResult(
        metadata={
            "dagster/uri": dg.MetadataValue.path(st.uri("publish")),
            "dagster/row_count": dg.MetadataValue.int(sum(r["rows_appended"] for r in reports.values())),
            # Rows appended are daily/weekly table rows; the daily table's columns describe them.
            "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(DAILY_SCHEMA)),
            "published": dg.MetadataValue.json(reports),
            "data_api_enabled": data_api.enabled,
            "areas_marked_saved": len(to_save),
        }
    )


def data_api_version(release_version: str) -> str:
    """Data API version name of an analysis on a release: `v` + the release version's letters, digits and dots."""
    cleaned = re.sub(r"[^0-9A-Za-z.]+", "", release_version)
    if not cleaned:
        raise ValueError(f"release version {release_version!r} has no usable characters for a Data API version")
    return cleaned if cleaned.startswith("v") else f"v{cleaned}"


TCL_THRESHOLD, TCL_YEAR = "umd_tree_cover_density_2000__threshold", "umd_tree_cover_loss__year"
TCL_VALUES = ["umd_tree_cover_loss__ha", "umd_tree_cover_extent_2000__ha", "area__ha"]
ALERT_VALUES = ["alert__count", "alert_area__ha"]


def zonal_tables(fs) -> list[tuple[str, str, str, list[str], list[str]]]:
    """(analysis, agg, storage folder under the version, keys, values) of a feature set's tables."""
    ids = list(fs.id_columns)
    return [
        ("tcl", "change", "", [*ids, TCL_THRESHOLD, TCL_YEAR], TCL_VALUES),
        (
            "integrated_alerts",
            "daily_alerts",
            "daily_alerts",
            [*ids, f"{ALERT_PREFIX}__date", f"{ALERT_PREFIX}__confidence"],
            ALERT_VALUES,
        ),
        (
            "integrated_alerts",
            "weekly_alerts",
            "weekly_alerts",
            [*ids, "alert__year", "alert__week", f"{ALERT_PREFIX}__confidence"],
            ALERT_VALUES,
        ),
    ]


@dg.asset(
    key=ZONAL_PUBLISHED,
    group_name=C.PUBLISH,
    deps=[k for fs in FEATURE_SETS for k in (fs.tcl_key, fs.alerts_key)],
    pool=C.POOL_DATA_API,
    kinds={"gfw"},
    description=(
        "Publishes the zonal tables of every feature set to the GFW Data API with GFW's names "
        "(`geostore__tcl__change`, `geostore__integrated_alerts__daily_alerts`, `gadm__tcl__adm2_change`, ...). Each "
        "analysis version (the published Hansen or integrated-alerts release) gets its own Data API version, created "
        "and tagged latest on first publish; later syncs append their new rows to it. A ledger per version makes it "
        "idempotent. Without GFW_DATA_API_URL the tables stay in storage."
    ),
    code_version="1",
)
def gfw_zonal_tables(
    context: dg.AssetExecutionContext, storage: StorageResource, data_api: DataApiResource
) -> dg.MaterializeResult:
    from pipeline.assets.deforestation import published

    st = storage.storage()
    reports = {}
    versions = {
        "tcl": (published(st, "tree_cover_loss") or {}).get("version"),
        "integrated_alerts": (published(st, "integrated_alerts") or {}).get("version"),
    }
    if not data_api.enabled:
        context.log.info("GFW_DATA_API_URL is not set: zonal tables stay in storage as Parquet only")
    else:
        client = data_api.client()
        for fs in FEATURE_SETS:
            for analysis, agg, sub, keys, values in zonal_tables(fs):
                release = versions[analysis]
                if not release:
                    continue
                folder = "tree_cover_loss" if analysis == "tcl" else "integrated_alerts"
                prefix = f"zonal/{fs.dataset}/{folder}/{release}" + (f"/{sub}" if sub else "")
                if not any(p.endswith(".parquet") for p in st.list(prefix)):
                    continue
                ds = fs.data_api_dataset(analysis, agg)
                rep = publish_incremental(st, client, ds, prefix, keys, value=values, version=data_api_version(release))
                reports[ds] = {
                    "rows_appended": rep.rows_appended,
                    "files_changed": rep.files_changed,
                    "version": data_api_version(release),
                }
                context.log.info(f"{ds}: appended {rep.rows_appended} rows from {rep.files_changed} changed files")
    return dg.MaterializeResult(
        metadata={
            "dagster/uri": dg.MetadataValue.path(st.uri("publish")),
            "dagster/row_count": dg.MetadataValue.int(sum(r["rows_appended"] for r in reports.values())),
            "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(FEATURE_SETS[0].tcl_schema)),
            "published": dg.MetadataValue.json(reports),
            "data_api_enabled": data_api.enabled,
        }
    )


ASSETS = [gfw_fire_tables, gfw_zonal_tables]
