"""pipeline.resources.apis: resources that build the real clients for FIRMS, GFW and Slack.

Clients are imported inside `client()` so loading the code location stays light.
"""

from datetime import UTC, date, datetime

import dagster as dg
from pydantic import Field


class FirmsResource(dg.ConfigurableResource):
    """NASA FIRMS active-fire files and (with a MAP_KEY) the area API for past days."""

    base_url: str = Field(default="https://firms.modaps.eosdis.nasa.gov", description="FIRMS_URL")
    map_key: str | None = Field(default=None, description="FIRMS_MAP_KEY (secret); needed for days older than 7.")
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 2.0
    today: str | None = Field(
        default=None, description="Pin 'today' (YYYY-MM-DD UTC) for replays and tests; default is the real UTC date."
    )

    def client(self):
        from pipeline.lib.firms import FirmsClient

        return FirmsClient(
            base_url=self.base_url,
            map_key=self.map_key or None,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
        )

    def today_utc(self) -> date:
        if self.today:
            return date.fromisoformat(self.today)
        return datetime.now(UTC).date()


class AreasResource(dg.ConfigurableResource):
    """GFW / Resource Watch Areas + Geostore API (users' areas of interest)."""

    base_url: str = Field(default="https://api.resourcewatch.org", description="GFW_API_URL")
    token: str | None = Field(default=None, description="GFW_API_TOKEN (secret, RW JWT with ADMIN role).")
    api_key: str | None = Field(default=None, description="GFW_API_KEY (secret, x-api-key).")
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 2.0

    def client(self):
        from pipeline.lib.areas import AreasClient

        return AreasClient(
            base_url=self.base_url,
            token=self.token or None,
            api_key=self.api_key or None,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
        )


class DataApiResource(dg.ConfigurableResource):
    """GFW Data API, where result tables are published. No URL: tables stay in storage only."""

    base_url: str | None = Field(default=None, description="GFW_DATA_API_URL; empty disables publishing.")
    token: str | None = Field(default=None, description="GFW_DATA_API_TOKEN (secret).")
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 2.0
    poll_interval: float = 5.0
    poll_timeout: float = 3600.0

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    def client(self):
        from pipeline.lib.data_api import DataApiClient

        return DataApiClient(
            base_url=self.base_url,
            token=self.token or None,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
            poll_interval=self.poll_interval,
            poll_timeout=self.poll_timeout,
        )


class SlackResource(dg.ConfigurableResource):
    """Slack incoming webhook for run-failure alerts (optional)."""

    webhook_url: str | None = Field(default=None, description="SLACK_WEBHOOK_URL (secret); empty disables alerts.")

    def notifier(self):
        from pipeline.lib.notify import SlackNotifier

        return SlackNotifier(self.webhook_url) if self.webhook_url else None


class TileSourcesResource(dg.ConfigurableResource):
    """Google Cloud Storage buckets with the Hansen, GLAD-L, GLAD-S2 and RADD tiles, and their release rules.

    The expected tile counts are datapump's completeness rules (GLAD-L exactly 115, RADD 208 or 209, GLAD-S2 18);
    they are configuration so a regional deployment (or the demo) can use a smaller grid.
    """

    base_url: str = Field(default="https://storage.googleapis.com", description="GCS_URL")
    token: str | None = Field(
        default=None, description="GCS_TOKEN (secret, optional bearer token for private buckets)."
    )
    hansen_bucket: str = "earthenginepartners-hansen"
    radd_bucket: str = "gfw_gee_export"
    hansen_tiles: int | None = Field(default=504, description="Tiles per complete Hansen GFC layer (None: no check).")
    glad_l_tiles: int = 115
    glad_s2_tiles: int = 18
    radd_tiles: list[int] = [208, 209]
    expected_tiles: str | None = Field(
        default=None,
        description="GEOPUMP_EXPECTED_TILES: one tile count for every source (a regional grid or the demo); "
        "unset = the counts above.",
    )
    keep_versions: int = Field(default=2, description="Published versions kept per source; older ones are pruned.")
    timeout: float = 300.0
    max_retries: int = 4
    backoff: float = 2.0
    today: str | None = Field(default=None, description="Pin 'today' (YYYY-MM-DD) for GLAD-L release discovery.")

    def client(self):
        from pipeline.lib.gcs import GcsClient

        return GcsClient(
            base_url=self.base_url,
            token=self.token or None,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
        )

    def today_utc(self) -> date:
        if self.today:
            return date.fromisoformat(self.today)
        return datetime.now(UTC).date()

    def counts(self) -> dict:
        """Expected complete-release tile counts per source, after GEOPUMP_EXPECTED_TILES."""
        if self.expected_tiles:
            try:
                n = int(self.expected_tiles)
            except ValueError:
                raise ValueError(f"GEOPUMP_EXPECTED_TILES={self.expected_tiles!r} is not a whole number") from None
            return {"hansen": n, "glad_l": n, "glad_s2": n, "radd": (n,)}
        return {
            "hansen": self.hansen_tiles,
            "glad_l": self.glad_l_tiles,
            "glad_s2": self.glad_s2_tiles,
            "radd": tuple(self.radd_tiles),
        }


class CmrResource(dg.ConfigurableResource):
    """NASA CMR search, where new and revised granules are found."""

    base_url: str = Field(default="https://cmr.earthdata.nasa.gov/search", description="CMR_URL")
    client_id: str = Field(default="geopump", description="Client-Id header CMR asks every client to send.")
    token: str | None = Field(default=None, description="EARTHDATA_TOKEN (secret), only for restricted collections.")
    timeout: float = 190.0
    max_retries: int = 4
    backoff: float = 2.0
    page_size: int = Field(default=2000, description="Granules per CMR page (CMR's maximum is 2000).")
    max_runs_per_tick: int = Field(default=1000, description="Runs a granule sensor requests per tick at most.")

    def client(self):
        from pipeline.lib.cmr import CmrClient

        return CmrClient(
            base_url=self.base_url,
            client_id=self.client_id,
            token=self.token or None,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
        )


class EarthdataResource(dg.ConfigurableResource):
    """Earthdata Login for granule downloads: a bearer token, or user + password through the URS redirect."""

    token: str | None = Field(default=None, description="EARTHDATA_TOKEN (secret, EDL bearer token).")
    username: str | None = Field(default=None, description="EARTHDATA_USERNAME")
    password: str | None = Field(default=None, description="EARTHDATA_PASSWORD (secret).")
    urs_host: str = Field(default="urs.earthdata.nasa.gov", description="EARTHDATA_URS_HOST (host[:port]).")
    allow_private_urls: bool = Field(
        default=False,
        description="GEOPUMP_ALLOW_PRIVATE_URLS: let granule links from CMR point at private/loopback hosts and plain "
        "http (internal mirrors, stand-ins). Off: https to public addresses only.",
    )
    timeout: float = 300.0
    max_retries: int = 4
    backoff: float = 2.0

    def downloader(self):
        from pipeline.lib.earthdata import EarthdataDownloader

        return EarthdataDownloader(
            token=self.token or None,
            username=self.username or None,
            password=self.password or None,
            urs_host=self.urs_host,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
        )


class StacApiResource(dg.ConfigurableResource):
    """A STAC API with the Transactions extension (e.g. stac-fastapi-pgstac). No URL: static catalog only."""

    base_url: str | None = Field(default=None, description="STAC_API_URL; empty = publish the static catalog only.")
    token: str | None = Field(default=None, description="STAC_API_TOKEN (secret, optional bearer token).")
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    def client(self):
        from pipeline.lib.stac_api import StacApiClient

        return StacApiClient(
            base_url=self.base_url,
            token=self.token or None,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
        )
