"""pipeline.lib.earthdata: verified downloads of Earthdata-protected files (EDL bearer token or URS redirect login).

Follows external-apis.md §6.1 (data URLs such as `https://acdisc.gesdisc.eosdis.nasa.gov/data//...he5` need
Earthdata Login) and the VEDA cogify step (domain.md §B3), which logs in with a username and password:

- with a token, `Authorization: Bearer <token>` goes to the data URL's own host (host:port) and nowhere else;
- with a username/password, the data host answers 302 to `<urs>/oauth/authorize?...`; HTTP basic credentials go
  ONLY to the configured URS host (host:port aware, https or loopback only), which answers 302 back to the data
  host's redirect URL; that sets a session cookie (kept in the requests session) and 302s to the file. Redirects
  are followed by hand so no Authorization header ever rides a redirect to another host;
- the body streams to `<dest>.part`, is checked against `Content-Length` and the caller's `expected_size`, and is
  moved into place with `os.replace` only when complete; a body cut short is fetched again a bounded number of
  times, then `EarthdataError` names the URL and the byte counts.

Secrets (token, password, the encoded basic credentials) never appear in exceptions, logs or return values.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from pipeline.lib.http import HttpClient, SourceError, redact

SOURCE = "Earthdata"
DEFAULT_URS_HOST = "urs.earthdata.nasa.gov"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Basic credentials may go over plain http only to these (stand-ins in tests).
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_CHUNK = 1 << 20


class EarthdataError(SourceError):
    """A download failed; the message names the URL (never a secret)."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(SOURCE, message, status=status, body=body)


class EarthdataAuthError(EarthdataError):
    """Earthdata Login refused the credentials, or the file needs credentials that are not configured."""


@dataclass(frozen=True)
class DownloadResult:
    path: str
    bytes: int
    sha256: str
    attempts: int


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return host, parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _parse_urs_host(urs_host: str) -> tuple[str | None, str, int | None]:
    """(scheme or None, host, port or None) from `urs.earthdata.nasa.gov`, `127.0.0.1:8080` or a full URL."""
    text = urs_host.strip()
    if not text:
        raise ValueError("urs_host must not be empty")
    parts = urlsplit(text if "://" in text else f"//{text}")
    if not parts.hostname:
        raise ValueError(f"urs_host {urs_host!r} names no host")
    return (parts.scheme or None), parts.hostname.lower(), parts.port


def is_urs_url(url: str, urs_host: str = DEFAULT_URS_HOST) -> bool:
    """Whether `url` points at the configured Earthdata Login host (host and port must both match).

    A configured host without a port matches only the scheme's default port, so `127.0.0.1:9000` never matches
    a stand-in URS on `127.0.0.1:9001`, and `urs.earthdata.nasa.gov` never matches `urs.earthdata.nasa.gov:8443`.
    """
    scheme, host, port = _parse_urs_host(urs_host)
    parts = urlsplit(url)
    if scheme and parts.scheme != scheme:
        return False
    url_host, url_port = _host_port(url)
    if url_host != host:
        return False
    if port is not None:
        return url_port == port
    return parts.port is None or parts.port == _DEFAULT_PORTS.get(parts.scheme)


def _bytes_read(exc: BaseException) -> int:
    """Bytes the wire delivered before a cut, from urllib3's IncompleteRead (its last partial chunk never reaches
    iter_content, so counting chunks alone under-reports); 0 when the exception does not say."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        partial = getattr(item, "partial", None)
        if isinstance(partial, int) and not isinstance(partial, bool):
            return partial
        if isinstance(item, BaseException):
            stack.extend(item.args)
            stack.extend(x for x in (item.__cause__, item.__context__) if x is not None)
    return 0


class EarthdataDownloader:
    """Downloads Earthdata files with a bearer token or an Earthdata Login username/password.

    Args:
        token: an EDL user token (sent only to the data URL's host).
        username / password: EDL credentials (sent only to `urs_host`, via HTTP basic auth).
        urs_host: the Earthdata Login host, `host` or `host:port` (tests point it at a stand-in).
        timeout / max_retries / backoff: HTTP retries for network errors, 429 and 5xx on every hop.
        sleep: how to wait between retries (tests pass a recorder).
        download_attempts: how many times a body that arrives short is fetched again.
        max_redirects: bound on the redirect chain (data host -> URS -> data host -> file is 3 hops).
    """

    def __init__(
        self,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        urs_host: str = DEFAULT_URS_HOST,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        sleep=time.sleep,
        download_attempts: int = 3,
        max_redirects: int = 10,
        url_policy=None,
    ):
        if bool(username) != bool(password):
            raise ValueError("give both username and password for Earthdata Login, or neither")
        _parse_urs_host(urs_host)  # fail early on a bad setting
        self.token = token or None
        self.username = username or None
        self.urs_host = urs_host
        self.sleep = sleep
        self.backoff = backoff
        self.download_attempts = max(1, download_attempts)
        self.max_redirects = max(1, max_redirects)
        self._basic = None
        # Data links come from harvested CMR records: each hop (redirects too) must pass the URL policy.
        self.url_policy = url_policy
        secrets = [s for s in (token, password) if s]
        if username and password:
            encoded = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._basic = f"Basic {encoded}"
            secrets.append(encoded)
        self._secrets = tuple(secrets)
        # No default Authorization header: each hop gets exactly the credentials meant for its host.
        self.http = HttpClient(SOURCE, secrets=self._secrets, timeout=timeout, max_retries=max_retries, backoff=backoff)

    def _safe(self, text: str) -> str:
        return redact(text, self._secrets)

    def _fail(self, cls, message: str, status: int | None = None, body: str = ""):
        return cls(self._safe(message), status=status, body=self._safe(body))

    # -- redirect chain ------------------------------------------------------------------------------------------
    def _headers_for(self, url: str, origin: tuple[str, int | None]) -> dict[str, str]:
        if is_urs_url(url, self.urs_host):
            return {"Authorization": self._basic} if self._basic else {}
        if self.token and _host_port(url) == origin:
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def _open(self, url: str) -> requests.Response:
        """Follow the redirect chain by hand and return the streamed 200 response of the file."""
        origin = _host_port(url)
        current = url
        for _ in range(self.max_redirects + 1):
            parts = urlsplit(current)
            to_urs = is_urs_url(current, self.urs_host)
            if self.url_policy is not None and not to_urs:
                try:
                    self.url_policy.check(current, "granule URL" if current == url else f"redirect of {url} to")
                except ValueError as exc:
                    raise self._fail(EarthdataError, str(exc)) from None
            if to_urs and not self._basic:
                hint = "the token was not accepted and " if self.token else ""
                raise self._fail(
                    EarthdataAuthError,
                    f"{url} redirected to Earthdata Login ({parts.netloc}) but {hint}"
                    "no username/password is configured",
                )
            if to_urs and parts.scheme != "https" and (parts.hostname or "") not in _LOOPBACK:
                raise self._fail(
                    EarthdataAuthError,
                    f"{url} redirected to Earthdata Login over plain {parts.scheme} ({parts.netloc}); "
                    "refusing to send credentials unencrypted",
                )
            if not to_urs and parts.path.rstrip("/").endswith("/oauth/authorize"):
                # A login server we were not told about: never hand it the credentials.
                raise self._fail(
                    EarthdataAuthError,
                    f"{url} redirected to a login server at {parts.netloc}, not the configured urs_host "
                    f"{self.urs_host!r}; no credentials were sent",
                )
            try:
                resp = self.http.request(
                    "GET",
                    current,
                    expected=(200, *REDIRECT_STATUSES),
                    sleep=self.sleep,
                    headers=self._headers_for(current, origin),
                    allow_redirects=False,
                    stream=True,
                )
            except SourceError as exc:
                raise self._hop_error(exc, url, current, to_urs, origin) from exc
            if resp.status_code == 200:
                if to_urs:
                    resp.close()
                    raise self._fail(
                        EarthdataAuthError,
                        f"{url} ended at the Earthdata Login page ({parts.netloc}) instead of the file; "
                        f"the login for user {self.username!r} did not complete",
                    )
                return resp
            location = resp.headers.get("Location")
            status = resp.status_code
            resp.close()
            if not location:
                raise self._fail(EarthdataError, f"{current} answered HTTP {status} without a Location header", status)
            current = urljoin(current, location)
        raise self._fail(EarthdataError, f"{url}: more than {self.max_redirects} redirects (last to {current})")

    def _hop_error(self, exc: SourceError, url: str, current: str, to_urs: bool, origin) -> EarthdataError:
        netloc = urlsplit(current).netloc
        if exc.status in (401, 403):
            if to_urs:
                return self._fail(
                    EarthdataAuthError,
                    f"Earthdata Login at {netloc} rejected the username/password of user {self.username!r} "
                    f"(HTTP {exc.status}) while downloading {url}",
                    exc.status,
                )
            with_token = self.token and _host_port(current) == origin
            how = "with the configured token" if with_token else "without credentials"
            return self._fail(
                EarthdataAuthError, f"{netloc} refused {url} {how} (HTTP {exc.status})", exc.status, exc.body
            )
        if exc.status == 404:
            return self._fail(EarthdataError, f"{url}: not found (HTTP 404 from {netloc})", 404, exc.body)
        return self._fail(
            EarthdataError, f"downloading {url}: {exc.args[0].removeprefix(SOURCE + ': ')}", exc.status, exc.body
        )

    # -- download --------------------------------------------------------------------------------------------------
    def download(self, url: str, dest_path: str | os.PathLike, expected_size: int | None = None) -> DownloadResult:
        """Stream `url` to `dest_path` via `<dest_path>.part`; the file appears only when it is complete.

        Raises `EarthdataAuthError` for refused or missing credentials and `EarthdataError` for anything else
        (including a body still short after `download_attempts` tries, or a complete body whose size differs from
        `expected_size`).
        """
        if expected_size is not None and expected_size < 0:
            raise ValueError(f"expected_size must be >= 0, got {expected_size}")
        dest = Path(dest_path)
        part = Path(f"{dest}.part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        problem = ""
        attempt = 0
        try:
            for attempt in range(1, self.download_attempts + 1):
                resp = self._open(url)
                try:
                    size, digest, problem, retry = self._receive(resp, part, expected_size)
                finally:
                    resp.close()
                if not problem:
                    os.replace(part, dest)
                    return DownloadResult(str(dest), size, digest, attempt)
                part.unlink(missing_ok=True)
                if not retry:
                    break
                if attempt < self.download_attempts:
                    self.sleep(self.backoff * (2 ** (attempt - 1)))
        finally:
            part.unlink(missing_ok=True)
        raise self._fail(EarthdataError, f"downloading {url} failed after {attempt} attempt(s): {problem}")

    @staticmethod
    def _receive(resp: requests.Response, part: Path, expected_size: int | None) -> tuple[int, str, str, bool]:
        """Write the body to `part`; returns (bytes, sha256, problem, worth retrying). problem is "" when complete."""
        headers = resp.headers
        # With a Content-Encoding, requests hands over decoded bytes while Content-Length counts encoded ones.
        encoded = headers.get("Content-Encoding", "identity").lower() != "identity"
        length = headers.get("Content-Length")
        promised = int(length) if length and length.isdigit() and not encoded else None
        sha = hashlib.sha256()
        size = 0
        try:
            with open(part, "wb") as out:
                for chunk in resp.iter_content(_CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
        except requests.RequestException as exc:  # connection cut mid-body, read timeout
            of = f" of {promised}" if promised is not None else ""
            received = max(size, _bytes_read(exc))
            return size, "", f"connection broke after {received}{of} bytes ({type(exc).__name__})", True
        if promised is not None and size != promised:
            return size, "", f"received {size} bytes but Content-Length is {promised} (truncated body)", True
        if expected_size is not None and size != expected_size:
            if promised is not None:
                # The server delivered everything it promised: fetching again would give the same wrong file.
                return (
                    size,
                    "",
                    f"received the complete {size}-byte body but expected_size is {expected_size} "
                    "(the file differs from its metadata)",
                    False,
                )
            return size, "", f"received {size} bytes but expected_size is {expected_size}", True
        return size, sha.hexdigest(), "", False
