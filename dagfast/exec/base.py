"""What runs the steps' processes: the executor interface, and which one a run uses.

The engine drives an executor and never knows which one. It calls the executor's
factory as `executor(loop, limit, on_exits)` and uses the object it returns:

    free_slots()          how many more steps may start now (maxActiveSteps is enforced
                          here, by dagfast, whatever executes the steps)
    running_count         how many started steps have not been reported ended
    hold() / release()    count a step that is between processes against the limit
    start(token, argv, env, cwd, stdout_path, stderr_path) -> int
                          start step `token` (env: bytes -> bytes); its stdout and stderr
                          must be in those files of the run record when its end is
                          reported; returns an id for messages only. Raises SpawnError
    signal(token, sig)    send `sig` to the process group of running step `token`
    signal_running(sig)   ... of every running step
    signal_all_groups(sig) ... of every group ever started (background children of
                          ended steps too), and to this run's processes that left them
    signal_escaped(sig, step=None)  ... to those that left them only (`setsid`)
    live_groups()         truthy while any of those processes is alive
    close()               stop watching (synchronous, in the engine's `finally`)

an optional `note_descendants()`, called as a stop begins (before any signal), for an
executor that finds the processes that left a step's group by their parents, and two
optional coroutines, for an executor that needs the running loop:
`open(dag)` before the run's first step (it may return a notice for the user), and
`aclose()` after `close()`. Ends come back as `on_exits([(token, end), ...])` on the
loop, where `end` is a wait status as `os.waitpid` gives it, or an `Outcome` when the
executor can say more than a wait status can (a Dask worker was lost).

Two executors implement it: `procs.ProcessManager` (local processes, the default) and
`daskexec.DaskExecutors` (a Dask cluster; `pip install 'dagfast[dask]'`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagfast.errors import MissingExtra, UsageError
from dagfast.exec.local import ProcessManager, describe_exit

__all__ = ["EXECUTORS", "Outcome", "choose", "describe"]

EXECUTORS = ("local", "dask")
"""The values of `--executor`, `DAGFAST_EXECUTOR` and a DAG's `stepExecutor`."""

DASK_INSTALL = "pip install 'dagfast[dask]'"


class Outcome:
    """A step's end that is not a process's wait status: the exit code to record (None:
    no process was seen to end) and the error text."""

    __slots__ = ("code", "error")

    def __init__(self, code: int | None, error: str) -> None:
        self.code = code
        self.error = error

    def __repr__(self) -> str:
        return f"Outcome({self.code!r}, {self.error!r})"


def describe(end) -> tuple[int | None, str]:
    """(exit code, error text) of an end reported through `on_exits`."""
    if end.__class__ is Outcome:
        return end.code, end.error
    return describe_exit(end)


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
    from dagfast.exec.dask import DaskExecutors

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
