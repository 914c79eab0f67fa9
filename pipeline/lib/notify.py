"""pipeline.lib.notify: Slack webhook alerts that never carry secrets."""

from __future__ import annotations

import re

from pipeline.lib.http import HttpClient, redact

# Credentials that can hide in exception text: bearer tokens, key=value query parameters and
# FIRMS MAP_KEYs in area-API paths.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:map_key|api_key|apikey|token|password|secret|x-api-key)[=:]\s*)[^\s&\"']+"),
    re.compile(r"(/api/(?:area|country)/csv/)[^/\s]+"),
]


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove known secrets and anything that looks like a credential from `text`."""
    text = redact(text, secrets)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class SlackNotifier:
    """Posts plain-text messages to a Slack incoming webhook."""

    def __init__(self, webhook_url: str, secrets: tuple[str, ...] = (), timeout: float = 20.0, max_retries: int = 2):
        self._http = HttpClient("Slack", secrets=(webhook_url, *secrets), timeout=timeout, max_retries=max_retries)
        self._url = webhook_url
        self._secrets = tuple(s for s in secrets if s)

    def post(self, text: str) -> None:
        self._http.post(self._url, json={"text": scrub(text, self._secrets)[:3500]})
