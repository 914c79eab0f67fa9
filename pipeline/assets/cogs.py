"""pipeline.assets.cogs: one daily-partitioned COG asset per configured gridded collection (NASA CMR granules)."""

# Each collection YAML in `pipeline/collections/` (or GEOPUMP_COLLECTIONS_DIR) becomes `cogs/<collection id>`.
# A run covers one day or a range (backfills run up to 31 days per run): the granules of the range are
# found with one CMR query, and the days are converted in parallel on the Dask resource. A bad granule
# fails only its own day: the good days of the range are recorded as materialised, the step then fails
# naming the bad days, and nothing is written for them (their previous outputs stay).

import dagster as dg

from pipeline import constants as C
from pipeline.lib.collections import CollectionConfig
from pipeline.resources import CmrResource, DaskResource, EarthdataResource, StorageResource

#: Days per run in a backfill: a month of granules is one CMR query and fills two Dask workers.
DAYS_PER_RUN = 31


def collection_partitions(config: CollectionConfig) -> dg.DailyPartitionsDefinition:
    """Daily partitions from the collection's first day up to today (UTC); today's granule may already exist."""
    return dg.DailyPartitionsDefinition(start_date=config.start_date.isoformat(), end_offset=1)


def cog_key(config: CollectionConfig) -> dg.AssetKey:
    return dg.AssetKey([C.COGS, config.id])


def _earthdata_kwargs(earthdata: EarthdataResource) -> dict:
    # Plain values so a Dask worker can build its own downloader (sessions do not travel well).
    return {
        "token": earthdata.token or None,
        "username": earthdata.username or None,
        "password": earthdata.password or None,
        "urs_host": earthdata.urs_host,
        "timeout": earthdata.timeout,
        "max_retries": earthdata.max_retries,
        "backoff": earthdata.backoff,
        "allow_private_urls": earthdata.allow_private_urls,
    }


def day_metadata(st, result: dict, *, with_preview: bool) -> dict:
    """The metadata of one materialised day: where the COG is, its statistics, source granule and preview."""
    from pipeline.lib.cogify import preview_markdown

    side = result["sidecar"]
    stats = side["raster"]["statistics"]
    meta = {
        "dagster/uri": dg.MetadataValue.path(side["cog"]["uri"]),
        "granule": side["granule"]["name"],
        "granule_concept_id": side["granule"]["concept_id"],
        "granule_revision": dg.MetadataValue.int(int(side["granule"]["revision_id"] or 0)),
        "cog_bytes": dg.MetadataValue.int(int(side["cog"].get("size_bytes") or 0)),
        "minimum": dg.MetadataValue.float(stats["minimum"]),
        "maximum": dg.MetadataValue.float(stats["maximum"]),
        "mean": dg.MetadataValue.float(stats["mean"]),
        "valid_percent": dg.MetadataValue.float(stats["valid_percent"]),
        "unit": side["raster"]["unit"],
    }
    if with_preview:
        png = st.read_bytes(side["preview"]["relpath"])
        meta["preview"] = dg.MetadataValue.md(preview_markdown(png, side["item_id"]))
    return meta


def cog_asset(config: CollectionConfig) -> dg.AssetsDefinition:
    key = cog_key(config)

    @dg.asset(
        key=key,
        group_name=C.COGS,
        partitions_def=collection_partitions(config),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
        kinds={"cog", "hdf5"},
        description=(
            f"{config.stac.title}: the daily granule of CMR collection {config.short_name} v{config.version} "
            f"(variable `{config.variable}`), downloaded with Earthdata Login, fill masked, scale/offset applied, "
            f"flipped north-up and written as a float32 Cloud Optimized GeoTIFF (GDAL COG driver, DEFLATE, "
            f"overviews), validated before it counts. Output `cogs/{config.id}/<year>/{config.id}_<day>.tif` with a "
            "PNG preview and a sidecar JSON the STAC asset reads. A bad granule fails only its own day."
        ),
        code_version="1",
    )
    def _asset(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        cmr: CmrResource,
        earthdata: EarthdataResource,
        dask: DaskResource,
    ):
        from pipeline.lib import cogify

        st = storage.storage()
        days = sorted(context.partition_keys)
        granules = cogify.newest_per_day(
            cmr.client().search_granules(
                config.short_name,
                config.version,
                temporal=cogify.day_window(days),
                include=config.include,
                page_size=cmr.page_size,
            ),
            days,
        )
        args = [(config, d, granules.get(d), st.url, _earthdata_kwargs(earthdata)) for d in days]
        if len(days) == 1:
            results = [cogify.process_day_remote(*args[0])]
        else:  # days in parallel on the Dask resource (local cluster by default)
            client = dask.client
            futures = [client.submit(cogify.process_day_remote, *a, pure=False) for a in args]
            results = client.gather(futures)
        good = [r for r in results if r["ok"]]
        bad = [r for r in results if not r["ok"]]
        for r in bad:
            context.log.error(r["error"])
        if len(days) == 1 and good:
            return dg.MaterializeResult(metadata=day_metadata(st, good[0], with_preview=True))
        if not bad:
            return dg.MaterializeResult(
                metadata={
                    "dagster/uri": dg.MetadataValue.path(st.uri(f"cogs/{config.id}")),
                    "days": dg.MetadataValue.int(len(good)),
                    "granules": dg.MetadataValue.json({r["day"]: r["sidecar"]["granule"]["name"] for r in good}),
                }
            )
        # Partial success in a range: record the good days, fail the step naming the bad ones.
        for r in good:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=key, partition=r["day"], metadata=day_metadata(st, r, with_preview=False)
                )
            )
        raise dg.Failure(
            description=f"{len(bad)} of {len(days)} day(s) failed: " + "; ".join(r["error"] for r in bad)[:4000],
            metadata={"failed_days": dg.MetadataValue.json([r["day"] for r in bad])},
        )

    return _asset
