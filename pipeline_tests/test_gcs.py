"""pipeline_tests.test_gcs: the GCS client against the loopback stand-in (paging, downloads, errors, conditionals)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.lib.gcs import GcsClient, GcsError, GcsNotFound, parse_gcs_url
from pipeline.standins import tile_samples as S
from pipeline.standins.gcs import GcsStandin

BUCKET = "earthenginepartners-hansen"
TIF = "GFC-2024-v1.12/Hansen_GFC-2024-v1.12_lossyear_00N_020E.tif"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 3, 10, 6, 0, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def gcs(clock):
    with GcsStandin(now=clock) as server:
        yield server


@pytest.fixture
def client(gcs, sleeps):
    return GcsClient(base_url=gcs.url, max_retries=2, backoff=0.01, sleep=sleeps)


def test_list_follows_next_page_token_across_pages(gcs, client):
    for i in range(5):
        gcs.put(BUCKET, f"S2alert/alert/tile{i}.tif", b"x" * (i + 1))
    gcs.put(BUCKET, "S2alert/uploadDate.txt", "Updated ...")
    result = client.list(BUCKET, prefix="S2alert/alert/", max_results=2)
    assert result.names == [f"S2alert/alert/tile{i}.tif" for i in range(5)]
    assert [item["size"] for item in result.items] == [1, 2, 3, 4, 5]  # strings in JSON, ints here
    assert result.prefixes == []
    calls = gcs.calls_to(r"^/storage/v1/b/[^/]+/o$")
    assert len(calls) == 3
    assert [c.q("maxResults") for c in calls] == ["2", "2", "2"]
    assert calls[0].q("pageToken") is None and calls[1].q("pageToken") and calls[2].q("pageToken")
    assert all(c.q("prefix") == "S2alert/alert/" for c in calls)


def test_list_with_delimiter_returns_folders_once_across_pages(gcs, client):
    for name in (
        "GFC-2023-v1.11/lossyear.txt",
        "GFC-2023-v1.11/Hansen_GFC-2023-v1.11_lossyear_00N_020E.tif",
        "GFC-2024-v1.12/lossyear.txt",
        "GFC-2024-v1.12/treecover2000.txt",
        "GFC-readme.txt",
        "GLADalert/C2/2026/03_10/x.tif",
    ):
        gcs.put(BUCKET, name, b"data")
    for page_size in (1000, 1):
        result = client.list(BUCKET, prefix="GFC-", delimiter="/", max_results=page_size)
        assert result.prefixes == ["GFC-2023-v1.11/", "GFC-2024-v1.12/"]
        assert result.names == ["GFC-readme.txt"]
    # With maxResults=1 every folder and the one object is a page of its own.
    assert len(gcs.calls_to(r"/o$")) == 1 + 3
    assert all(c.q("delimiter") == "/" for c in gcs.calls_to(r"/o$"))


def test_download_streams_verifies_and_reports_metadata(gcs, client, tmp_path):
    data = S.hansen_lossyear("00N_020E", 64)
    obj = gcs.put(BUCKET, TIF, data)
    dest = tmp_path / "tiles" / "lossyear.tif"
    result = client.download(BUCKET, TIF, dest, expected_size=len(data))
    assert dest.read_bytes() == data
    assert result == {
        "size": len(data),
        "md5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        "etag": obj.etag,
        "generation": str(obj.generation),
    }
    (call,) = gcs.calls_to(r"/o/", method="GET")
    # The object name is one path segment: its slashes travel percent-encoded.
    assert (
        call.path
        == "/storage/v1/b/earthenginepartners-hansen/o/GFC-2024-v1.12%2FHansen_GFC-2024-v1.12_lossyear_00N_020E.tif"
    )
    assert call.q("alt") == "media"
    assert list(tmp_path.joinpath("tiles").iterdir()) == [dest]  # no temporary file left behind


def test_download_retries_a_body_shorter_than_the_listing_size(gcs, client, sleeps, tmp_path):
    data = S.glad_l_alert_date("00N_020E", 2026, 64)
    gcs.put(BUCKET, "GLADalert/C2/2026/03_10/alertDate26_020E_10S_030E_00N.tif", data)
    (item,) = client.list(BUCKET, prefix="GLADalert/C2/2026/03_10/").items
    gcs.corrupt_next(BUCKET, item["name"], times=2, mode="truncate")
    dest = tmp_path / "a.tif"
    result = client.download(BUCKET, item["name"], dest, expected_size=item["size"])
    assert result["size"] == item["size"] == len(data)
    assert dest.read_bytes() == data
    assert len(gcs.calls_to(r"/o/GLADalert", method="GET")) == 3
    assert len(sleeps) == 2


def test_download_gives_up_on_a_body_that_stays_short(gcs, client, tmp_path):
    data = S.radd_alerts("00N_020E", 64)
    name = "wur_radd_alerts/v20260310/00N_020E.tif"
    gcs.put("gfw_gee_export", name, data)
    gcs.corrupt_next("gfw_gee_export", name, times=10, mode="truncate")
    dest = tmp_path / "radd.tif"
    dest.write_bytes(b"previous good file")
    with pytest.raises(GcsError) as err:
        client.download("gfw_gee_export", name, dest, expected_size=len(data))
    message = str(err.value)
    assert message.startswith("GCS: downloading gs://gfw_gee_export/wur_radd_alerts/v20260310/00N_020E.tif")
    assert "failed after 3 attempts" in message and f"the size given by the caller is {len(data)}" in message
    assert dest.read_bytes() == b"previous good file"  # never replaced by a partial body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["radd.tif"]
    assert len(gcs.calls_to(r"/o/wur_radd", method="GET")) == 3


def test_download_without_expected_size_still_catches_short_and_corrupt_bodies(gcs, client, tmp_path):
    data = S.glad_s2_alert("00N_020E", 64)
    name = "S2alert/alert/020E_10S_030E_00N.tif"
    gcs.put(BUCKET, name, data)
    gcs.corrupt_next(BUCKET, name, times=1, mode="truncate")  # caught by x-goog-stored-content-length
    gcs.corrupt_next(BUCKET, name, times=1, mode="flip")  # same length, caught by the x-goog-hash MD5
    result = client.download(BUCKET, name, tmp_path / "s2.tif")
    assert (tmp_path / "s2.tif").read_bytes() == data and result["size"] == len(data)
    assert len(gcs.calls_to(r"/o/S2alert", method="GET")) == 3

    gcs.corrupt_next(BUCKET, name, times=3, mode="flip")
    with pytest.raises(GcsError, match=r"MD5 of the \d+ received bytes .* x-goog-hash md5 is"):
        client.download(BUCKET, name, tmp_path / "s2b.tif")


def test_missing_objects_and_buckets_raise_not_found_without_retrying(gcs, client, tmp_path, sleeps):
    gcs.put(BUCKET, "S2alert/uploadDate.txt", "x")
    with pytest.raises(GcsNotFound) as err:
        client.download(BUCKET, "S2alert/alert/nope.tif", tmp_path / "x.tif")
    assert str(err.value) == (
        "GCS: downloading gs://earthenginepartners-hansen/S2alert/alert/nope.tif: not found "
        "(No such object: earthenginepartners-hansen/S2alert/alert/nope.tif)"
    )
    assert err.value.status == 404
    with pytest.raises(GcsNotFound, match="metadata of gs://earthenginepartners-hansen/missing.txt"):
        client.head(BUCKET, "missing.txt")
    with pytest.raises(GcsNotFound, match="listing gs://no-such-bucket/x: not found"):
        client.list("no-such-bucket", prefix="x")
    assert len(gcs.calls) == 3 and sleeps == []
    assert not (tmp_path / "x.tif").exists()


def test_server_errors_are_retried_then_reported(gcs, client, sleeps):
    gcs.put(BUCKET, "GFC-2024-v1.12/lossyear.txt", "https://example/x\n")
    gcs.fail_next(r"/o$", 503, {"error": {"code": 503, "message": "Backend Error"}}, times=2)
    assert client.list(BUCKET, prefix="GFC-").names == ["GFC-2024-v1.12/lossyear.txt"]
    assert len(gcs.calls_to(r"/o$")) == 3 and len(sleeps) == 2

    gcs.fail_next(r"/o/", 500, {"error": {"code": 500, "message": "Internal Error"}}, times=5)
    with pytest.raises(GcsError) as err:
        client.read_text(BUCKET, "GFC-2024-v1.12/lossyear.txt")
    assert str(err.value).startswith("GCS: reading gs://earthenginepartners-hansen/GFC-2024-v1.12/lossyear.txt: ")
    assert "failed after 3 attempts" in str(err.value) and "HTTP 500" in str(err.value)


def test_read_text_and_head(gcs, client):
    obj = gcs.put(BUCKET, "S2alert/uploadDate.txt", "Updated Fri Apr 15 14:27:01 2022 UTC\n")
    assert client.read_text(BUCKET, "S2alert/uploadDate.txt") == "Updated Fri Apr 15 14:27:01 2022 UTC\n"
    meta = client.head(BUCKET, "S2alert/uploadDate.txt")
    assert meta["size"] == obj.size and meta["md5Hash"] == obj.md5_b64
    assert meta["generation"] == str(obj.generation) and meta["updated"] == "2026-03-10T06:00:00.000Z"
    assert meta["etag"] and meta["crc32c"] == obj.crc32c_b64
    (call,) = gcs.calls_to(r"uploadDate")[-1:]
    assert call.q("alt") is None


def test_download_url_uses_the_plain_public_form(gcs, client, tmp_path):
    data = S.hansen_treecover2000("10S_060W", 64)
    name = "GFC-2024-v1.12/Hansen_GFC-2024-v1.12_treecover2000_10S_060W.tif"
    gcs.put(BUCKET, name, data)
    url = f"https://storage.googleapis.com/{BUCKET}/{name}"
    assert parse_gcs_url(url) == (BUCKET, name) == parse_gcs_url(f"gs://{BUCKET}/{name}")
    result = client.download_url(url, tmp_path / "tc.tif", expected_size=len(data))
    assert (tmp_path / "tc.tif").read_bytes() == data and result["size"] == len(data)
    assert result["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    (call,) = gcs.calls
    assert call.path == f"/{BUCKET}/{name}" and call.method == "GET"

    gcs.corrupt_next(BUCKET, name, times=1)
    client.download_url(url, tmp_path / "tc2.tif")
    assert (tmp_path / "tc2.tif").read_bytes() == data


def test_head_url_conditional_requests(gcs, client, clock):
    name = "GFC-2024-v1.12/lossyear.txt"
    gcs.put(BUCKET, name, "one\n")
    url = f"https://storage.googleapis.com/{BUCKET}/{name}"
    first = client.head_url(url)
    assert first["changed"] and first["status"] == 200 and first["size"] == 4
    assert first["last_modified"] == "Tue, 10 Mar 2026 06:00:00 GMT"
    assert first["etag"] == '"' + hashlib.md5(b"one\n").hexdigest() + '"'

    assert client.head_url(url, etag=first["etag"])["changed"] is False
    assert client.head_url(url, etag=f"W/{first['etag']}")["changed"] is False  # weak comparison
    assert client.head_url(url, last_modified=first["last_modified"])["changed"] is False
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3): a stale ETag means changed.
    assert client.head_url(url, etag='"stale"', last_modified=first["last_modified"])["changed"] is True
    sent = gcs.calls_to(name, method="HEAD")[-1].headers
    assert sent["If-None-Match"] == '"stale"' and sent["If-Modified-Since"] == first["last_modified"]

    clock.now += timedelta(days=1)
    gcs.put(BUCKET, name, "two\n")
    again = client.head_url(url, etag=first["etag"], last_modified=first["last_modified"])
    assert again["changed"] and again["etag"] != first["etag"] and again["last_modified"].startswith("Wed, 11 Mar")
    with pytest.raises(GcsNotFound):
        client.head_url(f"https://storage.googleapis.com/{BUCKET}/nothing.txt")


def test_bearer_token_is_sent_and_never_shown(gcs, sleeps):
    client = GcsClient(base_url=gcs.url, token="s3cr3t-token", max_retries=0, sleep=sleeps)
    gcs.put(BUCKET, "a.txt", "a")
    client.read_text(BUCKET, "a.txt")
    assert gcs.calls[-1].headers["Authorization"] == "Bearer s3cr3t-token"
    gcs.fail_next(r"/o/", 403, {"error": {"code": 403, "message": "token s3cr3t-token is not allowed"}})
    with pytest.raises(GcsError) as err:
        client.read_text(BUCKET, "a.txt")
    assert "s3cr3t-token" not in str(err.value) and "HTTP 403" in str(err.value)
