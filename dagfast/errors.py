"""Every error dagfast raises on purpose.

    DagfastError                 the root: anything else that escapes is a bug
     ├── LoadError               a DAG file cannot be used; carries every Problem found
     ├── UsageError              the command line or API was called wrongly
     │    └── MissingExtra       a setting needs an optional extra that is not installed
     ├── RunError                a run could not start or continue (home not writable, ...)
     │    ├── runslots.RunsFull  maxActiveRuns reached and `--no-queue` (exit 75)
     │    ├── runslots.Stopped   a queued run was stopped before it started
     │    └── secrets.SecretError  a secret cannot be read as the run starts; the engine
     │                           records it as the run's error (RunResult.error)
     ├── cron.ScheduleError      a `schedule` entry the scheduler cannot run
     └── SchedulerBug            an impossible state inside the engine ("this is a bug")

Errors that stay inside one module and never escape it (procs.SpawnError, a step that
cannot start; expand.ExpandError and params.ParamsError, turned into Problems by the
loader) are not part of this tree.
"""

from __future__ import annotations

__all__ = [
    "DagfastError",
    "LoadError",
    "MissingExtra",
    "Problem",
    "OutputTooLarge",
    "RunError",
    "SchedulerBug",
    "SecretError",
    "SpawnError",
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


class SchedulerBug(DagfastError):
    """The engine reached a state that should be impossible."""

    def __str__(self) -> str:
        return f"{self.args[0]} [this is a bug]"
