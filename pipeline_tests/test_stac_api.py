"""pipeline_tests.test_stac_api: the STAC API client against a real stac-fastapi-pgstac on the local PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import requests

from pipeline.lib.http import SourceError
from pipeline.lib.stac import StaticCatalog
from pipeline.lib.stac_api import StacApiClient
from pipeline.lib.storage import Storage
from pipeline_tests.test_stac import STATS, cog_info, make_collection, make_item

pytestmark = pytest.mark.db


class Seen(list):
    """Records (method, status) of every response the client's session receives."""

    def __call__(self, response, *args, **kwargs):
        self.append((response.request.method, response.status_code))


@pytest.fixture
def seen():
    return Seen()


@pytest.fixture
def api(stac_api_url, seen):  # noqa: F811
    session = requests.Session()
    session.hooks["response"].append(seen)
    return StacApiClient(stac_api_url, token="test-token-not-checked", max_retries=1, backoff=0.01, session=session)


@pytest.fixture
def collection_id(api):
    """A fresh collection id per test: the server lives for the whole session."""
    cid = f"TEST_{uuid.uuid4().hex[:10]}"
    yield cid
    api.delete_collection(cid)


def test_ensure_collection_creates_once_and_updates_only_on_change(api, collection_id, seen):
    collection = make_collection(collection_id)
    assert api.ensure_collection(collection) == "created"
    assert api.ensure_collection(collection) == "unchanged"
    assert ("PUT", 200) not in seen  # nothing was rewritten
    listed = requests.get(f"{api.base_url}/collections", params={"limit": 1000}, timeout=30).json()["collections"]
    assert [c["id"] for c in listed].count(collection_id) == 1

    changed = make_collection(collection_id, title="A new title")
    assert api.ensure_collection(changed) == "updated"
    assert api.get_collection(collection_id)["title"] == "A new title"
    assert api.ensure_collection(changed) == "unchanged"
    # The static catalog's relative links are not sent: the server's own links stay absolute.
    static = {**changed, "links": [{"rel": "root", "href": "../catalog.json", "type": "application/json"}]}
    assert api.ensure_collection(static) == "unchanged"
    hrefs = [link["href"] for link in api.get_collection(collection_id)["links"]]
    assert all(h.startswith(api.base_url) for h in hrefs)


def test_upsert_item_creates_then_replaces_without_duplicates(api, collection_id, seen, tmp_path):
    api.ensure_collection(make_collection(collection_id))
    item = make_item("2022-01-20", collection_id)
    seen.clear()
    assert api.upsert_item(item) == "created"
    assert seen == [("POST", 201)]

    # Publish the same day again with new statistics, as it comes out of the static catalog (relative links).
    catalog = StaticCatalog(Storage(str(tmp_path / "cat")))
    catalog.write_collection(make_collection(collection_id))
    rel = catalog.upsert_item(
        make_item("2022-01-20", collection_id, cog_info=cog_info(statistics={**STATS, "mean": 300.0}))
    )
    seen.clear()
    assert api.upsert_item(catalog.storage.read_json(rel)) == "replaced"
    assert seen == [("POST", 409), ("PUT", 200)]

    found = api.search(collection_id)
    assert [f["id"] for f in found] == [item["id"]]
    stored = found[0]
    assert stored["assets"]["cog_default"]["raster:bands"][0]["statistics"]["mean"] == 300.0
    assert stored["properties"]["datetime"] == "2022-01-20T00:00:00Z"
    assert stored["properties"]["proj:epsg"] == 4326
    links = {link["rel"]: link["href"] for link in stored["links"]}
    assert links["collection"] == f"{api.base_url}/collections/{collection_id}"
    assert not any(link["href"].startswith("..") for link in stored["links"])
    assert any(link["rel"] == "via" and link["href"].endswith(".umm_json") for link in stored["links"])
    assert api.get_item(collection_id, item["id"])["id"] == item["id"]


def test_search_pages_through_next_links(api, collection_id):
    api.ensure_collection(make_collection(collection_id))
    days = [f"2022-03-{d:02d}" for d in range(1, 6)]
    for day in days:
        assert api.upsert_item(make_item(day, collection_id)) == "created"
    pages = list(api.iter_pages(collection_id, limit=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [f["id"] for p in pages for f in p]
    assert sorted(ids) == [f"{collection_id}_{day}" for day in days]  # each exactly once

    window = (dt.datetime(2022, 3, 2, tzinfo=dt.UTC), dt.datetime(2022, 3, 3, 12, tzinfo=dt.UTC))
    assert sorted(f["id"] for f in api.search(collection_id, datetime=window, limit=1)) == [
        f"{collection_id}_2022-03-02",
        f"{collection_id}_2022-03-03",
    ]
    assert len(api.search(collection_id, datetime=(dt.datetime(2022, 3, 4, tzinfo=dt.UTC), None))) == 2


def test_delete_and_get_missing(api, collection_id):
    api.ensure_collection(make_collection(collection_id))
    item = make_item("2022-01-20", collection_id)
    api.upsert_item(item)
    assert api.delete_item(collection_id, item["id"]) is True
    assert api.delete_item(collection_id, item["id"]) is False
    assert api.get_item(collection_id, item["id"]) is None
    assert api.get_collection(f"{collection_id}_missing") is None
    assert api.search(collection_id) == []


def test_errors_name_the_item_and_quote_the_server(api, collection_id):
    api.ensure_collection(make_collection(collection_id))
    item = make_item("2022-01-20", collection_id)
    broken = {**item, "properties": {k: v for k, v in item["properties"].items() if k != "datetime"}}
    with pytest.raises(SourceError) as info:
        api.upsert_item(broken)
    assert info.value.status == 400
    message = str(info.value)
    assert message.startswith("STAC API: item 'TEST_") and item["id"] in message
    assert "datetime" in message and "Field required" in info.value.body
    assert "test-token-not-checked" not in message

    # Replacing an item that does not exist: the server's 404 body is in the error.
    with pytest.raises(SourceError) as info:
        api.replace_item(make_item("2022-01-21", collection_id))
    assert info.value.status == 404 and "NotFoundError" in str(info.value) and "2022-01-21" in str(info.value)

    # A collection the server cannot parse (no description): 400 with its explanation.
    invalid = {k: v for k, v in make_collection(collection_id).items() if k != "description"}
    with pytest.raises(SourceError) as info:
        api.ensure_collection(invalid)
    assert info.value.status == 400 and "description" in str(info.value) and "Field required" in str(info.value)

    # An item of a collection that does not exist: pgstac answers a bare 500, the error says what is wrong.
    with pytest.raises(SourceError, match=r"collection 'TEST_\w+_missing' does not exist .*ensure_collection"):
        api.upsert_item(make_item("2022-01-20", f"{collection_id}_missing"))

    with pytest.raises(ValueError, match="item id"):
        api.upsert_item({**item, "id": "a=b"})


def test_unreachable_server_is_a_source_error():
    from pipeline_tests.conftest import free_port

    client = StacApiClient(f"http://127.0.0.1:{free_port()}", max_retries=1, backoff=0.0, sleep=lambda s: None)
    with pytest.raises(SourceError, match="collection 'X_1'.*failed after 2 attempts"):
        client.get_collection("X_1")
