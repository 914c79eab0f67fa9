"""pipeline.lib.urls: check URLs taken from harvested metadata before geopump fetches them (scheme, address)."""

# A granule's data link comes from CMR, not from our configuration: fetching it blindly would let a bad
# record (or a redirect) point geopump at the cloud metadata endpoint or a service inside the cluster.
# `UrlPolicy.check` allows only the configured schemes and, unless `allow_private` is set (tests, or a
# deployment that mirrors data internally), only hosts whose every address is public.

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class UnsafeUrlError(ValueError):
    """A harvested URL breaks the URL policy; the message names the URL and the rule."""


def _resolve(host: str) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except socket.gaierror as exc:
        raise UnsafeUrlError(f"{host}: cannot be resolved ({exc})") from None


@dataclass(frozen=True)
class UrlPolicy:
    """Which harvested URLs may be fetched.

    Attributes:
        schemes: allowed URL schemes (https only by default).
        allow_private: allow loopback, private, link-local and other non-public addresses (and then plain
            http as well, for loopback stand-ins and internal mirrors).
    """

    schemes: tuple[str, ...] = ("https",)
    allow_private: bool = False

    def check(self, url: str, what: str = "URL") -> str:
        """Return `url` if it may be fetched, else raise `UnsafeUrlError` naming it and the rule."""
        if not isinstance(url, str) or not url:
            raise UnsafeUrlError(f"{what} {url!r}: must be a non-empty string")
        parts = urlsplit(url)
        schemes = self.schemes + (("http",) if self.allow_private and "http" not in self.schemes else ())
        if parts.scheme.lower() not in schemes:
            raise UnsafeUrlError(f"{what} {url}: scheme {parts.scheme!r} is not allowed (allowed: {list(schemes)})")
        if not parts.hostname:
            raise UnsafeUrlError(f"{what} {url}: has no host")
        if parts.username or parts.password:
            raise UnsafeUrlError(f"{what} {url.split('@')[-1]}: must not carry credentials")
        if self.allow_private:
            return url
        for address in _resolve(parts.hostname):
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not ip.is_global or ip.is_multicast:
                raise UnsafeUrlError(
                    f"{what} {url}: host {parts.hostname} resolves to non-public address {ip}; "
                    "set GEOPUMP_ALLOW_PRIVATE_URLS=1 only for trusted internal mirrors"
                )
        return url
