"""pipeline.lib.tile_products: turn downloaded source tiles into geopump's per-tile product COGs.

Each product is one 10x10° tile written as a Cloud Optimized GeoTIFF, window by window, so memory
never scales with the tile (a real GLAD-S2 tile is 100000² pixels):

- `tree_cover_loss`, `tree_cover_density_2000`: Hansen layers copied as uint8 (nodata 255).
- `glad_landsat_alerts`, `glad_s2_alerts`, `radd_alerts`: the source encodings turned into GFW
  `date_conf` (uint16, nodata 0) by `pipeline.lib.encodings`.
- `integrated_alerts`: the three alert products combined (earliest date; confidence 2/3/4) on the
  finest input grid, coarser inputs read with nearest-neighbour resampling.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import ExitStack

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from pipeline.lib import encodings as E
from pipeline.lib.cog import check_raster, write_cog_windowed

HANSEN_PRODUCTS = {"tree_cover_loss": "lossyear", "tree_cover_density_2000": "treecover2000"}
ALERT_PRODUCTS = ("glad_landsat_alerts", "glad_s2_alerts", "radd_alerts")
PRODUCTS = (*HANSEN_PRODUCTS, *ALERT_PRODUCTS, "integrated_alerts")

_YEAR_LAYER = re.compile(r"^alert(?P<kind>Date)?(?P<yy>\d{2})$")


class ProductError(ValueError):
    """The inputs of a product tile do not fit the product's rules."""


def output_format(product: str) -> tuple[str, int]:
    """(dtype, nodata) of a product's COG."""
    if product in HANSEN_PRODUCTS:
        return "uint8", 255
    if product in (*ALERT_PRODUCTS, "integrated_alerts"):
        return "uint16", 0
    raise ProductError(f"unknown product {product!r}; known: {', '.join(PRODUCTS)}")


def _glad_l_years(layers: dict[str, str]) -> dict[int, tuple[str, str]]:
    years: dict[int, dict[str, str]] = {}
    for name, path in layers.items():
        m = _YEAR_LAYER.match(name)
        if not m:
            raise ProductError(f"GLAD-L layer {name!r} is not alertYY or alertDateYY")
        years.setdefault(2000 + int(m["yy"]), {})["date" if m["kind"] else "alert"] = path
    out = {}
    for year, pair in sorted(years.items()):
        if set(pair) != {"alert", "date"}:
            raise ProductError(f"GLAD-L year {year} needs both alert{year % 100:02d} and alertDate{year % 100:02d}")
        out[year] = (pair["alert"], pair["date"])
    return out


def _pick(layers: dict[str, str], *, date: bool) -> str:
    """The S2 `alert` or `alertDate` layer, whatever exact key the release used."""
    hits = [p for k, p in layers.items() if ("date" in k.lower()) == date]
    if len(hits) != 1:
        raise ProductError(f"GLAD-S2 needs exactly one {'alertDate' if date else 'alert'} layer, got {sorted(layers)}")
    return hits[0]


def build_product_tile(
    product: str,
    tile_id: str,
    layers: dict[str, str],
    dest,
    relpath: str,
    *,
    block: int = 2048,
    tags: dict | None = None,
):
    """Write one product tile as a COG from local source files.

    Args:
        product: one of PRODUCTS.
        tile_id: GFW tile id (named in every error).
        layers: layer name -> local file path (for `integrated_alerts`: product name -> product COG).
        dest: a `Storage`; relpath: where the COG goes (written atomically).
        block: processing window size in pixels.

    Returns:
        The `CogInfo` of the written file.
    """
    dtype, nodata = output_format(product)
    if not layers:
        raise ProductError(f"tile {tile_id}: no input layers for {product}")
    for name, path in layers.items():
        check_raster(path, f"{tile_id} {name}")  # a truncated download fails here, naming the tile

    with ExitStack() as stack:
        opened = {name: stack.enter_context(rasterio.open(path)) for name, path in layers.items()}
        # The output grid is the finest input grid (integrated alerts mix 30 m GLAD-L with 10 m S2/RADD).
        ref = max(opened.values(), key=lambda d: d.width * d.height)
        for name, ds in opened.items():
            if ds.crs != ref.crs or not np.allclose(ds.bounds, ref.bounds, atol=1e-6):
                raise ProductError(
                    f"tile {tile_id}: layer {name} covers {tuple(round(b, 6) for b in ds.bounds)}, "
                    f"expected {tuple(round(b, 6) for b in ref.bounds)}"
                )

        def read(name: str, window: Window) -> np.ndarray:
            ds = opened[name]
            if (ds.width, ds.height) == (ref.width, ref.height):
                return ds.read(1, window=window)
            bounds = rasterio.windows.bounds(window, ref.transform)
            src_window = from_bounds(*bounds, transform=ds.transform)
            return ds.read(
                1, window=src_window, out_shape=(int(window.height), int(window.width)), resampling=Resampling.nearest
            )

        compute = _compute_fn(product, tile_id, opened, read)
        return write_cog_windowed(
            dest,
            relpath,
            width=ref.width,
            height=ref.height,
            transform=ref.transform,
            crs=ref.crs,
            dtype=dtype,
            nodata=nodata,
            compute_window=compute,
            block=block,
            tags=tags,
        )


def _compute_fn(product: str, tile_id: str, opened: dict, read) -> Callable[[Window], np.ndarray]:
    if product in HANSEN_PRODUCTS:
        (name,) = opened if len(opened) == 1 else (HANSEN_PRODUCTS[product],)
        if name not in opened:
            raise ProductError(f"tile {tile_id}: {product} needs layer {HANSEN_PRODUCTS[product]}")
        return lambda w: read(name, w).astype("uint8", copy=False)
    if product == "glad_landsat_alerts":
        years = _glad_l_years({k: k for k in opened})
        return lambda w: E.glad_l_date_conf({y: (read(a, w), read(d, w)) for y, (a, d) in years.items()})
    if product == "glad_s2_alerts":
        names = {k: k for k in opened}
        alert, date = _pick(names, date=False), _pick(names, date=True)
        return lambda w: E.glad_s2_date_conf(read(alert, w), read(date, w))
    if product == "radd_alerts":
        if len(opened) != 1:
            raise ProductError(f"tile {tile_id}: RADD has one layer per tile, got {sorted(opened)}")
        (name,) = opened
        return lambda w: E.radd_date_conf(read(name, w))
    if product == "integrated_alerts":
        unknown = set(opened) - set(ALERT_PRODUCTS)
        if unknown:
            raise ProductError(f"tile {tile_id}: integrated alerts combine {ALERT_PRODUCTS}, not {sorted(unknown)}")
        names = sorted(opened)
        return lambda w: E.integrated_date_conf(*(read(n, w) for n in names))
    raise ProductError(f"unknown product {product!r}")
