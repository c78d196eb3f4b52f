"""`dagfast.run`: run a DAG from Python and get its result back."""

from __future__ import annotations

import os

from .engine import Engine, RunResult
from .errors import UsageError
from .model import Dag
from .report import Reporter
from .store import RunDir, home

__all__ = ["run"]


def run(
    dag: Dag | str | os.PathLike,
    *,
    max_active_steps: int | None = None,
    reporter: Reporter | None = None,
    home_dir: str | None = None,
) -> RunResult:
    """Run a DAG (a loaded `Dag` or a path to its YAML file) to its end.

    Raises LoadError for an invalid file; a failed run is a result, not an exception."""
    if not isinstance(dag, Dag):
        from .load import load

        dag = load(dag)
    if max_active_steps is not None and max_active_steps < 0:
        raise UsageError("max_active_steps must be 0 (unlimited) or more")
    run_dir = RunDir.create(dag, home_dir or home())
    return Engine(dag, run_dir, reporter, max_active_steps=max_active_steps).run()
