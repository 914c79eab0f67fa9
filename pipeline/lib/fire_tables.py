"""pipeline.lib.fire_tables: keep the per-area daily and weekly fire tables in storage, idempotently.

The tables are stored one file per fire day (`daily_alerts/date=D.parquet`) and one per ISO week.
Two writers keep them current, and both are idempotent because they *replace* rows rather than
add to them:

- a new fire day D: recount D for every known area and overwrite day D's file;
- a new area sync S: count S's areas on every stored fire day and, in each day file, replace the
  rows of exactly those areas.

Weekly files are rebuilt from the daily files of the weeks touched. Nothing is ever counted twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import geopandas as gpd
import pandas as pd

from pipeline import constants as C
from pipeline.lib.fire_stats import DAILY_COLUMNS, WEEKLY_COLUMNS, fire_counts, weekly_counts
from pipeline.lib.storage import Storage

ID = "geostore__id"


def _empty_daily() -> pd.DataFrame:
    return pd.DataFrame(
        {
            ID: pd.Series(dtype="object"),
            "alert__date": pd.Series(dtype="object"),
            "confidence__cat": pd.Series(dtype="object"),
            "alert__count": pd.Series(dtype="int64"),
        }
    )[DAILY_COLUMNS]


def stored_days(storage: Storage, prefix: str) -> list[str]:
    """Days (YYYY-MM-DD) that have a `date=D.parquet` file under `prefix`."""
    days = []
    for rel in storage.list(prefix):
        name = rel.rsplit("/", 1)[-1]
        if name.startswith("date=") and name.endswith(".parquet"):
            days.append(name[5:-8])
    return sorted(days)


def accepted_areas(user_areas: pd.DataFrame) -> gpd.GeoDataFrame:
    """One feature per geostore id from a user_areas table (accepted rows only)."""
    gdf = user_areas[user_areas["status"] == "accepted"]
    gdf = gdf[[ID, "geometry"]].drop_duplicates(subset=[ID], keep="first")
    return gpd.GeoDataFrame(gdf, geometry="geometry", crs="EPSG:4326").reset_index(drop=True)


def known_area_features(storage: Storage) -> gpd.GeoDataFrame:
    """Every accepted area of every stored sync, one feature per geostore id."""
    frames = []
    for day in stored_days(storage, "areas/user_areas"):
        frames.append(accepted_areas(storage.read_parquet(C.user_areas_path(day))))
    if not frames:
        return gpd.GeoDataFrame({ID: pd.Series(dtype="object")}, geometry=gpd.GeoSeries([], crs="EPSG:4326"))
    allf = pd.concat(frames, ignore_index=True).drop_duplicates(subset=[ID], keep="first")
    return gpd.GeoDataFrame(allf, geometry="geometry", crs="EPSG:4326").reset_index(drop=True)


def read_alerts(storage: Storage, product: str, day: str) -> pd.DataFrame:
    rel = C.alerts_path(product, day)
    if not storage.exists(rel):
        raise FileNotFoundError(
            f"fires/{product}_alerts partition {day} is not materialised (no {storage.uri(rel)}); materialise it first"
        )
    return storage.read_parquet(rel, columns=["longitude", "latitude", "acq_date", "confidence__cat"])


def read_daily(storage: Storage, product: str, day: str) -> pd.DataFrame:
    rel = C.daily_table_path(product, day)
    return storage.read_parquet(rel) if storage.exists(rel) else _empty_daily()


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return _empty_daily()
    out = df[DAILY_COLUMNS].copy()
    out["alert__count"] = out["alert__count"].astype("int64")
    return out.sort_values(DAILY_COLUMNS[:3], kind="stable").reset_index(drop=True)


def write_daily(storage: Storage, product: str, day: str, table: pd.DataFrame) -> str:
    return storage.write_parquet(C.daily_table_path(product, day), _normalise(table))


def count_day(storage: Storage, product: str, day: str, features: gpd.GeoDataFrame) -> pd.DataFrame:
    """Counts of one stored fire day for `features` (daily-table columns)."""
    if features.empty:
        return _empty_daily()
    return fire_counts(read_alerts(storage, product, day), features, id_column=ID)


def merge_area_rows(current: pd.DataFrame, counts: pd.DataFrame, area_ids: Iterable[str]) -> pd.DataFrame:
    """Replace the rows of `area_ids` in `current` with `counts` (which only holds those areas)."""
    ids = set(area_ids)
    kept = current[~current[ID].isin(ids)]
    return _normalise(pd.concat([kept, counts], ignore_index=True))


def iso_week(day: str) -> tuple[int, int]:
    y, w, _ = dt.date.fromisoformat(day).isocalendar()
    return int(y), int(w)


def days_of_iso_week(year: int, week: int) -> list[str]:
    return [dt.date.fromisocalendar(year, week, d).isoformat() for d in range(1, 8)]


def rebuild_weekly(storage: Storage, product: str, days: Iterable[str]) -> dict[tuple[int, int], int]:
    """Rebuild the weekly files of the ISO weeks containing `days`; returns rows per week."""
    out: dict[tuple[int, int], int] = {}
    for year, week in sorted({iso_week(d) for d in days}):
        daily = [read_daily(storage, product, d) for d in days_of_iso_week(year, week)]
        daily = [d for d in daily if not d.empty]
        frame = pd.concat(daily, ignore_index=True) if daily else _empty_daily()
        weekly = weekly_counts(frame, id_column=ID)[WEEKLY_COLUMNS]
        storage.write_parquet(C.weekly_table_path(product, year, week), weekly.reset_index(drop=True))
        out[(year, week)] = len(weekly)
    return out


def _count_days_task(storage_url: str, product: str, days: list[str], features_wkb: list[tuple[str, bytes]]):
    """Dask task: counts for several stored days (runs in a worker process)."""
    import shapely

    ids = [i for i, _ in features_wkb]
    geoms = shapely.from_wkb([g for _, g in features_wkb])
    features = gpd.GeoDataFrame({ID: ids}, geometry=geoms, crs="EPSG:4326")
    storage = Storage(storage_url)
    return {day: count_day(storage, product, day, features) for day in days}


def history_counts(
    storage: Storage,
    product: str,
    features: gpd.GeoDataFrame,
    days: list[str],
    dask_client=None,
    days_per_task: int = 16,
) -> dict[str, pd.DataFrame]:
    """Counts of `features` on each of `days`, computed on Dask when a client is given."""
    if features.empty or not days:
        return {d: _empty_daily() for d in days}
    if dask_client is None:
        return {d: count_day(storage, product, d, features) for d in days}
    import shapely

    payload = list(zip(features[ID].tolist(), shapely.to_wkb(features.geometry.values), strict=True))
    scattered = dask_client.scatter(payload, broadcast=True)
    chunks = [days[i : i + days_per_task] for i in range(0, len(days), days_per_task)]
    futures = [
        dask_client.submit(_count_days_task, storage.url, product, chunk, scattered, pure=False) for chunk in chunks
    ]
    out: dict[str, pd.DataFrame] = {}
    for fut in futures:
        out.update(fut.result())
    return out
