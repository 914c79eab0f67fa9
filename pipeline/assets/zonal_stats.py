"""pipeline.assets.zonal_stats: tree cover loss and integrated-alert statistics for any polygon feature set.

`zonal_assets(feature_set)` builds the two assets of a feature set: `zonal/<stem>_tree_cover_loss` and
`zonal/<stem>_integrated_alerts`. They compute against the *published* version of each product and
write `zonal/<dataset>/<analysis>/<version>/<part>.parquet`: one file per sync for a partitioned
feature set (user areas: a sync's new areas get full statistics), one file for a static one (admin
boundaries). When a new version is published, `zonal_on_new_release` re-requests every partition and
every static set, so all features get the new version's statistics. Files are replaced, never
appended: re-running is idempotent. The work runs on the Dask resource when it is large.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from pipeline import constants as C
from pipeline.assets.areas import USER_AREAS
from pipeline.assets.boundaries import ADMIN_BOUNDARIES
from pipeline.assets.common import table_metadata
from pipeline.assets.deforestation import published, release_key, tile_path
from pipeline.lib.fire_tables import accepted_areas
from pipeline.lib.tiles import tiles_for_geometry
from pipeline.partitions import daily_backfill_policy, daily_partitions
from pipeline.resources import DaskResource, StorageResource

ALERT_PREFIX = "gfw_integrated_alerts"
#: Static partition name of an unpartitioned feature set's table.
ALL = "all"


def _alert_schema(id_schema):
    return [
        *id_schema,
        (f"{ALERT_PREFIX}__date", "str", "alert date, YYYY-MM-DD"),
        (f"{ALERT_PREFIX}__confidence", "str", "nominal, high or highest (two or more systems agree)"),
        ("alert__count", "int64", "alert pixels"),
        ("alert_area__ha", "float64", "alert area in hectares (WGS84 ellipsoidal pixel areas)"),
    ]


def _tcl_schema(id_schema):
    return [
        *id_schema,
        ("umd_tree_cover_density_2000__threshold", "int", "canopy threshold T (10..75): pixels with canopy > T %"),
        ("umd_tree_cover_loss__year", "Int64", "year of loss; null on the row that reports a feature without loss"),
        ("umd_tree_cover_loss__ha", "float64", "tree cover loss in that year above the threshold, hectares"),
        ("umd_tree_cover_extent_2000__ha", "float64", "tree cover in 2000 above the threshold, hectares (per feature)"),
        ("area__ha", "float64", "area of the valid pixels of the feature, hectares (WGS84 ellipsoid)"),
    ]


@dataclass(frozen=True)
class FeatureSet:
    """A polygon feature set zonal statistics are computed for.

    Attributes:
        stem: asset-name stem (`user_area` -> `zonal/user_area_tree_cover_loss`).
        dataset: GFW input-dataset name, first part of the output folder and Data API dataset (`geostore`).
        source: the asset holding the features.
        id_columns: columns identifying a feature (first columns of every table).
        id_schema: (name, dtype, description) of the id columns.
        partitioned: True for daily sync partitions (user areas), False for one static set.
        read: `(storage, partition key or None) -> GeoDataFrame` of the features.
        table_level: GFW table-name level prefix (`adm2_` for GADM: `gadm__tcl__adm2_change`).
        dask_min_features: use the Dask resource from this many features on.
    """

    stem: str
    dataset: str
    label: str
    source: dg.AssetKey
    id_columns: tuple[str, ...]
    id_schema: tuple[tuple[str, str, str], ...]
    partitioned: bool
    read: Callable
    table_level: str = ""
    dask_min_features: int = 200

    @property
    def tcl_key(self) -> dg.AssetKey:
        return dg.AssetKey([C.ZONAL, f"{self.stem}_tree_cover_loss"])

    @property
    def alerts_key(self) -> dg.AssetKey:
        return dg.AssetKey([C.ZONAL, f"{self.stem}_integrated_alerts"])

    @property
    def tcl_schema(self):
        return _tcl_schema(list(self.id_schema))

    @property
    def alert_schema(self):
        return _alert_schema(list(self.id_schema))

    def tcl_path(self, version: str, part: str) -> str:
        return f"zonal/{self.dataset}/tree_cover_loss/{version}/{_part(part)}.parquet"

    def alerts_path(self, version: str, agg: str, part: str) -> str:
        return f"zonal/{self.dataset}/integrated_alerts/{version}/{agg}/{_part(part)}.parquet"

    def data_api_dataset(self, analysis: str, agg: str) -> str:
        """GFW result-table naming: `{dataset}__{analysis}__{level}{agg}` (domain.md B1)."""
        return f"{self.dataset}__{analysis}__{self.table_level}{agg}"


def _part(part: str) -> str:
    return ALL if part == ALL else f"date={part}"


def _user_area_features(st, sync_day):
    rel = C.user_areas_path(sync_day)
    if not st.exists(rel):
        raise FileNotFoundError(f"areas/user_areas partition {sync_day} is not materialised (no {st.uri(rel)})")
    return accepted_areas(st.read_parquet(rel))[["geostore__id", "geometry"]]


def _admin_features(st, _key):
    if not st.exists(C.BOUNDARIES_PATH):
        return None  # not configured (the boundary asset skipped): nothing to compute
    return st.read_parquet(C.BOUNDARIES_PATH)


USER_AREAS_SET = FeatureSet(
    stem="user_area",
    dataset="geostore",
    label="user area (one sync's new areas)",
    source=USER_AREAS,
    id_columns=("geostore__id",),
    id_schema=(("geostore__id", "str", "GFW geostore id of the area"),),
    partitioned=True,
    read=_user_area_features,
)
ADMIN_SET = FeatureSet(
    stem="admin_boundary",
    dataset="gadm",
    label="admin boundary (GADM-style iso/adm1/adm2)",
    source=ADMIN_BOUNDARIES,
    id_columns=("iso", "adm1", "adm2"),
    id_schema=(
        ("iso", "str", "ISO3 country code"),
        ("adm1", "int64", "admin level 1"),
        ("adm2", "int64", "admin level 2"),
    ),
    partitioned=False,
    read=_admin_features,
    table_level="adm2_",
    dask_min_features=1,
)
FEATURE_SETS = (USER_AREAS_SET, ADMIN_SET)


# Kept for callers of the user-area tables.
TCL = USER_AREAS_SET.tcl_key
ALERTS = USER_AREAS_SET.alerts_key
TCL_SCHEMA = USER_AREAS_SET.tcl_schema
ALERT_SCHEMA = USER_AREAS_SET.alert_schema
tcl_path = USER_AREAS_SET.tcl_path
alerts_path = USER_AREAS_SET.alerts_path


def tile_sources(st, product: str, version: str, tiles: list[str], tmp: Path, *, shared: bool) -> list[str]:
    """Paths/URIs of the product tiles the engine reads.

    Local storage: the stored files. S3: `s3://` URIs when the Dask cluster is remote (`shared`; workers
    read through GDAL's S3 driver, so they need the same AWS_* settings), otherwise local copies, which
    are faster to read repeatedly than ranged S3 reads.
    """
    out = []
    for t in tiles:
        rel = tile_path(product, version, t)
        if st.kind == "local" or shared:
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


def _keyed(fs: FeatureSet, features):
    """Features with one engine id column: the id itself, or a row number for composite ids."""
    if len(fs.id_columns) == 1:
        return features, fs.id_columns[0], None
    keyed = features.reset_index(drop=True).copy()
    keyed["__fid"] = range(len(keyed))
    lookup = keyed[["__fid", *fs.id_columns]]
    return keyed[["__fid", "geometry"]], "__fid", lookup


def _unkey(table, fs: FeatureSet, lookup, schema):
    if lookup is None:
        return table
    merged = table.merge(lookup, on="__fid", how="left").drop(columns="__fid")
    cols = [name for name, _, _ in schema]
    return merged[cols].sort_values(list(cols[: len(fs.id_columns)]), kind="stable").reset_index(drop=True)


class _Engine:
    """Runs the zonal engine for one feature set, on Dask when the job is large."""

    def __init__(self, fs: FeatureSet, dask: DaskResource):
        self.fs, self.dask = fs, dask

    def options(self, n_features: int) -> dict:
        if n_features >= self.fs.dask_min_features:
            return {"client": self.dask.client}
        return {}

    @property
    def shared(self) -> bool:
        return bool(self.dask.scheduler_address)


def _skipped(uri: str, schema, reason: str) -> dg.MaterializeResult:
    """A materialisation that wrote nothing, saying why (and still describing the table)."""
    return dg.MaterializeResult(metadata=table_metadata(uri, 0, schema, skipped=reason))


def _parts(context, fs: FeatureSet) -> list[str]:
    return list(context.partition_keys) if fs.partitioned else [ALL]


def _output_uri(st, paths: list[str]) -> str:
    return paths[0] if len(paths) == 1 else paths[0].rsplit("/", 1)[0]


def _tcl_asset(fs: FeatureSet):
    @dg.asset(
        key=fs.tcl_key,
        group_name=C.ZONAL,
        partitions_def=daily_partitions if fs.partitioned else None,
        backfill_policy=daily_backfill_policy if fs.partitioned else None,
        deps=[fs.source, release_key("tree_cover_loss"), release_key("tree_cover_density_2000")],
        kinds={"parquet", "raster"},
        description=(
            f"Tree cover loss per {fs.label}: hectares of loss by year and canopy threshold (10-75 %, canopy > T) "
            "plus tree cover extent 2000 and area, GFW column names (annualupdate_minimal change table), pixel-centre "
            "rule with WGS84 ellipsoidal pixel areas. Uses the published Hansen versions; skips (records why) while "
            "none is published."
        ),
        code_version="2",
    )
    def _asset(context: dg.AssetExecutionContext, storage: StorageResource, dask: DaskResource):
        from pipeline.lib import zonal as Z  # imported here: the engine is heavy and only these steps need it

        st = storage.storage()
        loss, tcd = published(st, "tree_cover_loss"), published(st, "tree_cover_density_2000")
        schema = fs.tcl_schema
        if not loss or not tcd:
            return _skipped(st.uri(f"zonal/{fs.dataset}/tree_cover_loss"), schema, "no published loss/density release")
        version, engine = loss["version"], _Engine(fs, dask)
        rows, paths = 0, []
        for part in _parts(context, fs):
            features = fs.read(st, part if fs.partitioned else None)
            if features is None:
                return _skipped(st.uri(fs.tcl_path(version, part)), schema, f"{fs.source.to_user_string()} is empty")
            if features.empty:  # e.g. a sync without new accepted areas: an empty table, not an error
                paths.append(st.write_parquet(fs.tcl_path(version, part), _empty(schema)))
                continue
            keyed, id_col, lookup = _keyed(fs, features)
            with tempfile.TemporaryDirectory() as tmp:
                tiles = needed_tiles(features, sorted(set(loss["tiles"]) & set(tcd["tiles"])))
                table = Z.tcl_stats(
                    tile_sources(st, "tree_cover_loss", loss["version"], tiles, Path(tmp), shared=engine.shared),
                    tile_sources(st, "tree_cover_density_2000", tcd["version"], tiles, Path(tmp), shared=engine.shared),
                    keyed,
                    id_column=id_col,
                    **engine.options(len(features)),
                )
            table = _unkey(table, fs, lookup, schema)
            paths.append(st.write_parquet(fs.tcl_path(version, part), table))
            rows += len(table)
            context.log.info(f"{fs.stem} {part}: {len(features)} features, {len(tiles)} tiles, {len(table)} rows")
        return dg.MaterializeResult(
            metadata=table_metadata(
                _output_uri(st, paths), rows, schema, version=version, density_version=tcd["version"]
            )
        )

    return _asset


def _alerts_asset(fs: FeatureSet):
    @dg.asset(
        key=fs.alerts_key,
        group_name=C.ZONAL,
        partitions_def=daily_partitions if fs.partitioned else None,
        backfill_policy=daily_backfill_policy if fs.partitioned else None,
        deps=[fs.source, release_key("integrated_alerts")],
        kinds={"parquet", "raster"},
        description=(
            f"Integrated deforestation alerts per {fs.label}: `alert__count` and `alert_area__ha` by alert date and "
            "confidence (nominal/high/highest), daily and ISO-weekly tables with GFW column names, against the "
            "published integrated-alerts version; skips (records why) while none is published."
        ),
        code_version="2",
    )
    def _asset(context: dg.AssetExecutionContext, storage: StorageResource, dask: DaskResource):
        from pipeline.lib import zonal as Z  # imported here: the engine is heavy and only these steps need it

        st = storage.storage()
        pub = published(st, "integrated_alerts")
        schema = fs.alert_schema
        if not pub:
            return _skipped(st.uri(f"zonal/{fs.dataset}/integrated_alerts"), schema, "no published alerts release")
        version, engine = pub["version"], _Engine(fs, dask)
        rows, paths = 0, []
        for part in _parts(context, fs):
            features = fs.read(st, part if fs.partitioned else None)
            if features is None:
                uri = st.uri(fs.alerts_path(version, "daily_alerts", part))
                return _skipped(uri, schema, f"{fs.source.to_user_string()} is empty")
            if features.empty:  # e.g. a sync without new accepted areas: empty tables, not an error
                daily = _empty(schema)
            else:
                keyed, id_col, lookup = _keyed(fs, features)
                with tempfile.TemporaryDirectory() as tmp:
                    tiles = needed_tiles(features, pub["tiles"])
                    daily = Z.alert_stats(
                        tile_sources(st, "integrated_alerts", version, tiles, Path(tmp), shared=engine.shared),
                        keyed,
                        id_column=id_col,
                        prefix=ALERT_PREFIX,
                        **engine.options(len(features)),
                    )
                daily = _unkey(daily, fs, lookup, schema)
            weekly = _weekly(Z, daily, fs)
            paths.append(st.write_parquet(fs.alerts_path(version, "daily_alerts", part), daily))
            st.write_parquet(fs.alerts_path(version, "weekly_alerts", part), weekly)
            rows += len(daily)
        return dg.MaterializeResult(metadata=table_metadata(_output_uri(st, paths), rows, schema, version=version))

    return _asset


def _weekly(Z, daily, fs: FeatureSet):
    """ISO-weekly sums of the daily table, for single or composite ids."""
    if len(fs.id_columns) == 1:
        return Z.alert_weekly(daily, id_column=fs.id_columns[0], prefix=ALERT_PREFIX)
    keyed = daily.copy()
    ids = keyed[list(fs.id_columns)].astype(str).agg("|".join, axis=1)
    keyed.insert(0, "__fid", ids)
    lookup = keyed[["__fid", *fs.id_columns]].drop_duplicates("__fid")
    weekly = Z.alert_weekly(keyed.drop(columns=list(fs.id_columns)), id_column="__fid", prefix=ALERT_PREFIX)
    out = weekly.merge(lookup, on="__fid", how="left").drop(columns="__fid")
    cols = [*fs.id_columns, *[c for c in weekly.columns if c != "__fid"]]
    return out[cols].sort_values([*fs.id_columns, "alert__year", "alert__week"], kind="stable").reset_index(drop=True)


def zonal_assets(fs: FeatureSet) -> list:
    """The tree-cover-loss and integrated-alert assets of a feature set."""
    return [_tcl_asset(fs), _alerts_asset(fs)]


user_area_tree_cover_loss, user_area_integrated_alerts = zonal_assets(USER_AREAS_SET)
admin_boundary_tree_cover_loss, admin_boundary_integrated_alerts = zonal_assets(ADMIN_SET)

ASSETS = [
    user_area_tree_cover_loss,
    user_area_integrated_alerts,
    admin_boundary_tree_cover_loss,
    admin_boundary_integrated_alerts,
]
