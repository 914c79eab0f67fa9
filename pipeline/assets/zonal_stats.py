"""pipeline.assets.zonal_stats: tree cover loss and integrated-alert statistics per user area.

Partitioned by area sync (like `areas/user_areas`): a sync's new areas get full statistics against
the *published* version of each product, written to `zonal/<analysis>/<version>/date=<sync>.parquet`.
When a new version is published, `zonal_on_new_release` re-requests every sync, so all areas get the
new version's statistics. Files are replaced, never appended: re-running is idempotent.
"""

import tempfile
from pathlib import Path

import dagster as dg

from pipeline import constants as C
from pipeline.assets.areas import USER_AREAS
from pipeline.assets.common import table_metadata
from pipeline.assets.deforestation import published, release_key, tile_path
from pipeline.lib.fire_tables import accepted_areas
from pipeline.lib.tiles import tiles_for_geometry
from pipeline.partitions import daily_backfill_policy, daily_partitions
from pipeline.resources import StorageResource

TCL = dg.AssetKey([C.ZONAL, "user_area_tree_cover_loss"])
ALERTS = dg.AssetKey([C.ZONAL, "user_area_integrated_alerts"])
ALERT_PREFIX = "gfw_integrated_alerts"

TCL_SCHEMA = [
    ("geostore__id", "str", "GFW geostore id of the area"),
    ("umd_tree_cover_density_2000__threshold", "int", "canopy threshold T (10..75): pixels with canopy > T %"),
    ("umd_tree_cover_loss__year", "Int64", "year of loss; null on the row that reports an area without loss"),
    ("umd_tree_cover_loss__ha", "float64", "tree cover loss in that year above the threshold, hectares"),
    ("umd_tree_cover_extent_2000__ha", "float64", "tree cover in 2000 above the threshold, hectares (per area)"),
    ("area__ha", "float64", "area of the valid pixels of the area, hectares (WGS84 ellipsoid)"),
]
ALERT_SCHEMA = [
    ("geostore__id", "str", "GFW geostore id of the area"),
    (f"{ALERT_PREFIX}__date", "str", "alert date, YYYY-MM-DD"),
    (f"{ALERT_PREFIX}__confidence", "str", "nominal, high or highest (two or more systems agree)"),
    ("alert__count", "int64", "alert pixels"),
    ("alert_area__ha", "float64", "alert area in hectares (WGS84 ellipsoidal pixel areas)"),
]


def tcl_path(version: str, sync_day: str) -> str:
    return f"zonal/tree_cover_loss/{version}/date={sync_day}.parquet"


def alerts_path(version: str, agg: str, sync_day: str) -> str:
    return f"zonal/integrated_alerts/{version}/{agg}/date={sync_day}.parquet"


def local_tiles(st, product: str, version: str, tiles: list[str], tmp: Path) -> list[str]:
    """Local paths of the product tiles (copied from S3 when storage is remote)."""
    out = []
    for t in tiles:
        rel = tile_path(product, version, t)
        if st.kind == "local":
            out.append(st.uri(rel))
        else:
            local = tmp / f"{product}-{t}.tif"
            local.write_bytes(st.read_bytes(rel))
            out.append(str(local))
    return out


def needed_tiles(features, available: list[str]) -> list[str]:
    wanted = set()
    for geom in features.geometry:
        wanted.update(tiles_for_geometry(geom))
    return sorted(wanted & set(available))


def _empty(schema):
    import pandas as pd

    return pd.DataFrame({name: pd.Series(dtype="object" if t == "str" else t) for name, t, _ in schema})


def _sync_features(st, sync_day: str):
    rel = C.user_areas_path(sync_day)
    if not st.exists(rel):
        raise FileNotFoundError(f"areas/user_areas partition {sync_day} is not materialised (no {st.uri(rel)})")
    return accepted_areas(st.read_parquet(rel))


@dg.asset(
    key=TCL,
    group_name=C.ZONAL,
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    deps=[USER_AREAS, release_key("tree_cover_loss"), release_key("tree_cover_density_2000")],
    kinds={"parquet", "raster"},
    description=(
        "Tree cover loss per user area of one sync: hectares of loss by year and canopy threshold (10-75 %, canopy > "
        "T) plus tree cover extent 2000 and area, GFW column names, pixel-centre rule with WGS84 ellipsoidal pixel "
        "areas. Uses the published Hansen versions; skips (records why) while none is published."
    ),
    code_version="1",
)
def user_area_tree_cover_loss(context: dg.AssetExecutionContext, storage: StorageResource):
    from pipeline.lib import zonal as Z  # imported here: the engine is heavy and only these steps need it

    st = storage.storage()
    loss, tcd = published(st, "tree_cover_loss"), published(st, "tree_cover_density_2000")
    if not loss or not tcd:
        return dg.MaterializeResult(
            metadata=table_metadata(
                st.uri("zonal/tree_cover_loss"), 0, TCL_SCHEMA, skipped="no published tree cover loss/density release"
            )
        )
    version = f"{loss['version']}"
    rows, paths = 0, []
    for sync_day in context.partition_keys:
        features = _sync_features(st, sync_day)
        if features.empty:  # a sync without new accepted areas: an empty table, not an error
            paths.append(st.write_parquet(tcl_path(version, sync_day), _empty(TCL_SCHEMA)))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            tiles = needed_tiles(features, sorted(set(loss["tiles"]) & set(tcd["tiles"])))
            table = Z.tcl_stats(
                local_tiles(st, "tree_cover_loss", loss["version"], tiles, Path(tmp)),
                local_tiles(st, "tree_cover_density_2000", tcd["version"], tiles, Path(tmp)),
                features,
                id_column="geostore__id",
            )
        paths.append(st.write_parquet(tcl_path(version, sync_day), table))
        rows += len(table)
    return dg.MaterializeResult(
        metadata=table_metadata(
            paths[0] if len(paths) == 1 else paths[0].rsplit("/", 1)[0],
            rows,
            TCL_SCHEMA,
            version=version,
            density_version=tcd["version"],
        )
    )


@dg.asset(
    key=ALERTS,
    group_name=C.ZONAL,
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    deps=[USER_AREAS, release_key("integrated_alerts")],
    kinds={"parquet", "raster"},
    description=(
        "Integrated deforestation alerts per user area of one sync: `alert__count` and `alert_area__ha` by alert date "
        "and confidence (nominal/high/highest), daily and ISO-weekly tables with GFW column names, against the "
        "published integrated-alerts version; skips (records why) while none is published."
    ),
    code_version="1",
)
def user_area_integrated_alerts(context: dg.AssetExecutionContext, storage: StorageResource):
    from pipeline.lib import zonal as Z  # imported here: the engine is heavy and only these steps need it

    st = storage.storage()
    pub = published(st, "integrated_alerts")
    if not pub:
        return dg.MaterializeResult(
            metadata=table_metadata(
                st.uri("zonal/integrated_alerts"), 0, ALERT_SCHEMA, skipped="no published integrated alerts release"
            )
        )
    version = pub["version"]
    rows, paths = 0, []
    for sync_day in context.partition_keys:
        features = _sync_features(st, sync_day)
        if features.empty:  # a sync without new accepted areas: empty tables, not an error
            empty = _empty(ALERT_SCHEMA)
            paths.append(st.write_parquet(alerts_path(version, "daily_alerts", sync_day), empty))
            st.write_parquet(
                alerts_path(version, "weekly_alerts", sync_day), Z.alert_weekly(empty, prefix=ALERT_PREFIX)
            )
            continue
        with tempfile.TemporaryDirectory() as tmp:
            tiles = needed_tiles(features, pub["tiles"])
            daily = Z.alert_stats(
                local_tiles(st, "integrated_alerts", version, tiles, Path(tmp)),
                features,
                id_column="geostore__id",
                prefix=ALERT_PREFIX,
            )
        weekly = Z.alert_weekly(daily, id_column="geostore__id", prefix=ALERT_PREFIX)
        paths.append(st.write_parquet(alerts_path(version, "daily_alerts", sync_day), daily))
        st.write_parquet(alerts_path(version, "weekly_alerts", sync_day), weekly)
        rows += len(daily)
    return dg.MaterializeResult(
        metadata=table_metadata(
            paths[0] if len(paths) == 1 else paths[0].rsplit("/", 1)[0], rows, ALERT_SCHEMA, version=version
        )
    )


ASSETS = [user_area_tree_cover_loss, user_area_integrated_alerts]
