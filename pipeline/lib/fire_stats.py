"""pipeline.lib.fire_stats: count fire alerts per polygon feature, per day and week and confidence.

Re-creates the `daily_alerts` / `weekly_alerts` tables of GFW's `firealerts` analysis for any polygon
feature set (geostore areas, GADM, WDPA, ...), without GeoTrellis and without building one shapely
Point per alert.

**Predicate.** A point counts for a feature when the feature *intersects* it, i.e. points on the
boundary (on an edge or a vertex) count, points inside a hole do not, and points on a hole's ring
count. This matches what a user gets from `shapely.intersects(polygon, point)` or
`geopandas.sjoin(..., predicate="intersects")`. For points strictly off every boundary it gives the
same answer as `within`/`contains`; the two differ only for points exactly on a boundary.
Overlapping features each count the point.

**Algorithm.** Points are bucketed by longitude with a 16-bit key (numpy's stable argsort on uint16 is
a linear-time radix sort, ~4x cheaper than sorting the float coordinates). Each feature then takes
the contiguous run of buckets covering its bounding box, keeps the points inside the box with a
vectorised comparison, and tests only those candidates with `shapely.intersects_xy` against the
prepared geometry. No all-pairs structure and no point geometries are ever built; points are
processed in chunks so temporary memory stays bounded for any input size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

DEFAULT_ID_COLUMN = "geostore__id"

#: Columns of the daily table; the first one is replaced by `id_column` when another is used.
DAILY_COLUMNS = [DEFAULT_ID_COLUMN, "alert__date", "confidence__cat", "alert__count"]
#: Columns of the weekly table; the first one is replaced by `id_column` when another is used.
WEEKLY_COLUMNS = [DEFAULT_ID_COLUMN, "alert__year", "alert__week", "confidence__cat", "alert__count"]

_ID_DESCRIPTION = (
    "Feature id, copied from the features' id column (its dtype follows that column). "
    "Features sharing an id are one area: only the first is used."
)
#: (name, dtype, description) of each daily column, for documentation and table creation.
DAILY_SCHEMA = [
    (DEFAULT_ID_COLUMN, "str", _ID_DESCRIPTION),
    ("alert__date", "str", "Acquisition date of the alerts, 'YYYY-MM-DD' (UTC, from acq_date)."),
    ("confidence__cat", "str", "Confidence category of the alerts as given by the source: 'l', 'n' or 'h'."),
    (
        "alert__count",
        "int64",
        "Number of alerts intersecting the feature (boundary included) on that date "
        "with that confidence; always > 0, absent rows mean zero.",
    ),
]
#: (name, dtype, description) of each weekly column, for documentation and table creation.
WEEKLY_SCHEMA = [
    (DEFAULT_ID_COLUMN, "str", _ID_DESCRIPTION),
    ("alert__year", "int64", "ISO 8601 week-numbering year of alert__date (2024-12-30 is in 2025)."),
    ("alert__week", "int64", "ISO 8601 week number of alert__date, 1..53 (weeks start on Monday)."),
    ("confidence__cat", "str", "Confidence category of the alerts: 'l', 'n' or 'h'."),
    ("alert__count", "int64", "Sum of the daily alert__count over the ISO week; always > 0."),
]

_ALERT_COLUMNS = ("longitude", "latitude", "acq_date", "confidence__cat")
_N_BUCKETS = 1 << 16  # uint16 keys: numpy sorts them with a radix sort
_DEFAULT_CHUNK = 1 << 20  # ~1 M points -> ~40 MB of temporaries per chunk


def _polygon_array(polygons: Any) -> np.ndarray:
    """Return the polygons as a 1-D object array of shapely geometries (None allowed)."""
    values = getattr(polygons, "values", polygons)  # GeoSeries -> GeometryArray
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    return arr


def count_points_in_polygons(
    lon: np.ndarray,
    lat: np.ndarray,
    polygons: Sequence[Any] | Any,
    group: np.ndarray | None = None,
    n_groups: int | None = None,
    *,
    chunk_size: int = _DEFAULT_CHUNK,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count points per (polygon, group) where the polygon intersects the point.

    A point on a polygon's boundary counts (intersects semantic); a point in a hole does not.
    Overlapping polygons each count the point. None, empty and invalid geometries are skipped
    and get no counts. Points with a non-finite coordinate or a negative group code are ignored.

    Args:
        lon: x coordinates (longitude, same CRS as the polygons), shape (n,).
        lat: y coordinates (latitude), shape (n,).
        polygons: Shapely geometries (Polygon/MultiPolygon, holes allowed), a GeoSeries or an
            array; output indices are positions in this sequence.
        group: Optional integer group code per point, shape (n,), e.g. a (date, confidence) code.
            Negative codes mean "ignore this point". Defaults to a single group 0.
        n_groups: Number of group codes; defaults to ``group.max() + 1``.
        chunk_size: Points handled per pass; bounds temporary memory (~40 bytes per point).

    Returns:
        ``(polygon_index, group_code, count)`` as int64 arrays holding only non-zero cells,
        sorted by polygon index, then group code.

    Raises:
        ValueError: If the array shapes disagree or a group code is >= n_groups.
    """
    x = np.asarray(lon, dtype=np.float64).reshape(-1)
    y = np.asarray(lat, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"lon and lat differ in length: {x.size} != {y.size}")
    if group is None:
        g = np.zeros(x.size, dtype=np.int32)
        n_groups = 1 if n_groups is None else int(n_groups)
    else:
        g = np.asarray(group).reshape(-1)
        if g.shape != x.shape:
            raise ValueError(f"group has {g.size} entries for {x.size} points")
        if not np.issubdtype(g.dtype, np.integer):
            raise ValueError(f"group must hold integer codes, got dtype {g.dtype}")
        g_max = int(g.max()) if g.size else -1
        if n_groups is None:
            n_groups = max(g_max + 1, 1)
        elif g_max >= n_groups:
            raise ValueError(f"group code {g_max} is out of range for n_groups={n_groups}")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")

    geoms = _polygon_array(polygons)
    empty = np.zeros(0, dtype=np.int64)
    if geoms.size == 0 or x.size == 0:
        return empty, empty.copy(), empty.copy()

    # Validity is checked later, and only for polygons that matched a point: is_valid costs about
    # as much as all the point tests together, and most features have no fire on a given night.
    usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    poly_idx = np.flatnonzero(usable)
    if poly_idx.size == 0:
        return empty, empty.copy(), empty.copy()
    bounds = shapely.bounds(geoms[poly_idx])

    # Prepare once for all chunks; undo it afterwards for geometries the caller had not prepared,
    # so their memory (an edge index per polygon) is not kept alive by our call.
    to_unprepare = geoms[poly_idx][~shapely.is_prepared(geoms[poly_idx])]
    shapely.prepare(to_unprepare)
    try:
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for start in range(0, x.size, chunk_size):
            stop = min(start + chunk_size, x.size)
            parts.append(_count_chunk(x[start:stop], y[start:stop], g[start:stop], n_groups, geoms, poly_idx, bounds))
    finally:
        shapely.destroy_prepared(to_unprepare)

    if len(parts) == 1:
        pi, gi, ci = parts[0]
    else:
        pi = np.concatenate([p[0] for p in parts])
        gi = np.concatenate([p[1] for p in parts])
        ci = np.concatenate([p[2] for p in parts])
        if pi.size:
            # The same (polygon, group) cell may come from several chunks: sum them.
            ukey, inverse = np.unique(pi * n_groups + gi, return_inverse=True)
            ci = np.bincount(inverse.reshape(-1), weights=ci, minlength=ukey.size).astype(np.int64)
            pi, gi = ukey // n_groups, ukey % n_groups
    if pi.size == 0:
        return empty, empty.copy(), empty.copy()

    matched = np.unique(pi)
    invalid = matched[~shapely.is_valid(geoms[matched])]
    if invalid.size:
        log.warning("skipping %d invalid geometries (positions %s)", invalid.size, invalid[:10].tolist())
        keep = ~np.isin(pi, invalid)
        pi, gi, ci = pi[keep], gi[keep], ci[keep]
    return pi, gi, ci


def _count_chunk(
    x: np.ndarray,
    y: np.ndarray,
    g: np.ndarray,
    n_groups: int,
    geoms: np.ndarray,
    poly_idx: np.ndarray,
    bounds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count one chunk of points; same contract as `count_points_in_polygons` for usable polygons."""
    keep = np.isfinite(x) & np.isfinite(y) & (g >= 0)
    if not keep.all():
        x, y, g = x[keep], y[keep], g[keep]
    empty = np.zeros(0, dtype=np.int64)
    if x.size == 0:
        return empty, empty.copy(), empty.copy()

    # Bucket by longitude. The key is monotone in x (IEEE subtraction and multiplication by a
    # positive constant are monotone), so every x in [a, b] has a key in [key(a), key(b)].
    x0, x1 = float(x.min()), float(x.max())
    scale = (_N_BUCKETS - 1) / (x1 - x0) if x1 > x0 else 0.0
    scaled = x - x0
    scaled *= scale
    np.minimum(scaled, _N_BUCKETS - 1, out=scaled)
    key = scaled.astype(np.uint16)
    del scaled
    order = np.argsort(key, kind="stable")
    xs, ys, gs = x[order], y[order], g[order]
    starts = np.zeros(_N_BUCKETS + 1, dtype=np.int64)
    np.cumsum(np.bincount(key, minlength=_N_BUCKETS), out=starts[1:])
    del key, order

    out_p: list[np.ndarray] = []
    out_g: list[np.ndarray] = []
    out_c: list[np.ndarray] = []
    for j, i in enumerate(poly_idx):
        bx0, by0, bx1, by1 = bounds[j]
        if bx1 < x0 or bx0 > x1:
            continue
        k0 = int(min(max((bx0 - x0) * scale, 0.0), _N_BUCKETS - 1))
        k1 = int(min(max((bx1 - x0) * scale, 0.0), _N_BUCKETS - 1))
        lo, hi = starts[k0], starts[k1 + 1]
        if lo == hi:
            continue
        sx, sy = xs[lo:hi], ys[lo:hi]
        cand = np.flatnonzero((sy >= by0) & (sy <= by1) & (sx >= bx0) & (sx <= bx1))
        if cand.size == 0:
            continue
        cand += lo
        hit = cand[shapely.intersects_xy(geoms[i], xs[cand], ys[cand])]
        if hit.size == 0:
            continue
        hg = gs[hit]
        # bincount is cheapest unless the group space dwarfs the hits (e.g. years of days).
        if n_groups <= 4 * hg.size + 64:
            c = np.bincount(hg, minlength=n_groups)
            codes = np.flatnonzero(c)
            c = c[codes]
        else:
            codes, c = np.unique(hg, return_counts=True)
        out_p.append(np.full(codes.size, i, dtype=np.int64))
        out_g.append(codes.astype(np.int64, copy=False))
        out_c.append(c.astype(np.int64, copy=False))
    if not out_p:
        return empty, empty.copy(), empty.copy()
    # poly_idx is ascending and codes are ascending within a polygon, so the result is sorted.
    return np.concatenate(out_p), np.concatenate(out_g), np.concatenate(out_c)


def _empty_daily(id_column: str, id_dtype: Any) -> pd.DataFrame:
    return pd.DataFrame(
        {
            id_column: pd.Series([], dtype=id_dtype),
            "alert__date": pd.Series([], dtype="str"),
            "confidence__cat": pd.Series([], dtype="str"),
            "alert__count": pd.Series([], dtype="int64"),
        }
    )


def _features_in_4326(features: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Return `features` in EPSG:4326, reprojecting if needed; raise ValueError if they have no CRS."""
    if features.crs is None:
        raise ValueError(
            "features have no CRS (crs=None); set it (e.g. features.set_crs('EPSG:4326')) "
            "so fire alerts, which are in EPSG:4326 longitude/latitude, can be matched"
        )
    if features.crs.to_epsg() != 4326:
        return features.to_crs(epsg=4326)
    return features


def _date_strings(values: pd.Index | np.ndarray) -> np.ndarray:
    """Canonical 'YYYY-MM-DD' strings for the distinct acq_date values; ValueError if unparseable."""
    if isinstance(values, pd.Index) and pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values
    else:
        try:
            parsed = pd.to_datetime(pd.Index(values), format="%Y-%m-%d")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"acq_date must be 'YYYY-MM-DD' strings or datetimes: {exc}") from exc
    return np.asarray(parsed.strftime("%Y-%m-%d"), dtype=object)


def fire_counts(
    alerts: pd.DataFrame,
    features: gpd.GeoDataFrame,
    id_column: str = DEFAULT_ID_COLUMN,
) -> pd.DataFrame:
    """Count fire alerts per feature, acquisition date and confidence (GFW `daily_alerts`).

    An alert counts for a feature when the feature intersects it (boundary included, holes
    excluded); overlapping features each count it. Alerts with a missing coordinate, date or
    confidence are ignored. Features with a None, empty or invalid geometry or a missing id get
    no rows; features sharing an id are one area, and only the first of them is used.

    Args:
        alerts: Columns ``longitude``, ``latitude`` (EPSG:4326), ``acq_date`` ('YYYY-MM-DD'
            strings, or datetimes) and ``confidence__cat`` ('l', 'n', 'h').
        features: Polygons with an id column. Reprojected to EPSG:4326 if in another CRS.
        id_column: Name of the features' id column; it is also the first output column.

    Returns:
        DataFrame with columns ``[id_column, "alert__date", "confidence__cat", "alert__count"]``
        (id dtype as in `features`, str, str, int64), one row per combination with a count > 0,
        sorted by those three keys. Empty inputs give an empty frame with the same columns.

    Raises:
        KeyError: If a required alert column or `id_column` is missing.
        ValueError: If `features` has no CRS or an acq_date is not a valid 'YYYY-MM-DD' date.
    """
    missing = [c for c in _ALERT_COLUMNS if c not in alerts.columns]
    if missing:
        raise KeyError(f"alerts lack column(s) {missing}; expected {list(_ALERT_COLUMNS)}")
    if id_column not in features.columns:
        raise KeyError(f"features lack the id column {id_column!r}")
    features = _features_in_4326(features)
    id_dtype = features[id_column].dtype

    features = features[features[id_column].notna()]
    features = features.drop_duplicates(subset=id_column, keep="first")
    if len(alerts) == 0 or len(features) == 0:
        return _empty_daily(id_column, id_dtype)

    # Factorise date and confidence separately (two cheap hashes of short strings) and combine
    # the codes. Distinct raw dates are canonicalised to 'YYYY-MM-DD' and re-coded, so a str and a
    # datetime spelling of one day share a code, and codes ascend with the date.
    # int32 codes and in-place updates keep the per-point temporaries small (FC-2 memory goal).
    raw_date_codes, raw_dates = pd.factorize(alerts["acq_date"])
    dates, date_remap = np.unique(_date_strings(raw_dates).astype(str), return_inverse=True)
    conf_codes, conf_uniques = pd.factorize(alerts["confidence__cat"], sort=True)
    n_conf = max(len(conf_uniques), 1)
    n_groups = max(len(dates), 1) * n_conf
    if n_groups >= np.iinfo(np.int32).max:
        raise ValueError(f"too many (date, confidence) combinations: {n_groups}")
    # Code -1 (missing date) indexes the appended last entry, which is -1.
    remap = np.append(date_remap.reshape(-1).astype(np.int32) * n_conf, np.int32(-1))
    group = remap[raw_date_codes]
    del raw_date_codes
    missing = (group < 0) | (conf_codes < 0)
    group += conf_codes.astype(np.int32)
    group[missing] = -1
    del conf_codes, missing

    pi, gi, ci = count_points_in_polygons(
        alerts["longitude"].to_numpy(dtype=np.float64, na_value=np.nan),
        alerts["latitude"].to_numpy(dtype=np.float64, na_value=np.nan),
        features.geometry.values,
        group=group,
        n_groups=n_groups,
    )
    if pi.size == 0:
        return _empty_daily(id_column, id_dtype)

    # Sort by (id, date, confidence) with integer keys: ids are unique after de-duplication, and
    # group codes already ascend by date then confidence.
    ids = features[id_column].to_numpy()
    id_rank = np.empty(ids.size, dtype=np.int64)
    id_rank[np.argsort(ids, kind="stable")] = np.arange(ids.size)
    order = np.lexsort((gi, id_rank[pi]))
    pi, gi, ci = pi[order], gi[order], ci[order]
    confs = np.asarray(conf_uniques.astype(str), dtype=object)
    out = pd.DataFrame(
        {
            id_column: pd.Series(ids[pi]).astype(id_dtype).to_numpy(),
            "alert__date": pd.array(dates.astype(object)[gi // n_conf], dtype="str"),
            "confidence__cat": pd.array(confs[gi % n_conf], dtype="str"),
            "alert__count": ci.astype(np.int64),
        }
    )
    return out


def weekly_counts(daily: pd.DataFrame, id_column: str = DEFAULT_ID_COLUMN) -> pd.DataFrame:
    """Sum daily fire counts into ISO weeks (GFW `weekly_alerts`).

    The ISO 8601 week-numbering year can differ from the calendar year at year boundaries:
    2020-12-31 and 2021-01-03 are in 2020 week 53, 2024-12-30 is in 2025 week 1.

    Args:
        daily: Output of `fire_counts` (columns ``id_column``, ``alert__date``,
            ``confidence__cat``, ``alert__count``).
        id_column: Name of the id column.

    Returns:
        DataFrame with columns ``[id_column, "alert__year", "alert__week", "confidence__cat",
        "alert__count"]`` (year, week and count int64), one row per combination with a count > 0,
        sorted by the first four columns.

    Raises:
        KeyError: If a required column is missing.
        ValueError: If an alert__date is not a valid 'YYYY-MM-DD' date.
    """
    needed = [id_column, "alert__date", "confidence__cat", "alert__count"]
    missing = [c for c in needed if c not in daily.columns]
    if missing:
        raise KeyError(f"daily counts lack column(s) {missing}")
    columns = [id_column, "alert__year", "alert__week", "confidence__cat", "alert__count"]
    if len(daily) == 0:
        return pd.DataFrame(
            {
                id_column: pd.Series([], dtype=daily[id_column].dtype),
                "alert__year": pd.Series([], dtype="int64"),
                "alert__week": pd.Series([], dtype="int64"),
                "confidence__cat": pd.Series([], dtype="str"),
                "alert__count": pd.Series([], dtype="int64"),
            }
        )
    try:
        dates = pd.to_datetime(daily["alert__date"], format="%Y-%m-%d")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"alert__date must be 'YYYY-MM-DD': {exc}") from exc
    iso = dates.dt.isocalendar()
    frame = pd.DataFrame(
        {
            id_column: daily[id_column].to_numpy(),
            "alert__year": iso["year"].astype(np.int64).to_numpy(),
            "alert__week": iso["week"].astype(np.int64).to_numpy(),
            "confidence__cat": daily["confidence__cat"].astype("str").to_numpy(),
            "alert__count": daily["alert__count"].astype(np.int64).to_numpy(),
        }
    )
    frame[id_column] = frame[id_column].astype(daily[id_column].dtype)
    out = frame.groupby(columns[:4], sort=True, as_index=False)["alert__count"].sum()
    out = out[out["alert__count"] > 0]
    out["alert__count"] = out["alert__count"].astype(np.int64)
    return out[columns].reset_index(drop=True)
