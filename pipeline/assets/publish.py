"""pipeline.assets.publish: publish fire tables to the GFW Data API, then mark areas saved."""

import dagster as dg

from pipeline import constants as C
from pipeline.assets.areas import USER_AREAS
from pipeline.assets.common import column_schema
from pipeline.assets.fire_stats import daily_key, history_key
from pipeline.lib.fire_stats import DAILY_SCHEMA
from pipeline.lib.fire_tables import ID
from pipeline.lib.publish import publish_incremental
from pipeline.resources import AreasResource, DataApiResource, StorageResource

PUBLISHED = dg.AssetKey([C.PUBLISH, "gfw_fire_tables"])
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


ASSETS = [gfw_fire_tables]
