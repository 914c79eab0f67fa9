"""pipeline_tests.test_earthdata: Earthdata downloads (bearer token, URS redirect login, verification) on stand-ins."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from urllib.parse import urlsplit

import pytest

from pipeline.lib.earthdata import EarthdataAuthError, EarthdataDownloader, EarthdataError, is_urs_url
from pipeline.standins.cmr import EarthdataStandin

USER, PASSWORD, TOKEN = "alice", "hunter2-Very-Secret", "edl-token-abc123"
NAME = "OMI-Aura_L3-OMDOAO3e_2022m0120_v003-2022m0122t021759.he5"
PATH = f"/data//Aura_OMI_Level3/OMDOAO3e.003/2022/{NAME}"
DATA = bytes(range(256)) * 400  # 102,400 bytes
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture
def data():
    with EarthdataStandin(users={USER: PASSWORD}, tokens={TOKEN}) as server:
        server.put_file(PATH, DATA)
        yield server


@pytest.fixture
def url(data):
    return f"{data.url}{PATH}"


def urs_host(data) -> str:
    return urlsplit(data.urs.url).netloc  # "127.0.0.1:<port>": the data host has the same IP, another port


def downloader(data, sleeps, **kwargs):
    kwargs.setdefault("urs_host", urs_host(data))
    return EarthdataDownloader(max_retries=1, backoff=0.01, sleep=sleeps, **kwargs)


def file_gets(data):
    return data.calls_to(r"\.he5$", "GET")


def test_token_is_sent_as_bearer_to_the_data_host_only(data, url, sleeps, tmp_path):
    dest = tmp_path / "out" / NAME
    result = downloader(data, sleeps, token=TOKEN).download(url, dest, expected_size=len(DATA))
    assert dest.read_bytes() == DATA
    assert result.path == str(dest) and result.bytes == len(DATA) and result.attempts == 1
    assert result.sha256 == hashlib.sha256(DATA).hexdigest()
    assert [c.headers.get("Authorization") for c in data.calls] == [f"Bearer {TOKEN}"]
    assert data.urs.calls == []
    assert not os.path.exists(f"{dest}.part")


def test_urs_redirect_login_sends_basic_auth_only_to_urs(data, url, sleeps, tmp_path):
    client = downloader(data, sleeps, username=USER, password=PASSWORD)
    result = client.download(url, tmp_path / NAME)
    assert (tmp_path / NAME).read_bytes() == DATA and result.bytes == len(DATA)
    # data host -> URS (basic auth) -> data host /urs_redirect (sets cookie) -> data host file.
    assert [c.path for c in data.calls] == [PATH, "/urs_redirect", PATH]
    assert [c.path for c in data.urs.calls] == ["/oauth/authorize"]
    assert data.urs.calls[0].headers.get("Authorization") == BASIC
    assert data.urs.calls[0].query["redirect_uri"] == [f"{data.url}/urs_redirect"]
    assert all("Authorization" not in c.headers for c in data.calls)
    assert data.cookie_name in data.calls[-1].headers.get("Cookie", "")

    # The session cookie is kept: a second file needs no new login.
    data.put_file("/data/other.he5", b"second")
    client.download(f"{data.url}/data/other.he5", tmp_path / "other.he5")
    assert (tmp_path / "other.he5").read_bytes() == b"second"
    assert len(data.urs.calls) == 1 and data.calls[-1].path == "/data/other.he5"


def test_wrong_password_raises_auth_error_without_the_password(data, url, sleeps, tmp_path, caplog):
    client = downloader(data, sleeps, username=USER, password="wrong-" + PASSWORD)
    with caplog.at_level(logging.DEBUG), pytest.raises(EarthdataAuthError) as err:
        client.download(url, tmp_path / NAME)
    message = str(err.value)
    assert url in message and "rejected the username/password" in message and "HTTP 401" in message
    assert err.value.status == 401
    wrong = base64.b64encode(f"{USER}:wrong-{PASSWORD}".encode()).decode()
    for text in (message, err.value.body, caplog.text):
        assert PASSWORD not in text and wrong not in text
    assert not (tmp_path / NAME).exists() and not (tmp_path / f"{NAME}.part").exists()
    assert all("Authorization" not in c.headers for c in data.calls)


def test_missing_credentials_fail_before_contacting_urs(data, url, sleeps, tmp_path):
    with pytest.raises(EarthdataAuthError, match="no username/password is configured"):
        downloader(data, sleeps).download(url, tmp_path / NAME)
    assert [c.path for c in data.calls] == [PATH]
    assert data.urs.calls == []


def test_rejected_token_names_the_url(data, url, sleeps, tmp_path):
    with pytest.raises(EarthdataAuthError, match="with the configured token") as err:
        downloader(data, sleeps, token="expired-token-999").download(url, tmp_path / NAME)
    assert url in str(err.value) and "expired-token-999" not in str(err.value)


def test_credentials_never_go_to_an_unconfigured_login_host(data, url, sleeps, tmp_path):
    # Same IP as the stand-in URS, another port: host:port matching must tell them apart.
    other = f"127.0.0.1:{urlsplit(data.urs.url).port + 1}"
    client = downloader(data, sleeps, username=USER, password=PASSWORD, urs_host=other)
    with pytest.raises(EarthdataAuthError, match="not the configured urs_host"):
        client.download(url, tmp_path / NAME)
    assert data.urs.calls == []
    assert all("Authorization" not in c.headers for c in data.calls)


def test_truncated_body_is_retried_then_succeeds(data, url, sleeps, tmp_path):
    data.truncate_next(PATH, times=2)
    result = downloader(data, sleeps, token=TOKEN, download_attempts=3).download(url, tmp_path / NAME, len(DATA))
    assert result.attempts == 3 and result.bytes == len(DATA)
    assert (tmp_path / NAME).read_bytes() == DATA
    assert len(file_gets(data)) == 3
    assert sleeps == [0.01, 0.02]


def test_always_truncated_body_fails_and_leaves_no_file(data, url, sleeps, tmp_path):
    dest = tmp_path / NAME
    data.truncate_next(PATH, times=10)
    with pytest.raises(EarthdataError) as err:
        downloader(data, sleeps, token=TOKEN, download_attempts=3).download(url, dest)
    message = str(err.value)
    assert url in message and "failed after 3 attempt(s)" in message
    assert f"after {len(DATA) // 2} of {len(DATA)} bytes" in message
    assert not isinstance(err.value, EarthdataAuthError)
    assert not dest.exists() and not os.path.exists(f"{dest}.part")
    assert len(file_gets(data)) == 3


def test_truncated_download_keeps_a_previous_good_file(data, url, sleeps, tmp_path):
    dest = tmp_path / NAME
    dest.write_bytes(b"previous good version")
    data.truncate_next(PATH, times=5)
    with pytest.raises(EarthdataError):
        downloader(data, sleeps, token=TOKEN, download_attempts=2).download(url, dest)
    assert dest.read_bytes() == b"previous good version"


def test_size_mismatch_with_expected_size_fails_without_retrying(data, url, sleeps, tmp_path):
    dest = tmp_path / NAME
    with pytest.raises(EarthdataError) as err:
        downloader(data, sleeps, token=TOKEN).download(url, dest, expected_size=len(DATA) + 5)
    message = str(err.value)
    assert url in message and f"complete {len(DATA)}-byte body but expected_size is {len(DATA) + 5}" in message
    assert not dest.exists() and not os.path.exists(f"{dest}.part")
    assert len(file_gets(data)) == 1  # the server sent all it promised: a retry would get the same file


def test_server_errors_are_retried(data, url, sleeps, tmp_path):
    data.fail_next(r"\.he5$", 503, "busy")
    result = downloader(data, sleeps, token=TOKEN).download(url, tmp_path / NAME)
    assert result.bytes == len(DATA) and sleeps == [0.01]


def test_missing_file_is_a_clear_error(data, sleeps, tmp_path):
    missing = f"{data.url}/data/nope.he5"
    with pytest.raises(EarthdataError, match="not found") as err:
        downloader(data, sleeps, token=TOKEN).download(missing, tmp_path / "nope.he5")
    assert missing in str(err.value) and err.value.status == 404


@pytest.mark.parametrize(
    ("url", "configured", "expected"),
    [
        ("https://urs.earthdata.nasa.gov/oauth/authorize?x=1", "urs.earthdata.nasa.gov", True),
        ("https://urs.earthdata.nasa.gov:443/oauth/authorize", "urs.earthdata.nasa.gov", True),
        ("https://urs.earthdata.nasa.gov:8443/oauth/authorize", "urs.earthdata.nasa.gov", False),
        ("https://URS.Earthdata.NASA.gov/oauth/authorize", "urs.earthdata.nasa.gov", True),
        ("https://urs.earthdata.nasa.gov.evil.example/oauth/authorize", "urs.earthdata.nasa.gov", False),
        ("https://acdisc.gesdisc.eosdis.nasa.gov/data/x.he5", "urs.earthdata.nasa.gov", False),
        ("http://127.0.0.1:9001/oauth/authorize", "127.0.0.1:9001", True),
        ("http://127.0.0.1:9002/oauth/authorize", "127.0.0.1:9001", False),
        ("http://127.0.0.1:9001/oauth/authorize", "https://127.0.0.1:9001", False),
    ],
)
def test_is_urs_url_matches_host_and_port(url, configured, expected):
    assert is_urs_url(url, configured) is expected


def test_username_without_password_is_refused():
    with pytest.raises(ValueError, match="both"):
        EarthdataDownloader(username=USER)
