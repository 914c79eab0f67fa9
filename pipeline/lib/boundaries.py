"""pipeline.lib.boundaries: read and validate an administrative-boundary feature set (GADM-style)."""

# Zonal statistics run on any polygon feature set; admin boundaries are the standing example (GFW
# computes every analysis for GADM iso/adm1/adm2). The source is a file geopandas can read (GeoPackage,
# GeoJSON, Shapefile zip, GeoParquet) given by path or URL. Validation is strict because a bad
# boundary silently corrupts every statistic computed for it: ids must be present and unique,
# geometries polygonal (invalid ones are repaired the same way as user areas).

from __future__ import annotations

import re
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.lib.areas import repair_polygonal

#: GADM's id columns: ISO3 country code, admin level 1 and 2 numbers.
GADM_ID_COLUMNS = ("iso", "adm1", "adm2")
_ISO = re.compile(r"^[A-Z]{3}$")


class BoundaryError(ValueError):
    """The boundary source breaks a rule; the message names the source and the rule."""


def _read(source: str, layer: str | None) -> gpd.GeoDataFrame:
    if source.lower().endswith(".parquet"):
        return gpd.read_parquet(source)
    kwargs = {"layer": layer} if layer else {}
    return gpd.read_file(source, **kwargs)


def validate_boundaries(
    gdf: gpd.GeoDataFrame, source: str, id_columns: Sequence[str] = GADM_ID_COLUMNS, name_column: str | None = None
) -> gpd.GeoDataFrame:
    """Check and normalise a boundary GeoDataFrame; returns id columns (+ `name`) and geometry in EPSG:4326.

    Rules (each violation raises `BoundaryError` naming `source`): every id column exists and has no
    nulls; `iso`, when an id column, is an upper-case ISO3 code; `adm1`/`adm2` are whole numbers; id
    combinations are unique; every geometry is (or repairs to) a non-empty polygon or multipolygon;
    the CRS is known (reprojected to EPSG:4326 when it is another one).
    """
    id_columns = list(id_columns)
    if not id_columns:
        raise BoundaryError(f"{source}: at least one id column is required")
    missing = [c for c in id_columns if c not in gdf.columns]
    if missing:
        raise BoundaryError(f"{source}: id column(s) {missing} missing; columns are {sorted(map(str, gdf.columns))}")
    if name_column and name_column not in gdf.columns:
        raise BoundaryError(f"{source}: name column {name_column!r} missing")
    if gdf.crs is None:
        raise BoundaryError(f"{source}: no CRS; boundaries must declare one (EPSG:4326 expected)")
    if len(gdf) == 0:
        raise BoundaryError(f"{source}: holds no features")
    out = pd.DataFrame(index=gdf.index)
    for col in id_columns:
        values = gdf[col]
        if values.isna().any():
            rows = list(gdf.index[values.isna()][:5])
            raise BoundaryError(f"{source}: id column {col!r} is empty in rows {rows}")
        if col in ("adm1", "adm2"):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.isna() | (numeric != np.floor(numeric))
            if bad.any():
                raise BoundaryError(f"{source}: {col} must be whole numbers; bad values {list(values[bad][:5])}")
            out[col] = numeric.astype("int64")
        else:
            out[col] = values.astype(str)
    if "iso" in id_columns:
        bad = ~out["iso"].str.fullmatch(_ISO)
        if bad.any():
            raise BoundaryError(f"{source}: iso must be an upper-case ISO3 code; bad values {list(out.iso[bad][:5])}")
    dup = out.duplicated(subset=id_columns, keep=False)
    if dup.any():
        examples = out[dup].drop_duplicates().head(5).to_dict("records")
        raise BoundaryError(f"{source}: id combinations {id_columns} must be unique; repeated: {examples}")
    if name_column:
        out["name"] = gdf[name_column].astype(str)
    geoms = gdf.to_crs("EPSG:4326").geometry if gdf.crs.to_epsg() != 4326 else gdf.geometry
    fixed = repair_polygonal(np.asarray(geoms.values, dtype=object))
    bad = np.array([g is None for g in fixed])
    if bad.any():
        examples = out[bad].head(5).to_dict("records")
        raise BoundaryError(f"{source}: features must be non-empty polygons or multipolygons; not: {examples}")
    return gpd.GeoDataFrame(out.reset_index(drop=True), geometry=list(fixed), crs="EPSG:4326")


def read_boundaries(
    source: str,
    id_columns: Sequence[str] = GADM_ID_COLUMNS,
    *,
    layer: str | None = None,
    name_column: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a boundary file (path or URL geopandas understands) and validate it (`validate_boundaries`)."""
    try:
        gdf = _read(source, layer)
    except Exception as exc:  # noqa: BLE001 - pyogrio/arrow raise many types; name the source either way
        raise BoundaryError(f"{source}: cannot be read as a vector dataset ({type(exc).__name__}: {exc})") from exc
    return validate_boundaries(gdf, source, id_columns, name_column)
