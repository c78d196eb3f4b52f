"""Every error dagfast raises on purpose, each class defined here.

    DagfastError                 the root: anything else that escapes is a bug
     ├── LoadError               a DAG file cannot be used; carries every Problem found
     ├── UsageError              the command line or API was called wrongly
     │    └── MissingExtra       a setting needs an optional extra that is not installed
     ├── RunError                a run could not start or continue (home not writable, ...)
     │    ├── RunsFull           maxActiveRuns reached and `--no-queue` (exit 75)
     │    ├── Stopped            a queued run was stopped before it started
     │    ├── SecretError        a secret cannot be read as the run starts; the engine
     │    │                      records it as the run's error (RunResult.error)
     │    ├── SpawnError         a step's process cannot start; the step fails (exit 127)
     │    ├── OutputTooLarge     a step printed more than maxOutputSize; the step fails
     │    └── ItemError          a fan-out step's items cannot be read (a bad line, a
     │                           failed item command, past maxItems); the step fails
     ├── ScheduleError           a `schedule` entry the scheduler cannot run
     ├── ExpandError             a value cannot be expanded (also a ValueError); the loader
     │                           turns it into a Problem at the value's place
     ├── ParamsError             parameters cannot be read (also a ValueError); a Problem,
     │                           or a UsageError for the command line's
     └── SchedulerBug            an impossible state inside the engine ("this is a bug")

Two private exceptions of the reference YAML tree builder (loader/events.py) carry
control flow inside that module only and never escape it.
"""

from __future__ import annotations

import signal

__all__ = [
    "DagfastError",
    "ExpandError",
    "ItemError",
    "LoadError",
    "MissingExtra",
    "Problem",
    "OutputTooLarge",
    "ParamsError",
    "RunError",
    "RunsFull",
    "ScheduleError",
    "SchedulerBug",
    "SecretError",
    "SpawnError",
    "Stopped",
    "UsageError",
]


class Problem:
    """One thing wrong with a DAG file, with where it is (JSON path, line, column)."""

    __slots__ = ("message", "path", "file", "line", "column")

    def __init__(
        self,
        message: str,
        path: str | None = None,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.file = file
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.file or "<dag>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.message}"
        if self.path:
            text += f" - at `{self.path}`"
        return text

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class DagfastError(Exception):
    """The root of every error dagfast raises on purpose."""


class LoadError(DagfastError):
    """A DAG file cannot be used; `problems` lists everything found wrong, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class UsageError(DagfastError):
    """The command line or the Python API was called wrongly."""


class MissingExtra(UsageError):
    """A setting needs an optional extra that is not installed; the message says how to
    install it (`pip install 'dagfast[dask]'`)."""


class RunError(DagfastError):
    """A run could not start or could not continue, for a reason outside the DAG file."""


class SpawnError(RunError):
    """A step's process could not be started; the message says why in the user's terms.
    The engine records it as the step's failure (exit 127)."""


class ItemError(RunError):
    """Why a fan-out step's items cannot be read; one line, located where it can be:
    `items.jsonl:1042: not valid JSON (...)`, `items.txt:17: not UTF-8`, `no such file:
    /abs/path/items.txt`, `the item command `seq x` exited with status 1 after 120
    items`, `more than maxItems (1000) items`. The step fails with it."""


class OutputTooLarge(RunError):
    """A step printed more than `maxOutputSize` bytes; the step fails with this text."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    def __str__(self) -> str:
        return f"output exceeded maximum size limit of {self.limit} bytes (maxOutputSize)"


class SecretError(RunError):
    """A secret cannot be read when the run starts: which one (its index in `secrets:`),
    and why. The engine records it as the run's error (RunResult.error)."""

    def __init__(self, secret, index: int, why: str) -> None:
        super().__init__(why)
        self.secret = secret
        self.index = index
        self.why = why

    def __str__(self) -> str:
        where = self.secret.where or "<dag>"
        return f"{where}: {self.why} - at `$.secrets[{self.index}].key`"


class RunsFull(RunError):
    """Every slot of the DAG is taken (or others wait first) and the run may not queue."""

    def __init__(self, dag: str, limit: int) -> None:
        super().__init__(dag, limit)
        self.dag = dag
        self.limit = limit

    def __str__(self) -> str:
        return (f"`{self.dag}` already has maxActiveRuns ({self.limit}) runs going "
                "(or waiting); not queued (--no-queue)")


class Stopped(RunError):
    """A queued run was stopped (SIGINT, SIGTERM) before it started; `run_id`, `dag` and
    `waited` (seconds in the queue) once its record says so."""

    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.signal = sig
        self.run_id = self.dag = ""
        self.waited = 0.0

    def __str__(self) -> str:
        how = f"{signal.Signals(self.signal).name}"
        if not self.run_id:
            return f"stopped by {how} while queued"
        return (f"run {self.run_id} stopped while waiting for a run slot of {self.dag} "
                f"({how} after {self.waited:.2f} s in the queue)")


class ScheduleError(DagfastError):
    """A `schedule` entry that is not a cron expression we can run."""

    def __init__(self, expr: str, why: str) -> None:
        super().__init__(expr, why)
        self.expr = expr
        self.why = why

    def __str__(self) -> str:
        return f"{self.why}: `{self.expr}` - at `$.schedule`"


class ExpandError(DagfastError, ValueError):
    """A string cannot be expanded; the loader reports it with the key's path."""


class ParamsError(DagfastError, ValueError):
    """Parameters that cannot be read; the caller adds where they were written."""


class SchedulerBug(DagfastError):
    """The engine reached a state that should be impossible."""

    def __str__(self) -> str:
        return f"{self.args[0]} [this is a bug]"
