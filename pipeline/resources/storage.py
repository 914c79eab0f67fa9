"""pipeline.resources.storage: where geopump writes its outputs (a local folder or S3)."""

import dagster as dg
from pydantic import Field

from pipeline.lib.storage import Storage


class StorageResource(dg.ConfigurableResource):
    """Output storage root: a local path or `s3://bucket/prefix` (S3 honours the `AWS_*` variables)."""

    url: str = Field(description="Local folder or s3://bucket/prefix for every geopump output.")

    def storage(self) -> Storage:
        return Storage(self.url)


class BoundariesResource(dg.ConfigurableResource):
    """The admin-boundary feature set (GADM-style) zonal statistics are also computed for."""

    url: str | None = Field(
        default=None,
        description="GEOPUMP_BOUNDARIES_URL: a GeoPackage/GeoJSON/Shapefile zip/GeoParquet path or URL; unset = "
        "no admin-boundary statistics.",
    )
    layer: str | None = Field(default=None, description="Layer name inside a multi-layer file (GeoPackage).")
    id_columns: list[str] = Field(default=["iso", "adm1", "adm2"], description="Columns that identify a boundary.")
    name_column: str | None = Field(default=None, description="Optional display-name column, kept as `name`.")

    @property
    def enabled(self) -> bool:
        return bool(self.url)
