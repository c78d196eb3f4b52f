"""Run records on disk: one directory per run, step logs, and atomic msgspec snapshots.

Layout under the home (`DAGFAST_HOME`, else `$XDG_DATA_HOME/dagfast`, else
`~/.local/share/dagfast`), private to the user because logs can hold secrets:

    runs/<dag name>/<run id>/
        dag.json         the DAG as loaded (model.Dag)
        status.json      the latest snapshot of the run (Snapshot), replaced atomically
        steps/<id>.out   step <id>'s stdout; .err its stderr; <id>.script its script file
"""

from __future__ import annotations

import os
import re
import time

import msgspec

from .errors import RunError
from .model import Dag

__all__ = ["Recorder", "RunDir", "Snapshot", "StepRecord", "home", "new_run_id"]

SNAPSHOT_VERSION = 1


class StepRecord(msgspec.Struct, array_like=True):
    """One step's outcome: status code, exit code, start/end (unix seconds), error text."""

    status: int = 0
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""


class Snapshot(msgspec.Struct):
    """The whole run at one moment; `version` says how to read it."""

    version: int
    run_id: str
    dag_name: str
    dag_path: str
    status: int
    started_at: float
    finished_at: float | None
    pid: int
    steps: list[StepRecord]


_encoder = msgspec.json.Encoder()


def home(environ=os.environ) -> str:
    """The dagfast home directory (not created)."""
    explicit = environ.get("DAGFAST_HOME")
    if explicit:
        return os.path.abspath(explicit)
    data = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "dagfast")


def new_run_id(now: float | None = None) -> str:
    """A run id that sorts by start time: `20261128T162600123Z-9f3a1c`."""
    now = time.time() if now is None else now
    ms = int(now * 1000) % 1000
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{ms:03d}Z-" + os.urandom(3).hex()


_unsafe = re.compile(r"[^A-Za-z0-9_.-]")


class RunDir:
    """The directory of one run; created (private to the user) by `create`."""

    def __init__(self, path: str, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.steps_dir = os.path.join(path, "steps")

    @classmethod
    def create(cls, dag: Dag, home_dir: str, run_id: str | None = None) -> "RunDir":
        """Make the run's directory; a clear RunError when the home cannot be written."""
        run_id = run_id or new_run_id()
        dag_part = _unsafe.sub("_", dag.name) or "dag"
        path = os.path.join(home_dir, "runs", dag_part, run_id)
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            os.mkdir(path, 0o700)
            os.mkdir(os.path.join(path, "steps"), 0o700)
        except OSError as exc:
            where = exc.filename or path
            raise RunError(f"cannot create the run directory `{where}`: {exc.strerror}") from None
        run = cls(path, run_id)
        run.write_atomic("dag.json", msgspec.json.encode(dag))
        return run

    def stdout_path(self, step: int) -> str:
        """Where step `step`'s stdout goes."""
        return f"{self.steps_dir}/{step}.out"

    def stderr_path(self, step: int) -> str:
        """Where step `step`'s stderr goes."""
        return f"{self.steps_dir}/{step}.err"

    def script_path(self, step: int) -> str:
        """Where step `step`'s script file is written."""
        return f"{self.steps_dir}/{step}.script"

    def write_snapshot(self, snapshot: Snapshot, durable: bool = False) -> None:
        """Replace status.json atomically; `durable` also fsyncs it (the final one)."""
        self.write_atomic("status.json", _encoder.encode(snapshot), durable)

    def write_atomic(self, name: str, data: bytes, durable: bool = False) -> None:
        """Write `name` in the run directory so that readers see old or new, never half;
        with `durable`, the data reaches the disk before the rename."""
        final = os.path.join(self.path, name)
        tmp = final + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise RunError(f"cannot write `{final}`: {exc.strerror}") from None


class Recorder:
    """Keeps a run's record as the engine reports transitions (the reporter hooks of
    `report.Reporter`): a snapshot when the run starts and a durable one at its end."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir

    def run_started(self, dag, run_dir, records) -> None:
        self.dag = dag
        self.records = records
        self.started_at = time.time()
        self._write(1, None, durable=False)  # RunStatus.RUNNING

    def step_started(self, step: int) -> None:
        pass

    def step_finished(self, step: int, record) -> None:
        pass

    def steps_cancelled(self, steps, status, reason) -> None:
        pass

    def run_finished(self, result) -> None:
        self.started_at = result.started_at
        self._write(int(result.status), result.finished_at, durable=True)

    def _write(self, status: int, finished_at: float | None, durable: bool) -> None:
        # Only the final snapshot is fsynced: a lost "running" one says no more than
        # the run directory itself does.
        self.run_dir.write_snapshot(
            Snapshot(
                version=SNAPSHOT_VERSION,
                run_id=self.run_dir.run_id,
                dag_name=self.dag.name,
                dag_path=self.dag.path,
                status=status,
                started_at=self.started_at,
                finished_at=finished_at,
                pid=os.getpid(),
                steps=self.records,
            ),
            durable=durable,
        )
