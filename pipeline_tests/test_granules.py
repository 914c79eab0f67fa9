"""pipeline_tests.test_granules: HDF-EOS5 granule -> north-up array -> statistics, COG and PNG preview, with oracles."""

from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.transform import rowcol
from rio_cogeo.cogeo import cog_validate

from pipeline.lib.collections import load_collections
from pipeline.lib.granules import (
    PNG_SIGNATURE,
    GranuleError,
    band_statistics,
    preview_png,
    read_granule,
    tai93_to_utc,
    utc_to_tai93,
    write_granule_cog,
)
from pipeline.lib.storage import Storage
from pipeline.standins.granule_samples import (
    SCALED_FACTOR,
    SCALED_OFFSET,
    granule_bytes,
    granule_name,
    make_granule,
)

FILL = -1.2676506e30  # the contract's fill; users mask values <= it (external-apis.md §6.1)
DAY = date(2022, 1, 20)
NAME = "OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5"
VAR = "/HDFEOS/GRIDS/ColumnAmountO3/Data Fields/ColumnAmountO3"


@pytest.fixture(scope="module")
def collections():
    return load_collections()


@pytest.fixture(scope="module")
def omi(collections):
    return collections["OMDOAO3e_003"]


@pytest.fixture(scope="module")
def omi_granule(tmp_path_factory, omi):
    """(path, expected north-up array) of one good OMDOAO3e granule, written once for the module."""
    path = tmp_path_factory.mktemp("granules") / granule_name("OMDOAO3e", DAY)
    return path, make_granule(path, omi, DAY, seed=7)


@pytest.fixture(scope="module")
def omi_array(omi_granule, omi):
    return read_granule(omi_granule[0], omi)


def _copy(src: Path, tmp_path: Path, name: str | None = None) -> Path:
    dst = tmp_path / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


def _raw(path: Path, var: str = VAR) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return h5[var][()]


# -- reading ---------------------------------------------------------------------------------------------------------
def test_standin_name_matches_the_contract_example():
    assert granule_name("OMDOAO3e", DAY) == NAME


def test_read_granule_flips_south_up_rows_to_north_up(omi_granule, omi_array):
    path, expected = omi_granule
    raw = _raw(path)  # as stored: row 0 = south edge
    g = omi_array
    assert g.data.dtype == np.float32 and g.data.shape == (720, 1440)
    np.testing.assert_array_equal(g.data, expected)
    # Independent of the stand-in's oracle: output row 0 is the northernmost input row, and vice versa.
    np.testing.assert_array_equal(g.data[0], np.where(raw[-1] <= FILL, np.float32(FILL), raw[-1]))
    np.testing.assert_array_equal(g.data[-1], np.where(raw[0] <= FILL, np.float32(FILL), raw[0]))
    assert g.transform == Affine(0.25, 0, -180, 0, -0.25, 90) and g.crs == "EPSG:4326"


@pytest.mark.parametrize(("lat", "lon"), [(45.1, 10.3), (-33.9, 151.2), (0.1, -179.9), (-60.1, -70.1)])
def test_pixel_at_a_known_lat_lon(omi_granule, omi_array, lat, lon):
    raw = _raw(omi_granule[0])
    # In the file, row i spans latitudes -90 + 0.25 i .. -90 + 0.25 (i + 1); column j spans -180 + 0.25 j.
    i, j = int((lat + 90) // 0.25), int((lon + 180) // 0.25)
    row, col = rowcol(omi_array.transform, lon, lat)
    want = raw[i, j] if raw[i, j] > FILL else np.float32(FILL)
    assert omi_array.data[row, col] == want
    assert omi_array.valid_mask[row, col] == (raw[i, j] > FILL)


def test_fill_is_masked_and_set_to_the_fill_value(omi_granule, omi_array):
    raw = np.flipud(_raw(omi_granule[0]))
    g = omi_array
    np.testing.assert_array_equal(g.valid_mask, raw > FILL)
    assert 0 < (~g.valid_mask).sum() < g.data.size // 2  # polar night and orbit gaps, not everything
    assert np.all(g.data[~g.valid_mask] == np.float32(FILL))
    assert g.nodata == float(np.float32(FILL)) and g.nodata <= FILL  # -2**100, so "mask <= -1.2676506e+30" works
    assert np.all((g.data[g.valid_mask] >= 220) & (g.data[g.valid_mask] <= 450))
    assert g.units == "DU" and g.source_attrs["dataset"]["Units"] == "DU"


def test_fill_attributes_apply_even_when_the_config_fill_differs(omi_granule, omi):
    # With a config fill that never occurs, the dataset's MissingValue/_FillValue still mask the same pixels.
    config = dataclasses.replace(omi, nodata=-999.0, fill_rule="eq")
    g = read_granule(omi_granule[0], config)
    np.testing.assert_array_equal(g.valid_mask, np.flipud(_raw(omi_granule[0])) > FILL)
    assert np.all(g.data[~g.valid_mask] == np.float32(-999.0))
    # And without fill attributes the config's `<=` rule alone masks them.
    g2 = read_granule(omi_granule[0], dataclasses.replace(omi, fill_attributes=()))
    np.testing.assert_array_equal(g2.valid_mask, g.valid_mask)


def test_valid_range_masks_out_of_range_values(omi_granule, omi, omi_array):
    g = read_granule(omi_granule[0], dataclasses.replace(omi, valid_range=(0.0, 300.0)))
    np.testing.assert_array_equal(g.valid_mask, omi_array.valid_mask & (omi_array.data <= 300.0))


def test_scale_and_offset_attributes_override_the_config(tmp_path, omi):
    path = tmp_path / NAME
    expected = make_granule(path, omi, DAY, seed=3, kind="scaled")
    with h5py.File(path, "r") as h5:
        ds = h5[VAR]
        raw, scale, offset = ds[()], float(ds.attrs["ScaleFactor"][0]), float(ds.attrs["Offset"][0])
        missing = ds.attrs["MissingValue"][0]
    assert raw.dtype == np.int16 and (scale, offset) == (SCALED_FACTOR, SCALED_OFFSET)
    g = read_granule(path, omi)  # the config says scale 1, offset 0: the attributes win
    assert (g.scale, g.offset) == (SCALED_FACTOR, SCALED_OFFSET)
    physical = np.flipud(offset + scale * raw.astype(np.float64)).astype(np.float32)
    valid = np.flipud(raw != missing)
    np.testing.assert_array_equal(g.valid_mask, valid)
    np.testing.assert_allclose(g.data[valid], physical[valid], rtol=1e-7)
    np.testing.assert_array_equal(g.data, expected)
    assert np.all(g.data[~valid] == np.float32(FILL))


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("missing_variable", f"variable {VAR} not found"),
        ("wrong_shape", "wrong shape (720, 1439), expected (720, 1440)"),
        ("all_fill", "all values are fill"),
        ("truncated", "truncated or not an HDF5 file"),
    ],
)
def test_bad_granules_raise_granule_error_naming_file_and_rule(tmp_path, omi, kind, rule):
    path = tmp_path / NAME
    make_granule(path, omi, DAY, kind=kind)
    with pytest.raises(GranuleError) as info:
        read_granule(path, omi)
    assert str(info.value).startswith(f"{NAME}: ")
    assert rule in str(info.value)
    assert isinstance(info.value, ValueError) and info.value.granule == NAME


def test_other_unusable_files(tmp_path, omi, omi_granule):
    text = tmp_path / "notes.he5"
    text.write_text("this is not HDF5")
    with pytest.raises(GranuleError, match=r"^notes\.he5: truncated or not an HDF5 file"):
        read_granule(text, omi)
    with pytest.raises(GranuleError, match=r"^absent\.he5: file .* does not exist"):
        read_granule(tmp_path / "absent.he5", omi)

    wrong_grid = _copy(omi_granule[0], tmp_path)
    with h5py.File(wrong_grid, "r+") as h5:
        h5["/HDFEOS/GRIDS/ColumnAmountO3"].attrs["GridSpacing"] = np.bytes_("(1.0,1.0)")
    spacing_rule = r"grid attribute GridSpacing is '\(1.0,1.0\)', the collection OMDOAO3e_003 expects \(0.25,0.25\)"
    with pytest.raises(GranuleError, match=spacing_rule):
        read_granule(wrong_grid, omi)


# -- time ------------------------------------------------------------------------------------------------------------
# TAI-UTC grew by 1 s at the start of each of these UTC days after 1993-01-01 (IERS); the oracle counts them itself.
IERS_LEAPS = ["1993-07-01", "1994-07-01", "1996-01-01", "1997-07-01", "1999-01-01", "2006-01-01", "2009-01-01"]
IERS_LEAPS += ["2012-07-01", "2015-07-01", "2017-01-01"]


@pytest.mark.parametrize(
    "day", [date(1993, 1, 1), date(1993, 6, 30), date(1993, 7, 1), date(2016, 12, 31), date(2017, 1, 1), DAY]
)
def test_tai93_conversion_counts_leap_seconds(day):
    leaps = sum(1 for d in IERS_LEAPS if date.fromisoformat(d) <= day)
    tai = (day - date(1993, 1, 1)).days * 86400 + leaps
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert tai93_to_utc(tai) == midnight
    assert tai93_to_utc(tai + 3600.5) == midnight + timedelta(hours=1, microseconds=500000)
    assert utc_to_tai93(midnight) == tai


def test_granule_time_from_the_attribute_then_the_file_name(tmp_path, omi, omi_granule, omi_array):
    assert omi_array.time == datetime(2022, 1, 20, tzinfo=UTC)
    assert omi_array.time_source == "TAI93At0zOfGranule"
    with h5py.File(omi_granule[0], "r") as h5:
        assert h5["/HDFEOS/ADDITIONAL/FILE_ATTRIBUTES"].attrs["TAI93At0zOfGranule"][0] == 916_790_400 + 10

    no_attr = _copy(omi_granule[0], tmp_path)
    with h5py.File(no_attr, "r+") as h5:
        del h5["/HDFEOS/ADDITIONAL/FILE_ATTRIBUTES"].attrs["TAI93At0zOfGranule"]
    g = read_granule(no_attr, omi)
    assert (g.time, g.time_source) == (datetime(2022, 1, 20, tzinfo=UTC), "file name")

    with pytest.raises(GranuleError, match="no granule time"):
        read_granule(no_attr.rename(tmp_path / "granule.he5"), omi)

    other_day = _copy(omi_granule[0], tmp_path)
    with h5py.File(other_day, "r+") as h5:
        attrs = h5["/HDFEOS/ADDITIONAL/FILE_ATTRIBUTES"].attrs
        attrs["TAI93At0zOfGranule"] = np.array([utc_to_tai93(datetime(2022, 1, 21))])
    with pytest.raises(GranuleError, match="gives 2022-01-21 but the file name says 2022-01-20"):
        read_granule(other_day, omi)


def test_granule_before_the_collection_start_is_rejected(tmp_path, omi):
    early = date(2004, 9, 30)
    path = tmp_path / granule_name("OMDOAO3e", early)
    make_granule(path, omi, early)
    with pytest.raises(GranuleError, match="before the collection start 2004-10-01"):
        read_granule(path, omi)


# -- statistics, COG, preview ----------------------------------------------------------------------------------------
def test_band_statistics_equal_numpy_on_the_valid_pixels(omi_granule, omi_array):
    expected = omi_granule[1]
    values = expected[expected > FILL].astype(np.float64)  # from the stand-in's oracle, not the reader
    stats = band_statistics(omi_array, histogram_bins=16)
    assert stats["minimum"] == values.min() and stats["maximum"] == values.max()
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert stats["stddev"] == pytest.approx(values.std(), rel=1e-12)
    assert stats["valid_percent"] == pytest.approx(100 * values.size / expected.size, rel=1e-12)
    assert 0 < stats["valid_percent"] < 100
    assert all(type(stats[k]) is float for k in ("minimum", "maximum", "mean", "stddev", "valid_percent"))
    hist = stats["histogram"]
    counts, edges = np.histogram(values, bins=16)
    assert hist["count"] == 16 and hist["buckets"] == counts.tolist() and sum(hist["buckets"]) == values.size
    assert (hist["min"], hist["max"]) == (edges[0], edges[-1])
    assert "histogram" not in band_statistics(omi_array)


def test_write_granule_cog_round_trips(tmp_path, omi_array):
    storage = Storage(str(tmp_path / "store"))
    info = write_granule_cog(
        omi_array, storage, "OMDOAO3e_003/2022/OMDOAO3e_2022-01-20.tif", options={"NUM_THREADS": 2}
    )
    path = Path(info.uri)
    assert path.is_file() and info.valid and info.dtype == "float32"
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid, errors
    with rasterio.open(path) as ds:
        assert ds.dtypes == ("float32",)
        assert ds.crs.to_epsg() == 4326
        assert ds.transform == Affine(0.25, 0, -180, 0, -0.25, 90)
        assert np.float32(ds.nodata) == np.float32(FILL)
        assert ds.overviews(1)
        assert ds.compression.name.upper() == "DEFLATE"
        tags = ds.tags()
        assert tags["units"] == "DU" and tags["source_granule"] == NAME and tags["collection"] == "OMDOAO3e_003"
        assert tags["datetime"] == "2022-01-20T00:00:00Z"
        back = ds.read(1)
        np.testing.assert_array_equal(back, omi_array.data)
        np.testing.assert_array_equal(ds.read_masks(1) > 0, omi_array.valid_mask)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_preview_png_is_rgba_with_transparent_nodata(omi_array):
    png = preview_png(omi_array)
    assert png.startswith(PNG_SIGNATURE)
    with MemoryFile(png) as mem, mem.open() as ds:
        assert ds.driver == "PNG" and ds.count == 4 and ds.dtypes[0] == "uint8"
        assert (ds.height, ds.width) == (180, 360)
        rgba = ds.read()
    sampled = omi_array.valid_mask[2::4, 2::4]  # cell centres of each 4x4 block
    np.testing.assert_array_equal(rgba[3] == 255, sampled)
    np.testing.assert_array_equal(rgba[3] == 0, ~sampled)
    assert len({tuple(px) for px in rgba[:3, sampled].T.tolist()}) > 50  # a colour ramp, not a flat image

    small = preview_png(omi_array, max_size=100)
    with MemoryFile(small) as mem, mem.open() as ds:
        assert max(ds.width, ds.height) <= 100


# -- the second collection, end to end -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_omto3d_granule_end_to_end(tmp_path, collections):
    config = collections["OMTO3d_003"]
    day = date(2015, 9, 15)
    path = tmp_path / granule_name("OMTO3d", day)
    expected = make_granule(path, config, day, seed=1)
    with h5py.File(path, "r") as h5:
        raw = h5["/HDFEOS/GRIDS/OMI Column Amount O3/Data Fields/ColumnAmountO3"][()]
        assert h5["/HDFEOS/GRIDS/OMI Column Amount O3"].attrs["GridSpacing"] == b"(1,1)"
    assert raw.shape == (180, 360)

    g = read_granule(path, config)
    assert g.data.shape == (180, 360) and g.time == datetime(2015, 9, 15, tzinfo=UTC)
    np.testing.assert_array_equal(g.data, expected)
    np.testing.assert_array_equal(g.valid_mask, np.flipud(raw) > FILL)
    row, col = rowcol(g.transform, 2.35, 48.85)  # Paris: file row 138 (48..49°N), column 182 (2..3°E)
    assert (row, col) == (41, 182) and g.data[row, col] == (raw[138, 182] if raw[138, 182] > FILL else np.float32(FILL))

    info = write_granule_cog(g, Storage(str(tmp_path / "store")), "OMTO3d_003/OMTO3d_2015-09-15.tif")
    with rasterio.open(info.uri) as ds:
        assert ds.transform == Affine(1, 0, -180, 0, -1, 90) and (ds.height, ds.width) == (180, 360)
        np.testing.assert_array_equal(ds.read(1), g.data)
    assert cog_validate(info.uri, quiet=True)[0]
    with MemoryFile(preview_png(g)) as mem, mem.open() as ds:
        assert (ds.height, ds.width) == (180, 360) and ds.count == 4


def test_wrong_collection_for_a_granule_is_reported(omi_granule, collections):
    with pytest.raises(GranuleError, match="variable /HDFEOS/GRIDS/OMI Column Amount O3/Data Fields/ColumnAmountO3"):
        read_granule(omi_granule[0], collections["OMTO3d_003"])


# -- the stand-in itself ---------------------------------------------------------------------------------------------
def test_standin_layout_speed_and_determinism(tmp_path, omi):
    path = tmp_path / NAME
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        first = make_granule(path, omi, DAY, seed=5)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.3, timings  # stand-ins make many granules; the best of 3 ignores a busy machine
    np.testing.assert_array_equal(first, make_granule(tmp_path / "again.he5", omi, DAY, seed=5))
    assert not np.array_equal(first, make_granule(tmp_path / "other.he5", omi, DAY, seed=6))
    with h5py.File(path, "r") as h5:
        grid = h5["/HDFEOS/GRIDS/ColumnAmountO3"]
        assert grid.attrs["GridSpacing"] == b"(0.25,0.25)"
        assert grid.attrs["NumberOfLongitudesInGrid"][0] == 1440 and grid.attrs["NumberOfLatitudesInGrid"][0] == 720
        ds = grid["Data Fields/ColumnAmountO3"]
        assert ds.dtype == np.float32 and ds.attrs["MissingValue"][0] == np.float32(FILL)
        assert ds.attrs["_FillValue"][0] == np.float32(FILL) and ds.fillvalue == np.float32(FILL)
        assert b'GridName="ColumnAmountO3"' in h5["HDFEOS INFORMATION/StructMetadata.0"][()]

    data = granule_bytes(omi, DAY, seed=5)
    assert data.startswith(b"\x89HDF\r\n\x1a\n")
    (tmp_path / "from_bytes" / NAME).parent.mkdir()
    (tmp_path / "from_bytes" / NAME).write_bytes(data)
    np.testing.assert_array_equal(read_granule(tmp_path / "from_bytes" / NAME, omi).data, first)
    assert len(granule_bytes(omi, DAY, kind="truncated")) == len(data) // 2
    with pytest.raises(ValueError, match="granule kind 'weird'"):
        granule_bytes(omi, DAY, kind="weird")
