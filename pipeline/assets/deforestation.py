"""pipeline.assets.deforestation: Hansen tree cover and GLAD-L / GLAD-S2 / RADD / integrated alert tiles as COGs.

Every product has two assets:

- a tile asset (static partitions, one per 10x10° tile) that downloads the source layers of the
  newest complete release and writes `<group>/<product>/<version>/<tile>.tif` (a COG made with
  GDAL's COG driver; versioned paths, so a new release never overwrites the one in use);
- a release asset that publishes a version (`<group>/<product>/LATEST.json`) only when every tile
  of the release is stored (blocking check), then prunes old versions.
"""

import hashlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import dagster as dg

from pipeline import constants as C
from pipeline.lib import releases as R
from pipeline.lib.tile_products import ALERT_PRODUCTS, HANSEN_PRODUCTS, build_product_tile
from pipeline.partitions import tile_partitions
from pipeline.resources import StorageResource, TileSourcesResource

GROUP = {
    **{p: C.FOREST for p in HANSEN_PRODUCTS},
    **{p: C.DEFORESTATION for p in (*ALERT_PRODUCTS, "integrated_alerts")},
}
RELEASE_TAG = "geopump/release"

DESCRIPTIONS = {
    "tree_cover_loss": "Hansen/UMD Global Forest Change `lossyear` (0 no loss, n = loss in 2000+n)",
    "tree_cover_density_2000": "Hansen/UMD tree canopy cover in 2000 (`treecover2000`, percent 0-100)",
    "glad_landsat_alerts": "UMD GLAD-L Landsat deforestation alerts as GFW date_conf (30 m, daily C2 releases)",
    "glad_s2_alerts": "UMD GLAD-S2 Sentinel-2 deforestation alerts as GFW date_conf (10 m)",
    "radd_alerts": "WUR RADD Sentinel-1 radar deforestation alerts as GFW date_conf (10 m)",
    "integrated_alerts": (
        "GFW integrated deforestation alerts: GLAD-L, GLAD-S2 and RADD combined (earliest date; confidence 2 low, "
        "3 high, 4 highest when two or more systems agree)"
    ),
}


def product_key(product: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP[product], product])


def release_key(product: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP[product], f"{product}_release"])


def product_prefix(product: str) -> str:
    return f"{GROUP[product]}/{product}"


def tile_path(product: str, version: str, tile: str) -> str:
    return f"{product_prefix(product)}/{version}/{tile}.tif"


def pointer_path(product: str) -> str:
    return f"{product_prefix(product)}/LATEST.json"


def published(storage, product: str) -> dict | None:
    """The published version of a product: {"version", "tiles"} or None."""
    return storage.read_json(pointer_path(product), default=None)


def stored_tiles(storage, product: str, version: str) -> list[str]:
    prefix = f"{product_prefix(product)}/{version}"
    return sorted(p.rsplit("/", 1)[-1][:-4] for p in storage.list(prefix) if p.endswith(".tif"))


def discover_release(product: str, sources: TileSourcesResource) -> R.Release:
    """The newest complete release of a product's source (raises when none is complete)."""
    client = sources.client()
    n = sources.counts()
    if product in HANSEN_PRODUCTS:
        return R.latest_hansen(client, bucket=sources.hansen_bucket, expected=n["hansen"])
    if product == "glad_landsat_alerts":
        return R.latest_glad_l(client, sources.today_utc(), bucket=sources.hansen_bucket, expected=n["glad_l"])
    if product == "glad_s2_alerts":
        return R.latest_glad_s2(client, bucket=sources.hansen_bucket, expected=n["glad_s2"])
    if product == "radd_alerts":
        return R.latest_radd(client, bucket=sources.radd_bucket, expected=n["radd"])
    raise ValueError(f"{product} has no upstream release")


def release_manifest(storage, product: str, sources: TileSourcesResource, version: str | None) -> dict:
    """The release a run works on, cached in storage so every tile run of a version agrees on it."""
    if version:
        cached = storage.read_json(f"{product_prefix(product)}/{version}/release.json", default=None)
        if cached:
            return cached
    rel = discover_release(product, sources)
    manifest = {"version": rel.version, "bucket": rel.bucket, "tiles": rel.tiles, "sizes": dict(rel.sizes or {})}
    storage.write_json(f"{product_prefix(product)}/{rel.version}/release.json", manifest)
    return manifest


def integrated_inputs(storage) -> dict:
    """Published alert versions and a version name for the integrated product derived from them."""
    inputs = {p: published(storage, p) for p in ALERT_PRODUCTS}
    inputs = {p: v for p, v in inputs.items() if v}
    if not inputs:
        raise ValueError("integrated alerts need at least one published alert product (GLAD-L, GLAD-S2 or RADD)")
    newest = max(v["version"] for v in inputs.values())
    digest = hashlib.sha1(json.dumps({p: v["version"] for p, v in sorted(inputs.items())}).encode()).hexdigest()[:8]
    return {
        "version": f"{newest}-{digest}",
        "inputs": {p: v["version"] for p, v in inputs.items()},
        "tiles": sorted({t for v in inputs.values() for t in v["tiles"]}),
    }


def build_tile_asset(product: str) -> dg.AssetsDefinition:
    deps = [release_key(p) for p in ALERT_PRODUCTS] if product == "integrated_alerts" else []

    @dg.asset(
        key=product_key(product),
        group_name=GROUP[product],
        partitions_def=tile_partitions,
        deps=deps,
        pool=f"tiles_{product}",
        kinds={"cog", "raster"},
        description=(
            f"{DESCRIPTIONS[product]}, one Cloud Optimized GeoTIFF per 10x10° tile (partition = GFW tile id, "
            f"top-left corner). Written to a versioned path; published by `{release_key(product).to_user_string()}` "
            "only once every tile of the release is stored."
        ),
        code_version="1",
    )
    def _tile(context: dg.AssetExecutionContext, storage: StorageResource, sources: TileSourcesResource):
        st = storage.storage()
        if product == "integrated_alerts":
            info = integrated_inputs(st)
            version = info["version"]
        else:
            manifest = release_manifest(st, product, sources, context.run.tags.get(RELEASE_TAG))
            version = manifest["version"]
        metas = {}
        for tile in context.partition_keys:
            with tempfile.TemporaryDirectory(prefix="geopump-tile-") as tmp:
                if product == "integrated_alerts":
                    layers = {}
                    for p, v in info["inputs"].items():
                        rel = tile_path(p, v, tile)
                        if st.exists(rel):
                            local = Path(tmp) / f"{p}.tif"
                            local.write_bytes(st.read_bytes(rel))
                            layers[p] = str(local)
                    if not layers:
                        raise ValueError(f"tile {tile} is in no published alert product ({info['inputs']})")
                else:
                    if tile not in manifest["tiles"]:
                        raise ValueError(f"tile {tile} is not part of {product} release {version}")
                    client = sources.client()
                    layers = {}
                    for layer, name in sorted(manifest["tiles"][tile].items()):
                        local = Path(tmp) / f"{layer}.tif"
                        # The listing's byte count is checked, so a truncated download never becomes a tile.
                        client.download(manifest["bucket"], name, str(local), expected_size=manifest["sizes"].get(name))
                        layers[layer] = str(local)
                cog = build_product_tile(
                    product,
                    tile,
                    layers,
                    st,
                    tile_path(product, version, tile),
                    tags={"geopump_product": product, "geopump_version": version, "geopump_tile": tile},
                )
            metas[tile] = asdict(cog)
            context.log.info(f"{product} {version} {tile}: {cog.size_bytes} bytes, COG valid={cog.valid}")
        first = next(iter(metas.values()))
        return dg.MaterializeResult(
            metadata={
                "dagster/uri": dg.MetadataValue.path(
                    first["uri"] if len(metas) == 1 else first["uri"].rsplit("/", 1)[0]
                ),
                "dagster/row_count": dg.MetadataValue.int(sum(m["width"] * m["height"] for m in metas.values())),
                "version": version,
                "cog_valid": all(m["valid"] for m in metas.values()),
                "size_bytes": sum(m["size_bytes"] for m in metas.values()),
                "tiles": dg.MetadataValue.json(
                    {t: {k: m[k] for k in ("width", "height", "sha256")} for t, m in metas.items()}
                ),
            },
            tags={RELEASE_TAG: version},
        )

    return _tile


def build_release_asset(product: str) -> dg.AssetsDefinition:
    key = release_key(product)

    @dg.asset(
        key=key,
        group_name=GROUP[product],
        deps=[product_key(product)],
        kinds={"cog"},
        description=(
            f"Publishes the newest complete {product} release: when every tile of the version is stored, points "
            f"`{pointer_path(product)}` at it (downstream statistics read only published versions) and prunes "
            "versions beyond the configured number. An incomplete release is never published: the blocking check "
            "fails and nothing downstream runs."
        ),
        check_specs=[dg.AssetCheckSpec("all_release_tiles_stored", asset=key, blocking=True)],
        code_version="1",
    )
    def _release(context: dg.AssetExecutionContext, storage: StorageResource, sources: TileSourcesResource):
        st = storage.storage()
        if product == "integrated_alerts":
            info = integrated_inputs(st)
            version, expected = info["version"], info["tiles"]
        else:
            manifest = release_manifest(st, product, sources, context.run.tags.get(RELEASE_TAG))
            version, expected = manifest["version"], sorted(manifest["tiles"])
        have = stored_tiles(st, product, version)
        missing = sorted(set(expected) - set(have))
        complete = not missing
        pruned = []
        if complete:
            st.write_json(pointer_path(product), {"version": version, "tiles": expected})
            pruned = prune_versions(st, product, keep=sources.keep_versions, current=version)
        else:
            context.log.warning(f"{product} {version}: {len(missing)} of {len(expected)} tiles missing; not published")
        return dg.MaterializeResult(
            metadata={
                "dagster/uri": dg.MetadataValue.path(st.uri(pointer_path(product))),
                "dagster/row_count": dg.MetadataValue.int(len(have)),
                "version": version,
                "published": complete,
                "pruned_versions": dg.MetadataValue.json(pruned),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="all_release_tiles_stored",
                    passed=complete,
                    metadata={
                        "expected": len(expected),
                        "stored": len(have),
                        "missing": dg.MetadataValue.json(missing[:50]),
                    },
                )
            ],
        )

    return _release


def prune_versions(storage, product: str, keep: int, current: str) -> list[str]:
    """Delete stored versions beyond the newest `keep` (never the current one); returns what was deleted."""
    versions = sorted({p.split("/")[2] for p in storage.list(product_prefix(product)) if p.count("/") >= 3})
    old = [v for v in versions if v != current][: max(0, len(versions) - max(keep, 1))]
    for v in old:
        for rel in storage.list(f"{product_prefix(product)}/{v}"):
            storage.delete(rel)
    return old


PRODUCTS = (*HANSEN_PRODUCTS, *ALERT_PRODUCTS, "integrated_alerts")
TILE_ASSETS = {p: build_tile_asset(p) for p in PRODUCTS}
RELEASE_ASSETS = {p: build_release_asset(p) for p in PRODUCTS}
ASSETS = [*TILE_ASSETS.values(), *RELEASE_ASSETS.values()]
