"""pipeline.lib.releases: find the newest COMPLETE upstream release of Hansen GFC, GLAD-L, GLAD-S2 and RADD tiles.

Pure discovery logic over a `GcsClient` (external-apis.md §2, §3); nothing is downloaded except small text files.
A release is "complete" when every tile the source publishes is there, so a folder that is still being uploaded
is never picked; expected tile counts are parameters, because a regional deployment, the demo and the tests use
small grids (upstream: Hansen 504, GLAD-L exactly 115, GLAD-S2 18, RADD 208 or 209).

`Release.tiles` maps each GFW tile id (top-left corner, `10N_020E`) to {layer name: bucket object name}; the GLAD
4-part source names (`020E_10S_030E_00N`: left lon, bottom lat, right lon, top lat) are converted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pipeline.lib.gcs import GcsClient, GcsError, GcsNotFound, parse_gcs_url
from pipeline.lib.tiles import TileIdError, from_glad_id, parse_tile_id

log = logging.getLogger(__name__)

HANSEN_BUCKET = "earthenginepartners-hansen"
RADD_BUCKET = "gfw_gee_export"
GLAD_L_PREFIX = "GLADalert/C2/"
GLAD_L_FIRST_YEAR = 2021
GLAD_S2_PREFIX = "S2alert/"
RADD_PREFIX = "wur_radd_alerts/"
HANSEN_LAYERS = ("lossyear", "treecover2000")
#: Upstream tile counts (datapump constants, §2/§3).
HANSEN_TILES = 504
GLAD_L_TILES = 115
GLAD_S2_TILES = 18
RADD_TILES = (208, 209)
#: The single RADD layer: pixels are already GFW date_conf.
RADD_LAYER = "date_conf"
#: How many of the newest RADD folders are examined (datapump looks at 3, so a half-uploaded new folder
#: and a changed tile count never make it walk the whole history).
RADD_LOOK_BACK = 3

_HANSEN_VERSION = re.compile(r"^GFC-(?P<year>\d{4})-v(?P<major>\d+)\.(?P<minor>\d+)$")
_GFW_ID = re.compile(r"^(?P<lat>\d{2})(?P<ns>[NS])_(?P<lon>\d{3})(?P<ew>[EW])$")
_GLAD_ID = re.compile(
    r"^(?P<lon0>\d{3})(?P<ew0>[EW])_(?P<lat0>\d{2})(?P<ns0>[NS])_(?P<lon1>\d{3})(?P<ew1>[EW])_(?P<lat1>\d{2})(?P<ns1>[NS])$"
)
_DAY_FOLDER = re.compile(r"^\d{2}_\d{2}$")
_RADD_VERSION = re.compile(r"^v\d{8}$")
_S2_UPLOAD = re.compile(
    r"Updated\s+\w{3}\s+(?P<mon>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+(?P<time>\d{1,2}:\d{2}:\d{2})\s+(?P<year>\d{4})"
)


class ReleaseError(ValueError):
    """Upstream holds something discovery cannot accept (too many tiles, unparseable names or dates)."""


class IncompleteReleaseError(ReleaseError):
    """No complete release was found (yet): every candidate is missing tiles."""


@dataclass
class Release:
    """One upstream release: `tiles[gfw_tile_id][layer] = object name` in `bucket`.

    `sizes` holds object name -> bytes where a listing gave them, so downloads can check `expected_size`.
    """

    source: str
    version: str
    tiles: dict[str, dict[str, str]]
    bucket: str
    sizes: dict[str, int] = field(default_factory=dict)

    def expected_size(self, name: str) -> int | None:
        return self.sizes.get(name)


# -- tile ids ---------------------------------------------------------------------------------------


def tile_id_from_name(stem: str) -> str:
    """A GFW tile id from a GFW id (`10N_020E`) or a GLAD 4-part name (`020E_00N_030E_10N`); raises ReleaseError."""
    try:
        if _GLAD_ID.match(stem):
            return from_glad_id(stem)
        if _GFW_ID.match(stem):
            parse_tile_id(stem)
            return stem
    except TileIdError as exc:
        raise ReleaseError(str(exc)) from exc
    raise ReleaseError(f"{stem!r} is neither a GFW tile id (10N_020E) nor a GLAD tile name (020E_00N_030E_10N)")


def _basename(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def _tifs(items: Iterable[dict]) -> list[dict]:
    return [i for i in items if i["name"].lower().endswith(".tif")]


# -- Hansen -----------------------------------------------------------------------------------------


def hansen_version_key(version: str) -> tuple[int, int, int]:
    """Sort key of `GFC-2024-v1.12`: (2024, 1, 12), so v1.9 < v1.12 (numeric, not lexicographic)."""
    m = _HANSEN_VERSION.match(version)
    if not m:
        raise ReleaseError(f"Hansen: {version!r} is not a GFC-YYYY-vX.YY folder name")
    return int(m["year"]), int(m["major"]), int(m["minor"])


def latest_hansen(
    client: GcsClient,
    bucket: str = HANSEN_BUCKET,
    expected: int | None = None,
    layers: tuple[str, ...] = HANSEN_LAYERS,
) -> Release:
    """The newest `GFC-YYYY-vX.YY` folder whose layer lists (`{layer}.txt`) agree and whose files all exist.

    `expected` (504 upstream) additionally pins the tile count; None accepts any non-empty, consistent set.
    An incomplete newest folder (lists missing, or files listed but not uploaded yet) falls back to the previous one.
    """
    listing = client.list(bucket, prefix="GFC-", delimiter="/")
    versions = [p.rstrip("/") for p in listing.prefixes if _HANSEN_VERSION.match(p.rstrip("/"))]
    if not versions:
        raise IncompleteReleaseError(f"Hansen: no GFC-YYYY-vX.YY folder in gs://{bucket}/")
    problems = []
    for version in sorted(versions, key=hansen_version_key, reverse=True):
        try:
            return _hansen_release(client, bucket, version, layers, expected)
        except IncompleteReleaseError as exc:
            log.warning("%s", exc)
            problems.append(str(exc))
    raise IncompleteReleaseError("Hansen: no complete release; " + "; ".join(problems))


def _hansen_release(client, bucket, version, layers, expected) -> Release:
    rx = re.compile(rf"^Hansen_{re.escape(version)}_(?P<layer>[A-Za-z0-9]+)_(?P<tile>\d{{2}}[NS]_\d{{3}}[EW])\.tif$")
    tiles: dict[str, dict[str, str]] = {}
    sizes: dict[str, int] = {}
    for layer in layers:
        list_name = f"{version}/{layer}.txt"
        try:
            text = client.read_text(bucket, list_name)
        except GcsNotFound as exc:
            raise IncompleteReleaseError(f"Hansen {version}: layer list gs://{bucket}/{list_name} is missing") from exc
        listed: dict[str, str] = {}
        for n, line in enumerate(text.splitlines(), 1):
            url = line.strip()
            if not url:
                continue
            try:
                url_bucket, name = parse_gcs_url(url)
            except GcsError as exc:
                raise ReleaseError(f"Hansen {version}: {list_name} line {n}: {exc}") from exc
            m = rx.match(_basename(name))
            if not m or m["layer"] != layer:
                raise ReleaseError(
                    f"Hansen {version}: {list_name} line {n}: {_basename(name)!r} is not "
                    f"Hansen_{version}_{layer}_{{tile}}.tif"
                )
            if url_bucket != bucket:
                name = f"{version}/{_basename(name)}"  # listed elsewhere; the files live in this folder
            listed[m["tile"]] = name
        if not listed:
            raise IncompleteReleaseError(f"Hansen {version}: {list_name} lists no tiles")
        # The .txt can be published before the files; only files that exist make a complete layer.
        stored = {
            i["name"]: i["size"]
            for i in _tifs(client.list(bucket, prefix=f"{version}/Hansen_{version}_{layer}_").items)
        }
        missing = sorted(t for t, name in listed.items() if name not in stored)
        if missing:
            raise IncompleteReleaseError(
                f"Hansen {version}: {len(missing)} of {len(listed)} {layer} tiles listed in {list_name} are not "
                f"in the bucket yet (e.g. {', '.join(missing[:3])})"
            )
        for tile, name in listed.items():
            tiles.setdefault(tile, {})[layer] = name
            sizes[name] = stored[name]
    partial = sorted(t for t, lay in tiles.items() if set(lay) != set(layers))
    if partial:
        raise IncompleteReleaseError(
            f"Hansen {version}: {len(partial)} tiles lack one of the layers {', '.join(layers)} "
            f"(e.g. {', '.join(partial[:3])})"
        )
    _check_count(f"Hansen {version}", len(tiles), expected)
    return Release("hansen", version, dict(sorted(tiles.items())), bucket, sizes)


def _check_count(what: str, count: int, expected: int | None) -> None:
    if expected is None:
        return
    if count > expected:
        raise ReleaseError(f"{what}: {count} tiles, more than the expected {expected}; if the extent grew, raise it")
    if count < expected:
        raise IncompleteReleaseError(f"{what}: {count} of {expected} expected tiles")


# -- GLAD-L -----------------------------------------------------------------------------------------


def _glad_l_layers(items: list[dict], yy: str, where: str) -> tuple[dict[str, dict[str, str]], dict[str, int], int]:
    """Tiles with their alert{YY}/alertDate{YY} objects in one folder, plus sizes and the alertDate file count."""
    tiles: dict[str, dict[str, str]] = {}
    sizes: dict[str, int] = {}
    dates = 0
    for item in _tifs(items):
        base = _basename(item["name"])
        for layer in (f"alertDate{yy}", f"alert{yy}"):
            if base.startswith(layer + "_"):
                stem = base[len(layer) + 1 : -4]
                try:
                    tile = tile_id_from_name(stem)
                except ReleaseError as exc:
                    raise ReleaseError(f"GLAD-L: {where}/{base}: {exc}") from exc
                tiles.setdefault(tile, {})[layer] = item["name"]
                sizes[item["name"]] = item["size"]
                dates += layer.startswith("alertDate")
                break
    return tiles, sizes, dates


def latest_glad_l(
    client: GcsClient,
    today: date,
    bucket: str = HANSEN_BUCKET,
    expected: int = GLAD_L_TILES,
    max_days_back: int = 365,
    first_year: int = GLAD_L_FIRST_YEAR,
    prefix: str = GLAD_L_PREFIX,
) -> Release:
    """GLAD-L tiles of every data year `first_year..today.year`, per datapump's `GLADLAlertsSync` rules.

    For each data year YY: `{year}/final/` with exactly `expected` alertDate{YY} files is used; otherwise the newest
    daily folder `{release_year}/{MM_DD}/` (today back to `max_days_back` days, not before the data year) holding
    `expected` alertDate{YY} files and their alert{YY} partners. More than `expected` anywhere raises. The version is
    `v{YYYYMMDD}` of the day used for the current year (today's date when even the current year is final).
    Layers per tile: `alert{YY}` and `alertDate{YY}` for each year.

    Instead of listing every one of 365 days, the day folders of each release year are listed once (same result).
    """
    prefix = prefix.rstrip("/") + "/"
    oldest = today - timedelta(days=max_days_back)
    tiles: dict[str, dict[str, str]] = {}
    sizes: dict[str, int] = {}
    version = f"v{today:%Y%m%d}"
    day_folders: dict[int, list[date]] = {}

    def days_of(release_year: int) -> list[date]:
        if release_year not in day_folders:
            found = []
            for p in client.list(bucket, prefix=f"{prefix}{release_year}/", delimiter="/").prefixes:
                folder = _basename(p)
                if _DAY_FOLDER.match(folder):
                    try:
                        found.append(datetime.strptime(f"{release_year}_{folder}", "%Y_%m_%d").date())
                    except ValueError:
                        log.warning("GLAD-L: ignoring folder gs://%s/%s (not a calendar day)", bucket, p)
            day_folders[release_year] = sorted(found, reverse=True)
        return day_folders[release_year]

    for year in range(first_year, today.year + 1):
        yy = f"{year % 100:02d}"
        final = f"{prefix}{year}/final"
        year_tiles, year_sizes, count = _glad_l_layers(client.list(bucket, prefix=f"{final}/").items, yy, final)
        if count > expected:
            raise ReleaseError(
                f"GLAD-L: {count} alertDate{yy} files in gs://{bucket}/{final}/, more than the expected {expected}; "
                "if the extent grew, raise the expected tile count"
            )
        used = final if count == expected and _paired(year_tiles, yy) else None
        if used is None:
            for day in (d for ry in range(today.year, year - 1, -1) for d in days_of(ry)):
                if day > today:
                    continue
                if day < oldest:
                    break
                folder = f"{prefix}{day.year}/{day:%m_%d}"
                year_tiles, year_sizes, count = _glad_l_layers(
                    client.list(bucket, prefix=f"{folder}/").items, yy, folder
                )
                if count > expected:
                    raise ReleaseError(
                        f"GLAD-L: {count} alertDate{yy} files in gs://{bucket}/{folder}/, more than the expected "
                        f"{expected}; if the extent grew, raise the expected tile count"
                    )
                if count == expected and _paired(year_tiles, yy):
                    used = folder
                    if year == today.year:
                        version = f"v{day:%Y%m%d}"
                    break
                if count:
                    log.info(
                        "GLAD-L: gs://%s/%s/ has %d of %d alertDate%s tiles; looking further back",
                        bucket,
                        folder,
                        count,
                        expected,
                        yy,
                    )
        if used is None:
            raise IncompleteReleaseError(
                f"GLAD-L: no complete set of {expected} alertDate{yy} tiles for {year}, neither in "
                f"gs://{bucket}/{final}/ nor in a daily folder from {today} back to {max(oldest, date(year, 1, 1))}"
            )
        for tile, layers in year_tiles.items():
            tiles.setdefault(tile, {}).update(layers)
        sizes.update(year_sizes)
    return Release("glad_l", version, dict(sorted(tiles.items())), bucket, sizes)


def _paired(tiles: dict[str, dict[str, str]], yy: str) -> bool:
    """Every tile has both alert{YY} and alertDate{YY} (an upload in progress may have only one)."""
    return all(len(layers) == 2 for layers in tiles.values())


# -- GLAD-S2 ----------------------------------------------------------------------------------------


def parse_s2_upload_date(text: str) -> str:
    """`Updated Fri Apr 15 14:27:01 2022 UTC` -> `v20220415` (datapump parses text[12:-5] as `%b %d %H:%M:%S %Y`)."""
    m = _S2_UPLOAD.search(text or "")
    if not m:
        raise ReleaseError(f"GLAD-S2: uploadDate.txt {text[:80]!r} is not like 'Updated Fri Apr 15 14:27:01 2022 UTC'")
    try:
        when = datetime.strptime(f"{m['mon']} {m['day']} {m['time']} {m['year']}", "%b %d %H:%M:%S %Y")
    except ValueError as exc:
        raise ReleaseError(f"GLAD-S2: uploadDate.txt {text[:80]!r}: {exc}") from exc
    return f"v{when:%Y%m%d}"


def latest_glad_s2(
    client: GcsClient,
    bucket: str = HANSEN_BUCKET,
    prefix: str = GLAD_S2_PREFIX,
    expected: int | None = None,
) -> Release:
    """GLAD-S2 tiles (updated in place) with the version from `S2alert/uploadDate.txt`; layers `alert`, `alertDate`.

    Every tile needs both layers. `expected` (18 upstream; datapump does not check) pins the tile count.
    """
    prefix = prefix.rstrip("/") + "/"
    version = parse_s2_upload_date(client.read_text(bucket, f"{prefix}uploadDate.txt"))
    tiles: dict[str, dict[str, str]] = {}
    sizes: dict[str, int] = {}
    for layer in ("alert", "alertDate"):
        folder = f"{prefix}{layer}/"
        for item in _tifs(client.list(bucket, prefix=folder).items):
            rel = item["name"][len(folder) :]
            if "/" in rel:  # only the tiles directly in the layer folder
                continue
            try:
                tile = tile_id_from_name(rel[:-4])
            except ReleaseError as exc:
                raise ReleaseError(f"GLAD-S2: gs://{bucket}/{item['name']}: {exc}") from exc
            tiles.setdefault(tile, {})[layer] = item["name"]
            sizes[item["name"]] = item["size"]
    if not tiles:
        raise IncompleteReleaseError(f"GLAD-S2 {version}: no tiles in gs://{bucket}/{prefix}alert/ and alertDate/")
    partial = sorted(t for t, lay in tiles.items() if len(lay) != 2)
    if partial:
        raise IncompleteReleaseError(
            f"GLAD-S2 {version}: {len(partial)} tiles lack alert or alertDate (e.g. {', '.join(partial[:3])})"
        )
    _check_count(f"GLAD-S2 {version}", len(tiles), expected)
    return Release("glad_s2", version, dict(sorted(tiles.items())), bucket, sizes)


# -- RADD -------------------------------------------------------------------------------------------


def latest_radd(
    client: GcsClient,
    bucket: str = RADD_BUCKET,
    prefix: str = RADD_PREFIX,
    expected: tuple[int, ...] | int = RADD_TILES,
    look_back: int = RADD_LOOK_BACK,
) -> Release:
    """The newest `wur_radd_alerts/vYYYYMMDD/` folder whose .tif count is one of `expected` (datapump rules).

    The newest `look_back` folders are examined newest first; a count above every expected value raises.
    File names inside a folder are UNVERIFIED upstream; geopump's stand-in uses `{gfw_tile_id}.tif`
    (e.g. `wur_radd_alerts/v20261120/00N_010E.tif`), and GLAD 4-part names are accepted too. One layer, `date_conf`.
    """
    expected = (expected,) if isinstance(expected, int) else tuple(expected)
    prefix = prefix.rstrip("/") + "/"
    folders = [_basename(p) for p in client.list(bucket, prefix=prefix, delimiter="/").prefixes]
    versions = sorted((f for f in folders if _RADD_VERSION.match(f)), reverse=True)
    if not versions:
        raise IncompleteReleaseError(f"RADD: no vYYYYMMDD folder in gs://{bucket}/{prefix}")
    seen = []
    for version in versions[:look_back]:
        items = _tifs(client.list(bucket, prefix=f"{prefix}{version}/").items)
        count = len(items)
        seen.append(f"{version}: {count}")
        if count in expected:
            tiles: dict[str, dict[str, str]] = {}
            for item in items:
                rel = item["name"][len(prefix) + len(version) + 1 :]
                try:
                    tile = tile_id_from_name(rel[:-4])
                except ReleaseError as exc:
                    raise ReleaseError(
                        f"RADD {version}: gs://{bucket}/{item['name']}: file names must be {{tile_id}}.tif ({exc})"
                    ) from exc
                if tile in tiles:
                    raise ReleaseError(f"RADD {version}: tile {tile} appears twice ({tiles[tile][RADD_LAYER]}, {rel})")
                tiles[tile] = {RADD_LAYER: item["name"]}
            return Release("radd", version, dict(sorted(tiles.items())), bucket, {i["name"]: i["size"] for i in items})
        if all(count > n for n in expected):
            raise ReleaseError(
                f"RADD: {count} .tif files in gs://{bucket}/{prefix}{version}/, more than any expected count "
                f"{list(expected)}; if the extent changed, update the expected tile counts"
            )
        log.info(
            "RADD: gs://%s/%s%s/ has %d tiles (expected %s); trying an older folder",
            bucket,
            prefix,
            version,
            count,
            list(expected),
        )
    raise IncompleteReleaseError(
        f"RADD: none of the {len(seen)} newest folders in gs://{bucket}/{prefix} is complete "
        f"(tile counts {', '.join(seen)}; expected {list(expected)})"
    )
