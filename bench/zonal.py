"""bench.zonal: hectares per loss-year class per polygon: geopump vs exactextract vs rasterstats vs a floor.

Run from the repository root:

    python bench/zonal.py              # 20000x20000 uint8 tile x 1,000 polygons, 1 run per method
    python bench/zonal.py --quick      # 4000x4000 tile x 100 polygons
    python bench/zonal.py --repeat 3   # median of 3 runs per method

Inputs are generated once from a seed and cached under ``$TMPDIR/geopump_bench_zonal/`` (the tile takes
~30 s to build at full size), so re-runs skip generation. Every method then runs in its own child process
(fresh interpreter) that reads the same tile and polygon files and writes, per polygon and loss-year
class, the pixel area (or pixel count for rasterstats). The parent measures each child's wall time, the
child reports its inner compute time and its own peak RSS (VmHWM), and the parent checks geopump against
exactextract and geopump 1 worker against geopump 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers when imported from elsewhere
import _common  # noqa: E402
from _common import machine_cpu_s, peak_rss_mb  # noqa: E402

PIXEL_DEG = 0.0005  # ~55 m: GFW tile 00N_060W (lon -60..-50, lat -10..0) at half resolution for 20000 px
N_YEARS = 24  # loss years 1..24 (2001..2024)
BLOCK = 512
KM_PER_DEG_LAT = 110.57
KM_PER_DEG_LON_EQ = 111.32
R_EXACTEXTRACT = 6_378_137.0  # exactextract's area_spherical_m2 sphere radius


# --------------------------------------------------------------------------------------------
# Input generation (parent process only; cached)
# --------------------------------------------------------------------------------------------


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def _octave(grid: np.ndarray, cell: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Smoothstep-bilinear interpolation of a coarse random grid (cell = `cell` pixels) at rows x cols."""
    y = rows / cell
    i0 = np.floor(y).astype(np.int64)
    t = _smoothstep(y - i0).astype(np.float32)
    x = cols / cell
    j0 = np.floor(x).astype(np.int64)
    u = _smoothstep(x - j0).astype(np.float32)
    base = int(i0.min())
    sub = grid[base : int(i0.max()) + 2]
    along = sub[:, j0] * (1 - u) + sub[:, j0 + 1] * u  # (coarse rows, len(cols))
    li = i0 - base
    return along[li] * (1 - t)[:, None] + along[li + 1] * t[:, None]


class LossField:
    """Seeded synthetic loss-year field: smooth multi-octave noise fronts, patch years, jitter, speckle."""

    def __init__(self, size: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.size = size
        self.seed = seed
        scale = size / 20000
        self.octaves = []
        # Five octaves, 2500 down to 8 pixels across at full size: large deforestation fronts down to plots.
        for cell in (2500, 800, 250, 60, 8):
            c = max(2.0, cell * scale)
            n = int(size / c) + 3
            amp = (c / (2500 * scale)) ** 0.35
            self.octaves.append((c, rng.standard_normal((n, n)).astype(np.float32), amp))
        # Patch-level loss year: one year per ~150 px patch, drifting with a smooth trend (fronts advance).
        self.patch = max(4.0, 150 * scale)
        n = int(size / self.patch) + 2
        trend = _octave(rng.standard_normal((8, 8)).astype(np.float32), n / 4, np.arange(n), np.arange(n))
        trend = (trend - trend.min()) / (np.ptp(trend) + 1e-9)
        years = np.clip(np.round(trend * (N_YEARS - 1) + 1 + rng.normal(0, 4, (n, n))), 1, N_YEARS)
        self.patch_years = years.astype(np.uint8)
        # Threshold for ~12% loss before speckle, from the field sampled on every 8th row and column.
        sample = self.field(np.arange(0, size, 8, dtype=np.float64), np.arange(0, size, 8, dtype=np.float64))
        self.threshold = float(np.quantile(sample, 0.88))

    def field(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.zeros((rows.size, cols.size), dtype=np.float32)
        for cell, grid, amp in self.octaves:
            out += amp * _octave(grid, cell, rows, cols)
        return out

    def strip(self, r0: int, r1: int) -> np.ndarray:
        """Loss-year values (0 = no loss, 1..24) of rows r0..r1-1 as uint8."""
        rng = np.random.default_rng([self.seed, r0])
        rows = np.arange(r0, r1, dtype=np.float64)
        cols = np.arange(self.size, dtype=np.float64)
        loss = self.field(rows, cols) > self.threshold
        yi = (rows / self.patch).astype(np.int64)
        xi = (cols / self.patch).astype(np.int64)
        years = self.patch_years[yi][:, xi].astype(np.int16)
        jitter = rng.random(loss.shape) < 0.25
        years[jitter] += rng.integers(-2, 3, int(jitter.sum())).astype(np.int16)
        out = np.where(loss, np.clip(years, 1, N_YEARS), 0).astype(np.uint8)
        salt = rng.random(loss.shape) < 0.01
        out[salt] = rng.integers(1, N_YEARS + 1, int(salt.sum())).astype(np.uint8)
        return out


def make_tile(path: Path, size: int, seed: int) -> None:
    """Write the synthetic loss-year tile (DEFLATE, 512x512 blocks), strip by strip."""
    import rasterio
    from rasterio.transform import from_bounds

    field = LossField(size, seed)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": from_bounds(*tile_bounds(size), size, size),
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "DEFLATE",
        "nodata": None,
    }
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, size, BLOCK):
            r1 = min(size, r0 + BLOCK)
            dst.write(field.strip(r0, r1), 1, window=((r0, r1), (0, size)))
    tmp.rename(path)


def _star(cx: float, cy: float, rx: float, ry: float, n_vertices: int, rng: np.random.Generator) -> np.ndarray:
    """A star-shaped ring (always simple): strictly increasing angles and positive radii."""
    # One vertex per equal sector: gaps stay below 2 sectors, so no edge passes behind the centre.
    angles = (np.arange(n_vertices) + rng.uniform(0, 1, n_vertices)) * (2 * np.pi / n_vertices)
    k = np.arange(1, 6)
    phases = rng.uniform(0, 2 * np.pi, k.size)
    amps = rng.uniform(0, 0.12, k.size)
    smooth = 1.0 + (amps[:, None] * np.sin(k[:, None] * angles[None, :] + phases[:, None])).sum(axis=0)
    r = np.clip(smooth, 0.45, None) * rng.uniform(0.9, 1.0, angles.size)
    return np.column_stack([cx + rx * r * np.cos(angles), cy + ry * r * np.sin(angles)])


def tile_bounds(size: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a `size`-pixel tile with its top-left corner at 0°N 60°W."""
    return -60.0, -size * PIXEL_DEG, -60.0 + size * PIXEL_DEG, 0.0


def make_polygons(n: int, rng: np.random.Generator, size: int):
    """`n` valid polygons over the tile: area log-uniform 0.5-15,000 km², 10-20,000 vertices, overlaps, holes."""
    import geopandas as gpd
    import shapely
    import shapely.affinity

    west, south, east, north = tile_bounds(size)
    geoms, centres = [], []
    for _ in range(n):
        area_km2 = float(np.exp(rng.uniform(np.log(0.5), np.log(15_000.0))))
        r_km = np.sqrt(area_km2 / np.pi)
        if centres and rng.random() < 0.15:
            # Deliberate overlap with an earlier feature (nested or partially overlapping areas).
            px, py, pr = centres[int(rng.integers(len(centres)))]
            cy = float(np.clip(py + rng.normal(0, pr), south + 0.05, north - 0.05))
            cx = float(np.clip(px + rng.normal(0, pr), west + 0.05, east - 0.05))
        else:
            cy = float(rng.uniform(south, north))
            cx = float(rng.uniform(west, east))
        ry = r_km / KM_PER_DEG_LAT
        rx = r_km / (KM_PER_DEG_LON_EQ * np.cos(np.radians(cy)))
        centres.append((cx, cy, ry))
        # Like performance.md §2: most outlines have 10-2,000 vertices, ~11% have 2,000-20,000.
        if rng.random() < 0.89:
            n_vertices = int(np.exp(rng.uniform(np.log(10), np.log(2_000))))
        else:
            n_vertices = int(rng.uniform(2_000, 20_000))
        kind = rng.random()
        if kind < 0.05:
            parts = []
            n_parts = int(rng.integers(2, 4))
            for p in range(n_parts):
                ring = _star(cx + p * 3.2 * rx, cy, 0.9 * rx, 0.9 * ry, max(10, n_vertices // n_parts), rng)
                parts.append(shapely.Polygon(ring))
            geom = shapely.MultiPolygon(parts)
        elif kind < 0.08:
            outer = _star(cx, cy, rx, ry, n_vertices, rng)
            inner = _star(cx, cy, 0.25 * rx, 0.25 * ry, max(10, n_vertices // 4), rng)
            geom = shapely.Polygon(outer, [inner[::-1]])
        else:
            geom = shapely.Polygon(_star(cx, cy, rx, ry, n_vertices, rng))
        # Rescale about the centre so the area is the drawn one (star noise and multiple parts change it).
        approx_km2 = geom.area * KM_PER_DEG_LAT * KM_PER_DEG_LON_EQ * np.cos(np.radians(cy))
        f = np.sqrt(area_km2 / approx_km2)
        geoms.append(shapely.affinity.scale(geom, f, f, origin=(cx, cy)))
    gdf = gpd.GeoDataFrame({"geostore__id": [f"g{i:05d}" for i in range(n)]}, geometry=geoms, crs="EPSG:4326")
    bad = ~gdf.geometry.is_valid
    if bad.any():
        raise RuntimeError(f"generator produced {int(bad.sum())} invalid polygons")
    return gdf


def cached_inputs(size: int, n_polygons: int, seed: int, cache: Path) -> tuple[Path, Path]:
    """Return (tile, polygons) paths, generating them into `cache` if missing."""
    cache.mkdir(parents=True, exist_ok=True)
    tile = cache / f"lossyear_{size}_s{seed}.tif"
    polys = cache / f"polygons_{n_polygons}_{size}_s{seed}.parquet"
    if not tile.exists():
        t0 = time.perf_counter()
        make_tile(tile, size, seed)
        print(f"generated {tile} in {time.perf_counter() - t0:.1f} s")
    if not polys.exists():
        make_polygons(n_polygons, np.random.default_rng([seed, n_polygons]), size).to_parquet(polys, index=False)
    return tile, polys


# --------------------------------------------------------------------------------------------
# Methods (each runs in its own child process: `--run-method NAME`)
# --------------------------------------------------------------------------------------------


def loss_year_code(arrays):
    """geopump key function of the benchmark: the loss-year value is the class (0 = no loss)."""
    return arrays["lossyear"]


def _frame(ids, classes, values, column: str):
    import pandas as pd

    return pd.DataFrame({"geostore__id": ids, "class": classes, column: values})


def run_geopump(tile: str, polygons: str, workers: int):
    """geopump `class_histograms`, in this process (1 worker) or on a Dask LocalCluster of processes."""
    import geopandas as gpd

    from pipeline.lib.zonal_engine import class_histograms

    t0 = time.perf_counter()
    features = gpd.read_parquet(polygons)
    read_s = time.perf_counter() - t0
    extra = {}
    client = cluster = None
    if workers > 1:
        import dask
        from distributed import Client, LocalCluster

        # Dask's statistical profiler samples every worker's stack every 10 ms; on 2 busy cores that costs
        # CPU the compute needs. Off unless --dask-profiler (a production cluster can turn it off too).
        from pipeline.lib.dask_settings import WORKER_CONFIG

        dask.config.set(WORKER_CONFIG)  # what geopump's DaskResource uses for its LocalCluster
        dask.config.set({"distributed.worker.profile.enabled": os.environ.get("ZONAL_BENCH_DASK_PROFILER") == "1"})
        t1 = time.perf_counter()
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=None
        )
        client = Client(cluster)
        extra["cluster_start_s"] = time.perf_counter() - t1
    # Warm up like a long-lived process / cluster would be: imports, allocator arenas, GDAL. On a small
    # *different* tile, so no block of the measured tile is cached. Done for 1 and 2 workers alike.
    t1 = time.perf_counter()
    warm_tile, warm_polys = cached_inputs(1000, 20, 1, Path(tile).parent)
    class_histograms(
        {"lossyear": [warm_tile]}, gpd.read_parquet(warm_polys), loss_year_code, N_YEARS + 1, client=client
    )
    extra["warm_up_s"] = time.perf_counter() - t1
    try:
        cpu0, own0 = machine_cpu_s(), own_cpu_s(client)
        t2 = time.perf_counter()
        out = class_histograms({"lossyear": [tile]}, features, loss_year_code, N_YEARS + 1, client=client)
        compute_s = time.perf_counter() - t2
        # CPU that other processes (not this one, not its workers) took from the machine meanwhile.
        others = (machine_cpu_s() - cpu0) - (own_cpu_s(client) - own0)
        extra["others_pct"] = max(0.0, 100.0 * others / (compute_s * (os.cpu_count() or 1)))
        if client is not None:
            extra["worker_rss_mb"] = sorted(client.run(peak_rss_mb).values())
    finally:
        if client is not None:
            # A worker heartbeat racing the shutdown logs a harmless CommClosedError traceback: silence it.
            client.run(lambda: __import__("logging").getLogger("distributed").setLevel("CRITICAL"))
            client.close()
            cluster.close()
    out = out.rename(columns={"area_ha": "value"})[["geostore__id", "class", "pixel_count", "value"]]
    return out, {"read_s": read_s, "compute_s": compute_s, **extra}


def run_exactextract(tile: str, polygons: str):
    """exactextract 0.3 feature-sequential: unique + frac + count, weighted by spherical cell area."""
    import geopandas as gpd
    import rasterio
    from exactextract import exact_extract

    t0 = time.perf_counter()
    features = gpd.read_parquet(polygons)
    read_s = time.perf_counter() - t0
    with rasterio.open(tile) as src:
        t1 = time.perf_counter()
        res = exact_extract(
            src,
            features,
            [
                "unique(coverage_weight=area_spherical_m2)",
                "frac(coverage_weight=area_spherical_m2)",
                "count(coverage_weight=area_spherical_m2)",
            ],
            include_cols=["geostore__id"],
            strategy="feature-sequential",
            output="pandas",
        )
        compute_s = time.perf_counter() - t1
    ids, classes, values = [], [], []
    for gid, uniq, frac, count in zip(res["geostore__id"], res["unique"], res["frac"], res["count"], strict=True):
        uniq = np.asarray(uniq, dtype=np.int64)
        ids.extend([gid] * uniq.size)
        classes.extend(uniq.tolist())
        values.extend((np.asarray(frac, dtype=np.float64) * float(count) / 1e4).tolist())  # m² -> ha
    return _frame(ids, classes, values, "value"), {"read_s": read_s, "compute_s": compute_s}


def run_rasterstats(tile: str, polygons: str):
    """rasterstats 0.21 `zonal_stats(categorical=True)` from the file: pixel counts per class (no areas)."""
    import geopandas as gpd
    from rasterstats import zonal_stats

    t0 = time.perf_counter()
    features = gpd.read_parquet(polygons)
    read_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    stats = zonal_stats(list(features.geometry), tile, categorical=True, nodata=255)
    compute_s = time.perf_counter() - t1
    ids, classes, values = [], [], []
    for gid, st in zip(features["geostore__id"], stats, strict=True):
        for k, v in sorted(st.items()):
            ids.append(gid)
            classes.append(int(k))
            values.append(float(v))
    return _frame(ids, classes, values, "value"), {"read_s": read_s, "compute_s": compute_s}


def run_floor(tile: str, polygons: str):
    """Floor: decode every 512x512 block once and bincount it (no polygons at all)."""
    import rasterio

    t0 = time.perf_counter()
    total = np.zeros(256, dtype=np.int64)
    with rasterio.open(tile) as src:
        for _, window in src.block_windows(1):
            total += np.bincount(src.read(1, window=window).reshape(-1), minlength=256)
    return None, {"read_s": 0.0, "compute_s": time.perf_counter() - t0}


def own_cpu_s(client=None) -> float:
    """CPU seconds used so far by this process plus, with a Dask client, its workers."""
    t = os.times()
    own = t.user + t.system
    if client is not None:
        own += sum(client.run(lambda: sum(os.times()[:2])).values())
    return own


def child_main(args: argparse.Namespace) -> int:
    """Run one method; write its result (Parquet) and inner timings + peak RSS (JSON)."""
    os.environ.setdefault("GDAL_NUM_THREADS", "1")
    m = args.run_method
    if m == "geopump1":
        out, timing = run_geopump(args.tile_file, args.polygons_file, 1)
    elif m == "geopump2":
        out, timing = run_geopump(args.tile_file, args.polygons_file, 2)
    elif m == "exactextract":
        out, timing = run_exactextract(args.tile_file, args.polygons_file)
    elif m == "rasterstats":
        out, timing = run_rasterstats(args.tile_file, args.polygons_file)
    elif m == "floor":
        out, timing = run_floor(args.tile_file, args.polygons_file)
    else:
        raise SystemExit(f"unknown method {m}")
    if out is not None:
        out.to_parquet(args.out_file, index=False)
    timing["rss_mb"] = peak_rss_mb()
    Path(args.out_file + ".json").write_text(json.dumps(timing))
    return 0


# --------------------------------------------------------------------------------------------
# Harness (parent process)
# --------------------------------------------------------------------------------------------

METHODS = ["geopump1", "geopump2", "exactextract", "rasterstats", "floor"]
LABELS = {
    "geopump1": "geopump class_histograms, 1 process",
    "geopump2": "geopump, Dask LocalCluster 2 workers",
    "exactextract": "exactextract unique+frac+count, area",
    "rasterstats": "rasterstats categorical (counts only)",
    "floor": "floor: stream 512² blocks + bincount",
}


def run_child(method: str, tile: Path, polygons: Path, out: Path) -> dict:
    """Run one method in a fresh interpreter; return wall time plus the child's own figures."""
    args = ["--run-method", method, "--tile-file", str(tile), "--polygons-file", str(polygons), "--out-file", str(out)]
    return _common.run_child(__file__, args, Path(str(out) + ".json"))


def sphere_to_ellipsoid(lat: np.ndarray) -> np.ndarray:
    """Ellipsoidal / spherical (R = 6,378,137 m) pixel-area ratio at latitude `lat` (degrees)."""
    from pipeline.lib.zonal_engine import cell_area_m2

    h = 1e-4
    sphere = np.radians(h) * R_EXACTEXTRACT**2 * (np.sin(np.radians(lat + h / 2)) - np.sin(np.radians(lat - h / 2)))
    return cell_area_m2(lat + h / 2, lat - h / 2, h) / sphere


def verify(outputs: dict[str, Path], tile: Path, polygons: Path) -> list[str]:
    """Check the methods against each other; return report lines (raise SystemExit on a hard failure)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    lines = []
    gp1 = pd.read_parquet(outputs["geopump1"])
    if "geopump2" in outputs:
        gp2 = pd.read_parquet(outputs["geopump2"])
        if not gp1.equals(gp2):
            raise SystemExit("MISMATCH: geopump with 2 Dask workers differs from the sequential run")
        lines.append(f"geopump 2 workers == 1 worker: identical ({len(gp1):,} rows, bit for bit)")
    feats = gpd.read_parquet(polygons)
    area_km2 = feats.set_index("geostore__id").to_crs("ESRI:54034").area / 1e6  # cylindrical equal-area
    if "exactextract" in outputs:
        ee = pd.read_parquet(outputs["exactextract"])
        # exactextract weighs cells on a sphere of R = 6,378,137 m; move its areas to the ellipsoid with the
        # pixel-area ratio at each polygon's centroid latitude (varies < 1e-4 across one polygon).
        b = feats.set_index("geostore__id").geometry.bounds
        lat = (b["miny"] + b["maxy"]) / 2
        ee["value"] *= sphere_to_ellipsoid(lat.reindex(ee["geostore__id"]).to_numpy())
        loss_gp = gp1[gp1["class"] > 0].groupby("geostore__id")["value"].sum()
        loss_ee = ee[ee["class"] > 0].groupby("geostore__id")["value"].sum()
        tot_gp = gp1.groupby("geostore__id")["value"].sum()
        tot_ee = ee.groupby("geostore__id")["value"].sum()
        big = area_km2.index[area_km2 > 100]
        dev_loss = ((loss_gp.reindex(big) - loss_ee.reindex(big)).abs() / loss_ee.reindex(big)).dropna()
        dev_tot = ((tot_gp.reindex(big) - tot_ee.reindex(big)).abs() / tot_ee.reindex(big)).dropna()
        small = area_km2.index[area_km2 <= 100]
        dev_small = ((loss_gp.reindex(small) - loss_ee.reindex(small)).abs() / loss_ee.reindex(small)).dropna()
        p95 = float(np.quantile(dev_loss, 0.95)) if len(dev_loss) else float("nan")
        lines.append(
            f"geopump vs exactextract (ellipsoid-rescaled), {len(dev_loss)} polygons > 100 km²: loss area "
            f"median {np.median(dev_loss):.2e}, p95 {p95:.2e}; total area median {np.median(dev_tot):.2e}; "
            f"polygons <= 100 km²: loss median {np.median(dev_small):.2e}"
        )
        if not p95 <= 0.005:
            raise SystemExit(f"ACCURACY: loss-area p95 deviation {p95:.4f} > 0.5% on polygons > 100 km²")
    if "rasterstats" in outputs:
        # Only polygons inside the tile: rasterstats' boundless read counts pixels beyond the tile as class 0.
        import rasterio

        with rasterio.open(tile) as src:
            inside = set(feats.loc[feats.within(shapely.box(*src.bounds)), "geostore__id"])
        rs = pd.read_parquet(outputs["rasterstats"])
        rs = rs[rs["geostore__id"].isin(inside)].set_index(["geostore__id", "class"])["value"]
        gpc = gp1[gp1["geostore__id"].isin(inside)].set_index(["geostore__id", "class"])["pixel_count"]
        both = pd.concat([gpc.astype(float), rs], axis=1, keys=["gp", "rs"]).fillna(0.0)
        same = both.groupby(level=0).apply(lambda d: bool((d["gp"] == d["rs"]).all()))
        lines.append(
            f"geopump vs rasterstats pixel counts, {len(inside)} polygons inside the tile: {int(same.sum())} "
            f"identical ({int(both['gp'].sum()):,} vs {int(both['rs'].sum()):,} pixels)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000, help="tile width = height in pixels")
    parser.add_argument("--polygons", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--quick", action="store_true", help="4000x4000 tile, 100 polygons")
    parser.add_argument("--repeat", type=int, default=1, help="runs per method (median reported)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "geopump_bench_zonal", help="input cache folder"
    )
    parser.add_argument(
        "--dask-profiler", action="store_true", help="keep Dask's worker profiler on (default: off for the run)"
    )
    parser.add_argument("--run-method", help=argparse.SUPPRESS)
    parser.add_argument("--tile-file", help=argparse.SUPPRESS)
    parser.add_argument("--polygons-file", help=argparse.SUPPRESS)
    parser.add_argument("--out-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_method:
        return child_main(args)
    if args.quick:
        args.size, args.polygons = 4000, 100
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown or "geopump1" not in methods:
        raise SystemExit(f"unknown methods {sorted(unknown)}; geopump1 is required" if unknown else "need geopump1")

    os.environ["ZONAL_BENCH_DASK_PROFILER"] = "1" if args.dask_profiler else "0"  # read by the geopump2 child
    tile, polys = cached_inputs(args.size, args.polygons, args.seed, args.cache)
    import geopandas as gpd
    import shapely

    feats = gpd.read_parquet(polys)
    kinds = feats.geom_type.value_counts().to_dict()
    n_vertices = int(shapely.get_num_coordinates(feats.geometry.values).sum())
    area_km2 = feats.to_crs("ESRI:54034").area / 1e6
    print(
        f"inputs: {args.size}x{args.size} uint8 loss-year tile ({tile.stat().st_size / 1e6:.1f} MB DEFLATE), "
        f"{len(feats):,} polygons ({kinds}, {n_vertices:,} vertices, area {area_km2.min():.2f}-"
        f"{area_km2.max():,.0f} km², median {area_km2.median():.0f}), seed {args.seed}"
    )
    del feats

    runs: dict[str, list[dict]] = {m: [] for m in methods}
    outputs: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="zonal_bench_") as tmp:
        for r in range(args.repeat):
            # Round-robin with a rotating first method: no method always runs after the same neighbour.
            for m in methods[r % len(methods) :] + methods[: r % len(methods)]:
                out = Path(tmp) / f"{m}.parquet"
                runs[m].append(run_child(m, tile, polys, out))
                if m != "floor":
                    outputs[m] = out
        checks = verify(outputs, tile, polys)

    med = {
        m: {k: statistics.median(run[k] for run in runs[m]) for k in ("wall_s", "compute_s", "rss_mb")} for m in runs
    }
    base = med.get("exactextract")
    print(f"\nmedian of {args.repeat} run(s); wall = whole child process incl. interpreter start-up and imports")
    header = (
        f"| {'method':<38} | {'wall s':>7} | {'inner s':>7} | {'peak RSS MB':>11} "
        f"| {'wall vs ee':>10} | {'inner vs ee':>11} | {'RSS vs ee':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for m in methods:
        s = med[m]
        ratios = (
            f"{s['wall_s'] / base['wall_s']:>9.2f}x | {s['compute_s'] / base['compute_s']:>10.2f}x | "
            f"{s['rss_mb'] / base['rss_mb']:>8.2f}x"
            if base
            else f"{'':>10} | {'':>11} | {'':>9}"
        )
        print(f"| {LABELS[m]:<38} | {s['wall_s']:>7.2f} | {s['compute_s']:>7.2f} | {s['rss_mb']:>11.0f} | {ratios} |")
    for m in ("geopump1", "geopump2"):
        if m in runs:
            each = ", ".join(f"{r['compute_s']:.2f} s ({r['others_pct']:.0f}%)" for r in runs[m])
            print(f"\n{m} inner per run (CPU share other processes took meanwhile): {each}", end="")
    print()
    if "geopump2" in runs:
        last = runs["geopump2"][-1]
        print(
            f"\ngeopump 2 workers: cluster start {last['cluster_start_s']:.2f} s + warm-up {last['warm_up_s']:.2f} s "
            f"(in wall, not in inner); peak RSS per worker process "
            f"{', '.join(f'{v:.0f}' for v in last['worker_rss_mb'])} MB (client process {last['rss_mb']:.0f} MB)"
        )
    for line in checks:
        print(line)
    g1 = med["geopump1"]
    if base:
        print(f"goal ZS-1 (1-core wall <= 0.25x exactextract): {g1['wall_s'] / base['wall_s']:.2f}x")
    if "floor" in med:
        print(f"goal ZS-2 (inner <= 4x streaming floor): {g1['compute_s'] / med['floor']['compute_s']:.2f}x")
    if "geopump2" in med:
        print(f"goal ZS-3 (>= 1.6x on 2 workers, inner): {g1['compute_s'] / med['geopump2']['compute_s']:.2f}x", end="")
        quiet = {m: [r["compute_s"] for r in runs[m] if r["others_pct"] < 10] for m in ("geopump1", "geopump2")}
        if quiet["geopump1"] and quiet["geopump2"]:
            ratio = statistics.median(quiet["geopump1"]) / statistics.median(quiet["geopump2"])
            print(f"; {ratio:.2f}x over the runs where other processes took < 10% of the CPU", end="")
        print()
    if base:
        worst = max([g1["rss_mb"]] + list(runs.get("geopump2", [{}])[-1].get("worker_rss_mb", [])))
        print(f"goal ZS-4 (peak RSS <= exactextract's): {worst / base['rss_mb']:.2f}x (largest geopump process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
