"""Which executor a run uses: `--executor`, DAGFAST_EXECUTOR, or the DAG's own key."""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagfast.errors import MissingExtra, UsageError
from dagfast.exec.local import ProcessManager

__all__ = ["EXECUTORS", "choose"]

EXECUTORS = ("local", "dask")
"""The values of `--executor`, `DAGFAST_EXECUTOR` and a DAG's `stepExecutor`."""

DASK_INSTALL = "pip install 'dagfast[dask]'"


def choose(
    dag,
    executor: str | None = None,
    scheduler: str | None = None,
    shared_dir: str | None = None,
    environ: Mapping[str, str] = os.environ,
):
    """The executor factory for running `dag`: each setting from the command line (or
    the API's arguments) if given, else the environment (`DAGFAST_EXECUTOR`,
    `DAGFAST_DASK_SCHEDULER`, `DAGFAST_DASK_SHARED_DIR`), else the DAG's own keys.
    Raises UsageError for a wrong value, MissingExtra when Dask is not installed."""
    kind = executor or environ.get("DAGFAST_EXECUTOR") or dag.step_executor or "local"
    if kind not in EXECUTORS:
        where = "--executor" if executor else "DAGFAST_EXECUTOR"
        raise UsageError(f"{where} is `{kind}`; expected `local` or `dask`")
    if kind == "local":
        # Only an address given with the run is a mistake; the environment and the DAG
        # may name a cluster that this run chose not to use.
        if scheduler or shared_dir:
            flag = "--scheduler" if scheduler else "--shared-dir"
            raise UsageError(f"{flag} is for the Dask executor (--executor dask)")
        return ProcessManager
    if dag.secrets:
        raise UsageError(
            "`secrets:` cannot be used with the Dask executor yet: their masking reads "
            "the steps' output through local pipes"
        )
    try:  # only a run that asked for Dask imports it (~0.4 s)
        from distributed.comm import get_address_host_port
    except ImportError:
        raise MissingExtra(
            f"the Dask executor needs the `distributed` package: {DASK_INSTALL}"
        ) from None
    from dagfast.exec.dask import DaskExecutors  # only a run that asked for Dask pays

    address, source = _setting(scheduler, "--scheduler", "DAGFAST_DASK_SCHEDULER",
                               "daskScheduler", environ, dag.dask_scheduler)
    if address:
        try:
            get_address_host_port(address)
            if "://" not in address:
                raise ValueError("no scheme")
        except ValueError as exc:
            raise UsageError(f"{source} `{address}` is not a Dask scheduler address ({exc}); "
                             "expected one such as tcp://10.0.0.5:8786") from None
    shared, source = _setting(shared_dir, "--shared-dir", "DAGFAST_DASK_SHARED_DIR",
                              "daskSharedDir", environ, dag.dask_shared_dir)
    if shared:
        shared = os.path.abspath(shared)
        # The DAG's own key was checked when it was loaded (with its place in the file).
        if not os.path.isdir(shared):
            why = "not a directory" if os.path.exists(shared) else "no such directory"
            raise UsageError(f"{source} {shared}: {why}")
    return DaskExecutors(address, shared)


def _setting(given, flag: str, variable: str, key: str, environ, dag_value) -> tuple:
    """(value, where it came from) of a Dask setting: the flag, the environment, the DAG."""
    if given:
        return given, flag
    if environ.get(variable):
        return environ[variable], variable
    return dag_value or None, key
