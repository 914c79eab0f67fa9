"""pipeline.standins.granule_samples: deterministic synthetic OMI L3 HDF-EOS5 granules (and broken ones) for tests.

The files have the HDF-EOS5 layout of external-apis.md §6.1, driven by a `CollectionConfig`:

- `/HDFEOS/GRIDS/<Grid>/Data Fields/<Var>` (the collection's `variable`) float32, stored SOUTH-UP when the collection
  says `south_up` (row 0 = south edge, as OMI L3 files), with attributes `MissingValue`, `_FillValue`, `ScaleFactor`,
  `Offset`, `Units`, `Title`, `ValidRange`, and one sibling field (cloud fraction) so the group is not trivially
  small;
- grid-group attributes `GridSpacing="(dlat,dlon)"`, `NumberOfLongitudesInGrid`, `NumberOfLatitudesInGrid`;
- `/HDFEOS/ADDITIONAL/FILE_ATTRIBUTES` with `TAI93At0zOfGranule` (TAI seconds since 1993, leap seconds counted),
  `GranuleYear/Month/Day`, `InstrumentName`, `OrbitNumber`;
- `/HDFEOS INFORMATION/StructMetadata.0`, a minimal ODL grid description. It is PLAUSIBLE, NOT VERIFIED against a
  real granule (GridOrigin lower-left to match the south-up rows); geopump never parses it.

The ozone field is smooth and realistic: 220..450 DU, low in the tropics, high at middle/high latitudes, stronger in
the spring hemisphere, plus seeded value noise. Fill (-1.2676506e+30) covers polar night in the winter hemisphere and
slanted orbit-gap stripes. Everything is seeded by (seed, day, short name), so a call always gives the same values.

`make_granule(...)` returns the north-up physical array a correct reader must produce (fill = the collection's
nodata as float32), so tests have an oracle that does not go through `pipeline.lib.granules`.
"""

from __future__ import annotations

import io
import os
import zlib
from datetime import date, datetime, time, timedelta

import h5py
import numpy as np

from pipeline.lib.collections import CollectionConfig
from pipeline.lib.granules import FILE_ATTRIBUTES, TIME_ATTRIBUTE, utc_to_tai93

KINDS = ("ok", "missing_variable", "wrong_shape", "all_fill", "truncated", "scaled")
#: The raw encoding of the "scaled" kind: physical = SCALED_OFFSET + SCALED_FACTOR * int16 raw; fill raw -32767.
SCALED_FACTOR = 0.1
SCALED_OFFSET = 100.0
SCALED_FILL = -32767
_SIBLINGS = {"OMTO3d": "RadiativeCloudFraction"}  # the cloud field's name in each product; default CloudFraction


def granule_name(short_name: str, day: date, prod: datetime | None = None, version: str = "003") -> str:
    """The OMI L3 file name, e.g. `OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5`.

    `prod` (production time) defaults to 02:17:59 two days after `day`, like the contract's example granule.
    """
    prod = prod or datetime.combine(day + timedelta(days=2), time(2, 17, 59))
    return f"OMI-Aura_L3-{short_name}_{day:%Y}m{day:%m%d}_v{version}-{prod:%Y}m{prod:%m%d}t{prod:%H%M%S}.he5"


def _rng(seed: int, day: date, short_name: str) -> np.random.Generator:
    return np.random.default_rng([seed, day.toordinal(), zlib.crc32(short_name.encode())])


def _interp_weights(n_out: int, cells: int) -> np.ndarray:
    """(n_out, cells + 1) linear-interpolation weights from a lattice of cells + 1 knots to n_out cell centres."""
    pos = (np.arange(n_out) + 0.5) * cells / n_out
    idx = np.minimum(pos.astype(int), cells - 1)
    frac = pos - idx
    weights = np.zeros((n_out, cells + 1))
    weights[np.arange(n_out), idx] = 1 - frac
    weights[np.arange(n_out), idx + 1] = frac
    return weights


def _value_noise(rng: np.random.Generator, rows: int, cols: int, cells: int) -> np.ndarray:
    """A coarse random lattice bilinearly interpolated to rows x cols (values 0..1), wrapping in longitude.

    Bilinear interpolation is separable, so it is two small matrix products instead of 1M-element gathers.
    """
    ny, nx = max(2, cells // 2), cells
    lattice = rng.random((ny + 1, nx + 1))
    lattice[:, -1] = lattice[:, 0]  # so the field is continuous across the antimeridian
    return _interp_weights(rows, ny) @ lattice @ _interp_weights(cols, nx).T


def ozone_field(config: CollectionConfig, day: date, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(north-up float32 ozone in DU, north-up fill mask) on the collection's grid for `day`."""
    rows, cols = config.shape
    transform = config.affine()
    lat = transform.f + transform.e * (np.arange(rows) + 0.5)  # cell centres, north to south
    rng = _rng(seed, day, config.short_name)
    doy = day.timetuple().tm_yday
    spring = np.cos(2 * np.pi * (doy - 80) / 365.25)  # +1 at the northern spring peak, -1 at the southern one
    sin2 = np.sin(np.radians(lat)) ** 2
    base = 265.0 + 115.0 * sin2 * (1.0 + 0.25 * spring * np.sign(lat))  # (rows,)
    noise = 30.0 * (_value_noise(rng, rows, cols, 12) - 0.5) + 6.0 * (_value_noise(rng, rows, cols, 48) - 0.5)
    field = np.clip(base[:, None] + noise, 220.0, 450.0).astype(np.float32)

    # Polar night: OMI needs sunlight, so the winter pole has no retrievals beyond ~85 degrees from the subsolar lat.
    declination = 23.44 * np.sin(2 * np.pi * (doy - 80) / 365.25)
    polar = np.abs(lat - declination) > 85.0
    fill = np.broadcast_to(polar[:, None], (rows, cols)).copy()
    # Orbit gaps: slanted stripes between swaths, widest at the equator. Distances are in columns and float32, with
    # the antimeridian wrap done by min(d, cols - d): a float64 modulo over 1M pixels would dominate the run time.
    col = np.arange(cols, dtype=np.float32)[None, :]
    coslat = np.cos(np.radians(lat)).astype(np.float32)[:, None]
    for centre in rng.uniform(-180, 180, size=3):
        slant = ((centre + 12.0 * lat / 90.0 - transform.c) / transform.a - 0.5).astype(np.float32)[:, None] % cols
        dist = np.abs(col - slant)
        fill |= np.minimum(dist, cols - dist) < np.float32(rng.uniform(1.5, 3.0) / transform.a) * coslat
    return field, fill


def _struct_metadata(grid_name: str, field_names: list[str], rows: int, cols: int, config: CollectionConfig) -> str:
    west, south, east, north = config.grid.bounds
    fields = "".join(
        f'\t\t\tOBJECT=DataField_{i}\n\t\t\t\tDataFieldName="{f}"\n\t\t\t\tDataType=H5T_NATIVE_FLOAT\n'
        f'\t\t\t\tDimList=("YDim","XDim")\n\t\t\t\tMaxdimList=("YDim","XDim")\n\t\t\tEND_OBJECT=DataField_{i}\n'
        for i, f in enumerate(field_names, start=1)
    )
    # GCTP_GEO corners are packed DMS (degrees * 1e6); the lower-left origin matches the south-up rows.
    return (
        "GROUP=SwathStructure\nEND_GROUP=SwathStructure\nGROUP=GridStructure\n\tGROUP=GRID_1\n"
        f'\t\tGridName="{grid_name}"\n\t\tXDim={cols}\n\t\tYDim={rows}\n'
        f"\t\tUpperLeftPointMtrs=({west * 1e6:.6f},{south * 1e6:.6f})\n"
        f"\t\tLowerRightMtrs=({east * 1e6:.6f},{north * 1e6:.6f})\n"
        "\t\tProjection=HE5_GCTP_GEO\n\t\tGridOrigin=HE5_HDFE_GD_LL\n"
        "\t\tGROUP=Dimension\n\t\tEND_GROUP=Dimension\n"
        f"\t\tGROUP=DataField\n{fields}\t\tEND_GROUP=DataField\n"
        "\t\tGROUP=MergedFields\n\t\tEND_GROUP=MergedFields\n\tEND_GROUP=GRID_1\nEND_GROUP=GridStructure\n"
        "GROUP=PointStructure\nEND_GROUP=PointStructure\nGROUP=ZaStructure\nEND_GROUP=ZaStructure\nEND\n"
    )


def _write(target, config: CollectionConfig, day: date, seed: int, kind: str) -> np.ndarray:
    if kind not in KINDS:
        raise ValueError(f"granule kind {kind!r} is not one of {', '.join(KINDS)}")
    field, fill = ozone_field(config, day, seed)
    if kind == "all_fill":
        fill[:] = True
    if kind == "wrong_shape":
        field, fill = field[:, :-1], fill[:, :-1]  # one column short: (720, 1439) for OMDOAO3e
    nodata = np.float32(config.nodata)
    if kind == "scaled":
        raw = np.rint((field.astype(np.float64) - SCALED_OFFSET) / SCALED_FACTOR).astype(np.int16)
        raw[fill] = SCALED_FILL
        expected = (SCALED_OFFSET + SCALED_FACTOR * raw.astype(np.float64)).astype(np.float32)
        fill_value, scale, offset = np.int16(SCALED_FILL), SCALED_FACTOR, SCALED_OFFSET
    else:
        raw = np.where(fill, nodata, field).astype(np.float32)
        expected = raw.copy()
        fill_value, scale, offset = nodata, 1.0, 0.0
    expected[fill] = nodata
    stored = np.flipud(raw) if config.row_order == "south_up" else raw

    grid_path, _, var_name = config.variable.rpartition("/Data Fields/")
    if not grid_path:  # a variable outside the HDF-EOS Data Fields convention: write it where the config says
        grid_path, _, var_name = config.variable.rpartition("/")
        fields_path = grid_path
    else:
        fields_path = f"{grid_path}/Data Fields"
    grid_name = grid_path.rsplit("/", 1)[-1]
    sibling = _SIBLINGS.get(config.short_name, "CloudFraction")
    rows, cols = stored.shape
    with h5py.File(target, "w", libver="earliest") as h5:
        info = h5.create_group("HDFEOS INFORMATION")
        info.attrs["HDFEOSVersion"] = np.bytes_("HDFEOS_5.1.11")
        names = [sibling] if kind == "missing_variable" else [var_name, sibling]
        info.create_dataset("StructMetadata.0", data=np.bytes_(_struct_metadata(grid_name, names, rows, cols, config)))
        grid = h5.require_group(grid_path)
        dlat, dlon = -config.grid.transform[5], config.grid.transform[1]
        grid.attrs["GridSpacing"] = np.bytes_(f"({dlat:g},{dlon:g})")
        grid.attrs["GridSpan"] = np.bytes_("(-180,180,-90,90)")
        grid.attrs["NumberOfLongitudesInGrid"] = np.array([config.grid.width], dtype=np.int32)
        grid.attrs["NumberOfLatitudesInGrid"] = np.array([config.grid.height], dtype=np.int32)
        fields = h5.require_group(fields_path)
        if kind != "missing_variable":
            ds = fields.create_dataset(var_name, data=stored, fillvalue=fill_value)
            ds.attrs["MissingValue"] = np.array([fill_value])
            ds.attrs["_FillValue"] = np.array([fill_value])
            ds.attrs["ScaleFactor"] = np.array([scale], dtype=np.float64)
            ds.attrs["Offset"] = np.array([offset], dtype=np.float64)
            ds.attrs["Units"] = np.bytes_(config.units)
            ds.attrs["Title"] = np.bytes_("Best Total Ozone Solution")
            ds.attrs["ValidRange"] = np.array([50.0, 700.0], dtype=np.float32)
        # The sibling is a cheap constant-ish field: it only makes the group look like a real product's.
        cloud = np.where(np.flipud(fill) if config.row_order == "south_up" else fill, nodata, 0.3).astype(np.float32)
        sib = fields.create_dataset(sibling, data=cloud[:rows, :cols], fillvalue=nodata)
        sib.attrs["MissingValue"] = np.array([nodata])
        sib.attrs["Units"] = np.bytes_("NoUnits")
        attrs = h5.require_group(FILE_ATTRIBUTES).attrs
        attrs[TIME_ATTRIBUTE] = np.array([utc_to_tai93(datetime.combine(day, time()))], dtype=np.float64)
        attrs["GranuleYear"] = np.array([day.year], dtype=np.int32)
        attrs["GranuleMonth"] = np.array([day.month], dtype=np.int32)
        attrs["GranuleDay"] = np.array([day.day], dtype=np.int32)
        attrs["InstrumentName"] = np.bytes_("OMI")
        first_orbit = 2000 + (day - date(2004, 10, 1)).days * 14  # Aura flies ~14.6 orbits a day
        attrs["OrbitNumber"] = np.arange(first_orbit, first_orbit + 15, dtype=np.int32)
    return expected


def _granule(config: CollectionConfig, day: date, seed: int, kind: str) -> tuple[bytes, np.ndarray]:
    """(file bytes, expected array) of a synthetic granule; a "truncated" one is cut to half its size."""
    buf = io.BytesIO()
    expected = _write(buf, config, day, seed, kind)
    data = buf.getvalue()
    return (data[: len(data) // 2] if kind == "truncated" else data), expected


def granule_bytes(config: CollectionConfig, day: date, *, seed: int = 0, kind: str = "ok") -> bytes:
    """The bytes of a synthetic granule (see `make_granule`); a "truncated" one is cut to half its size."""
    return _granule(config, day, seed, kind)[0]


def make_granule(
    path: str | os.PathLike, config: CollectionConfig, day: date, *, seed: int = 0, kind: str = "ok"
) -> np.ndarray:
    """Write a synthetic granule of `config` for `day` at `path` and return the north-up physical float32 array a
    correct reader must return (fill = `config.nodata` as float32).

    kind: "ok"; "scaled" (int16 raw with ScaleFactor 0.1 / Offset 100 and fill -32767 in MissingValue/_FillValue);
    and broken ones: "missing_variable" (only the sibling field exists), "wrong_shape" (one column short),
    "all_fill", "truncated" (the file cut to half its size). For the broken kinds the array is what was stored.
    """
    data, expected = _granule(config, day, seed, kind)
    with open(path, "wb") as fh:
        fh.write(data)
    return expected


def seed_days(cmr, data_host, config: CollectionConfig, days, *, kinds: dict | None = None, revision: int = 1, seed=0):
    """Serve one synthetic granule per day on `data_host` and register it in the `cmr` stand-in.

    `kinds` maps a day (YYYY-MM-DD) to a granule kind (default "ok"). Returns {day: expected north-up array}.
    """
    expected = {}
    for day in days:
        d = date.fromisoformat(day) if isinstance(day, str) else day
        kind = (kinds or {}).get(d.isoformat(), "ok")
        data, expected[d.isoformat()] = _granule(config, d, seed + revision, kind)
        name = granule_name(config.short_name, d, version=config.version)
        url = data_host.put_file(f"/data//Aura_OMI_Level3/{config.short_name}.{config.version}/{d:%Y}/{name}", data)
        existing = [r for r in cmr.records.values() if r.short_name == config.short_name and r.time_start.date() == d]
        cmr.add_granule(
            config.short_name,
            config.version,
            d,
            revision,
            size=len(data),
            name=name,
            data_url=url,
            concept_id=existing[0].concept_id if existing else None,
        )
    return expected
