"""pipeline.lib.stac_api: a STAC API Transactions client (create/replace collections and items, search with paging)."""

# Follows shared/reference/external-apis.md §7.4, checked against stac-fastapi-pgstac 7.2:
#
# - items: POST /collections/{cid}/items -> 201 (created); 409 ConflictError when the id exists, then
#   PUT /collections/{cid}/items/{id} -> 200/204 (replaced). Re-publishing a day therefore replaces its item and
#   never duplicates it; a POST retried after a lost response also lands on 409 -> PUT.
# - collections: GET /collections/{id}; 404 -> POST /collections; otherwise PUT /collections/{id} only when the
#   content differs. Comparing first avoids rewriting an unchanged collection on every run (pgstac re-derives
#   partitions and its collection cache on update); the comparison ignores links the server generates.
# - the server owns the structural links (self, root, parent, collection, items): they are dropped from what we send,
#   so relative links from the static catalog never leak into the API.
# - every failure raises SourceError (source "STAC API") naming the collection/item and quoting the server's body.

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pipeline.lib.http import HttpClient, SourceError
from pipeline.lib.stac import STRUCTURAL_RELS, rfc3339, safe_id

SOURCE = "STAC API"


def _seg(value: str, what: str) -> str:
    return quote(safe_id(value, what), safe="")


def _datetime_param(value: Any) -> str | None:
    """A STAC API `datetime` parameter from a string, a datetime or a (start, end) pair (None = open)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    start, end = value
    return f"{rfc3339(start) if start is not None else '..'}/{rfc3339(end) if end is not None else '..'}"


class StacApiClient:
    """A client for a STAC API with the Transactions extension (e.g. stac-fastapi-pgstac).

    Args:
        base_url: the API landing page, e.g. `https://stac.example.org` (paths are appended to it).
        token: optional bearer token (sent as `Authorization: Bearer`, redacted from errors and logs).
        timeout, max_retries, backoff: passed to `HttpClient` (429/5xx/network errors are retried).
        sleep: the wait used between retries (tests pass a recorder).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        sleep=time.sleep,
        session=None,
    ):
        if not base_url:
            raise ValueError("STAC API base_url is empty")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = HttpClient(
            SOURCE,
            base_url,
            headers=headers,
            secrets=[token] if token else (),
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            session=session,
        )
        self.base_url = self.http.base_url
        self.sleep = sleep

    # -- plumbing ------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, what: str, *, expected, **kwargs):
        try:
            return self.http.request(method, path, expected=expected, sleep=self.sleep, **kwargs)
        except SourceError as exc:
            detail = str(exc).removeprefix(f"{SOURCE}: ")
            raise SourceError(SOURCE, f"{what}: {detail}", status=exc.status, body=exc.body) from exc

    @staticmethod
    def _json(resp, what: str) -> Any:
        try:
            return resp.json()
        except ValueError as exc:
            raise SourceError(
                SOURCE, f"{what}: response is not JSON: {resp.text[:300]!r}", status=resp.status_code
            ) from exc

    def _body(self, obj: Mapping[str, Any]) -> dict:
        """What we send: the object without the links the server generates itself."""
        body = json.loads(json.dumps(obj, allow_nan=False))
        body["links"] = [link for link in body.get("links", []) if link.get("rel") not in STRUCTURAL_RELS]
        return body

    def _own_links(self, links: Sequence[Mapping[str, Any]]) -> list:
        # Links that the server did not generate: not structural and not pointing into the API itself.
        return sorted(
            json.dumps(dict(link), sort_keys=True)
            for link in links or []
            if link.get("rel") not in STRUCTURAL_RELS and not str(link.get("href", "")).startswith(self.base_url)
        )

    def _same_collection(self, existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
        strip = {"links"}
        left = {k: v for k, v in existing.items() if k not in strip}
        right = {k: v for k, v in wanted.items() if k not in strip}
        return left == right and self._own_links(existing.get("links", [])) == self._own_links(wanted.get("links", []))

    # -- collections ---------------------------------------------------------------------------------------------
    def get_collection(self, collection_id: str) -> dict | None:
        """The collection as the server returns it, or None if it does not exist."""
        what = f"collection {collection_id!r}"
        resp = self._request("GET", f"/collections/{_seg(collection_id, 'collection id')}", what, expected=(200, 404))
        return None if resp.status_code == 404 else self._json(resp, what)

    def ensure_collection(self, collection: Mapping[str, Any]) -> str:
        """Create the collection, or update it if its content differs; returns "created", "updated" or "unchanged"."""
        collection_id = safe_id(collection.get("id"), "collection id")
        what = f"collection {collection_id!r}"
        body = self._body(collection)
        existing = self.get_collection(collection_id)
        if existing is None:
            resp = self._request("POST", "/collections", what, expected=(200, 201, 202, 409), json=body)
            if resp.status_code != 409:
                return "created"
            # Created concurrently (or our earlier POST landed after all): compare with what is there now.
            existing = self.get_collection(collection_id) or {}
        if self._same_collection(existing, body):
            return "unchanged"
        self._request(
            "PUT", f"/collections/{_seg(collection_id, 'collection id')}", what, expected=(200, 202, 204), json=body
        )
        return "updated"

    def delete_collection(self, collection_id: str) -> bool:
        """Delete a collection (and, on pgstac, its items); False if it did not exist."""
        what = f"collection {collection_id!r}"
        resp = self._request(
            "DELETE", f"/collections/{_seg(collection_id, 'collection id')}", what, expected=(200, 202, 204, 404)
        )
        return resp.status_code != 404

    # -- items ---------------------------------------------------------------------------------------------------
    def _item_path(self, collection_id: str, item_id: str | None = None) -> str:
        path = f"/collections/{_seg(collection_id, 'collection id')}/items"
        return path if item_id is None else f"{path}/{_seg(item_id, 'item id')}"

    def _item_ids(self, item: Mapping[str, Any]) -> tuple[str, str, str]:
        item_id = safe_id(item.get("id"), "item id")
        collection_id = safe_id(item.get("collection"), f"collection of item {item_id!r}")
        return collection_id, item_id, f"item {item_id!r} (collection {collection_id!r})"

    def upsert_item(self, item: Mapping[str, Any]) -> str:
        """Create or replace an item: POST (201 -> "created"); on 409 PUT (200/204 -> "replaced")."""
        collection_id, item_id, what = self._item_ids(item)
        try:
            resp = self._request(
                "POST", self._item_path(collection_id), what, expected=(200, 201, 202, 409), json=self._body(item)
            )
        except SourceError as exc:
            # pgstac answers a bare 500 for an item of an unknown collection; say what is actually wrong.
            if (exc.status is not None and exc.status < 500) or self.get_collection(collection_id) is not None:
                raise
            raise SourceError(
                SOURCE,
                f"{what}: collection {collection_id!r} does not exist on {self.base_url} (call ensure_collection "
                f"first); the server said: {str(exc).removeprefix(f'{SOURCE}: ')}",
                status=exc.status,
                body=exc.body,
            ) from exc
        if resp.status_code != 409:
            return "created"
        self.replace_item(item)
        return "replaced"

    def replace_item(self, item: Mapping[str, Any]) -> None:
        """Replace an existing item (PUT); SourceError with status 404 if it does not exist."""
        collection_id, item_id, what = self._item_ids(item)
        self._request(
            "PUT", self._item_path(collection_id, item_id), what, expected=(200, 202, 204), json=self._body(item)
        )

    def get_item(self, collection_id: str, item_id: str) -> dict | None:
        what = f"item {item_id!r} (collection {collection_id!r})"
        resp = self._request("GET", self._item_path(collection_id, item_id), what, expected=(200, 404))
        return None if resp.status_code == 404 else self._json(resp, what)

    def delete_item(self, collection_id: str, item_id: str) -> bool:
        """Delete an item; False if it did not exist (404 is allowed by the Transactions extension)."""
        what = f"item {item_id!r} (collection {collection_id!r})"
        resp = self._request("DELETE", self._item_path(collection_id, item_id), what, expected=(200, 202, 204, 404))
        return resp.status_code != 404

    # -- search --------------------------------------------------------------------------------------------------
    def iter_pages(
        self,
        collections: str | Sequence[str],
        *,
        datetime: Any = None,
        limit: int = 100,
        max_pages: int = 10_000,
    ) -> Iterator[list[dict]]:
        """Pages of `GET /search` results, following `next` links (GET hrefs or POST bodies) until none is left.

        `datetime`: an RFC 3339 instant or interval string, a datetime, or a (start, end) pair (None = open end).
        """
        names = [collections] if isinstance(collections, str) else list(collections)
        what = f"search in {', '.join(names)}"
        params: dict[str, Any] = {"collections": ",".join(names), "limit": int(limit)}
        if datetime is not None:
            params["datetime"] = _datetime_param(datetime)
        request: tuple[str, str, dict[str, Any]] = ("GET", "/search", {"params": params})
        seen: set[str] = set()
        for _ in range(max_pages):
            method, href, kwargs = request
            key = json.dumps([method, href, kwargs], sort_keys=True, default=str)
            if key in seen:
                raise SourceError(SOURCE, f"{what}: the server's next link repeats {method} {href}; stopping")
            seen.add(key)
            page = self._json(self._request(method, href, what, expected=(200,), **kwargs), what)
            features = page.get("features", [])
            yield features
            nxt = next((link for link in page.get("links", []) if link.get("rel") == "next"), None)
            if not features or nxt is None:
                return
            if str(nxt.get("method", "GET")).upper() == "POST":
                body = nxt.get("body") or {}
                if nxt.get("merge"):
                    previous = kwargs.get("json") or {**params, "collections": names}
                    body = {**previous, **body}
                request = ("POST", nxt["href"], {"json": body})
            else:
                request = ("GET", nxt["href"], {})
        raise SourceError(SOURCE, f"{what}: more than {max_pages} pages; stopping")

    def search(
        self,
        collections: str | Sequence[str],
        *,
        datetime: Any = None,
        limit: int = 100,
        max_pages: int = 10_000,
    ) -> list[dict]:
        """All items matching the search, across every page."""
        return [
            feature
            for page in self.iter_pages(collections, datetime=datetime, limit=limit, max_pages=max_pages)
            for feature in page
        ]
