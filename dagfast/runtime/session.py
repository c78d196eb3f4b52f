"""`dagfast.run`: run a DAG from Python and get its result back."""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagfast.runtime.engine import Engine, RunResult
from dagfast.errors import UsageError
from dagfast.model import Dag
from dagfast.report.base import Reporter
from dagfast.records.store import RunDir, home

__all__ = ["run"]


def run(
    dag: Dag | str | os.PathLike,
    *,
    params=None,
    max_active_steps: int | None = None,
    reporter: Reporter | None = None,
    home_dir: str | None = None,
    queue: bool = True,
    executor: str | None = None,
    scheduler: str | None = None,
    shared_dir: str | None = None,
) -> RunResult:
    """Run a DAG (a loaded `Dag` or a path to its YAML file) to its end.

    `params` override the DAG's own as `dagfast run -- ...` does: a mapping
    (`{"DATE": "2026-11-28"}`), a list (`["DATE=2026-11-28", "positional"]`) or a string.
    With maxActiveRuns set, the run waits for a slot unless `queue` is False, when it
    raises runslots.RunsFull at once.
    `executor` ("local" or "dask"), `scheduler` (a Dask scheduler's address; none: a
    local cluster for the run) and `shared_dir` override DAGFAST_EXECUTOR,
    DAGFAST_DASK_SCHEDULER, DAGFAST_DASK_SHARED_DIR and the DAG's own keys.
    Raises LoadError for an invalid file, MissingExtra when Dask is asked for and not
    installed; a failed run is a result, not an exception."""
    if max_active_steps is not None and max_active_steps < 0:
        raise UsageError("max_active_steps must be 0 (unlimited) or more")
    given = None
    if params is not None:
        from dagfast.loader.params import ParamsError, parse

        if not isinstance(params, (str, Mapping, list, tuple)):
            raise UsageError(
                f"params must be a mapping, a list or a string, not {type(params).__name__}"
            )

        try:
            given = parse(dict(params) if isinstance(params, Mapping) else params)
        except ParamsError as exc:
            raise UsageError(f"params: {exc}") from None
    if isinstance(dag, Dag):
        if given:  # parameters are applied when loading: load the same file again
            if not dag.path:
                raise UsageError("params need the DAG's file; this Dag was not loaded from one")
            dag = _load(dag.path, given)
    else:
        dag = _load(dag, given)
    from dagfast.exec.base import choose

    factory = choose(dag, executor, scheduler, shared_dir)
    slot = None
    if dag.max_active_runs:  # issue 5: at most maxActiveRuns at once, queued in order
        from dagfast.records import runslots

        slot, run_dir = runslots.run_dir_for(dag, home_dir or home(), queue=queue)
    else:
        run_dir = RunDir.create(dag, home_dir or home())
    try:
        return Engine(
            dag, run_dir, reporter, max_active_steps=max_active_steps, executor=factory
        ).run()
    finally:
        if slot is not None:
            slot.release()


def _load(path, params) -> Dag:
    from dagfast.loader import load

    return load(path, params=params)
