"""Tests for pipeline.lib.data_api against the loopback GFW Data API stand-in."""

from __future__ import annotations

import pytest
import requests

from pipeline.lib.data_api import DataApiClient, DataApiError, column_type, table_schema
from pipeline.lib.http import SourceError
from pipeline.standins.data_api import DataApiStandin

TOKEN = "data-api-s3cr3t-9c8d"
DS = "geostore__viirs__daily_alerts"
COLUMNS = [
    "geostore__id",
    "alert__date",
    "confidence__cat",
    "alert__count",
    "alert_area__ha",
    "is__umd_regional_primary_forest_2001",
]


@pytest.fixture
def standin():
    with DataApiStandin(token=TOKEN, polls_until_saved=1) as srv:
        yield srv


@pytest.fixture
def client(standin, sleeps):
    return DataApiClient(
        standin.url,
        token=TOKEN,
        sleep=sleeps,
        backoff=0.001,
        max_retries=2,
        poll_interval=2.0,
        poll_timeout=60,
    )


def write_tsv(path, rows, columns=COLUMNS):
    path.write_text("\t".join(columns) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def sample_files(tmp_path, n=3):
    files = []
    for i in range(n):
        rows = [("a" * 32, f"2026-09-2{i}", "h", i + 1, 1.5 * (i + 1), "true")]
        files.append(write_tsv(tmp_path / f"part-{i:05d}.tsv", rows))
    return files


# -- table_schema --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "column, expected",
    [
        ("whrc_aboveground_co2_emissions__Mg", "numeric"),
        ("gfw_full_extent_gross_emissions__Mg_CO2e", "numeric"),  # datapump: "__Mg" anywhere
        ("alert_area__ha", "numeric"),
        ("frp__MW", "numeric"),
        ("bright_ti4__K", "numeric"),
        ("latitude", "numeric"),
        ("longitude", "numeric"),
        ("umd_tree_cover_density_2000__threshold", "integer"),
        ("alert__count", "integer"),
        ("tcd__perc", "integer"),
        ("alert__year", "integer"),
        ("alert__week", "integer"),
        ("pop__decile", "integer"),
        ("adm1", "integer"),
        ("adm2", "integer"),
        ("is__umd_regional_primary_forest_2001", "boolean"),
        ("alert__date", "date"),
        ("iso", "text"),
        ("geostore__id", "text"),
        ("confidence__cat", "text"),
        ("area__hash", "text"),  # suffix rule, not substring
        ("this__is__date_not", "text"),
    ],
)
def test_column_type_rules(column, expected):
    assert column_type(column) == expected


def test_table_schema_shape_whitelist_and_bad_input():
    assert table_schema(["iso", "adm1", "alert__count"]) == [
        {"name": "iso", "data_type": "text"},
        {"name": "adm1", "data_type": "integer"},
        {"name": "alert__count", "data_type": "integer"},
    ]
    assert [
        c["data_type"]
        for c in table_schema(["iso", "adm1", "is__ifl", "wdpa"], whitelist=True, id_columns=["iso", "adm1"])
    ] == ["text", "integer", "boolean", "boolean"]
    with pytest.raises(ValueError, match="non-empty list"):
        table_schema([])
    with pytest.raises(ValueError, match="'iso' appears more than once"):
        table_schema(["iso", "iso"])
    with pytest.raises(ValueError, match="non-empty list"):
        table_schema("iso")


# -- publish_table -------------------------------------------------------------------------------
def test_publish_table_creates_dataset_and_version_then_appends(client, standin, tmp_path, sleeps):
    files = sample_files(tmp_path)
    version = client.publish_table(
        DS,
        COLUMNS,
        files,
        index_columns=["geostore__id", "alert__date"],
        version="v20260927",
        metadata={"title": "VIIRS alerts on user areas"},
    )
    assert version == "v20260927"
    assert [(c.method, c.path) for c in standin.calls if c.method != "GET"] == [
        ("PUT", f"/dataset/{DS}"),
        ("PUT", f"/dataset/{DS}/v20260927"),
        ("POST", f"/dataset/{DS}/v20260927/append"),
    ]
    put_version = standin.calls_to(f"^/dataset/{DS}/v20260927$", "PUT")[0]
    options = put_version.json()["creation_options"]
    assert options["source_type"] == "table" and options["source_driver"] == "text"
    assert options["delimiter"] == "\t" and options["has_header"] is True
    assert options["source_uri"] == files[:1]
    assert options["table_schema"] == table_schema(COLUMNS)
    assert options["indices"] == [{"index_type": "btree", "column_names": ["geostore__id", "alert__date"]}]
    assert options["cluster"] == {"index_type": "btree", "column_names": ["geostore__id", "alert__date"]}
    assert standin.calls_to("/append")[0].json() == {"source_uri": files[1:]}
    assert put_version.headers["Authorization"] == f"Bearer {TOKEN}"
    assert standin.appended(DS, version) == files
    assert [(r["alert__date"], r["alert__count"]) for r in standin.rows(DS, version)] == [
        ("2026-09-20", "1"),
        ("2026-09-21", "2"),
        ("2026-09-22", "3"),
    ]
    assert standin.version(DS, version)["status"] == "saved"
    assert standin.datasets[DS]["metadata"] == {"title": "VIIRS alerts on user areas"}
    # one pending poll after the PUT and one after the append; polling starts fast (0.25 s)
    assert sleeps == [0.25, 0.25]


def test_publish_table_appends_to_latest_version(client, standin, tmp_path):
    standin.add_version(DS, "v20260901", COLUMNS, is_latest=True)
    standin.add_version(DS, "v20260801", COLUMNS)
    files = sample_files(tmp_path, 2)
    assert client.publish_table(DS, COLUMNS, files, ["geostore__id"]) == "v20260901"
    assert not standin.calls_to(r"^/dataset/[^/]+(/[^/]+)?$", "PUT")
    assert [c.json() for c in standin.calls_to("/append")] == [{"source_uri": files}]
    assert len(standin.rows(DS, "v20260901")) == 2
    assert standin.appended(DS, "v20260801") == []


def test_publish_table_first_version_is_created_as_default_and_tagged_latest(client, standin, tmp_path):
    files = [f"file://{p}" for p in sample_files(tmp_path, 1)]
    assert client.publish_table(DS, COLUMNS, files, ["geostore__id"], cluster=False) == "v1"
    assert standin.version(DS, "v1")["is_latest"] is True
    assert "cluster" not in standin.calls_to(f"/dataset/{DS}/v1$", "PUT")[0].json()["creation_options"]
    assert not standin.calls_to("/append")  # a single source goes into the PUT
    assert len(standin.rows(DS, "v1")) == 1
    assert client.latest_version(DS) == "v1"


def test_publish_table_rejects_bad_input_before_any_call(client, standin):
    with pytest.raises(ValueError, match=r"index_columns \['nope'\] are not among the table columns"):
        client.publish_table(DS, COLUMNS, ["s3://b/k.tsv"], ["nope"])
    with pytest.raises(ValueError, match="source_uris must be a non-empty list"):
        client.publish_table(DS, COLUMNS, [], ["geostore__id"])
    with pytest.raises(ValueError, match="dataset must be a non-empty name"):
        client.publish_table("a/b", COLUMNS, ["s3://b/k.tsv"], [])
    assert standin.calls == []


# -- latest --------------------------------------------------------------------------------------
def test_latest_follows_307(client, standin):
    standin.add_version(DS, "v1", COLUMNS)
    standin.add_version(DS, "v2", COLUMNS)
    assert client.latest_version(DS) is None  # no version tagged latest -> 404
    client.set_latest(DS, "v2")
    assert client.latest_version(DS) == "v2"
    assert [c.path for c in standin.calls if c.method == "GET"][-2:] == [
        f"/dataset/{DS}/latest",
        f"/dataset/{DS}/v2",
    ]
    raw = requests.get(f"{standin.url}/dataset/{DS}/latest/assets", allow_redirects=False, timeout=5)
    assert raw.status_code == 307 and raw.headers["Location"] == f"/dataset/{DS}/v2/assets"
    assert client.latest_version("no_such_dataset") is None
    assert standin.version(DS, "v1")["is_latest"] is False


# -- waiting -------------------------------------------------------------------------------------
def test_wait_fails_loudly_when_version_fails(client, standin, tmp_path):
    standin.add_version(DS, "v3", COLUMNS, is_latest=True)
    standin.fail_version(DS, "v3", "COPY failed: invalid input syntax for type integer at line 7")
    client.append(DS, "v3", sample_files(tmp_path, 1))
    with pytest.raises(DataApiError) as info:
        client.wait_until_saved(DS, "v3")
    msg = str(info.value)
    assert msg.startswith("GFW Data API: version geostore__viirs__daily_alerts/v3 ended with status 'failed'")
    assert "invalid input syntax for type integer at line 7" in msg
    assert isinstance(info.value, SourceError) and info.value.dataset == DS and info.value.version == "v3"
    assert standin.rows(DS, "v3") == []


def test_publish_table_raises_when_append_fails(client, standin, tmp_path):
    standin.add_version(DS, "v4", COLUMNS, is_latest=True)
    bad = write_tsv(tmp_path / "bad.tsv", [("x", "y")], columns=["geostore__id", "unexpected_column"])
    with pytest.raises(DataApiError, match=r"v4 ended with status 'failed'.*unexpected_column"):
        client.publish_table(DS, COLUMNS, [bad], ["geostore__id"])


def test_wait_times_out(standin, sleeps):
    standin.add_version(DS, "v5", COLUMNS)
    standin.version(DS, "v5").update(status="pending", _polls_left=1000)  # a job that never finishes
    client = DataApiClient(standin.url, token=TOKEN, sleep=sleeps, poll_interval=10, poll_timeout=35)
    with pytest.raises(DataApiError, match=r"v5 still 'pending' after 26s and 8 polls \(poll_timeout 35s\)"):
        client.wait_until_saved(DS, "v5")
    # Back-off from 0.25 s doubling up to poll_interval, never past poll_timeout.
    assert sleeps == [0.25, 0.5, 1, 2, 4, 8, 10]


# -- errors and auth -----------------------------------------------------------------------------
def test_wrong_or_missing_token_is_401_without_leaking(standin, sleeps):
    bad = DataApiClient(standin.url, token="wrong-token-abc123", sleep=sleeps)
    with pytest.raises(DataApiError) as info:
        bad.create_dataset(DS, {})
    assert info.value.status == 401
    assert str(info.value) == f"GFW Data API: PUT /dataset/{DS} returned HTTP 401: Unauthorized"
    assert "wrong-token-abc123" not in str(info.value)
    anonymous = DataApiClient(standin.url, sleep=sleeps)
    with pytest.raises(DataApiError, match="401: Not authenticated"):
        anonymous.create_dataset(DS, {})
    assert anonymous.get_dataset(DS) is None  # reads need no token
    assert standin.datasets == {}
    assert sleeps == []


def test_validation_errors_are_surfaced(client, standin):
    client.create_dataset(DS, {})
    options = DataApiClient.table_creation_options(COLUMNS, ["s3://bucket/part-0.tsv"], ["geostore__id"])
    options["delimiter"] = "#"
    with pytest.raises(
        DataApiError, match=r"HTTP 422: creation_options\.delimiter: value is not a valid enumeration member"
    ):
        client.create_version(DS, "v1", options)
    assert client.get_version(DS, "v1") is None
    with pytest.raises(DataApiError, match="Version with name .*v9 does not exist"):
        client.append(DS, "v9", ["s3://bucket/x.tsv"])


def test_get_and_patch(client, standin):
    assert client.get_dataset(DS) is None
    created = client.create_dataset(DS, {"title": "t"})
    assert created["dataset"] == DS and created["versions"] == []
    options = DataApiClient.table_creation_options(COLUMNS, ["s3://bucket/part-0.tsv"], ["geostore__id"])
    v = client.create_version(DS, "v1", options, metadata={"content_date_range": {"start_date": "2012-01-01"}})
    assert v["status"] == "pending" and v["version"] == "v1"
    assert client.wait_until_saved(DS, "v1")["status"] == "saved"
    patched = client.patch_metadata(
        DS, "v1", {"content_date_range": {"start_date": "2012-01-01", "end_date": "2026-09-27"}}
    )
    assert patched["metadata"]["content_date_range"]["end_date"] == "2026-09-27"
    assert client.get_dataset(DS)["versions"] == ["v1"]
    assets = requests.get(f"{standin.url}/dataset/{DS}/v1/assets", timeout=5).json()["data"]
    assert [(a["asset_type"], a["status"]) for a in assets] == [("Database table", "saved")]


def test_put_version_5xx_then_existing_version_is_returned(client, standin, sleeps):
    client.create_dataset(DS, {})
    options = DataApiClient.table_creation_options(COLUMNS, ["s3://bucket/part-0.tsv"], ["geostore__id"])
    standin.add_version(DS, "v7", COLUMNS)  # the server did create it before timing out
    standin.fail_next(
        f"/dataset/{DS}/v7$",
        500,
        {"status": "error", "message": "Internal Server Error"},
        method="PUT",
        times=5,
    )
    got = client.create_version(DS, "v7", options)
    assert got["version"] == "v7"
    assert len(standin.calls_to(f"/dataset/{DS}/v7$", "PUT")) == 3  # 1 + max_retries


def test_5xx_exhausted_names_the_source(client, standin):
    standin.fail_next(f"^/dataset/{DS}$", 503, {"status": "error", "message": "Service Unavailable"}, times=5)
    with pytest.raises(
        DataApiError, match=r"^GFW Data API: GET /dataset/\S+ failed with HTTP 503: Service Unavailable"
    ):
        client.get_dataset(DS)


def test_source_reader_reads_non_local_uris_and_missing_sources_are_400(tmp_path):
    blobs = {"s3://bucket/part-0.tsv": b"geostore__id\talert__count\nabc\t4\n"}

    def reader(uri):
        if uri not in blobs:
            raise FileNotFoundError(uri)
        return blobs[uri]

    with DataApiStandin(token=TOKEN, polls_until_saved=0, source_reader=reader) as srv:
        client = DataApiClient(srv.url, token=TOKEN, sleep=lambda s: None)
        assert client.publish_table(DS, ["geostore__id", "alert__count"], list(blobs), ["geostore__id"]) == "v1"
        assert srv.rows(DS, "v1") == [{"geostore__id": "abc", "alert__count": "4"}]
        with pytest.raises(
            DataApiError, match=r"HTTP 400: Cannot access all of the source files.*s3://bucket/gone\.tsv"
        ):
            client.append(DS, "v1", ["s3://bucket/gone.tsv"])
        with pytest.raises(DataApiError, match="HTTP 400: Cannot access all of the source files"):
            client.append(DS, "v1", [str(tmp_path / "missing.tsv")])
        assert srv.appended(DS, "v1") == list(blobs)
