"""Deleting old runs (`dagfast prune`, and retention after a run): which runs go, and
deleting one so that no reader ever sees it half gone and no running or queued run is
touched.

A run is deleted under its own lock (the flock its owner holds for its whole life, a
queued run's included): if the lock is taken, the run is running or waiting and stays.
Holding it, the directory is renamed to a dot name (`.<run id>.pruning`, which readers
skip) in one step, then removed; a prune that dies half way leaves only a dot directory,
which the next prune removes.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from dataclasses import dataclass

from dagfast.errors import UsageError
from dagfast.records.read import owner_pid, runs_of
from dagfast.records.store import run_id_time

__all__ = ["Pruned", "apply_retention", "parse_age", "plan", "prune", "runs_to_prune"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_LEFTOVER = ".pruning"


def parse_age(text: str) -> float:
    """`10d` -> seconds (s, m, h, d, w); UsageError naming the text otherwise."""
    got = _AGE.fullmatch(text.strip())
    if not got:
        raise UsageError(f"--older-than {text}: not an age; write a number and a unit, "
                         "s, m, h, d or w (10d: ten days)")
    return float(got.group(1)) * _UNITS[got.group(2)]


def runs_to_prune(runs: list[str], keep: int | None, older_than: float | None,
                  now: float | None = None) -> list[str]:
    """Of `runs` (run directories of one DAG, oldest first), those beyond the `keep`
    latest or started more than `older_than` seconds before `now`; oldest first."""
    now = time.time() if now is None else now
    doomed = set()
    if keep is not None and len(runs) > keep:
        doomed.update(runs[: len(runs) - keep])
    if older_than is not None:
        for r in runs:
            started = run_id_time(os.path.basename(r))
            if started is not None and started < now - older_than:
                doomed.add(r)
    return [r for r in runs if r in doomed]


@dataclass
class Pruned:
    """What a prune did (or, dry, would do): runs deleted, and runs it left because
    they are running or queued (or could not be deleted: `failed`, with why)."""

    deleted: list[str]
    busy: list[str]
    failed: list[tuple[str, str]]


def plan(home_dir: str, dags: list[str], keep: int | None, older_than: float | None,
         file: str | None = None) -> tuple[list[str], list[str]]:
    """(runs to delete, runs that match but are running or queued) of the DAGs called
    `dags` (and loaded from `file` when given)."""
    doomed, busy = [], []
    for name in dags:
        for r in runs_to_prune(runs_of(home_dir, name, file), keep, older_than):
            (busy if owner_pid(r) is not None else doomed).append(r)
    return doomed, busy


def prune(runs: list[str]) -> Pruned:
    """Delete the run directories `runs`, each under its lock; one that is running or
    queued by now is left (busy)."""
    done = Pruned([], [], [])
    for r in runs:
        try:
            if _delete(r):
                done.deleted.append(r)
            else:
                done.busy.append(r)
        except OSError as exc:
            done.failed.append((r, exc.strerror or str(exc)))
    for parent in {os.path.dirname(r) for r in runs}:
        _remove_leftovers(parent)
    return done


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _delete(run: str) -> bool:
    """Delete one run directory, holding its lock; False if its lock is held (it is
    running or queued)."""
    lock = os.path.join(run, "lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1  # never locked (made by hand, or by a very old dagfast)
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        gone = os.path.join(os.path.dirname(run), f".{os.path.basename(run)}{_LEFTOVER}")
        os.rename(run, gone)  # from here on no reader sees the run
    finally:
        if fd >= 0:
            os.close(fd)
    shutil.rmtree(gone, ignore_errors=True)
    return True


def _remove_leftovers(parent: str) -> None:
    """Dot directories an interrupted prune left."""
    for name in _listdir(parent):
        if name.startswith(".") and name.endswith(_LEFTOVER):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def apply_retention(home_dir: str, name: str, keep_runs: int | None,
                    keep_days: float | None) -> Pruned:
    """The DAG keys `histRetentionRuns` / `histRetentionDays`, applied after a run of
    the DAG called `name`: its runs beyond the `keep_runs` latest, or started more than
    `keep_days` days ago, are deleted (never a running or queued one, the run that just
    ended included while its owner holds it)."""
    if keep_runs is None and keep_days is None:
        return Pruned([], [], [])
    age = keep_days * 86400 if keep_days is not None else None
    doomed, busy = plan(home_dir, [name], keep_runs, age)
    done = prune(doomed)
    done.busy += busy
    return done
