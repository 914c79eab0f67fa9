"""pipeline.lib.zonal: tree cover loss and deforestation-alert statistics per polygon, with GFW column names."""

# Re-creates the tables of GFW's GeoTrellis ``annualupdate_minimal`` (tree cover loss by canopy threshold
# and year) and ``gladalerts`` / integrated alerts (alert counts and areas per day and ISO week) for any
# polygon feature set, without Spark. Both are thin layers over `pipeline.lib.zonal_engine.class_histograms`
# (windowed pixel-centre histograms weighted by exact WGS84-ellipsoid pixel areas; see that module for the
# pixel rule, memory bounds and parallel execution), so they share its guarantees:
#
# - a pixel counts for a feature when its centre is inside it (rasterio ``all_touched=False``);
# - hectares are ellipsoidal (not spherical) pixel areas, per raster row;
# - features crossing tile edges are summed over the tiles; features outside all tiles, or with only
#   nodata pixels, give no rows; overlapping features are counted independently; features sharing an id
#   are summed (GFW cuts large areas into 1x1° pieces that keep their id);
# - ``client=`` (a ``distributed.Client`` or ``concurrent.futures.Executor``) splits the work by tile and
#   feature chunk and returns exactly the sequential result.

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.lib.encodings import CONF_LABELS, DATE_CONF_BASE, decode_date_conf
from pipeline.lib.zonal_engine import (
    DEFAULT_ID_COLUMN,
    HISTOGRAM_COLUMNS,
    cell_area_m2,
    class_histograms,
    pixel_spans,
    rasterize_mask,
    row_areas_ha,
)

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = [
    "ALERT_DAILY_SCHEMA",
    "ALERT_WEEKLY_SCHEMA",
    "DEFAULT_ID_COLUMN",
    "HISTOGRAM_COLUMNS",
    "TCL_COLUMNS",
    "TCL_SCHEMA",
    "TCD_THRESHOLDS",
    "alert_daily_columns",
    "alert_stats",
    "alert_weekly",
    "alert_weekly_columns",
    "cell_area_m2",
    "class_histograms",
    "pixel_spans",
    "rasterize_mask",
    "row_areas_ha",
    "tcl_stats",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Tree cover loss (annualupdate_minimal "change" table)
# --------------------------------------------------------------------------------------------

#: GFW canopy thresholds (percent). A pixel counts for threshold T when its canopy density is > T.
TCD_THRESHOLDS = (10, 15, 20, 25, 30, 50, 75)
#: Largest loss-year code kept (2000 + 63 = 2063); larger values (e.g. an undeclared 255) are no data.
MAX_LOSS_YEAR_CODE = 63
_N_YEARS = MAX_LOSS_YEAR_CODE + 1
_N_BINS = len(TCD_THRESHOLDS) + 1  # bin 0: canopy <= 10; bin k: canopy in (T[k-1], T[k]]; bin 7: > 75
_INVALID = -(1 << 14)  # any code sum containing this is negative, i.e. ignored


def _canopy_bins() -> np.ndarray:
    """Lookup table canopy % (0..255) -> bin; 101..255 are not a canopy density and map to invalid."""
    lut = np.full(256, _INVALID, dtype=np.int16)
    pct = np.arange(101)
    # Bin = number of thresholds strictly below the value ("strictly greater than" binning).
    lut[:101] = np.searchsorted(np.asarray(TCD_THRESHOLDS), pct, side="left")
    return lut


_TCD_LUT = _canopy_bins()
_LOSS_LUT = np.where(np.arange(256) <= MAX_LOSS_YEAR_CODE, np.arange(256), _INVALID).astype(np.int16)
# Both lookups in one 64k-entry table indexed by (canopy << 8) | loss year: one gather per pixel for the
# usual uint8 rasters, ~1.5x faster than two gathers plus arithmetic (128 KB, stays in L2 cache).
_TCL_LUT = (_TCD_LUT[:, None] * np.int16(_N_YEARS) + _LOSS_LUT[None, :]).reshape(-1)
_TCL_LUT[_TCL_LUT < 0] = _INVALID

TCL_COLUMNS = [
    DEFAULT_ID_COLUMN,
    "umd_tree_cover_density_2000__threshold",
    "umd_tree_cover_loss__year",
    "umd_tree_cover_loss__ha",
    "umd_tree_cover_extent_2000__ha",
    "area__ha",
]
_ID_DESCRIPTION = (
    "Feature id, copied from the features' id column (its dtype follows that column); "
    "features sharing an id are summed."
)
#: (name, dtype, description) of each `tcl_stats` column; the first is replaced by `id_column`.
TCL_SCHEMA = [
    (DEFAULT_ID_COLUMN, "str", _ID_DESCRIPTION),
    (
        "umd_tree_cover_density_2000__threshold",
        "int64",
        "Canopy threshold T in % (10, 15, 20, 25, 30, 50, 75): the row counts pixels with 2000 canopy > T.",
    ),
    (
        "umd_tree_cover_loss__year",
        "Int64",
        "Loss year (2001..). Null on the single row of a (feature, threshold) that has no loss, which is "
        "there so its extent and area are still reported (loss 0).",
    ),
    ("umd_tree_cover_loss__ha", "float64", "Loss area in that year among pixels with canopy > T (ellipsoidal ha)."),
    (
        "umd_tree_cover_extent_2000__ha",
        "float64",
        "Area with 2000 canopy > T, all loss years (repeated on each row of the feature x threshold).",
    ),
    (
        "area__ha",
        "float64",
        "Area of all valid pixels of the feature, any canopy (repeated on every row of the feature).",
    ),
]


def _lut(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """table[values] for any integer raster dtype; values outside 0..255 map to invalid."""
    if values.dtype == np.uint8:
        return table.take(values)  # ndarray.take: half the cost of fancy indexing here
    v = values.astype(np.int64)
    out = table[np.clip(v, 0, 255)]
    out[(v < 0) | (v > 255)] = _INVALID
    return out


def tcl_class(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Class code of each pixel for `tcl_stats`: ``canopy_bin * 64 + loss_year_code`` (negative = ignored).

    Module-level (not a closure) so process pools can pickle it.

    Args:
        arrays: ``{"lossyear": ..., "tcd": ...}`` 1-D integer pixel values.

    Returns:
        int16 codes in ``[0, 512)``, negative where the canopy is not 0..100 or the loss year > 63.
    """
    tcd, loss = arrays["tcd"], arrays["lossyear"]
    if tcd.dtype == np.uint8 and loss.dtype == np.uint8:
        index = tcd.astype(np.uint16)
        index <<= 8
        index |= loss
        return _TCL_LUT.take(index)
    return _lut(_TCD_LUT, tcd) * np.int16(_N_YEARS) + _lut(_LOSS_LUT, loss)


def tcl_stats(
    lossyear_tiles: Sequence[Any],
    tcd_tiles: Sequence[Any],
    features: gpd.GeoDataFrame,
    id_column: str = DEFAULT_ID_COLUMN,
    **engine: Any,
) -> pd.DataFrame:
    """Tree cover loss by canopy threshold and year per feature (GFW ``annualupdate_minimal`` change table).

    Pixels are binned by their 2000 tree cover density "strictly greater than" the GFW thresholds
    (canopy 10 counts for no threshold, 11 counts for 10, 31 for 10..30, 76 for all); a pixel counts for
    threshold T when its canopy > T. Loss-year value 0 means no loss and n means loss in 2000 + n.
    A pixel is valid when neither layer holds its tile's nodata value, the canopy is 0..100 and the
    loss-year code is 0..63 (so an undeclared 255 fill is not data either).

    One row per feature x threshold x loss year that has loss (> 0 pixels). A feature x threshold
    without any loss still gets exactly one row, with ``umd_tree_cover_loss__year`` null (Int64 NA) and
    loss 0, so that its extent and area are reported. Features without a single valid pixel (outside
    all tiles, or nodata only) get no rows.

    Args:
        lossyear_tiles: Hansen ``lossyear`` tiles (paths or open rasterio datasets), uint8.
        tcd_tiles: ``treecover2000`` tiles on the same grid (one aligned tile per loss-year tile).
        features: Polygons with an id column (EPSG:4326, or reprojected to the tiles' CRS).
        id_column: Feature id column; the first output column.
        **engine: Passed to `class_histograms`: ``client``, ``n_tasks``, ``max_window_pixels``,
            ``gdal_cache_bytes``.

    Returns:
        DataFrame with columns ``[id_column, "umd_tree_cover_density_2000__threshold",
        "umd_tree_cover_loss__year", "umd_tree_cover_loss__ha", "umd_tree_cover_extent_2000__ha",
        "area__ha"]`` (id dtype as in `features`, int64, Int64, float64 x3), sorted by id, threshold, year.
        Extent and area are totals per feature x threshold, repeated on each of its rows.
    """
    hist = class_histograms(
        {"lossyear": lossyear_tiles, "tcd": tcd_tiles},
        features,
        tcl_class,
        _N_BINS * _N_YEARS,
        id_column=id_column,
        **engine,
    )
    columns = [id_column, *TCL_COLUMNS[1:]]
    id_dtype = features[id_column].dtype
    if hist.empty:
        return pd.DataFrame(
            {
                id_column: pd.Series([], dtype=id_dtype),
                columns[1]: pd.Series([], dtype="int64"),
                columns[2]: pd.Series([], dtype="Int64"),
                columns[3]: pd.Series([], dtype="float64"),
                columns[4]: pd.Series([], dtype="float64"),
                columns[5]: pd.Series([], dtype="float64"),
            }
        )
    # hist is sorted by id, so codes in order of appearance are in id order.
    id_code, ids = pd.factorize(hist[id_column], sort=False)
    ids = np.asarray(ids, dtype=object)
    cls = hist["class"].to_numpy()
    canopy_bin, year_code = cls // _N_YEARS, cls % _N_YEARS
    area = hist["area_ha"].to_numpy()
    n_ids = ids.size
    # hist is sorted by (id, class), so these bincounts add in a fixed order: deterministic sums.
    total = np.bincount(id_code, weights=area, minlength=n_ids)
    out_id, out_t, out_year, out_loss, out_extent = [], [], [], [], []
    for k, threshold in enumerate(TCD_THRESHOLDS):
        above = canopy_bin > k  # canopy bin k+1 and up: canopy > TCD_THRESHOLDS[k]
        extent = np.bincount(id_code[above], weights=area[above], minlength=n_ids)
        lossy = above & (year_code > 0)
        # (id, year) -> loss area; sorting by (id, year) keeps the summation order within each group.
        key = id_code[lossy] * _N_YEARS + year_code[lossy]
        order = np.argsort(key, kind="stable")
        key, lossa = key[order], area[lossy][order]
        uk, first = np.unique(key, return_index=True)
        loss = np.add.reduceat(lossa, first) if uk.size else np.zeros(0)
        lid, lyear = uk // _N_YEARS, uk % _N_YEARS
        no_loss = np.setdiff1d(np.arange(n_ids), lid)
        out_id += [lid, no_loss]
        out_t.append(np.full(lid.size + no_loss.size, threshold, dtype=np.int64))
        out_year += [2000 + lyear, np.full(no_loss.size, -1)]
        out_loss += [loss, np.zeros(no_loss.size)]
        out_extent += [extent[lid], extent[no_loss]]
    rid = np.concatenate(out_id)
    rt = np.concatenate(out_t)
    ryear = np.concatenate(out_year)
    order = np.lexsort((ryear, rt, rid))
    rid, rt, ryear = rid[order], rt[order], ryear[order]
    year = pd.array(ryear, dtype="Int64")
    year[ryear < 0] = pd.NA
    return pd.DataFrame(
        {
            id_column: pd.Series(ids[rid]).astype(id_dtype).to_numpy(),
            columns[1]: rt,
            columns[2]: year,
            columns[3]: np.concatenate(out_loss)[order],
            columns[4]: np.concatenate(out_extent)[order],
            columns[5]: total[rid],
        }
    )


# --------------------------------------------------------------------------------------------
# Deforestation alerts (date_conf): daily and ISO-weekly tables
# --------------------------------------------------------------------------------------------

DEFAULT_ALERT_PREFIX = "gfw_integrated_alerts"
_CONF_ORDER = {label: code for code, label in CONF_LABELS.items()}  # nominal 2 < high 3 < highest 4


def alert_daily_columns(id_column: str = DEFAULT_ID_COLUMN, prefix: str = DEFAULT_ALERT_PREFIX) -> list[str]:
    """Columns of `alert_stats`.

    Args:
        id_column: Feature id column.
        prefix: Dataset prefix of the date and confidence columns.

    Returns:
        ``[id_column, f"{prefix}__date", f"{prefix}__confidence", "alert__count", "alert_area__ha"]``.
    """
    return [id_column, f"{prefix}__date", f"{prefix}__confidence", "alert__count", "alert_area__ha"]


def alert_weekly_columns(id_column: str = DEFAULT_ID_COLUMN, prefix: str = DEFAULT_ALERT_PREFIX) -> list[str]:
    """Columns of `alert_weekly`.

    Args:
        id_column: Feature id column.
        prefix: Dataset prefix of the confidence column.

    Returns:
        ``[id_column, "alert__year", "alert__week", f"{prefix}__confidence", "alert__count", "alert_area__ha"]``.
    """
    return [id_column, "alert__year", "alert__week", f"{prefix}__confidence", "alert__count", "alert_area__ha"]


#: (name, dtype, description) of each `alert_stats` column for the default id column and prefix.
ALERT_DAILY_SCHEMA = [
    (DEFAULT_ID_COLUMN, "str", _ID_DESCRIPTION),
    (f"{DEFAULT_ALERT_PREFIX}__date", "str", "Alert date 'YYYY-MM-DD' (date_conf day count from 2014-12-31)."),
    (
        f"{DEFAULT_ALERT_PREFIX}__confidence",
        "str",
        "Alert confidence: 'nominal' (date_conf 2xxxx), 'high' (3xxxx) or 'highest' (4xxxx).",
    ),
    ("alert__count", "int64", "Alert pixels (centre inside the feature) with that date and confidence; > 0."),
    ("alert_area__ha", "float64", "Ellipsoidal area of those pixels in hectares."),
]
#: (name, dtype, description) of each `alert_weekly` column for the default id column and prefix.
ALERT_WEEKLY_SCHEMA = [
    (DEFAULT_ID_COLUMN, "str", _ID_DESCRIPTION),
    ("alert__year", "int64", "ISO 8601 week-numbering year of the alert date (2024-12-30 is in 2025)."),
    ("alert__week", "int64", "ISO 8601 week number 1..53 (weeks start on Monday)."),
    (f"{DEFAULT_ALERT_PREFIX}__confidence", "str", "'nominal', 'high' or 'highest'."),
    ("alert__count", "int64", "Sum of the daily alert__count over the ISO week."),
    ("alert_area__ha", "float64", "Sum of the daily alert_area__ha over the ISO week."),
]


def alert_class(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Class code of each pixel for `alert_stats`: the date_conf value itself; 0 (no alert) is not counted.

    Args:
        arrays: ``{"date_conf": ...}`` 1-D integer pixel values (uint16 in GFW tiles).

    Returns:
        ``(codes, valid)``: the values unchanged (no copy) and the mask of alert pixels (value > 0).
    """
    v = arrays["date_conf"]
    return v, v > 0


def _as_date(value: Any, name: str) -> date | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a date or 'YYYY-MM-DD', got {value!r}") from exc


def alert_stats(
    date_conf_tiles: Sequence[Any],
    features: gpd.GeoDataFrame,
    id_column: str = DEFAULT_ID_COLUMN,
    prefix: str = DEFAULT_ALERT_PREFIX,
    start_date: Any = None,
    end_date: Any = None,
    **engine: Any,
) -> pd.DataFrame:
    """Alert pixel count and area per feature, alert date and confidence (GFW ``daily_alerts``).

    Pixels hold GFW ``date_conf`` values (external-apis.md §2.1): ``conf * 10000 + days since
    2014-12-31`` with conf 2 nominal, 3 high, 4 highest; 0 means no alert (and is also the nodata value).
    Values with any other confidence digit are dropped with a warning.

    Args:
        date_conf_tiles: date_conf tiles (paths or open rasterio datasets), uint16.
        features: Polygons with an id column.
        id_column: Feature id column; the first output column.
        prefix: Dataset prefix of the date and confidence columns, e.g. ``gfw_integrated_alerts`` or
            ``umd_glad_landsat_alerts``.
        start_date: Optional first alert date kept (inclusive), a date or 'YYYY-MM-DD'.
        end_date: Optional last alert date kept (inclusive).
        **engine: Passed to `class_histograms` (``client``, ``n_tasks``, ``max_window_pixels``, ...).

    Returns:
        DataFrame ``[id_column, f"{prefix}__date", f"{prefix}__confidence", "alert__count",
        "alert_area__ha"]`` (id dtype as in `features`, str 'YYYY-MM-DD', str, int64, float64), one row
        per combination with alerts, sorted by id, date and confidence (nominal, high, highest).
    """
    start, end = _as_date(start_date, "start_date"), _as_date(end_date, "end_date")
    hist = class_histograms(
        {"date_conf": date_conf_tiles}, features, alert_class, 1 << 16, id_column=id_column, **engine
    )
    columns = alert_daily_columns(id_column, prefix)
    days, conf = decode_date_conf(hist["class"].to_numpy())
    known = np.isin(conf, list(CONF_LABELS))
    if not known.all():
        bad = np.unique(hist["class"].to_numpy()[~known])
        log.warning("dropping %d date_conf values with an unknown confidence digit, e.g. %s", bad.size, bad[:5])
    dates = np.datetime64(DATE_CONF_BASE.isoformat(), "D") + days.astype("timedelta64[D]")
    keep = known
    if start is not None:
        keep &= dates >= np.datetime64(start.isoformat(), "D")
    if end is not None:
        keep &= dates <= np.datetime64(end.isoformat(), "D")
    hist, dates, conf = hist[keep], dates[keep], conf[keep]
    # The class code is conf * 10000 + days, so sort by (id, days, conf) explicitly.
    order = np.lexsort((conf, dates, pd.factorize(hist[id_column], sort=False)[0]))
    hist, dates, conf = hist.iloc[order], dates[order], conf[order]
    labels = np.array([CONF_LABELS.get(int(c), "") for c in range(5)], dtype=object)
    return pd.DataFrame(
        {
            id_column: hist[id_column].to_numpy(),
            columns[1]: pd.array(np.datetime_as_string(dates, unit="D").astype(object), dtype="str"),
            columns[2]: pd.array(labels[conf], dtype="str"),
            columns[3]: hist["pixel_count"].to_numpy(dtype=np.int64),
            columns[4]: hist["area_ha"].to_numpy(dtype=np.float64),
        }
    ).astype({id_column: features[id_column].dtype})


def alert_weekly(
    daily: pd.DataFrame,
    id_column: str = DEFAULT_ID_COLUMN,
    prefix: str = DEFAULT_ALERT_PREFIX,
) -> pd.DataFrame:
    """Sum daily alert rows into ISO 8601 weeks (GFW ``weekly_alerts``).

    The ISO week-numbering year can differ from the calendar year near New Year: 2020-12-31 and
    2021-01-03 are in 2020 week 53, 2024-12-30 is in 2025 week 1.

    Args:
        daily: Output of `alert_stats` with the same `id_column` and `prefix`.
        id_column: Feature id column.
        prefix: Prefix of the date and confidence columns.

    Returns:
        DataFrame ``[id_column, "alert__year", "alert__week", f"{prefix}__confidence", "alert__count",
        "alert_area__ha"]`` (year, week, count int64; area float64), sorted by id, year, week and
        confidence (nominal, high, highest).

    Raises:
        KeyError: If a required column is missing.
        ValueError: If a date is not 'YYYY-MM-DD'.
    """
    dcol, ccol = f"{prefix}__date", f"{prefix}__confidence"
    missing = [c for c in (id_column, dcol, ccol, "alert__count", "alert_area__ha") if c not in daily.columns]
    if missing:
        raise KeyError(f"daily alerts lack column(s) {missing}")
    columns = alert_weekly_columns(id_column, prefix)
    try:
        dates = pd.to_datetime(daily[dcol], format="%Y-%m-%d")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{dcol} must be 'YYYY-MM-DD': {exc}") from exc
    iso = dates.dt.isocalendar()
    frame = pd.DataFrame(
        {
            id_column: daily[id_column].to_numpy(),
            "alert__year": iso["year"].to_numpy(dtype=np.int64),
            "alert__week": iso["week"].to_numpy(dtype=np.int64),
            "_conf": daily[ccol].map(_CONF_ORDER).to_numpy(),
            "alert__count": daily["alert__count"].to_numpy(dtype=np.int64),
            "alert_area__ha": daily["alert_area__ha"].to_numpy(dtype=np.float64),
        }
    )
    if frame["_conf"].isna().any():
        raise ValueError(f"{ccol} must be one of {sorted(_CONF_ORDER)}")
    out = frame.groupby([id_column, "alert__year", "alert__week", "_conf"], sort=True, as_index=False).agg(
        {"alert__count": "sum", "alert_area__ha": "sum"}
    )
    labels = {code: label for label, code in _CONF_ORDER.items()}
    out[ccol] = pd.array(out["_conf"].map(labels).astype(object), dtype="str")
    out["alert__count"] = out["alert__count"].astype(np.int64)
    out = out[columns].reset_index(drop=True)
    out[id_column] = out[id_column].astype(daily[id_column].dtype)
    return out
