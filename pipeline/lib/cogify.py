"""pipeline.lib.cogify: one day of a gridded collection, from CMR granule to validated COG, preview and sidecar."""

# The per-day unit of work of the COG pipeline (VEDA's cmr-query -> cogify -> build-stac, domain.md B3),
# written so it runs the same inline or on a Dask worker: plain arguments in, a plain dict out, every
# failure turned into a `DayResult` with the reason instead of an exception, so one bad granule never
# stops the other days of a backfill. Outputs are deterministic per day (a revised granule replaces its
# day's files) and the sidecar JSON, which the STAC step reads, is written last: a day without a sidecar
# has no valid COG and is never published.

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from pipeline.lib.cmr import Granule, granule_day
from pipeline.lib.collections import CollectionConfig
from pipeline.lib.storage import Storage, safe_component


@dataclass
class DayResult:
    """What happened to one day: `ok` with the sidecar, or the reason it failed."""

    day: str
    ok: bool
    error: str | None = None
    sidecar: dict = field(default_factory=dict)


def item_id(config: CollectionConfig, day: str) -> str:
    """The STAC item id of a day (also the file stem of its outputs)."""
    date.fromisoformat(day)  # rejects anything that is not a real YYYY-MM-DD before it becomes a path
    return safe_component(f"{config.id}_{day}", "item id")


def cog_relpath(config: CollectionConfig, day: str) -> str:
    return f"cogs/{safe_component(config.id, 'collection id')}/{day[:4]}/{item_id(config, day)}.tif"


def preview_relpath(config: CollectionConfig, day: str) -> str:
    return cog_relpath(config, day)[: -len(".tif")] + ".png"


def sidecar_relpath(config: CollectionConfig, day: str) -> str:
    return cog_relpath(config, day)[: -len(".tif")] + ".json"


def day_window(days: list[str]) -> tuple[datetime, datetime]:
    """The CMR temporal window covering `days` (UTC midnight of the first to the end of the last)."""
    from datetime import UTC

    first = datetime.fromisoformat(min(days)).replace(tzinfo=UTC)
    last = datetime.fromisoformat(max(days)).replace(tzinfo=UTC) + timedelta(days=1) - timedelta(seconds=1)
    return first, last


def newest_per_day(granules, days: list[str]) -> dict[str, Granule]:
    """The newest revision (then newest revision date) of the granule of each wanted day."""
    wanted, out = set(days), {}
    for g in granules:
        day = granule_day(g)
        if day not in wanted or not g.data_url:
            continue
        best = out.get(day)
        key = (g.revision_id or 0, g.revision_date or datetime.min.replace(tzinfo=g.time_start.tzinfo))
        if best is None or key > (best.revision_id or 0, best.revision_date or key[1]):
            out[day] = g
    return out


def process_day(
    config: CollectionConfig,
    day: str,
    granule: Granule | None,
    storage_url: str,
    downloader,
    *,
    cog_options: dict | None = None,
    tmp_dir: str | None = None,
) -> DayResult:
    """Download, read, convert and describe one day's granule; never raises for bad input.

    `downloader` is an `EarthdataDownloader` (or anything with its `download(url, dest, expected_size)`).
    On success the COG, a PNG preview and the sidecar JSON are in storage; on failure nothing of this
    day is changed (a previous good COG and sidecar stay as they were).
    """
    from pipeline.lib import granules as G

    if granule is None:
        return DayResult(day, False, f"{config.id} {day}: no granule in CMR for this day")
    st = Storage(storage_url)
    name = granule.native_id or granule.granule_ur
    try:
        with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="geopump-granule-") as tmp:
            local = Path(tmp) / safe_component(os.path.basename(name) or "granule.he5", "granule name")
            got = downloader.download(granule.data_url, str(local), expected_size=granule.size_bytes)
            arr = G.read_granule(local, config)
            stats = G.band_statistics(arr, histogram_bins=16)
            cog = G.write_granule_cog(arr, st, cog_relpath(config, day), options=cog_options, tmp_dir=tmp)
            png = G.preview_png(arr)
            st.write_bytes(preview_relpath(config, day), png)
    except Exception as exc:  # noqa: BLE001 - every failure of a day becomes that day's error, named
        reason = str(exc) if name in str(exc) else f"{name}: {exc}"
        return DayResult(day, False, f"{config.id} {day}: {type(exc).__name__}: {reason}")
    sidecar = {
        "collection": config.id,
        "day": day,
        "item_id": item_id(config, day),
        "datetime": arr.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cog": {"relpath": cog_relpath(config, day), "uri": st.uri(cog_relpath(config, day)), **_cog_info(cog)},
        "preview": {"relpath": preview_relpath(config, day), "uri": st.uri(preview_relpath(config, day))},
        "raster": {
            "width": config.grid.width,
            "height": config.grid.height,
            "transform": list(config.grid.transform),
            "crs": config.crs,
            "dtype": "float32",
            "nodata": config.nodata,
            "unit": config.units,
            "statistics": {k: v for k, v in stats.items() if k != "histogram"},
            "histogram": stats.get("histogram"),
        },
        "granule": {
            "concept_id": granule.concept_id,
            "granule_ur": granule.granule_ur,
            "name": name,
            "data_url": granule.data_url,
            "revision_id": granule.revision_id,
            "revision_date": granule.revision_date.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
            if granule.revision_date
            else None,
            "size_bytes": got.bytes,
            "sha256": got.sha256,
        },
    }
    st.write_json(sidecar_relpath(config, day), sidecar)
    return DayResult(day, True, sidecar=sidecar)


def _cog_info(cog) -> dict:
    info = asdict(cog) if hasattr(cog, "__dataclass_fields__") else dict(cog)
    keep = {}
    for key, value in info.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            keep[key] = value
    return keep


def preview_markdown(png: bytes, title: str) -> str:
    """Markdown that shows a PNG inline in the Dagster UI (a data URI; previews are a few kB)."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def result_dict(result: DayResult) -> dict:
    return asdict(result)


def process_day_remote(
    config: CollectionConfig,
    day: str,
    granule: Granule | None,
    storage_url: str,
    earthdata: dict,
    cog_options: dict | None = None,
) -> dict:
    """`process_day` for a Dask worker: builds its own downloader from `earthdata` kwargs, returns a plain dict."""
    from pipeline.lib.earthdata import EarthdataDownloader
    from pipeline.lib.urls import UrlPolicy

    kwargs = dict(earthdata)
    policy = UrlPolicy(allow_private=bool(kwargs.pop("allow_private_urls", False)))
    downloader = EarthdataDownloader(**kwargs, url_policy=policy)
    return result_dict(process_day(config, day, granule, storage_url, downloader, cog_options=cog_options))
