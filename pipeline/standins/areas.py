"""pipeline.standins.areas: loopback stand-in for the RW/GFW Areas v2 and Geostore v2 APIs.

Reproduces the contract in external-apis.md §4: admin `POST /v2/area/sync`, the paged JSON:API
`GET /v2/area` listing (filters status/application/public/env, sort, `all=true`, links
self/first/last/prev/next clamped and never null, meta), `GET /v2/geostore/{hash}`,
`POST /v2/geostore/find-by-ids` (<= 100 returned; 404 "No GeoStores in payload" /
"No GeoStores found") and `POST /v2/area/update` (updateMany on `geostore`). Every route needs
`Authorization: Bearer <token>` and `x-api-key: <api_key>`; otherwise 401 JSON:API error with
Content-Type application/vnd.api+json.

Listing 10,000 areas is fast: the filtered, sorted id list is cached until the store changes,
and areas are indexed by geostore for updates.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from pipeline.standins.base import Request, Response, StandinServer, json_response

JSONAPI = "application/vnd.api+json"
AREA_STATUSES = ("pending", "saved", "error")
MAX_GEOSTORES_FOUND = 100  # gfw-geostore-api config maxGeostoresFoundById
DEFAULT_PAGE_SIZE = 300


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _encoded(status: int, payload) -> Response:
    """JSON response encoded now (safe to build from live store records while holding the lock)."""
    return Response(status, json.dumps(payload).encode(), content_type="application/json")


def jsonapi_error(status: int, detail: str) -> Response:
    return json_response(status, {"errors": [{"status": status, "detail": detail}]}, content_type=JSONAPI)


def validation_error(parameter: str, detail: str) -> Response:
    return json_response(
        400,
        {
            "errors": [
                {
                    "source": {"parameter": parameter},
                    "code": "invalid_body_parameter",
                    "title": "Invalid body parameter",
                    "detail": detail,
                }
            ]
        },
        content_type=JSONAPI,
    )


def default_area_attributes(**overrides) -> dict:
    """Attributes of a v2 area as serialised by gfw-area (keyForAttribute camelCase)."""
    now = _now_iso()
    attrs = {
        "name": "My AOI",
        "application": "gfw",
        "geostore": None,
        "geostoreDataApi": None,
        "wdpaid": None,
        "userId": "5e2f0eaf9de40a6c87dd9b7d",
        "createdAt": now,
        "updatedAt": now,
        "image": "",
        "datasets": [],
        "use": {},
        "env": "production",
        "iso": {},
        "admin": {},
        "templateId": None,
        "tags": [],
        "status": "pending",
        "public": False,
        "fireAlerts": True,
        "deforestationAlerts": True,
        "deforestationAlertsType": "glad-all",
        "webhookUrl": "",
        "monthlySummary": False,
        "subscriptionId": "",
        "email": "user@example.org",
        "language": "en",
        "confirmed": True,
    }
    attrs.update(overrides)
    return attrs


class AreasStandin(StandinServer):
    """Areas v2 + Geostore v2 stand-in.

    Args:
        token: the admin Bearer token accepted.
        api_key: the `x-api-key` accepted.
        areas: initial area records, JSON:API resources `{"type": "area", "id", "attributes"}`
            (as `area_samples.generate_areas` returns) or flat dicts `{"id", **attributes}`.
        geostores: initial geostores {hash: attributes}.

    State for tests: `areas` {area id: resource}, `geostores` {hash: attributes},
    `updates` (one dict per `/v2/area/update` call: geostores, status, updated),
    `subscriptions` (what `/v2/area/sync` turns into areas), `syncs` (sync call log).
    """

    name = "areas"

    def __init__(self, token: str = "demo-token", api_key: str = "demo-api-key", areas=None, geostores=None, **kw):
        super().__init__(**kw)
        self.token = token
        self.api_key = api_key
        self.areas: dict[str, dict] = {}
        self.geostores: dict[str, dict] = {}
        self.updates: list[dict] = []
        self.subscriptions: list[dict] = []
        self.syncs: list[dict] = []
        self.admin_user_id = "5e2f0eaf9de40a6c87dd9b7d"
        self._store = threading.RLock()
        self._by_geostore: dict[str, set[str]] = {}
        self._generation = 0
        self._listing_cache: dict[tuple, list[str]] = {}
        self._ids = itertools.count(1)
        for record in areas or []:
            self._put_area(record)
        for gid, attrs in (geostores or {}).items():
            self.geostores[gid] = attrs

    # -- store helpers -------------------------------------------------------------------------
    def _new_id(self) -> str:
        return f"{0x5F00000000000000000000 + next(self._ids):024x}"

    def _put_area(self, record: dict) -> str:
        if "attributes" in record:
            area_id = str(record["id"])
            attrs = default_area_attributes(**record["attributes"])
        else:
            flat = dict(record)
            area_id = str(flat.pop("id", None) or self._new_id())
            attrs = default_area_attributes(**flat)
        with self._store:
            old = self.areas.get(area_id)
            if old is not None:
                self._by_geostore.get(old["attributes"].get("geostore"), set()).discard(area_id)
            self.areas[area_id] = {"type": "area", "id": area_id, "attributes": attrs}
            self._by_geostore.setdefault(attrs.get("geostore"), set()).add(area_id)
            self._generation += 1
        return area_id

    def add_area(
        self,
        geostore: str | None,
        *,
        id: str | None = None,
        name: str = "My AOI",
        status: str = "pending",
        created_at: str | None = None,
        **attributes,
    ) -> str:
        """Add (or replace) one area; returns its id. Extra keyword args are area attributes."""
        record = {
            "id": id or self._new_id(),
            "geostore": geostore,
            "name": name,
            "status": status,
            **attributes,
        }
        if created_at is not None:
            record["createdAt"] = created_at
            record.setdefault("updatedAt", created_at)
        return self._put_area(record)

    def add_geostore(self, geostore_id: str, attributes: dict) -> str:
        with self._store:
            self.geostores[geostore_id] = attributes
        return geostore_id

    def add_subscription(
        self, geostore: str, *, name: str = "Subscription", created_at: str | None = None, **fields
    ) -> dict:
        """A subscription that `POST /v2/area/sync` turns into (or syncs onto) an area."""
        sub = {
            "id": self._new_id(),
            "name": name,
            "geostore": geostore,
            "createdAt": created_at or _now_iso(),
            "updatedAt": created_at or _now_iso(),
            **fields,
        }
        self.subscriptions.append(sub)
        return sub

    def status_of(self, area_id: str) -> str:
        with self._store:
            return self.areas[area_id]["attributes"]["status"]

    def statuses(self) -> dict[str, str]:
        with self._store:
            return {aid: a["attributes"]["status"] for aid, a in self.areas.items()}

    # -- routing -------------------------------------------------------------------------------
    def _authorized(self, req: Request) -> bool:
        auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
        key = req.headers.get("x-api-key") or req.headers.get("X-Api-Key") or ""
        return auth == f"Bearer {self.token}" and key == self.api_key

    def handle(self, req: Request) -> Response:
        if not self._authorized(req):
            return jsonapi_error(401, "Unauthorized")
        path = req.path.rstrip("/")
        if path == "/v2/area/sync" and req.method == "POST":
            return self._sync(req)
        if path == "/v2/area/update" and req.method == "POST":
            return self._update(req)
        if path == "/v2/area" and req.method == "GET":
            return self._list(req)
        if path.startswith("/v2/area/") and req.method == "GET":
            return self._get_area(path.rsplit("/", 1)[1])
        if path == "/v2/geostore/find-by-ids" and req.method == "POST":
            return self._find_by_ids(req)
        if path.startswith("/v2/geostore/") and req.method == "GET":
            return self._get_geostore(path.rsplit("/", 1)[1])
        return jsonapi_error(404, "Endpoint not found")

    # -- areas ---------------------------------------------------------------------------------
    def _get_area(self, area_id: str) -> Response:
        with self._store:
            area = self.areas.get(area_id)
            if area is None:
                return jsonapi_error(404, "Area not found")
            return json_response(200, {"data": copy.deepcopy(area)})

    def _listing(self, key: tuple) -> list[str]:
        status, applications, public, env, sort, only_user = key
        with self._store:
            cache_key = (self._generation, key)
            hit = self._listing_cache.get(cache_key)
            if hit is not None:
                return hit
            ids = []
            for aid, area in self.areas.items():
                a = area["attributes"]
                if status is not None and a.get("status") != status:
                    continue
                if applications is not None and a.get("application") not in applications:
                    continue
                if public is not None and bool(a.get("public")) != public:
                    continue
                if env != "all" and (a.get("env") or "production") != env:
                    continue
                if only_user is not None and a.get("userId") != only_user:
                    continue
                ids.append(aid)
            for field in reversed([f for f in (sort or "").split(",") if f]):
                desc = field.startswith("-")
                name = field.lstrip("-+")
                ids.sort(
                    key=lambda i: (
                        self.areas[i]["attributes"].get(name) is None,
                        str(self.areas[i]["attributes"].get(name) or ""),
                    ),
                    reverse=desc,
                )
            self._listing_cache = {cache_key: ids}  # only the current generation is worth keeping
            return ids

    def _list(self, req: Request) -> Response:
        def int_param(name: str, default: int) -> int | None:
            raw = req.q(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                return None
            return value if value >= 1 else None

        page = int_param("page[number]", 1)
        size = int_param("page[size]", DEFAULT_PAGE_SIZE)
        if page is None:
            return jsonapi_error(400, "page[number] must be a positive integer")
        if size is None:
            return jsonapi_error(400, "page[size] must be a positive integer")
        status = req.q("status")
        if status is not None and status not in AREA_STATUSES:
            return jsonapi_error(400, f"status must be one of {', '.join(AREA_STATUSES)}")
        apps = req.q("application")
        public = req.q("public")
        all_areas = req.q("all") == "true"
        key = (
            status,
            frozenset(a.strip() for a in apps.split(",") if a.strip()) if apps else None,
            None if public is None else public == "true",
            req.q("env") or "production",
            req.q("sort"),
            None if all_areas else self.admin_user_id,
        )
        ids = self._listing(key)
        total = len(ids)
        last = max(1, -(-total // size))
        with self._store:
            data = [self.areas[i] for i in ids[(page - 1) * size : page * size] if i in self.areas]

        base_query = {k: v[0] for k, v in req.query.items() if k not in ("page[number]", "page[size]")}
        # datapump calls the listing over http://; links echo the URL the client used.
        host = req.headers.get("Host") or f"{self.host}:{self.port}"

        def link(n: int) -> str:
            return f"http://{host}/v2/area?{urlencode({**base_query, 'page[number]': n, 'page[size]': size})}"

        links = {
            "self": link(page),
            "first": link(1),
            "last": link(last),
            "prev": link(max(1, min(page - 1, last))),
            "next": link(min(last, page + 1)),
        }
        meta = {"total-pages": last, "total-items": total, "size": size}
        with self._store:  # encode under the lock: `data` holds the live area records
            return _encoded(200, {"data": data, "links": links, "meta": meta})

    def _sync(self, req: Request) -> Response:
        def parse(name: str, default: date) -> date | None:
            raw = req.q(name)
            if raw is None:
                return default
            try:
                return date.fromisoformat(raw)
            except ValueError:
                return None

        today = datetime.now(UTC).date()
        start = parse("startDate", today - timedelta(days=2))
        end = parse("endDate", today)
        if start is None:
            return jsonapi_error(400, f"startDate {req.q('startDate')!r} is not a valid date (YYYY-MM-DD)")
        if end is None:
            return jsonapi_error(400, f"endDate {req.q('endDate')!r} is not a valid date (YYYY-MM-DD)")
        dry_run = req.q("dryRun") == "true"
        in_window = []
        for sub in self.subscriptions:
            try:
                when = date.fromisoformat(str(sub.get("updatedAt") or sub.get("createdAt"))[:10])
            except ValueError:
                continue
            if start <= when <= end:
                in_window.append(sub)
        synced = created = 0
        affected: list[str] = []
        with self._store:
            by_sub = {
                a["attributes"].get("subscriptionId"): aid
                for aid, a in self.areas.items()
                if a["attributes"].get("subscriptionId")
            }
            for sub in in_window:
                fields = {k: v for k, v in sub.items() if k not in ("id", "createdAt", "updatedAt")}
                existing = by_sub.get(sub["id"])
                if existing is not None:
                    synced += 1
                    affected.append(existing)
                    if not dry_run:
                        attrs = dict(
                            self.areas[existing]["attributes"],
                            **fields,
                            status="pending",
                            updatedAt=_now_iso(),
                        )
                        self._put_area({"type": "area", "id": existing, "attributes": attrs})
                else:
                    created += 1
                    if dry_run:
                        continue
                    aid = self._put_area(
                        {
                            "subscriptionId": sub["id"],
                            "createdAt": sub["createdAt"],
                            "updatedAt": sub["updatedAt"],
                            **fields,
                        }
                    )
                    affected.append(aid)
        result = {
            "syncedAreas": synced,
            "createdAreas": created,
            "totalSubscriptions": len(in_window),
            "affectedAreaIds": affected,
        }
        self.syncs.append({"startDate": start.isoformat(), "endDate": end.isoformat(), "dryRun": dry_run, **result})
        return json_response(200, {"data": result})

    def _update(self, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError:
            return validation_error("body", "body is not valid JSON")
        if not isinstance(body, dict):
            return validation_error("body", "body must be a JSON object")
        ids = body.get("geostores")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            return validation_error("geostores", "geostores must be a non-empty array of geostore ids")
        params = body.get("update_params")
        if not isinstance(params, dict) or not params:
            return validation_error("update_params", "update_params must be a non-empty object")
        status = params.get("status")
        if "status" in params and status not in AREA_STATUSES:
            return validation_error("status", f"status must be one of {', '.join(AREA_STATUSES)}; got {status!r}")
        now = _now_iso()
        updated = []
        with self._store:
            for gid in dict.fromkeys(ids):
                for aid in sorted(self._by_geostore.get(gid, ())):
                    attrs = self.areas[aid]["attributes"]
                    attrs.update(params)
                    attrs["updatedAt"] = now
                    updated.append(copy.deepcopy(self.areas[aid]))
            self._generation += 1
            self.updates.append({"geostores": list(ids), "status": status, "updated": len(updated)})
        return json_response(200, {"data": updated})

    # -- geostores -----------------------------------------------------------------------------
    def _geostore_doc(self, gid: str) -> dict:
        # No copy: stored geostores are replaced, never mutated, and responses are encoded at once.
        return {"data": {"type": "geoStore", "id": gid, "attributes": self.geostores[gid]}}

    def _get_geostore(self, gid: str) -> Response:
        with self._store:
            if gid not in self.geostores:
                return jsonapi_error(404, "GeoStore not found")
            return _encoded(200, self._geostore_doc(gid))

    def _find_by_ids(self, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError:
            body = None
        ids = body.get("geostores") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids:
            return jsonapi_error(404, "No GeoStores in payload")
        with self._store:
            found = [i for i in dict.fromkeys(ids) if isinstance(i, str) and i in self.geostores]
            if not found:
                return jsonapi_error(404, "No GeoStores found")
            returned = found[:MAX_GEOSTORES_FOUND]
            data = [{"geostoreId": gid, "geostore": self._geostore_doc(gid)} for gid in returned]
            return _encoded(
                200,
                {"data": data, "info": {"found": len(found), "foundIds": found, "returned": len(returned)}},
            )
