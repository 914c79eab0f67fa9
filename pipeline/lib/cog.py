"""pipeline.lib.cog: write Cloud Optimized GeoTIFFs safely (validated, atomic) and check downloaded rasters.

COGs are made with GDAL's COG driver through `rasterio.shutil.copy` (performance.md §2.5/§2.7: within ~1.3x of the
DEFLATE floor; rio-cogeo's own writer is 1.6-2.4x slower, so it is used only to validate). Every write goes
source (a small array in GDAL's in-memory filesystem, else a scratch GTiff; with GDAL's own NEAREST overview
pixels made by geopump, see `own_overview_levels`) -> temporary COG -> `cog_validate` ->
storage, so a failure at any step leaves the previous file at the destination untouched. Local destinations get
the finished file by `os.replace` (no copy through memory); S3 gets it by one PutObject, or a multipart upload for
big files, both of which publish the object only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.dtypes
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from pipeline.lib.storage import Storage, safe_relpath

# GDAL COG driver creation options (performance.md §2.5: DEFLATE, 512 blocks, NEAREST overviews).
COG_OPTIONS: dict[str, str | int] = {
    "driver": "COG",
    "COMPRESS": "DEFLATE",
    "BLOCKSIZE": 512,
    "OVERVIEWS": "AUTO",
    "OVERVIEW_RESAMPLING": "NEAREST",
    "NUM_THREADS": "ALL_CPUS",
    "BIGTIFF": "IF_SAFER",
}
# The intermediate GTiff of windowed writes is uncompressed when that is safe: compressing it and decoding it
# twice more in the COG driver cost ~12% of a 20000² uint8 tile at 1 thread (bench/cog.py). Rasters above
# SCRATCH_RAW_MAX_BYTES (a 100000² uint16 tile would need 20 GB) or above 1/SCRATCH_RAW_FREE_DIVISOR of the free
# space in the scratch folder (room for several concurrent writers) get ZSTD level 1 instead.
_SCRATCH_OPTIONS = {"COMPRESS": "ZSTD", "ZSTD_LEVEL": 1, "BIGTIFF": "IF_SAFER"}
_SCRATCH_RAW_OPTIONS = {"COMPRESS": "NONE", "BIGTIFF": "IF_SAFER"}
SCRATCH_RAW_MAX_BYTES = 4 * 1024**3
SCRATCH_RAW_FREE_DIVISOR = 8
# `write_cog_from_array` hands arrays up to this size to the COG driver from memory (one copy of the array in
# GDAL's in-memory filesystem with its own overviews, or a MEM dataset; no scratch file to compress, write and
# decode twice: ~15% of the time of a 720x1440 granule); bigger arrays go through the scratch GTiff, so the copy
# never doubles the memory of a big raster.
MEM_SOURCE_MAX_BYTES = 256 * 1024**2
# Above this size an S3 upload goes multipart from the file instead of reading the COG into memory.
S3_MULTIPART_THRESHOLD = 256 * 1024**2
_COPY_CHUNK = 1024**2
# GDAL's block cache defaults to 5% of RAM (1.2 GB on a 24 GB worker) per process; parallel tile workers do not need
# that much to stream tiles, so it is capped unless GDAL_CACHEMAX is set in the environment.
GDAL_CACHE_MB = 256


class CogValidationError(RuntimeError):
    """The COG GDAL produced does not pass `rio_cogeo.cogeo.cog_validate`."""


class CorruptRasterError(RuntimeError):
    """A raster cannot be opened or one of its blocks cannot be read (truncated or damaged download)."""


@dataclass
class CogInfo:
    """What was written: where, its shape and encoding, size, validity, overview factors and content hash."""

    uri: str
    width: int
    height: int
    dtype: str
    nodata: float | int | None
    size_bytes: int
    valid: bool
    overviews: list[int] = field(default_factory=list)
    sha256: str = ""


def cog_options(options: dict | None = None) -> dict:
    """`COG_OPTIONS` with `options` laid over it (keys case-insensitive except `driver`; a None value drops a key)."""
    merged = {k.upper() if k != "driver" else k: v for k, v in COG_OPTIONS.items()}
    for k, v in (options or {}).items():
        key = k if k == "driver" else k.upper()
        if v is None:
            merged.pop(key, None)
        else:
            merged[key] = v
    if merged.get("driver") != "COG":
        raise ValueError(f"COG options: driver must be 'COG', got {merged.get('driver')!r}")
    return merged


# -- publishing -------------------------------------------------------------------------------------


def _s3_location(dest: Storage, relpath: str) -> tuple[str, str]:
    bucket, _, key = dest.uri(relpath)[len("s3://") :].partition("/")
    return bucket, key


def _scratch_dir(dest: Storage, relpath: str, tmp_dir: str | os.PathLike | None) -> Path:
    """Where temporary files go: `tmp_dir`, else next to a local target (so the final move is a rename), else the
    system temp dir."""
    if tmp_dir is not None:
        path = Path(tmp_dir)
    elif dest.kind == "local":
        path = Path(dest.uri(relpath)).parent
    else:
        path = Path(tempfile.gettempdir())
    path.mkdir(parents=True, exist_ok=True)
    return path


def _scratch_options(raw_bytes: int, directory: Path) -> dict:
    """Creation options of a scratch GTiff holding `raw_bytes` of pixels in `directory` (see `_SCRATCH_OPTIONS`)."""
    if raw_bytes <= SCRATCH_RAW_MAX_BYTES:
        with contextlib.suppress(OSError):
            if raw_bytes * SCRATCH_RAW_FREE_DIVISOR <= shutil.disk_usage(directory).free:
                return _SCRATCH_RAW_OPTIONS
    return _SCRATCH_OPTIONS


@contextlib.contextmanager
def _temp_paths(directory: Path, relpath: str, *suffixes: str) -> Iterator[list[Path]]:
    """Reserve hidden temp file names (a leading dot keeps them out of `Storage.list`); remove them afterwards,
    together with any side files GDAL created next to them (`.ovr.tmp`, `.aux.xml`)."""
    stem = safe_relpath(relpath).rsplit("/", 1)[-1][:100]  # keeps the temp name under the 255-byte limit
    token = tempfile.mkdtemp(prefix=f".{stem}.", suffix=".tmp", dir=directory)  # unique, and cleaned below
    paths = [Path(token) / f".part{suffix}" for suffix in suffixes]
    try:
        yield paths
    finally:
        shutil.rmtree(token, ignore_errors=True)


def publish_file(dest: Storage, relpath: str, path: str | os.PathLike) -> str:
    """Put a finished local file at `relpath` in `dest` atomically and return its URI.

    Local storage: `os.replace` when `path` is on the target's filesystem (the file is moved, not copied),
    otherwise a copy to a hidden temp file in the target folder, fsync, then `os.replace`. S3: `Storage.write_bytes`
    (one PutObject), or a multipart upload above `S3_MULTIPART_THRESHOLD`; S3 shows the new object only once the
    upload completes, so readers see the old or the new file, never a part.
    """
    path = Path(path)
    if dest.kind == "s3":
        if path.stat().st_size <= S3_MULTIPART_THRESHOLD:
            return dest.write_bytes(relpath, path.read_bytes())
        from boto3.s3.transfer import TransferConfig

        bucket, key = _s3_location(dest, relpath)
        dest.s3.upload_file(str(path), bucket, key, Config=TransferConfig(multipart_threshold=S3_MULTIPART_THRESHOLD))
        return dest.uri(relpath)
    target = Path(dest.uri(relpath))
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(path).st_dev == os.stat(target.parent).st_dev:
        os.replace(path, target)
        _fsync_dir(target.parent)
        return str(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    return str(target)


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; some filesystems do not allow opening a directory, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()  # streams through a small reused buffer


def _finish(source, cog_path: Path, dest: Storage, relpath: str, options: dict) -> CogInfo:
    """Convert the source (a raster path, an open dataset or a VRT's XML text) to a COG, validate it, describe it
    and publish it."""
    from rio_cogeo.cogeo import cog_validate

    rasterio.shutil.copy(str(source) if isinstance(source, str | os.PathLike) else source, str(cog_path), **options)
    valid, errors, _warnings = cog_validate(str(cog_path), quiet=True)
    if not valid:
        raise CogValidationError(f"COG for {relpath} is not valid: {'; '.join(errors) or 'no reason given'}")
    with rasterio.open(cog_path) as ds:
        width, height, dtype, nodata = ds.width, ds.height, ds.dtypes[0], ds.nodata
        overviews = ds.overviews(1)
    size, digest = cog_path.stat().st_size, _sha256(cog_path)
    if nodata is not None and float(nodata).is_integer():
        nodata = int(nodata)  # JSON metadata shows 0, not 0.0, for integer rasters
    uri = publish_file(dest, relpath, cog_path)
    return CogInfo(uri, width, height, dtype, nodata, size, True, list(overviews), digest)


def _gdal_env():
    if "GDAL_CACHEMAX" in os.environ:
        return contextlib.nullcontext()
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)


def _check_nodata(dtype: np.dtype, nodata, what: str) -> None:
    if nodata is None:
        return
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not (float(nodata).is_integer() and info.min <= nodata <= info.max):
            raise ValueError(f"{what}: nodata {nodata!r} does not fit dtype {dtype} ({info.min}..{info.max})")


# -- writers ----------------------------------------------------------------------------------------


def write_cog_from_array(
    array: np.ndarray,
    transform,
    crs,
    nodata,
    dest: Storage,
    relpath: str,
    *,
    tmp_dir: str | os.PathLike | None = None,
    options: dict | None = None,
    tags: dict | None = None,
) -> CogInfo:
    """Write an in-memory raster to `relpath` in `dest` as a validated COG, atomically.

    Args:
        array: (rows, cols) or (bands, rows, cols) numeric array; its dtype is the file's dtype.
        transform: affine transform of the array; crs: anything rasterio accepts (`"EPSG:4326"`).
        nodata: nodata value (must fit the dtype) or None.
        dest: target storage; relpath: path within it (safe components only).
        tmp_dir: scratch folder; default next to a local target, else the system temp dir.
        options: overrides of `COG_OPTIONS` (e.g. `{"NUM_THREADS": 2}`); tags: GeoTIFF metadata tags.

    Returns:
        The `CogInfo` of the published file.

    Raises:
        ValueError: bad array shape, nodata not fitting the dtype, or bad options.
        CogValidationError: the COG did not validate; nothing was published.
    """
    safe_relpath(relpath)
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"COG {relpath}: array must be 2-D (rows, cols) or 3-D (bands, rows, cols), got {arr.shape}")
    _check_nodata(arr.dtype, nodata, f"COG {relpath}")
    opts = cog_options(options)
    scratch = _scratch_dir(dest, relpath, tmp_dir)
    with _gdal_env(), _temp_paths(scratch, relpath, ".src.tif", ".cog.tif") as (src, cog):
        profile = {
            "width": arr.shape[2],
            "height": arr.shape[1],
            "count": arr.shape[0],
            "dtype": arr.dtype,
            "crs": crs,
            "transform": transform,
            "nodata": nodata,
        }
        in_memory = arr.nbytes <= MEM_SOURCE_MAX_BYTES
        levels = own_overview_levels(arr.shape[2], arr.shape[1], opts) if in_memory else []
        if levels:
            return _finish_with_own_overviews(arr, profile, tags, levels, cog, dest, relpath, opts)
        if in_memory:
            profile["driver"] = "MEM"
        else:
            profile.update(driver="GTiff", tiled=True, blockxsize=512, blockysize=512)
            profile.update(_scratch_options(arr.nbytes, scratch))
        with rasterio.open("" if in_memory else src, "w", **profile) as ds:
            ds.write(arr)
            if tags:
                ds.update_tags(**{k: str(v) for k, v in tags.items()})
            if in_memory:
                return _finish(ds, cog, dest, relpath, opts)
        return _finish(src, cog, dest, relpath, opts)


def iter_windows(width: int, height: int, block: int) -> Iterator[Window]:
    """Row-major `block` x `block` windows covering a width x height raster (edge windows are smaller)."""
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def write_cog_windowed(
    dest: Storage,
    relpath: str,
    *,
    width: int,
    height: int,
    transform,
    crs,
    dtype,
    nodata,
    compute_window: Callable[[Window], np.ndarray],
    block: int = 2048,
    count: int = 1,
    tmp_dir: str | os.PathLike | None = None,
    options: dict | None = None,
    tags: dict | None = None,
) -> CogInfo:
    """Write a raster computed window by window as a validated COG, atomically, in memory bounded by the window.

    `compute_window(window)` is called once per `block` x `block` window in row-major order and must return an array
    of shape (rows, cols) (or (count, rows, cols)) matching the window. Windows are written to a tiled scratch GTiff
    (uncompressed up to `SCRATCH_RAW_MAX_BYTES` and 1/8 of the free disk there, else ZSTD level 1), which GDAL's COG
    driver then converts; memory therefore scales with `block`, never with the tile (a 40000² tile at block 2048
    holds ~4 Mpx at a time, plus GDAL's block cache). With the default NEAREST overviews, each window also fills
    its pixels of every overview level (scratch files of their own, tied to the scratch GTiff by a VRT), exactly
    as GDAL would pick them (`own_overview_levels`), so the COG driver copies them instead of reading the whole
    raster once more to build them: on a 20000² tile the whole write takes 0.81-0.88x the time of GDAL's COG driver
    converting the finished file (bench/cog.py).

    Args:
        dest, relpath: where the COG goes. width, height, transform, crs, dtype, nodata, count: the raster.
        compute_window: window -> array (cast to `dtype` if every value fits it, else an error).
        block: window size in pixels, a positive multiple of 16 (GTiff tile sizes are multiples of 16).
        tmp_dir, options, tags: as in `write_cog_from_array`.

    Returns:
        The `CogInfo` of the published file.

    Raises:
        ValueError: bad sizes, nodata not fitting `dtype`, or a window array of the wrong shape or range.
        CogValidationError: the COG did not validate.
        Any exception of `compute_window` (with the window noted). In every case nothing is published and the
        previous file at `relpath` is left as it was.
    """
    safe_relpath(relpath)
    for name, value in (("width", width), ("height", height), ("count", count), ("block", block)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
            raise ValueError(f"COG {relpath}: {name} {value!r} must be a positive integer")
    if block % 16:
        raise ValueError(f"COG {relpath}: block {block} must be a multiple of 16")
    dt = np.dtype(dtype)
    _check_nodata(dt, nodata, f"COG {relpath}")
    opts = cog_options(options)
    # Scratch tiles divide the window size, so every window write covers whole tiles (no re-compression).
    tile = math.gcd(block, 512)
    scratch = _scratch_dir(dest, relpath, tmp_dir)
    levels = own_overview_levels(width, height, opts)
    ovr_suffixes = [f".ovr{k}.tif" for k in range(len(levels))]
    with _gdal_env(), _temp_paths(scratch, relpath, ".src.tif", ".cog.tif", ".src.vrt", *ovr_suffixes) as paths:
        src, cog, vrt, ovr_paths = paths[0], paths[1], paths[2], paths[3:]
        profile = {
            "driver": "GTiff",
            "count": count,
            "dtype": dt,
            "crs": crs,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": tile,
            "blockysize": tile,
            "NUM_THREADS": opts.get("NUM_THREADS", "ALL_CPUS"),
            # Own overviews add at most a third to the full-resolution pixels.
            **_scratch_options(width * height * count * dt.itemsize * 4 // 3, scratch),
        }
        with contextlib.ExitStack() as stack:
            ds = stack.enter_context(
                rasterio.open(src, "w", width=width, height=height, transform=transform, **profile)
            )
            pyramid = _OverviewPyramid(width, height, transform, levels, ovr_paths, profile, stack)
            # The scratch write of one window overlaps the computation of the next (rasterio drops the GIL
            # while GDAL writes). compute_window stays on the calling thread, so the caller's rasterio.Env
            # and dataset handles apply as before; at most two windows are held at a time.
            writer = stack.enter_context(ThreadPoolExecutor(1, "cog-scratch"))
            pending = None
            for window in iter_windows(width, height, block):
                try:
                    data = compute_window(window)
                except Exception as exc:
                    exc.add_note(f"while computing window {window} of COG {relpath}")
                    raise
                arr = _window_array(data, window, count, dt, relpath)
                if pending is not None:
                    pending.result()
                pending = writer.submit(_write_window, ds, pyramid, arr, window)
            if pending is not None:
                pending.result()
            if tags:
                ds.update_tags(**{k: str(v) for k, v in tags.items()})
        source = _write_vrt(vrt, src, ovr_paths) if levels else src
        return _finish(source, cog, dest, relpath, opts)


def _write_window(ds, pyramid: _OverviewPyramid, arr: np.ndarray, window: Window) -> None:
    ds.write(arr, window=window)
    pyramid.write(arr, window)


def own_overview_levels(width: int, height: int, opts: dict) -> list[tuple[int, int]]:
    """(width, height) of each overview GDAL's COG driver would make with `opts`, when geopump can make the same
    pixels itself (from the array, or while the windows stream by); [] when it cannot (other resampling or
    overview settings), and the driver then builds them from its source.

    The driver (OVERVIEWS=AUTO, no OVERVIEW_COUNT) halves both sides, rounding down, until neither exceeds
    BLOCKSIZE, and fills each level from the previous one by NEAREST sampling `_nearest_index`. Both rules were
    checked pixel for pixel against GDAL 3.10 on even, odd and non-square sizes (pipeline_tests/test_cog.py).
    """
    if str(opts.get("OVERVIEWS", "AUTO")).upper() != "AUTO" or "OVERVIEW_COUNT" in opts:
        return []
    if str(opts.get("OVERVIEW_RESAMPLING", "")).upper() != "NEAREST":
        return []
    try:
        limit = int(opts.get("BLOCKSIZE", 512))
    except (TypeError, ValueError):
        return []
    out = []
    while width > limit or height > limit:
        width, height = max(1, width // 2), max(1, height // 2)
        out.append((width, height))
    return out


def _nearest_index(n_src: int, n_dst: int) -> np.ndarray:
    """Source index of each destination pixel in GDAL's NEAREST downsampling (`GDALResampleChunk_Near`):
    int(0.5 + i * n_src / n_dst), in the same double arithmetic."""
    return (0.5 + np.arange(n_dst, dtype=np.float64) * (n_src / n_dst)).astype(np.int64)


def _level_indices(width: int, height: int, levels: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each overview level, the full-resolution row and column of each of its pixels: the composition of the
    per-level NEAREST picks (`_nearest_index`)."""
    out = []
    rows, cols, prev_w, prev_h = np.arange(height), np.arange(width), width, height
    for w, h in levels:
        rows, cols = rows[_nearest_index(prev_h, h)], cols[_nearest_index(prev_w, w)]
        out.append((rows, cols))
        prev_w, prev_h = w, h
    return out


def _overview_transform(transform, width: int, height: int, w: int, h: int):
    return None if transform is None else Affine(*tuple(transform)[:6]) @ Affine.scale(width / w, height / h)


class _OverviewPyramid:
    """Overview levels filled window by window: level k's pixel (i, j) is the full-resolution pixel
    (rows[k][i], cols[k][j]), so every window hands each level exactly the pixels that come from it."""

    def __init__(self, width, height, transform, levels, paths, profile, stack: contextlib.ExitStack) -> None:
        self.indices = _level_indices(width, height, levels)
        self.datasets = [
            stack.enter_context(
                rasterio.open(
                    path, "w", width=w, height=h, transform=_overview_transform(transform, width, height, w, h),
                    **profile,
                )
            )
            for (w, h), path in zip(levels, paths, strict=True)
        ]  # fmt: skip

    def write(self, arr: np.ndarray, window: Window) -> None:
        r0, c0 = int(window.row_off), int(window.col_off)
        r1, c1 = r0 + int(window.height), c0 + int(window.width)
        for (rows, cols), ds in zip(self.indices, self.datasets, strict=True):
            i0, i1 = np.searchsorted(rows, (r0, r1))
            j0, j1 = np.searchsorted(cols, (c0, c1))
            if i1 > i0 and j1 > j0:
                sub = arr[:, rows[i0:i1, None] - r0, cols[None, j0:j1] - c0]
                ds.write(sub, window=Window(int(j0), int(i0), int(j1 - j0), int(i1 - i0)))


def _vrt_xml(base: str | Path, overviews: list, *, relative: bool) -> str:
    """A VRT of the `base` GTiff that lists the `overviews` files as its overviews, so that GDAL's COG driver
    (OVERVIEWS=AUTO) copies them instead of reading the whole raster again to build its own. With `relative`,
    files are named relative to the VRT (which then lives next to them); else by their full path."""
    from xml.sax.saxutils import escape, quoteattr

    with rasterio.open(base) as ds:
        width, height, count = ds.width, ds.height, ds.count
        typename = rasterio.dtypes.typename_fwd[rasterio.dtypes.dtype_rev[ds.dtypes[0]]]
        srs = f"<SRS>{escape(ds.crs.to_wkt())}</SRS>" if ds.crs else ""
        gt = ", ".join(repr(float(v)) for v in ds.transform.to_gdal())
        nodata = ds.nodata
        colorinterp = [ci.name.capitalize() for ci in ds.colorinterp]
        tags = ds.tags()

    def source(path, band: int) -> str:
        name = escape(Path(path).name if relative else str(path))
        return f'<SourceFilename relativeToVRT="{int(relative)}">{name}</SourceFilename><SourceBand>{band}</SourceBand>'

    items = "".join(f"<MDI key={quoteattr(k)}>{escape(v)}</MDI>" for k, v in tags.items())
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{srs}<GeoTransform>{gt}</GeoTransform>']
    parts.append(f"<Metadata>{items}</Metadata>")
    for band in range(1, count + 1):
        parts.append(f'<VRTRasterBand dataType="{typename}" band="{band}">')
        parts.append(f"<ColorInterp>{colorinterp[band - 1]}</ColorInterp>")
        if nodata is not None:
            parts.append(f"<NoDataValue>{nodata!r}</NoDataValue>")
        parts.append(f"<SimpleSource>{source(base, band)}</SimpleSource>")
        parts.extend(f"<Overview>{source(o, band)}</Overview>" for o in overviews)
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    return "".join(parts)


def _write_vrt(path: Path, base: Path, overviews: list[Path]) -> Path:
    path.write_text(_vrt_xml(base, overviews, relative=True), encoding="utf-8")
    return path


def _finish_with_own_overviews(
    arr: np.ndarray, profile: dict, tags: dict | None, levels: list, cog: Path, dest: Storage, relpath: str, opts
) -> CogInfo:
    """A small array and its NEAREST overview levels as uncompressed GTiffs in GDAL's in-memory filesystem, tied
    by a VRT (given to GDAL as its XML text), so the COG driver copies the overviews instead of building them:
    ~13% of a 720x1440 granule (bench/cog.py). Memory: the array once more, plus a third for the levels."""
    height, width = arr.shape[1], arr.shape[2]
    folder = f"/vsimem/geopump-cog-{uuid.uuid4().hex}"
    paths = [f"{folder}/base.tif"] + [f"{folder}/ovr{k}.tif" for k in range(len(levels))]
    gtiff = {k: v for k, v in profile.items() if k not in ("width", "height", "transform")}
    gtiff.update(driver="GTiff", tiled=True, blockxsize=512, blockysize=512, COMPRESS="NONE")
    try:
        with contextlib.ExitStack() as stack:
            ds = stack.enter_context(
                rasterio.open(paths[0], "w", width=width, height=height, transform=profile["transform"], **gtiff)
            )
            ds.write(arr)
            if tags:
                ds.update_tags(**{k: str(v) for k, v in tags.items()})
            # The whole array is one window of the same pyramid the windowed writer fills.
            _OverviewPyramid(width, height, profile["transform"], levels, paths[1:], gtiff, stack).write(
                arr, Window(0, 0, width, height)
            )
        return _finish(_vrt_xml(paths[0], paths[1:], relative=False), cog, dest, relpath, opts)
    finally:
        for path in paths:
            with contextlib.suppress(Exception):
                rasterio.shutil.delete(path)


def _window_array(data, window: Window, count: int, dt: np.dtype, relpath: str) -> np.ndarray:
    arr = np.asarray(data)
    want = (count, int(window.height), int(window.width))
    if arr.ndim == 2 and count == 1:
        arr = arr[np.newaxis]
    if arr.shape != want:
        raise ValueError(f"COG {relpath}: window {window} returned shape {np.asarray(data).shape}, expected {want}")
    if arr.dtype == dt:
        return arr
    if not np.can_cast(arr.dtype, dt, "safe") and arr.size:
        if dt.kind in "iu" and arr.dtype.kind in "iuf":
            info = np.iinfo(dt)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max or (arr.dtype.kind == "f" and not np.array_equal(arr, np.trunc(arr))):
                raise ValueError(
                    f"COG {relpath}: window {window} has values {lo}..{hi} ({arr.dtype}) that do not fit {dt}"
                )
        elif not (dt.kind == "f" and arr.dtype.kind in "iuf"):
            raise ValueError(f"COG {relpath}: window {window} returned dtype {arr.dtype}, which cannot become {dt}")
    return arr.astype(dt, copy=False)


# -- checking downloads -----------------------------------------------------------------------------


def check_raster(path: str | os.PathLike, name: str, *, expected: dict | None = None) -> dict:
    """Open a downloaded raster and read every block, so truncation or corruption fails here, not mid-product.

    Blocks are read in chunks of whole blocks of about 4 Mpx, so memory stays small for 40000² tiles.

    Args:
        path: local file path (or any path rasterio opens).
        name: what the raster is, used in error messages (e.g. the tile id and layer: `10N_020E lossyear`).
        expected: optional properties to insist on, any of `width`, `height`, `count`, `dtype`, `crs`, `nodata`.

    Returns:
        {"width", "height", "count", "dtype", "crs", "nodata", "bounds"} of the raster.

    Raises:
        CorruptRasterError: `tile {name}: ...` when the file cannot be opened, a block cannot be read, or a property
            differs from `expected`.
    """
    try:
        with rasterio.open(path) as ds:
            props = {
                "width": ds.width,
                "height": ds.height,
                "count": ds.count,
                "dtype": ds.dtypes[0],
                "crs": ds.crs.to_string() if ds.crs else None,
                "nodata": ds.nodata,
                "bounds": tuple(ds.bounds),
            }
            for key, want in (expected or {}).items():
                if key not in props or key == "bounds":
                    raise ValueError(f"check_raster: cannot check {key!r}; use width/height/count/dtype/crs/nodata")
                got = props[key]
                if key == "crs":
                    same = got is not None and CRS.from_user_input(want) == ds.crs
                else:
                    same = str(got) == str(want) if key == "dtype" else got == want
                if not same:
                    raise CorruptRasterError(f"tile {name}: {path} has {key} {got!r}, expected {want!r}")
            block_h, block_w = ds.block_shapes[0]
            chunk_w = min(ds.width, block_w * max(1, 2048 // block_w))
            chunk_h = min(ds.height, block_h * max(1, (4 * 1024**2 // chunk_w) // block_h))
            for band in range(1, ds.count + 1):
                for row in range(0, ds.height, chunk_h):
                    for col in range(0, ds.width, chunk_w):
                        window = Window(col, row, min(chunk_w, ds.width - col), min(chunk_h, ds.height - row))
                        try:
                            ds.read(band, window=window)
                        except (RasterioError, OSError) as exc:
                            raise CorruptRasterError(
                                f"tile {name}: {path} is truncated or corrupt: band {band} rows {row}.."
                                f"{row + window.height - 1}, cols {col}..{col + window.width - 1} cannot be read: "
                                f"{_reason(exc)}"
                            ) from exc
    except CorruptRasterError:
        raise
    except (RasterioError, OSError) as exc:
        raise CorruptRasterError(f"tile {name}: {path} cannot be opened as a raster: {_reason(exc)}") from exc
    return props


def _reason(exc: BaseException) -> str:
    # rasterio's read error says only "See previous exception"; the GDAL message is in the chained cause.
    cause = exc.__cause__ or exc.__context__
    return f"{exc} ({cause})" if cause is not None and str(cause) not in str(exc) else str(exc)
