"""The Dask test modules' cluster: one LocalCluster per module (its workers are
processes), and every `dagfast run` of the module on it. Two modules share the work so
that pytest-xdist runs them side by side (one module runs on one xdist worker)."""

from __future__ import annotations

import logging

import distributed  # the `test` extra installs it: CI runs these tests, never skips them
import pytest

from dagfast.exec.dask import LOOPBACK_HTTP

__all__ = ["cluster", "on_dask"]


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster for the module, as `dask scheduler` + 2 `dask worker`s would be,
    started as a dagfast user is told to (allowed-failures 0), with resources."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = distributed.LocalCluster(
            n_workers=2, threads_per_worker=8, processes=True, host="127.0.0.1",
            dashboard_address=None, resources={"cpu": 4, "memory": 8e9}, memory_limit=0,
            silence_logs=logging.CRITICAL, scheduler_kwargs=LOOPBACK_HTTP,
        )
    client = distributed.Client(local, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        local.close()


@pytest.fixture(autouse=True)
def on_dask(cluster, monkeypatch):
    """Every `dagfast run` of this module (and every dagfast.run) uses the cluster."""
    monkeypatch.setenv("DAGFAST_EXECUTOR", "dask")
    monkeypatch.setenv("DAGFAST_DASK_SCHEDULER", cluster.scheduler.address)
