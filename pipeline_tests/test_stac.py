"""pipeline_tests.test_stac: offline STAC validation, Item/Collection builders and the static catalog in storage."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import socket
from pathlib import Path

import pystac
import pytest

from pipeline.lib.stac import (
    COG_MEDIA_TYPE,
    PROJECTION_V1_1,
    RASTER_V1_1,
    SCHEMA_DIR,
    StacCatalogError,
    StacValidationError,
    StaticCatalog,
    _bundle,
    _validator,
    build_collection,
    build_item,
    known_schema_urls,
    validate_stac,
)
from pipeline.lib.storage import Storage

REPO = Path(__file__).resolve().parents[1]
REFERENCE_SCHEMAS = REPO.parent / "shared" / "reference" / "stac-schemas"
COLLECTION = "OMDOAO3e_003"
GLOBAL_GRID = [-180, 0.25, 0, 90, 0, -0.25]  # GDAL order, 1440 x 720
STATS = {"minimum": 180.2, "maximum": 512.7, "mean": 289.1, "stddev": 31.4, "valid_percent": 82.5}


def cog_info(**overrides) -> dict:
    info = {
        "width": 1440,
        "height": 720,
        "transform": list(GLOBAL_GRID),
        "crs": "EPSG:4326",
        "dtype": "float32",
        "nodata": -1.2676506e30,
        "statistics": dict(STATS),
        "unit": "DU",
        "histogram": {"count": 4, "min": 180.2, "max": 512.7, "buckets": [10, 40, 30, 5]},
    }
    info.update(overrides)
    return info


def source(day: str = "2022-01-20", **overrides) -> dict:
    compact = day.replace("-", "m", 1).replace("-", "")
    src = {
        "concept_id": "G2269381327-GES_DISC",
        "granule_ur": f"OMDOAO3e.003:OMI-Aura_L3-OMDOAO3e_{compact}_v003.he5",
        "data_url": f"https://data.gesdisc.earthdata.nasa.gov/OMDOAO3e/OMI-Aura_L3-OMDOAO3e_{compact}_v003.he5",
        "revision_id": 3,
        "revision_date": "2022-01-22T04:05:06.789Z",
        "size_bytes": 3_456_789,
    }
    src.update(overrides)
    return src


def make_item(day: str = "2022-01-20", collection: str = COLLECTION, **overrides) -> dict:
    when = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    args = {
        "item_id": f"{collection}_{day}",
        "collection_id": collection,
        "datetime": when,
        "cog_href": f"s3://geopump-data/cogs/{collection}/{day[:4]}/{collection}_{day}.tif",
        "cog_info": cog_info(),
        "source": source(day),
        "preview_href": f"s3://geopump-data/cogs/{collection}/{day[:4]}/{collection}_{day}.png",
    }
    args.update(overrides)
    return build_item(**args)


def make_collection(collection: str = COLLECTION, **overrides) -> dict:
    args = {
        "collection_id": collection,
        "title": "OMI/Aura Ozone (O3) DOAS Total Column Daily L3 0.25° x 0.25° V3",
        "description": "Daily global total column ozone (Dobson Units).",
        "license": "other",
        "keywords": ["ozone", "OMI"],
        "providers": [
            {"name": "NASA GES DISC", "roles": ["producer", "licensor"], "url": "https://disc.gsfc.nasa.gov"}
        ],
        "bbox": [-180, -90, 180, 90],
        "temporal_start": dt.datetime(2004, 10, 1, tzinfo=dt.UTC),
        "item_assets_unit": "DU",
        "extra": {"dashboard:is_periodic": True, "dashboard:time_density": "day"},
    }
    args.update(overrides)
    return build_collection(**args)


# -- vendored schemas and validation ---------------------------------------------------------------------------------
def test_vendored_schemas_are_complete_and_match_the_reference():
    files = sorted(p.relative_to(SCHEMA_DIR).as_posix() for p in SCHEMA_DIR.rglob("*.json"))
    assert len(files) == 28
    assert (SCHEMA_DIR / "README.md").exists()
    for url in (
        "https://schemas.stacspec.org/v1.0.0/item-spec/json-schema/item.json",
        "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json",
        PROJECTION_V1_1,
        RASTER_V1_1,
    ):
        assert url in known_schema_urls()
    if not REFERENCE_SCHEMAS.is_dir():
        pytest.skip(f"{REFERENCE_SCHEMAS} is not here to compare with")
    for rel in files:
        assert (SCHEMA_DIR / rel).read_bytes() == (REFERENCE_SCHEMAS / rel).read_bytes(), rel


def test_setup_ships_the_schemas_as_package_data():
    setup_py = (REPO / "setup.py").read_text()
    assert '"lib/stac_schemas/**/*.json"' in setup_py and "include_package_data=True" in setup_py


def test_validation_never_touches_the_network(monkeypatch):
    _bundle.cache_clear()
    _validator.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    item = make_item()
    validate_stac(item)
    validate_stac(make_collection(extra={"summaries": {"short_name": ["OMDOAO3e"]}}))  # summaries -> draft-07 $ref
    # STAC 1.1.0 with projection v2.0.0 and the v1.1.0 `commonjson` quirk resolve from the bundle too.
    newer = copy.deepcopy(item)
    newer["stac_version"] = "1.1.0"
    newer["stac_extensions"] = ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"]
    props = newer["properties"]
    props["proj:code"] = "EPSG:4326"
    del props["proj:epsg"]
    band = newer["assets"]["cog_default"].pop("raster:bands")[0]
    newer["assets"]["cog_default"]["bands"] = [{"data_type": band["data_type"], "statistics": band["statistics"]}]
    validate_stac(newer)


def test_missing_datetime_is_reported_with_its_path():
    item = make_item()
    del item["properties"]["datetime"]
    with pytest.raises(StacValidationError) as info:
        validate_stac(item)
    assert any("'datetime' is a required property" in e and e.startswith("$.properties") for e in info.value.errors)
    assert "datetime" in str(info.value)


def test_every_error_is_listed_with_path_and_message():
    item = make_item()
    item["properties"]["proj:epsg"] = "4326"
    item["properties"]["datetime"] = "2022-01-20 00:00"  # not RFC 3339: the format checker catches it
    item["assets"]["cog_default"]["raster:bands"][0]["data_type"] = "float128"
    with pytest.raises(StacValidationError) as info:
        validate_stac(item)
    text = "\n".join(info.value.errors)
    assert "$.properties['proj:epsg']" in text and "projection/v1.1.0" in text
    assert "$.properties.datetime" in text and "date-time" in text
    assert "data_type" in text and "'float128' is not one of" in text and "raster/v1.1.0" in text
    # The Collection branch of the raster schema is not the explanation for an Item.
    assert "'Collection' was expected" not in text


def test_unknown_extension_is_a_clear_error():
    item = make_item()
    item["stac_extensions"].append("https://stac-extensions.github.io/eo/v1.1.0/schema.json")
    with pytest.raises(StacValidationError, match=r"unknown extension schema 'https://stac-extensions.github.io/eo"):
        validate_stac(item)


def test_unsupported_version_and_type_are_errors():
    item = make_item()
    with pytest.raises(StacValidationError, match="0.9.0"):
        validate_stac({**item, "stac_version": "0.9.0"})
    with pytest.raises(StacValidationError, match="FeatureCollection"):
        validate_stac({**item, "type": "FeatureCollection"})


# -- Item ------------------------------------------------------------------------------------------------------------
def test_item_fields():
    item = make_item(cmr_base="https://cmr.uat.earthdata.nasa.gov/search/")
    validate_stac(item)
    assert item["stac_version"] == "1.0.0"
    assert item["stac_extensions"] == [PROJECTION_V1_1, RASTER_V1_1]
    assert item["id"] == "OMDOAO3e_003_2022-01-20" and item["collection"] == COLLECTION
    assert item["bbox"] == [-180, -90, 180, 90]
    assert item["geometry"]["coordinates"][0] == [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]

    props = item["properties"]
    assert props["datetime"] == "2022-01-20T00:00:00Z"
    assert props["proj:epsg"] == 4326
    assert props["proj:shape"] == [720, 1440]
    assert props["proj:transform"] == [0.25, 0, -180, 0, -0.25, 90, 0, 0, 1]
    assert props["proj:bbox"] == [-180, -90, 180, 90]
    assert props["geopump:granule_revision"] == 3
    assert props["geopump:granule_revision_date"] == "2022-01-22T04:05:06.789Z"
    assert props["geopump:granule_concept_id"] == "G2269381327-GES_DISC"
    assert props["geopump:source_granule"].startswith("OMDOAO3e.003:")
    assert props["geopump:granule_size_bytes"] == 3_456_789
    assert all(k == k.lower() for k in props)

    cog = item["assets"]["cog_default"]
    assert cog["type"] == COG_MEDIA_TYPE == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert cog["roles"] == ["data", "layer"]
    assert cog["href"].endswith("/OMDOAO3e_003_2022-01-20.tif")
    (band,) = cog["raster:bands"]
    assert band["data_type"] == "float32"
    assert band["nodata"] == -1.2676506e30
    assert band["unit"] == "DU" and band["sampling"] == "area"
    assert band["statistics"] == STATS
    assert band["histogram"]["buckets"] == [10, 40, 30, 5]
    assert band["spatial_resolution"] == pytest.approx(27830, rel=1e-3)  # 0.25° in metres at the equator
    thumb = item["assets"]["thumbnail"]
    assert thumb["type"] == "image/png" and thumb["roles"] == ["thumbnail"] and thumb["href"].endswith(".png")

    via = {link["href"]: link for link in item["links"] if link["rel"] == "via"}
    assert source()["data_url"] in via and via[source()["data_url"]]["type"] == "application/x-hdf5"
    assert "https://cmr.uat.earthdata.nasa.gov/search/concepts/G2269381327-GES_DISC.umm_json" in via
    assert [link["rel"] for link in item["links"]].count("collection") == 1
    json.dumps(item, allow_nan=False)


def test_item_default_cmr_link_times_and_optional_parts():
    berlin = dt.timezone(dt.timedelta(hours=2))
    item = make_item(
        datetime=dt.datetime(2022, 1, 20, 14, 0, tzinfo=berlin),
        start_datetime=dt.datetime(2022, 1, 20, tzinfo=dt.UTC),
        end_datetime=dt.datetime(2022, 1, 20, 23, 59, 59, 500000, tzinfo=dt.UTC),
        preview_href=None,
        extra_properties={"title": "OMDOAO3e 2022-01-20"},
        source=source(revision_id=None, revision_date=None, size_bytes=None),
        cog_info=cog_info(histogram=None, nodata=float("nan")),
    )
    props = item["properties"]
    assert props["datetime"] == "2022-01-20T12:00:00Z"
    assert props["start_datetime"] == "2022-01-20T00:00:00Z"
    assert props["end_datetime"] == "2022-01-20T23:59:59.500000Z"
    assert props["title"] == "OMDOAO3e 2022-01-20"
    assert "geopump:granule_revision" not in props and "thumbnail" not in item["assets"]
    band = item["assets"]["cog_default"]["raster:bands"][0]
    assert band["nodata"] == "nan" and "histogram" not in band  # NaN nodata is spelled as raster v1.1.0 says
    hrefs = [link["href"] for link in item["links"]]
    assert "https://cmr.earthdata.nasa.gov/search/concepts/G2269381327-GES_DISC.umm_json" in hrefs
    json.dumps(item, allow_nan=False)


def test_item_accepts_an_affine_and_a_regional_grid():
    from affine import Affine

    gdal = make_item(cog_info=cog_info(width=40, height=20, transform=[10.0, 0.5, 0, 50.0, 0, -0.5]))
    aff = make_item(cog_info=cog_info(width=40, height=20, transform=Affine(0.5, 0, 10.0, 0, -0.5, 50.0)))
    assert gdal == aff
    assert gdal["bbox"] == [10, 40, 30, 50]
    assert gdal["properties"]["proj:transform"] == [0.5, 0, 10, 0, -0.5, 50, 0, 0, 1]
    # 0.1° grids accumulate float noise at the far edge; the bbox does not.
    fine = make_item(cog_info=cog_info(width=3600, height=1800, transform=[-180, 0.1, 0, 90, 0, -0.1]))
    assert fine["bbox"] == [-180, -90, 180, 90]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_item_refuses_non_finite_statistics(bad):
    with pytest.raises(ValueError, match="mean"):
        make_item(cog_info=cog_info(statistics={**STATS, "mean": bad}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"datetime": dt.datetime(2022, 1, 20)}, "naive"),
        ({"item_id": "a/b"}, "item id"),
        ({"item_id": "..hidden"}, "item id"),
        ({"item_id": ""}, "item id"),
        ({"item_id": "a=b"}, "item id"),
        ({"collection_id": "../etc"}, "collection id"),
        ({"cog_info": cog_info(crs="EPSG:3857")}, "EPSG:4326"),
        ({"cog_info": cog_info(dtype="float128")}, "dtype"),
        ({"cog_info": cog_info(statistics={**STATS, "median": 1.0})}, "unknown"),
        ({"start_datetime": dt.datetime(2022, 1, 20, tzinfo=dt.UTC)}, "both"),
        ({"extra_properties": {"datetime": "x"}}, "override"),
        ({"extra_properties": {"geopump:score": math.nan}}, "NaN"),
    ],
)
def test_item_refuses_bad_input(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_item(**overrides)


# -- Collection ------------------------------------------------------------------------------------------------------
def test_collection_fields():
    collection = make_collection(temporal_end="2023-12-31T23:59:59Z")
    validate_stac(collection)
    assert collection["type"] == "Collection" and collection["stac_version"] == "1.0.0"
    assert collection["extent"] == {
        "spatial": {"bbox": [[-180, -90, 180, 90]]},
        "temporal": {"interval": [["2004-10-01T00:00:00Z", "2023-12-31T23:59:59Z"]]},
    }
    cog = collection["item_assets"]["cog_default"]
    assert cog["type"] == COG_MEDIA_TYPE and cog["roles"] == ["data", "layer"] and "DU" in cog["title"]
    assert collection["dashboard:is_periodic"] is True and collection["dashboard:time_density"] == "day"
    assert collection["providers"][0]["name"] == "NASA GES DISC"
    assert collection["links"] == []
    open_ended = make_collection()
    assert open_ended["extent"]["temporal"]["interval"] == [["2004-10-01T00:00:00Z", None]]


def test_collection_refuses_bad_input():
    with pytest.raises(ValueError, match="collection id"):
        make_collection(collection="bad/id")
    with pytest.raises(ValueError, match="override"):
        make_collection(extra={"license": "MIT"})
    with pytest.raises(ValueError, match="before"):
        make_collection(temporal_end=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(ValueError, match="south"):
        make_collection(bbox=[-180, 90, 180, -90])


# -- static catalog --------------------------------------------------------------------------------------------------
def snapshot(storage: Storage, prefix: str = "stac") -> dict[str, bytes]:
    return {rel: storage.read_bytes(rel) for rel in storage.list(prefix)}


def test_static_catalog_add_replace_remove_rebuild(storage_url):
    storage = Storage(storage_url)
    catalog = StaticCatalog(storage)
    assert catalog.write_collection(make_collection()) == f"stac/{COLLECTION}/collection.json"
    empty = storage.read_json(f"stac/{COLLECTION}/collection.json")
    assert [link["rel"] for link in empty["links"]] == ["root", "parent"]
    assert empty["extent"]["temporal"]["interval"] == [["2004-10-01T00:00:00Z", None]]

    days = ["2022-01-22", "2022-01-20", "2022-01-21"]
    for day in days:
        rel = catalog.upsert_item(make_item(day))
        assert rel == f"stac/{COLLECTION}/items/{COLLECTION}_{day}.json"
    catalog.rebuild(COLLECTION)
    collection = storage.read_json(catalog.collection_relpath(COLLECTION))
    item_links = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert item_links == [f"./items/{COLLECTION}_{day}.json" for day in sorted(days)]
    # The configured start stays the lower bound; the end is the last item.
    assert collection["extent"]["temporal"]["interval"] == [["2004-10-01T00:00:00Z", "2022-01-22T00:00:00Z"]]
    assert collection["extent"]["spatial"]["bbox"] == [[-180, -90, 180, 90]]

    # Replace: same id, new statistics -> the same file, new content, no duplicate.
    catalog.upsert_item(make_item("2022-01-21", cog_info=cog_info(statistics={**STATS, "mean": 300.0})))
    catalog.rebuild(COLLECTION)
    assert catalog.item_ids(COLLECTION) == [f"{COLLECTION}_{day}" for day in sorted(days)]
    replaced = catalog.read_item(COLLECTION, f"{COLLECTION}_2022-01-21")
    assert replaced["assets"]["cog_default"]["raster:bands"][0]["statistics"]["mean"] == 300.0

    # Remove the last day: the collection follows the item files.
    assert catalog.remove_item(COLLECTION, f"{COLLECTION}_2022-01-22") is True
    assert catalog.remove_item(COLLECTION, f"{COLLECTION}_2022-01-22") is False
    catalog.rebuild(COLLECTION)
    collection = storage.read_json(catalog.collection_relpath(COLLECTION))
    assert [link["href"] for link in collection["links"] if link["rel"] == "item"] == [
        f"./items/{COLLECTION}_2022-01-20.json",
        f"./items/{COLLECTION}_2022-01-21.json",
    ]
    assert collection["extent"]["temporal"]["interval"][0][1] == "2022-01-21T00:00:00Z"

    # Every file written validates; item links are relative and there is no `self` anywhere.
    files = snapshot(storage)
    assert set(files) == {
        "stac/catalog.json",
        f"stac/{COLLECTION}/collection.json",
        f"stac/{COLLECTION}/collection.template.json",
        f"stac/{COLLECTION}/items/{COLLECTION}_2022-01-20.json",
        f"stac/{COLLECTION}/items/{COLLECTION}_2022-01-21.json",
    }
    for rel, data in files.items():
        doc = json.loads(data)
        validate_stac(doc)
        assert all(link["rel"] != "self" for link in doc["links"]), rel
        assert all("://" not in link["href"] for link in doc["links"] if link["rel"] != "via"), rel
    item = json.loads(files[f"stac/{COLLECTION}/items/{COLLECTION}_2022-01-20.json"])
    structural = {link["rel"]: link["href"] for link in item["links"] if link["rel"] != "via"}
    assert structural == {
        "root": "../../catalog.json",
        "parent": "../collection.json",
        "collection": "../collection.json",
    }

    # Idempotent: rebuilding and re-publishing the same items rewrites identical bytes.
    for day in ["2022-01-20"]:
        catalog.upsert_item(make_item(day))
    catalog.rebuild(COLLECTION)
    catalog.rebuild(COLLECTION)
    assert snapshot(storage) == files


def test_static_catalog_converges_whatever_the_history(tmp_path):
    final_days = ["2022-01-20", "2022-01-21", "2022-01-23"]
    # History A: add in order, add a day that is later removed, replace one twice.
    a = StaticCatalog(Storage(str(tmp_path / "a")))
    a.write_collection(make_collection())
    for day in [*final_days, "2022-01-22"]:
        a.upsert_item(make_item(day, cog_info=cog_info(statistics={**STATS, "mean": 1.0})))
        a.rebuild(COLLECTION)
    for day in final_days:
        a.upsert_item(make_item(day))
    a.remove_item(COLLECTION, f"{COLLECTION}_2022-01-22")
    a.rebuild(COLLECTION)
    # History B: only the final items, in reverse order, one rebuild.
    b = StaticCatalog(Storage(str(tmp_path / "b")))
    for day in reversed(final_days):
        b.upsert_item(make_item(day))
    b.write_collection(make_collection())
    assert snapshot(a.storage) == snapshot(b.storage)
    raw = (tmp_path / "a" / "stac" / COLLECTION / "collection.json").read_text()
    assert (
        raw.endswith("}\n") and json.dumps(json.loads(raw), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == raw
    )


def test_static_catalog_is_read_by_pystac(tmp_path):
    storage = Storage(str(tmp_path / "out"))
    catalog = StaticCatalog(storage, title="geopump test catalog")
    catalog.write_collection(make_collection())
    catalog.write_collection(make_collection("REGIONAL_001", temporal_start=dt.datetime(2022, 1, 1, tzinfo=dt.UTC)))
    for day in ["2022-01-20", "2022-01-21"]:
        catalog.upsert_item(make_item(day))
    regional = [
        make_item(
            "2022-02-01", "REGIONAL_001", cog_info=cog_info(width=40, height=20, transform=[10, 0.5, 0, 50, 0, -0.5])
        ),
        make_item(
            "2022-02-02", "REGIONAL_001", cog_info=cog_info(width=40, height=30, transform=[20, 0.5, 0, 45, 0, -0.5])
        ),
    ]
    for item in regional:
        catalog.upsert_item(item)
    catalog.rebuild(COLLECTION)
    catalog.rebuild("REGIONAL_001")

    root = tmp_path / "out" / "stac" / "catalog.json"
    cat = pystac.Catalog.from_file(str(root))
    assert pystac.CatalogType.determine_type(json.loads(root.read_text())) == pystac.CatalogType.SELF_CONTAINED
    assert sorted(c.id for c in cat.get_children()) == ["OMDOAO3e_003", "REGIONAL_001"]
    ids = sorted(i.id for i in cat.get_items(recursive=True))
    assert ids == [
        "OMDOAO3e_003_2022-01-20",
        "OMDOAO3e_003_2022-01-21",
        "REGIONAL_001_2022-02-01",
        "REGIONAL_001_2022-02-02",
    ]
    reg = cat.get_child("REGIONAL_001")
    assert reg.extent.spatial.bboxes == [[10.0, 30.0, 40.0, 50.0]]  # union of the item bboxes
    assert reg.extent.temporal.intervals[0][1] == dt.datetime(2022, 2, 2, tzinfo=dt.UTC)
    first = next(i for i in cat.get_items(recursive=True) if i.id == "OMDOAO3e_003_2022-01-20")
    assert first.get_collection().id == COLLECTION
    assert first.assets["cog_default"].media_type == COG_MEDIA_TYPE

    # pystac's own validator, fed the vendored schemas so it stays offline, agrees.
    from pystac.validation import JsonSchemaSTACValidator, set_validator

    validator = JsonSchemaSTACValidator()
    validator.schema_cache.update(_bundle()[0])
    set_validator(validator)
    try:
        assert cat.validate_all() == 4  # validates every object, counts the items
    finally:
        set_validator(JsonSchemaSTACValidator())


def test_static_catalog_rejects_unsafe_ids_and_inconsistent_files(tmp_path):
    storage = Storage(str(tmp_path / "cat"))
    catalog = StaticCatalog(storage)
    for bad in ["", "a/b", "..", "../x", "x..y"]:
        with pytest.raises(ValueError):
            catalog.item_relpath(COLLECTION, bad)
        with pytest.raises(ValueError):
            catalog.collection_relpath(bad)
    item = make_item()
    with pytest.raises(ValueError, match="item id"):
        catalog.upsert_item({**item, "id": "../../escape"})
    with pytest.raises(StacValidationError):
        catalog.upsert_item({**item, "properties": {}})
    with pytest.raises(StacCatalogError, match="write_collection first"):
        catalog.rebuild(COLLECTION)
    catalog.write_collection(make_collection())
    # A file whose name does not match the item it holds would break the id -> file invariant: fail loudly.
    storage.write_bytes(f"stac/{COLLECTION}/items/{COLLECTION}_2099-01-01.json", json.dumps(item).encode())
    with pytest.raises(StacCatalogError, match="2099-01-01"):
        catalog.rebuild(COLLECTION)
