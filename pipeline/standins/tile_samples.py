"""pipeline.standins.tile_samples: deterministic, realistic synthetic Hansen / GLAD / RADD GeoTIFF tiles.

Each generator returns the bytes of a GeoTIFF (DEFLATE, 256 px tiles, EPSG:4326) covering one 10x10° GFW tile
(`10N_020E` = top-left corner; external-apis.md §2.5) at `size` x `size` pixels, with the source's encoding:

- Hansen (§3): `lossyear` uint8 0 = no loss, n = loss in 2000+n; `treecover2000` uint8 canopy % 0..100. No nodata
  tag (0 is a real value in both; the 255 nodata of some docs is UNVERIFIED).
- GLAD-L (§2.2): `alert{YY}` uint8 0 / 2 probable / 3 confirmed, `alertDate{YY}` uint16 day of year in 20YY.
- GLAD-S2 (§2.3): `alert` uint8 0 / 1 low / 2..4 high, `alertDate` uint16 days since 2018-12-31.
- RADD (§2.4): uint16 GFW date_conf (2xxxx low, 3xxxx high, days since 2014-12-31).
Alert layers carry nodata 0.

Values are smooth-noise fields, so loss and alerts come in patches along fronts (dates progress across a patch)
rather than as salt-and-pepper noise. Every field is seeded by tile + source (+ data year), so the same call gives
the same bytes; `as_of` only hides alerts dated later, so a newer release is a superset of an older one, like
real daily updates. `truncated(data)` cuts a file short to simulate a broken download.
"""

from __future__ import annotations

import re
import zlib
from datetime import date

import numpy as np
from rasterio.io import MemoryFile

from pipeline.lib.tiles import tile_transform

DEFAULT_SIZE = 200
HANSEN_VERSION = "GFC-2024-v1.12"
S2_BASE = date(2018, 12, 31)
DATE_CONF_BASE = date(2014, 12, 31)
#: Alert dates of S2 and RADD span this period; `as_of` reveals the part up to a release day.
ALERT_START = date(2019, 1, 1)
ALERT_END = date(2030, 12, 31)


# -- noise ----------------------------------------------------------------------------------------
def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(str(p) for p in parts).encode()))


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise: a (cells+1)² random lattice bilinearly upsampled to size² (float 0..1)."""
    lattice = rng.random((cells + 1, cells + 1))
    x = np.linspace(0, cells, size, endpoint=False)
    i = np.minimum(x.astype(int), cells - 1)
    f = x - i
    f = f * f * (3 - 2 * f)  # smoothstep, so patch edges are not blocky
    rows = lattice[i] * (1 - f)[:, None] + lattice[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _field(rng: np.random.Generator, size: int, cells: tuple[int, ...] = (3, 7, 17)) -> np.ndarray:
    """Multi-octave noise, rank-normalised to uniform 0..1 so a quantile threshold selects an exact share."""
    return _rank(sum(_smooth(rng, size, c) / (k + 1) for k, c in enumerate(cells)))


def _rank(values: np.ndarray) -> np.ndarray:
    """Values replaced by their rank, scaled to 0..1 (a uniform distribution with the same spatial pattern)."""
    ranks = np.empty(values.size)
    ranks[np.argsort(values, axis=None, kind="stable")] = np.arange(values.size)
    return (ranks / max(values.size - 1, 1)).reshape(values.shape)


def _front(rng: np.random.Generator, size: int) -> np.ndarray:
    """0..1 progression across the tile along a random direction, wobbling with noise (a deforestation front)."""
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    g = x * np.cos(angle) + y * np.sin(angle)
    g = (g - g.min()) / max(np.ptp(g), 1e-9)
    return np.clip(0.75 * g + 0.25 * _field(rng, size, (5, 11)), 0, 1)


def _geotiff(arr: np.ndarray, tile: str, nodata, tags: dict | None = None) -> bytes:
    size = arr.shape[0]
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": arr.dtype.name,
        "crs": "EPSG:4326",
        "transform": tile_transform(tile, size),
        "compress": "deflate",
        "predictor": 2,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(arr, 1)
            if tags:
                ds.update_tags(**tags)
        return bytes(mem.read())


def _hansen_year(version: str) -> int:
    m = re.match(r"^GFC-(\d{4})-v\d+\.\d+$", version)
    if not m:
        raise ValueError(f"Hansen version {version!r} is not like GFC-2024-v1.12")
    return int(m[1])


# -- Hansen ---------------------------------------------------------------------------------------
def _treecover(tile: str, size: int) -> np.ndarray:
    # Seeded without the version: canopy in 2000 does not change between releases.
    f = _field(_rng(tile, "treecover2000"), size)
    texture = _field(_rng(tile, "treecover2000", "texture"), size, (29, 53))
    cover = np.clip((f - 0.3) / 0.55, 0, 1) * 100 - 8 * texture
    return np.clip(np.rint(cover), 0, 100).astype("uint8")


def hansen_treecover2000(tile: str, size: int = DEFAULT_SIZE, version: str = HANSEN_VERSION) -> bytes:
    """Canopy cover 2000 (%): forest blocks with open land between them."""
    return _geotiff(_treecover(tile, size), tile, None, {"source": "geopump stand-in", "version": version})


def hansen_lossyear_array(tile: str, size: int = DEFAULT_SIZE, version: str = HANSEN_VERSION) -> np.ndarray:
    """The `lossyear` pixels (for tests that check statistics against ground truth)."""
    last = _hansen_year(version) - 2000
    cover = _treecover(tile, size)
    loss_field = _field(_rng(tile, "lossyear"), size)
    forest = cover > 30
    # ~10% of the tile is lost, always inside forest (fewer where the tile is mostly open land).
    n_loss = min(int(0.10 * size * size), int(forest.sum()))
    loss = np.zeros((size, size), bool)
    if n_loss:
        threshold = np.sort(loss_field[forest])[-n_loss]
        loss = forest & (loss_field >= threshold)
    # Seeded without the version, so a newer release only adds the newest year's loss to older pixels.
    front = _front(_rng(tile, "lossyear", "front"), size)
    year = np.clip(1 + np.floor(front * 25).astype(int), 1, 25)
    out = np.where(loss & (year <= last), year, 0)
    return out.astype("uint8")


def hansen_lossyear(tile: str, size: int = DEFAULT_SIZE, version: str = HANSEN_VERSION) -> bytes:
    """Loss year (0 none, n = 2000+n) in ~10% of the tile, inside forest, in patches advancing year by year."""
    return _geotiff(hansen_lossyear_array(tile, size, version), tile, None, {"version": version})


# -- alerts ---------------------------------------------------------------------------------------
def _alerts(tile: str, source: str, size: int, start: date, end: date, share: float):
    """(alert mask, confidence level 0..1, alert date) for patches covering `share` of the tile."""
    rng = _rng(tile, source, start.isoformat())
    f = _field(rng, size, (4, 9, 21))
    mask = f >= 1 - share
    # Patch cores (highest noise) are the most confident detections.
    level = np.where(mask, (f - (1 - share)) / share, 0.0)
    # Dates: each patch area has its own period (coarse noise), drifting along a front across the tile, so
    # neighbouring pixels share similar dates while every part of the period shows up somewhere in the tile.
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    drift = x * np.cos(angle) + y * np.sin(angle)
    t = _rank(0.7 * _field(rng, size, (3, 6)) + 0.3 * drift + 0.05 * _field(rng, size, (23,)))
    span = (end - start).days
    offset = np.rint(t * span).astype(int)
    days = start.toordinal() + offset
    return mask, level, days


def _visible(mask, days, as_of: date | None):
    return mask if as_of is None else mask & (days <= as_of.toordinal())


def glad_l_alert(tile: str, year: int, size: int = DEFAULT_SIZE, as_of: date | None = None) -> bytes:
    """GLAD-L `alert{YY}`: 2 probable at patch edges, 3 confirmed in patch cores; 0 elsewhere."""
    mask, level, days = _alerts(tile, "glad_l", size, date(year, 1, 1), date(year, 12, 31), 0.04)
    mask = _visible(mask, days, as_of)
    arr = np.where(mask, np.where(level > 0.35, 3, 2), 0).astype("uint8")
    return _geotiff(arr, tile, 0)


def glad_l_alert_date(tile: str, year: int, size: int = DEFAULT_SIZE, as_of: date | None = None) -> bytes:
    """GLAD-L `alertDate{YY}`: day of year (1..366) of each alert in `alert{YY}`; 0 elsewhere."""
    mask, _, days = _alerts(tile, "glad_l", size, date(year, 1, 1), date(year, 12, 31), 0.04)
    mask = _visible(mask, days, as_of)
    doy = days - date(year, 1, 1).toordinal() + 1
    return _geotiff(np.where(mask, doy, 0).astype("uint16"), tile, 0)


def glad_s2_alert(tile: str, size: int = DEFAULT_SIZE, as_of: date | None = None) -> bytes:
    """GLAD-S2 `alert`: 1 low at patch edges, 2..4 high towards patch cores; 0 elsewhere."""
    mask, level, days = _alerts(tile, "glad_s2", size, ALERT_START, ALERT_END, 0.06)
    mask = _visible(mask, days, as_of)
    conf = 1 + np.digitize(level, [0.3, 0.6, 0.85])
    return _geotiff(np.where(mask, conf, 0).astype("uint8"), tile, 0)


def glad_s2_alert_date(tile: str, size: int = DEFAULT_SIZE, as_of: date | None = None) -> bytes:
    """GLAD-S2 `alertDate`: days since 2018-12-31 (1 = 2019-01-01) of each alert; 0 elsewhere."""
    mask, _, days = _alerts(tile, "glad_s2", size, ALERT_START, ALERT_END, 0.06)
    mask = _visible(mask, days, as_of)
    return _geotiff(np.where(mask, days - S2_BASE.toordinal(), 0).astype("uint16"), tile, 0)


def radd_alerts(tile: str, size: int = DEFAULT_SIZE, as_of: date | None = None) -> bytes:
    """RADD date_conf: 20000 low / 30000 high + days since 2014-12-31; 0 elsewhere."""
    mask, level, days = _alerts(tile, "radd", size, ALERT_START, ALERT_END, 0.05)
    mask = _visible(mask, days, as_of)
    value = np.where(level > 0.4, 30000, 20000) + (days - DATE_CONF_BASE.toordinal())
    return _geotiff(np.where(mask, value, 0).astype("uint16"), tile, 0)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first `keep` share of `data` (a download cut off mid-file; at least 1 byte shorter)."""
    return data[: min(len(data) - 1, int(len(data) * keep))]


def read_array(data: bytes) -> np.ndarray:
    """Band 1 of GeoTIFF bytes (test helper)."""
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read(1)


__all__ = [
    "DEFAULT_SIZE",
    "HANSEN_VERSION",
    "glad_l_alert",
    "glad_l_alert_date",
    "glad_s2_alert",
    "glad_s2_alert_date",
    "hansen_lossyear",
    "hansen_lossyear_array",
    "hansen_treecover2000",
    "radd_alerts",
    "read_array",
    "truncated",
]
