"""pipeline_tests.test_collections: shipped collection YAML files load; schema violations name the file and field."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pystac
import pytest
import yaml
from affine import Affine

from pipeline.lib.collections import (
    EXTRA_DIR_ENV,
    CollectionConfigError,
    default_collections_dir,
    load_collection,
    load_collections,
)

SHIPPED = Path(__file__).resolve().parents[1] / "pipeline" / "collections"
OMDOAO3E_YAML = SHIPPED / "omdoao3e_003.yaml"


def test_shipped_collections_load_with_their_documented_grids():
    cols = load_collections()
    assert {"OMDOAO3e_003", "OMTO3d_003"} <= set(cols)

    omi = cols["OMDOAO3e_003"]
    assert omi.short_name == "OMDOAO3e"
    assert omi.version == "003" and isinstance(omi.version, str)
    assert omi.variable == "/HDFEOS/GRIDS/ColumnAmountO3/Data Fields/ColumnAmountO3"
    assert omi.row_order == "south_up"
    assert omi.shape == (720, 1440)
    assert omi.affine() == Affine(0.25, 0, -180, 0, -0.25, 90)
    assert omi.crs == "EPSG:4326"
    assert omi.nodata == -1.2676506e30
    assert omi.fill_rule == "le"
    assert omi.fill_attributes == ("MissingValue", "_FillValue")
    assert (omi.scale, omi.offset, omi.units) == (1.0, 0.0, "DU")
    assert omi.start_date == date(2004, 10, 1)
    assert omi.include_re.match("OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5")
    assert not omi.include_re.match("OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5.xml")
    assert omi.stac.time_density == "day" and omi.stac.is_periodic is True
    assert omi.stac.temporal == (datetime(2004, 10, 1, tzinfo=UTC), None)
    assert omi.grid.bounds == (-180.0, -90.0, 180.0, 90.0)

    toms = cols["OMTO3d_003"]
    assert toms.shape == (180, 360)
    assert toms.affine() == Affine(1, 0, -180, 0, -1, 90)
    assert toms.variable == "/HDFEOS/GRIDS/OMI Column Amount O3/Data Fields/ColumnAmountO3"
    assert toms.version == "003"


def test_default_folder_is_the_package_folder_and_single_file_load_matches():
    assert Path(str(default_collections_dir())).resolve() == SHIPPED
    one = load_collection(OMDOAO3E_YAML)
    assert one == load_collections(SHIPPED)["OMDOAO3e_003"]
    assert one.source == str(OMDOAO3E_YAML)


def test_stac_collection_dict_is_a_valid_pystac_collection():
    config = load_collections()["OMDOAO3e_003"]
    doc = config.stac_collection()
    assert doc["extent"]["temporal"]["interval"] == [["2004-10-01T00:00:00Z", None]]
    assert doc["dashboard:time_density"] == "day"
    coll = pystac.Collection.from_dict(doc)
    assert coll.id == "OMDOAO3e_003"
    assert coll.extent.spatial.bboxes == [[-180.0, -90.0, 180.0, 90.0]]


# -- invalid files ---------------------------------------------------------------------------------------------------
def _base() -> dict:
    return yaml.safe_load(OMDOAO3E_YAML.read_text())


def _write(tmp_path: Path, data: dict | str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _error(path: Path) -> str:
    with pytest.raises(CollectionConfigError) as info:
        load_collection(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message  # every error names the file first
    return message


def test_version_written_as_an_unquoted_number_is_rejected(tmp_path):
    text = OMDOAO3E_YAML.read_text().replace('version: "003"', "version: 003")
    assert "version: 003" in text
    message = _error(_write(tmp_path, text))
    assert ": version: must be a string, got int 3" in message
    assert 'quote it in YAML, e.g. "003"' in message


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ((), "colour"),
        (("grid",), "grid.colour"),
        (("stac",), "stac.colour"),
        (("stac", "extent"), "stac.extent.colour"),
        (("stac", "providers", 0), "stac.providers[0].colour"),
    ],
)
def test_unknown_keys_are_rejected_at_every_level(tmp_path, where, field):
    data = _base()
    target = data
    for key in where:
        target = target[key]
    target["colour"] = "blue"
    message = _error(_write(tmp_path, data))
    assert f": {field}: unknown key" in message


@pytest.mark.parametrize("key", ["id", "version", "variable", "nodata", "start_date", "grid", "stac"])
def test_required_keys_are_required(tmp_path, key):
    data = _base()
    del data[key]
    assert f": {key}: required key is missing" in _error(_write(tmp_path, data))


@pytest.mark.parametrize("bad_id", ["../etc", "OMI/003", "a b", "..", ""])
def test_ids_unsafe_for_paths_are_rejected(tmp_path, bad_id):
    data = _base()
    data["id"] = bad_id
    message = _error(_write(tmp_path, data))
    assert ": id: " in message


def test_transform_not_covering_the_declared_bbox_is_rejected(tmp_path):
    data = _base()
    data["grid"]["width"] = 1439  # the 0.25° grid then ends at 179.75°E
    message = _error(_write(tmp_path, data))
    assert ": grid.transform: " in message
    assert "[-180, -90, 179.75, 90]" in message and "stac.extent.bbox [-180, -90, 180, 90]" in message

    data = _base()
    data["grid"]["transform"] = [-180, 0.5, 0, 90, 0, -0.5]  # 1440 x 0.5° spans 720°
    assert ": grid.transform: " in _error(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("transform", "rule"),
    [
        ([-180, 0.25, 0, -90, 0, 0.25], "north-up"),
        ([-180, 0.25, 0.1, 90, 0, -0.25], "rotation"),
        ([-180, 0.25, 0, 90, 0], "list of 6 numbers"),
        ([-180, "0.25", 0, 90, 0, -0.25], "grid.transform[1]: must be a number"),
    ],
)
def test_malformed_transforms_are_rejected(tmp_path, transform, rule):
    data = _base()
    data["grid"]["transform"] = transform
    message = _error(_write(tmp_path, data))
    assert "grid.transform" in message and rule in message


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(row_order="upside_down"), "row_order"),
        (lambda d: d.update(fill_rule="lt"), "fill_rule"),
        (lambda d: d.update(include="^(.+\\.he5$"), "include"),
        (lambda d: d.update(variable="HDFEOS/GRIDS/x"), "variable"),
        (lambda d: d.update(nodata="fill"), "nodata"),
        (lambda d: d.update(scale=0), "scale"),
        (lambda d: d.update(valid_range=[500, 100]), "valid_range"),
        (lambda d: d.update(start_date="October 2004"), "start_date"),
        (lambda d: d["grid"].update(width=0), "grid.width"),
        (lambda d: d["grid"].update(crs="EPSG:999999"), "grid.crs"),
        (lambda d: d["stac"].update({"dashboard:time_density": "hour"}), "stac.dashboard:time_density"),
        (lambda d: d["stac"].update({"dashboard:is_periodic": "yes"}), "stac.dashboard:is_periodic"),
        (lambda d: d["stac"]["providers"][0].update(roles=["owner"]), "stac.providers[0].roles[0]"),
        (lambda d: d["stac"]["extent"].update(temporal=["2005-01-01T00:00:00Z", None]), "stac.extent.temporal[0]"),
    ],
)
def test_field_rules_name_the_field(tmp_path, mutate, field):
    data = _base()
    mutate(data)
    assert f": {field}: " in _error(_write(tmp_path, data))


def test_invalid_yaml_and_non_mapping_documents(tmp_path):
    assert "not valid YAML" in _error(_write(tmp_path, "id: [unclosed\n"))
    assert "must be a mapping" in _error(_write(tmp_path, "- just\n- a list\n"))


# -- extra folders ---------------------------------------------------------------------------------------------------
def _extra_collection(tmp_path: Path, cid: str = "OMDOAO3e_004") -> Path:
    data = _base()
    data["id"] = cid
    data["version"] = "004"
    folder = tmp_path / "extra"
    folder.mkdir(exist_ok=True)
    _write(folder, data, name=f"{cid.lower()}.yml")
    return folder


def test_extra_dir_adds_collections_without_code(tmp_path, monkeypatch):
    monkeypatch.delenv(EXTRA_DIR_ENV, raising=False)
    folder = _extra_collection(tmp_path)
    cols = load_collections(extra_dir=folder)
    assert cols["OMDOAO3e_004"].version == "004"
    assert {"OMDOAO3e_003", "OMTO3d_003"} <= set(cols)

    monkeypatch.setenv(EXTRA_DIR_ENV, str(folder))  # how a deployment adds one: no code, one variable
    assert "OMDOAO3e_004" in load_collections()


def test_extra_dir_problems_are_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(EXTRA_DIR_ENV, raising=False)
    with pytest.raises(CollectionConfigError, match="extra collections folder does not exist"):
        load_collections(extra_dir=tmp_path / "nope")

    folder = _extra_collection(tmp_path, cid="OMDOAO3e_003")  # same id as a shipped file
    with pytest.raises(CollectionConfigError) as info:
        load_collections(extra_dir=folder)
    message = str(info.value)
    assert "'OMDOAO3e_003' is already declared by" in message and str(OMDOAO3E_YAML) in message
