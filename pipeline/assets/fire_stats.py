"""pipeline.assets.fire_stats: fire alerts counted per user area, by day and ISO week, per product."""

import dagster as dg
import pandas as pd

from pipeline import constants as C
from pipeline.assets.areas import USER_AREAS
from pipeline.assets.common import partition_range_uri, table_metadata
from pipeline.lib import fire_tables as T
from pipeline.lib.fire_stats import DAILY_SCHEMA
from pipeline.partitions import daily_backfill_policy, daily_partitions
from pipeline.resources import DaskResource, StorageResource

#: Fire days counted per Dask task when computing a new sync's history.
HISTORY_DAYS_PER_TASK = 4


def alerts_key(product: str) -> dg.AssetKey:
    return dg.AssetKey([C.FIRES, f"{product}_alerts"])


def daily_key(product: str) -> dg.AssetKey:
    return dg.AssetKey([C.FIRE_STATS, f"{product}_daily_alerts"])


def history_key(product: str) -> dg.AssetKey:
    return dg.AssetKey([C.FIRE_STATS, f"{product}_area_history"])


def build_daily_asset(product: str) -> dg.AssetsDefinition:
    name = product.upper()

    @dg.asset(
        key=daily_key(product),
        group_name=C.FIRE_STATS,
        partitions_def=daily_partitions,
        deps=[
            dg.AssetDep(alerts_key(product)),
            dg.AssetDep(USER_AREAS, partition_mapping=dg.AllPartitionMapping()),
        ],
        backfill_policy=daily_backfill_policy,
        pool=C.pool_fire_stats(product),
        kinds={"parquet", "pandas"},
        description=(
            f"{name} fire alerts per user area, UTC day and confidence category (`geostore__id, alert__date, "
            f"confidence__cat, alert__count`), one Parquet file per fire day; also maintains the ISO-week table "
            f"(`alert__year, alert__week`). A partition counts that day's alerts for every area known so far and "
            f"replaces the day's file, so re-running is idempotent."
        ),
        check_specs=[dg.AssetCheckSpec("counts_match_alerts", asset=daily_key(product))],
        code_version="1",
    )
    def _daily(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        st = storage.storage()
        features = T.known_area_features(st)
        paths, rows, over = [], {}, []
        for day in context.partition_keys:
            counts = T.count_day(st, product, day, features)
            rel = C.daily_table_path(product, day)
            T.write_daily(st, product, day, counts)
            paths.append(rel)
            rows[day] = len(counts)
            # A day's count for one area can never exceed that day's alerts.
            if len(counts):
                n_alerts = len(T.read_alerts(st, product, day))
                worst = int(counts.groupby(T.ID)["alert__count"].sum().max())
                if worst > n_alerts:
                    over.append(day)
        weekly = T.rebuild_weekly(st, product, context.partition_keys)
        return dg.MaterializeResult(
            metadata=table_metadata(
                partition_range_uri(st.uri, paths),
                sum(rows.values()),
                DAILY_SCHEMA,
                areas_counted=len(features),
                rows_per_day=dg.MetadataValue.json(rows),
                weekly_files=dg.MetadataValue.json({f"{y}-W{w:02d}": n for (y, w), n in weekly.items()}),
            ),
            check_results=[
                dg.AssetCheckResult(check_name="counts_match_alerts", passed=not over, metadata={"days_over": over})
            ],
        )

    return _daily


def build_history_asset(product: str) -> dg.AssetsDefinition:
    name = product.upper()

    @dg.asset(
        key=history_key(product),
        group_name=C.FIRE_STATS,
        partitions_def=daily_partitions,
        deps=[
            dg.AssetDep(USER_AREAS),
            # After the same day's daily counts, so one nightly run never has two writers at once.
            dg.AssetDep(daily_key(product)),
            dg.AssetDep(alerts_key(product), partition_mapping=dg.AllPartitionMapping()),
        ],
        backfill_policy=daily_backfill_policy,
        pool=C.pool_fire_stats(product),
        kinds={"parquet", "dask"},
        description=(
            f"Full {name} fire history for the areas of one sync (partition = sync date): counts every stored "
            f"fire day for the sync's new areas on the Dask cluster and replaces exactly those areas' rows in the "
            f"daily and weekly tables. Idempotent; nothing is counted twice."
        ),
        code_version="1",
    )
    def _history(
        context: dg.AssetExecutionContext, storage: StorageResource, dask: DaskResource
    ) -> dg.MaterializeResult:
        st = storage.storage()
        fire_days = T.stored_days(st, f"fires/{product}_alerts")
        total_rows, touched, n_areas, markers = 0, set(), 0, []
        for sync_day in context.partition_keys:
            rel = C.user_areas_path(sync_day)
            if not st.exists(rel):
                raise FileNotFoundError(
                    f"areas/user_areas partition {sync_day} is not materialised (no {st.uri(rel)}); "
                    "materialise it first"
                )
            features = T.accepted_areas(st.read_parquet(rel))
            ids = features[T.ID].tolist()
            n_areas += len(ids)
            # Starting a cluster costs seconds; only histories longer than one task go to Dask.
            use_dask = bool(ids) and len(fire_days) > HISTORY_DAYS_PER_TASK
            counts = T.history_counts(
                st,
                product,
                features,
                fire_days,
                dask_client=dask.client if use_dask else None,
                days_per_task=HISTORY_DAYS_PER_TASK,
            )
            for day, day_counts in counts.items():
                merged = T.merge_area_rows(T.read_daily(st, product, day), day_counts, ids)
                T.write_daily(st, product, day, merged)
                total_rows += len(day_counts)
                touched.add(day)
            marker = C.history_marker_path(product, sync_day)
            st.write_json(marker, {"sync": sync_day, "geostores": sorted(ids), "fire_days": len(fire_days)})
            markers.append(marker)
        T.rebuild_weekly(st, product, sorted(touched))
        context.log.info(f"{n_areas} areas x {len(fire_days)} fire days -> {total_rows} rows")
        return dg.MaterializeResult(
            metadata=table_metadata(
                partition_range_uri(st.uri, markers),
                total_rows,
                DAILY_SCHEMA,
                areas=n_areas,
                fire_days_counted=len(fire_days),
                first_fire_day=fire_days[0] if fire_days else "",
                last_fire_day=fire_days[-1] if fire_days else "",
            )
        )

    return _history


viirs_daily_alerts = build_daily_asset("viirs")
modis_daily_alerts = build_daily_asset("modis")
viirs_area_history = build_history_asset("viirs")
modis_area_history = build_history_asset("modis")
ASSETS = [viirs_daily_alerts, modis_daily_alerts, viirs_area_history, modis_area_history]


def read_table(storage, product: str, agg: str = "daily_alerts") -> pd.DataFrame:
    """The whole daily or weekly table of a product (for tests, the CLI and notebooks)."""
    st = storage
    files = [f for f in st.list(f"fire_stats/{product}/{agg}") if f.endswith(".parquet")]
    frames = [st.read_parquet(f) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
