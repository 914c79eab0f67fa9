"""pipeline.lib.gcs: a Google Cloud Storage JSON API client for the public Hansen / GLAD / RADD buckets.

Follows external-apis.md §2 (stand-in notes) and §11:

- listing is `GET /storage/v1/b/{bucket}/o?prefix=&delimiter=&pageToken=&maxResults=`; every page is followed
  through `nextPageToken`, and `items` / `prefixes` may be absent on a page;
- a download is `GET /storage/v1/b/{bucket}/o/{url-quoted name}?alt=media` (or the plain
  `https://storage.googleapis.com/{bucket}/{name}` form), streamed to a temporary file next to the target and
  moved into place only after the byte count and the MD5 match what GCS says it stores (`x-goog-stored-content-length`,
  `x-goog-hash: md5=...`, or the size and md5Hash of a listing), so a cut connection never leaves a truncated
  GeoTIFF where a good one is expected;
- public buckets need no auth; a bearer token is sent when given (and redacted from every message).

HTTP retries (network errors, 429, 5xx) come from `HttpClient`; a body that arrives short or corrupt is retried
here a bounded number of times, then `GcsError` names the bucket and object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import requests

from pipeline.lib.http import HttpClient, SourceError

SOURCE = "GCS"
DEFAULT_BASE_URL = "https://storage.googleapis.com"
#: Hosts whose URLs name `{bucket}/{object}` in the path; rewritten onto `base_url` so a stand-in can serve them.
PUBLIC_HOSTS = ("storage.googleapis.com", "storage.cloud.google.com")
#: GCS caps a list page at 1000 results.
MAX_PAGE = 1000
_CHUNK = 1 << 20


class GcsError(SourceError):
    """A GCS call failed or returned something unusable; the message names bucket and object."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(SOURCE, message, status=status, body=body)


class GcsNotFound(GcsError):
    """The bucket or object does not exist (HTTP 404)."""


@dataclass
class ListResult:
    """One listing: object resources (`name`, `size` as int, `md5Hash`, ...) and the "folders" under a delimiter."""

    items: list[dict] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [item["name"] for item in self.items]


def parse_gcs_url(url: str) -> tuple[str, str]:
    """(bucket, object name) of `gs://b/o`, `https://storage.googleapis.com/b/o` or any `http(s)://host/b/o`."""
    parts = urlsplit(url)
    if parts.scheme == "gs":
        bucket, name = parts.netloc, parts.path.lstrip("/")
    elif parts.scheme in ("http", "https"):
        bucket, _, name = unquote(parts.path).lstrip("/").partition("/")
    else:
        raise GcsError(f"{url!r} is not a gs:// or http(s):// object URL")
    if not bucket or not name:
        raise GcsError(f"{url!r} does not name a bucket and an object (expected .../{{bucket}}/{{object}})")
    return bucket, name


def _md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _goog_hash(header: str | None, kind: str) -> str | None:
    """One hash from `x-goog-hash: crc32c=...,md5=...` (the header may also come as several comma-joined values)."""
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == kind and value:
            return value
    return None


class GcsClient:
    """Read-only GCS client.

    Args:
        base_url: `https://storage.googleapis.com` or a stand-in's URL.
        token: optional OAuth bearer token (only private buckets need one).
        timeout: per-request timeout in seconds (large tiles stream, so this bounds stalls, not the whole download).
        max_retries / backoff: HTTP-level retries for network errors, 429 and 5xx (see `HttpClient`).
        sleep: how to wait between retries (tests pass a no-op).
        download_attempts: how many times a body that arrives short or with the wrong MD5 is fetched again.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        timeout: float = 120,
        max_retries: int = 4,
        backoff: float = 1.0,
        sleep=time.sleep,
        download_attempts: int = 3,
    ):
        self.base_url = base_url.rstrip("/")
        self.sleep = sleep
        self.backoff = backoff
        self.download_attempts = max(1, download_attempts)
        self.http = HttpClient(
            SOURCE,
            self.base_url,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            secrets=(token,) if token else (),
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
        )

    # -- paths -----------------------------------------------------------------------------------
    @staticmethod
    def _object_path(bucket: str, name: str) -> str:
        # Object names contain '/', which the JSON API wants percent-encoded inside the path segment.
        return f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"

    def plain_url(self, bucket: str, name: str) -> str:
        return f"{self.base_url}/{quote(bucket, safe='')}/{quote(name, safe='/')}"

    def _rebase(self, url: str) -> str:
        """Point a public storage.googleapis.com URL at `base_url` (the stand-in in tests, GCS itself in production)."""
        if url.startswith("gs://"):
            return self.plain_url(*parse_gcs_url(url))
        parts = urlsplit(url)
        if parts.hostname in PUBLIC_HOSTS:
            bucket, name = parse_gcs_url(url)
            return self.plain_url(bucket, name)
        return url

    def _get(self, path: str, what: str, **kwargs) -> requests.Response:
        try:
            return self.http.request("GET", path, sleep=self.sleep, **kwargs)
        except GcsError:
            raise
        except SourceError as exc:
            if exc.status == 404:
                raise GcsNotFound(f"{what}: not found ({_error_message(exc.body)})", 404, exc.body) from exc
            raise GcsError(
                f"{what}: {exc.args[0].removeprefix(SOURCE + ': ')}", status=exc.status, body=exc.body
            ) from exc

    def _json(self, resp: requests.Response, what: str) -> dict:
        try:
            data = resp.json()
        except ValueError as exc:
            raise GcsError(f"{what}: response is not JSON ({resp.text[:200]!r})") from exc
        if not isinstance(data, dict):
            raise GcsError(f"{what}: expected a JSON object, got {type(data).__name__}")
        return data

    # -- listing and metadata --------------------------------------------------------------------
    def list(
        self, bucket: str, prefix: str = "", delimiter: str | None = None, max_results: int = MAX_PAGE
    ) -> ListResult:
        """Every object (and, with a delimiter, every sub-"folder") under `prefix`, across all pages."""
        what = f"listing gs://{bucket}/{prefix}"
        params: dict[str, str | int] = {"prefix": prefix, "maxResults": max(1, min(int(max_results), MAX_PAGE))}
        if delimiter:
            params["delimiter"] = delimiter
        result = ListResult()
        seen_prefixes: set[str] = set()
        seen_tokens: set[str] = set()
        while True:
            resp = self._get(f"/storage/v1/b/{quote(bucket, safe='')}/o", what, params=params)
            page = self._json(resp, what)
            for item in page.get("items") or []:
                if "name" not in item:
                    raise GcsError(f"{what}: an item has no 'name' ({item!r:.200})")
                result.items.append(_normalise(item))
            for p in page.get("prefixes") or []:
                # GCS may repeat a prefix on consecutive pages.
                if p not in seen_prefixes:
                    seen_prefixes.add(p)
                    result.prefixes.append(p)
            token = page.get("nextPageToken")
            if not token:
                return result
            if token in seen_tokens:  # a server bug must not turn into an endless loop
                raise GcsError(f"{what}: nextPageToken {token!r} repeated; paging does not advance")
            seen_tokens.add(token)
            params["pageToken"] = token

    def head(self, bucket: str, name: str) -> dict:
        """Object metadata (`size` as int, `md5Hash`, `etag`, `generation`, `updated`, ...) without the bytes."""
        what = f"metadata of gs://{bucket}/{name}"
        resp = self._get(self._object_path(bucket, name), what)
        return _normalise(self._json(resp, what))

    def read_text(self, bucket: str, name: str, encoding: str = "utf-8") -> str:
        """A small object's content as text (e.g. `S2alert/uploadDate.txt`)."""
        what = f"reading gs://{bucket}/{name}"
        resp = self._get(self._object_path(bucket, name), what, params={"alt": "media"})
        try:
            return resp.content.decode(encoding)
        except UnicodeDecodeError as exc:
            raise GcsError(f"{what}: content is not {encoding} text ({exc})") from exc

    def head_url(self, url: str, etag: str | None = None, last_modified: str | None = None) -> dict:
        """HEAD a plain object URL, conditionally when validators are given (§11 audit recipe).

        Returns {changed, status, etag, last_modified, size, generation, md5}; `changed` is False on a 304.
        """
        target = self._rebase(url)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            resp = self.http.request(
                "HEAD", target, expected=(200, 304), sleep=self.sleep, headers=headers, allow_redirects=True
            )
        except SourceError as exc:
            cls = GcsNotFound if exc.status == 404 else GcsError
            raise cls(f"HEAD {url}: HTTP {exc.status}", status=exc.status) from exc
        h = resp.headers
        size = h.get("x-goog-stored-content-length") or h.get("Content-Length")
        return {
            "changed": resp.status_code != 304,
            "status": resp.status_code,
            "etag": h.get("ETag") or etag,
            "last_modified": h.get("Last-Modified") or last_modified,
            "size": int(size) if size and resp.status_code == 200 else None,
            "generation": h.get("x-goog-generation"),
            "md5": _goog_hash(h.get("x-goog-hash"), "md5"),
        }

    # -- downloads -------------------------------------------------------------------------------
    def download(
        self,
        bucket: str,
        name: str,
        dest_path: str | os.PathLike,
        expected_size: int | None = None,
        expected_md5: str | None = None,
    ) -> dict:
        """Stream one object to `dest_path` (atomically); returns {size, md5, etag, generation}.

        `expected_size` / `expected_md5` (base64, as in listings) are checked on top of what the response headers
        promise; a mismatch is retried up to `download_attempts` times, then raises `GcsError`.
        """
        return self._download(
            self._object_path(bucket, name),
            {"alt": "media"},
            f"gs://{bucket}/{name}",
            dest_path,
            expected_size,
            expected_md5,
        )

    def download_url(
        self,
        url: str,
        dest_path: str | os.PathLike,
        expected_size: int | None = None,
        expected_md5: str | None = None,
    ) -> dict:
        """Like `download` for a `https://storage.googleapis.com/{bucket}/{name}` or `gs://` URL (Hansen lists)."""
        return self._download(self._rebase(url), None, url, dest_path, expected_size, expected_md5)

    def _download(self, path, params, what, dest_path, expected_size, expected_md5) -> dict:
        dest = Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        problem = ""
        for attempt in range(1, self.download_attempts + 1):
            resp = self._get(path, f"downloading {what}", params=params, stream=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            try:
                result, problem = self._receive(resp, fd, expected_size, expected_md5)
                if not problem:
                    os.replace(tmp, dest)
                    return result
            finally:
                resp.close()
                if os.path.exists(tmp):
                    os.unlink(tmp)
            if attempt < self.download_attempts:
                self.sleep(self.backoff * (2 ** (attempt - 1)))
        raise GcsError(f"downloading {what} failed after {self.download_attempts} attempts: {problem}")

    @staticmethod
    def _receive(resp: requests.Response, fd: int, expected_size, expected_md5) -> tuple[dict, str]:
        """Write the body to `fd`; returns (result, problem) where problem is "" when every check passed."""
        h = resp.headers
        md5 = hashlib.md5()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_content(_CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
        except (requests.RequestException, OSError) as exc:  # connection cut mid-body, short read
            return {}, f"body interrupted after {size} bytes ({type(exc).__name__}: {exc})"
        # With a Content-Encoding (GCS decompressive transcoding of gzip-stored objects) requests hands us decoded
        # bytes, while every size and hash (listing, headers) describes the stored, encoded ones: nothing to compare.
        # Tiles are stored plain, so this only matters for odd text objects.
        encoded = bool(h.get("Content-Encoding")) and h.get("Content-Encoding") != "identity"
        if encoded:
            return {"size": size, "md5": None, "etag": h.get("ETag"), "generation": h.get("x-goog-generation")}, ""
        checks = [
            ("the size given by the caller", expected_size),
            ("x-goog-stored-content-length", h.get("x-goog-stored-content-length")),
            ("Content-Length", h.get("Content-Length")),
        ]
        for label, want in checks:
            if want is not None and int(want) != size:
                return {}, f"received {size} bytes but {label} is {int(want)} (truncated or corrupt body)"
        got_md5 = _md5_b64(md5.digest())
        for label, want in (
            ("the MD5 given by the caller", expected_md5),
            ("x-goog-hash md5", _goog_hash(h.get("x-goog-hash"), "md5")),
        ):
            if want and want != got_md5:
                return {}, f"MD5 of the {size} received bytes is {got_md5}, {label} is {want} (corrupt body)"
        return {"size": size, "md5": got_md5, "etag": h.get("ETag"), "generation": h.get("x-goog-generation")}, ""


def _error_message(body: str) -> str:
    """The `error.message` of a JSON API error body (`{"error": {"code": 404, "message": "No such object: b/o"}}`)."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.strip()[:200] or "HTTP 404"


def _normalise(item: dict) -> dict:
    """The JSON API sends `size` and `generation` as strings; callers compare sizes as numbers."""
    item = dict(item)
    if "size" in item:
        try:
            item["size"] = int(item["size"])
        except (TypeError, ValueError) as exc:
            raise GcsError(f"object {item.get('name')!r} has a non-numeric size {item['size']!r}") from exc
    return item
