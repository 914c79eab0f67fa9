"""pipeline.assets.boundaries: the admin-boundary feature set (GADM-style) as a GeoParquet asset."""

import dagster as dg

from pipeline import constants as C
from pipeline.assets.common import table_metadata
from pipeline.resources import BoundariesResource, StorageResource

ADMIN_BOUNDARIES = dg.AssetKey([C.AREAS, "admin_boundaries"])

BOUNDARY_SCHEMA = [
    ("iso", "str", "ISO3 country code"),
    ("adm1", "int64", "admin level 1 number"),
    ("adm2", "int64", "admin level 2 number"),
    ("geometry", "geometry", "boundary polygon, EPSG:4326 (repaired when invalid)"),
]


@dg.asset(
    key=ADMIN_BOUNDARIES,
    group_name=C.AREAS,
    kinds={"geoparquet"},
    description=(
        "Administrative boundaries (GADM-style iso/adm1/adm2) read from GEOPUMP_BOUNDARIES_URL and validated: ids "
        "present and unique, polygons repaired, EPSG:4326. Zonal statistics are computed for them like for user "
        "areas. Without a configured source it records why and writes nothing."
    ),
    code_version="1",
)
def admin_boundaries(storage: StorageResource, boundaries: BoundariesResource) -> dg.MaterializeResult:
    from pipeline.lib.boundaries import read_boundaries

    st = storage.storage()
    schema = [c for c in BOUNDARY_SCHEMA if c[0] in (*boundaries.id_columns, "geometry")]
    if not boundaries.enabled:
        return dg.MaterializeResult(
            metadata=table_metadata(st.uri(C.BOUNDARIES_PATH), 0, schema, skipped="GEOPUMP_BOUNDARIES_URL is not set")
        )
    gdf = read_boundaries(
        boundaries.url, boundaries.id_columns, layer=boundaries.layer, name_column=boundaries.name_column
    )
    uri = st.write_parquet(C.BOUNDARIES_PATH, gdf)
    return dg.MaterializeResult(
        metadata=table_metadata(
            uri,
            len(gdf),
            schema,
            countries=dg.MetadataValue.int(int(gdf["iso"].nunique()) if "iso" in gdf else 0),
            bounds=dg.MetadataValue.json([round(float(v), 4) for v in gdf.total_bounds]),
        )
    )


ASSETS = [admin_boundaries]
