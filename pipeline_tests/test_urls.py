"""Tests for pipeline.lib.urls: harvested URLs are checked for scheme, credentials and non-public addresses."""

import pytest

from pipeline.lib.earthdata import EarthdataDownloader, EarthdataError
from pipeline.lib.urls import UnsafeUrlError, UrlPolicy
from pipeline.standins.cmr import EarthdataStandin


@pytest.mark.parametrize(
    "url,rule",
    [
        ("ftp://acdisc.gesdisc.eosdis.nasa.gov/x.he5", "scheme 'ftp' is not allowed"),
        ("http://acdisc.gesdisc.eosdis.nasa.gov/x.he5", "scheme 'http' is not allowed"),
        ("https://127.0.0.1/x.he5", "non-public address 127.0.0.1"),
        ("https://169.254.169.254/latest/meta-data/", "non-public address 169.254.169.254"),
        ("https://10.1.2.3/x", "non-public address 10.1.2.3"),
        ("https://[::1]/x", "non-public address ::1"),
        ("https://localhost/x", "non-public address"),
        ("https://user:pw@example.org/x", "must not carry credentials"),
        ("https:///x", "has no host"),
    ],
)
def test_default_policy_refuses_unsafe_urls_naming_the_rule(url, rule):
    with pytest.raises(UnsafeUrlError, match=rule) as err:
        UrlPolicy().check(url, "granule URL")
    assert "pw" not in str(err.value)


def test_public_https_passes_and_private_needs_the_switch():
    assert UrlPolicy().check("https://8.8.8.8/data.he5") == "https://8.8.8.8/data.he5"
    assert UrlPolicy(allow_private=True).check("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"


def test_downloader_checks_every_hop_before_any_request(tmp_path):
    with EarthdataStandin(tokens=["tok"]) as data:
        url = data.put_file("/data/g.he5", b"x" * 100)
        strict = EarthdataDownloader(token="tok", url_policy=UrlPolicy(), max_retries=0)
        with pytest.raises(EarthdataError, match="granule URL http:.*scheme .http. is not allowed"):
            strict.download(url, tmp_path / "g.he5")
        assert data.calls == []  # refused before connecting
        relaxed = EarthdataDownloader(token="tok", url_policy=UrlPolicy(allow_private=True), max_retries=0)
        assert relaxed.download(url, tmp_path / "g.he5").bytes == 100


def test_a_redirect_to_a_private_address_is_refused(tmp_path):
    with EarthdataStandin(tokens=["tok"]) as data:
        data.put_file("/data/g.he5", b"x" * 10)

        # The first hop is allowed (private allowed for its host only via a policy that trusts it), the redirect is not.
        class OnlyFirstHost(UrlPolicy):
            def check(self, url, what="URL"):
                if what != "granule URL":
                    raise UnsafeUrlError(f"{what} {url}: not trusted")
                return url

        data.fail_next(r"^/data/g.he5$", status=302, body=b"", headers={"Location": "http://169.254.169.254/x"})
        dl = EarthdataDownloader(token="tok", url_policy=OnlyFirstHost(), max_retries=0)
        with pytest.raises(EarthdataError, match="redirect of .* to http://169.254.169.254/x: not trusted"):
            dl.download(f"{data.url}/data/g.he5", tmp_path / "g.he5")
        assert not (tmp_path / "g.he5").exists()
