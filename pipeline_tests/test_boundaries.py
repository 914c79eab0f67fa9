"""Tests for pipeline.lib.boundaries: reading and validating an admin-boundary feature set."""

import geopandas as gpd
import pytest
from shapely.geometry import LineString, MultiPolygon, Polygon, box

from pipeline.lib.boundaries import BoundaryError, read_boundaries, validate_boundaries


def frame(**overrides):
    data = {
        "iso": ["BRA", "BRA", "COD"],
        "adm1": [1, 1, 3],
        "adm2": [1, 2, 7],
        "NAME_2": ["a", "b", "c"],
        "geometry": [box(0, 0, 1, 1), box(1, 0, 2, 1), box(5, 5, 6, 6)],
    }
    data.update(overrides)
    return gpd.GeoDataFrame(data, crs="EPSG:4326")


def test_reads_a_geopackage_and_keeps_ids_name_and_geometry(tmp_path):
    path = tmp_path / "gadm.gpkg"
    frame().to_file(path, layer="adm2", driver="GPKG")
    out = read_boundaries(str(path), layer="adm2", name_column="NAME_2")
    assert list(out.columns) == ["iso", "adm1", "adm2", "name", "geometry"]
    assert out[["iso", "adm1", "adm2"]].values.tolist() == [["BRA", 1, 1], ["BRA", 1, 2], ["COD", 3, 7]]
    assert str(out.adm2.dtype) == "int64" and out.crs.to_epsg() == 4326
    assert out.geometry.iloc[2].equals(box(5, 5, 6, 6))


def test_geojson_in_another_crs_is_reprojected(tmp_path):
    path = tmp_path / "b.geojson"
    frame().to_crs(3857).to_file(path, driver="GeoJSON")
    out = read_boundaries(str(path))
    assert out.crs.to_epsg() == 4326
    assert out.geometry.iloc[0].bounds == pytest.approx((0, 0, 1, 1), abs=1e-6)


def test_invalid_geometry_is_repaired_and_multipolygons_kept():
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    multi = MultiPolygon([box(0, 0, 1, 1), box(3, 3, 4, 4)])
    out = validate_boundaries(frame(geometry=[bowtie, multi, box(5, 5, 6, 6)]), "src")
    assert out.geometry.is_valid.all()
    assert out.geometry.iloc[0].area == pytest.approx(2.0)  # both lobes of the bow-tie survive
    assert out.geometry.iloc[1].geom_type == "MultiPolygon"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"adm2": [1, 1, 7]}, "must be unique"),
        ({"iso": ["BRA", "bra", "COD"]}, "upper-case ISO3"),
        ({"adm1": [1, None, 3]}, "'adm1' is empty"),
        ({"adm2": [1, 2.5, 7]}, "whole numbers"),
        ({"geometry": [box(0, 0, 1, 1), LineString([(0, 0), (1, 1)]), box(5, 5, 6, 6)]}, "polygons"),
    ],
)
def test_rule_violations_name_the_source_and_the_rule(overrides, message):
    with pytest.raises(BoundaryError, match=message) as err:
        validate_boundaries(frame(**overrides), "s3://b/gadm.gpkg")
    assert str(err.value).startswith("s3://b/gadm.gpkg:")


def test_missing_id_column_missing_crs_and_unreadable_file(tmp_path):
    with pytest.raises(BoundaryError, match=r"id column\(s\) \['adm2'\] missing"):
        validate_boundaries(frame().drop(columns="adm2"), "x")
    no_crs = frame()
    no_crs = no_crs.set_crs(None, allow_override=True)
    with pytest.raises(BoundaryError, match="no CRS"):
        validate_boundaries(no_crs, "x")
    bad = tmp_path / "broken.gpkg"
    bad.write_bytes(b"not a geopackage")
    with pytest.raises(BoundaryError, match="broken.gpkg: cannot be read"):
        read_boundaries(str(bad))
