"""pipeline.lib.areas: GFW Areas + Geostore API client and GFW's user-area validation rules.

The nightly user-area flow (domain.md B1 "User-area flow") is:
sync subscriptions -> list pending areas -> fetch their geostores in blocks of 25 -> validate
(id format, areaHa < 1e9, polygonal, non-empty, repair invalid rings) -> analyse the accepted
geometries -> mark areas `saved` (or `error` for rejected ones) through `/v2/area/update`.

`AreasClient` speaks the HTTP contract (external-apis.md §4); `validate_areas` applies the GFW
rules and returns a GeoDataFrame with the exact `USER_AREA_SCHEMA`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape

from pipeline.lib.http import HttpClient, SourceError

SOURCE = "GFW Areas API"

#: Geostore ids are md5 hex digests; gfw-data-api strips '-' from UUID-like ids before using them.
GEOSTORE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: GFW drops geostores this large (hectares) instead of analysing them.
MAX_AREA_HA = 1e9
#: Geostore ids per `find-by-ids` call (datapump's block size; the server returns <= 100 per call).
FIND_BLOCK = 25
#: Geostore ids per `/v2/area/update` call (datapump sends one per call; batching is 100x fewer calls).
UPDATE_BLOCK = 100
#: Statuses a pipeline may set on an area.
UPDATE_STATUSES = ("saved", "error")

#: Output schema of `validate_areas`: (column, pandas dtype, description).
USER_AREA_SCHEMA: list[tuple[str, str, str]] = [
    ("area_id", "str", "Areas API area id (24 hex, Mongo ObjectId)."),
    (
        "geostore__id",
        "str",
        "Normalised geostore id (32 lower-case hex, '-' stripped); raw value when invalid, '' when missing.",
    ),
    ("name", "str", "Area name given by the user ('' when missing)."),
    ("application", "str", "Owning application, e.g. 'gfw' ('' when missing)."),
    (
        "created_at",
        "str",
        "Area createdAt as sent by the API (ISO 8601, e.g. 2026-09-26T10:01:02.000Z; '' when missing).",
    ),
    ("status", "str", "'accepted' or 'rejected'."),
    ("reason", "str", "Human-readable rule the area broke; null for accepted rows."),
    (
        "repaired",
        "bool",
        "True when the geometry was invalid and was repaired (make_valid, polygonal parts kept).",
    ),
    ("area__ha", "float64", "Geostore areaHa in hectares; NaN when the geostore or its areaHa is unknown."),
    ("geometry", "geometry", "Polygon/MultiPolygon in EPSG:4326, always valid; None for rejected rows."),
]
USER_AREA_COLUMNS = [name for name, _, _ in USER_AREA_SCHEMA]

ACCEPTED = "accepted"
REJECTED = "rejected"


# ----------------------------------------------------------------------------------------------
# HTTP client
# ----------------------------------------------------------------------------------------------
def _jsonapi_detail(text: str) -> str | None:
    """'detail1; detail2' from a JSON:API error body, or None when the body is not one."""
    try:
        payload = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("errors"), list):
        return None
    parts = []
    for err in payload["errors"]:
        if isinstance(err, dict):
            detail = err.get("detail") or err.get("title") or err.get("code")
            param = (err.get("source") or {}).get("parameter") if isinstance(err.get("source"), dict) else None
            if detail:
                parts.append(f"{detail} (parameter {param})" if param else str(detail))
        elif err:
            parts.append(str(err))
    return "; ".join(parts) or None


def _blocks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _dedupe(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


class AreasClient:
    """Client for the RW/GFW Areas (`/v2/area`) and Geostore (`/v2/geostore`) APIs.

    Sends `Authorization: Bearer <token>` and `x-api-key: <api_key>` when set (RW microservices
    want both; admin-only routes - sync, update, `all=true` - need an ADMIN token). Retries,
    429 Retry-After and 5xx handling come from `HttpClient`; every failure is a `SourceError`
    naming "GFW Areas API" with JSON:API error details and never the token or key.
    """

    def __init__(
        self,
        base_url: str = "https://api.resourcewatch.org",
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 60,
        max_retries: int = 4,
        backoff: float = 1.0,
        sleep=time.sleep,
        page_size: int = 25,
        max_pages: int = 100_000,
    ):
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if api_key:
            headers["x-api-key"] = api_key
        self.http = HttpClient(
            SOURCE,
            base_url,
            headers=headers,
            secrets=[s for s in (token, api_key) if s],
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
        )
        self.sleep = sleep
        self.page_size = page_size
        self.max_pages = max_pages

    # -- plumbing --------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, expected=(200,), **kwargs):
        try:
            return self.http.request(method, path, expected=expected, sleep=self.sleep, **kwargs)
        except SourceError as exc:
            detail = _jsonapi_detail(exc.body)
            if detail is None or exc.status is None:
                raise
            raise SourceError(
                SOURCE,
                f"{method} {path.split('?')[0]} returned HTTP {exc.status}: {detail}",
                status=exc.status,
                body=exc.body,
            ) from exc

    def _json(self, resp, what: str) -> Any:
        try:
            return resp.json()
        except ValueError as exc:
            raise SourceError(
                SOURCE,
                f"{what} returned a body that is not JSON: {self.http._safe(resp.text[:200])!r}",
                status=resp.status_code,
            ) from exc

    # -- endpoints -------------------------------------------------------------------------------
    def sync_areas(self, start_date: date, end_date: date | None = None) -> dict:
        """`POST /v2/area/sync?startDate=..[&endDate=..]`: pull subscriptions into areas (admin).

        Returns the response `data`: {syncedAreas, createdAreas, totalSubscriptions, affectedAreaIds}.
        """
        if not isinstance(start_date, date):
            raise ValueError(f"start_date must be a datetime.date, got {start_date!r}")
        params = {"startDate": start_date.isoformat()[:10]}
        if end_date is not None:
            if not isinstance(end_date, date):
                raise ValueError(f"end_date must be a datetime.date or None, got {end_date!r}")
            if end_date < start_date:
                raise ValueError(f"end_date {end_date} is before start_date {start_date}")
            params["endDate"] = end_date.isoformat()[:10]
        resp = self._call("POST", "/v2/area/sync", params=params)
        body = self._json(resp, "POST /v2/area/sync")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise SourceError(
                SOURCE,
                f"POST /v2/area/sync returned no 'data' object: {str(body)[:200]}",
                status=resp.status_code,
            )
        return data

    def pending_areas(self) -> list[dict]:
        """All areas with status `pending` (admin `all=true` listing), newest first.

        Pages with `page[size]=page_size` while `links.self != links.last` (datapump's rule). It
        also stops on an empty page, on a page that brings no new area id (a server that keeps
        answering the same page), past `meta.total-pages`, and raises after `max_pages`.
        Returns flat dicts `{"id": ..., **attributes}`, de-duplicated by area id (first kept).
        """
        found: dict[str, dict] = {}
        page = 1
        while True:
            if page > self.max_pages:
                raise SourceError(SOURCE, f"GET /v2/area paging did not end after {self.max_pages} pages")
            params = {
                "status": "pending",
                "sort": "-createdAt",
                "all": "true",
                "page[number]": str(page),
                "page[size]": str(self.page_size),
            }
            resp = self._call("GET", "/v2/area", params=params)
            body = self._json(resp, "GET /v2/area")
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise SourceError(SOURCE, f"GET /v2/area page {page} has no 'data' list", status=resp.status_code)
            data = body["data"]
            if not data:
                break
            new = 0
            for item in data:
                if not isinstance(item, dict) or not item.get("id"):
                    raise SourceError(
                        SOURCE, f"GET /v2/area page {page} holds an item without an id: {str(item)[:200]}"
                    )
                area_id = str(item["id"])
                if area_id not in found:
                    found[area_id] = {"id": area_id, **(item.get("attributes") or {})}
                    new += 1
            links = body.get("links") or {}
            meta = body.get("meta") or {}
            total_pages = meta.get("total-pages")
            if new == 0:  # same page again: following `next` would loop forever
                break
            if not links.get("self") or links.get("self") == links.get("last"):
                break
            if isinstance(total_pages, int) and page >= total_pages:
                break
            page += 1
        return list(found.values())

    def find_geostores(self, ids: list[str]) -> dict[str, dict]:
        """`POST /v2/geostore/find-by-ids` in blocks of 25 distinct ids.

        A block answered 404 "No GeoStores found" simply found none. Returns
        {geostore id: geostore attributes (geojson, hash, areaHa, bbox, ...)}.
        """
        wanted = _dedupe(i for i in ids if i)
        for i in wanted:
            if not isinstance(i, str):
                raise ValueError(f"geostore ids must be strings, got {i!r}")
        result: dict[str, dict] = {}
        for block in _blocks(wanted, FIND_BLOCK):
            resp = self._call("POST", "/v2/geostore/find-by-ids", json={"geostores": block}, expected=(200, 404))
            if resp.status_code == 404:
                detail = _jsonapi_detail(resp.text) or ""
                if "No GeoStores found" in detail:
                    continue
                raise SourceError(
                    SOURCE,
                    "POST /v2/geostore/find-by-ids returned HTTP 404: " + (detail or self.http._safe(resp.text[:200])),
                    status=404,
                    body=self.http._safe(resp.text[:500]),
                )
            body = self._json(resp, "POST /v2/geostore/find-by-ids")
            for entry in (body or {}).get("data") or []:
                try:
                    gid = entry["geostoreId"]
                    attributes = entry["geostore"]["data"]["attributes"]
                except (KeyError, TypeError) as exc:
                    raise SourceError(
                        SOURCE,
                        f"find-by-ids entry lacks geostoreId/geostore.data.attributes: {str(entry)[:200]}",
                    ) from exc
                result[gid] = attributes
        return result

    def update_status(self, geostore_ids: list[str], status: str) -> int:
        """Set `status` ('saved' or 'error') on every area using one of `geostore_ids`.

        `POST /v2/area/update` with {"geostores": [...], "update_params": {"status": ...}} in
        blocks of 100 distinct ids. Returns the number of areas the server reports updated.
        """
        if status not in UPDATE_STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(map(repr, UPDATE_STATUSES))}")
        ids = _dedupe(i for i in geostore_ids if i)
        for i in ids:
            if not isinstance(i, str):
                raise ValueError(f"geostore ids must be strings, got {i!r}")
        updated = 0
        for block in _blocks(ids, UPDATE_BLOCK):
            resp = self._call("POST", "/v2/area/update", json={"geostores": block, "update_params": {"status": status}})
            body = self._json(resp, "POST /v2/area/update")
            data = body.get("data") if isinstance(body, dict) else None
            updated += len(data) if isinstance(data, list) else 0
        return updated


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def normalize_geostore_id(raw: Any) -> str | None:
    """The 32 lower-case hex geostore id for `raw` ('-' stripped as gfw-data-api does), else None."""
    if not isinstance(raw, str):
        return None
    candidate = raw.strip().replace("-", "")
    return candidate if GEOSTORE_ID_RE.match(candidate) else None


def geostore_ids_to_fetch(areas: list[dict]) -> list[str]:
    """Distinct normalised geostore ids of `areas` that pass the id rule (what to pass to find_geostores)."""
    return _dedupe(g for g in (normalize_geostore_id(a.get("geostore")) for a in areas) if g)


def _fmt_ha(value: float) -> str:
    text = f"{value:.6g}"
    return text.replace("e+0", "e").replace("e+", "e")


def _area_ha(attributes: dict) -> float:
    value = attributes.get("areaHa")
    if isinstance(value, bool):
        return math.nan
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _geojson_geometry(attributes: dict) -> Any:
    """The geometry GFW reads: `geojson.features[0].geometry` (also accepts a Feature or bare geometry)."""
    gj = attributes.get("geojson")
    if not isinstance(gj, dict):
        return None
    kind = gj.get("type")
    if kind == "FeatureCollection":
        features = gj.get("features") or []
        first = features[0] if features else None
        return first.get("geometry") if isinstance(first, dict) else None
    if kind == "Feature":
        return gj.get("geometry")
    return gj


def _polygonal_part(geom):
    """Polygonal parts of a (repaired) geometry as a Polygon/MultiPolygon, or None if it has none."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polys = []
    for part in shapely.get_parts(geom):
        if part.geom_type == "Polygon":
            polys.append(part)
        elif part.geom_type == "MultiPolygon":
            polys.extend(shapely.get_parts(part))
        elif part.geom_type == "GeometryCollection":
            sub = _polygonal_part(part)
            if sub is not None:
                polys.extend(shapely.get_parts(sub))
    polys = [p for p in polys if not p.is_empty]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def repair_polygonal(geoms: np.ndarray) -> np.ndarray:
    """Repair invalid polygonal geometries, keeping only their polygonal parts.

    Uses `shapely.make_valid(method="structure", keep_collapsed=False)`: rings are unioned and
    holes subtracted, so a self-intersecting "bow-tie" becomes a MultiPolygon of both lobes
    (datapump's `buffer(0)` silently drops one lobe). Collapsed lines/points are discarded. If
    the result were still invalid, `buffer(0)` is applied as a last resort. Returns an array of
    valid Polygon/MultiPolygon or None where nothing polygonal is left.
    """
    fixed = shapely.make_valid(geoms, method="structure", keep_collapsed=False)
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(fixed):
        g = _polygonal_part(g)
        if g is not None and not g.is_valid:
            g = _polygonal_part(g.buffer(0))
        out[i] = g if g is not None and g.is_valid and not g.is_empty else None
    return out


def _empty_frame() -> gpd.GeoDataFrame:
    frame = pd.DataFrame(
        {name: pd.Series([], dtype=dtype) for name, dtype, _ in USER_AREA_SCHEMA if name != "geometry"}
    )
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")


def validate_areas(areas: list[dict], geostores: dict[str, dict]) -> gpd.GeoDataFrame:
    """Apply GFW's user-area rules; one row per area (areas sharing a geostore each keep a row).

    `areas` are flat dicts as returned by `AreasClient.pending_areas` ({"id", "geostore", "name",
    "application", "createdAt", ...}); `geostores` maps geostore id -> attributes as returned by
    `AreasClient.find_geostores` (keys are normalised the same way as area ids).

    Rules, checked in this order (first broken rule is the `reason`):
      1. geostore id present and 32 lower-case hex after stripping '-'
         -> "geostore id 'x' is not 32 hex characters (0-9a-f)" / "geostore id is missing"
      2. geostore returned by the Geostore API -> "geostore not found"
      3. areaHa < 1e9 -> "areaHa 2.3e9 >= 1e9"
      4. geometry present, parseable and non-empty -> "geometry is empty"
      5. geometry type Polygon or MultiPolygon -> "geometry type LineString is not Polygon/MultiPolygon"
      6. invalid geometry is repaired (`repair_polygonal`) and `repaired=True`; if nothing
         polygonal remains -> "geometry is invalid and could not be repaired"
    Output columns and dtypes: `USER_AREA_SCHEMA`; CRS EPSG:4326; Z coordinates are dropped.
    """
    if not areas:
        return _empty_frame()
    by_id = {}
    for key, attrs in (geostores or {}).items():
        norm = normalize_geostore_id(key) or key
        by_id[norm] = attrs if isinstance(attrs, dict) else {}

    seen: set[str] = set()
    rows_area_id, rows_gid, rows_name, rows_app, rows_created = [], [], [], [], []
    reasons: list[str | None] = []
    area_ha: list[float] = []
    raw_geoms: list[Any] = []
    for area in areas:
        if not isinstance(area, dict):
            raise ValueError(f"areas must be dicts with an 'id', got {str(area)[:80]!r}")
        area_id = str(area.get("id") or "")
        if not area_id:
            raise ValueError(f"area without an 'id': {str(area)[:120]}")
        if area_id in seen:
            continue
        seen.add(area_id)
        raw = area.get("geostore")
        gid = normalize_geostore_id(raw)
        reason = None
        ha = math.nan
        geom_json = None
        if gid is None:
            reason = (
                "geostore id is missing"
                if raw in (None, "")
                else f"geostore id {raw!r} is not 32 hex characters (0-9a-f)"
            )
        elif gid not in by_id:
            reason = "geostore not found"
        else:
            attrs = by_id[gid]
            ha = _area_ha(attrs)
            if not math.isnan(ha) and ha >= MAX_AREA_HA:
                reason = f"areaHa {_fmt_ha(ha)} >= 1e9"
            else:
                geom_json = _geojson_geometry(attrs)
                if not geom_json:
                    reason = "geometry is empty"
        rows_area_id.append(area_id)
        rows_gid.append(gid if gid is not None else ("" if raw is None else str(raw)))
        rows_name.append(str(area.get("name") or ""))
        rows_app.append(str(area.get("application") or ""))
        rows_created.append(str(area.get("createdAt") or ""))
        reasons.append(reason)
        area_ha.append(ha)
        raw_geoms.append(geom_json)

    n = len(rows_area_id)
    geoms = np.full(n, None, dtype=object)
    for i, gj in enumerate(raw_geoms):
        if gj is None or reasons[i] is not None:
            continue
        try:
            geoms[i] = shape(gj)
        except Exception as exc:  # shapely raises several types for malformed GeoJSON
            reasons[i] = f"geometry is not valid GeoJSON ({type(exc).__name__}: {str(exc)[:80]})"

    has = shapely.is_geometry(geoms)
    geoms[has] = shapely.force_2d(geoms[has])
    type_ids = shapely.get_type_id(geoms)  # -1 for None
    empty = np.zeros(n, dtype=bool)
    empty[has] = shapely.is_empty(geoms[has])
    polygonal = np.isin(type_ids, (3, 6))  # Polygon, MultiPolygon
    for i in np.flatnonzero(has):
        if reasons[i] is not None:
            continue
        if empty[i]:
            reasons[i] = "geometry is empty"
        elif not polygonal[i]:
            reasons[i] = f"geometry type {geoms[i].geom_type} is not Polygon/MultiPolygon"

    ok = np.array([r is None for r in reasons], dtype=bool) & has
    repaired = np.zeros(n, dtype=bool)
    valid = np.ones(n, dtype=bool)
    valid[ok] = shapely.is_valid(geoms[ok])
    bad = np.flatnonzero(ok & ~valid)
    if len(bad):
        fixed = repair_polygonal(geoms[bad])
        for i, g in zip(bad, fixed, strict=False):
            if g is None:
                reasons[i] = "geometry is invalid and could not be repaired"
            else:
                geoms[i] = g
                repaired[i] = True

    accepted = np.array([r is None for r in reasons], dtype=bool)
    geoms[~accepted] = None
    repaired &= accepted
    frame = pd.DataFrame(
        {
            "area_id": pd.Series(rows_area_id, dtype="str"),
            "geostore__id": pd.Series(rows_gid, dtype="str"),
            "name": pd.Series(rows_name, dtype="str"),
            "application": pd.Series(rows_app, dtype="str"),
            "created_at": pd.Series(rows_created, dtype="str"),
            "status": pd.Series(np.where(accepted, ACCEPTED, REJECTED), dtype="str"),
            "reason": pd.Series(reasons, dtype="str"),
            "repaired": pd.Series(repaired, dtype="bool"),
            "area__ha": pd.Series(area_ha, dtype="float64"),
        }
    )
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs="EPSG:4326"), crs="EPSG:4326")[USER_AREA_COLUMNS]


def accepted_features(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Accepted rows of a `validate_areas` frame, one per geostore__id: columns geostore__id, geometry."""
    missing = {"status", "geostore__id", "geometry"} - set(gdf.columns)
    if missing:
        raise ValueError(f"accepted_features needs a validate_areas frame; missing columns {sorted(missing)}")
    out = gdf.loc[gdf["status"] == ACCEPTED, ["geostore__id", "geometry"]]
    out = out.drop_duplicates(subset="geostore__id", keep="first").reset_index(drop=True)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=gdf.crs or "EPSG:4326")
