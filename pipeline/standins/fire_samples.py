"""pipeline.standins.fire_samples: deterministic, realistic FIRMS-style fire detections for stand-ins.

Rows use the real FIRMS CSV columns and value formats (external-apis.md §1.3), including the quirks a
parser must survive: unpadded `acq_time` values such as `33` or `659`, MODIS integer confidence,
VIIRS satellite codes N/N20/N21. Fires cluster around `SAMPLE_HOTSPOTS`, so sample areas of interest
placed over a hotspot reliably contain fires.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

VIIRS_CSV_COLUMNS = [
    "latitude",
    "longitude",
    "bright_ti4",
    "scan",
    "track",
    "acq_date",
    "acq_time",
    "satellite",
    "instrument",
    "confidence",
    "version",
    "bright_ti5",
    "frp",
    "daynight",
]
MODIS_CSV_COLUMNS = [
    "latitude",
    "longitude",
    "brightness",
    "scan",
    "track",
    "acq_date",
    "acq_time",
    "satellite",
    "instrument",
    "confidence",
    "version",
    "bright_t31",
    "frp",
    "daynight",
]
CSV_COLUMNS = {"VIIRS": VIIRS_CSV_COLUMNS, "MODIS": MODIS_CSV_COLUMNS}

#: Default detections per day (real global VIIRS files hold thousands per satellite; scaled down for tests).
DEFAULT_N = {"VIIRS": 2000, "MODIS": 500}

#: Share of default-generated fires scattered outside the hotspots (background noise).
BACKGROUND_FRACTION = 0.03

#: Share of acq_time values written unpadded (`33` instead of `0033`), as seen in real FIRMS output.
UNPADDED_TIME_FRACTION = 0.02


@dataclass(frozen=True)
class Hotspot:
    """A fire cluster: fires are normally distributed around (lon, lat) with sd = radius_deg / 2."""

    name: str
    lon: float
    lat: float
    radius_deg: float
    weight: float

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) holding ~95% of this hotspot's fires."""
        r = self.radius_deg
        return (self.lon - r, self.lat - r, self.lon + r, self.lat + r)


#: Fixed hotspot centres in real fire regions. Sample areas (AOIs) are placed over these.
SAMPLE_HOTSPOTS: tuple[Hotspot, ...] = (
    Hotspot("amazon_rondonia", -63.0, -10.5, 1.5, 0.16),
    Hotspot("amazon_para", -52.5, -6.5, 1.5, 0.12),
    Hotspot("cerrado_tocantins", -48.0, -10.5, 1.5, 0.08),
    Hotspot("congo_basin", 22.0, -3.0, 2.0, 0.14),
    Hotspot("angola_zambia", 22.5, -12.5, 2.0, 0.12),
    Hotspot("indonesia_kalimantan", 113.5, -1.5, 1.0, 0.08),
    Hotspot("indonesia_sumatra", 102.5, -1.5, 1.0, 0.06),
    Hotspot("australia_top_end", 133.0, -14.0, 2.0, 0.08),
    Hotspot("siberia_yakutia", 125.0, 62.0, 2.5, 0.06),
    Hotspot("california_sierra", -121.0, 39.0, 1.0, 0.04),
    Hotspot("canada_alberta", -115.0, 57.0, 1.5, 0.06),
)

# Overpass local solar times (hours) per satellite: (day, night). VIIRS platforms and Aqua cross at
# ~13:30/01:30, Terra at ~10:30/22:30.
_OVERPASS = {
    "N": (13.5, 1.5),
    "N20": (13.5, 1.5),
    "N21": (13.5, 1.5),
    "Terra": (10.5, 22.5),
    "Aqua": (13.5, 1.5),
}
_SATELLITES = {"VIIRS": (["N", "N20", "N21"], [0.33, 0.34, 0.33]), "MODIS": (["Terra", "Aqua"], [0.5, 0.5])}
_VERSION = {"VIIRS": "2.0NRT", "MODIS": "6.1NRT"}


def _instrument(instrument: str) -> str:
    inst = str(instrument).strip().upper()
    if inst not in CSV_COLUMNS:
        raise ValueError(f"instrument {instrument!r} is not supported (use VIIRS or MODIS)")
    return inst


def empty_fires(instrument: str) -> pd.DataFrame:
    """A zero-row frame with the real CSV columns of `instrument`."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in CSV_COLUMNS[_instrument(instrument)]})


def generate_fires(
    day: date,
    instrument: str,
    seed: int = 0,
    n: int | None = None,
    clusters: list[Hotspot] | tuple[Hotspot, ...] | None = None,
) -> pd.DataFrame:
    """Fire detections for one UTC day in FIRMS CSV form (columns `CSV_COLUMNS[instrument]`).

    Seeded by (seed, day, instrument): the same arguments always give the same rows. `n` defaults to
    ~2000 (VIIRS) or ~500 (MODIS), varying a little by day. `clusters` replaces `SAMPLE_HOTSPOTS`
    (and then no background fires are added). Rows are sorted by acquisition time.
    `acq_time` is a string as published (mostly '0542', sometimes unpadded '33'); MODIS `confidence`
    is an int, VIIRS `confidence` is 'l'/'n'/'h'.
    """
    inst = _instrument(instrument)
    if not isinstance(day, date):
        raise ValueError(f"day must be a datetime.date, got {day!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng([seed, day.toordinal(), zlib.crc32(inst.encode())])
    if n is None:
        base = DEFAULT_N[inst]
        n = int(rng.integers(int(base * 0.9), int(base * 1.1) + 1))
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    spots = list(clusters) if clusters is not None else list(SAMPLE_HOTSPOTS)
    if not spots:
        raise ValueError("clusters must hold at least one Hotspot")
    background = clusters is None

    weights = np.array([h.weight for h in spots], dtype=float)
    pick = rng.choice(len(spots), size=n, p=weights / weights.sum())
    centre_lon = np.array([h.lon for h in spots])[pick]
    centre_lat = np.array([h.lat for h in spots])[pick]
    sd = np.array([h.radius_deg for h in spots])[pick] / 2
    lat = centre_lat + rng.normal(0, 1, n) * sd
    lon = centre_lon + rng.normal(0, 1, n) * sd
    if background:
        scatter = rng.random(n) < BACKGROUND_FRACTION
        lat = np.where(scatter, rng.uniform(-40, 65, n), lat)
        lon = np.where(scatter, rng.uniform(-180, 180, n), lon)
    lat = np.clip(lat, -89.9, 89.9).round(5)
    lon = (((lon + 180) % 360) - 180).round(5)

    names, probs = _SATELLITES[inst]
    sat_idx = rng.choice(len(names), size=n, p=probs)
    satellite = np.array(names, dtype=object)[sat_idx]
    is_day = rng.random(n) < 0.72
    day_pass = np.array([_OVERPASS[s][0] for s in names])[sat_idx]
    night_pass = np.array([_OVERPASS[s][1] for s in names])[sat_idx]
    local = np.where(is_day, day_pass, night_pass)
    utc_hours = (local + rng.normal(0, 0.6, n) - lon / 15.0) % 24
    minutes = np.floor(utc_hours * 60).astype(int) % (24 * 60)
    hhmm = (minutes // 60) * 100 + minutes % 60
    unpadded = rng.random(n) < UNPADDED_TIME_FRACTION
    acq_time = [str(t) if u else f"{t:04d}" for t, u in zip(hhmm, unpadded, strict=True)]
    daynight = np.where(is_day, "D", "N")

    if inst == "VIIRS":
        bright_a = np.where(is_day, rng.normal(332, 14, n), rng.normal(302, 8, n)).clip(295, 367).round(2)
        bright_b = np.where(is_day, rng.normal(291, 7, n), rng.normal(276, 6, n)).clip(250, 330).round(2)
        scan = rng.uniform(0.32, 0.80, n).round(2)
        track = rng.uniform(0.36, 0.78, n).round(2)
        frp = (0.3 + rng.gamma(1.2, 6.0, n)).round(2)
        confidence = np.array(["l", "n", "h"], dtype=object)[rng.choice(3, size=n, p=[0.10, 0.78, 0.12])]
        measures = {"bright_ti4": bright_a, "bright_ti5": bright_b}
    else:
        bright_a = (305 + rng.gamma(2.0, 10.0, n)).clip(300, 500).round(1)
        bright_b = rng.normal(291, 7, n).clip(250, 330).round(1)
        scan = rng.uniform(1.0, 4.8, n).round(2)
        track = rng.uniform(1.0, 2.0, n).round(1)
        frp = (2.0 + rng.gamma(1.3, 15.0, n)).round(1)
        confidence = np.rint(100 * rng.beta(4, 2, n)).astype(int)
        measures = {"brightness": bright_a, "bright_t31": bright_b}

    df = pd.DataFrame(
        {
            "latitude": lat,
            "longitude": lon,
            **measures,
            "scan": scan,
            "track": track,
            "acq_date": day.isoformat(),
            "acq_time": pd.Series(acq_time, dtype="str"),
            "satellite": satellite,
            "instrument": inst,
            "confidence": confidence,
            "version": _VERSION[inst],
            "frp": frp,
            "daynight": daynight,
        }
    )[CSV_COLUMNS[inst]]
    order = np.argsort(hhmm, kind="stable")
    return df.iloc[order].reset_index(drop=True)


def to_csv_text(df: pd.DataFrame) -> str:
    """FIRMS-style CSV text: lower-case header, lat/lon with 5 decimals, no quoting, `\\n` line ends."""
    header = ",".join(str(c) for c in df.columns) + "\n"
    if df.empty:
        return header
    out = df.copy()
    for name in ("latitude", "longitude"):
        if name in out.columns:
            out[name] = [f"{v:.5f}" for v in out[name].to_numpy(dtype=float)]
    sink = io.BytesIO()
    # Arrow writes floats in shortest round-trip form (330.12, not 330.12000001) and is much faster
    # than DataFrame.to_csv for the 300k-row benchmark files.
    pacsv.write_csv(
        pa.Table.from_pandas(out, preserve_index=False),
        sink,
        pacsv.WriteOptions(include_header=False, quoting_style="none"),
    )
    return header + sink.getvalue().decode("utf-8")
