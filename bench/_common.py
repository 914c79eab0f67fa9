"""bench._common: measuring helpers shared by the bench harnesses.

Every harness runs each contender in a fresh child interpreter (``run_child``) so that its peak RSS
belongs to that contender alone. The child reports its own peak RSS (``peak_rss_mb``) and how much CPU
other processes took from the machine while it was timing (``CpuShare``), because on a shared 2-core box
a neighbour's test run is the main source of noise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    """This process's peak RSS in MB, from VmHWM.

    Not ``ru_maxrss``: Linux carries the parent's RSS at fork into the child's ``ru_maxrss`` across exec,
    so every child would report at least the harness's size. VmHWM belongs to the address space created
    by exec, i.e. only to this process (GDAL's worker threads included).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds used so far by this process (all its threads), at microsecond resolution (os.times() counts
    10 ms clock ticks, too coarse for 0.1 s jobs)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class CpuShare:
    """Context manager: the share of the machine's CPU (in %) that *other* processes took meanwhile."""

    def __enter__(self) -> CpuShare:
        self._machine0, self._own0, self._t0 = machine_cpu_s(), own_cpu_s(), time.perf_counter()
        self.others_pct = 0.0
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self._t0
        others = (machine_cpu_s() - self._machine0) - (own_cpu_s() - self._own0)
        self.others_pct = max(0.0, 100.0 * others / (max(seconds, 1e-9) * (os.cpu_count() or 1)))


def run_child(script: str | os.PathLike, args: list[str], result_json: Path, env: dict | None = None) -> dict:
    """Run ``python script *args`` in a fresh interpreter from the repository root.

    The child must write its own figures as JSON to ``result_json``; returns them plus ``wall_s``, the
    child's whole life (spawn, interpreter start-up, imports, work, exit) as the parent saw it.
    """
    cmd = [sys.executable, str(Path(script).resolve()), *args]
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    result_json.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=full_env, cwd=REPO_ROOT, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed with exit code {proc.returncode}")
    return {"wall_s": wall, **json.loads(result_json.read_text())}


def pytest_running() -> list[str]:
    """Command lines of running ``pytest -q`` processes (someone's test suite competing for the cores)."""
    proc = subprocess.run(["pgrep", "-af", "pytest -q"], capture_output=True, text=True, check=False)
    return [line for line in proc.stdout.splitlines() if line.strip() and "pgrep" not in line]
