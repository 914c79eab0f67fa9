"""pipeline.lib.granules: read one HDF-EOS5 grid granule (OMI L3 ozone) into a north-up array, describe it, write a COG.

Follows external-apis.md §6.1 and the VEDA cogify step (domain.md §B3), driven by a `CollectionConfig`:

- the variable is read with h5py (read-only) at `config.variable`; its shape must be the grid's (rows, cols);
- fill: a raw value is fill when the collection's `fill_rule` says so against `config.nodata` (`le`: raw <= nodata,
  the OMI contract "mask <= -1.2676506e+30"; `eq`: raw == nodata as float32), when it equals the value of one of the
  dataset's fill attributes (`MissingValue`, `_FillValue`, compared in the raw dtype), or when it is NaN/inf. Physical
  values outside the optional `valid_range` are masked as well. Fill is decided on RAW values, before scaling,
  because that is the encoding fill values are declared in;
- physical = Offset + ScaleFactor * raw, the dataset attributes overriding the collection's `scale`/`offset`;
- south-up rows (row 0 = south edge, OMI L3) are flipped with `np.flipud`, so row 0 of the result is the north edge
  and the collection's north-up transform applies;
- masked pixels hold `nodata`, the product's own fill -1.2676506e+30 as float32 (exactly -2**100), not NaN: VEDA
  keeps the fill as the COG nodata and the STAC `raster:bands[].nodata` of the contract example is that number, so
  users' existing `<= -1.2676506e+30` masks keep working on the COGs;
- granule time: `/HDFEOS/ADDITIONAL/FILE_ATTRIBUTES@TAI93At0zOfGranule`, TAI seconds since 1993-01-01T00:00:00 UTC,
  converted to UTC with the leap-second table below (TAI93 counts the 10 leap seconds since 1993, so a plain
  "1993 + seconds" would land 10 s late on a granule of 2017 or later); the file name's `_{YYYY}m{MMDD}_` date is the
  fall-back, and the two must agree when both exist.

Every bad input raises `GranuleError` naming the granule file and the broken rule.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from pipeline.lib.cog import CogInfo, write_cog_from_array
from pipeline.lib.collections import CollectionConfig
from pipeline.lib.storage import Storage

FILE_ATTRIBUTES = "/HDFEOS/ADDITIONAL/FILE_ATTRIBUTES"
TIME_ATTRIBUTE = "TAI93At0zOfGranule"
TAI93_EPOCH = datetime(1993, 1, 1, tzinfo=UTC)
#: UTC days that began right after a positive leap second, since the TAI93 epoch (TAI-UTC was 27 s on 1993-01-01).
#: From the IERS leap-second list; none has been inserted after 2016-12-31 as of the 2025 IERS Bulletin C. A new
#: leap second needs a new row here, or granules after it come out 1 s late.
LEAP_SECOND_DAYS = (
    date(1993, 7, 1),
    date(1994, 7, 1),
    date(1996, 1, 1),
    date(1997, 7, 1),
    date(1999, 1, 1),
    date(2006, 1, 1),
    date(2009, 1, 1),
    date(2012, 7, 1),
    date(2015, 7, 1),
    date(2017, 1, 1),
)
_NAME_DATE = re.compile(r"_(\d{4})m(\d{2})(\d{2})_")
_GRID_SPACING = re.compile(r"^\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Viridis-like colour ramp (dark blue -> green -> yellow), 9 anchors interpolated to 256 entries: perceptually
# ordered and readable by colour-blind users, without a matplotlib dependency.
_RAMP_ANCHORS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float64,
)
_LUT = (
    np.stack(
        [
            np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_RAMP_ANCHORS)), _RAMP_ANCHORS[:, i])
            for i in range(3)
        ],
        axis=1,
    )
    .round()
    .astype(np.uint8)
)


class GranuleError(ValueError):
    """A granule file is unusable; the message is `<granule file name>: <rule broken>`."""

    def __init__(self, granule: str, rule: str):
        super().__init__(f"{granule}: {rule}")
        self.granule = granule
        self.rule = rule


@dataclass
class GranuleArray:
    """A granule's variable as a north-up physical raster on the collection's grid.

    `data` is float32 (rows, cols), row 0 = north edge, masked pixels set to `nodata`; `valid_mask` is True where
    `data` holds a measurement. `scale`/`offset` are the ones applied; `time` is the granule's UTC start and
    `time_source` says where it came from (`TAI93At0zOfGranule` or `file name`). `source_attrs` holds the decoded
    HDF5 attributes: {"dataset": ..., "grid": ..., "file": ...}.
    """

    data: np.ndarray
    valid_mask: np.ndarray
    transform: Affine
    crs: str
    nodata: float
    units: str
    time: datetime
    name: str
    collection: str
    scale: float = 1.0
    offset: float = 0.0
    time_source: str = TIME_ATTRIBUTE
    source_attrs: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape


# -- time ------------------------------------------------------------------------------------------------------------
def _leaps_before_tai93(seconds: float) -> int:
    # The UTC midnight after the i-th leap second (1-based) is at TAI93 = naive seconds of that day + i.
    count = 0
    for i, day in enumerate(LEAP_SECOND_DAYS, start=1):
        naive = (day - TAI93_EPOCH.date()).days * 86400
        if seconds >= naive + i:
            count = i
    return count


def tai93_to_utc(seconds: float) -> datetime:
    """UTC datetime of a TAI93 time (TAI seconds since 1993-01-01T00:00:00 UTC), rounded to the microsecond.

    An instant inside a leap second (23:59:60.x) maps to 00:00:00.x of the next day: `datetime` has no second 60.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"TAI93 time {seconds!r} is not finite")
    return TAI93_EPOCH + timedelta(seconds=seconds - _leaps_before_tai93(seconds))


def utc_to_tai93(moment: datetime) -> float:
    """TAI93 seconds of a UTC datetime (naive values are taken as UTC); the inverse of `tai93_to_utc`."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    leaps = sum(1 for day in LEAP_SECOND_DAYS if moment.date() >= day)
    return (moment - TAI93_EPOCH).total_seconds() + leaps


def date_from_name(name: str) -> date | None:
    """The `_{YYYY}m{MMDD}_` data day of an OMI file name (`OMI-Aura_L3-OMDOAO3e_2022m0120_v003-...`), else None."""
    match = _NAME_DATE.search(name)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


# -- attributes ------------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """An HDF5 attribute value as plain Python (str, int, float, list) so it can go into JSON metadata."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace").rstrip("\x00")
    if isinstance(value, np.ndarray):
        items = [_plain(v) for v in value.ravel().tolist()]
        return items[0] if len(items) == 1 else items
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attrs(obj) -> dict:
    out = {}
    for key in obj.attrs:
        try:
            out[key] = _plain(obj.attrs[key])
        except (OSError, TypeError):  # an attribute of a type h5py cannot read must not stop the granule
            out[key] = None
    return out


def _scalar_attr(attrs: dict, key: str, name: str) -> float | None:
    if key not in attrs:
        return None
    value = attrs[key]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GranuleError(name, f"attribute {key} must be one finite number, got {value!r}")
    return float(value)


# -- reading ---------------------------------------------------------------------------------------------------------
def read_granule(path: str | os.PathLike, config: CollectionConfig) -> GranuleArray:
    """Read `config.variable` from the HDF-EOS5 granule at `path` as a north-up physical float32 array.

    Raises:
        GranuleError: missing or unreadable (truncated, not HDF5) file, variable not found, wrong shape or type,
            grid attributes contradicting the collection, bad ScaleFactor/Offset, no valid pixel, no usable or
            inconsistent granule time, or a time before the collection's start date.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise GranuleError(name, f"file {path} does not exist or is not a file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise GranuleError(name, f"truncated or not an HDF5 file ({exc})") from exc
    with h5:
        ds = h5.get(config.variable)
        if ds is None:
            parent = h5.get(config.variable.rsplit("/", 1)[0] or "/")
            siblings = sorted(parent.keys()) if isinstance(parent, h5py.Group) else []
            has = f" (its group has: {', '.join(siblings)})" if siblings else " (nor its group)"
            raise GranuleError(name, f"variable {config.variable} not found{has}")
        if not isinstance(ds, h5py.Dataset):
            raise GranuleError(name, f"variable {config.variable} is a group, not a dataset")
        if ds.shape != config.shape:
            raise GranuleError(name, f"variable {config.variable} has wrong shape {ds.shape}, expected {config.shape}")
        if ds.dtype.kind not in "iuf":
            raise GranuleError(name, f"variable {config.variable} has non-numeric type {ds.dtype}")
        try:
            raw = ds[()]
        except OSError as exc:
            raise GranuleError(name, f"truncated or corrupt data in {config.variable} ({exc})") from exc
        ds_attrs = _attrs(ds)
        grid_path = config.variable.split("/Data Fields/")[0] if "/Data Fields/" in config.variable else None
        grid_group = h5.get(grid_path) if grid_path else None
        grid_attrs = _attrs(grid_group) if isinstance(grid_group, h5py.Group) else {}
        file_group = h5.get(FILE_ATTRIBUTES)
        file_attrs = _attrs(file_group) if isinstance(file_group, h5py.Group) else {}

    _check_grid_attrs(grid_attrs, config, name)
    scale = _scalar_attr(ds_attrs, config.scale_attribute, name)
    offset = _scalar_attr(ds_attrs, config.offset_attribute, name)
    scale = config.scale if scale is None else scale
    offset = config.offset if offset is None else offset
    if scale == 0:
        raise GranuleError(name, f"attribute {config.scale_attribute} is 0, so no physical value can be computed")

    fill = _fill_mask(raw, ds_attrs, config)
    physical = offset + scale * raw.astype(np.float64)
    valid = ~fill
    if config.valid_range is not None:
        lo, hi = config.valid_range
        with np.errstate(invalid="ignore"):
            valid &= (physical >= lo) & (physical <= hi)
    if not valid.any():
        if fill.all():
            raise GranuleError(name, f"all values are fill in {config.variable}")
        raise GranuleError(
            name,
            f"no valid values in {config.variable}: {int(fill.sum())} fill, {int((~fill).sum())} outside "
            f"valid_range {list(config.valid_range or ())}",
        )
    nodata = np.float32(config.nodata)
    data = physical.astype(np.float32)
    data[~valid] = nodata
    if config.row_order == "south_up":
        data, valid = np.flipud(data), np.flipud(valid)
    when, source = _granule_time(file_attrs, name)
    if when.date() < config.start_date:
        raise GranuleError(
            name, f"granule day {when.date().isoformat()} is before the collection start {config.start_date}"
        )
    return GranuleArray(
        data=np.ascontiguousarray(data),
        valid_mask=np.ascontiguousarray(valid),
        transform=config.affine(),
        crs=config.crs,
        nodata=float(nodata),
        units=config.units,
        time=when,
        name=name,
        collection=config.id,
        scale=scale,
        offset=offset,
        time_source=source,
        source_attrs={"dataset": ds_attrs, "grid": grid_attrs, "file": file_attrs},
    )


def _fill_mask(raw: np.ndarray, ds_attrs: dict, config: CollectionConfig) -> np.ndarray:
    """True where the raw value is fill by the collection's rule, a fill attribute, or is NaN/inf."""
    if raw.dtype.kind == "f":
        fill = ~np.isfinite(raw)
        with np.errstate(invalid="ignore"):
            if config.fill_rule == "le":
                fill |= raw.astype(np.float64) <= config.nodata
            else:
                fill |= raw == raw.dtype.type(config.nodata)
    else:
        fill = np.zeros(raw.shape, dtype=bool)
        info = np.iinfo(raw.dtype)
        if config.fill_rule == "le" and config.nodata >= info.min:
            fill |= raw <= config.nodata
        elif config.fill_rule == "eq" and float(config.nodata).is_integer() and info.min <= config.nodata <= info.max:
            fill |= raw == int(config.nodata)
    for key in config.fill_attributes:
        values = ds_attrs.get(key)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if raw.dtype.kind == "f":
                if math.isnan(value):
                    continue  # NaN is caught by isfinite above
                fill |= raw == raw.dtype.type(value)
            elif float(value).is_integer() and np.iinfo(raw.dtype).min <= value <= np.iinfo(raw.dtype).max:
                fill |= raw == int(value)
            # a fill value the raw type cannot hold can never occur in the data, so it is ignored
    return fill


def _check_grid_attrs(grid_attrs: dict, config: CollectionConfig, name: str) -> None:
    """The grid group's own size and spacing attributes, when present, must agree with the collection."""
    expected = {"NumberOfLongitudesInGrid": config.grid.width, "NumberOfLatitudesInGrid": config.grid.height}
    for key, want in expected.items():
        got = grid_attrs.get(key)
        if isinstance(got, list) and len(got) == 1:
            got = got[0]
        if got is not None and got != want:
            raise GranuleError(name, f"grid attribute {key} is {got!r}, the collection {config.id} expects {want}")
    spacing = grid_attrs.get("GridSpacing")
    if isinstance(spacing, str):
        match = _GRID_SPACING.match(spacing.strip())
        dlat, dlon = -config.grid.transform[5], config.grid.transform[1]
        if not match:
            raise GranuleError(name, f"grid attribute GridSpacing {spacing!r} is not '(dlat,dlon)'")
        if not (
            math.isclose(float(match[1]), dlat, rel_tol=1e-6) and math.isclose(float(match[2]), dlon, rel_tol=1e-6)
        ):
            raise GranuleError(
                name,
                f"grid attribute GridSpacing is {spacing!r}, the collection {config.id} expects ({dlat:g},{dlon:g})",
            )


def _granule_time(file_attrs: dict, name: str) -> tuple[datetime, str]:
    from_name = date_from_name(name)
    value = file_attrs.get(TIME_ATTRIBUTE)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise GranuleError(name, f"{FILE_ATTRIBUTES}@{TIME_ATTRIBUTE} must be one finite number, got {value!r}")
        try:
            when = tai93_to_utc(float(value))
        except OverflowError:
            raise GranuleError(name, f"{TIME_ATTRIBUTE} {value!r} is out of range") from None
        if from_name is not None and from_name != when.date():
            raise GranuleError(
                name,
                f"{TIME_ATTRIBUTE} gives {when.date().isoformat()} but the file name says {from_name.isoformat()}",
            )
        return when, TIME_ATTRIBUTE
    if from_name is not None:
        return datetime(from_name.year, from_name.month, from_name.day, tzinfo=UTC), "file name"
    raise GranuleError(name, f"no granule time: no {FILE_ATTRIBUTES}@{TIME_ATTRIBUTE} and no _YYYYmMMDD_ in the name")


# -- describing ------------------------------------------------------------------------------------------------------
def band_statistics(granule: GranuleArray, *, histogram_bins: int | None = None) -> dict:
    """STAC raster-extension statistics of the valid pixels: minimum, maximum, mean, stddev (population, as GDAL
    and rio-stac compute it), valid_percent (0..100); with `histogram_bins`, also `histogram` {count, min, max,
    buckets} over [minimum, maximum]. Sums are in float64 so 1M float32 pixels do not lose precision.
    """
    values = granule.data[granule.valid_mask].astype(np.float64)
    if values.size == 0:
        raise GranuleError(granule.name, "no valid pixels to compute statistics on")
    stats = {
        "minimum": float(values.min()),
        "maximum": float(values.max()),
        "mean": float(values.mean()),
        "stddev": float(values.std()),
        "valid_percent": float(100.0 * values.size / granule.data.size),
    }
    if histogram_bins is not None:
        if isinstance(histogram_bins, bool) or not isinstance(histogram_bins, int) or histogram_bins <= 0:
            raise ValueError(f"histogram_bins must be a positive integer, got {histogram_bins!r}")
        counts, edges = np.histogram(values, bins=histogram_bins, range=(stats["minimum"], stats["maximum"]))
        stats["histogram"] = {
            "count": histogram_bins,
            "min": float(edges[0]),
            "max": float(edges[-1]),
            "buckets": [int(c) for c in counts],
        }
    return stats


def write_granule_cog(
    granule: GranuleArray,
    dest: Storage,
    relpath: str,
    *,
    options: dict | None = None,
    tmp_dir: str | os.PathLike | None = None,
) -> CogInfo:
    """Write the granule as a validated float32 COG (nodata = the fill) at `relpath` in `dest`, atomically.

    Tags carry the units, source granule, collection, UTC time and the scale/offset already applied (the COG holds
    physical values, so readers must not apply them again).
    """
    tags = {
        "units": granule.units,
        "source_granule": granule.name,
        "collection": granule.collection,
        "datetime": granule.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "applied_scale": repr(granule.scale),
        "applied_offset": repr(granule.offset),
    }
    return write_cog_from_array(
        granule.data.astype(np.float32, copy=False),
        granule.transform,
        granule.crs,
        granule.nodata,
        dest,
        relpath,
        tmp_dir=tmp_dir,
        options=options,
        tags=tags,
    )


def preview_png(granule: GranuleArray, max_size: int = 360) -> bytes:
    """A small RGBA PNG of the granule for the Dagster UI: nearest-sampled down to at most `max_size` pixels on the
    longest side, a viridis-like ramp stretched over the 2nd..98th percentile of the valid pixels, nodata
    transparent. Written with rasterio's PNG driver, so no imaging library is needed.
    """
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
        raise ValueError(f"max_size must be a positive integer, got {max_size!r}")
    rows, cols = granule.data.shape
    step = max(1, math.ceil(max(rows, cols) / max_size))
    # Sample cell centres of each step x step block rather than its corner, so the preview is not shifted.
    r_idx = np.arange(min(step // 2, rows - 1), rows, step)
    c_idx = np.arange(min(step // 2, cols - 1), cols, step)
    data = granule.data[np.ix_(r_idx, c_idx)]
    valid = granule.valid_mask[np.ix_(r_idx, c_idx)]
    rgba = np.zeros((4, data.shape[0], data.shape[1]), dtype=np.uint8)
    if valid.any():
        lo, hi = np.percentile(data[valid].astype(np.float64), [2, 98])
        span = hi - lo if hi > lo else 1.0
        t = np.clip((data.astype(np.float64) - lo) / span, 0.0, 1.0)
        colours = _LUT[np.rint(t * 255).astype(np.intp)]  # (h, w, 3)
        rgba[:3] = np.where(valid, np.moveaxis(colours, -1, 0), 0)
        rgba[3] = np.where(valid, 255, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            with mem.open(driver="PNG", width=rgba.shape[2], height=rgba.shape[1], count=4, dtype="uint8") as ds:
                ds.write(rgba)
            return mem.read()
