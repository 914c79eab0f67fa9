"""pipeline_tests.test_dask: the Dask resource's local cluster runs its workers with geopump's worker settings."""

from __future__ import annotations

import os

import pytest

from pipeline.lib.dask_settings import WORKER_CONFIG, WORKER_ENV
from pipeline.resources import DaskResource


def _worker_settings() -> dict:
    import dask

    return {key: dask.config.get(key) for key in WORKER_CONFIG}


@pytest.mark.cluster
def test_local_cluster_workers_get_the_worker_config():
    resource = DaskResource(n_workers=2, processes=True, memory_limit="1GiB")
    try:
        client = resource.client
        settings = client.run(_worker_settings)
        pids = client.run(os.getpid)
    finally:
        resource.close()
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()  # real worker processes
    for worker, seen in settings.items():
        assert seen == WORKER_CONFIG, worker
    assert resource._client is None  # closed with the run


def test_worker_env_spells_the_same_settings():
    """A remote cluster configured from WORKER_ENV (helm/README.md) gets exactly WORKER_CONFIG."""
    import dask
    import dask.config

    parsed = dask.config.collect_env(WORKER_ENV)
    for key, value in WORKER_CONFIG.items():
        got = dask.config.get(key, config=parsed)
        assert str(got) == str(value), key
    assert len(WORKER_ENV) == len(WORKER_CONFIG)


def test_helm_readme_gives_remote_workers_the_same_env():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "helm" / "README.md").read_text()
    documented = dict(re.findall(r"\{name: (DASK_[A-Z_]+), value: \"([^\"]+)\"\}", text))
    assert documented == WORKER_ENV
