"""pipeline.lib.encodings: GFW deforestation alert encodings (date_conf) and the GLAD-L/S2, RADD, integrated rules.

GFW `date_conf` (uint16, nodata 0; external-apis.md §2.1): `value = C*10000 + days since 2014-12-31` with
C = 2 low/nominal, 3 high, 4 highest (integrated alerts only). Examples from the contract:

- `20001` = low, 2015-01-01 (day 1)
- `30055` = high, 2015-02-24 (day 55)
- `21847` = low, 2020-01-21 (day 1847)

Every function takes numpy arrays and returns arrays of the same shape, so callers can apply them to one raster
window at a time; none keeps more than a few window-sized temporaries alive.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

import numpy as np

DATE_CONF_BASE = date(2014, 12, 31)  # day 0; the contract's authoritative base (gotcha 2: not 2015-01-01)
DATE_CONF_NODATA = 0
MAX_DAYS = 9999  # the day count must stay below the next confidence digit
CONF_LOW, CONF_HIGH, CONF_HIGHEST = 2, 3, 4
CONF_LABELS = {CONF_LOW: "nominal", CONF_HIGH: "high", CONF_HIGHEST: "highest"}
NOT_DETECTED = "not_detected"
GLAD_S2_BASE = date(2018, 12, 31)  # GLAD-S2 alertDate counts days from here (B=1 is 2019-01-01)
GLAD_S2_OFFSET = 1461  # = days from DATE_CONF_BASE to GLAD_S2_BASE, datapump's constant

_BASE64 = np.datetime64(DATE_CONF_BASE.isoformat(), "D")


def days_since_base(day: date) -> int:
    """Days from 2014-12-31 to `day`: 2015-01-01 -> 1, 2015-02-24 -> 55, 2020-01-21 -> 1847."""
    if isinstance(day, datetime):
        day = day.date()  # a datetime minus a date is a TypeError; the time of day does not matter here
    if not isinstance(day, date):
        raise TypeError(f"date {day!r} must be a datetime.date")
    return (day - DATE_CONF_BASE).days


def _int_array(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return arr


def _same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")


def encode_date_conf(days, conf) -> np.ndarray:
    """Encode days since 2014-12-31 and a confidence code as GFW date_conf.

    `value = conf*10000 + days` where conf > 0, else 0 (nodata). E.g. days 55, conf 3 -> 30055.

    Args:
        days: integer array, days since 2014-12-31, 0..9999 wherever conf > 0 (ignored where conf == 0).
        conf: integer array of 0 (no alert), 2 (low/nominal), 3 (high) or 4 (highest); same shape as `days`.

    Returns:
        uint16 array.

    Raises:
        ValueError: a confidence other than 0/2/3/4, or days outside 0..9999 where there is an alert.
    """
    days, conf = _int_array(days, "days"), _int_array(conf, "conf")
    _same_shape("days", days, "conf", conf)
    bad = ~np.isin(conf, (0, CONF_LOW, CONF_HIGH, CONF_HIGHEST))
    if bad.any():
        raise ValueError(f"conf values {sorted(set(np.unique(conf[bad]).tolist()))} are not 0, 2, 3 or 4")
    alert = conf > 0
    if alert.any():
        d = days[alert]
        if d.min() < 0 or d.max() > MAX_DAYS:
            raise ValueError(f"days must be within 0..{MAX_DAYS} where conf > 0, got {d.min()}..{d.max()}")
    out = conf.astype(np.uint16) * np.uint16(10000)
    np.add(out, days, out=out, where=alert, casting="unsafe")  # range checked above
    return out


def decode_date_conf(value) -> tuple[np.ndarray, np.ndarray]:
    """Split date_conf into (days since 2014-12-31 as int32, confidence as uint8); 0 decodes to (0, 0).

    E.g. 30055 -> (55, 3); 21847 -> (1847, 2).
    """
    v = _int_array(value, "date_conf")
    if v.size and (v.min() < 0 or v.max() > 65535):
        raise ValueError(f"date_conf values must be within 0..65535 (uint16), got {v.min()}..{v.max()}")
    return (v % 10000).astype(np.int32), (v // 10000).astype(np.uint8)


def date_conf_to_dates(value) -> np.ndarray:
    """The alert date of each date_conf value as datetime64[D]; NaT where there is no alert (value < 10000, i.e. 0).

    E.g. 20001 -> 2015-01-01, 30055 -> 2015-02-24, 21847 -> 2020-01-21.
    """
    days, conf = decode_date_conf(value)
    out = _BASE64 + days.astype("timedelta64[D]")
    out[conf == 0] = np.datetime64("NaT")
    return out


def confidence_label(conf) -> np.ndarray | str:
    """Map confidence codes to data-api labels: 2 `nominal`, 3 `high`, 4 `highest`, anything else `not_detected`.

    Takes a scalar (returns str) or an array (returns a str array of the same shape).
    """
    c = np.asarray(conf)
    out = np.full(c.shape, NOT_DETECTED, dtype="<U12")
    for code, label in CONF_LABELS.items():
        out[c == code] = label
    return str(out) if out.ndim == 0 else out


def glad_l_year_offset(year: int) -> int:
    """Days from 2014-12-31 to Dec 31 of `year - 1`, datapump's GLAD-L offset: 2021 -> 2192, 2022 -> 2557."""
    if isinstance(year, bool) or not isinstance(year, int | np.integer):
        raise TypeError(f"GLAD-L year {year!r} must be an integer")
    if not 2015 <= year or days_since_base(date(int(year), 12, 31)) > MAX_DAYS:
        raise ValueError(f"GLAD-L year {year} must be within 2015..2041 (date_conf counts at most {MAX_DAYS} days)")
    return days_since_base(date(int(year) - 1, 12, 31))


def glad_l_date_conf(layers: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """GLAD-L alert/alertDate layers of several data years -> GFW date_conf (uint16, nodata 0).

    Per year (datapump): `(conf > 0) * (20000 + 10000*(conf > 2) + offset(year) + alertDate)` with offset(year) = days
    from 2014-12-31 to Dec 31 of the previous year (2021 -> 2192, 2022 -> 2557, 2023 -> 2922). So alert 2 with
    alertDate 1 in 2021 -> 22193 (low, 2021-01-01); alert 3 with alertDate 365 in 2022 -> 32922 (high, 2022-12-31).
    Where several years have an alert, the EARLIER year wins.

    Args:
        layers: data year (e.g. 2021) -> (alert uint8: 0 none, 2 probable, 3 confirmed; alertDate: day of year
            1..366). All arrays have the same shape.

    Returns:
        uint16 array of that shape.

    Raises:
        ValueError: no years, shape mismatch, or an alert whose alertDate is outside the days of its year.
    """
    if not layers:
        raise ValueError("GLAD-L needs at least one data year of (alert, alertDate) layers")
    out = None
    for year in sorted(layers, reverse=True):  # later years first, so earlier years overwrite them
        pair = layers[year]
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"GLAD-L {year}: expected an (alert, alertDate) pair of arrays, got {type(pair).__name__}")
        alert, doy = _int_array(pair[0], f"GLAD-L {year} alert"), _int_array(pair[1], f"GLAD-L {year} alertDate")
        _same_shape(f"GLAD-L {year} alert", alert, f"GLAD-L {year} alertDate", doy)
        offset = glad_l_year_offset(year)
        if out is None:
            out = np.zeros(alert.shape, dtype=np.uint16)
        _same_shape(f"GLAD-L {year} alert", alert, "the other years' layers", out)
        has = alert > 0
        if not has.any():
            continue
        d = doy[has]
        last = 366 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 365
        if d.min() < 1 or d.max() > last:
            raise ValueError(
                f"GLAD-L {year} alertDate must be a day of year 1..{last} where alert > 0, got {d.min()}..{d.max()}"
            )
        value = doy.astype(np.uint16)  # values where has is False may wrap; they are never copied
        value += np.uint16(20000 + offset)
        np.add(value, np.uint16(10000), out=value, where=alert > 2)
        np.copyto(out, value, where=has)
    return out


def glad_s2_date_conf(alert, alert_date) -> np.ndarray:
    """GLAD-S2 alert/alertDate -> GFW date_conf (uint16, nodata 0).

    datapump: `(A > 0) * (20000 + 10000*(A > 1) + B + 1461)`; A 1 = low, >1 = high; B = days since 2018-12-31
    (1461 = days from 2014-12-31 to 2018-12-31). E.g. A=1, B=1 -> 21462 (low, 2019-01-01); A=2, B=386 -> 31847
    (high, 2020-01-21).

    Raises:
        ValueError: shape mismatch, or B outside 0..8538 where A > 0 (the date would not fit date_conf).
    """
    a, b = _int_array(alert, "GLAD-S2 alert"), _int_array(alert_date, "GLAD-S2 alertDate")
    _same_shape("GLAD-S2 alert", a, "GLAD-S2 alertDate", b)
    has = a > 0
    out = np.zeros(a.shape, dtype=np.uint16)
    if not has.any():
        return out
    d = b[has]
    if d.min() < 0 or d.max() > MAX_DAYS - GLAD_S2_OFFSET:
        raise ValueError(
            f"GLAD-S2 alertDate must be within 0..{MAX_DAYS - GLAD_S2_OFFSET} days since 2018-12-31 where alert > 0, "
            f"got {d.min()}..{d.max()}"
        )
    value = b.astype(np.uint16)
    value += np.uint16(20000 + GLAD_S2_OFFSET)
    np.add(value, np.uint16(10000), out=value, where=a > 1)
    np.copyto(out, value, where=has)
    return out


def radd_date_conf(value) -> np.ndarray:
    """RADD pixels are already date_conf; keep `20000 <= A < 40000` (low/high), everything else becomes 0 (uint16)."""
    a = _int_array(value, "RADD date_conf")
    keep = (a >= 20000) & (a < 40000)
    out = np.zeros(a.shape, dtype=np.uint16)
    np.copyto(out, a, where=keep, casting="unsafe")  # kept values fit uint16
    return out


def integrated_date_conf(*date_confs) -> np.ndarray:
    """Combine the date_conf arrays of several alert systems (GLAD-L, GLAD-S2, RADD) into GFW integrated alerts.

    Rule (external-apis.md §2.5): date = the earliest date among the systems with an alert; confidence: exactly one
    system with a low alert -> 2, exactly one with a high alert -> 3, two or more systems -> 4 (highest).
    E.g. (20001, 0, 0) -> 20001; (0, 30055, 0) -> 30055; (21847, 30055, 0) -> 40055; (0, 0, 0) -> 0.

    Memory: the result, a count and a confidence array are allocated once; each input then costs about three
    window-sized temporaries, freed before the next input.

    Args:
        *date_confs: one integer array per system, all the same shape; values 0 or 20000..39999.

    Returns:
        uint16 array.

    Raises:
        ValueError: no inputs, shape mismatch, or a value that is neither 0 nor a low/high date_conf.
    """
    if not date_confs:
        raise ValueError("integrated alerts need at least one date_conf array")
    arrays = [_int_array(v, f"date_conf input {i}") for i, v in enumerate(date_confs)]
    shape = arrays[0].shape
    days = np.full(shape, np.iinfo(np.uint16).max, dtype=np.uint16)  # earliest day so far
    count = np.zeros(shape, dtype=np.uint8)  # systems with an alert
    conf = np.zeros(shape, dtype=np.uint16)  # confidence of the (last) alerting system, used when count == 1
    for i, v in enumerate(arrays):
        _same_shape(f"date_conf input {i}", v, "date_conf input 0", arrays[0])
        if v.size == 0:
            continue
        if v.min() < 0 or v.max() >= 40000 or ((v > 0) & (v < 20000)).any():
            bad = np.unique(v[(v < 0) | ((v > 0) & (v < 20000)) | (v >= 40000)])[:5].tolist()
            raise ValueError(f"date_conf input {i}: values {bad} are neither 0 nor a low/high alert (20000..39999)")
        has = v > 0
        np.minimum(days, v % 10000, out=days, where=has, casting="unsafe")
        np.add(count, np.uint8(1), out=count, where=has)
        np.copyto(conf, v // 10000, where=has, casting="unsafe")
        del has
    # conf*10000 + days, with conf forced to 4 where two or more systems agree and 0 where none has an alert.
    conf[count >= 2] = CONF_HIGHEST
    conf *= np.uint16(10000)
    np.add(conf, days, out=conf, where=count > 0)
    return conf
