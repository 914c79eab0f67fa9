"""pipeline.standins.cmr: loopback NASA CMR granule search plus an Earthdata data host and URS login server.

Follows external-apis.md §6:

- `GET|POST /search/granules.umm_json` (UMM-G items) and `/search/granules.json` (ATOM-JSON feed) filter by
  `short_name` and `version` (exact strings), `temporal` (inclusive overlap), `updated_since` (revision date >=),
  `revision_date[]=start,end` and `concept_id[]`; POST takes the same parameters as a form body;
- default order is provider, then start date; `sort_key[]=revision_date` (or `start_date`, `-` for descending);
- `page_size` defaults to 10, above 2000 is `400 {"errors": [...]}`; paging is by the opaque `CMR-Search-After`
  header (a JSON array), which every non-empty page carries, so the page after the last one is empty;
  `page_num` together with search-after is a 400; `CMR-Hits`, `CMR-Took` and `CMR-Request-Id` on every answer;
- `Client-Id` is recorded (`client_ids`) and, unlike real CMR, required, so a client that forgets it fails tests;
- `time_out_next` serves partial pages flagged `CMR-Time-Out: true`; 429/5xx come from `fail_next`.

Records look like GES DISC's OMI L3 granules: `OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5`,
concept ids `G...-GES_DISC`, data links `{data_base_url}/data//Aura_OMI_Level3/OMDOAO3e.003/2022/<name>`.

`UrsStandin` and `EarthdataStandin` are two servers (real URS is another host than the data server), so tests can
check that credentials reach only the login server. The data host serves `put_file` bytes to a valid bearer token
or session cookie and otherwise 302s to `<urs>/oauth/authorize?client_id=..&redirect_uri=<data>/urs_redirect&
response_type=code&state=<path>`; URS checks HTTP basic credentials and 302s to `<data>/urs_redirect?code=..&state=..`,
where the data host sets a session cookie and 302s to the original path. `truncate_next` cuts a body short: the
full `Content-Length` is announced, fewer bytes are sent, and the connection is closed.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, quote, urlencode

from pipeline.standins.base import Request, Response, StandinServer

PROVIDER = "GES_DISC"
DEFAULT_DATA_BASE_URL = "https://acdisc.gesdisc.eosdis.nasa.gov"
#: Known collection concept ids (external-apis.md §6.1); others get made-up ids.
COLLECTIONS = {("OMDOAO3e", "003"): "C1266136037-GES_DISC", ("OMDOAO3", "003"): "C1239966794-GES_DISC"}
DATA_REL = "http://esipfed.org/ns/fedsearch/1.1/data#"
MAX_PAGE_SIZE = 2000
DEFAULT_PAGE_SIZE = 10
_SORT_FIELDS = ("revision_date", "start_date", "end_date", "producer_granule_id", "concept_id")


def _iso(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _errors(status: int, *messages: str) -> Response:
    return Response(status, {"errors": list(messages)})


def _as_day(day: date | str) -> date:
    return day if isinstance(day, date) else date.fromisoformat(day)


def granule_name(short_name: str, version: str, day: date, production: datetime) -> str:
    """`OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5` (external-apis.md §6.1)."""
    return f"OMI-Aura_L3-{short_name}_{day:%Ym%m%d}_v{version}-{production:%Ym%m%dt%H%M%S}.he5"


@dataclass(frozen=True)
class GranuleRecord:
    """One stored granule revision."""

    concept_id: str
    short_name: str
    version: str
    collection_concept_id: str
    provider: str
    name: str
    time_start: datetime
    time_end: datetime
    revision_id: int
    revision_date: datetime
    production: datetime
    size: int
    data_url: str

    @property
    def granule_ur(self) -> str:
        return f"{self.short_name}.{self.version}:{self.name}"

    def umm_item(self) -> dict:
        return {
            "meta": {
                "concept-type": "granule",
                "concept-id": self.concept_id,
                "collection-concept-id": self.collection_concept_id,
                "provider-id": self.provider,
                "native-id": self.name,
                "revision-id": self.revision_id,
                "revision-date": _iso(self.revision_date),
                "format": "application/echo10+xml",
            },
            "umm": {
                "GranuleUR": self.granule_ur,
                "CollectionReference": {"ShortName": self.short_name, "Version": self.version},
                "TemporalExtent": {
                    "RangeDateTime": {
                        "BeginningDateTime": _iso(self.time_start),
                        "EndingDateTime": _iso(self.time_end),
                    }
                },
                "DataGranule": {
                    "ProductionDateTime": _iso(self.production),
                    "DayNightFlag": "Unspecified",
                    "ArchiveAndDistributionInformation": [{"Name": self.name, "SizeInBytes": self.size}],
                },
                "RelatedUrls": [
                    {"URL": self.data_url, "Type": "GET DATA"},
                    {
                        "URL": f"{self.data_url.rsplit('/', 1)[0]}/{self.name}.xml",
                        "Type": "EXTENDED METADATA",
                    },
                ],
                "ProviderDates": [{"Date": _iso(self.revision_date), "Type": "Insert"}],
                "MetadataSpecification": {
                    "URL": "https://cdn.earthdata.nasa.gov/umm/granule/v1.6.6",
                    "Name": "UMM-G",
                    "Version": "1.6.6",
                },
            },
        }

    def atom_entry(self) -> dict:
        # ATOM-JSON names neither revision-id nor revision-date, and gives the size in MB as a string.
        return {
            "id": self.concept_id,
            "title": self.granule_ur,
            "updated": _iso(self.revision_date),
            "dataset_id": f"OMI/Aura Ozone (O3) DOAS Total Column Daily L3 ({self.short_name}) at GES DISC",
            "collection_concept_id": self.collection_concept_id,
            "producer_granule_id": self.name,
            "granule_size": f"{self.size / 1_000_000:.1f}",
            "original_format": "ECHO10",
            "data_center": self.provider,
            "time_start": _iso(self.time_start),
            "time_end": _iso(self.time_end),
            "online_access_flag": True,
            "browse_flag": False,
            "day_night_flag": "UNSPECIFIED",
            "coordinate_system": "CARTESIAN",
            "boxes": ["-90 -180 90 180"],
            "links": [
                {
                    "rel": DATA_REL,
                    "type": "application/x-hdfeos",
                    "title": f"Download {self.name}",
                    "hreflang": "en-US",
                    "href": self.data_url,
                },
                {
                    "rel": "http://esipfed.org/ns/fedsearch/1.1/data#",
                    "hreflang": "en-US",
                    "href": "https://disc.gsfc.nasa.gov/datacollection/OMDOAO3e_003.html",
                    "inherited": True,
                },
                {
                    "rel": "http://esipfed.org/ns/fedsearch/1.1/documentation#",
                    "hreflang": "en-US",
                    "href": "https://docserver.gesdisc.eosdis.nasa.gov/README.pdf",
                    "inherited": True,
                },
            ],
        }


class _Clock:
    """Revision dates for records added without one: one second apart, starting at the §6 example's date."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        value = self.now
        self.now += timedelta(seconds=1)
        return value


class CmrStandin(StandinServer):
    """CMR granule search over an in-memory set of granule records (latest revision of each concept id)."""

    name = "cmr"

    def __init__(
        self,
        data_base_url: str = DEFAULT_DATA_BASE_URL,
        now=None,
        require_client_id: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(host, port)
        self.data_base_url = data_base_url.rstrip("/")
        self._now = now or _Clock(datetime(2022, 1, 22, 7, 31, 12, tzinfo=UTC))
        self.require_client_id = require_client_id
        self.records: dict[str, GranuleRecord] = {}
        self.deleted: list[GranuleRecord] = []
        self.client_ids: list[str | None] = []
        self._ids = itertools.count(2205784904)
        self._collections = dict(COLLECTIONS)
        self._collection_ids = itertools.count(1300000000)
        self._time_outs = 0
        self._records_lock = threading.Lock()
        #: Leave out `CMR-Hits` (a proxy that strips headers): clients must then stop at an empty page.
        self.omit_hits = False

    # -- records --------------------------------------------------------------------------------------------------
    def _collection_id(self, short_name: str, version: str) -> str:
        key = (short_name, version)
        if key not in self._collections:
            self._collections[key] = f"C{next(self._collection_ids)}-{PROVIDER}"
        return self._collections[key]

    def data_url(self, short_name: str, version: str, day: date, name: str) -> str:
        return f"{self.data_base_url}/data//Aura_OMI_Level3/{short_name}.{version}/{day:%Y}/{name}"

    def add_granule(
        self,
        short_name: str = "OMDOAO3e",
        version: str = "003",
        day: date | str = date(2022, 1, 20),
        revision: int = 1,
        *,
        revision_date: datetime | None = None,
        production: datetime | None = None,
        size: int = 8_500_000,
        concept_id: str | None = None,
        name: str | None = None,
        data_url: str | None = None,
    ) -> GranuleRecord:
        """Store one daily granule (covering the whole UTC day), replacing any record with the same concept id."""
        day = _as_day(day)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        production = production or start + timedelta(days=2, hours=2, minutes=17, seconds=59)
        name = name or granule_name(short_name, version, day, production)
        with self._records_lock:
            record = GranuleRecord(
                concept_id=concept_id or f"G{next(self._ids)}-{PROVIDER}",
                short_name=short_name,
                version=version,
                collection_concept_id=self._collection_id(short_name, version),
                provider=PROVIDER,
                name=name,
                time_start=start,
                time_end=start + timedelta(days=1, seconds=-1),
                revision_id=revision,
                revision_date=(revision_date or self._now()).astimezone(UTC),
                production=production,
                size=size,
                data_url=data_url or self.data_url(short_name, version, day, name),
            )
            self.records[record.concept_id] = record
        return record

    def add_days(self, short_name: str, version: str, first: date | str, count: int, **kwargs) -> list[GranuleRecord]:
        """One granule per day for `count` consecutive days from `first`."""
        first = _as_day(first)
        return [self.add_granule(short_name, version, first + timedelta(days=i), **kwargs) for i in range(count)]

    def revise_granule(self, concept_id: str, revision_date: datetime | None = None, **changes) -> GranuleRecord:
        """A new revision (revision_id + 1, new revision date) of a stored granule; `changes` replace fields."""
        with self._records_lock:
            old = self.records[concept_id]
            record = replace(
                old,
                revision_id=old.revision_id + 1,
                revision_date=(revision_date or self._now()).astimezone(UTC),
                **changes,
            )
            self.records[concept_id] = record
        return record

    def delete_granule(self, concept_id: str) -> GranuleRecord:
        with self._records_lock:
            record = self.records.pop(concept_id)
            self.deleted.append(record)
        return record

    def time_out_next(self, times: int = 1) -> None:
        """Answer the next `times` searches with half a page and `CMR-Time-Out: true` (a partial result)."""
        with self._lock:
            self._time_outs += times

    # -- HTTP -----------------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.path not in ("/search/granules.umm_json", "/search/granules.json"):
            return _errors(404, f"The stand-in does not serve {req.path}")
        if req.method not in ("GET", "POST"):
            return _errors(405, f"{req.method} is not allowed")
        client_id = req.headers.get("Client-Id")
        with self._lock:
            self.client_ids.append(client_id)
        if self.require_client_id and not client_id:
            return _errors(400, "The stand-in requires a Client-Id header (CMR asks every client for one)")
        params = {k: list(v) for k, v in req.query.items()}
        if req.method == "POST" and req.body:
            for key, values in parse_qs(req.body.decode(), keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
        try:
            return self._search(req, params)
        except _BadRequest as exc:
            return _errors(400, *exc.args)

    def _search(self, req: Request, params: dict[str, list[str]]) -> Response:
        def values(name: str) -> list[str]:
            return params.get(name, []) + params.get(f"{name}[]", [])

        search_after = req.headers.get("CMR-Search-After")
        if search_after and (values("page_num") or values("offset")):
            raise _BadRequest("page_num and offset are not allowed with the CMR-Search-After header")
        page_size = _int(values("page_size")[-1] if values("page_size") else str(DEFAULT_PAGE_SIZE), "page_size")
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise _BadRequest(f"page_size must be a number between 0 and {MAX_PAGE_SIZE}")
        with self._records_lock:
            records = [r for r in self.records.values() if self._matches(r, values)]
        hits = len(records)
        keyfn, key_length = self._sort_key(values("sort_key"))
        records.sort(key=keyfn)
        if search_after:
            try:
                after = json.loads(search_after)
            except ValueError:
                after = None
            if not isinstance(after, list) or len(after) != key_length:
                raise _BadRequest(f"The search-after header value is invalid: {search_after}")
            try:
                records = [r for r in records if list(keyfn(r)) > after]
            except TypeError:
                raise _BadRequest(f"The search-after header value is invalid: {search_after}") from None
        page = records[:page_size]
        headers = {"CMR-Took": "7", "CMR-Request-Id": str(uuid.uuid4())}
        if not self.omit_hits:
            headers["CMR-Hits"] = str(hits)
        with self._lock:
            timed_out = self._time_outs > 0
            if timed_out:
                self._time_outs -= 1
        if timed_out:
            page = page[: len(page) // 2]
            headers["CMR-Time-Out"] = "true"
        if page:
            headers["CMR-Search-After"] = json.dumps(list(keyfn(page[-1])))
        if req.path.endswith(".umm_json"):
            return Response(200, {"hits": hits, "took": 7, "items": [r.umm_item() for r in page]}, headers)
        feed = {
            "updated": _iso(datetime.now(UTC)),
            "id": f"{self.url}{req.path}",
            "title": "ECHO granule metadata",
            "entry": [r.atom_entry() for r in page],
        }
        return Response(200, {"feed": feed}, headers)

    @staticmethod
    def _matches(r: GranuleRecord, values) -> bool:
        if values("short_name") and r.short_name not in values("short_name"):
            return False
        if values("version") and r.version not in values("version"):
            return False
        if values("concept_id") and r.concept_id not in values("concept_id"):
            return False
        if values("provider") and r.provider not in values("provider"):
            return False
        temporal = values("temporal")
        if temporal:
            overlaps = False
            for value in temporal:
                start, end = _span(value, "temporal")
                if (start is None or r.time_end >= start) and (end is None or r.time_start <= end):
                    overlaps = True
            if not overlaps:
                return False
        for value in values("updated_since"):
            if r.revision_date < _time(value, "updated_since"):
                return False
        for value in values("revision_date"):
            start, end = _span(value, "revision_date")
            if (start is not None and r.revision_date < start) or (end is not None and r.revision_date > end):
                return False
        return True

    @staticmethod
    def _sort_key(sort_keys: list[str]):
        fields: list[tuple[str, bool]] = []
        for key in sort_keys:
            descending = key.startswith("-")
            name = key.lstrip("+-")
            if name not in _SORT_FIELDS:
                raise _BadRequest(f"The sort key [{name}] is not a valid field for sorting granules.")
            fields.append((name, descending))
        if not fields:
            fields = [("provider", False), ("start_date", False)]

        def value(r: GranuleRecord, name: str):
            return {
                "provider": r.provider,
                "revision_date": _ms(r.revision_date),
                "start_date": _ms(r.time_start),
                "end_date": _ms(r.time_end),
                "producer_granule_id": r.name,
                "concept_id": r.concept_id,
            }[name]

        def keyfn(r: GranuleRecord) -> tuple:
            parts = []
            for name, descending in fields:
                v = value(r, name)
                parts.append(-v if descending and isinstance(v, int) else v)
            # The concept id's number breaks ties, as CMR's search-after values do.
            number = r.concept_id[1:].split("-")[0]
            parts.append(int(number) if number.isdigit() else 0)
            parts.append(r.concept_id)
            return tuple(parts)

        return keyfn, len(fields) + 2


class _BadRequest(Exception):
    pass


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _BadRequest(f"{name} must be a number between 0 and {MAX_PAGE_SIZE}") from None


def _time(value: str, name: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _BadRequest(f"[{value}] is not a valid datetime for {name}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _span(value: str, name: str) -> tuple[datetime | None, datetime | None]:
    parts = value.split(",")
    if len(parts) < 2:
        raise _BadRequest(f"{name} [{value}] must be start,end")
    start, end = parts[0].strip(), parts[1].strip()
    return (_time(start, name) if start else None, _time(end, name) if end else None)


# -- Earthdata Login and a protected data host ---------------------------------------------------------------------
class _ShortBody(bytes):
    """Bytes whose len() claims more than they hold.

    The base server announces `Content-Length: len(body)` and then writes the real bytes, so this sends a full-size
    header and a short body: exactly what a client sees when the connection breaks mid-download.
    """

    claimed: int

    def __new__(cls, data: bytes, claimed: int):
        obj = super().__new__(cls, data)
        obj.claimed = claimed
        return obj

    def __len__(self) -> int:
        return self.claimed


def _basic_user(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


class UrsStandin(StandinServer):
    """Earthdata Login (URS): `/oauth/authorize` with HTTP basic credentials issues a one-time code."""

    name = "urs"

    def __init__(self, users: dict[str, str] | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.users = dict(users or {})
        self._codes: dict[str, str] = {}

    def redeem(self, code: str | None) -> str | None:
        """The user a code was issued to (once; the data host calls this as its server-side token exchange)."""
        with self._lock:
            return self._codes.pop(code or "", None)

    def handle(self, req: Request) -> Response:
        if req.path != "/oauth/authorize":
            return Response(404, "Not Found")
        redirect_uri = req.q("redirect_uri")
        if not redirect_uri or req.q("response_type") != "code" or not req.q("client_id"):
            return Response(400, {"error": "invalid_request"})
        creds = _basic_user(req.headers.get("Authorization"))
        if creds is None or self.users.get(creds[0]) != creds[1]:
            return Response(
                401,
                "HTTP Basic: Access denied.\n",
                {"WWW-Authenticate": 'Basic realm="Please enter your Earthdata Login credentials"'},
            )
        code = secrets.token_hex(8)
        with self._lock:
            self._codes[code] = creds[0]
        query = urlencode({"code": code, "state": req.q("state", "/")})
        return Response(302, b"", {"Location": f"{redirect_uri}?{query}"})


class EarthdataStandin(StandinServer):
    """A protected data host (GES DISC-like) that logs users in through `UrsStandin`.

    Starts and stops its own `UrsStandin` (reachable as `.urs`) unless one is passed in.
    """

    name = "earthdata-data"
    cookie_name = "urs_user_already_logged"

    def __init__(
        self,
        users: dict[str, str] | None = None,
        tokens=(),
        urs: UrsStandin | None = None,
        client_id: str = "geopump-data-host",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(host, port)
        self.urs = urs or UrsStandin(users)
        self._owns_urs = urs is None
        self.tokens = set(tokens)
        self.client_id = client_id
        self.files: dict[str, bytes] = {}
        self._sessions: dict[str, str] = {}
        self._truncations: dict[str, list[float]] = {}

    def start(self) -> EarthdataStandin:
        if self._owns_urs:
            self.urs.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self._owns_urs:
            self.urs.stop()

    def put_file(self, path: str, data: bytes) -> str:
        """Serve `data` at `path`; returns the file's URL."""
        path = path if path.startswith("/") else f"/{path}"
        with self._lock:
            self.files[path] = bytes(data)
        return f"{self.url}{path}"

    def truncate_next(self, path: str, times: int = 1, keep: float = 0.5) -> None:
        """Cut the next `times` downloads of `path` after `keep` of the bytes (Content-Length still the full size)."""
        path = path if path.startswith("/") else f"/{path}"
        with self._lock:
            self._truncations.setdefault(path, []).extend([keep] * times)

    def _authorized(self, req: Request) -> Response | None:
        """None when the request may have the file, else the answer (401 for a bad token, 302 to URS)."""
        auth = req.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            if auth[7:] in self.tokens:
                return None
            return Response(401, {"error": "invalid_token", "error_description": "The token is not valid"})
        for part in (req.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie_name and value in self._sessions:
                return None
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": f"{self.url}/urs_redirect",
                "response_type": "code",
                "state": req.path,
            },
            quote_via=quote,
        )
        return Response(302, b"", {"Location": f"{self.urs.url}/oauth/authorize?{query}"})

    def handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return Response(405, "Method Not Allowed")
        if req.path == "/urs_redirect":
            user = self.urs.redeem(req.q("code"))
            state = req.q("state") or "/"
            if user is None or not state.startswith("/"):
                return Response(401, "Invalid or expired authorization code")
            session = secrets.token_hex(16)
            with self._lock:
                self._sessions[session] = user
            return Response(
                302, b"", {"Location": state, "Set-Cookie": f"{self.cookie_name}={session}; Path=/; HttpOnly"}
            )
        denied = self._authorized(req)
        if denied is not None:
            return denied
        data = self.files.get(req.path)
        if data is None:
            return Response(404, "Not Found")
        with self._lock:
            pending = self._truncations.get(req.path)
            keep = pending.pop(0) if pending else None
        if keep is not None and req.method == "GET":
            short = data[: min(len(data) - 1, int(len(data) * keep))]
            # Connection: close makes the server hang up after the short body instead of waiting for the next request.
            return Response(200, _ShortBody(short, len(data)), {"Connection": "close"}, "application/x-hdfeos")
        return Response(200, data, {}, "application/x-hdfeos")
