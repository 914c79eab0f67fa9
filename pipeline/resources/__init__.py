"""pipeline.resources: the ConfigurableResources every asset, sensor and job uses."""

from pipeline.resources.apis import (
    AreasResource,
    DataApiResource,
    FirmsResource,
    SlackResource,
    TileSourcesResource,
)
from pipeline.resources.dask import DaskResource
from pipeline.resources.storage import StorageResource

__all__ = [
    "AreasResource",
    "DaskResource",
    "DataApiResource",
    "FirmsResource",
    "SlackResource",
    "StorageResource",
    "TileSourcesResource",
]
