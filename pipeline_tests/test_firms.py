"""pipeline_tests.test_firms: unit tests of the FIRMS CSV parser, de-duplication and pure helpers."""

from __future__ import annotations

import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipeline.lib.firms import (
    ALERT_COLUMNS,
    ALERT_SCHEMA,
    FirmsClient,
    FirmsError,
    FirmsFormatError,
    chunk_days,
    dedupe_alerts,
    format_area,
    parse_firms_csv,
    to_geodataframe,
    window_days,
)
from pipeline.lib.http import SourceError
from pipeline.standins.fire_samples import CSV_COLUMNS, generate_fires, to_csv_text

VIIRS_HEADER = ",".join(CSV_COLUMNS["VIIRS"])
MODIS_HEADER = ",".join(CSV_COLUMNS["MODIS"])


def viirs_row(lat="-6.99012", lon="29.71033", date_="2026-09-21", time_="1212", sat="N", conf="n", frp="3.20"):
    return f"{lat},{lon},330.12,0.36,0.57,{date_},{time_},{sat},VIIRS,{conf},2.0NRT,290.45,{frp},D"


def modis_row(conf="77", sat="Aqua", time_="0005"):
    return f"-6.94,29.48,324.8,1.23,1.1,2026-09-25,{time_},{sat},MODIS,{conf},6.1NRT,297.5,18.4,N"


def csv(header, *rows):
    return "\n".join([header, *rows]) + "\n"


# -- VIIRS / MODIS basics ------------------------------------------------------------------------


def test_viirs_contract_example_parses_to_exact_values():
    text = csv(
        VIIRS_HEADER,
        "-6.99012,29.71033,330.12,0.36,0.57,2026-09-21,1212,N,VIIRS,n,2.0NRT,290.45,3.20,D",
        "30.91000,75.85000,351.20,0.38,0.36,2026-10-07,0542,N21,VIIRS,h,2.0NRT,308.40,18.40,D",
    )
    parsed = parse_firms_csv(text, "VIIRS", "VIIRS_SNPP_NRT")
    df = parsed.df
    assert list(df.columns) == ALERT_COLUMNS
    assert (parsed.rows_read, parsed.dropped, parsed.problems) == (2, 0, [])
    first = df.iloc[0]
    assert first["latitude"] == pytest.approx(-6.99012) and first["longitude"] == pytest.approx(29.71033)
    assert (first["acq_date"], first["acq_time"], first["satellite"]) == ("2026-09-21", "1212", "N")
    assert (first["instrument"], first["confidence__cat"], first["confidence"]) == ("VIIRS", "n", "n")
    assert first["bright_ti4"] == pytest.approx(330.12) and first["bright_ti5"] == pytest.approx(290.45)
    assert np.isnan(first["brightness"]) and np.isnan(first["bright_t31"])
    assert (first["scan"], first["track"], first["frp"]) == pytest.approx((0.36, 0.57, 3.2))
    assert (first["daynight"], first["version"], first["source"]) == ("D", "2.0NRT", "VIIRS_SNPP_NRT")
    assert df.iloc[1]["satellite"] == "N21" and df.iloc[1]["confidence__cat"] == "h"


def test_modis_contract_example_parses_with_viirs_columns_nan():
    parsed = parse_firms_csv(csv(MODIS_HEADER, modis_row()), "modis", "MODIS_NRT")
    row = parsed.df.iloc[0]
    assert (row["satellite"], row["instrument"], row["confidence"], row["confidence__cat"]) == (
        "Aqua",
        "MODIS",
        "77",
        "n",
    )
    assert row["brightness"] == pytest.approx(324.8) and row["bright_t31"] == pytest.approx(297.5)
    assert np.isnan(row["bright_ti4"]) and np.isnan(row["bright_ti5"])
    assert (row["acq_date"], row["acq_time"], row["version"]) == ("2026-09-25", "0005", "6.1NRT")


def test_output_dtypes_match_documented_schema():
    df = parse_firms_csv(csv(VIIRS_HEADER, viirs_row()), "VIIRS", "s").df
    assert [name for name, _, _ in ALERT_SCHEMA] == list(df.columns)
    for name, dtype, _ in ALERT_SCHEMA:
        if dtype == "float64":
            assert df[name].dtype == np.float64, name
        else:
            assert pd.api.types.is_string_dtype(df[name]), name


# -- confidence ------------------------------------------------------------------------------------


def test_modis_confidence_boundaries_and_invalid_values():
    values = ["0", "29", "30", "79", "80", "100", "101", "-1", "7.5", "abc", ""]
    text = csv(MODIS_HEADER, *[modis_row(conf=v) for v in values])
    parsed = parse_firms_csv(text, "MODIS", "m")
    assert parsed.df["confidence"].tolist() == ["0", "29", "30", "79", "80", "100"]
    assert parsed.df["confidence__cat"].tolist() == ["l", "l", "n", "n", "h", "h"]
    assert parsed.rows_read == 11 and parsed.dropped == 5
    assert parsed.problems[0] == "m line 8: MODIS confidence '101' is not an integer 0-100"


def test_viirs_confidence_letters_and_full_words():
    confs = ["l", "n", "h", "low", "nominal", "high", "HIGH", "x", "30"]
    parsed = parse_firms_csv(
        csv(VIIRS_HEADER, *[viirs_row(time_=f"{i:04d}", conf=c) for i, c in enumerate(confs)]), "VIIRS", "v"
    )
    assert parsed.df["confidence__cat"].tolist() == ["l", "n", "h", "l", "n", "h", "h"]
    assert parsed.df["confidence"].tolist() == ["l", "n", "h", "low", "nominal", "high", "HIGH"]
    assert parsed.dropped == 2


# -- header forms, time and date quirks ------------------------------------------------------------


def test_uppercase_shapefile_header_without_instrument_and_compact_date():
    header = ",".join(c.upper() for c in CSV_COLUMNS["VIIRS"] if c != "instrument")
    text = csv(header, "10.5,20.25,300.1,0.4,0.4,20260927,0130,N,nominal,2.0NRT,290.2,5.5,N")
    parsed = parse_firms_csv(text, "VIIRS", "SUOMI_VIIRS_C2_Global_7d")
    row = parsed.df.iloc[0]
    assert (row["acq_date"], row["acq_time"], row["instrument"], row["confidence__cat"]) == (
        "2026-09-27",
        "0130",
        "VIIRS",
        "n",
    )
    assert row["frp"] == pytest.approx(5.5)


def test_unpadded_acq_time_is_zero_filled_and_invalid_times_dropped():
    good = ["33", "659", "5", "0000", "2359"]
    bad = ["2400", "1260", "12:30", "", "12345"]
    parsed = parse_firms_csv(csv(VIIRS_HEADER, *[viirs_row(time_=t) for t in good + bad]), "VIIRS", "v")
    assert parsed.df["acq_time"].tolist() == ["0033", "0659", "0005", "0000", "2359"]
    assert parsed.dropped == len(bad)
    assert "v line 7: acq_time '2400' is not a valid HHMM time" in parsed.problems


def test_satellite_codes_are_normalised():
    viirs = parse_firms_csv(
        csv(
            VIIRS_HEADER,
            *[viirs_row(time_=f"{i:04d}", sat=s) for i, s in enumerate(["N", "N20", "1", "N21", "2", "X"])],
        ),
        "VIIRS",
        "v",
    )
    assert viirs.df["satellite"].tolist() == ["N", "N20", "N20", "N21", "N21"]
    assert viirs.dropped == 1 and "satellite 'X'" in viirs.problems[0]
    modis = parse_firms_csv(csv(MODIS_HEADER, *[modis_row(sat=s) for s in ["T", "A", "Terra", "aqua"]]), "MODIS", "m")
    assert modis.df["satellite"].tolist() == ["Terra", "Aqua", "Terra", "Aqua"]


def test_malformed_rows_are_dropped_counted_and_named_by_line():
    rows = [
        viirs_row(),  # line 2 ok
        "1.0,2.0,3.0",  # line 3: too few fields
        viirs_row(lat="abc"),  # line 4
        viirs_row(lat="90.5"),  # line 5
        "",  # line 6: blank lines are skipped, not counted
        viirs_row(lon="-180.01"),  # line 7
        viirs_row(date_="2026-02-30"),  # line 8
        viirs_row(date_="27/09/2026"),  # line 9
        viirs_row(frp="x"),  # line 10
        viirs_row() + ",extra",  # line 11: too many fields
        viirs_row(frp="", time_="0100"),  # line 12: empty measurement is NaN, kept
    ]
    parsed = parse_firms_csv(csv(VIIRS_HEADER, *rows), "VIIRS", "src")
    assert parsed.rows_read == 10
    assert parsed.dropped == 8
    assert len(parsed.df) == 2 and np.isnan(parsed.df.iloc[1]["frp"])
    assert parsed.problems == [
        "src line 3: expected 14 fields, found 3",
        "src line 4: latitude 'abc' is not a number",
        "src line 5: latitude 90.5 is outside [-90, 90]",
        "src line 7: longitude -180.01 is outside [-180, 180]",
        "src line 8: acq_date '2026-02-30' is not a valid YYYY-MM-DD date",
        "src line 9: acq_date '27/09/2026' is not a valid YYYY-MM-DD date",
        "src line 10: frp 'x' is not a number",
        "src line 11: expected 14 fields, found 15",
    ]


def test_problem_list_is_capped_but_counts_are_complete():
    parsed = parse_firms_csv(csv(VIIRS_HEADER, *[viirs_row(lat="bad")] * 50), "VIIRS", "s")
    assert parsed.dropped == 50 and len(parsed.problems) == 20 and parsed.df.empty


# -- error bodies and empty bodies -----------------------------------------------------------------


def test_error_body_raises_format_error_naming_source_and_quoting_body():
    with pytest.raises(FirmsFormatError) as err:
        parse_firms_csv("Invalid MAP_KEY.", "VIIRS", "VIIRS_NOAA20_NRT")
    message = str(err.value)
    assert message.startswith("FIRMS: VIIRS_NOAA20_NRT:")
    assert "'Invalid MAP_KEY.'" in message
    assert isinstance(err.value, FirmsError) and isinstance(err.value, SourceError)


def test_error_body_quote_redacts_secrets():
    with pytest.raises(FirmsFormatError) as err:
        parse_firms_csv("Key abc123secret is over quota", "MODIS", "MODIS_NRT", secrets=["abc123secret"])
    assert "abc123secret" not in str(err.value) and "***" in str(err.value)


def test_empty_body_is_an_error_but_header_only_is_zero_rows():
    with pytest.raises(FirmsFormatError, match="body is empty"):
        parse_firms_csv("", "VIIRS", "s")
    parsed = parse_firms_csv(VIIRS_HEADER + "\n", "VIIRS", "s")
    assert (len(parsed.df), parsed.rows_read, parsed.dropped) == (0, 0, 0)
    assert list(parsed.df.columns) == ALERT_COLUMNS and parsed.df["latitude"].dtype == np.float64


def test_wrong_instrument_or_missing_columns_raise():
    with pytest.raises(FirmsFormatError, match="MODIS data, not VIIRS"):
        parse_firms_csv(csv(MODIS_HEADER, modis_row()), "VIIRS", "s")
    with pytest.raises(FirmsFormatError, match="lacks required column.*acq_time"):
        parse_firms_csv("latitude,longitude,acq_date,satellite,confidence\n1,2,2026-01-01,N,n\n", "VIIRS", "s")
    with pytest.raises(ValueError, match="instrument 'LANDSAT'"):
        parse_firms_csv(VIIRS_HEADER, "LANDSAT", "s")


def test_parse_300k_rows_is_fast():
    text = to_csv_text(generate_fires(date(2026, 9, 27), "VIIRS", n=300_000))
    started = time.perf_counter()
    parsed = parse_firms_csv(text, "VIIRS", "big")
    elapsed = time.perf_counter() - started
    assert len(parsed.df) == 300_000 and parsed.dropped == 0
    assert elapsed < 4.0, f"parsing 300k rows took {elapsed:.2f}s"


# -- dedupe and geo ---------------------------------------------------------------------------------


def test_dedupe_keeps_first_and_sorts_deterministically():
    a = parse_firms_csv(
        csv(
            VIIRS_HEADER,
            viirs_row(time_="1300", sat="N20"),
            viirs_row(time_="0100"),
            viirs_row(time_="0100", sat="N"),
        ),
        "VIIRS",
        "first",
    ).df
    b = parse_firms_csv(
        csv(VIIRS_HEADER, viirs_row(time_="100", conf="h"), viirs_row(time_="0100", sat="N21")),
        "VIIRS",
        "second",
    ).df
    out = dedupe_alerts(pd.concat([a, b], ignore_index=True))
    assert out.index.tolist() == [0, 1, 2]
    assert list(zip(out["acq_time"], out["satellite"], out["source"], strict=True)) == [
        ("0100", "N", "first"),  # the duplicate from "second" (same key, unpadded time) was dropped
        ("0100", "N21", "second"),
        ("1300", "N20", "first"),
    ]
    assert out.iloc[0]["confidence__cat"] == "n"


def test_dedupe_of_empty_frame_is_empty():
    empty = parse_firms_csv(VIIRS_HEADER, "VIIRS", "s").df
    assert dedupe_alerts(empty).empty


def test_to_geodataframe_points_in_wgs84():
    df = parse_firms_csv(csv(VIIRS_HEADER, viirs_row(lat="-6.5", lon="29.25")), "VIIRS", "s").df
    gdf = to_geodataframe(df)
    assert gdf.crs.to_epsg() == 4326
    assert (gdf.geometry.iloc[0].x, gdf.geometry.iloc[0].y) == (29.25, -6.5)
    assert "acq_date" in gdf.columns


# -- pure helpers and client validation ------------------------------------------------------------


def test_chunk_days_runs_of_at_most_five_consecutive_days():
    d = lambda day: date(2026, 9, day)  # noqa: E731
    days = [d(12), d(1), d(2), d(3), d(4), d(5), d(6), d(7), d(10), d(11), d(2)]
    assert chunk_days(days) == [(d(1), 5), (d(6), 2), (d(10), 3)]
    assert chunk_days([]) == []
    assert chunk_days([d(1), d(2), d(3)], max_len=2) == [(d(1), 2), (d(3), 1)]


def test_window_days():
    today = date(2026, 3, 1)
    assert window_days("24h", today) == [date(2026, 2, 28), today]
    assert window_days("7d", today)[0] == date(2026, 2, 23) and len(window_days("7d", today)) == 7
    with pytest.raises(ValueError, match="window '12h'"):
        window_days("12h", today)


def test_format_area_validates_bbox():
    assert format_area("world") == "world"
    assert format_area((-74, -34, -34, 6)) == "-74,-34,-34,6"
    assert format_area("28,-8.5,32,-4") == "28,-8.5,32,-4"
    for bad in ("28,-8,32", "a,b,c,d", "32,-8,28,-4", "-190,0,0,10"):
        with pytest.raises(ValueError, match="area"):
            format_area(bad)


def test_client_url_and_argument_validation():
    client = FirmsClient("http://firms.example", map_key="k")
    assert client.global_file_url("VIIRS_NOAA21", "24h") == (
        "http://firms.example/data/active_fire/noaa-21-viirs-c2/csv/J2_VIIRS_C2_Global_24h.csv"
    )
    assert client.area_url("VIIRS_SNPP_NRT", date(2026, 9, 20), 5, "28,-8,32,-4") == (
        "http://firms.example/api/area/csv/k/VIIRS_SNPP_NRT/28,-8,32,-4/5/2026-09-20"
    )
    for bad_range in (0, 6, True, 2.0):
        with pytest.raises(ValueError, match="day_range"):
            client.fetch_area("MODIS_NRT", date(2026, 9, 20), bad_range)
    with pytest.raises(ValueError, match="VIIRS_NOAA21_SP"):
        client.fetch_area("VIIRS_NOAA21_SP", date(2026, 9, 20), 1)
    with pytest.raises(ValueError, match="product_key 'GOES'"):
        client.global_file_url("GOES", "7d")


def test_fetch_area_without_map_key_names_the_setting():
    with pytest.raises(FirmsError, match="FIRMS_MAP_KEY is not set"):
        FirmsClient("http://firms.example").fetch_area("MODIS_NRT", date(2026, 9, 20), 1)


def test_fetch_days_rejects_future_days():
    with pytest.raises(ValueError, match="after today"):
        FirmsClient("http://firms.example").fetch_days("VIIRS", [date(2026, 9, 28)], today=date(2026, 9, 27))
