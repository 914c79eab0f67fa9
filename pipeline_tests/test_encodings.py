"""pipeline_tests.test_encodings: date_conf encodings against the contract's examples and slow per-pixel oracles."""

from __future__ import annotations

import tracemalloc
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from pipeline.lib import encodings as E

BASE = date(2014, 12, 31)


def _oracle_value(day: date, conf: int) -> int:
    """date_conf from a calendar date, by the contract's definition (C*10000 + days since 2014-12-31)."""
    return conf * 10000 + (day - BASE).days


# -- the common encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "day", "conf", "label"),
    [
        (20001, date(2015, 1, 1), 2, "nominal"),
        (30055, date(2015, 2, 24), 3, "high"),
        (21847, date(2020, 1, 21), 2, "nominal"),
    ],
)
def test_contract_examples(value, day, conf, label):
    days = E.days_since_base(day)
    assert E.encode_date_conf(np.array([days]), np.array([conf])).tolist() == [value]
    d, c = E.decode_date_conf(np.array([value], dtype=np.uint16))
    assert (d.tolist(), c.tolist()) == ([days], [conf])
    assert d.dtype == np.int32 and c.dtype == np.uint8
    assert E.date_conf_to_dates(np.array([value])).tolist() == [day]
    assert E.confidence_label(conf) == label


def test_days_since_base():
    assert E.DATE_CONF_BASE == BASE
    assert E.days_since_base(date(2015, 1, 1)) == 1
    assert E.days_since_base(date(2020, 12, 31)) == 2192  # the GLAD-L 2021 offset of the contract
    assert E.days_since_base(datetime(2015, 2, 24, 23, 59)) == 55
    with pytest.raises(TypeError, match="must be a datetime.date"):
        E.days_since_base("2015-01-01")


def test_encode_is_uint16_and_zero_without_alert():
    out = E.encode_date_conf(np.array([[1, 55], [1847, 9999]]), np.array([[2, 0], [4, 3]]))
    assert out.dtype == np.uint16
    assert out.tolist() == [[20001, 0], [41847, 39999]]


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match=r"conf values \[1\] are not 0, 2, 3 or 4"):
        E.encode_date_conf(np.array([5]), np.array([1]))
    with pytest.raises(ValueError, match=r"days must be within 0..9999 where conf > 0, got 10000..10000"):
        E.encode_date_conf(np.array([10000]), np.array([2]))
    with pytest.raises(ValueError, match="shape"):
        E.encode_date_conf(np.array([1, 2]), np.array([2]))
    with pytest.raises(TypeError, match="days must be an integer array"):
        E.encode_date_conf(np.array([1.5]), np.array([2]))


def test_decode_round_trip_random():
    rng = np.random.default_rng(3)
    days = rng.integers(0, 10000, 5000)
    conf = rng.choice([0, 2, 3, 4], 5000)
    d, c = E.decode_date_conf(E.encode_date_conf(days, conf))
    assert np.array_equal(c, conf)
    assert np.array_equal(d, np.where(conf > 0, days, 0))


def test_dates_and_labels_vectorised():
    v = np.array([[20001, 0], [41847, 30055]], dtype=np.uint16)
    dates = E.date_conf_to_dates(v)
    assert dates.dtype == np.dtype("datetime64[D]")
    assert np.isnat(dates).tolist() == [[False, True], [False, False]]
    assert dates[1, 0] == np.datetime64("2020-01-21") and dates[1, 1] == np.datetime64("2015-02-24")
    labels = E.confidence_label(np.array([2, 3, 4, 0, 1, 5]))
    assert labels.tolist() == ["nominal", "high", "highest", "not_detected", "not_detected", "not_detected"]
    assert E.confidence_label(0) == "not_detected"


# -- GLAD-L -------------------------------------------------------------------------------------------


def test_glad_l_offsets_from_contract():
    assert [E.glad_l_year_offset(y) for y in (2021, 2022, 2023)] == [2192, 2557, 2922]
    with pytest.raises(ValueError, match="GLAD-L year 2042 must be within 2015..2041"):
        E.glad_l_year_offset(2042)


def test_glad_l_hand_values():
    layers = {
        2021: (np.array([2, 3, 0, 2], dtype=np.uint8), np.array([1, 365, 0, 10], dtype=np.uint16)),
        2022: (np.array([0, 3, 2, 3], dtype=np.uint8), np.array([0, 1, 200, 20], dtype=np.uint16)),
    }
    out = E.glad_l_date_conf(layers)
    assert out.dtype == np.uint16
    # 20000 + 2192 + 1; 30000 + 2192 + 365; 2022-only low 20000 + 2557 + 200; both years -> 2021 wins.
    assert out.tolist() == [22193, 32557, 22757, 22202]
    assert E.date_conf_to_dates(out).tolist() == [
        date(2021, 1, 1),
        date(2021, 12, 31),
        date(2022, 7, 19),
        date(2021, 1, 10),
    ]


def test_glad_l_matches_per_pixel_oracle():
    rng = np.random.default_rng(5)
    shape = (40, 50)
    layers = {}
    for year in (2021, 2022, 2023):
        alert = rng.choice(np.array([0, 2, 3], dtype=np.uint8), shape, p=[0.5, 0.25, 0.25])
        ndays = (date(year + 1, 1, 1) - date(year, 1, 1)).days
        doy = np.where(alert > 0, rng.integers(1, ndays + 1, shape), 0).astype(np.uint16)
        layers[year] = (alert, doy)
    expect = np.zeros(shape, dtype=np.int64)
    for i in range(shape[0]):
        for j in range(shape[1]):
            for year in (2021, 2022, 2023):  # the earliest year with an alert wins
                a, d = int(layers[year][0][i, j]), int(layers[year][1][i, j])
                if a > 0:
                    day = date(year, 1, 1) + timedelta(days=d - 1)
                    expect[i, j] = _oracle_value(day, 3 if a > 2 else 2)
                    break
    assert np.array_equal(E.glad_l_date_conf(layers), expect)


def test_glad_l_rejects_bad_input():
    one = np.array([2], dtype=np.uint8)
    with pytest.raises(ValueError, match="GLAD-L 2021 alertDate must be a day of year 1..365 where alert > 0, got 366"):
        E.glad_l_date_conf({2021: (one, np.array([366]))})
    with pytest.raises(ValueError, match="got 0..0"):
        E.glad_l_date_conf({2024: (one, np.array([0]))})
    assert E.glad_l_date_conf({2024: (one, np.array([366]))}).tolist() == [_oracle_value(date(2024, 12, 31), 2)]
    with pytest.raises(ValueError, match="at least one data year"):
        E.glad_l_date_conf({})
    with pytest.raises(ValueError, match="shape"):
        E.glad_l_date_conf({2021: (one, np.array([1])), 2022: (np.array([2, 2]), np.array([1, 1]))})
    with pytest.raises(TypeError, match="GLAD-L year '2021' must be an integer"):
        E.glad_l_date_conf({"2021": (one, np.array([1]))})


# -- GLAD-S2 and RADD ---------------------------------------------------------------------------------


def test_glad_s2_hand_values_and_oracle():
    out = E.glad_s2_date_conf(np.array([1, 2, 0, 3]), np.array([1, 386, 50, 0]))
    assert out.dtype == np.uint16
    assert out.tolist() == [21462, 31847, 0, 31461]
    assert E.date_conf_to_dates(out)[:2].tolist() == [date(2019, 1, 1), date(2020, 1, 21)]

    rng = np.random.default_rng(9)
    a = rng.integers(0, 4, (30, 30)).astype(np.uint8)
    b = rng.integers(0, 3000, (30, 30)).astype(np.uint16)
    expect = np.zeros(a.shape, dtype=np.int64)
    for i in range(30):
        for j in range(30):
            if a[i, j] > 0:
                day = date(2018, 12, 31) + timedelta(days=int(b[i, j]))
                expect[i, j] = _oracle_value(day, 3 if a[i, j] > 1 else 2)
    assert np.array_equal(E.glad_s2_date_conf(a, b), expect)


def test_glad_s2_rejects_overflowing_dates():
    with pytest.raises(ValueError, match=r"GLAD-S2 alertDate must be within 0..8538"):
        E.glad_s2_date_conf(np.array([1]), np.array([8539]))
    assert E.glad_s2_date_conf(np.array([0]), np.array([65000])).tolist() == [0]  # no alert, date ignored


def test_radd_keeps_low_and_high_only():
    a = np.array([0, 1, 19999, 20000, 25000, 39999, 40000, 45000, 65535], dtype=np.uint16)
    out = E.radd_date_conf(a)
    assert out.dtype == np.uint16
    assert out.tolist() == [0, 0, 0, 20000, 25000, 39999, 0, 0, 0]
    assert E.radd_date_conf(np.array([-5, 30055, 70000], dtype=np.int32)).tolist() == [0, 30055, 0]


# -- integrated ---------------------------------------------------------------------------------------


def test_integrated_hand_values():
    glad_l = np.array([20001, 0, 21847, 0, 30100, 0], dtype=np.uint16)
    glad_s2 = np.array([0, 30055, 30055, 0, 0, 0], dtype=np.uint16)
    radd = np.array([0, 0, 0, 0, 20050, 0], dtype=np.uint16)
    out = E.integrated_date_conf(glad_l, glad_s2, radd)
    assert out.dtype == np.uint16
    # one low; one high; two systems -> highest with the earliest date (55); none; two systems, earliest 50.
    assert out.tolist() == [20001, 30055, 40055, 0, 40050, 0]
    assert E.integrated_date_conf(glad_l).tolist() == glad_l.tolist()


def test_integrated_matches_per_pixel_oracle():
    rng = np.random.default_rng(13)
    shape = (25, 40)
    inputs = []
    for _ in range(3):
        conf = rng.choice([0, 2, 3], shape, p=[0.5, 0.25, 0.25])
        days = rng.integers(1, 4000, shape)
        inputs.append(np.where(conf > 0, conf * 10000 + days, 0).astype(np.uint16))
    expect = np.zeros(shape, dtype=np.int64)
    for i in range(shape[0]):
        for j in range(shape[1]):
            alerts = [int(x[i, j]) for x in inputs if x[i, j] > 0]
            if not alerts:
                continue
            earliest = min(BASE + timedelta(days=v % 10000) for v in alerts)
            conf = 4 if len(alerts) >= 2 else alerts[0] // 10000
            expect[i, j] = _oracle_value(earliest, conf)
    assert np.array_equal(E.integrated_date_conf(*inputs), expect)


def test_integrated_rejects_bad_input():
    ok = np.array([20001, 0], dtype=np.uint16)
    with pytest.raises(ValueError, match=r"date_conf input 1: values \[10000\] are neither 0 nor a low/high"):
        E.integrated_date_conf(ok, np.array([10000, 0], dtype=np.uint16))
    with pytest.raises(ValueError, match=r"date_conf input 0: values \[40055\]"):
        E.integrated_date_conf(np.array([40055, 0], dtype=np.uint16), ok)
    with pytest.raises(ValueError, match="shape"):
        E.integrated_date_conf(ok, np.array([0], dtype=np.uint16))
    with pytest.raises(ValueError, match="at least one"):
        E.integrated_date_conf()


def test_integrated_memory_does_not_grow_with_inputs():
    """Peak temporaries stay a few window-sizes and do not add up over the inputs."""
    shape = (500, 500)  # 0.5 MB per uint16 window
    window_bytes = shape[0] * shape[1] * 2
    rng = np.random.default_rng(0)
    inputs = [np.where(rng.random(shape) < 0.3, 25000, 0).astype(np.uint16) for _ in range(8)]

    def peak(arrays):
        tracemalloc.start()
        try:
            E.integrated_date_conf(*arrays)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak3, peak8 = peak(inputs[:3]), peak(inputs)
    assert peak3 < 8 * window_bytes, peak3
    assert peak8 < peak3 + window_bytes, (peak3, peak8)
