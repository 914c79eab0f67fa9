"""pipeline.resources.dask: a Dask client per run, on a local cluster or an existing scheduler."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field, PrivateAttr

from pipeline.lib.dask_settings import WORKER_CONFIG


class DaskResource(dg.ConfigurableResource):
    """Heavy work runs on Dask: a LocalCluster in the run process by default, or the cluster at
    DASK_SCHEDULER_ADDRESS (e.g. a dask-scheduler Service in Kubernetes).

    dagster-dask's executor is legacy (dagster#16013), so this resource parallelises *inside* a step.
    """

    scheduler_address: str | None = Field(default=None, description="DASK_SCHEDULER_ADDRESS; empty = local cluster.")
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"
    processes: bool = True

    _client = PrivateAttr(default=None)

    @contextmanager
    def yield_for_execution(self, context) -> Iterator["DaskResource"]:
        # The client is created lazily (see `client`), so steps that never use Dask pay nothing.
        try:
            yield self
        finally:
            self.close()

    @property
    def client(self):
        if self._client is None:
            import dask
            from distributed import Client, LocalCluster

            if self.scheduler_address:
                self._client = Client(self.scheduler_address, timeout="30s", set_as_default=False)
            else:
                # Profiler off, monitors sampling less often: CPU the raster work needs (see WORKER_CONFIG).
                with dask.config.set(WORKER_CONFIG):
                    cluster = LocalCluster(
                        n_workers=self.n_workers,
                        threads_per_worker=self.threads_per_worker,
                        memory_limit=self.memory_limit,
                        processes=self.processes,
                        dashboard_address=None,
                    )
                self._client = Client(cluster, set_as_default=False)
                self._client._geopump_cluster = cluster
        return self._client

    def close(self) -> None:
        if self._client is not None:
            cluster = getattr(self._client, "_geopump_cluster", None)
            self._client.close()
            if cluster is not None:
                cluster.close()
            self._client = None
