"""pipeline.lib.collections: gridded collections as configuration, loaded strictly from YAML (pipeline/collections).

A collection (a daily gridded product such as OMI ozone OMDOAO3e v003) is described by one YAML file, never by code.
`load_collections()` reads the files shipped in the `pipeline.collections` package and, so that a deployment can add
collections without a code change, every `*.yaml`/`*.yml` in `extra_dir` (default: the folder named by the
environment variable `GEOPUMP_COLLECTIONS_DIR`, when set). Two files declaring the same `id` are an error, whichever
folder they are in: a deployment changes a shipped collection by shipping a new version of the file, not by shadowing.

Schema (every key is checked; unknown keys are rejected at every level; errors name the file and the field):

    id: OMDOAO3e_003                 # STAC collection id, also a storage path component: ^[A-Za-z0-9_.-]+$, no '..'
    short_name: OMDOAO3e             # CMR short name
    version: "003"                   # CMR version, a STRING (YAML reads 003 unquoted as the integer 3)
    include: '^.+\\.he5$'            # regex for the data links to keep
    variable: /HDFEOS/GRIDS/.../X    # absolute HDF5 path of the 2-D variable
    row_order: south_up              # south_up (row 0 = south edge, flipped on read) | north_up
    grid:
      width: 1440                    # columns
      height: 720                    # rows
      transform: [-180, 0.25, 0, 90, 0, -0.25]  # GDAL order (x_min, x_res, 0, y_max, 0, -y_res) of the NORTH-UP output
      crs: EPSG:4326
    nodata: -1.2676506e+30           # the fill value; also the nodata of the COG written (as float32)
    fill_rule: le                    # le: raw <= nodata is fill | eq: raw == nodata (compared as float32) is fill
    scale: 1.0                       # optional, default 1; physical = offset + scale * raw
    offset: 0.0                      # optional, default 0
    scale_attribute: ScaleFactor     # optional: dataset attribute that overrides `scale` when present
    offset_attribute: Offset         # optional: dataset attribute that overrides `offset` when present
    fill_attributes: [MissingValue, _FillValue]  # optional: dataset attributes whose values are fill too
    units: DU
    valid_range: [0, 1000]           # optional [min, max] of physical values; anything outside is masked
    start_date: 2004-10-01           # first day of the product
    stac:
      title: ...
      description: ...
      license: other                 # SPDX id or "other"
      keywords: [ozone, ...]         # optional
      providers: [{name, roles, url, description}]  # optional; name required
      dashboard:is_periodic: true
      dashboard:time_density: day    # day | month | year
      extent:
        bbox: [-180, -90, 180, 90]   # must equal the grid bounds (width/height/transform)
        temporal: [2004-10-01T00:00:00Z, null]   # start must fall on start_date; end null = ongoing

Checks beyond types: the transform is north-up without rotation (x_res > 0, y_res < 0), the grid it spans equals the
declared bbox, and a geographic CRS keeps that bbox inside -180..180 / -90..90.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

#: Folder of extra collection YAML files a deployment adds without code (see the module docstring).
EXTRA_DIR_ENV = "GEOPUMP_COLLECTIONS_DIR"
_PACKAGE = "pipeline.collections"
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SUFFIXES = (".yaml", ".yml")
ROW_ORDERS = ("south_up", "north_up")
FILL_RULES = ("le", "eq")
TIME_DENSITIES = ("day", "month", "year")
PROVIDER_ROLES = ("licensor", "producer", "processor", "host")
# Grid bounds are computed in floating point; a bbox equal to them within this many degrees/metres is equal.
_BBOX_TOLERANCE = 1e-6

_TOP_KEYS = {
    "id": True,
    "short_name": True,
    "version": True,
    "include": True,
    "variable": True,
    "row_order": True,
    "grid": True,
    "nodata": True,
    "fill_rule": True,
    "scale": False,
    "offset": False,
    "scale_attribute": False,
    "offset_attribute": False,
    "fill_attributes": False,
    "units": True,
    "valid_range": False,
    "start_date": True,
    "stac": True,
}  # key -> required
_GRID_KEYS = {"width": True, "height": True, "transform": True, "crs": True}
_STAC_KEYS = {
    "title": True,
    "description": True,
    "license": True,
    "keywords": False,
    "providers": False,
    "dashboard:is_periodic": True,
    "dashboard:time_density": True,
    "extent": True,
}
_EXTENT_KEYS = {"bbox": True, "temporal": True}
_PROVIDER_KEYS = {"name": True, "roles": False, "url": False, "description": False}


class CollectionConfigError(ValueError):
    """A collection YAML file breaks the schema; the message names the file and the field."""


@dataclass(frozen=True)
class Grid:
    """The north-up output grid: size, GDAL-order geotransform and CRS."""

    width: int
    height: int
    transform: tuple[float, float, float, float, float, float]
    crs: str

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def affine(self) -> Affine:
        return Affine.from_gdal(*self.transform)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the grid."""
        x0, xres, _, y0, _, yres = self.transform
        return (x0, y0 + yres * self.height, x0 + xres * self.width, y0)


@dataclass(frozen=True)
class Provider:
    name: str
    roles: tuple[str, ...] = ()
    url: str | None = None
    description: str | None = None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name}
        if self.roles:
            out["roles"] = list(self.roles)
        if self.url:
            out["url"] = self.url
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class StacInfo:
    """The descriptive part of the STAC Collection (the `stac:` block)."""

    title: str
    description: str
    license: str
    keywords: tuple[str, ...]
    providers: tuple[Provider, ...]
    is_periodic: bool
    time_density: str
    bbox: tuple[float, float, float, float]
    temporal: tuple[datetime, datetime | None]


@dataclass(frozen=True)
class CollectionConfig:
    """One gridded collection, validated. Build it with `load_collection`/`parse_collection`, not by hand."""

    id: str
    short_name: str
    version: str
    include: str
    variable: str
    row_order: str
    grid: Grid
    nodata: float
    fill_rule: str
    units: str
    start_date: date
    stac: StacInfo
    scale: float = 1.0
    offset: float = 0.0
    scale_attribute: str = "ScaleFactor"
    offset_attribute: str = "Offset"
    fill_attributes: tuple[str, ...] = ("MissingValue", "_FillValue")
    valid_range: tuple[float, float] | None = None
    source: str = "<memory>"

    def affine(self) -> Affine:
        """The rasterio `Affine` of the north-up output grid."""
        return self.grid.affine()

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) expected for the variable."""
        return self.grid.shape

    @property
    def crs(self) -> str:
        return self.grid.crs

    @property
    def include_re(self) -> re.Pattern:
        return re.compile(self.include)

    def stac_collection(self, stac_version: str = "1.0.0") -> dict:
        """A STAC Collection dict for this collection (no links: the publisher adds self/root/items links).

        Carries VEDA's `dashboard:*` fields and `item_assets.cog_default` (external-apis.md §7.2).
        """
        start, end = self.stac.temporal
        return {
            "type": "Collection",
            "stac_version": stac_version,
            "id": self.id,
            "title": self.stac.title,
            "description": self.stac.description,
            "license": self.stac.license,
            "keywords": list(self.stac.keywords),
            "providers": [p.to_dict() for p in self.stac.providers],
            "extent": {
                "spatial": {"bbox": [list(self.stac.bbox)]},
                "temporal": {"interval": [[_rfc3339(start), _rfc3339(end) if end else None]]},
            },
            "links": [],
            "dashboard:is_periodic": self.stac.is_periodic,
            "dashboard:time_density": self.stac.time_density,
            "item_assets": {
                "cog_default": {
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": ["data", "layer"],
                    "title": f"{self.short_name} {self.variable.rsplit('/', 1)[-1]} ({self.units})",
                }
            },
            "summaries": {"short_name": [self.short_name], "version": [self.version]},
        }


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- validation helpers ----------------------------------------------------------------------------------------------
class _Checker:
    """Reads typed fields from a mapping and raises `CollectionConfigError` naming the file and the dotted field."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, rule: str) -> CollectionConfigError:
        return CollectionConfigError(f"{self.source}: {field}: {rule}")

    def keys(self, mapping: Any, spec: dict[str, bool], where: str) -> Mapping:
        if not isinstance(mapping, Mapping):
            raise self.fail(where or "<top>", f"must be a mapping, got {type(mapping).__name__}")
        prefix = f"{where}." if where else ""
        unknown = sorted(str(k) for k in mapping if k not in spec)
        if unknown:
            raise self.fail(
                prefix + unknown[0], f"unknown key (allowed here: {', '.join(sorted(spec))}); all unknown: {unknown}"
            )
        for key, required in spec.items():
            if required and key not in mapping:
                raise self.fail(prefix + key, "required key is missing")
        return mapping

    def string(self, value: Any, field: str, *, pattern: re.Pattern | None = None, hint: str = "") -> str:
        if not isinstance(value, str):
            extra = f" ({hint})" if hint else ""
            raise self.fail(field, f"must be a string, got {type(value).__name__} {value!r}{extra}")
        if not value.strip():
            raise self.fail(field, "must not be empty")
        if pattern is not None and not pattern.match(value):
            raise self.fail(field, f"{value!r} does not match {pattern.pattern}")
        return value

    def number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(field, f"must be a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise self.fail(field, f"must be finite, got {value!r}")
        return float(value)

    def positive_int(self, value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(field, f"must be a positive integer, got {value!r}")
        return value

    def choice(self, value: Any, field: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(field, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def numbers(self, value: Any, field: str, n: int) -> tuple[float, ...]:
        if not isinstance(value, list | tuple) or len(value) != n:
            raise self.fail(field, f"must be a list of {n} numbers, got {value!r}")
        return tuple(self.number(v, f"{field}[{i}]") for i, v in enumerate(value))

    def strings(self, value: Any, field: str) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            raise self.fail(field, f"must be a list of strings, got {type(value).__name__}")
        return tuple(self.string(v, f"{field}[{i}]") for i, v in enumerate(value))

    def day(self, value: Any, field: str) -> date:
        if isinstance(value, datetime):
            raise self.fail(field, f"must be a date (YYYY-MM-DD), got the date-time {value!r}")
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(field, f"must be a date YYYY-MM-DD, got {value!r}")

    def instant(self, value: Any, field: str) -> datetime:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.fail(field, f"must be an RFC 3339 date-time, got {value!r}") from None
        else:
            raise self.fail(field, f"must be an RFC 3339 date-time, got {value!r}")
        # YAML timestamps without an offset are UTC by the YAML spec; PyYAML returns them naive.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- parsing ---------------------------------------------------------------------------------------------------------
def parse_collection(data: Any, source: str = "<memory>") -> CollectionConfig:
    """Validate an already-parsed YAML mapping and build the `CollectionConfig`; `source` names it in errors."""
    c = _Checker(source)
    c.keys(data, _TOP_KEYS, "")
    cid = c.string(data["id"], "id", pattern=_ID_RE)
    if ".." in cid:
        raise c.fail("id", f"{cid!r} must not contain '..' (it is used in storage paths)")
    short_name = c.string(data["short_name"], "short_name")
    version = c.string(data["version"], "version", hint='quote it in YAML, e.g. "003"')
    include = c.string(data["include"], "include")
    try:
        re.compile(include)
    except re.error as exc:
        raise c.fail("include", f"is not a valid regular expression: {exc}") from None
    variable = c.string(data["variable"], "variable")
    if not variable.startswith("/") or variable.endswith("/") or "//" in variable:
        raise c.fail("variable", f"must be an absolute HDF5 path like /GROUP/Data Fields/NAME, got {variable!r}")
    row_order = c.choice(data["row_order"], "row_order", ROW_ORDERS)
    grid = _parse_grid(c, data["grid"])
    nodata = c.number(data["nodata"], "nodata")
    fill_rule = c.choice(data["fill_rule"], "fill_rule", FILL_RULES)
    scale = c.number(data.get("scale", 1.0), "scale")
    if scale == 0:
        raise c.fail("scale", "must not be 0")
    offset = c.number(data.get("offset", 0.0), "offset")
    scale_attribute = c.string(data.get("scale_attribute", "ScaleFactor"), "scale_attribute")
    offset_attribute = c.string(data.get("offset_attribute", "Offset"), "offset_attribute")
    fill_attributes = c.strings(data.get("fill_attributes", ["MissingValue", "_FillValue"]), "fill_attributes")
    units = c.string(data["units"], "units")
    valid_range = None
    if data.get("valid_range") is not None:
        lo, hi = c.numbers(data["valid_range"], "valid_range", 2)
        if lo >= hi:
            raise c.fail("valid_range", f"minimum {lo} must be below maximum {hi}")
        valid_range = (lo, hi)
    start_date = c.day(data["start_date"], "start_date")
    stac = _parse_stac(c, data["stac"], grid, start_date)
    return CollectionConfig(
        id=cid,
        short_name=short_name,
        version=version,
        include=include,
        variable=variable,
        row_order=row_order,
        grid=grid,
        nodata=nodata,
        fill_rule=fill_rule,
        units=units,
        start_date=start_date,
        stac=stac,
        scale=scale,
        offset=offset,
        scale_attribute=scale_attribute,
        offset_attribute=offset_attribute,
        fill_attributes=fill_attributes,
        valid_range=valid_range,
        source=source,
    )


def _parse_grid(c: _Checker, data: Any) -> Grid:
    c.keys(data, _GRID_KEYS, "grid")
    width = c.positive_int(data["width"], "grid.width")
    height = c.positive_int(data["height"], "grid.height")
    transform = c.numbers(data["transform"], "grid.transform", 6)
    x0, xres, rot1, y0, rot2, yres = transform
    if rot1 != 0 or rot2 != 0:
        raise c.fail("grid.transform", f"rotation terms (positions 2 and 4) must be 0, got {transform}")
    if xres <= 0 or yres >= 0:
        raise c.fail(
            "grid.transform",
            f"must describe a north-up grid in GDAL order [x_min, x_res > 0, 0, y_max, 0, y_res < 0], got {transform}",
        )
    crs_text = c.string(data["crs"], "grid.crs")
    try:
        crs = CRS.from_user_input(crs_text)
    except CRSError as exc:
        raise c.fail("grid.crs", f"{crs_text!r} is not a CRS rasterio understands: {exc}") from None
    grid = Grid(width, height, (x0, xres, rot1, y0, rot2, yres), crs_text)
    if crs.is_geographic:
        west, south, east, north = grid.bounds
        tol = _BBOX_TOLERANCE
        if west < -180 - tol or east > 180 + tol or south < -90 - tol or north > 90 + tol:
            raise c.fail(
                "grid.transform",
                f"with width {width} and height {height} the grid spans {_fmt_bbox(grid.bounds)}, "
                f"outside -180..180 / -90..90 of {crs_text}",
            )
    return grid


def _parse_stac(c: _Checker, data: Any, grid: Grid, start_date: date) -> StacInfo:
    c.keys(data, _STAC_KEYS, "stac")
    title = c.string(data["title"], "stac.title")
    description = c.string(data["description"], "stac.description")
    license_ = c.string(data["license"], "stac.license")
    keywords = c.strings(data.get("keywords", []), "stac.keywords")
    providers_raw = data.get("providers", [])
    if not isinstance(providers_raw, list):
        raise c.fail("stac.providers", "must be a list of {name, roles, url, description}")
    providers = []
    for i, raw in enumerate(providers_raw):
        where = f"stac.providers[{i}]"
        c.keys(raw, _PROVIDER_KEYS, where)
        roles = c.strings(raw.get("roles", []), f"{where}.roles")
        for j, role in enumerate(roles):
            c.choice(role, f"{where}.roles[{j}]", PROVIDER_ROLES)
        providers.append(
            Provider(
                name=c.string(raw["name"], f"{where}.name"),
                roles=roles,
                url=c.string(raw["url"], f"{where}.url") if raw.get("url") is not None else None,
                description=(
                    c.string(raw["description"], f"{where}.description") if raw.get("description") is not None else None
                ),
            )
        )
    is_periodic = data["dashboard:is_periodic"]
    if not isinstance(is_periodic, bool):
        raise c.fail("stac.dashboard:is_periodic", f"must be true or false, got {is_periodic!r}")
    time_density = c.choice(data["dashboard:time_density"], "stac.dashboard:time_density", TIME_DENSITIES)
    extent = c.keys(data["extent"], _EXTENT_KEYS, "stac.extent")
    bbox = c.numbers(extent["bbox"], "stac.extent.bbox", 4)
    if any(abs(a - b) > _BBOX_TOLERANCE for a, b in zip(bbox, grid.bounds, strict=True)):
        raise c.fail(
            "grid.transform",
            f"with width {grid.width} and height {grid.height} the grid spans {_fmt_bbox(grid.bounds)}, "
            f"which does not match stac.extent.bbox {_fmt_bbox(bbox)}",
        )
    temporal = extent["temporal"]
    if not isinstance(temporal, list | tuple) or len(temporal) != 2:
        raise c.fail("stac.extent.temporal", f"must be [start, end or null], got {temporal!r}")
    start = c.instant(temporal[0], "stac.extent.temporal[0]")
    end = c.instant(temporal[1], "stac.extent.temporal[1]") if temporal[1] is not None else None
    if start.date() != start_date:
        raise c.fail("stac.extent.temporal[0]", f"{_rfc3339(start)} is not on start_date {start_date.isoformat()}")
    if end is not None and end < start:
        raise c.fail("stac.extent.temporal[1]", f"{_rfc3339(end)} is before the start {_rfc3339(start)}")
    return StacInfo(
        title=title,
        description=description,
        license=license_,
        keywords=keywords,
        providers=tuple(providers),
        is_periodic=is_periodic,
        time_density=time_density,
        bbox=bbox,
        temporal=(start, end),
    )


def _fmt_bbox(bbox) -> str:
    return "[" + ", ".join(f"{v:g}" for v in bbox) + "]"


# -- loading ---------------------------------------------------------------------------------------------------------
def _parse_text(text: str, source: str) -> CollectionConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CollectionConfigError(f"{source}: <yaml>: not valid YAML: {exc}") from None
    return parse_collection(data, source)


def load_collection(path: str | os.PathLike) -> CollectionConfig:
    """Load and validate one collection YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CollectionConfigError(f"{path}: <file>: cannot be read: {exc}") from None
    return _parse_text(text, str(path))


def default_collections_dir():
    """The shipped collections folder (an importlib Traversable: a Path for a normal install)."""
    return resources.files(_PACKAGE)


def _yaml_files(directory) -> list:
    return sorted((p for p in directory.iterdir() if p.name.endswith(_SUFFIXES) and p.is_file()), key=lambda p: p.name)


def load_collections(
    directory: str | os.PathLike | None = None, *, extra_dir: str | os.PathLike | None = None
) -> dict[str, CollectionConfig]:
    """All collections by id: the YAML files in `directory` (default: the shipped `pipeline/collections/`) plus
    those in `extra_dir` (default: `$GEOPUMP_COLLECTIONS_DIR` when set; a missing folder is an error).

    Raises:
        CollectionConfigError: a file breaks the schema, an extra folder does not exist, or two files share an id.
    """
    folders = [Path(directory) if directory is not None else default_collections_dir()]
    if extra_dir is None and os.environ.get(EXTRA_DIR_ENV):
        extra_dir = os.environ[EXTRA_DIR_ENV]
    if extra_dir is not None:
        extra = Path(extra_dir)
        if not extra.is_dir():
            raise CollectionConfigError(f"{extra}: <folder>: extra collections folder does not exist")
        folders.append(extra)
    out: dict[str, CollectionConfig] = {}
    for folder in folders:
        for entry in _yaml_files(folder):
            config = _parse_text(entry.read_text(encoding="utf-8"), str(entry))
            if config.id in out:
                raise CollectionConfigError(
                    f"{config.source}: id: {config.id!r} is already declared by {out[config.id].source}"
                )
            out[config.id] = config
    return out
