"""bench.fire_counting: fire alerts per polygon per day, geopump vs geopandas.sjoin vs DuckDB spatial.

Run from the repository root:

    python bench/fire_counting.py            # 1,000,000 points x 1,000 polygons, 5 runs per method
    python bench/fire_counting.py --quick    # 100,000 points x 100 polygons, 1 run per method

Inputs are generated once (seeded) and written to Parquet in a temporary folder. Every method then
runs in its own child process that reads the same files, computes counts per
(geostore__id, alert__date, confidence__cat), and writes them back; the parent measures the
child's wall time, the child reports its own peak RSS (VmHWM, so each figure belongs to one
method only) and checks that all methods produced identical counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers when imported from elsewhere
import _common  # noqa: E402
from _common import peak_rss_mb  # noqa: E402

REGION = (-80.0, -20.0, -40.0, 5.0)  # lon_min, lat_min, lon_max, lat_max
FIRST_DAY = np.datetime64("2026-11-14")
N_DAYS = 10
KM_PER_DEG = 111.32
KEYS = ["geostore__id", "alert__date", "confidence__cat"]


# --------------------------------------------------------------------------------------------
# Input generation (parent process only)
# --------------------------------------------------------------------------------------------


def make_points(n: int, rng: np.random.Generator):
    """Return a pandas DataFrame of `n` fire alerts: 70% in clusters, 30% uniform background."""
    import pandas as pd

    lon_min, lat_min, lon_max, lat_max = REGION
    n_clusters = max(1, n // 500)
    centres_x = rng.uniform(lon_min, lon_max, n_clusters)
    centres_y = rng.uniform(lat_min, lat_max, n_clusters)
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(0.25), n_clusters))
    # Heavy-tailed cluster sizes: a few big fire fronts, many small ones.
    weights = rng.pareto(1.2, n_clusters) + 1.0
    weights /= weights.sum()
    n_clustered = int(n * 0.7)
    which = rng.choice(n_clusters, size=n_clustered, p=weights)
    x = np.concatenate(
        [
            centres_x[which] + rng.normal(0, 1, n_clustered) * sigma[which],
            rng.uniform(lon_min, lon_max, n - n_clustered),
        ]
    )
    y = np.concatenate(
        [
            centres_y[which] + rng.normal(0, 1, n_clustered) * sigma[which],
            rng.uniform(lat_min, lat_max, n - n_clustered),
        ]
    )
    x = np.clip(x, lon_min, lon_max)
    y = np.clip(y, lat_min, lat_max)
    order = rng.permutation(n)  # files are not spatially sorted in real life
    days = FIRST_DAY + rng.integers(0, N_DAYS, n).astype("timedelta64[D]")
    conf = rng.choice(np.array(["l", "n", "h"]), size=n, p=[0.2, 0.6, 0.2])
    return pd.DataFrame(
        {
            "longitude": x[order],
            "latitude": y[order],
            "acq_date": np.datetime_as_string(days, unit="D"),
            "confidence__cat": conf,
        }
    )


def _star(cx: float, cy: float, radius: float, n_vertices: int, rng: np.random.Generator) -> np.ndarray:
    """A star-shaped ring: strictly increasing angles and positive radii, so it is always simple."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    angles = np.unique(angles)
    # Smooth (low-frequency) plus rough (per-vertex) radius noise: jagged like admin boundaries.
    k = np.arange(1, 6)
    phases = rng.uniform(0, 2 * np.pi, k.size)
    amps = rng.uniform(0, 0.12, k.size)
    smooth = 1.0 + (amps[:, None] * np.sin(k[:, None] * angles[None, :] + phases[:, None])).sum(axis=0)
    rough = rng.uniform(0.9, 1.0, angles.size)
    r = radius * np.clip(smooth, 0.45, None) * rough
    return np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)])


def make_polygons(n: int, rng: np.random.Generator):
    """Return a GeoDataFrame of `n` polygons in EPSG:4326 with varied sizes, overlaps, holes and multiparts."""
    import geopandas as gpd
    import shapely

    lon_min, lat_min, lon_max, lat_max = REGION
    geoms = []
    centres: list[tuple[float, float]] = []
    for _ in range(n):
        area_km2 = float(np.exp(rng.uniform(np.log(1.0), np.log(40_000.0))))
        radius = np.sqrt(area_km2 / np.pi) / KM_PER_DEG
        if centres and rng.random() < 0.15:
            # Deliberate overlap with an earlier area (nested or partially overlapping features).
            px, py = centres[rng.integers(len(centres))]
            cx, cy = px + rng.normal(0, radius), py + rng.normal(0, radius)
        else:
            cx, cy = rng.uniform(lon_min + 1, lon_max - 1), rng.uniform(lat_min + 1, lat_max - 1)
        centres.append((cx, cy))
        n_vertices = int(np.exp(rng.uniform(np.log(50), np.log(2000))))
        kind = rng.random()
        if kind < 0.05:
            # MultiPolygon: 2-3 disjoint parts side by side (each at most 1.1 * r from its centre).
            parts = []
            n_parts = int(rng.integers(2, 4))
            for p in range(n_parts):
                ring = _star(cx + p * 2.5 * radius, cy, radius * 0.9, max(10, n_vertices // n_parts), rng)
                parts.append(shapely.Polygon(ring))
            geom = shapely.MultiPolygon(parts)
        elif kind < 0.08:
            # Polygon with a hole: inner ring well inside the outer one's minimum radius (0.45 * 0.9 * r).
            outer = _star(cx, cy, radius, n_vertices, rng)
            inner = _star(cx, cy, radius * 0.3, max(10, n_vertices // 4), rng)
            geom = shapely.Polygon(outer, [inner[::-1]])
        else:
            geom = shapely.Polygon(_star(cx, cy, radius, n_vertices, rng))
        geoms.append(geom)
    gdf = gpd.GeoDataFrame({"geostore__id": [f"g{i:05d}" for i in range(n)]}, geometry=geoms, crs="EPSG:4326")
    bad = ~gdf.geometry.is_valid
    if bad.any():
        raise RuntimeError(f"generator produced {int(bad.sum())} invalid polygons")
    return gdf


# --------------------------------------------------------------------------------------------
# Methods (each runs in its own child process: `--run-method NAME`)
# --------------------------------------------------------------------------------------------


def run_geopump(points: str, polygons: str):
    """geopump: read raw columns (no point geometries) and call `fire_counts`."""
    import geopandas as gpd
    import pandas as pd

    from pipeline.lib.fire_stats import fire_counts

    t0 = time.perf_counter()
    alerts = pd.read_parquet(points, columns=["longitude", "latitude", "acq_date", "confidence__cat"])
    features = gpd.read_parquet(polygons)
    t1 = time.perf_counter()
    out = fire_counts(alerts, features, id_column="geostore__id")
    return out, {"read_s": t1 - t0, "compute_s": time.perf_counter() - t1}


def run_floor(points: str, polygons: str):
    """Floor for the Python methods: interpreter, geopandas import and the same reads, no counting."""
    import geopandas as gpd
    import pandas as pd

    t0 = time.perf_counter()
    pd.read_parquet(points, columns=["longitude", "latitude", "acq_date", "confidence__cat"])
    gpd.read_parquet(polygons)
    return None, {"read_s": time.perf_counter() - t0, "compute_s": 0.0}


def run_sjoin(points: str, polygons: str):
    """What a geopandas user writes: points from lon/lat, sjoin(within), groupby size."""
    import geopandas as gpd
    import pandas as pd

    t0 = time.perf_counter()
    alerts = pd.read_parquet(points)
    features = gpd.read_parquet(polygons)
    t1 = time.perf_counter()
    pts = gpd.GeoDataFrame(
        alerts, geometry=gpd.points_from_xy(alerts["longitude"], alerts["latitude"]), crs="EPSG:4326"
    )
    joined = gpd.sjoin(pts, features[["geostore__id", "geometry"]], predicate="within")
    out = (
        joined.groupby(["geostore__id", "acq_date", "confidence__cat"])
        .size()
        .reset_index(name="alert__count")
        .rename(columns={"acq_date": "alert__date"})
    )
    return out, {"read_s": t1 - t0, "compute_s": time.perf_counter() - t1}


def run_duckdb(points: str, polygons: str, threads: int):
    """DuckDB spatial: ST_Contains join plus GROUP BY, reading both Parquet files itself."""
    import duckdb
    import duckdb_ext  # from the duckdb-ext-spatial wheel: the extension binary, installable offline

    ext = Path(
        list(duckdb_ext.__path__)[0], "extensions", f"v{duckdb.__version__}", "linux_amd64", "spatial.duckdb_extension"
    )
    con = duckdb.connect(config={"allow_unsigned_extensions": "true", "threads": threads})
    con.execute(f"LOAD '{ext}'")
    t0 = time.perf_counter()
    geom_type = dict(
        (r[0], r[1]) for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [polygons]).fetchall()
    )["geometry"]
    geom = "geometry" if geom_type == "GEOMETRY" else "ST_GeomFromWKB(geometry)"
    out = con.execute(
        f"""
        SELECT p.geostore__id, a.acq_date AS alert__date, a.confidence__cat,
               count(*)::BIGINT AS alert__count
        FROM read_parquet(?) AS a
        JOIN (SELECT geostore__id, {geom} AS geom FROM read_parquet(?)) AS p
          ON ST_Contains(p.geom, ST_Point(a.longitude, a.latitude))
        GROUP BY ALL
    """,
        [points, polygons],
    ).df()
    # DuckDB reads as it joins, so its read time is inside compute_s.
    return out, {"read_s": 0.0, "compute_s": time.perf_counter() - t0}


def child_main(args: argparse.Namespace) -> int:
    """Run one method and write its counts (Parquet) and its inner timings (JSON)."""
    if args.run_method == "geopump":
        out, timing = run_geopump(args.points_file, args.polygons_file)
    elif args.run_method == "sjoin":
        out, timing = run_sjoin(args.points_file, args.polygons_file)
    elif args.run_method == "duckdb":
        out, timing = run_duckdb(args.points_file, args.polygons_file, args.duckdb_threads)
    elif args.run_method == "floor":
        out, timing = run_floor(args.points_file, args.polygons_file)
    else:
        raise SystemExit(f"unknown method {args.run_method}")
    if out is not None:
        out.to_parquet(args.out_file, index=False)
    timing["rss_mb"] = peak_rss_mb()
    Path(args.out_file + ".json").write_text(json.dumps(timing))
    return 0


# --------------------------------------------------------------------------------------------
# Harness (parent process)
# --------------------------------------------------------------------------------------------


def duckdb_available() -> bool:
    try:
        import duckdb  # noqa: F401
        import duckdb_ext  # noqa: F401
    except ImportError:
        return False
    return True


def run_child(method: str, points: Path, polygons: Path, out: Path, duckdb_threads: int) -> dict:
    """Run one method in a fresh interpreter; return wall, inner timings (read_s, compute_s) and its peak RSS."""
    args = ["--run-method", method, "--points-file", str(points), "--polygons-file", str(polygons)]
    args += ["--out-file", str(out), "--duckdb-threads", str(duckdb_threads)]
    return _common.run_child(__file__, args, Path(str(out) + ".json"))


def normalise(frame):
    """Counts as a sorted frame with str keys and int64 counts, for an exact comparison."""
    import pandas as pd

    frame = frame[KEYS + ["alert__count"]].copy()
    for c in KEYS:
        frame[c] = frame[c].astype(str)
    frame["alert__count"] = frame["alert__count"].astype("int64")
    frame = frame.sort_values(KEYS, kind="stable").reset_index(drop=True)
    return pd.DataFrame(frame)


def verify(results: dict[str, Path]) -> int:
    """Raise SystemExit if any method's counts differ from the first method's; return the row count."""
    import pandas as pd

    names = list(results)
    ref_name = names[0]
    ref = normalise(pd.read_parquet(results[ref_name]))
    for name in names[1:]:
        other = normalise(pd.read_parquet(results[name]))
        if not ref.equals(other):
            merged = ref.merge(other, on=KEYS, how="outer", suffixes=(f"_{ref_name}", f"_{name}"), indicator=True)
            diff = merged[
                (merged["_merge"] != "both") | (merged[f"alert__count_{ref_name}"] != merged[f"alert__count_{name}"])
            ]
            print(
                f"MISMATCH between {ref_name} ({len(ref)} rows) and {name} ({len(other)} rows): "
                f"{len(diff)} differing rows, e.g.\n{diff.head(10)}",
                file=sys.stderr,
            )
            raise SystemExit(2)
    return len(ref)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--polygons", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--quick", action="store_true", help="100,000 points x 100 polygons, 1 run per method")
    parser.add_argument("--repeat", type=int, default=None, help="runs per method (median reported); default 5")
    parser.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB peer even if installed")
    parser.add_argument(
        "--duckdb-threads",
        type=int,
        default=1,
        help="DuckDB threads (default 1, like the other single-threaded methods)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="write inputs/outputs here and keep them")
    # Child-process mode (internal).
    parser.add_argument("--run-method", help=argparse.SUPPRESS)
    parser.add_argument("--points-file", help=argparse.SUPPRESS)
    parser.add_argument("--polygons-file", help=argparse.SUPPRESS)
    parser.add_argument("--out-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_method:
        return child_main(args)

    if args.quick:
        args.points, args.polygons = 100_000, 100
    repeat = args.repeat or (1 if args.quick else 5)
    methods = ["geopump", "sjoin"]
    if not args.no_duckdb:
        if duckdb_available():
            methods.append("duckdb")
        else:
            print("note: duckdb / duckdb-ext-spatial not installed; DuckDB row skipped")
    methods.append("floor")

    with tempfile.TemporaryDirectory(prefix="fire_bench_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rng = np.random.default_rng(args.seed)
        points_df = make_points(args.points, rng)
        polys = make_polygons(args.polygons, rng)
        points_path, polygons_path = work / "points.parquet", work / "polygons.parquet"
        points_df.to_parquet(points_path, index=False)
        polys.to_parquet(polygons_path, index=False)
        import shapely

        n_vertices = int(shapely.get_num_coordinates(polys.geometry.values).sum())
        kinds = polys.geom_type.value_counts().to_dict()
        holes = int((shapely.get_num_interior_rings(polys.geometry.values) > 0).sum())
        print(
            f"inputs: {args.points:,} points, {args.polygons:,} polygons ({kinds}, {holes} with holes, "
            f"{n_vertices:,} vertices), seed {args.seed}; generated in {time.perf_counter() - t0:.1f} s"
        )
        del points_df, polys

        runs: dict[str, list[dict]] = {m: [] for m in methods}
        outputs: dict[str, Path] = {}
        # Round-robin over methods, rotating who goes first, so neither a noisy neighbour nor the
        # position after another method (page cache, allocator state) favours one method.
        for r in range(repeat):
            for m in methods[r % len(methods) :] + methods[: r % len(methods)]:
                out = work / f"counts_{m}.parquet"
                runs[m].append(run_child(m, points_path, polygons_path, out, args.duckdb_threads))
                if m != "floor":
                    outputs[m] = out
        n_rows = verify(outputs)
        print(f"verified: all {len(outputs)} counting methods give identical counts ({n_rows:,} rows)")

    med = {m: {k: statistics.median(run[k] for run in runs[m]) for k in runs[m][0]} for m in methods}
    labels = {
        "geopump": "geopump fire_counts",
        "sjoin": "geopandas sjoin(within) + groupby",
        "duckdb": f"duckdb spatial ST_Contains ({args.duckdb_threads} thr)",
        "floor": "floor: start-up + imports + read only",
    }
    base = med["sjoin"]
    print(f"\nmedian of {repeat} run(s); wall = whole child process incl. interpreter start-up and imports")
    header = (
        f"| {'method':<38} | {'wall s':>7} | {'read s':>6} | {'compute s':>9} | {'peak RSS MB':>11} "
        f"| {'wall vs sjoin':>13} | {'RSS vs sjoin':>12} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for m in methods:
        s = med[m]
        print(
            f"| {labels[m]:<38} | {s['wall_s']:>7.2f} | {s['read_s']:>6.2f} | {s['compute_s']:>9.2f} | "
            f"{s['rss_mb']:>11.0f} | {s['wall_s'] / base['wall_s']:>12.2f}x | {s['rss_mb'] / base['rss_mb']:>11.2f}x |"
        )
    gp, floor = med["geopump"], med["floor"]
    print(
        f"\ngoal FC-1 (wall <= 1.0x sjoin, stretch 0.3x): geopump {gp['wall_s'] / base['wall_s']:.2f}x; "
        f"above the floor: geopump +{gp['wall_s'] - floor['wall_s']:.2f} s, "
        f"sjoin +{base['wall_s'] - floor['wall_s']:.2f} s"
    )
    if "duckdb" in med:
        print(f"goal FC-2 (peak RSS <= 1.5x DuckDB): geopump {gp['rss_mb'] / med['duckdb']['rss_mb']:.2f}x DuckDB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
