"""pipeline.assets.fires: NASA FIRMS VIIRS and MODIS fire alerts, one GeoParquet file per UTC day."""

from datetime import date

import dagster as dg
import pandas as pd

from pipeline import constants as C
from pipeline.assets.common import partition_range_uri, table_metadata
from pipeline.lib.firms import ALERT_SCHEMA, dedupe_alerts, to_geodataframe
from pipeline.partitions import daily_backfill_policy, daily_partitions
from pipeline.resources import FirmsResource, StorageResource

#: Malformed CSV lines are dropped, not fatal; above this share of a day's lines the check fails.
MAX_DROPPED_SHARE = 0.01

_DESCRIPTIONS = {
    "viirs": (
        "VIIRS 375 m active-fire detections from NASA FIRMS (S-NPP, NOAA-20 and NOAA-21), one GeoParquet "
        "file per UTC acquisition day. Recent days come from the global 7-day files; older days from the FIRMS "
        "area API (needs FIRMS_MAP_KEY). Rows are de-duplicated on (latitude, longitude, acq_date, acq_time, "
        "satellite); `confidence__cat` is l/n/h. Re-materialising a day replaces it."
    ),
    "modis": (
        "MODIS C6.1 1 km active-fire detections (Terra and Aqua) from NASA FIRMS, one GeoParquet file per UTC "
        "acquisition day. MODIS confidence 0-100 is mapped to `confidence__cat` l (<30), n (30-79), h (>=80); "
        "the raw value is kept in `confidence`. Re-materialising a day replaces it."
    ),
}

CHECKS = ("schema_matches", "coordinates_in_range", "no_duplicate_detections", "malformed_rows_below_limit")


def alert_checks(
    product: str, frames: dict[str, pd.DataFrame], rows_read: int, dropped: int
) -> list[dg.AssetCheckResult]:
    """Check results computed on the data being written (see CHECKS)."""
    key = dg.AssetKey([C.FIRES, f"{product}_alerts"])
    expected = [name for name, _, _ in ALERT_SCHEMA]
    bad_schema = {d: list(df.columns) for d, df in frames.items() if list(df.columns)[: len(expected)] != expected}
    out_of_range = sum(
        int(((df.latitude.abs() > 90) | (df.longitude.abs() > 180)).sum()) for df in frames.values() if len(df)
    )
    dupes = sum(
        int(df.duplicated(["latitude", "longitude", "acq_date", "acq_time", "satellite"]).sum())
        for df in frames.values()
    )
    share = dropped / rows_read if rows_read else 0.0
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="schema_matches",
            passed=not bad_schema,
            metadata={"days_with_wrong_columns": dg.MetadataValue.json(bad_schema)},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="coordinates_in_range",
            passed=out_of_range == 0,
            metadata={"rows_out_of_range": out_of_range},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="no_duplicate_detections",
            passed=dupes == 0,
            metadata={"duplicate_rows": dupes},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="malformed_rows_below_limit",
            passed=share <= MAX_DROPPED_SHARE,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows_read": rows_read, "rows_dropped": dropped, "dropped_share": float(round(share, 6))},
        ),
    ]


def build_alerts_asset(product: str) -> dg.AssetsDefinition:
    key = dg.AssetKey([C.FIRES, f"{product}_alerts"])

    @dg.asset(
        key=key,
        group_name=C.FIRES,
        partitions_def=daily_partitions,
        # Per-day files written by the asset make range runs safe (no IO manager, dagster#14332).
        backfill_policy=daily_backfill_policy,
        pool=C.POOL_FIRMS,
        kinds={"geoparquet", "firms"},
        description=_DESCRIPTIONS[product],
        check_specs=[dg.AssetCheckSpec(name, asset=key) for name in CHECKS],
        code_version="1",
    )
    def _alerts(
        context: dg.AssetExecutionContext, firms: FirmsResource, storage: StorageResource
    ) -> dg.MaterializeResult:
        days = [date.fromisoformat(k) for k in context.partition_keys]
        today = firms.today_utc()
        result = firms.client().fetch_days(product, days, today=today)
        if result.dropped:
            context.log.warning(
                f"FIRMS {product}: dropped {result.dropped} malformed rows of {result.rows_read}: "
                + "; ".join(result.problems[:5])
            )
        st = storage.storage()
        frames = {d.isoformat(): dedupe_alerts(result.by_day.get(d, result.by_day.get(d.isoformat()))) for d in days}
        # Everything was fetched and parsed before the first write: a failed fetch leaves every
        # previous file untouched, and each write is atomic.
        paths = []
        for day, df in frames.items():
            rel = C.alerts_path(product, day)
            st.write_parquet(rel, to_geodataframe(df))
            paths.append(rel)
        rows = {day: len(df) for day, df in frames.items()}
        context.log.info(f"{product} alerts per day: {rows}")
        return dg.MaterializeResult(
            metadata=table_metadata(
                partition_range_uri(st.uri, paths),
                sum(rows.values()),
                ALERT_SCHEMA,
                rows_per_day=dg.MetadataValue.json(rows),
                rows_dropped=result.dropped,
                sources=dg.MetadataValue.json(result.requests),
            ),
            check_results=alert_checks(product, frames, result.rows_read, result.dropped),
        )

    return _alerts


viirs_alerts = build_alerts_asset("viirs")
modis_alerts = build_alerts_asset("modis")
ASSETS = [viirs_alerts, modis_alerts]
