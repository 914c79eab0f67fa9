"""pipeline.resources: the ConfigurableResources every asset, sensor and job uses."""

from pipeline.resources.apis import (
    AreasResource,
    DataApiResource,
    FirmsResource,
    SlackResource,
    TileSourcesResource,
)
from pipeline.resources.dask import DaskResource
from pipeline.resources.storage import BoundariesResource, StorageResource

__all__ = [
    "AreasResource",
    "BoundariesResource",
    "DaskResource",
    "DataApiResource",
    "FirmsResource",
    "SlackResource",
    "StorageResource",
    "TileSourcesResource",
]
