"""bench.cog: raster -> Cloud Optimized GeoTIFF: geopump vs GDAL's COG driver vs rio-cogeo (issue 4).

Run from the repository root:

    python bench/cog.py                 # granule 720x1440 float32 x 5 reps + tile 20000x20000 uint8 x 1
    python bench/cog.py --quick         # tile 4000x4000, 2 reps of everything (< 30 s)
    python bench/cog.py --threads 2 --cases tile --tile-repeat 3

Two cases, each at NUM_THREADS=1 and =2 (two passes), same creation options for every contender
(DEFLATE, 512 blocks, overviews down to <= 512 px with NEAREST, BIGTIFF=IF_SAFER) and the same
GDAL_CACHEMAX (environment of every child):

- granule: an OMI-like 720x1440 float32 field (220-450, fill -1.2676506e+30 in orbit gaps, polar night
  and a few rectangles), already in memory, to a COG.
- tile: a 20000x20000 uint8 loss-year tile (bench/zonal.py's generator: mostly 0, patches of 1..24),
  stored as a DEFLATE 512-tiled GTiff built once before timing (cached), to a COG.

Every contender runs in its own child process (fresh interpreter): one untimed warm-up on a different
granule, then the timed repetitions. The child reports its inner times, its own peak RSS (VmHWM) and
the CPU share other processes took meanwhile; the parent measures the child's wall time, then checks
every output with rio-cogeo's ``cog_validate`` and compares its full-resolution pixels with the source
(and its overview pixels with the GDAL driver's). The harness exits non-zero on an invalid COG or a
pixel difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers when imported from elsewhere
from _common import CpuShare, own_cpu_s, peak_rss_mb, pytest_running, run_child  # noqa: E402

GRANULE_SHAPE = (720, 1440)  # 0.25° global grid, like OMI L3 daily (OMTO3e / OMDOAO3e)
GRANULE_FILL = float(np.float32(-1.2676506e30))  # HDF-EOS _FillValue of OMI products
BLOCK = 512
CONTENDERS = ["geopump", "gdal", "riocogeo"]
CASES = ["granule", "tile"]
LABELS = {
    ("granule", "geopump"): "geopump write_cog_from_array",
    ("granule", "gdal"): "GDAL COG driver (MEM dataset -> copy)",
    ("granule", "riocogeo"): "rio-cogeo (scratch GTiff -> translate)",
    ("tile", "geopump"): "geopump write_cog_windowed",
    ("tile", "gdal"): "GDAL COG driver (rasterio copy)",
    ("tile", "riocogeo"): "rio-cogeo cog_translate",
}


def peer_options(threads: int) -> dict:
    """The GDAL COG driver creation options every contender uses (geopump's defaults; checked in main)."""
    return {
        "COMPRESS": "DEFLATE",
        "BLOCKSIZE": BLOCK,
        "OVERVIEWS": "AUTO",
        "OVERVIEW_RESAMPLING": "NEAREST",
        "NUM_THREADS": threads,
        "BIGTIFF": "IF_SAFER",
    }


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def granule_transform():
    from rasterio.transform import from_origin

    return from_origin(-180.0, 90.0, 180.0 / GRANULE_SHAPE[0], 360.0 / GRANULE_SHAPE[1])


def make_granule(seed: int, shape: tuple[int, int] = GRANULE_SHAPE) -> np.ndarray:
    """A seeded OMI-like total-ozone grid (DU): smooth field 220-450 plus retrieval noise, fill in gaps."""
    rng = np.random.default_rng(seed)
    h, w = shape
    lat = 90.0 - (np.arange(h) + 0.5) * 180.0 / h
    lon = -180.0 + (np.arange(w) + 0.5) * 360.0 / w
    la, lo = np.radians(lat), np.radians(lon)
    # Latitudinal climatology: ~260 DU in the tropics, ~380 at high latitudes.
    field = np.repeat((260.0 + 120.0 * np.abs(np.sin(la)) ** 1.5)[:, None], w, axis=1)
    # Planetary and synoptic waves: 40 random plane waves, amplitude falling with the zonal wavenumber k;
    # sum_j amp_j cos(m_j lat + k_j lon + phases) as two (rows x 40) @ (40 x cols) products.
    n = 40
    k = rng.integers(1, 13, n)  # zonal wavenumber (periodic in longitude)
    m = rng.uniform(0.5, 10.0, n)  # meridional wavenumber
    amp = rng.uniform(2.0, 16.0, n) / k**0.7
    a = k[:, None] * lo[None, :] + rng.uniform(0, 2 * np.pi, n)[:, None]  # (n, cols)
    b = m[None, :] * la[:, None] + rng.uniform(0, 2 * np.pi, n)[None, :]  # (rows, n)
    field += (amp * np.cos(b)) @ np.cos(a) - (amp * np.sin(b)) @ np.sin(a)
    field += rng.normal(0.0, 1.5, (h, w))  # retrieval noise
    out = np.clip(field, 220.0, 450.0).astype(np.float32)
    # Fill: polar night beyond a wavy boundary, 14 slanted gaps between orbits, a few bad-pixel boxes.
    fill = lat[:, None] < -68.0 + 4.0 * np.cos(lo[None, :] + rng.uniform(0, 2 * np.pi))
    half = 5.0 * np.cos(la) ** 2 - 1.0  # gap half-width (degrees): ~4° at the equator, none poleward of 63°
    deg_per_px = 360.0 / w
    for orbit in range(14):
        centre = (orbit + rng.uniform(0.3, 0.7)) * 360.0 / 14 - 0.3 * lat  # degrees east of -180, slanted
        for r in np.flatnonzero(half > 0):
            c0 = int(np.floor((centre[r] - half[r]) / deg_per_px))
            c1 = int(np.ceil((centre[r] + half[r]) / deg_per_px))
            cols = np.arange(c0, c1) % w  # wraps around the antimeridian
            fill[r, cols] = True
    for _ in range(6):
        r0, c0 = int(rng.integers(0, h - 40)), int(rng.integers(0, w - 60))
        fill[r0 : r0 + int(rng.integers(5, 40)), c0 : c0 + int(rng.integers(10, 60))] = True
    out[fill] = GRANULE_FILL
    return out


def cached_tile(size: int, seed: int, cache: Path) -> Path:
    """The loss-year tile of bench/zonal.py (DEFLATE, 512² blocks), generated into `cache` if missing."""
    from zonal import make_tile

    cache.mkdir(parents=True, exist_ok=True)
    tile = cache / f"lossyear_{size}_s{seed}.tif"
    if not tile.exists():
        t0 = time.perf_counter()
        make_tile(tile, size, seed)
        print(f"generated {tile} in {time.perf_counter() - t0:.1f} s")
    return tile


# --------------------------------------------------------------------------------------------
# Contenders (each runs in its own child process: `--run CONTENDER`)
# --------------------------------------------------------------------------------------------


def granule_geopump(arr: np.ndarray, out: Path, threads: int) -> None:
    from pipeline.lib.cog import write_cog_from_array
    from pipeline.lib.storage import Storage

    info = write_cog_from_array(
        arr, granule_transform(), "EPSG:4326", GRANULE_FILL, Storage(str(out.parent)), out.name,
        options={"NUM_THREADS": threads},
    )  # fmt: skip
    assert info.uri == str(out), info.uri


def granule_profile(arr: np.ndarray, driver: str, **extra) -> dict:
    """rasterio profile of a one-band granule array on the 0.25° global grid."""
    return {
        "driver": driver,
        "width": arr.shape[1],
        "height": arr.shape[0],
        "count": 1,
        "dtype": arr.dtype,
        "crs": "EPSG:4326",
        "transform": granule_transform(),
        "nodata": GRANULE_FILL,
        **extra,
    }


def granule_gdal(arr: np.ndarray, out: Path, threads: int) -> None:
    """The array into a GDAL MEM dataset (one copy in RAM), then the COG driver from it."""
    import rasterio
    import rasterio.shutil

    with rasterio.open("", "w", **granule_profile(arr, "MEM")) as mem:
        mem.write(arr, 1)
        rasterio.shutil.copy(mem, str(out), driver="COG", **peer_options(threads))


def overview_count(width: int, height: int) -> int:
    """Overview levels of GDAL's COG driver with OVERVIEWS=AUTO: halve until both sides are <= BLOCKSIZE."""
    levels = 0
    while width > BLOCK or height > BLOCK:
        width, height, levels = max(1, width // 2), max(1, height // 2), levels + 1
    return levels


def _riocogeo(src, out: Path, threads: int) -> None:
    """What `rio cogeo create SRC OUT -p deflate --blocksize 512 --overview-resampling nearest
    --overview-level L --threads N` does (rio-cogeo's own writer, not --use-cog-driver). L is the COG
    driver's level count: rio-cogeo's default stops when the *shorter* side is <= 512, which would give the
    720x1440 granule one level fewer than the others and less work."""
    import rasterio
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    profile = cog_profiles.get("deflate")
    profile.update({"BIGTIFF": "IF_SAFER", "blockxsize": BLOCK, "blockysize": BLOCK})
    config = {"GDAL_NUM_THREADS": threads, "GDAL_TIFF_INTERNAL_MASK": True}
    with rasterio.open(src) as ds:
        levels = overview_count(ds.width, ds.height)
    cog_translate(
        str(src), str(out), profile, overview_level=levels, overview_resampling="nearest", config=config, quiet=True
    )


def granule_riocogeo(arr: np.ndarray, out: Path, threads: int) -> None:
    """rio-cogeo starts from a file: an uncompressed 512-tiled scratch GTiff, written inside the timing."""
    import rasterio

    scratch = out.with_suffix(".scratch.tif")
    profile = granule_profile(arr, "GTiff", tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    with rasterio.open(scratch, "w", **profile) as ds:
        ds.write(arr, 1)
    try:
        _riocogeo(scratch, out, threads)
    finally:
        scratch.unlink(missing_ok=True)


def tile_geopump(src: Path, out: Path, threads: int) -> None:
    """As `tile_products` does it: windows of 2048² read from the source, written by write_cog_windowed."""
    import rasterio

    from pipeline.lib.cog import write_cog_windowed
    from pipeline.lib.storage import Storage

    with rasterio.open(src) as ds:
        info = write_cog_windowed(
            Storage(str(out.parent)),
            out.name,
            width=ds.width,
            height=ds.height,
            transform=ds.transform,
            crs=ds.crs,
            dtype=ds.dtypes[0],
            nodata=ds.nodata,
            compute_window=lambda w: ds.read(1, window=w),
            options={"NUM_THREADS": threads},
        )
    assert info.uri == str(out), info.uri


def tile_gdal(src: Path, out: Path, threads: int) -> None:
    import rasterio.shutil

    rasterio.shutil.copy(str(src), str(out), driver="COG", **peer_options(threads))


def tile_riocogeo(src: Path, out: Path, threads: int) -> None:
    _riocogeo(src, out, threads)


JOBS = {
    ("granule", "geopump"): granule_geopump,
    ("granule", "gdal"): granule_gdal,
    ("granule", "riocogeo"): granule_riocogeo,
    ("tile", "geopump"): tile_geopump,
    ("tile", "gdal"): tile_gdal,
    ("tile", "riocogeo"): tile_riocogeo,
}


def child_main(args: argparse.Namespace) -> int:
    """Warm up once on a different granule, then time `--reps` runs; write inner times, RSS, CPU share."""
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = JOBS[(args.case, args.run)]
    JOBS[("granule", args.run)](make_granule(args.seed + 1), out_dir / "warm.tif", args.threads)
    (out_dir / "warm.tif").unlink()
    source = make_granule(args.seed) if args.case == "granule" else Path(args.src)
    out = out_dir / f"{args.case}.tif"
    inner, cpu = [], []
    with CpuShare() as share:
        for _ in range(args.reps):
            out.unlink(missing_ok=True)
            c0, t0 = own_cpu_s(), time.perf_counter()
            job(source, out, args.threads)
            inner.append(time.perf_counter() - t0)
            cpu.append(own_cpu_s() - c0)
    result = {
        "inner_s": inner,
        "cpu_s": cpu,
        "rss_mb": peak_rss_mb(),
        "others_pct": share.others_pct,
        "output": str(out),
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


def paired_main(args: argparse.Namespace) -> int:
    """geopump and the GDAL driver alternately in one process (first one swapped every pair): per-pair times.

    Separate children differ by up to ~25% on this VM for the same 0.1 s job (page-fault cost varies by process),
    so the pairs give the cleaner ratio; peak RSS means nothing here and is not reported."""
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = make_granule(args.seed) if args.case == "granule" else Path(args.src)
    for who in ("geopump", "gdal"):
        JOBS[("granule", who)](make_granule(args.seed + 1), out_dir / f"warm_{who}.tif", args.threads)
    pairs = []
    with CpuShare() as share:
        for i in range(args.reps):
            times = {}
            for who in ("geopump", "gdal") if i % 2 == 0 else ("gdal", "geopump"):
                out = out_dir / f"{who}.tif"
                out.unlink(missing_ok=True)
                t0 = time.perf_counter()
                JOBS[(args.case, who)](source, out, args.threads)
                times[who] = time.perf_counter() - t0
            pairs.append((times["geopump"], times["gdal"]))
    Path(args.result).write_text(json.dumps({"pairs": pairs, "others_pct": share.others_pct}))
    return 0


# --------------------------------------------------------------------------------------------
# Harness (parent process)
# --------------------------------------------------------------------------------------------


def pixel_digest(path, band_strips: int = 2048) -> tuple[dict, str]:
    """(grid and dtype, SHA-256 of the full-resolution pixels) of a raster, read in strips of 2048 rows."""
    import rasterio

    digest = hashlib.sha256()
    with rasterio.open(path) as ds:
        meta = {
            "shape": (ds.count, ds.height, ds.width),
            "dtype": ds.dtypes[0],
            "nodata": ds.nodata,
            "transform": tuple(ds.transform)[:6],
            "crs": ds.crs.to_epsg() if ds.crs else None,
        }
        for r0 in range(0, ds.height, band_strips):
            digest.update(ds.read(window=((r0, min(ds.height, r0 + band_strips)), (0, ds.width))).tobytes())
    return meta, digest.hexdigest()


def source_digest(case: str, seed: int, tile: Path | None) -> tuple[dict, str]:
    """What every output must hold: the granule array, or the tile file's pixels."""
    if case == "tile":
        return pixel_digest(tile)
    arr = make_granule(seed)
    meta = {
        "shape": (1, *arr.shape),
        "dtype": str(arr.dtype),
        "nodata": GRANULE_FILL,
        "transform": tuple(granule_transform())[:6],
        "crs": 4326,
    }
    return meta, hashlib.sha256(arr.tobytes()).hexdigest()


def check_output(path: Path, expected: tuple[dict, str]) -> dict:
    """Validate `path` as a COG, compare its grid and full-resolution pixels with the source, digest overviews."""
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    valid, errors, warnings = cog_validate(str(path), quiet=True)
    meta, digest = pixel_digest(path)
    ovr = hashlib.sha256()
    with rasterio.open(path) as ds:
        overviews = ds.overviews(1)
    for level in range(len(overviews)):
        with rasterio.open(path, overview_level=level) as ov:
            ovr.update(ov.read().tobytes())
    return {
        "valid": bool(valid),
        "errors": errors,
        "warnings": warnings,
        "pixels_identical": (meta, digest) == expected,
        "size_mb": path.stat().st_size / 1e6,
        "overviews": overviews,
        "overview_sha256": ovr.hexdigest(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tile-size", type=int, help="tile width = height in pixels (default 20000)")
    parser.add_argument("--repeat", type=int, help="granule: child processes per contender and pass (default 5)")
    parser.add_argument("--tile-repeat", type=int, help="tile: child processes per contender and pass (default 3)")
    parser.add_argument("--granule-runs", type=int, help="timed granule conversions per child (default 5)")
    parser.add_argument("--tile-runs", type=int, help="timed tile conversions per child (default 1)")
    parser.add_argument("--granule-pairs", type=int, help="geopump/GDAL pairs in one process (default 20, 0: skip)")
    parser.add_argument("--tile-pairs", type=int, help="tile pairs in one process (default 3, 0: skip)")
    parser.add_argument("--threads", default="1,2", help="NUM_THREADS passes, comma-separated")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="subset of " + ",".join(CONTENDERS))
    parser.add_argument("--cachemax", type=int, default=256, help="GDAL_CACHEMAX (MB) of every child")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--quick", action="store_true", help="4000x4000 tile, 1 child x 2 runs, 6/2 pairs")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "geopump_bench_cog", help="input cache folder"
    )
    parser.add_argument("--run", choices=[*CONTENDERS, "paired"], help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        args.threads = int(args.threads)
        return paired_main(args) if args.run == "paired" else child_main(args)
    names = ("tile_size", "repeat", "tile_repeat", "granule_runs", "tile_runs", "granule_pairs", "tile_pairs")
    defaults = (4000, 1, 1, 2, 2, 6, 2) if args.quick else (20_000, 5, 3, 5, 1, 20, 3)
    for name, default in zip(names, defaults, strict=True):
        if getattr(args, name) is None:  # explicit values win over --quick
            setattr(args, name, default)
    threads = [int(t) for t in args.threads.split(",") if t]
    cases = [c for c in args.cases.split(",") if c]
    contenders = [c for c in args.contenders.split(",") if c]
    if set(cases) - set(CASES) or set(contenders) - set(CONTENDERS) or "gdal" not in contenders:
        raise SystemExit(f"cases must be in {CASES}, contenders in {CONTENDERS} and include gdal")

    from pipeline.lib.cog import cog_options  # the bench must compare like with like

    for n in threads:
        if cog_options({"NUM_THREADS": n}) != {"driver": "COG", **peer_options(n)}:
            raise SystemExit(f"geopump's COG options {cog_options({'NUM_THREADS': n})} differ from the peers'")

    busy = pytest_running()
    if busy:
        print(f"WARNING: a test suite is running ({len(busy)} pytest process(es)); timings will be noisy")
    import rasterio
    import rio_cogeo

    tile = cached_tile(args.tile_size, args.seed, args.cache) if "tile" in cases else None
    print(
        f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__}), rio-cogeo {rio_cogeo.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; GDAL_CACHEMAX={args.cachemax} MB"
    )
    print(
        f"granule: {GRANULE_SHAPE[0]}x{GRANULE_SHAPE[1]} float32; {args.repeat} child(ren) per contender and pass, "
        f"{args.granule_runs} timed run(s) each; {args.granule_pairs} geopump/GDAL pairs"
    )
    if tile is not None:
        print(
            f"tile: {args.tile_size}x{args.tile_size} uint8, source {tile.stat().st_size / 1e6:.1f} MB DEFLATE; "
            f"{args.tile_repeat} child(ren) per contender and pass, {args.tile_runs} timed run(s) each; "
            f"{args.tile_pairs} geopump/GDAL pairs"
        )
    expected = {case: source_digest(case, args.seed, tile) for case in cases}

    rows: dict[tuple[str, int, str], list[dict]] = {}
    paired: dict[tuple[str, int], dict] = {}
    rotation = 0
    with tempfile.TemporaryDirectory(prefix="cog_bench_") as tmp:
        result = Path(tmp) / "result.json"
        for n in threads:
            # Every child gets the same cache size and the same thread count for GDAL's readers too.
            env = {"GDAL_CACHEMAX": str(args.cachemax), "GDAL_NUM_THREADS": str(n)}
            for case in cases:
                runs = args.granule_runs if case == "granule" else args.tile_runs
                for _ in range(args.repeat if case == "granule" else args.tile_repeat):
                    # Round-robin with a rotating first contender: none always runs first or after the same one.
                    k = rotation % len(contenders)
                    rotation += 1
                    for who in contenders[k:] + contenders[:k]:
                        out_dir = Path(tmp) / f"{case}_{n}_{who}"
                        child_args = ["--run", who, "--case", case, "--threads", str(n), "--reps", str(runs)]
                        child_args += ["--seed", str(args.seed), "--out-dir", str(out_dir), "--result", str(result)]
                        if tile is not None:
                            child_args += ["--src", str(tile)]
                        res = run_child(__file__, child_args, result, env=env)
                        res.update(check_output(Path(res["output"]), expected[case]))
                        rows.setdefault((case, n, who), []).append(res)
                        shutil.rmtree(out_dir, ignore_errors=True)
                n_pairs = args.granule_pairs if case == "granule" else args.tile_pairs
                if n_pairs and "geopump" in contenders:
                    out_dir = Path(tmp) / f"{case}_{n}_paired"
                    child_args = ["--run", "paired", "--case", case, "--threads", str(n), "--reps", str(n_pairs)]
                    child_args += ["--seed", str(args.seed), "--out-dir", str(out_dir), "--result", str(result)]
                    if tile is not None:
                        child_args += ["--src", str(tile)]
                    paired[(case, n)] = run_child(__file__, child_args, result, env=env)
                    shutil.rmtree(out_dir, ignore_errors=True)

    failures = [
        f"{case} x{n} {who}: valid COG {r['valid']} {r['errors']}, pixels identical {r['pixels_identical']}"
        for (case, n, who), runs in rows.items()
        for r in runs
        if not (r["valid"] and r["pixels_identical"])
    ]
    print_report(rows, cases, threads, contenders, paired)
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


def _summary(runs: list[dict]) -> dict:
    """Median over the children of each child's median (times) or value (RSS, wall)."""
    return {
        "inner": statistics.median(statistics.median(r["inner_s"]) for r in runs),
        "cpu": statistics.median(statistics.median(r["cpu_s"]) for r in runs),
        "wall": statistics.median(r["wall_s"] for r in runs),
        "rss": statistics.median(r["rss_mb"] for r in runs),
        "size": statistics.median(r["size_mb"] for r in runs),
        "others": max(r["others_pct"] for r in runs),
    }


def print_report(rows: dict, cases: list[str], threads: list[int], contenders: list[str], paired: dict) -> None:
    med = {k: _summary(v) for k, v in rows.items()}
    print(
        "\ninner = wall time of one conversion inside a warm child (array or source file in, finished COG out); "
        "cpu = CPU time of\nthe child during one conversion (all threads); both the median over the children of "
        "each child's median.\nwall = one whole child (start-up, imports, warm-up, all its runs); peak RSS = the "
        "child's VmHWM; others = most CPU\nother processes took from the machine during a child's timed runs"
    )
    header = (
        f"| {'case':<7} | {'thr':>3} | {'contender':<38} | {'inner s':>7} | {'vs GDAL':>7} | {'cpu s':>6} "
        f"| {'vs GDAL':>7} | {'wall s':>6} | {'peak RSS MB':>11} | {'vs GDAL':>7} | {'COG MB':>6} | {'others':>6} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for case in cases:
        for n in threads:
            b = med[(case, n, "gdal")]
            for who in contenders:
                m = med[(case, n, who)]
                print(
                    f"| {case:<7} | {n:>3} | {LABELS[(case, who)]:<38} | {m['inner']:>7.3f} "
                    f"| {m['inner'] / b['inner']:>6.2f}x | {m['cpu']:>6.3f} | {m['cpu'] / b['cpu']:>6.2f}x "
                    f"| {m['wall']:>6.2f} | {m['rss']:>11.0f} | {m['rss'] / b['rss']:>6.2f}x | {m['size']:>6.2f} "
                    f"| {m['others']:>5.0f}% |"
                )
    print()
    for case in cases:
        for n in threads:
            ref = rows[(case, n, "gdal")][0]
            for who in contenders:
                runs = rows[(case, n, who)]
                each = ", ".join(f"{statistics.median(r['inner_s']):.3f}" for r in runs)
                valid = all(r["valid"] for r in runs)
                same = all(r["pixels_identical"] for r in runs)
                levels = {tuple(r["overviews"]) for r in runs}
                ovr_same = all(r["overview_sha256"] == ref["overview_sha256"] for r in runs)
                warnings = sorted({w for r in runs for w in r["warnings"]})
                print(
                    f"{case} x{n} {who}: inner per child {each} s; valid COG: {valid}; full-res pixels identical to "
                    f"the source: {same}; overviews {', '.join(str(list(x)) for x in levels)}"
                    f"{', pixels identical to GDAL' if ovr_same else ', pixels DIFFER from GDAL'}"
                    f"{'; validator warnings: ' + '; '.join(warnings) if warnings else ''}"
                )
    for (case, n), p in paired.items():
        ratio = statistics.median(g / d for g, d in p["pairs"])
        each = ", ".join(f"{g / d:.2f}" for g, d in p["pairs"])
        g_med, d_med = (statistics.median(t[i] for t in p["pairs"]) for i in (0, 1))
        print(
            f"{case} x{n} paired in one process ({len(p['pairs'])} pairs, others {p['others_pct']:.0f}%): geopump "
            f"{g_med:.3f} s, GDAL {d_med:.3f} s, median ratio {ratio:.2f}x (pairs: {each})"
        )
    if "geopump" in contenders:
        ratios = ", ".join(
            f"{case} x{n} {med[(case, n, 'geopump')]['inner'] / med[(case, n, 'gdal')]['inner']:.2f}x "
            f"(cpu {med[(case, n, 'geopump')]['cpu'] / med[(case, n, 'gdal')]['cpu']:.2f}x)"
            for case in cases
            for n in threads
        )
        print(f"goal COG-1 (geopump inner <= 1.1x GDAL COG driver, same options and threads): {ratios}")


if __name__ == "__main__":
    sys.exit(main())
