"""pipeline.lib.http: one retrying HTTP client for every external service.

Every client in geopump goes through `HttpClient`, so retries, timeouts, 429 + Retry-After
handling and secret redaction behave the same for FIRMS, the Areas API and the Data API.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import requests

log = logging.getLogger(__name__)

#: Status codes worth retrying: throttling and transient server/gateway failures (524 is the
#: Cloudflare timeout the GFW Data API documents).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 524})


class _RedactingFilter(logging.Filter):
    """Redacts registered secrets from log records.

    urllib3 logs every request line (full path, so a FIRMS MAP_KEY too) at DEBUG level on
    `urllib3.connectionpool`; HttpClient's own redaction never sees those records.
    """

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = redact(message, self.secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_URLLIB3_REDACTOR = _RedactingFilter()
logging.getLogger("urllib3.connectionpool").addFilter(_URLLIB3_REDACTOR)


def register_secret(secret: str | None) -> None:
    """Redact `secret` from urllib3's own request logs from now on."""
    if secret:
        _URLLIB3_REDACTOR.secrets.add(secret)


class SourceError(RuntimeError):
    """A call to an external source failed; the message names the source and never a secret."""

    def __init__(self, source: str, message: str, status: int | None = None, body: str = ""):
        super().__init__(f"{source}: {message}")
        self.source = source
        self.status = status
        self.body = body


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every non-empty secret in `text` with `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class HttpClient:
    """A small retrying wrapper around `requests.Session`.

    Args:
        source: human name of the service, used in every error message (e.g. "FIRMS").
        base_url: prefix for relative paths.
        headers: default headers (auth headers go here; they are never logged).
        secrets: strings to redact from messages and logs (tokens, keys in URL paths).
        timeout: per-request (connect, read) timeout in seconds.
        max_retries: retries after the first attempt for retryable failures.
        backoff: base delay in seconds for exponential back-off on 5xx and network errors.
        max_retry_after: cap on a server-requested Retry-After wait.
    """

    def __init__(
        self,
        source: str,
        base_url: str = "",
        *,
        headers: dict[str, str] | None = None,
        secrets: Sequence[str] = (),
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_retry_after: float = 120.0,
        session: requests.Session | None = None,
    ):
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.secrets = tuple(s for s in secrets if s)
        for secret in self.secrets:
            register_secret(secret)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": "geopump/0.1 (+https://github.com/geopump)"})
        if headers:
            self.session.headers.update({k: v for k, v in headers.items() if v})

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _safe(self, text: str) -> str:
        return redact(text, self.secrets)

    def request(
        self,
        method: str,
        path: str,
        *,
        expected: Iterable[int] = (200,),
        sleep=time.sleep,
        **kwargs,
    ) -> requests.Response:
        """Send a request, retrying network errors, 429 and 5xx; raise `SourceError` otherwise.

        Any status in `expected` is returned; any other non-retryable status raises at once
        with the (redacted, truncated) response body in the message.
        """
        expected = set(expected)
        url = self.url(path)
        kwargs.setdefault("timeout", self.timeout)
        last_problem = "no attempt made"
        status: int | None = None
        body = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * (2**attempt)
            try:
                resp = self.session.request(method, url, **kwargs)
            except requests.RequestException as exc:  # timeouts, refused connections, resets
                last_problem = f"{type(exc).__name__}: {self._safe(str(exc))}"
                status, body = None, ""
            else:
                if resp.status_code in expected:
                    return resp
                status = resp.status_code
                body = self._safe(resp.text[:500])
                last_problem = f"HTTP {status}: {body.strip()[:300]}"
                if status not in RETRY_STATUSES:
                    raise SourceError(
                        self.source,
                        f"{method} {self._safe(url)} returned {last_problem}",
                        status=status,
                        body=body,
                    )
                if status == 429 or "Retry-After" in resp.headers:
                    wait = min(self.max_retry_after, parse_retry_after(resp.headers.get("Retry-After"), wait))
            if attempt < self.max_retries:
                log.warning(
                    "%s: %s %s failed (%s); retry %d/%d in %.1fs",
                    self.source,
                    method,
                    self._safe(url),
                    last_problem,
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                sleep(wait)
        raise SourceError(
            self.source,
            f"{method} {self._safe(url)} failed after {self.max_retries + 1} attempts: {last_problem}",
            status=status,
            body=body,
        )

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def head(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("allow_redirects", True)
        return self.request("HEAD", path, **kwargs)
