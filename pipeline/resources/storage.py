"""pipeline.resources.storage: where geopump writes its outputs (a local folder or S3)."""

import dagster as dg
from pydantic import Field

from pipeline.lib.storage import Storage


class StorageResource(dg.ConfigurableResource):
    """Output storage root: a local path or `s3://bucket/prefix` (S3 honours the `AWS_*` variables)."""

    url: str = Field(description="Local folder or s3://bucket/prefix for every geopump output.")

    def storage(self) -> Storage:
        return Storage(self.url)
