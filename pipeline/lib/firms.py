"""pipeline.lib.firms: NASA FIRMS active-fire client, CSV parser and day-by-day fetch planner.

Facts come from the API contract (shared/reference/external-apis.md §1):
- global 24h/48h/7d CSV files per satellite product need no key and cover whole UTC days;
- the area API needs a MAP_KEY *in the URL path* and returns DATE .. DATE+DAY_RANGE-1 (DAY_RANGE 1..5);
- VIIRS confidence is categorical (l/n/h, or full words in shapefiles), MODIS confidence is 0..100;
- acq_time is sometimes published unpadded (`33`, `659`), satellite codes changed over time (`1` = N20).

`parse_firms_csv` turns one CSV body into a uniform alerts frame (`ALERT_COLUMNS`, identical for VIIRS
and MODIS) and drops malformed rows with counted, line-numbered reasons instead of failing the run.
`FirmsClient.fetch_days` fetches each requested UTC day exactly once, from the global 7d files for
recent days and from the area API (in chunks of at most 5 days) for older ones.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.lib.http import HttpClient, SourceError, redact, register_secret

DEFAULT_BASE_URL = "https://firms.modaps.eosdis.nasa.gov"

INSTRUMENTS = ("VIIRS", "MODIS")

#: Global file windows. "24h" is whole UTC days (today plus yesterday), not a rolling 24 hours.
WINDOWS = ("24h", "48h", "7d")
#: How many whole UTC days (ending today) each global window holds. 24h and 7d follow the contract;
#: 48h (today-2 .. today) is inferred from the same whole-day rule.
WINDOW_DAYS = {"24h": 2, "48h": 3, "7d": 7}

#: Largest DAY_RANGE the area API accepts (contract §1.1: 1..5).
MAX_DAY_RANGE = 5

#: How many problem descriptions a parse or fetch keeps (the counts are always complete).
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class GlobalProduct:
    """One global near-real-time product: `{base}/data/active_fire/{directory}/csv/{name}_{window}.csv`."""

    key: str
    directory: str
    name: str
    instrument: str
    satellites: tuple[str, ...]  # normalised satellite codes found in the file


GLOBAL_PRODUCTS: dict[str, GlobalProduct] = {
    p.key: p
    for p in (
        GlobalProduct("VIIRS_SNPP", "suomi-npp-viirs-c2", "SUOMI_VIIRS_C2_Global", "VIIRS", ("N",)),
        GlobalProduct("VIIRS_NOAA20", "noaa-20-viirs-c2", "J1_VIIRS_C2_Global", "VIIRS", ("N20",)),
        GlobalProduct("VIIRS_NOAA21", "noaa-21-viirs-c2", "J2_VIIRS_C2_Global", "VIIRS", ("N21",)),
        GlobalProduct("MODIS", "modis-c6.1", "MODIS_C6_1_Global", "MODIS", ("Terra", "Aqua")),
    )
}

#: Global products per instrument, in download order.
INSTRUMENT_PRODUCTS: dict[str, tuple[str, ...]] = {
    "VIIRS": ("VIIRS_SNPP", "VIIRS_NOAA20", "VIIRS_NOAA21"),
    "MODIS": ("MODIS",),
}

#: Area-API sources per instrument and processing level. NOAA-21 has no standard-processing archive.
AREA_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "VIIRS": {
        "NRT": ("VIIRS_SNPP_NRT", "VIIRS_NOAA20_NRT", "VIIRS_NOAA21_NRT"),
        "SP": ("VIIRS_SNPP_SP", "VIIRS_NOAA20_SP"),
    },
    "MODIS": {"NRT": ("MODIS_NRT",), "SP": ("MODIS_SP",)},
}

#: Every area source this client can parse, mapped to its instrument (LANDSAT_NRT is out of scope).
AREA_SOURCE_INSTRUMENT: dict[str, str] = {
    src: inst for inst, levels in AREA_SOURCES.items() for srcs in levels.values() for src in srcs
}

#: Normalised satellite codes found in each area source (used by the stand-in to split rows).
AREA_SOURCE_SATELLITES: dict[str, tuple[str, ...]] = {
    "VIIRS_SNPP_NRT": ("N",),
    "VIIRS_SNPP_SP": ("N",),
    "VIIRS_NOAA20_NRT": ("N20",),
    "VIIRS_NOAA20_SP": ("N20",),
    "VIIRS_NOAA21_NRT": ("N21",),
    "MODIS_NRT": ("Terra", "Aqua"),
    "MODIS_SP": ("Terra", "Aqua"),
}

#: Raw satellite codes (upper-cased) -> normalised code. `1`/`2` are the 2023-era NOAA-20/21 codes.
SATELLITE_CODES: dict[str, dict[str, str]] = {
    "VIIRS": {"N": "N", "N20": "N20", "1": "N20", "N21": "N21", "2": "N21"},
    "MODIS": {"T": "Terra", "TERRA": "Terra", "A": "Aqua", "AQUA": "Aqua"},
}

#: CSV columns each instrument's files must have (others are optional and filled with NaN / "").
REQUIRED_COLUMNS = ("latitude", "longitude", "acq_date", "acq_time", "satellite", "confidence")
MEASUREMENT_COLUMNS = ("bright_ti4", "bright_ti5", "brightness", "bright_t31", "scan", "track", "frp")

#: The documented output schema: (name, dtype, description). Same columns for VIIRS and MODIS.
ALERT_SCHEMA: list[tuple[str, str, str]] = [
    ("latitude", "float64", "WGS84 latitude of the pixel centre, degrees [-90, 90]"),
    ("longitude", "float64", "WGS84 longitude of the pixel centre, degrees [-180, 180]"),
    ("acq_date", "str", "acquisition date, UTC, 'YYYY-MM-DD'"),
    ("acq_time", "str", "acquisition time, UTC, zero-filled 'HHMM'"),
    ("satellite", "str", "VIIRS: 'N' (S-NPP), 'N20' (NOAA-20), 'N21' (NOAA-21); MODIS: 'Terra', 'Aqua'"),
    ("instrument", "str", "'VIIRS' or 'MODIS'"),
    (
        "confidence__cat",
        "str",
        "confidence category 'l' low, 'n' nominal, 'h' high (MODIS: <30 l, 30-79 n, >=80 h)",
    ),
    ("confidence", "str", "confidence exactly as published (VIIRS l/n/h or low/nominal/high; MODIS 0-100)"),
    ("bright_ti4", "float64", "VIIRS I-4 brightness temperature, K (NaN for MODIS)"),
    ("bright_ti5", "float64", "VIIRS I-5 brightness temperature, K (NaN for MODIS)"),
    ("brightness", "float64", "MODIS channel 21/22 brightness temperature, K (NaN for VIIRS)"),
    ("bright_t31", "float64", "MODIS channel 31 brightness temperature, K (NaN for VIIRS)"),
    ("scan", "float64", "pixel size along scan, km"),
    ("track", "float64", "pixel size along track, km"),
    ("frp", "float64", "fire radiative power, MW"),
    ("daynight", "str", "'D' day or 'N' night"),
    ("version", "str", "product version as published, e.g. '2.0NRT', '6.1NRT' (no 'NRT' for SP data)"),
    (
        "source",
        "str",
        "file or area-API source the row came from, e.g. 'SUOMI_VIIRS_C2_Global_7d.csv', 'MODIS_SP'",
    ),
]
ALERT_COLUMNS: list[str] = [name for name, _, _ in ALERT_SCHEMA]
_FLOAT_COLUMNS = [name for name, dtype, _ in ALERT_SCHEMA if dtype == "float64"]

#: Columns that identify one detection; re-fetched overlapping days de-duplicate on these.
DEDUPE_KEY = ["latitude", "longitude", "acq_date", "acq_time", "satellite"]
SORT_KEY = ["acq_date", "acq_time", "satellite", "latitude", "longitude"]


# -- errors ------------------------------------------------------------------------------------------


class FirmsError(SourceError):
    """FIRMS could not deliver what was asked (HTTP failure, missing MAP_KEY, bad body)."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__("FIRMS", message, status=status, body=body)


class FirmsFormatError(FirmsError):
    """A FIRMS response was not CSV (FIRMS answers errors such as `Invalid MAP_KEY.` as plain text)."""


# -- small pure helpers ------------------------------------------------------------------------------


def normalise_instrument(instrument: str) -> str:
    """'viirs'/'VIIRS' -> 'VIIRS'; anything else raises ValueError."""
    inst = str(instrument).strip().upper()
    if inst not in INSTRUMENTS:
        raise ValueError(f"instrument {instrument!r} is not supported (use one of {', '.join(INSTRUMENTS)})")
    return inst


def empty_alerts() -> pd.DataFrame:
    """A zero-row frame with the `ALERT_COLUMNS` schema and dtypes."""
    return pd.DataFrame(
        {name: pd.Series(dtype="float64" if dtype == "float64" else "str") for name, dtype, _ in ALERT_SCHEMA}
    )


def window_days(window: str, today: date) -> list[date]:
    """The UTC days a global file window covers, oldest first (7d -> today-6 .. today)."""
    if window not in WINDOW_DAYS:
        raise ValueError(f"window {window!r} is not a FIRMS global window (use one of {', '.join(WINDOWS)})")
    return [today - timedelta(days=i) for i in range(WINDOW_DAYS[window] - 1, -1, -1)]


def chunk_days(days: Iterable[date], max_len: int = MAX_DAY_RANGE) -> list[tuple[date, int]]:
    """Split days into (first_day, day_range) runs of consecutive days, each at most `max_len` long.

    Duplicates are ignored and the runs come out oldest first, so every day is covered exactly once.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    chunks: list[tuple[date, int]] = []
    for day in sorted(set(days)):
        if chunks:
            first, length = chunks[-1]
            if length < max_len and first + timedelta(days=length) == day:
                chunks[-1] = (first, length + 1)
                continue
        chunks.append((day, 1))
    return chunks


def format_area(area: str | Sequence[float]) -> str:
    """Validate an area-API AREA: 'world' or west,south,east,north (string or 4 numbers)."""
    if isinstance(area, str):
        text = area.strip()
        if text.lower() == "world":
            return "world"
        parts = text.split(",")
    else:
        parts = list(area)
    try:
        if len(parts) != 4:
            raise ValueError
        west, south, east, north = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"area {area!r} must be 'world' or 'west,south,east,north' in decimal degrees") from None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ValueError(f"area {area!r}: need -180 <= west < east <= 180 and -90 <= south < north <= 90")
    return ",".join(f"{v:g}" for v in (west, south, east, north))


# -- parsing -----------------------------------------------------------------------------------------


@dataclass
class ParsedAlerts:
    """One parsed FIRMS CSV body.

    df: rows that passed every rule, with `ALERT_COLUMNS`; rows_read: data lines seen (blank lines
    excluded); dropped: malformed rows removed; problems: the first `MAX_PROBLEMS` reasons, with line numbers.
    """

    df: pd.DataFrame
    rows_read: int = 0
    dropped: int = 0
    problems: list[str] = field(default_factory=list)


_DATE_DASHED = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_firms_csv(text: str, instrument: str, source: str, *, secrets: Sequence[str] = ()) -> ParsedAlerts:
    """Parse one FIRMS CSV body (area API or global file) into the uniform alerts schema.

    Args:
        text: the response body.
        instrument: 'VIIRS' or 'MODIS' (case-insensitive); decides how confidence is read.
        source: name written to the `source` column and used in messages (file name or API source).
        secrets: strings to redact if the body has to be quoted in an error.

    Raises:
        FirmsFormatError: the first line has no `latitude` column (FIRMS error bodies such as
            `Invalid MAP_KEY.`), required columns are missing, or the header is the other instrument's.
    """
    inst = normalise_instrument(instrument)
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    first = lines[0] if lines else ""
    if "latitude" not in first.lower():
        start = redact(text.strip()[:200], secrets)
        what = f"body starts {start!r}" if start else "body is empty"
        raise FirmsFormatError(f"{source}: response is not FIRMS CSV (first line has no 'latitude' column); {what}")

    header = [h.strip().lower() for h in first.split(",")]
    position: dict[str, int] = {}
    for i, name in enumerate(header):
        position.setdefault(name, i)
    missing = [c for c in REQUIRED_COLUMNS if c not in position]
    if missing:
        quoted = redact(first[:200], secrets)
        raise FirmsFormatError(f"{source}: CSV header lacks required column(s) {', '.join(missing)}: {quoted!r}")
    other = "MODIS" if inst == "VIIRS" else "VIIRS"
    own_marker, other_marker = ("bright_ti4", "brightness") if inst == "VIIRS" else ("brightness", "bright_ti4")
    if other_marker in position and own_marker not in position:
        raise FirmsFormatError(f"{source}: header has {other_marker!r}, so this is {other} data, not {inst}")

    # Vectorised from here on (pyarrow compute, per-unique-value mapping): per-row Python would be
    # far too slow for a 300k-row global file.
    body = pa.array(lines[1:], type=pa.string())
    nonblank = pc.not_equal(pc.utf8_trim_whitespace(body), "").to_numpy(zero_copy_only=False)
    linenos = np.arange(2, len(lines) + 1)[nonblank]
    body = body.filter(pa.array(nonblank))
    rows_read = len(body)
    nfields = pc.count_substring(body, ",").to_numpy(zero_copy_only=False) + 1
    fits = nfields == len(header)

    bad: list[tuple[int, str]] = []  # (line number, reason) for the first few dropped rows
    for ln, nf in zip(linenos[~fits][:MAX_PROBLEMS], nfields[~fits][:MAX_PROBLEMS], strict=True):
        bad.append((int(ln), f"expected {len(header)} fields, found {int(nf)}"))
    good_lines = linenos[fits]
    table = _read_fields(body.filter(pa.array(fits)), len(header))
    if table.num_rows != len(good_lines):  # pragma: no cover - guards the line-number bookkeeping
        raise FirmsFormatError(
            f"{source}: internal CSV split mismatch ({table.num_rows} rows vs {len(good_lines)} lines)"
        )

    def col(name: str) -> pa.Array | None:
        i = position.get(name)
        return None if i is None else pc.utf8_trim_whitespace(table.column(i).combine_chunks())

    n = table.num_rows
    checks: list[tuple[np.ndarray, pa.Array, str]] = []  # (bad mask, raw values, reason template)

    lat_s, lon_s = col("latitude"), col("longitude")
    lat, lon = _to_float(lat_s), _to_float(lon_s)
    with np.errstate(invalid="ignore"):
        checks.append((np.isnan(lat), lat_s, "latitude {v!r} is not a number"))
        checks.append(((lat < -90) | (lat > 90), lat_s, "latitude {v} is outside [-90, 90]"))
        checks.append((np.isnan(lon), lon_s, "longitude {v!r} is not a number"))
        checks.append(((lon < -180) | (lon > 180), lon_s, "longitude {v} is outside [-180, 180]"))

    date_s = col("acq_date")
    acq_date = _map_unique(date_s, _normal_date)
    checks.append((_isnull(acq_date), date_s, "acq_date {v!r} is not a valid YYYY-MM-DD date"))

    time_s = col("acq_time")
    acq_time = _map_unique(time_s, _normal_time)
    checks.append((_isnull(acq_time), time_s, "acq_time {v!r} is not a valid HHMM time"))

    sat_s = col("satellite")
    codes = SATELLITE_CODES[inst]
    satellite = _map_unique(sat_s, lambda v: codes.get(v.upper()))
    checks.append((_isnull(satellite), sat_s, f"satellite {{v!r}} is not a known {inst} satellite code"))

    conf_s = col("confidence")
    if inst == "VIIRS":
        conf_cat = _map_unique(conf_s, lambda v: _VIIRS_CONFIDENCE.get(v.lower()))
        rule = "VIIRS confidence {v!r} is not l/n/h or low/nominal/high"
    else:
        conf_cat = _map_unique(conf_s, _modis_category)
        rule = "MODIS confidence {v!r} is not an integer 0-100"
    checks.append((_isnull(conf_cat), conf_s, rule))

    measures: dict[str, np.ndarray] = {}
    for name in MEASUREMENT_COLUMNS:
        s = col(name)
        if s is None:
            measures[name] = np.full(n, np.nan)
            continue
        values = _to_float(s)
        # An empty measurement is kept as NaN; text that is not a number marks the row malformed.
        empty = pc.equal(s, "").to_numpy(zero_copy_only=False)
        checks.append((np.isnan(values) & ~empty, s, f"{name} {{v!r}} is not a number"))
        measures[name] = values

    bad_mask = np.zeros(n, dtype=bool)
    for mask, _, _ in checks:
        bad_mask |= mask
    for i in np.flatnonzero(bad_mask)[:MAX_PROBLEMS]:
        for mask, values, template in checks:
            if mask[i]:
                bad.append((int(good_lines[i]), template.format(v=values[int(i)].as_py())))
                break
    bad.sort()
    problems = [f"{source} line {ln}: {reason}" for ln, reason in bad[:MAX_PROBLEMS]]

    keep = ~bad_mask
    keep_pa = pa.array(keep)
    kept_n = int(keep.sum())

    def strings(arr: pa.Array | None, default: str = "") -> pd.Series | str:
        return default if arr is None else arr.filter(keep_pa).to_pandas()

    daynight = col("daynight")
    df = pd.DataFrame(
        {
            "latitude": lat[keep],
            "longitude": lon[keep],
            "acq_date": strings(acq_date),
            "acq_time": strings(acq_time),
            "satellite": strings(satellite),
            "instrument": inst,
            "confidence__cat": strings(conf_cat),
            "confidence": strings(conf_s),
            **{name: measures[name][keep] for name in MEASUREMENT_COLUMNS},
            "daynight": strings(None if daynight is None else pc.utf8_upper(daynight)),
            "version": strings(col("version")),
            "source": source,
        },
        index=pd.RangeIndex(kept_n),
        columns=ALERT_COLUMNS,
    )
    df = _coerce_schema(df)
    return ParsedAlerts(df=df, rows_read=rows_read, dropped=rows_read - len(df), problems=problems)


_VIIRS_CONFIDENCE = {"l": "l", "n": "n", "h": "h", "low": "l", "nominal": "n", "high": "h"}
_NUMBER_RX = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_COMPACT_DATE = re.compile(r"^\d{8}$")
_HHMM = re.compile(r"^\d{1,4}$")


def _read_fields(lines: pa.Array, ncols: int) -> pa.Table:
    """Split lines that already have `ncols` fields into a table of string columns (no quoting)."""
    names = [f"c{i}" for i in range(ncols)]
    if len(lines) == 0:
        return pa.table({name: pa.array([], type=pa.string()) for name in names})
    data = "\n".join(lines.to_numpy(zero_copy_only=False)).encode("utf-8")
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names),
        # FIRMS CSV has no quoted fields; treating quotes literally keeps one line = one row.
        parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _isnull(arr: pa.Array) -> np.ndarray:
    return pc.is_null(arr).to_numpy(zero_copy_only=False)


def _to_float(arr: pa.Array) -> np.ndarray:
    """Strings -> float64, NaN where the text is not a plain decimal number."""
    valid = pc.match_substring_regex(arr, _NUMBER_RX)
    gated = pc.if_else(valid, arr, pa.scalar(None, type=pa.string()))
    try:
        values = pc.cast(gated, pa.float64())
    except pa.ArrowInvalid:  # pragma: no cover - regex and Arrow's parser disagree on an exotic value
        return pd.to_numeric(pd.Series(gated.to_pylist(), dtype="object"), errors="coerce").to_numpy("float64")
    return values.to_numpy(zero_copy_only=False).astype("float64")


def _map_unique(arr: pa.Array, fn) -> pa.Array:
    """Apply `fn(str) -> str | None` once per distinct value (dates, times, codes repeat a lot)."""
    uniques = pc.unique(arr)
    mapped = pa.array([fn(v) for v in uniques.to_pylist()], type=pa.string())
    return mapped.take(pc.index_in(arr, value_set=uniques))


def _normal_date(value: str) -> str | None:
    """'YYYY-MM-DD' or DBF-style 'YYYYMMDD' -> 'YYYY-MM-DD'; None if not a real calendar date."""
    if _COMPACT_DATE.match(value):
        value = f"{value[:4]}-{value[4:6]}-{value[6:]}"
    if not _DATE_DASHED.match(value):
        return None
    try:
        date.fromisoformat(value)
    except ValueError:
        return None
    return value


def _normal_time(value: str) -> str | None:
    """HHMM with or without zero padding ('33' -> '0033'); None unless 00:00..23:59."""
    if not _HHMM.match(value):
        return None
    number = int(value)
    if number // 100 > 23 or number % 100 > 59:
        return None
    return f"{number:04d}"


def _modis_category(value: str) -> str | None:
    """MODIS confidence 0-100 -> 'l' (<30), 'n' (30-79), 'h' (>=80)."""
    if not value.isascii() or not value.isdigit() or len(value) > 3 or int(value) > 100:
        return None
    number = int(value)
    return "h" if number >= 80 else "n" if number >= 30 else "l"


def _coerce_schema(df: pd.DataFrame) -> pd.DataFrame:
    """Force the documented dtypes (str columns stay pandas `str`, measurements float64)."""
    out = {}
    for name, dtype, _ in ALERT_SCHEMA:
        out[name] = df[name].astype("float64" if dtype == "float64" else "str")
    return pd.DataFrame(out, columns=ALERT_COLUMNS)


def dedupe_alerts(df: pd.DataFrame) -> pd.DataFrame:
    """Drop repeated detections (same lat, lon, acq_date, acq_time, satellite; first kept) and sort.

    The sort (acq_date, acq_time, satellite, latitude, longitude) is stable, so output is deterministic.
    """
    if df.empty:
        return df.reset_index(drop=True)
    out = df.drop_duplicates(subset=DEDUPE_KEY, keep="first")
    return out.sort_values(SORT_KEY, kind="mergesort").reset_index(drop=True)


def to_geodataframe(df: pd.DataFrame):
    """Alerts as a GeoDataFrame of Points in EPSG:4326 (lon, lat)."""
    import geopandas as gpd

    geometry = gpd.points_from_xy(df["longitude"], df["latitude"], crs="EPSG:4326")
    return gpd.GeoDataFrame(df.copy(), geometry=geometry, crs="EPSG:4326")


# -- client ------------------------------------------------------------------------------------------


@dataclass
class FetchResult:
    """Alerts for requested UTC days.

    by_day: every requested day -> its de-duplicated alerts (possibly empty); rows_read / dropped /
    problems: totals over all downloaded bodies; requests: the URLs fetched, MAP_KEY redacted.
    """

    by_day: dict[date, pd.DataFrame]
    rows_read: int = 0
    dropped: int = 0
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def all_alerts(self) -> pd.DataFrame:
        """All days in one de-duplicated frame."""
        frames = [df for df in self.by_day.values() if not df.empty]
        return dedupe_alerts(pd.concat(frames, ignore_index=True)) if frames else empty_alerts()


class FirmsClient:
    """FIRMS global files (no key) and area API (MAP_KEY) over the shared retrying `HttpClient`.

    The MAP_KEY travels in the URL path, so it is registered as a secret: every error message and
    every URL in `FetchResult.requests` shows `***` instead.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        map_key: str | None = None,
        timeout: float = 60,
        max_retries: int = 4,
        backoff: float = 1.0,
        sleep=time.sleep,
    ):
        self.map_key = map_key or None
        self.sleep = sleep
        if self.map_key:
            register_secret(self.map_key)
        self.http = HttpClient(
            source="FIRMS",
            base_url=base_url,
            secrets=[self.map_key] if self.map_key else [],
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
        )

    # -- URLs ---------------------------------------------------------------------------------------
    @staticmethod
    def _product(product_key: str) -> GlobalProduct:
        try:
            return GLOBAL_PRODUCTS[product_key]
        except KeyError:
            raise ValueError(
                f"product_key {product_key!r} is not a FIRMS global product (use one of {', '.join(GLOBAL_PRODUCTS)})"
            ) from None

    def global_file_url(self, product_key: str, window: str) -> str:
        product = self._product(product_key)
        if window not in WINDOW_DAYS:
            raise ValueError(f"window {window!r} is not a FIRMS global window (use one of {', '.join(WINDOWS)})")
        return self.http.url(f"/data/active_fire/{product.directory}/csv/{product.name}_{window}.csv")

    def area_url(self, source: str, first_day: date, day_range: int, area: str = "world") -> str:
        """The area-API URL (contains the MAP_KEY; redact before showing it)."""
        source = self._area_source(source)
        day_range = self._day_range(day_range)
        area = format_area(area)
        first_day = self._as_day(first_day, "first_day")
        key = self._require_key(f"the area API ({source})")
        return self.http.url(f"/api/area/csv/{key}/{source}/{area}/{day_range}/{first_day.isoformat()}")

    def safe(self, text: str) -> str:
        """`text` with the MAP_KEY redacted."""
        return redact(text, self.http.secrets)

    # -- requests -----------------------------------------------------------------------------------
    def _get(self, method: str, url: str):
        try:
            return self.http.request(method, url, sleep=self.sleep)
        except FirmsError:
            raise
        except SourceError as exc:
            message = str(exc).removeprefix(f"{exc.source}: ")
            if exc.status == 400 and "map_key" in (exc.body or "").lower():
                message += " (check FIRMS_MAP_KEY)"
            raise FirmsError(message, status=exc.status, body=exc.body) from exc

    def head_global(self, product_key: str, window: str) -> dict:
        """Freshness headers of one global file: last_modified, etag, content_length."""
        resp = self._get("HEAD", self.global_file_url(product_key, window))
        length = resp.headers.get("Content-Length")
        return {
            "last_modified": resp.headers.get("Last-Modified"),
            "etag": resp.headers.get("ETag"),
            "content_length": int(length) if length and length.isdigit() else None,
        }

    def fetch_global(self, product_key: str, window: str) -> ParsedAlerts:
        """Download and parse one global CSV (no key needed)."""
        product = self._product(product_key)
        url = self.global_file_url(product_key, window)
        resp = self._get("GET", url)
        return parse_firms_csv(
            resp.content.decode("utf-8", errors="replace"),
            product.instrument,
            f"{product.name}_{window}.csv",
            secrets=self.http.secrets,
        )

    def fetch_area(self, source: str, first_day: date, day_range: int, area: str = "world") -> ParsedAlerts:
        """Area API: `day_range` (1..5) UTC days starting at `first_day` for one source."""
        url = self.area_url(source, first_day, day_range, area)
        resp = self._get("GET", url)
        return parse_firms_csv(
            resp.content.decode("utf-8", errors="replace"),
            AREA_SOURCE_INSTRUMENT[source],
            source,
            secrets=self.http.secrets,
        )

    def key_status(self) -> dict:
        """MAP_KEY quota: {"transaction_limit", "current_transactions", "transaction_interval"}."""
        key = self._require_key("the MAP_KEY status endpoint")
        resp = self._get("GET", self.http.url(f"/mapserver/mapkey_status/?MAP_KEY={key}"))
        try:
            return resp.json()
        except ValueError:
            raise FirmsFormatError(f"mapkey_status did not return JSON: {self.safe(resp.text[:200])!r}") from None

    def fetch_days(
        self,
        instrument: str,
        days: Iterable[date],
        today: date,
        sp_after_days: int = 60,
        area: str = "world",
    ) -> FetchResult:
        """Fetch every requested UTC day exactly once.

        Days in the global 7d window (today-6 .. today; `today` must be the current UTC date) come from
        the 7d CSV of every product of the instrument, each file downloaded once. Older days come from
        the area API in runs of <= 5 consecutive days per source: NRT sources for days less than
        `sp_after_days` old, SP (archive) sources for older ones (NOAA-21 has no SP source).

        Raises:
            ValueError: unknown instrument, or a requested day after `today`.
            FirmsError: days older than the 7d window are requested and no MAP_KEY is set; HTTP failures.
        """
        inst = normalise_instrument(instrument)
        today = self._as_day(today, "today")
        wanted = sorted({self._as_day(d, "days") for d in days})
        future = [d for d in wanted if d > today]
        if future:
            raise ValueError(f"days {_fmt_days(future)} are after today ({today}); FIRMS has no data for them")
        area = format_area(area)
        window_start = today - timedelta(days=WINDOW_DAYS["7d"] - 1)
        recent = [d for d in wanted if d >= window_start]
        older = [d for d in wanted if d < window_start]
        if older and not self.map_key:
            raise FirmsError(
                f"days {_fmt_days(older)} are older than the 7-day global window "
                f"({window_start} .. {today}); "
                "FIRMS_MAP_KEY is needed for days older than the 7-day window (area API)"
            )

        result = FetchResult(by_day={})
        frames: list[pd.DataFrame] = []

        def take(parsed: ParsedAlerts, url: str) -> None:
            result.requests.append(self.safe(url))
            result.rows_read += parsed.rows_read
            result.dropped += parsed.dropped
            room = MAX_PROBLEMS - len(result.problems)
            result.problems.extend(parsed.problems[: max(room, 0)])
            frames.append(parsed.df)

        if recent:
            for key in INSTRUMENT_PRODUCTS[inst]:
                take(self.fetch_global(key, "7d"), self.global_file_url(key, "7d"))
        nrt = [d for d in older if (today - d).days < sp_after_days]
        sp = [d for d in older if (today - d).days >= sp_after_days]
        for level, level_days in (("NRT", nrt), ("SP", sp)):
            for first, length in chunk_days(level_days):
                for source in AREA_SOURCES[inst][level]:
                    take(
                        self.fetch_area(source, first, length, area),
                        self.area_url(source, first, length, area),
                    )

        wanted_text = {d.isoformat(): d for d in wanted}
        frames = [f[f["acq_date"].isin(list(wanted_text))] for f in frames if not f.empty]
        alerts = dedupe_alerts(pd.concat(frames, ignore_index=True)) if frames else empty_alerts()
        groups = {k: g.reset_index(drop=True) for k, g in alerts.groupby("acq_date", sort=False)}
        for text, day in wanted_text.items():
            result.by_day[day] = groups.get(text, empty_alerts())
        return result

    # -- validation ---------------------------------------------------------------------------------
    def _require_key(self, what: str) -> str:
        if not self.map_key:
            raise FirmsError(
                f"FIRMS_MAP_KEY is not set; {what} needs a MAP_KEY "
                "(free at https://firms.modaps.eosdis.nasa.gov/api/map_key/)"
            )
        return self.map_key

    @staticmethod
    def _area_source(source: str) -> str:
        if source not in AREA_SOURCE_INSTRUMENT:
            raise ValueError(
                f"source {source!r} is not a supported FIRMS area source "
                f"(use one of {', '.join(AREA_SOURCE_INSTRUMENT)})"
            )
        return source

    @staticmethod
    def _day_range(day_range: int) -> int:
        if isinstance(day_range, bool) or not isinstance(day_range, int) or not 1 <= day_range <= MAX_DAY_RANGE:
            raise ValueError(f"day_range {day_range!r} must be an integer 1..{MAX_DAY_RANGE} (FIRMS DAY_RANGE)")
        return day_range

    @staticmethod
    def _as_day(value, what: str) -> date:
        if isinstance(value, datetime):  # a datetime is a date subclass; its time part would be ignored silently
            raise ValueError(f"{what}: expected a date, got datetime {value!r}")
        if not isinstance(value, date):
            raise ValueError(f"{what}: expected a datetime.date, got {type(value).__name__} {value!r}")
        return value


def _fmt_days(days: Sequence[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:10])
    return shown + (f" (+{len(days) - 10} more)" if len(days) > 10 else "")
