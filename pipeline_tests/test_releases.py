"""pipeline_tests.test_releases: newest-complete-release discovery (Hansen, GLAD-L, GLAD-S2, RADD) on the stand-in."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
import rasterio

from pipeline.lib import releases as R
from pipeline.lib.gcs import GcsClient
from pipeline.lib.tiles import tile_bounds, to_glad_id
from pipeline.standins import tile_samples as S
from pipeline.standins.gcs import DEFAULT_TILES, HANSEN_BUCKET, RADD_BUCKET, GcsStandin

TODAY = date(2026, 3, 10)
TILES = DEFAULT_TILES  # 00N_020E, 00N_070W, 10N_110E, 10S_060W
N = len(TILES)


@pytest.fixture
def gcs():
    with GcsStandin() as server:
        server.seeded = server.seed_sources(TODAY, size=32)
        yield server


@pytest.fixture
def client(gcs, sleeps):
    return GcsClient(base_url=gcs.url, max_retries=1, backoff=0.001, sleep=sleeps)


# -- tile ids -----------------------------------------------------------------------------------------
def test_tile_ids_from_gfw_and_glad_names():
    assert R.tile_id_from_name("020E_10S_030E_00N") == "00N_020E"
    assert R.tile_id_from_name("070W_10S_060W_00N") == "00N_070W"
    assert R.tile_id_from_name("110E_00N_120E_10N") == "10N_110E"
    assert R.tile_id_from_name("10S_060W") == "10S_060W"
    for tile in TILES:
        assert R.tile_id_from_name(to_glad_id(tile)) == tile
    with pytest.raises(R.ReleaseError, match="must span exactly 10x10"):
        R.tile_id_from_name("020E_20S_030E_00N")
    with pytest.raises(R.ReleaseError, match="neither a GFW tile id"):
        R.tile_id_from_name("tile_7")
    with pytest.raises(R.ReleaseError, match="must be a multiple of 10"):
        R.tile_id_from_name("05N_020E")


# -- Hansen ----------------------------------------------------------------------------------------
def test_hansen_newest_version_sorts_numerically(gcs, client):
    gcs.publish_hansen("GFC-2024-v1.9", TILES, size=32)  # lexicographically after v1.12, numerically older
    rel = R.latest_hansen(client, expected=N)
    assert (rel.source, rel.version, rel.bucket) == ("hansen", "GFC-2024-v1.12", HANSEN_BUCKET)
    assert sorted(rel.tiles) == sorted(TILES)
    assert rel.tiles["00N_020E"] == {
        "lossyear": "GFC-2024-v1.12/Hansen_GFC-2024-v1.12_lossyear_00N_020E.tif",
        "treecover2000": "GFC-2024-v1.12/Hansen_GFC-2024-v1.12_treecover2000_00N_020E.tif",
    }
    name = rel.tiles["00N_020E"]["lossyear"]
    assert rel.expected_size(name) == gcs.get(HANSEN_BUCKET, name).size
    assert R.hansen_version_key("GFC-2024-v1.12") > R.hansen_version_key("GFC-2024-v1.9")
    # One folder listing, then per layer the .txt list and a listing of its files.
    assert gcs.calls_to(r"/o$")[0].q("delimiter") == "/" and gcs.calls_to(r"/o$")[0].q("prefix") == "GFC-"


def test_hansen_incomplete_newest_release_is_not_chosen(gcs, client):
    # v1.13's lists name all tiles but only two files are uploaded so far.
    gcs.publish_hansen("GFC-2025-v1.13", TILES[:2], size=32, listed_tiles=TILES)
    assert R.latest_hansen(client).version == "GFC-2024-v1.12"
    # v1.14 has its files but no treecover2000 list yet.
    gcs.publish_hansen("GFC-2026-v1.14", TILES, size=32)
    gcs.delete(HANSEN_BUCKET, "GFC-2026-v1.14/treecover2000.txt")
    assert R.latest_hansen(client).version == "GFC-2024-v1.12"
    gcs.put(
        HANSEN_BUCKET,
        "GFC-2026-v1.14/treecover2000.txt",
        gcs.get(HANSEN_BUCKET, "GFC-2026-v1.14/lossyear.txt").data.decode().replace("lossyear", "treecover2000"),
    )
    assert R.latest_hansen(client, expected=N).version == "GFC-2026-v1.14"
    with pytest.raises(R.IncompleteReleaseError, match=r"Hansen: no complete release; .*4 of 5 expected tiles"):
        R.latest_hansen(client, expected=N + 1)
    with pytest.raises(R.ReleaseError, match="Hansen GFC-2026-v1.14: 4 tiles, more than the expected 3"):
        R.latest_hansen(client, expected=N - 1)


def test_hansen_rejects_unexpected_file_names(gcs, client):
    gcs.put(HANSEN_BUCKET, "GFC-2024-v1.12/lossyear.txt", "https://storage.googleapis.com/x/GFC-2024-v1.12/foo.tif\n")
    with pytest.raises(R.ReleaseError, match=r"lossyear.txt line 1: 'foo.tif' is not Hansen_GFC-2024-v1.12_lossyear_"):
        R.latest_hansen(client)


# -- GLAD-L ----------------------------------------------------------------------------------------
def test_glad_l_uses_final_years_and_the_newest_complete_day(gcs, client):
    rel = R.latest_glad_l(client, TODAY, expected=N)
    assert (rel.source, rel.version, rel.bucket) == ("glad_l", "v20260310", HANSEN_BUCKET)
    assert sorted(rel.tiles) == sorted(TILES)
    layers = rel.tiles["00N_020E"]
    assert sorted(layers) == sorted([f"alert{y}" for y in range(21, 27)] + [f"alertDate{y}" for y in range(21, 27)])
    assert layers["alert21"] == "GLADalert/C2/2021/final/alert21_020E_10S_030E_00N.tif"
    assert layers["alertDate25"] == "GLADalert/C2/2025/final/alertDate25_020E_10S_030E_00N.tif"
    assert layers["alertDate26"] == "GLADalert/C2/2026/03_10/alertDate26_020E_10S_030E_00N.tif"
    assert all(rel.expected_size(n) for t in rel.tiles.values() for n in t.values())


def test_glad_l_walks_back_to_the_newest_complete_day(gcs, client):
    # Today's upload is in progress (2 of 4 tiles) and yesterday's folder is gone: the newest complete day is 03-05.
    gcs.delete_prefix(HANSEN_BUCKET, "GLADalert/C2/2026/")
    gcs.publish_glad_day(date(2026, 3, 5), TILES, size=32)
    gcs.publish_glad_day(date(2026, 3, 8), TILES[:3], size=32)
    gcs.publish_glad_day(TODAY, TILES[:2], size=32)
    gcs.publish_glad_day(date(2026, 3, 12), TILES, size=32)  # after "today": never used
    rel = R.latest_glad_l(client, TODAY, expected=N)
    assert rel.version == "v20260305"
    assert rel.tiles["10S_060W"]["alert26"] == "GLADalert/C2/2026/03_05/alert26_060W_20S_050W_10S.tif"
    # Day folders are found by listing each release year once, not by probing 365 prefixes.
    day_lists = [c for c in gcs.calls_to(r"/o$") if c.q("prefix") == "GLADalert/C2/2026/" and c.q("delimiter") == "/"]
    assert len(day_lists) == 1
    # A day whose alertDate files are all there but alert files are not is incomplete too.
    gcs.publish_glad_day(date(2026, 3, 9), TILES, size=32)
    gcs.delete(HANSEN_BUCKET, "GLADalert/C2/2026/03_09/alert26_020E_10S_030E_00N.tif")
    assert R.latest_glad_l(client, TODAY, expected=N).version == "v20260305"
    with pytest.raises(R.IncompleteReleaseError, match=r"no complete set of 4 alertDate26 tiles for 2026"):
        R.latest_glad_l(client, TODAY, expected=N, max_days_back=3)


def test_glad_l_previous_year_still_provisional_in_this_years_daily_folders(gcs, client):
    gcs.delete_prefix(HANSEN_BUCKET, "GLADalert/C2/2025/final/")
    gcs.publish_glad_day(date(2026, 1, 20), TILES, years=(2025, 2026), size=32)
    rel = R.latest_glad_l(client, TODAY, expected=N)
    assert rel.version == "v20260310"
    assert rel.tiles["00N_070W"]["alertDate25"] == "GLADalert/C2/2026/01_20/alertDate25_070W_10S_060W_00N.tif"
    assert rel.tiles["00N_070W"]["alertDate26"] == "GLADalert/C2/2026/03_10/alertDate26_070W_10S_060W_00N.tif"
    # ... and when no folder holds 2025 at all, discovery says which year is missing.
    gcs.delete_prefix(HANSEN_BUCKET, "GLADalert/C2/2026/01_20/")
    with pytest.raises(R.IncompleteReleaseError, match="alertDate25 tiles for 2025"):
        R.latest_glad_l(client, TODAY, expected=N)


def test_glad_l_more_tiles_than_expected_raises(gcs, client):
    gcs.publish_glad_day(TODAY, [*TILES, "10N_020E"], size=32)
    with pytest.raises(
        R.ReleaseError,
        match=r"5 alertDate26 files in gs://earthenginepartners-hansen/GLADalert/C2/"
        r"2026/03_10/, more than the expected 4",
    ):
        R.latest_glad_l(client, TODAY, expected=N)
    gcs.publish_glad_final(2023, [*TILES, "10N_020E"], size=32)
    with pytest.raises(R.ReleaseError, match=r"5 alertDate23 files in .*2023/final/, more than the expected 4"):
        R.latest_glad_l(client, TODAY, expected=N)


# -- GLAD-S2 ---------------------------------------------------------------------------------------
def test_s2_upload_date_parsing():
    assert R.parse_s2_upload_date("Updated Fri Apr 15 14:27:01 2022 UTC") == "v20220415"
    assert R.parse_s2_upload_date("Updated Tue Apr  5 09:00:00 2022 UTC\n") == "v20220405"
    with pytest.raises(R.ReleaseError, match="uploadDate.txt 'last update: yesterday' is not like"):
        R.parse_s2_upload_date("last update: yesterday")


def test_glad_s2_version_from_upload_date_and_tiles(gcs, client):
    text = gcs.set_s2_upload_date(datetime(2022, 4, 15, 14, 27, 1, tzinfo=UTC), TILES, size=32)
    assert text == "Updated Fri Apr 15 14:27:01 2022 UTC\n"
    rel = R.latest_glad_s2(client, expected=N)
    assert (rel.source, rel.version) == ("glad_s2", "v20220415")
    assert rel.tiles["00N_070W"] == {
        "alert": "S2alert/alert/070W_10S_060W_00N.tif",
        "alertDate": "S2alert/alertDate/070W_10S_060W_00N.tif",
    }
    assert R.latest_glad_s2(client).version == "v20220415"  # no count check by default, as datapump
    gcs.delete(HANSEN_BUCKET, "S2alert/alertDate/070W_10S_060W_00N.tif")
    with pytest.raises(R.IncompleteReleaseError, match="1 tiles lack alert or alertDate"):
        R.latest_glad_s2(client)


def test_glad_s2_counts(gcs, client):
    with pytest.raises(R.IncompleteReleaseError, match="GLAD-S2 v20260310: 4 of 5 expected tiles"):
        R.latest_glad_s2(client, expected=N + 1)
    with pytest.raises(R.ReleaseError, match="4 tiles, more than the expected 3"):
        R.latest_glad_s2(client, expected=N - 1)


# -- RADD ------------------------------------------------------------------------------------------
def test_radd_newest_complete_folder(gcs, client):
    assert gcs.seeded["radd"]["version"] == "v20260310"
    gcs.publish_radd(date(2026, 3, 17), TILES[:1], size=32)  # upload in progress
    rel = R.latest_radd(client, expected=(N - 1, N))
    assert (rel.source, rel.version, rel.bucket) == ("radd", "v20260310", RADD_BUCKET)
    assert rel.tiles == {t: {"date_conf": f"wur_radd_alerts/v20260310/{t}.tif"} for t in sorted(TILES)}
    assert R.latest_radd(client, expected=N).version == "v20260310"


def test_radd_over_count_and_nothing_complete(gcs, client):
    with pytest.raises(
        R.ReleaseError,
        match=r"4 .tif files in gs://gfw_gee_export/wur_radd_alerts/v20260310/, more "
        r"than any expected count \[2, 3\]",
    ):
        R.latest_radd(client, expected=(2, 3))
    with pytest.raises(R.IncompleteReleaseError, match=r"v20260310: 4, v20260303: 4; expected \[5\]"):
        R.latest_radd(client, expected=(5,))
    gcs.put(RADD_BUCKET, "wur_radd_alerts/v20260324/africa_1.tif", b"x")
    with pytest.raises(R.ReleaseError, match="file names must be {tile_id}.tif"):
        R.latest_radd(client, expected=(1,))


# -- downloads of a discovered release ---------------------------------------------------------------
def test_release_tiles_download_as_georeferenced_rasters(gcs, client, tmp_path):
    rel = R.latest_glad_l(client, TODAY, expected=N)
    name = rel.tiles["10S_060W"]["alertDate26"]
    path = tmp_path / "alertDate26.tif"
    client.download(rel.bucket, name, path, expected_size=rel.expected_size(name))
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.dtypes[0] == "uint16"
        assert tuple(ds.bounds) == tile_bounds("10S_060W") == (-60.0, -20.0, -50.0, -10.0)
        doy = ds.read(1)
    assert 0 < doy.max() <= TODAY.timetuple().tm_yday


def test_samples_are_deterministic_and_newer_releases_add_alerts():
    assert S.hansen_lossyear("00N_020E", 32) == S.hansen_lossyear("00N_020E", 32)
    older = S.read_array(S.radd_alerts("00N_020E", 64, date(2025, 1, 1)))
    newer = S.read_array(S.radd_alerts("00N_020E", 64, date(2026, 1, 1)))
    assert (newer[older > 0] == older[older > 0]).all() and (newer > 0).sum() > (older > 0).sum()
    assert set(np.unique(newer // 10000)) <= {0, 2, 3}
    loss = S.hansen_lossyear_array("00N_020E", 100)
    assert 0.05 < (loss > 0).mean() <= 0.10 and loss.max() <= 24
    cover = S.read_array(S.hansen_treecover2000("00N_020E", 100))
    assert (cover[loss > 0] > 30).all()  # loss only where there was forest
    assert len(S.truncated(b"0123456789")) == 5
