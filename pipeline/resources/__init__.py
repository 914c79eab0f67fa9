"""pipeline.resources: the ConfigurableResources every asset, sensor and job uses."""

from pipeline.resources.apis import (
    AreasResource,
    CmrResource,
    DataApiResource,
    EarthdataResource,
    FirmsResource,
    SlackResource,
    StacApiResource,
    TileSourcesResource,
)
from pipeline.resources.dask import DaskResource
from pipeline.resources.storage import BoundariesResource, StorageResource

__all__ = [
    "AreasResource",
    "BoundariesResource",
    "CmrResource",
    "DaskResource",
    "DataApiResource",
    "EarthdataResource",
    "FirmsResource",
    "SlackResource",
    "StacApiResource",
    "StorageResource",
    "TileSourcesResource",
]
