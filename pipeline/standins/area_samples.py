"""pipeline.standins.area_samples: deterministic, realistic user areas and geostores for the stand-ins.

`generate_areas(n, seed)` makes `n` pending areas (JSON:API resources as the Areas API serves
them) and their geostores (attributes as the Geostore API serves them) around fire/deforestation
hotspots. Polygons are 1-50 km across, some overlap, some are MultiPolygons, some have holes, a
few areas share one geostore, and `invalid_fraction` of the areas break one GFW rule each (see
`INVALID_KINDS`). `generate_areas_with_kinds` also returns which kind each area is, so tests
can check the validation outcome of every area.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import shapely

from pipeline.standins.areas import default_area_attributes

#: (lon, lat) centres: Amazon, Congo, Borneo, Australia, Siberia, California.
DEFAULT_HOTSPOTS: list[tuple[float, float]] = [
    (-60, -8),
    (23, -2),
    (114, 0),
    (133, -20),
    (110, 60),
    (-120, 38),
]

#: Kinds of broken areas, in the order they are handed out.
INVALID_KINDS = ("bad_id", "huge", "linestring", "empty", "bowtie", "missing_geostore")
#: Kinds of good areas.
VALID_KINDS = ("polygon", "polygon_with_hole", "multipolygon", "shared")
#: What `pipeline.lib.areas.validate_areas` should say about each kind (None = accepted).
EXPECTED_REASON: dict[str, str | None] = {
    "polygon": None,
    "polygon_with_hole": None,
    "multipolygon": None,
    "shared": None,
    "bowtie": None,  # self-intersecting but repairable: accepted with repaired=True
    "bad_id": "is not 32 hex characters",
    "huge": ">= 1e9",
    "linestring": "geometry type LineString is not Polygon/MultiPolygon",
    "empty": "geometry is empty",
    "missing_geostore": "geostore not found",
}

KM_PER_DEG = 111.32
_BASE_TIME = datetime(2026, 9, 26, 21, 0, 0, tzinfo=UTC)


def geostore_hash(geometry: dict) -> str:
    """md5 hex of the canonical geometry JSON, the way geostore ids look."""
    return hashlib.md5(_canonical(geometry).encode()).hexdigest()


def approx_area_ha(geom) -> float:
    """Hectares from degrees² scaled by cos(centroid latitude); within ~1% for shapes < 50 km."""
    if geom is None or geom.is_empty:
        return 0.0
    lat = geom.centroid.y
    return float(geom.area * KM_PER_DEG**2 * math.cos(math.radians(lat)) * 100.0)


def _star_ring(
    rng: random.Random, lon: float, lat: float, r_km: float, k: int, rmin: float, rmax: float, clockwise=False
):
    """A simple star-shaped ring around (lon, lat): angles sorted, radii in [rmin, rmax]*r_km."""
    coslat = max(0.05, math.cos(math.radians(lat)))
    step = 2 * math.pi / k
    angles = [i * step + rng.uniform(0.05, 0.95) * step for i in range(k)]
    if clockwise:
        angles = angles[::-1]
    ring = []
    for a in angles:
        rr = r_km * rng.uniform(rmin, rmax)
        ring.append(
            [
                round(lon + rr * math.cos(a) / (KM_PER_DEG * coslat), 6),
                round(lat + rr * math.sin(a) / KM_PER_DEG, 6),
            ]
        )
    ring.append(list(ring[0]))
    return ring


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _canonical(geometry: dict) -> str:
    return json.dumps(geometry, sort_keys=True, separators=(",", ":"))


def _geostore_records(geometries: list[dict]) -> list[dict]:
    """Geostore attributes for each geometry, computed vectorised (hash, areaHa, bbox)."""
    if not geometries:
        return []
    texts = [_canonical(g) for g in geometries]
    geoms = shapely.from_geojson(texts, on_invalid="ignore")
    fixed = geoms.copy()
    bad = ~shapely.is_valid(geoms) & ~shapely.is_empty(geoms)
    if bad.any():
        fixed[bad] = shapely.make_valid(geoms[bad])
    kind = shapely.get_type_id(fixed)
    polygonal = np.isin(kind, (3, 6, 7))  # Polygon, MultiPolygon, GeometryCollection (repaired)
    lat = np.zeros(len(fixed))
    nonempty = ~shapely.is_empty(fixed)
    lat[nonempty] = shapely.get_y(shapely.centroid(fixed[nonempty]))
    area = np.where(
        polygonal & ~shapely.is_empty(fixed),
        shapely.area(fixed) * KM_PER_DEG**2 * np.cos(np.radians(lat)) * 100.0,
        0.0,
    )
    bounds = shapely.bounds(geoms)
    records = []
    for geometry, text, ha, bb in zip(geometries, texts, area, bounds, strict=False):
        gid = hashlib.md5(text.encode()).hexdigest()
        records.append(
            {
                "geojson": {
                    "type": "FeatureCollection",
                    "features": [{"type": "Feature", "properties": None, "geometry": geometry}],
                    "crs": {},
                },
                "hash": gid,
                "provider": {},
                "areaHa": round(float(ha), 4),
                "bbox": [] if np.isnan(bb).any() else [round(float(v), 6) for v in bb],
                "lock": False,
                "info": {"use": {}},
            }
        )
    return records


def generate_areas_with_kinds(
    n: int,
    seed: int = 0,
    hotspots: list[tuple[float, float]] | None = None,
    invalid_fraction: float = 0.05,
) -> tuple[list[dict], dict[str, dict], dict[str, str]]:
    """Like `generate_areas`, plus {area id: kind} with kind in VALID_KINDS or INVALID_KINDS."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not (0.0 <= invalid_fraction <= 1.0):
        raise ValueError(f"invalid_fraction must be within [0, 1], got {invalid_fraction!r}")
    hotspots = list(hotspots) if hotspots is not None else list(DEFAULT_HOTSPOTS)
    if not hotspots:
        raise ValueError("hotspots must hold at least one (lon, lat) centre")
    for h in hotspots:
        if len(h) != 2 or not (-180 <= h[0] <= 180 and -90 <= h[1] <= 90):
            raise ValueError(f"hotspot {h!r} is not a (lon, lat) pair within [-180, 180] x [-90, 90]")

    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    n_invalid = round(n * invalid_fraction)
    n_shared = (n // 100 if n >= 100 else (1 if n >= 3 else 0)) if n - n_invalid >= 2 else 0
    kinds = ["polygon"] * n
    for j, idx in enumerate(order[:n_invalid]):
        kinds[idx] = INVALID_KINDS[j % len(INVALID_KINDS)]
    for idx in order[n_invalid : n_invalid + n_shared]:
        kinds[idx] = "shared"
    for idx in order[n_invalid + n_shared :]:
        u = rng.random()
        kinds[idx] = "polygon" if u < 0.65 else ("polygon_with_hole" if u < 0.8 else "multipolygon")

    users = [f"{rng.getrandbits(96):024x}" for _ in range(max(1, n // 3))]
    used_ids: set[str] = set()
    areas: list[dict] = []
    geostores: dict[str, dict] = {}
    kind_of: dict[str, str] = {}
    regular_geostores: list[str] = []
    pending: list[dict] = []  # geometries whose geostore records are built in one vectorised pass

    for i in range(n):
        kind = kinds[i]
        hlon, hlat = hotspots[i % len(hotspots)]
        lon = hlon + rng.gauss(0, 1.5)
        lat = min(80.0, max(-80.0, hlat + rng.gauss(0, 1.0)))
        lon = ((lon + 180) % 360) - 180
        r_km = math.exp(rng.uniform(math.log(1.0), math.log(50.0))) / 2
        coslat = max(0.05, math.cos(math.radians(lat)))
        geometry = None
        gid = None
        if kind == "polygon":
            geometry = {
                "type": "Polygon",
                "coordinates": [_star_ring(rng, lon, lat, r_km, rng.randint(5, 16), 0.6, 1.0)],
            }
        elif kind == "polygon_with_hole":
            shell = _star_ring(rng, lon, lat, r_km, rng.randint(6, 16), 0.6, 1.0)
            hole = _star_ring(rng, lon, lat, r_km, rng.randint(4, 8), 0.15, 0.4, clockwise=True)
            geometry = {"type": "Polygon", "coordinates": [shell, hole]}
        elif kind == "multipolygon":
            parts = []
            for p in range(rng.randint(2, 3)):
                plon = lon + p * 2.5 * r_km / (KM_PER_DEG * coslat)
                parts.append([_star_ring(rng, plon, lat, r_km, rng.randint(5, 10), 0.5, 1.0)])
            geometry = {"type": "MultiPolygon", "coordinates": parts}
        elif kind == "huge":
            clat = min(45.0, max(-45.0, lat))
            w, s, e, nn = lon - 20, clat - 20, lon + 20, clat + 20
            geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, nn], [w, nn], [w, s]]]}
        elif kind == "linestring":
            geometry = {
                "type": "LineString",
                "coordinates": _star_ring(rng, lon, lat, r_km, 4, 0.6, 1.0)[:-1],
            }
        elif kind == "empty":
            geometry = {"type": "Polygon", "coordinates": []}
        elif kind == "bowtie":
            dx, dy = r_km / (KM_PER_DEG * coslat), r_km / KM_PER_DEG
            w, s, e, nn = round(lon - dx, 6), round(lat - dy, 6), round(lon + dx, 6), round(lat + dy, 6)
            geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, nn], [e, s], [w, nn], [w, s]]]}
        elif kind == "bad_id":
            geometry = {"type": "Polygon", "coordinates": [_star_ring(rng, lon, lat, r_km, 6, 0.6, 1.0)]}
            full = geostore_hash(geometry)
            gid = full[:24] if i % 2 else full + "0"
        elif kind == "missing_geostore":
            gid = hashlib.md5(f"missing-{seed}-{i}".encode()).hexdigest()

        if geometry is not None and gid is None:
            gid = geostore_hash(geometry)
            pending.append(geometry)
            if kind in ("polygon", "polygon_with_hole", "multipolygon"):
                regular_geostores.append(gid)

        area_id = f"{rng.getrandbits(96):024x}"
        while area_id in used_ids:
            area_id = f"{rng.getrandbits(96):024x}"
        used_ids.add(area_id)
        created = _iso(_BASE_TIME - timedelta(seconds=17 * i))
        # Keyword arguments are evaluated left to right, so the rng draws keep their order.
        attributes = default_area_attributes(
            name=f"AOI {i} near ({hlon:g}, {hlat:g})",
            application="gfw" if rng.random() < 0.9 else "rw",
            geostore=gid,
            userId=users[rng.randrange(len(users))],
            createdAt=created,
            updatedAt=created,
            fireAlerts=rng.random() < 0.7,
            deforestationAlerts=rng.random() < 0.8,
            deforestationAlertsType=rng.choice(["glad-all", "glad-l", "glad-s2", "glad-radd"]),
            monthlySummary=rng.random() < 0.2,
            email=f"user{i}@example.org",
            language=rng.choice(["en", "es", "fr", "pt_BR", "id"]),
        )
        areas.append({"type": "area", "id": area_id, "attributes": attributes})
        kind_of[area_id] = kind

    # Shared areas reuse a good geostore of another area (several users drawing the same AOI).
    for area in areas:
        if kind_of[area["id"]] == "shared":
            if regular_geostores:
                area["attributes"]["geostore"] = regular_geostores[rng.randrange(len(regular_geostores))]
            else:  # nothing to share with: make it a plain polygon of its own
                geometry = {"type": "Polygon", "coordinates": [_star_ring(rng, 0.0, 0.0, 5.0, 6, 0.6, 1.0)]}
                pending.append(geometry)
                area["attributes"]["geostore"] = geostore_hash(geometry)
                kind_of[area["id"]] = "polygon"
    for record in _geostore_records(pending):
        geostores[record["hash"]] = record
    return areas, geostores, kind_of


def generate_areas(
    n: int,
    seed: int = 0,
    hotspots: list[tuple[float, float]] | None = None,
    invalid_fraction: float = 0.05,
) -> tuple[list[dict], dict[str, dict]]:
    """`n` deterministic pending areas and their geostores.

    Returns (areas, geostores):
      - areas: JSON:API resources `{"type": "area", "id": <24 hex>, "attributes": {...}}` with the
        §4 attribute set (status "pending", createdAt ISO, geostore id, ...), newest first;
      - geostores: {md5 hash: {"geojson": FeatureCollection, "hash", "areaHa", "bbox", ...}}.
    Areas of kind `bad_id` and `missing_geostore` have no geostore entry.
    """
    areas, geostores, _ = generate_areas_with_kinds(n, seed, hotspots, invalid_fraction)
    return areas, geostores
