"""pipeline.lib.dask_settings: Dask settings for workers that do CPU-bound raster work (local cluster and bench)."""

#: Applied (`dask.config.set`) when geopump starts a LocalCluster; nannies pass the config to their workers.
#: A remote cluster sets the same through its workers' environment (helm/README.md §4).
WORKER_CONFIG: dict[str, object] = {
    # The statistical profiler samples every worker thread 100 times a second: a 2-worker zonal run on
    # 2 cores was 1.41x instead of 1.58x faster than one process with it on (bench/README.md).
    "distributed.worker.profile.enabled": False,
    # The psutil system monitor (every 0.5 s) and the event-loop tick (every 20 ms) wake each worker
    # process; sampling less often gave ~4% of a 2-worker zonal run back on 2 cores. Only dashboards
    # and blocked-event-loop warnings use them. The memory monitor, which enforces memory limits, keeps
    # its default interval.
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.tick.interval": "1s",
}

#: The same settings as environment variables (Dask's spelling: DASK_ prefix, "." -> "__", "-" -> "_"), for workers
#: started outside geopump.
WORKER_ENV: dict[str, str] = {
    "DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value) for key, value in WORKER_CONFIG.items()
}
