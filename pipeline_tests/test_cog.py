"""pipeline_tests.test_cog: COG writes validate, round-trip exactly, are atomic, and truncated downloads are caught."""

from __future__ import annotations

import hashlib
import math
import os
import tracemalloc

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from pipeline.lib import cog as C
from pipeline.lib.storage import Storage, UnsafePathError
from pipeline_tests.conftest import make_bucket

TRANSFORM = from_origin(20.0, 0.0, 10 / 1024, 10 / 1024)  # tile 00N_020E at 1024 px


def _data(shape=(1024, 1024), dtype=np.uint16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.where(rng.random(shape) < 0.4, rng.integers(20001, 32000, shape), 0)
    return a.astype(dtype)


def _all_files(root) -> list[str]:
    """Every file under root, hidden ones included (temp files must not survive)."""
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _window_fn(a: np.ndarray, calls: list | None = None, fail_at: int | None = None):
    def compute(w):
        if calls is not None:
            calls.append(w)
            if fail_at is not None and len(calls) == fail_at:
                raise RuntimeError("upstream read failed")
        return a[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]

    return compute


def test_write_cog_from_array_validates_and_round_trips(tmp_path):
    st = Storage(str(tmp_path / "store"))
    a = _data()
    info = C.write_cog_from_array(a, TRANSFORM, "EPSG:4326", 0, st, "tcl/v1/00N_020E.tif", tags={"version": "v1"})
    path = tmp_path / "store" / "tcl" / "v1" / "00N_020E.tif"
    assert info.uri == str(path)
    assert cog_validate(str(path), quiet=True)[0] is True
    raw = path.read_bytes()
    assert info.size_bytes == len(raw) and info.sha256 == hashlib.sha256(raw).hexdigest()
    assert (info.width, info.height, info.dtype, info.nodata, info.valid) == (1024, 1024, "uint16", 0, True)
    assert info.overviews == [2]
    with rasterio.open(path) as ds:
        assert np.array_equal(ds.read(1), a)
        assert ds.transform == TRANSFORM and ds.crs.to_epsg() == 4326 and ds.nodata == 0
        assert ds.compression.value == "DEFLATE" and ds.block_shapes == [(512, 512)]
        assert ds.overviews(1) == [2] and ds.tags()["version"] == "v1"
    # No temp files are left next to the output.
    assert _all_files(tmp_path / "store") == ["tcl/v1/00N_020E.tif"]


def test_overviews_are_nearest_not_averaged(tmp_path):
    a = np.random.default_rng(1).integers(1, 250, (1024, 1024), dtype=np.uint8)
    info = C.write_cog_from_array(a, TRANSFORM, "EPSG:4326", 0, Storage(str(tmp_path)), "n.tif")
    with rasterio.open(info.uri, overview_level=0) as ov:
        o = ov.read(1).astype(int)
    assert o.shape == (512, 512)
    # Each overview pixel must be one of the four source pixels it summarises; an average would not be.
    blocks = a.reshape(512, 2, 512, 2).transpose(0, 2, 1, 3).reshape(512, 512, 4).astype(int)
    assert (blocks == o[..., None]).any(axis=2).all()


def test_options_override_defaults(tmp_path):
    opts = C.cog_options({"compress": "LZW", "NUM_THREADS": 1})
    assert opts["COMPRESS"] == "LZW" and opts["NUM_THREADS"] == 1 and opts["BLOCKSIZE"] == 512
    assert C.COG_OPTIONS["COMPRESS"] == "DEFLATE"  # the defaults are not mutated
    a = _data((400, 400), np.uint8)
    info = C.write_cog_from_array(
        a, TRANSFORM, "EPSG:4326", 0, Storage(str(tmp_path)), "o.tif", options={"compress": "LZW", "BLOCKSIZE": 128}
    )
    with rasterio.open(info.uri) as ds:
        assert ds.compression.value == "LZW" and ds.block_shapes == [(128, 128)]
        assert np.array_equal(ds.read(1), a)
    assert info.overviews == [2, 4]
    with pytest.raises(ValueError, match="driver must be 'COG'"):
        C.cog_options({"driver": "GTiff"})


def test_windowed_equals_array_output(tmp_path):
    st = Storage(str(tmp_path))
    a = _data((700, 1000))  # not a multiple of the block: edge windows are partial
    calls: list = []
    win = C.write_cog_windowed(
        st,
        "w.tif",
        width=1000,
        height=700,
        transform=TRANSFORM,
        crs="EPSG:4326",
        dtype="uint16",
        nodata=0,
        compute_window=_window_fn(a, calls),
        block=256,
        tags={"k": "v"},
    )
    arr = C.write_cog_from_array(a, TRANSFORM, "EPSG:4326", 0, st, "a.tif")
    assert len(calls) == math.ceil(1000 / 256) * math.ceil(700 / 256) == 12
    assert sum(w.width * w.height for w in calls) == 700 * 1000
    assert cog_validate(win.uri, quiet=True)[0] is True
    assert (win.width, win.height, win.dtype, win.nodata, win.overviews) == (
        arr.width,
        arr.height,
        arr.dtype,
        arr.nodata,
        arr.overviews,
    )
    with rasterio.open(win.uri) as w, rasterio.open(arr.uri) as r:
        assert np.array_equal(w.read(1), a) and np.array_equal(r.read(1), a)
        assert w.transform == r.transform and w.tags()["k"] == "v"


def _gdal_cog(tmp_path, a: np.ndarray, nodata, options: dict) -> str:
    """Oracle: the array as a plain GTiff, converted by GDAL's COG driver, which builds its own overviews."""
    src, out = tmp_path / "oracle_src.tif", tmp_path / "oracle_cog.tif"
    profile = {"driver": "GTiff", "count": a.shape[0], "height": a.shape[1], "width": a.shape[2]}
    profile.update(dtype=a.dtype, crs="EPSG:4326", transform=TRANSFORM, nodata=nodata)
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(a)
    rasterio.shutil.copy(str(src), str(out), **C.cog_options(options))
    return str(out)


def _levels(path: str) -> list[np.ndarray]:
    with rasterio.open(path) as ds:
        n = len(ds.overviews(1))
    out = []
    for k in range(n):
        with rasterio.open(path, overview_level=k) as ov:
            out.append(ov.read())
    return out


@pytest.mark.parametrize(
    "shape, dtype, nodata, block",
    [
        ((1, 1100, 1300), "uint8", 255, 256),  # even halvings down to <= 256
        ((2, 1537, 1029), "uint16", 0, 512),  # odd sizes: ratios are not exactly 2
        ((1, 300, 2100), "float32", float("nan"), 128),  # one side already small, NaN nodata
    ],
)
@pytest.mark.parametrize("writer", ["windowed", "array"])
def test_own_overviews_equal_gdal_drivers(tmp_path, shape, dtype, nodata, block, writer):
    """geopump makes the NEAREST overviews itself (windowed: while windows stream by; array: from the array in
    memory); every level must equal what GDAL's COG driver builds on its own."""
    rng = np.random.default_rng(7)
    a = rng.integers(0, 250, shape).astype(dtype)
    if np.issubdtype(a.dtype, np.floating):
        a[:, ::7, ::5] = np.nan
    options = {"BLOCKSIZE": 256}
    count, height, width = shape
    assert len(C.own_overview_levels(width, height, C.cog_options(options))) >= 2
    tags = {"source": "test <&>"}
    if writer == "array":
        info = C.write_cog_from_array(
            a, TRANSFORM, "EPSG:4326", nodata, Storage(str(tmp_path)), "own.tif", options=options, tags=tags
        )
    else:
        info = C.write_cog_windowed(
            Storage(str(tmp_path)),
            "own.tif",
            width=width,
            height=height,
            transform=TRANSFORM,
            crs="EPSG:4326",
            dtype=dtype,
            nodata=nodata,
            count=count,
            compute_window=lambda w: a[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width],
            block=block,
            options=options,
            tags=tags,
        )
    oracle = _gdal_cog(tmp_path, a, nodata, options)
    assert cog_validate(info.uri, quiet=True)[0] is True
    mine, theirs = _levels(info.uri), _levels(oracle)
    assert [m.shape for m in mine] == [t.shape for t in theirs] and len(mine) >= 2
    for k, (m, t) in enumerate(zip(mine, theirs, strict=True)):
        assert np.array_equal(m, t, equal_nan=True), f"overview level {k} differs from GDAL's"
    with rasterio.open(info.uri) as ds, rasterio.open(oracle) as ref:
        assert np.array_equal(ds.read(), a, equal_nan=True)
        assert (ds.crs, ds.transform, ds.colorinterp, ds.dtypes) == (
            ref.crs,
            ref.transform,
            ref.colorinterp,
            ref.dtypes,
        )
        assert ds.nodata == ref.nodata or (np.isnan(ds.nodata) and np.isnan(ref.nodata))
        assert ds.tags()["source"] == "test <&>" and ds.tags()["AREA_OR_POINT"] == ref.tags()["AREA_OR_POINT"]
    assert _all_files(tmp_path) == sorted(["own.tif", "oracle_src.tif", "oracle_cog.tif"])  # no scratch left


def test_other_overview_settings_leave_overviews_to_gdal(tmp_path):
    a = _data((600, 900), dtype=np.uint16)[None]
    options = {"BLOCKSIZE": 128, "OVERVIEW_RESAMPLING": "AVERAGE"}
    assert C.own_overview_levels(900, 600, C.cog_options(options)) == []
    assert C.own_overview_levels(900, 600, C.cog_options({"OVERVIEW_COUNT": 1})) == []
    info = C.write_cog_windowed(
        Storage(str(tmp_path)),
        "avg.tif",
        width=900,
        height=600,
        transform=TRANSFORM,
        crs="EPSG:4326",
        dtype="uint16",
        nodata=0,
        compute_window=_window_fn(a[0]),
        block=256,
        options=options,
    )
    mine, theirs = _levels(info.uri), _levels(_gdal_cog(tmp_path, a, 0, options))
    assert len(mine) == len(theirs) >= 2
    assert all(np.array_equal(m, t) for m, t in zip(mine, theirs, strict=True))


def test_windowed_memory_is_bounded_by_the_window(tmp_path):
    """Python-side allocations stay near one window, far below the full raster (2048² uint16 = 8 MiB)."""
    size, block = 2048, 256
    full_bytes = size * size * 2

    def compute(w):
        return np.full((w.height, w.width), 20000 + (w.row_off // block), dtype=np.uint16)

    tracemalloc.start()
    try:
        info = C.write_cog_windowed(
            Storage(str(tmp_path)),
            "big.tif",
            width=size,
            height=size,
            transform=from_origin(20, 0, 10 / size, 10 / size),
            crs="EPSG:4326",
            dtype="uint16",
            nodata=0,
            compute_window=compute,
            block=block,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < full_bytes / 8, peak
    with rasterio.open(info.uri) as ds:
        assert ds.read(1, window=((1800, 1801), (0, 1))).item() == 20000 + 1800 // block


def test_failure_mid_way_leaves_previous_file_intact(tmp_path):
    root = tmp_path / "store"
    st = Storage(str(root))
    old = C.write_cog_from_array(_data(seed=1), TRANSFORM, "EPSG:4326", 0, st, "p/t.tif")
    before = (root / "p" / "t.tif").read_bytes()
    calls: list = []
    with pytest.raises(RuntimeError, match="upstream read failed") as err:
        C.write_cog_windowed(
            st,
            "p/t.tif",
            width=1024,
            height=1024,
            transform=TRANSFORM,
            crs="EPSG:4326",
            dtype="uint16",
            nodata=0,
            compute_window=_window_fn(_data(seed=2), calls, fail_at=3),
            block=256,
        )
    assert len(calls) == 3
    assert any("p/t.tif" in note for note in getattr(err.value, "__notes__", []))
    assert (root / "p" / "t.tif").read_bytes() == before
    assert hashlib.sha256(before).hexdigest() == old.sha256
    assert _all_files(root) == ["p/t.tif"]


def test_bad_window_shape_or_range_fails_cleanly(tmp_path):
    st = Storage(str(tmp_path))
    kwargs = dict(width=64, height=64, transform=TRANSFORM, crs="EPSG:4326", dtype="uint8", nodata=255, block=32)
    with pytest.raises(ValueError, match=r"COG x.tif: window .* returned shape \(31, 32\), expected \(1, 32, 32\)"):
        C.write_cog_windowed(st, "x.tif", compute_window=lambda w: np.zeros((31, 32), np.uint8), **kwargs)

    def too_big(w):
        out = np.zeros((w.height, w.width), np.int64)
        out[0, 0] = 300
        return out

    with pytest.raises(ValueError, match=r"window .* has values 0..300 \(int64\) that do not fit uint8"):
        C.write_cog_windowed(st, "x.tif", compute_window=too_big, **kwargs)
    # Wider integer windows whose values fit are accepted.
    info = C.write_cog_windowed(
        st, "x.tif", compute_window=lambda w: np.full((w.height, w.width), 7, np.int64), **kwargs
    )
    with rasterio.open(info.uri) as ds:
        assert (ds.read(1) == 7).all() and ds.dtypes[0] == "uint8"
    with pytest.raises(ValueError, match="block 40 must be a multiple of 16"):
        C.write_cog_windowed(st, "x.tif", compute_window=lambda w: None, **{**kwargs, "block": 40})
    with pytest.raises(ValueError, match=r"nodata 300 does not fit dtype uint8 \(0..255\)"):
        C.write_cog_windowed(st, "x.tif", compute_window=lambda w: None, **{**kwargs, "nodata": 300})
    with pytest.raises(UnsafePathError):
        C.write_cog_from_array(np.zeros((4, 4), np.uint8), TRANSFORM, "EPSG:4326", 0, st, "../escape.tif")


def test_invalid_cog_raises_and_publishes_nothing(tmp_path, monkeypatch):
    root = tmp_path / "store"
    st = Storage(str(root))
    C.write_cog_from_array(_data(seed=1), TRANSFORM, "EPSG:4326", 0, st, "v.tif")
    before = (root / "v.tif").read_bytes()
    import rio_cogeo.cogeo

    monkeypatch.setattr(rio_cogeo.cogeo, "cog_validate", lambda *a, **k: (False, ["broken IFD order"], []))
    with pytest.raises(C.CogValidationError, match="COG for v.tif is not valid: broken IFD order"):
        C.write_cog_from_array(_data(seed=2), TRANSFORM, "EPSG:4326", 0, st, "v.tif")
    assert (root / "v.tif").read_bytes() == before
    assert _all_files(root) == ["v.tif"]


def test_tmp_dir_is_cleaned(tmp_path):
    scratch = tmp_path / "scratch"
    info = C.write_cog_from_array(
        _data((400, 400)), TRANSFORM, "EPSG:4326", 0, Storage(str(tmp_path / "s")), "t.tif", tmp_dir=scratch
    )
    assert os.path.exists(info.uri) and _all_files(scratch) == []


# -- check_raster -------------------------------------------------------------------------------------


def _gtiff(path, a, **kw):
    profile = dict(driver="GTiff", width=a.shape[1], height=a.shape[0], count=1, dtype=a.dtype, crs="EPSG:4326")
    with rasterio.open(path, "w", transform=from_origin(20, 0, 0.025, 0.025), **profile, **kw) as ds:
        ds.write(a, 1)


@pytest.mark.parametrize(
    "layout", [{}, {"compress": "lzw"}, {"tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "deflate"}]
)
def test_check_raster_detects_truncation(tmp_path, layout):
    a = np.random.default_rng(2).integers(0, 25, (400, 400), dtype=np.uint8)
    good = tmp_path / "good.tif"
    _gtiff(good, a, **layout)
    props = C.check_raster(good, "00N_020E lossyear", expected={"width": 400, "dtype": "uint8", "crs": "EPSG:4326"})
    assert (props["width"], props["height"], props["count"], props["dtype"]) == (400, 400, 1, "uint8")
    raw = good.read_bytes()
    for frac in (0.5, 0.95):
        bad = tmp_path / "bad.tif"
        bad.write_bytes(raw[: int(len(raw) * frac)])
        with pytest.raises(C.CorruptRasterError, match=r"^tile 00N_020E lossyear: .*bad.tif is truncated or corrupt"):
            C.check_raster(bad, "00N_020E lossyear")


def test_check_raster_rejects_garbage_and_unexpected_shape(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"<html>503 Service Unavailable</html>")
    with pytest.raises(C.CorruptRasterError, match=r"^tile 10N_010E alert21: .*junk.tif cannot be opened"):
        C.check_raster(junk, "10N_010E alert21")
    ok = tmp_path / "ok.tif"
    _gtiff(ok, np.zeros((40, 40), np.uint8))
    with pytest.raises(C.CorruptRasterError, match=r"tile 10N_010E alert21: .* has width 40, expected 400"):
        C.check_raster(ok, "10N_010E alert21", expected={"width": 400})


# -- S3 -----------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_write_to_s3_through_storage(moto_s3, tmp_path, monkeypatch):
    st = Storage(f"s3://{make_bucket(moto_s3)}/geopump")
    a = _data((400, 400))
    info = C.write_cog_from_array(a, TRANSFORM, "EPSG:4326", 0, st, "radd/v1/00N_020E.tif")
    assert info.uri == st.uri("radd/v1/00N_020E.tif") and info.uri.startswith("s3://")
    body = st.read_bytes("radd/v1/00N_020E.tif")
    assert hashlib.sha256(body).hexdigest() == info.sha256 and len(body) == info.size_bytes
    local = tmp_path / "copy.tif"
    local.write_bytes(body)
    assert cog_validate(str(local), quiet=True)[0] is True
    with rasterio.open(local) as ds:
        assert np.array_equal(ds.read(1), a)
    # Big files go multipart from disk; the object must be byte-identical too.
    monkeypatch.setattr(C, "S3_MULTIPART_THRESHOLD", 5 * 1024**2)
    big = np.random.default_rng(4).integers(0, 65535, (2048, 2048), dtype=np.uint16)  # incompressible, ~8 MB
    info = C.write_cog_from_array(big, TRANSFORM, "EPSG:4326", 0, st, "radd/v1/big.tif", tmp_dir=tmp_path / "s")
    assert info.size_bytes > 5 * 1024**2
    assert hashlib.sha256(st.read_bytes("radd/v1/big.tif")).hexdigest() == info.sha256
    assert st.list("radd") == ["radd/v1/00N_020E.tif", "radd/v1/big.tif"]
