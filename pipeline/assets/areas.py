"""pipeline.assets.areas: users' areas of interest from the GFW Areas + Geostore API, one file per sync."""

from datetime import date, timedelta

import dagster as dg
import geopandas as gpd
import pandas as pd

from pipeline import constants as C
from pipeline.assets.common import partition_range_uri, table_metadata
from pipeline.lib.areas import USER_AREA_SCHEMA, geostore_ids_to_fetch, validate_areas
from pipeline.partitions import daily_backfill_policy, daily_partitions
from pipeline.resources import AreasResource, StorageResource

USER_AREAS = dg.AssetKey([C.AREAS, "user_areas"])

#: Warn when more than this share of a sync's areas are rejected (a sign of an upstream problem).
MAX_REJECTED_SHARE = 0.25


def merge_with_previous(previous: gpd.GeoDataFrame | None, current: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Keep areas recorded by an earlier run of the same sync that are no longer pending.

    The Areas API only lists areas that are *still* pending, so re-running a past sync must not
    forget the areas it already handled (they may have been marked saved since).
    """
    if previous is None or previous.empty:
        return current
    old = previous[~previous["area_id"].isin(set(current["area_id"]))]
    merged = pd.concat([current, old], ignore_index=True)
    return gpd.GeoDataFrame(merged, geometry="geometry", crs="EPSG:4326")


@dg.asset(
    key=USER_AREAS,
    group_name=C.AREAS,
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    pool=C.POOL_GFW_AREAS,
    kinds={"geoparquet", "gfw"},
    description=(
        "Users' areas of interest pending analysis in the GFW Areas API, one GeoParquet file per nightly sync "
        "(partition = sync date, UTC). Each sync calls /v2/area/sync, pages through pending areas and fetches their "
        "geometries from the Geostore in blocks of 25. Areas are validated as GFW does (32-hex geostore id, "
        "areaHa < 1e9, Polygon/MultiPolygon only, invalid geometry repaired, empty rejected); rejected areas keep a "
        "`reason`, stay in the table and are set to `error` in the Areas API."
    ),
    check_specs=[
        dg.AssetCheckSpec("valid_geometries", asset=USER_AREAS),
        dg.AssetCheckSpec("rejected_areas_below_limit", asset=USER_AREAS),
    ],
    code_version="1",
)
def user_areas(
    context: dg.AssetExecutionContext, areas: AreasResource, storage: StorageResource
) -> dg.MaterializeResult:
    client = areas.client()
    st = storage.storage()
    keys = context.partition_keys
    # The API lists what is pending *now*: fetch it once for the whole run, not once per day.
    client.sync_areas(date.fromisoformat(keys[0]) - timedelta(days=1))
    pending = client.pending_areas()
    geostores = client.find_geostores(geostore_ids_to_fetch(pending))
    table = validate_areas(pending, geostores)
    context.log.info(f"{len(pending)} pending areas, {len(geostores)} geostores found")

    # The newest sync of the run owns the pending areas; earlier days keep what they recorded.
    paths = []
    final = table
    for key in keys:
        rel = C.user_areas_path(key)
        previous = st.read_parquet(rel) if st.exists(rel) else None
        out = (
            merge_with_previous(previous, table)
            if key == keys[-1]
            else (previous if previous is not None else table.iloc[0:0])
        )
        st.write_parquet(rel, out)
        paths.append(rel)
        final = out

    rejected = table[table["status"] == "rejected"]
    bad_ids = sorted({g for g in rejected["geostore__id"].dropna() if g})
    if bad_ids:
        # Rejections are final for this geometry: tell the Areas API, as datapump does.
        client.update_status(bad_ids, "error")
    accepted = final[final["status"] == "accepted"]
    invalid = int((~accepted.geometry.is_valid).sum()) if len(accepted) else 0
    share = len(rejected) / len(table) if len(table) else 0.0
    reasons = rejected["reason"].value_counts().head(10).to_dict() if len(rejected) else {}
    return dg.MaterializeResult(
        metadata=table_metadata(
            partition_range_uri(st.uri, paths),
            len(final),
            USER_AREA_SCHEMA,
            pending_areas=len(pending),
            accepted_areas=int((final["status"] == "accepted").sum()),
            rejected_areas=int((final["status"] == "rejected").sum()),
            repaired_geometries=int(final["repaired"].fillna(False).astype(bool).sum()),
            top_rejection_reasons=dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name="valid_geometries", passed=invalid == 0, metadata={"invalid_accepted": invalid}
            ),
            dg.AssetCheckResult(
                check_name="rejected_areas_below_limit",
                passed=share <= MAX_REJECTED_SHARE,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"rejected": len(rejected), "share": float(round(share, 4))},
            ),
        ],
    )


ASSETS = [user_areas]
