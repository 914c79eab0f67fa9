"""Tests for pipeline.lib.storage on a local folder and on S3 (moto server)."""

import os

import pandas as pd
import pytest

from pipeline.lib.storage import Storage, UnsafePathError, safe_component


def test_roundtrip_list_delete(storage_url):
    st = Storage(storage_url)
    st.write_bytes("a/b/date=2026-01-01.txt", b"one")
    st.write_bytes("a/b/date=2026-01-02.txt", b"two")
    st.write_bytes("a/c.txt", b"three")
    assert st.read_bytes("a/b/date=2026-01-02.txt") == b"two"
    assert st.list("a/b") == ["a/b/date=2026-01-01.txt", "a/b/date=2026-01-02.txt"]
    assert st.list("a") == ["a/b/date=2026-01-01.txt", "a/b/date=2026-01-02.txt", "a/c.txt"]
    assert st.exists("a/c.txt") and not st.exists("a/nope.txt")
    st.delete("a/c.txt")
    assert not st.exists("a/c.txt")
    assert st.uri("a/c.txt").endswith("a/c.txt")
    if storage_url.startswith("s3://"):
        assert st.uri("x/y.parquet").startswith("s3://")


def test_parquet_and_geoparquet_roundtrip(storage_url):
    import geopandas as gpd
    from shapely.geometry import Point

    st = Storage(storage_url)
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    st.write_parquet("t/plain.parquet", df)
    back = st.read_parquet("t/plain.parquet")
    assert back.equals(df)
    gdf = gpd.GeoDataFrame({"id": ["p"]}, geometry=[Point(1, 2)], crs="EPSG:4326")
    st.write_parquet("t/geo.parquet", gdf)
    gback = st.read_parquet("t/geo.parquet")
    assert isinstance(gback, gpd.GeoDataFrame)
    assert gback.crs.to_epsg() == 4326 and gback.geometry[0].equals(Point(1, 2))


def test_failed_write_keeps_previous_file(local_storage_url):
    st = Storage(local_storage_url)
    st.write_parquet("t/x.parquet", pd.DataFrame({"a": [1]}))

    class Boom:
        columns = []

        def to_parquet(self, buf, **kw):
            buf.write(b"PAR1 partial")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        st.write_parquet("t/x.parquet", Boom())
    assert st.read_parquet("t/x.parquet")["a"].tolist() == [1]
    # no temp files left behind either
    assert os.listdir(os.path.join(local_storage_url, "t")) == ["x.parquet"]


@pytest.mark.parametrize("bad", ["../etc", "a/../../b", "/abs/..", "a\x00b", "a b", ".hidden", ""])
def test_unsafe_paths_rejected(bad, local_storage_url):
    with pytest.raises(UnsafePathError):
        Storage(local_storage_url).write_bytes(f"x/{bad}/f" if bad else "", b"")


def test_safe_component_names_the_input():
    with pytest.raises(UnsafePathError, match="partition key '../x'"):
        safe_component("../x", "partition key")
    assert safe_component("2026-01-01") == "2026-01-01"


def test_bad_url():
    with pytest.raises(ValueError, match="scheme 'ftp'"):
        Storage("ftp://x/y")
    with pytest.raises(ValueError, match="no bucket"):
        Storage("s3:///prefix")
