"""pipeline.assets.stac: publish each collection's COGs as STAC items to the static catalog and a STAC API."""

# One asset per collection, partitioned like its COG asset. An item is built only from a day's sidecar,
# which the COG asset writes after the COG validated, so an item never points at an invalid COG. The
# item id is fixed per day: publishing a day again replaces its item (static catalog file; STAC API
# POST then PUT on 409), never duplicates it. The static collection file is rebuilt from the item
# files after every run, under a concurrency pool with one slot, so parallel runs cannot interleave.

import dagster as dg

from pipeline import constants as C
from pipeline.assets.cogs import DAYS_PER_RUN, cog_key, collection_partitions
from pipeline.lib.collections import CollectionConfig
from pipeline.resources import CmrResource, StacApiResource, StorageResource


def stac_key(config: CollectionConfig) -> dg.AssetKey:
    return dg.AssetKey([C.STAC, config.id])


def item_for_day(config: CollectionConfig, sidecar: dict, cmr_base: str) -> dict:
    """The STAC item of a day from its sidecar (validated against the STAC schemas by `build_item`)."""
    from datetime import datetime

    from pipeline.lib.stac import build_item

    raster = sidecar["raster"]
    return build_item(
        item_id=sidecar["item_id"],
        collection_id=config.id,
        datetime=datetime.fromisoformat(sidecar["datetime"].replace("Z", "+00:00")),
        cog_href=sidecar["cog"]["uri"],
        cog_info={
            "width": raster["width"],
            "height": raster["height"],
            "transform": raster["transform"],
            "crs": raster["crs"],
            "dtype": raster["dtype"],
            "nodata": raster["nodata"],
            "statistics": raster["statistics"],
            "unit": raster["unit"],
            "histogram": raster.get("histogram"),
        },
        source=sidecar["granule"],
        preview_href=sidecar["preview"]["uri"],
        cmr_base=cmr_base,
    )


def stac_asset(config: CollectionConfig) -> dg.AssetsDefinition:
    @dg.asset(
        key=stac_key(config),
        group_name=C.STAC,
        partitions_def=collection_partitions(config),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
        deps=[cog_key(config)],
        pool=C.POOL_STAC,
        kinds={"stac"},
        description=(
            f"STAC items (projection + raster extensions, statistics, nodata, unit; COG asset "
            f"`cog_default`, PNG thumbnail, links to the source granule) for `{cog_key(config).to_user_string()}`, "
            f"written to the static catalog `stac/{config.id}/` and, when STAC_API_URL is set, to the STAC API "
            "(Transactions: POST, PUT on 409). Re-publishing a day replaces its item."
        ),
        code_version="1",
    )
    def _asset(
        context: dg.AssetExecutionContext, storage: StorageResource, stac_api: StacApiResource, cmr: CmrResource
    ):
        from pipeline.lib.cogify import sidecar_relpath
        from pipeline.lib.stac import StaticCatalog, validate_stac

        st = storage.storage()
        days = sorted(context.partition_keys)
        missing = [d for d in days if not st.exists(sidecar_relpath(config, d))]
        if missing:
            raise dg.Failure(
                description=f"{config.id}: no valid COG for day(s) {missing[:20]}; nothing was published for them. "
                f"Materialise {cog_key(config).to_user_string()} for these days first."
            )
        collection = config.stac_collection()
        validate_stac(collection)
        catalog = StaticCatalog(st)
        catalog.write_collection(collection)
        api = stac_api.client() if stac_api.enabled else None
        if api is not None:
            api.ensure_collection(collection)
        outcomes: dict[str, str] = {}
        for day in days:
            item = item_for_day(config, st.read_json(sidecar_relpath(config, day)), cmr.base_url)
            catalog.upsert_item(item)
            outcomes[day] = api.upsert_item(item) if api is not None else "static only"
        collection_rel = catalog.rebuild(config.id)
        first = catalog.item_relpath(config.id, f"{config.id}_{days[0]}")
        return dg.MaterializeResult(
            metadata={
                "dagster/uri": dg.MetadataValue.path(st.uri(first if len(days) == 1 else collection_rel)),
                "items": dg.MetadataValue.int(len(days)),
                "stac_api": dg.MetadataValue.json(outcomes if len(outcomes) <= 31 else {"items": len(outcomes)}),
                "collection": dg.MetadataValue.path(st.uri(collection_rel)),
            }
        )

    return _asset
