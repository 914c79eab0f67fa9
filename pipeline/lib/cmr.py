"""pipeline.lib.cmr: NASA CMR granule search (search-after paging), granule parsing and the pure sensor planner.

Follows external-apis.md §6:

- `GET {base}/granules.umm_json` (UMM-G) or `/granules.json` (ATOM-JSON) with `short_name`, `version` (exact
  string, "003"), `temporal=start,end`, `updated_since` (revision date >=), `revision_date[]=start,end`,
  `page_size` (1..2000) and `sort_key[]=revision_date` so a harvest walks changes in a stable order;
- paging is only by the `CMR-Search-After` response header, resent as a request header with the identical query
  (never `page_num`/`offset`); paging stops when the header is absent or a page comes back empty;
- every request carries `Client-Id`; `Authorization: Bearer` only when a token is configured;
- a query string over ~5000 characters goes as a POST form body (CMR answers 413 above ~6k characters);
- `{"errors": [...]}` bodies, 429 after retries and `CMR-Time-Out: true` partial pages raise `CmrError`.

ATOM-JSON carries neither revision-id nor revision-date (only `updated`, the provider's metadata update time) nor an
exact byte size (`granule_size` is in MB), so those fields are None for ATOM granules; use `umm_json` to harvest.

`plan_granule_runs` turns one tick's search results and the stored sensor cursor into run requests. It is pure, so
the Dagster sensor stays a thin shell around it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import requests

from pipeline.lib.http import HttpClient, SourceError

SOURCE = "CMR"
DEFAULT_BASE_URL = "https://cmr.earthdata.nasa.gov/search"
MAX_PAGE_SIZE = 2000
#: CMR answers 413 for URLs over about 6k characters; above this a query goes as a POST form body.
MAX_QUERY_CHARS = 5000
#: VEDA's cmr-query keeps data links matching `^.+he5$`.
DEFAULT_INCLUDE = r"^.+\.he5$"
DATA_REL = "http://esipfed.org/ns/fedsearch/1.1/data#"
FORMATS = ("umm_json", "json")


class CmrError(SourceError):
    """A CMR search failed or returned something unusable; the message carries CMR's own error messages."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(SOURCE, message, status=status, body=body)


@dataclass(frozen=True)
class Granule:
    """One CMR granule, the same shape whichever result format it came from.

    `native_id` is the file name (UMM `ProducerGranuleId` or meta `native-id`; ATOM `producer_granule_id`).
    `revision_id`, `revision_date` and `size_bytes` are None when the format does not carry them (ATOM-JSON).
    `raw` is the original JSON item and takes no part in comparisons.
    """

    concept_id: str
    granule_ur: str
    native_id: str
    revision_id: int | None
    revision_date: datetime | None
    short_name: str | None
    version: str | None
    collection_concept_id: str | None
    time_start: datetime | None
    time_end: datetime | None
    data_url: str | None
    size_bytes: int | None
    raw: dict = field(default_factory=dict, compare=False, repr=False)


# -- time helpers --------------------------------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from CMR's `2022-01-20T00:00:00.000Z` (naive values are taken as UTC)."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError as exc:
            raise ValueError(f"not an ISO 8601 date-time: {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_time(value: datetime | date | str) -> str:
    """CMR's `YYYY-MM-DDTHH:MM:SSZ`; milliseconds are kept when present so a stored high-water mark round-trips.

    A naive datetime is refused: guessing its zone would silently shift a harvest window by hours.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} for CMR; pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        if value.microsecond:
            return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    raise TypeError(f"cannot format {type(value).__name__} as a CMR date-time")


def _range(value: tuple | list | None, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (start, end) pair, got {value!r}")
    start, end = value
    # CMR accepts an open end on either side ("start," or ",end").
    return f"{'' if start is None else format_time(start)},{'' if end is None else format_time(end)}"


# -- parsing ---------------------------------------------------------------------------------------------------------
def _matches(url: str | None, include: re.Pattern | None) -> bool:
    return bool(url) and (include is None or bool(include.search(url)))


def _compile(include: str | re.Pattern | None) -> re.Pattern | None:
    if include is None or isinstance(include, re.Pattern):
        return include
    return re.compile(include)


def parse_umm_item(item: dict, include: str | re.Pattern | None = DEFAULT_INCLUDE) -> Granule:
    """A `Granule` from one `items[]` entry of a `granules.umm_json` response."""
    if not isinstance(item, dict):
        raise ValueError(f"UMM item is not an object: {item!r:.200}")
    meta = item.get("meta") or {}
    umm = item.get("umm") or {}
    concept_id = meta.get("concept-id")
    if not concept_id:
        raise ValueError(f"UMM item without meta.concept-id: {item!r:.200}")
    rx = _compile(include)
    data_url = None
    for link in umm.get("RelatedUrls") or []:
        # "GET DATA VIA DIRECT ACCESS" (s3://) links need in-region AWS credentials; only plain GET DATA is fetched.
        if isinstance(link, dict) and link.get("Type") == "GET DATA" and _matches(link.get("URL"), rx):
            data_url = link["URL"]
            break
    data_granule = umm.get("DataGranule") or {}
    name = None
    for ident in data_granule.get("Identifiers") or []:
        if isinstance(ident, dict) and ident.get("IdentifierType") == "ProducerGranuleId":
            name = ident.get("Identifier")
            break
    name = name or meta.get("native-id") or umm.get("GranuleUR") or concept_id
    size = None
    archive = [a for a in data_granule.get("ArchiveAndDistributionInformation") or [] if isinstance(a, dict)]
    # Prefer the entry describing the file itself; a granule can also list e.g. a checksum or browse file.
    for entry in sorted(archive, key=lambda a: a.get("Name") != name):
        if entry.get("SizeInBytes") is not None:
            size = int(entry["SizeInBytes"])
            break
    rng = (umm.get("TemporalExtent") or {}).get("RangeDateTime") or {}
    single = (umm.get("TemporalExtent") or {}).get("SingleDateTime")
    coll = umm.get("CollectionReference") or {}
    revision_id = meta.get("revision-id")
    return Granule(
        concept_id=concept_id,
        granule_ur=umm.get("GranuleUR") or name,
        native_id=name,
        revision_id=int(revision_id) if revision_id is not None else None,
        revision_date=parse_time(meta.get("revision-date")),
        short_name=coll.get("ShortName"),
        version=coll.get("Version"),
        collection_concept_id=meta.get("collection-concept-id"),
        time_start=parse_time(rng.get("BeginningDateTime") or single),
        time_end=parse_time(rng.get("EndingDateTime") or single),
        data_url=data_url,
        size_bytes=size,
        raw=item,
    )


def parse_atom_entry(
    entry: dict,
    include: str | re.Pattern | None = DEFAULT_INCLUDE,
    short_name: str | None = None,
    version: str | None = None,
) -> Granule:
    """A `Granule` from one `feed.entry[]` of a `granules.json` (ATOM-JSON) response.

    ATOM entries name neither the collection short name nor its version: pass the ones the query asked for.
    """
    if not isinstance(entry, dict) or not entry.get("id"):
        raise ValueError(f"ATOM entry without an id: {entry!r:.200}")
    rx = _compile(include)
    data_url = None
    for link in entry.get("links") or []:
        # Inherited links are the collection's (documentation, landing pages), not this granule's files.
        if (
            isinstance(link, dict)
            and link.get("rel") == DATA_REL
            and not link.get("inherited")
            and _matches(link.get("href"), rx)
        ):
            data_url = link["href"]
            break
    title = entry.get("title") or entry["id"]
    name = entry.get("producer_granule_id")
    if not name and data_url:
        name = urlsplit(data_url).path.rsplit("/", 1)[-1]
    return Granule(
        concept_id=entry["id"],
        granule_ur=title,
        native_id=name or title,
        revision_id=None,
        revision_date=None,
        short_name=short_name,
        version=version,
        collection_concept_id=entry.get("collection_concept_id"),
        time_start=parse_time(entry.get("time_start")),
        time_end=parse_time(entry.get("time_end")),
        data_url=data_url,
        size_bytes=None,
        raw=entry,
    )


def _errors(body: str) -> list[str]:
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        return [e if isinstance(e, str) else json.dumps(e) for e in errors]
    return []


# -- client ------------------------------------------------------------------------------------------------------------
class CmrClient:
    """Granule search against CMR (or a stand-in).

    Args:
        base_url: the search root, e.g. `https://cmr.earthdata.nasa.gov/search` (UAT: `cmr.uat...`).
        client_id: sent as `Client-Id` on every request, as CMR asks of every client.
        token: optional Earthdata Login token for restricted collections (sent as a bearer token, never logged).
        timeout / max_retries / backoff: HTTP retries for network errors, 429 (Retry-After honoured) and 5xx.
        sleep: how to wait between retries (tests pass a recorder).
        time_out_retries: how often a page flagged `CMR-Time-Out: true` (partial results) is asked again.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        client_id: str = "geopump",
        token: str | None = None,
        timeout: float = 190.0,  # CMR's own hard limit is 180 s
        max_retries: int = 4,
        backoff: float = 1.0,
        sleep=time.sleep,
        time_out_retries: int = 3,
    ):
        if not client_id:
            raise ValueError("client_id is required: CMR asks every client to identify itself")
        self.base_url = base_url.rstrip("/")
        self.sleep = sleep
        self.backoff = backoff
        self.time_out_retries = max(0, time_out_retries)
        headers = {"Client-Id": client_id, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = HttpClient(
            SOURCE,
            self.base_url,
            headers=headers,
            secrets=(token,) if token else (),
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
        )
        #: `CMR-Hits` of the most recent page (the total CMR reported for the query).
        self.last_hits: int | None = None

    def search_granules(
        self,
        short_name: str,
        version: str,
        *,
        temporal: tuple | None = None,
        updated_since: datetime | str | None = None,
        revision_date: tuple | None = None,
        concept_ids: Sequence[str] | None = None,
        page_size: int = MAX_PAGE_SIZE,
        fmt: str = "umm_json",
        max_items: int | None = None,
        include: str | re.Pattern | None = DEFAULT_INCLUDE,
        sort_key: str | None = "revision_date",
    ) -> Iterator[Granule]:
        """Every granule of collection `short_name`/`version` matching the filters, across all pages.

        Arguments are checked here, before the first request; the returned iterator fetches pages lazily.
        `include` filters which data link becomes `Granule.data_url`; `sort_key=None` keeps CMR's default order.
        """
        if not short_name or not version:
            raise ValueError("short_name and version are both required (version is an exact string such as '003')")
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be an integer in 1..{MAX_PAGE_SIZE}, got {page_size!r}")
        if max_items is not None and max_items < 0:
            raise ValueError(f"max_items must be >= 0, got {max_items}")
        params: list[tuple[str, str]] = [("short_name", short_name), ("version", str(version))]
        if temporal is not None:
            params.append(("temporal", _range(temporal, "temporal")))
        if updated_since is not None:
            params.append(("updated_since", format_time(updated_since)))
        if revision_date is not None:
            params.append(("revision_date[]", _range(revision_date, "revision_date")))
        for cid in concept_ids or ():
            params.append(("concept_id[]", cid))
        params.append(("page_size", str(page_size)))
        if sort_key:
            params.append(("sort_key[]", sort_key))
        return self._pages(params, fmt, max_items, _compile(include), short_name, str(version))

    def _pages(self, params, fmt, max_items, include, short_name, version) -> Iterator[Granule]:
        what = f"granule search {short_name} v{version}"
        path = f"/granules.{fmt}"
        yielded = 0
        search_after: str | None = None
        seen_tokens: set[str] = set()
        while max_items is None or yielded < max_items:
            resp = self._page(path, params, search_after, what)
            items = self._items(resp, fmt, what)
            if not items:
                return
            for raw in items:
                try:
                    granule = (
                        parse_umm_item(raw, include)
                        if fmt == "umm_json"
                        else parse_atom_entry(raw, include, short_name, version)
                    )
                except ValueError as exc:
                    raise CmrError(f"{what}: unusable result item: {exc}") from exc
                yield granule
                yielded += 1
                if max_items is not None and yielded >= max_items:
                    return
            if self.last_hits is not None and yielded >= self.last_hits:
                return  # every hit is in: asking for the next page would only return an empty one
            search_after = resp.headers.get("CMR-Search-After")
            if not search_after:
                return
            if search_after in seen_tokens:  # a server bug must not become an endless loop
                raise CmrError(f"{what}: CMR-Search-After {search_after!r} repeated; paging does not advance")
            seen_tokens.add(search_after)

    def _page(self, path: str, params, search_after: str | None, what: str) -> requests.Response:
        headers = {"CMR-Search-After": search_after} if search_after else {}
        # A long query string risks 413; CMR takes the same parameters as a form body.
        method = "POST" if len(urlencode(params)) > MAX_QUERY_CHARS else "GET"
        kwargs = {"data": params} if method == "POST" else {"params": params}
        for attempt in range(self.time_out_retries + 1):
            try:
                resp = self.http.request(method, path, sleep=self.sleep, headers=headers, **kwargs)
            except SourceError as exc:
                errors = _errors(exc.body)
                if errors:
                    raise CmrError(
                        f"{what}: HTTP {exc.status}: {'; '.join(errors)}", status=exc.status, body=exc.body
                    ) from exc
                raise CmrError(
                    f"{what}: {exc.args[0].removeprefix(SOURCE + ': ')}", status=exc.status, body=exc.body
                ) from exc
            hits = resp.headers.get("CMR-Hits")
            self.last_hits = int(hits) if hits and hits.isdigit() else None
            if resp.headers.get("CMR-Time-Out", "").strip().lower() != "true":
                return resp
            # A timed-out query returns whatever Elasticsearch found in time: accepting it would skip granules.
            if attempt < self.time_out_retries:
                self.sleep(self.backoff * (2**attempt))
        raise CmrError(
            f"{what}: CMR returned partial results (CMR-Time-Out: true) {self.time_out_retries + 1} times for the "
            f"page after {search_after or 'the start'}; narrow the query (temporal/revision_date window)",
            status=resp.status_code,
        )

    @staticmethod
    def _items(resp: requests.Response, fmt: str, what: str) -> list:
        try:
            data = resp.json()
        except ValueError as exc:
            raise CmrError(f"{what}: response is not JSON ({resp.text[:200]!r})", status=resp.status_code) from exc
        if not isinstance(data, dict):
            raise CmrError(f"{what}: expected a JSON object, got {type(data).__name__}")
        if data.get("errors"):
            raise CmrError(f"{what}: {'; '.join(_errors(json.dumps(data)))}", status=resp.status_code)
        items = data.get("items") if fmt == "umm_json" else (data.get("feed") or {}).get("entry")
        if items is None:
            return []
        if not isinstance(items, list):
            raise CmrError(f"{what}: result list is {type(items).__name__}, not a list")
        return items


# -- sensor planning (pure) --------------------------------------------------------------------------------------------
def granule_day(granule: Granule) -> str:
    """The UTC date (YYYY-MM-DD) of the granule's start time: the daily partition key it feeds."""
    if granule.time_start is None:
        raise ValueError(f"granule {granule.concept_id} has no start time")
    return granule.time_start.astimezone(UTC).date().isoformat()


class GranuleRun(NamedTuple):
    partition_key: str
    run_key: str
    granule: Granule


class SkippedGranule(NamedTuple):
    concept_id: str
    revision_id: int | None
    day: str | None
    reason: str


@dataclass
class GranulePlan:
    """What one sensor tick should launch, the cursor to store, and why anything was left out."""

    runs: list[GranuleRun]
    cursor: str
    skipped: list[SkippedGranule] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    high_water: datetime | None = None


CURSOR_VERSION = 1


def _read_cursor(cursor_json: str | None) -> tuple[datetime | None, set[tuple[str, int]], str | None]:
    """(high-water mark, pairs at the mark, problem); a problem means "start over as on a first tick"."""
    if cursor_json is None or cursor_json == "":
        return None, set(), None
    try:
        data = json.loads(cursor_json)
    except (TypeError, ValueError) as exc:
        return None, set(), f"cursor is not JSON ({exc})"
    if not isinstance(data, dict):
        return None, set(), f"cursor is a JSON {type(data).__name__}, not an object"
    if data.get("v") != CURSOR_VERSION:
        return None, set(), f"cursor version {data.get('v')!r} is not {CURSOR_VERSION}"
    raw_mark, raw_pairs = data.get("updated_since"), data.get("at_mark", [])
    if raw_mark is not None and not isinstance(raw_mark, str):
        return None, set(), f"cursor updated_since is {type(raw_mark).__name__}, not a string"
    try:
        mark = parse_time(raw_mark)
    except ValueError as exc:
        return None, set(), f"cursor updated_since is unreadable ({exc})"
    if not isinstance(raw_pairs, list):
        return None, set(), f"cursor at_mark is {type(raw_pairs).__name__}, not a list"
    pairs: set[tuple[str, int]] = set()
    for pair in raw_pairs:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or isinstance(pair[1], bool)
            or not isinstance(pair[1], int)
        ):
            return None, set(), f"cursor at_mark entry {pair!r} is not [concept_id, revision_id]"
        pairs.add((pair[0], pair[1]))
    return mark, pairs, None


def _write_cursor(mark: datetime | None, pairs: Iterable[tuple[str, int]]) -> str:
    payload = {
        "v": CURSOR_VERSION,
        # Full precision: the mark is compared for equality with revision dates on the next tick.
        "updated_since": mark.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if mark else None,
        "at_mark": [list(p) for p in sorted(pairs)],
    }
    return json.dumps(payload, separators=(",", ":"))


def cursor_updated_since(cursor_json: str | None) -> datetime | None:
    """The `updated_since` to search with on the next tick: the stored high-water mark (None: first tick or corrupt).

    CMR's `updated_since` is inclusive, so granules exactly at the mark come back; `plan_granule_runs` drops the
    ones the cursor lists as already planned.
    """
    mark, _, problem = _read_cursor(cursor_json)
    return None if problem else mark


def plan_granule_runs(
    granules: Iterable[Granule],
    cursor_json: str | None,
    *,
    collection_id: str,
    start_date: str | None = None,
    max_runs: int | None = None,
    one_per_day: bool = True,
) -> GranulePlan:
    """Plan one sensor tick: one run per new granule revision, keyed `{collection_id}:{day}:{concept_id}:r{rev}`.

    - Granules behind the cursor's high-water mark, or at it and listed in the cursor, were planned before.
    - Of several revisions of one granule, only the newest runs; with `one_per_day` (daily L3 products have one
      file per day, and a reprocessed day can arrive as a new granule) only the newest granule of a day runs.
    - Granules whose day is before `start_date` (YYYY-MM-DD) are skipped.
    - `max_runs` keeps the oldest revisions; the cursor stops right after the last one kept, so the rest come back
      on the next tick.

    The returned cursor holds only the high-water mark (newest revision date consumed) and the (concept_id,
    revision_id) pairs at exactly that instant. A cursor that cannot be read is treated as a first tick; `notes`
    says so.
    """
    if max_runs is not None and max_runs < 0:
        raise ValueError(f"max_runs must be >= 0, got {max_runs}")
    if start_date is not None:
        start_date = date.fromisoformat(start_date).isoformat()
    notes: list[str] = []
    mark, at_mark, problem = _read_cursor(cursor_json)
    if problem:
        notes.append(f"{problem}; treated as a first tick")
    skipped: list[tuple[tuple, SkippedGranule]] = []

    def sort_key(g: Granule) -> tuple:
        return (g.revision_date, g.concept_id, g.revision_id)

    def skip(g: Granule, day: str | None, reason: str) -> None:
        skipped.append((sort_key(g), SkippedGranule(g.concept_id, g.revision_id, day, reason)))

    fresh: list[tuple[Granule, str]] = []
    for g in granules:
        if g.revision_id is None or g.revision_date is None:
            raise ValueError(
                f"granule {g.concept_id} has no revision id/date (ATOM-JSON results lack them); "
                "search with fmt='umm_json' to plan runs"
            )
        day = granule_day(g)
        if mark is not None and g.revision_date < mark:
            skip(g, day, f"revision date {format_time(g.revision_date)} is behind the cursor ({format_time(mark)})")
        elif mark is not None and g.revision_date == mark and (g.concept_id, g.revision_id) in at_mark:
            skip(g, day, "already planned (at the cursor's high-water mark)")
        elif start_date is not None and day < start_date:
            skip(g, day, f"day {day} is before start_date {start_date}")
        else:
            fresh.append((g, day))

    # Newest revision per concept id, then (optionally) newest granule per day.
    best: dict[str, tuple[Granule, str]] = {}
    for g, day in fresh:
        current = best.get(g.concept_id)
        if current is None or (g.revision_id, g.revision_date) > (current[0].revision_id, current[0].revision_date):
            best[g.concept_id] = (g, day)
    for g, day in fresh:
        winner = best[g.concept_id][0]
        if winner is g:
            continue
        if winner.revision_id == g.revision_id:
            skip(g, day, "duplicate of a result already seen in this tick")
        else:
            skip(g, day, f"superseded by revision {winner.revision_id} of the same granule in this tick")
    winners = list(best.values())
    if one_per_day:
        per_day: dict[str, Granule] = {}
        for g, day in winners:
            current = per_day.get(day)
            if current is None or sort_key(g) > sort_key(current):
                per_day[day] = g
        for g, day in winners:
            if per_day[day] is not g:
                newer = per_day[day]
                skip(g, day, f"superseded by newer granule {newer.concept_id} r{newer.revision_id} for {day}")
        winners = [(g, day) for g, day in winners if per_day[day] is g]

    winners.sort(key=lambda pair: sort_key(pair[0]))
    limit: tuple | None = None  # consume only what sorts before this key (None: everything)
    if max_runs is not None and len(winners) > max_runs:
        # The cursor must not pass the first deferred granule, or it would never be planned.
        limit = sort_key(winners[max_runs][0])
        notes.append(f"{len(winners) - max_runs} run(s) deferred to the next tick (max_runs={max_runs})")
        winners = winners[:max_runs]
    kept_skips = [s for key, s in skipped if limit is None or key < limit]
    consumed_keys = [sort_key(g) for g, _ in winners] + [key for key, _ in skipped if limit is None or key < limit]

    new_mark = mark
    for rev_date, _, _ in consumed_keys:
        if new_mark is None or rev_date > new_mark:
            new_mark = rev_date
    pairs = set(at_mark) if new_mark is not None and new_mark == mark else set()
    pairs.update((cid, rev) for rev_date, cid, rev in consumed_keys if rev_date == new_mark)

    runs = [
        GranuleRun(day, f"{collection_id}:{day}:{g.concept_id}:r{g.revision_id}", g)
        for g, day in sorted(winners, key=lambda pair: (pair[1], sort_key(pair[0])))
    ]
    return GranulePlan(
        runs=runs,
        cursor=_write_cursor(new_mark, pairs),
        skipped=kept_skips,
        notes=notes,
        high_water=new_mark,
    )
