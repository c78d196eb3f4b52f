"""Run records on disk: what is written (the schemas), where (RunDir), and when (Recorder).

Layout under the home (`DAGFAST_HOME`, else `$XDG_DATA_HOME/dagfast`, else
`~/.local/share/dagfast`); directories are 0700 and files 0600, because logs can hold
secrets:

    runs/<dag name>/<run id>/
        lock             flock'ed by the process running the run, for its whole life;
                         holds that process's pid
        dag.json         the DAG as loaded (model.Dag, msgspec JSON, with a `version`
                         key, DAG_VERSION, that model.Dag itself ignores)
        journal          append-only: frames (see `journal`) of msgpack entries, one
                         batch per event-loop turn; every attempt appends to it
        status.json      the latest snapshot (Snapshot, JSON), replaced atomically
        reserve          space set aside at creation, freed if the disk fills so that
                         the end of the run can still be recorded; gone after the run
        items/<id>.jsonl     a fan-out step's fan-in past 1,000 items (runtime.fanout)
        output, output.idx   the output store: what every step printed, per stream and
                         execution, in one file and its index (records/outstore.py);
                         every attempt appends to it
        steps/<id>.script    a step's `script:` file (only steps that have one)
        attempts/<n>/steps/<id>.script   the script attempt <n> left for a step that a
                         later attempt (`dagfast retry`) ran again

The journal is the truth; a snapshot is a cache of it up to `journal_offset`.
"""


import fcntl
import os
import re
import shutil
import time

import msgspec

from dagfast.errors import RunError
from dagfast.records import outstore
from dagfast.records.entries import (
    DAG_VERSION, JOURNAL_VERSION, SNAPSHOT_VERSION, Begin, Cancel, End, Entry, Fan, Finish, Item,
    Snapshot, Start, StepRecord,
)
from dagfast.records.journal import frame
from dagfast.model import Dag
from dagfast.status import RunStatus

__all__ = [
    "Begin", "Cancel", "DAG_VERSION", "End", "Entry", "Fan", "Finish", "Item", "JOURNAL_VERSION", "OUTPUT_LOST",
    "Recorder", "RunDir", "SNAPSHOT_VERSION", "Snapshot", "Start", "StepRecord", "dag_dir_name",
    "home", "new_run_id", "old_dag_dir_name", "run_id_time", "write_atomic",
]




_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


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


def run_id_time(run_id: str) -> float | None:
    """When a run id (`20261128T162600123Z-9f3a1c`) was made; None if it is not one."""
    import calendar

    try:
        whole = calendar.timegm(time.strptime(run_id[:15], "%Y%m%dT%H%M%S"))
        return whole + int(run_id[15:18]) / 1000
    except ValueError:
        return None


_unsafe = re.compile(r"[^A-Za-z0-9_.-]")


def dag_dir_name(name: str) -> str:
    """The directory under `runs/` (and `slots/`) of the DAG called `name`: the name
    itself when it is made of `[A-Za-z0-9_.-]` and does not start with a dot; else its
    readable part (others as `_`, a leading dot after a `_`: `..` would leave `runs/`)
    then `+` and a hash of the exact name. `+` is in no plain name, so two names never
    share a directory (`日本` and `中国`, `a/b` and `a_b`)."""
    safe = old_dag_dir_name(name)
    if safe == name and len(name) <= 255:  # a directory name holds 255 bytes
        return name
    import hashlib  # start-up: 2.5 ms that only an unusual DAG name needs
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe[:200]}+{digest}"


def old_dag_dir_name(name: str) -> str:
    """The directory older homes keep a DAG's runs in: the same as `dag_dir_name` for
    plain names; other names could share it, so its runs are told apart by the name
    their record holds."""
    safe = _unsafe.sub("_", name) or "dag"
    return "_" + safe if safe.startswith(".") else safe


# A step's error when the record could not keep its output (a full disk).
OUTPUT_LOST = "its output was not recorded (the record could not be kept)"


def _reserve_bytes(steps: int) -> int:
    # Enough for a final snapshot (~50 bytes a step) and the journal's last frames.
    return 64 * 1024 + 64 * steps



def make_private_dirs(path: str) -> None:
    """`os.makedirs(path)` with every directory it creates 0700 (makedirs gives the mode
    to the last one only, so `home/runs/` came out world-readable)."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass


class RunDir:
    """The directory of one run, held (locked) by this process until `close`.

    `create` makes a new run; `reopen` takes an existing one for a new attempt."""

    def __init__(self, path: str, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.steps_dir = os.path.join(path, "steps")
        self.attempt = 1
        # Records (by step id) that a retry carries over unchanged: see `reopen`.
        self.kept: dict[int, StepRecord] = {}
        self.failure: RunError | None = None  # set when the record could not be kept
        self._lock_fd = -1
        self.journal_fd = -1
        self.journal_offset = 0

    @classmethod
    def create(cls, dag: Dag, home_dir: str, run_id: str | None = None, mask=None) -> "RunDir":
        """Make the run's directory, lock it, set space aside; a clear RunError when the
        home cannot be written or is full. `mask` (bytes -> bytes) is applied to the
        DAG's record: a sub-DAG loaded with its caller's secrets may hold them."""
        parent = os.path.join(home_dir, "runs", dag_dir_name(dag.name))
        try:
            make_private_dirs(parent)
        except OSError as exc:
            raise RunError(
                f"cannot create the run directory `{exc.filename or parent}`: {exc.strerror}"
            ) from None
        # The run is made under a hidden name (readers skip dot names) and renamed once
        # its lock, dag.json and journal exist: a kill -9 in between leaves no run
        # directory that `status` or `retry` could not read.
        for _ in range(100):  # a fresh id until one is free (ids are random past the ms)
            rid = run_id or new_run_id()
            path = os.path.join(parent, rid)
            made = os.path.join(parent, f".{rid}.new")
            if os.path.lexists(path):
                if run_id:
                    raise RunError(f"a run `{run_id}` already exists at `{path}`")
                continue
            try:
                os.mkdir(made, 0o700)
                break
            except FileExistsError:
                if run_id:
                    raise RunError(f"a run `{run_id}` is being made at `{made}`") from None
            except OSError as exc:
                raise RunError(f"cannot create the run directory `{path}`: {exc.strerror}") from None
        run = cls(made, rid)
        try:
            run._lock()
            outstore.create(made)
            data = b'{"version":%d,' % DAG_VERSION + _json.encode(dag)[1:]
            run.write_atomic("dag.json", mask(data) if mask is not None else data)
            run._open_journal(truncate_at=None)
            run._make_reserve(len(dag.steps))
            os.rename(made, path)
            run.path, run.steps_dir = path, os.path.join(path, "steps")
        except BaseException:
            # Nothing ran: leave no half-made run behind (an empty directory would
            # read as a run that never started, one per failed attempt).
            run._release()
            shutil.rmtree(run.path, ignore_errors=True)
            raise
        return run

    @classmethod
    def reopen(cls, path: str, run_id: str) -> "RunDir":
        """Take an existing run for a new attempt; RunError if its owner still runs."""
        run = cls(path, run_id)
        run._lock()
        return run

    def begin_attempt(self, attempt: int, kept: dict[int, StepRecord], journal_end: int,
                      rerun: list[int]) -> None:
        """Prepare attempt `attempt`: cut the journal's torn tail at `journal_end`, move
        the scripts of the steps that run again to attempts/<attempt-1>/, set space
        aside. (Their output stays in the store, under their earlier executions.)"""
        self.attempt = attempt
        self.kept = kept
        archive = os.path.join(self.path, "attempts", str(attempt - 1), "steps")
        try:
            for i in rerun:
                try:
                    os.stat(f"{self.steps_dir}/{i}.script")
                except FileNotFoundError:
                    continue
                make_private_dirs(archive)
                os.replace(f"{self.steps_dir}/{i}.script", f"{archive}/{i}.script")
            if not os.path.exists(os.path.join(self.path, outstore.DATA)):
                outstore.create(self.path)  # a run recorded before the store
            self._open_journal(truncate_at=journal_end)
            self._make_reserve(len(kept) + len(rerun))
        except OSError as exc:
            raise RunError(f"cannot prepare `{self.path}` for a retry: {exc.strerror}") from None

    def close(self) -> None:
        """Release the run: close the journal, drop the reserve, unlock.

        A run released before anything was recorded (its executor could not open) says
        that it ended `not_started`: with no record at all, it would read as a run whose
        process was killed before its first one (`interrupted`)."""
        if self.journal_fd >= 0 and self.journal_offset == 0 and self.failure is None:
            if not os.path.exists(os.path.join(self.path, "status.json")):
                self.free_reserve()
                try:
                    self.append(frame(_msgpack.encode([(5, 0, time.time(), 0, "")])), True)
                except RunError:
                    pass  # then it reads `interrupted`: true enough
        self._release()

    def _release(self) -> None:
        if self.journal_fd >= 0:
            os.close(self.journal_fd)
            self.journal_fd = -1
        self.free_reserve()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the last fd drops the flock
            self._lock_fd = -1

    def script_path(self, step: int) -> str:
        """Where step `step`'s script file is written."""
        return f"{self.steps_dir}/{step}.script"

    def write_script(self, step: int, text: str) -> str:
        """Write step `step`'s `script:` text to its (executable) file; its path.
        Raises OSError."""
        path = self.script_path(step)
        if not os.path.isdir(self.steps_dir):
            make_private_dirs(self.steps_dir)  # only runs with scripts have it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
        try:
            _write_all(fd, text.encode(), False)
        finally:
            os.close(fd)
        return path

    def append(self, data: bytes, durable: bool = False) -> None:
        """Append `data` to the journal whole, or cut it back and raise RunError."""
        fd = self.journal_fd
        try:
            _write_all(fd, data, durable)
        except OSError as exc:
            try:
                os.ftruncate(fd, self.journal_offset)  # never leave half a frame
            except OSError:
                pass
            raise RunError(f"cannot write the journal in `{self.path}`: {exc.strerror}") from None
        self.journal_offset += len(data)

    def write_snapshot(self, snapshot: Snapshot, durable: bool = False) -> None:
        """Replace status.json atomically; `durable` also fsyncs it (the final one)."""
        self.write_atomic("status.json", _json.encode(snapshot), durable)

    def write_atomic(self, name: str, data: bytes, durable: bool = False) -> None:
        """Write `name` in the run directory so that readers see old or new, never half
        (see `write_atomic`)."""
        write_atomic(self.path, name, data, durable)

    def free_reserve(self) -> None:
        """Give the space set aside back (when the disk is full, or at the end)."""
        try:
            os.unlink(os.path.join(self.path, "reserve"))
        except OSError:
            pass

    # Internals -------------------------------------------------------------------------

    def _lock(self) -> None:
        lock = os.path.join(self.path, "lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RunError(f"cannot open `{lock}`: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunError(f"run `{self.run_id}` is still running (pid {pid})") from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            raise RunError(f"cannot write `{lock}`: {exc.strerror}") from None

    def _open_journal(self, truncate_at: int | None) -> None:
        path = os.path.join(self.path, "journal")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            if truncate_at is not None:
                os.ftruncate(fd, truncate_at)
            self.journal_fd = fd
            self.journal_offset = os.fstat(fd).st_size
        except OSError as exc:
            raise RunError(f"cannot open the journal `{path}`: {exc.strerror}") from None

    def _make_reserve(self, steps: int) -> None:
        path = os.path.join(self.path, "reserve")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, _reserve_bytes(steps))
            finally:
                os.close(fd)
        except OSError as exc:
            self.free_reserve()
            raise RunError(f"cannot set space aside in `{self.path}`: {exc.strerror}") from None


_FULL = ("no space left on device", "disk quota exceeded")  # as exec.local says them


def _no_space(dag, result) -> str:
    """The run's error when a step failed because the disk (or its inodes, or a quota)
    was full: a run that failed of it must say so, not only `1 failed`; "" otherwise."""
    if result.status == RunStatus.SUCCEEDED:
        return ""
    for step, r in zip(dag.steps, result.steps):
        for what in _FULL:
            at = r.error.find(what) if r.error else -1
            if at >= 0:
                return f"{r.error[at:]} (step {step.name} failed of it)"
    return ""


def write_atomic(directory: str, name: str, data: bytes, durable: bool = False) -> None:
    """Write the file `name` in `directory` so that readers, and a crash at any moment,
    see the old content or the new, never half (a temporary file, then a rename); with
    `durable`, the data reaches the disk before the rename, and the rename before we
    return (the directory is fsynced). One writer at a time. RunError if it cannot."""
    final = os.path.join(directory, name)
    tmp = final + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, data, durable)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        if durable:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise RunError(f"cannot write `{final}`: {exc.strerror}") from None


def _write_all(fd: int, data: bytes, durable: bool) -> None:
    """Write all of `data` (os.write may write less), then fsync when `durable`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if durable:
        os.fsync(fd)


class Recorder:
    """Keeps a run's record as the engine reports transitions (the hooks of
    `report.Reporter`): journal entries, written once per event-loop turn, and
    snapshots at most every `SNAPSHOT_EVERY` seconds while running, and at the end."""

    SNAPSHOT_EVERY = 0.1
    # A snapshot of a big run costs milliseconds (100,000 steps: ~20 ms): space them so
    # that they take at most 1/SNAPSHOT_SHARE of the time.
    SNAPSHOT_SHARE = 100

    def __init__(self, run_dir: RunDir, on_failure) -> None:
        self.run_dir = run_dir
        # Called with the RunError when the record cannot be kept: the engine stops.
        self._on_failure = on_failure
        self._pending: list[tuple] = []
        self._loop = None
        self._flush_scheduled = False
        self._timer = None
        self._every = self.SNAPSHOT_EVERY
        self.error = ""
        self._dropped: set[int] = set()  # steps whose output the journal could not keep
        self.handlers: dict = {}  # the run's handler records, once it ended
        self.items: dict[int, dict[str, int]] = {}  # see Snapshot.items

    def run_started(self, dag, run_dir, records) -> None:
        self.dag = dag
        self.records = records
        rd = self.run_dir
        for i, kept in rd.kept.items():  # a retry: the true records of what is not re-run
            records[i] = kept
        self.started_at = time.time()
        kept = [(i, r) for i, r in enumerate(records) if r.status]
        self._pending.append(
            (1, JOURNAL_VERSION, rd.attempt, rd.run_id, os.getpid(), self.started_at,
             len(records), kept)
        )
        try:  # before any step starts: a full disk fails the run here
            self._flush()
            # No snapshot yet: until the first one (SNAPSHOT_EVERY from now), readers
            # rebuild the run from the journal, which is as cheap for a young run.
        except RunError:
            rd.close()
            raise
        try:
            import asyncio

            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # driven by hand (tests): write at once
            self._loop = None
        if self._loop is not None:
            self._timer = self._loop.call_later(self._every, self._tick)

    def step_started(self, step: int) -> None:
        self._pending.append((2, step, self.records[step].started_at))
        if not self._flush_scheduled:
            self._schedule()

    def step_finished(self, step: int, record) -> None:
        self._pending.append(
            (3, step, record.status, record.exit_code, record.finished_at, record.error,
             record.output, record.cpu, record.rss)
        )
        if not self._flush_scheduled:
            self._schedule()

    def item_finished(self, step: int, index: int, key: str, record, token: int,
                      output: str | None) -> None:
        self._pending.append(
            (6, step, index, key, record.status, record.exit_code, record.started_at,
             record.finished_at, record.error, token, output, record.cpu, record.rss)
        )
        if not self._flush_scheduled:
            self._schedule()

    def item_started(self, step, index, key, token, name) -> None:
        pass  # one entry an item, at its end

    def item_dag(self, step: int, dag_name: str, step_name: str) -> None:
        self._pending.append((7, step, dag_name, step_name))
        if not self._flush_scheduled:
            self._schedule()

    def items_started(self, step: int, counts: dict[str, int]) -> None:
        self.items[step] = counts  # live: each snapshot says the tally so far

    def notice(self, text: str) -> None:
        pass

    def steps_cancelled(self, steps, status, reason) -> None:
        self._pending.append((4, list(steps), status, reason))
        if not self._flush_scheduled:
            self._schedule()

    def run_finished(self, result) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.started_at = result.started_at
        self.handlers = dict(getattr(result, "handlers", None) or {})
        error = self.error
        # A run that could not start says why (a secret that cannot be read).
        self.error = error or getattr(result, "error", "") or _no_space(self.dag, result)
        if self.error and not getattr(result, "error", "x"):
            result.error = self.error  # the reporters after this one say it too
        rd = self.run_dir
        # The space set aside is for exactly this: the last step may have filled the
        # disk. (After a failure the journal was cut back to its last whole frame and
        # the reserve freed already.)
        rd.free_reserve()
        try:
            self._write_end(result)
            self._final_snapshot(int(result.status), result.finished_at)
        except RunError as exc:
            if rd.failure is None:
                rd.failure = exc
        finally:
            rd.close()
        if rd.failure is not None and not error:
            raise rd.failure

    # Internals -------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._loop is None:
            self._flush()
            return
        self._flush_scheduled = True
        self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_scheduled = False
        try:
            self._flush()
        except RunError as exc:
            self._fail(exc)
            return
        if self._timer is None:
            self._timer = self._loop.call_later(self._every, self._tick)

    def _flush(self, durable: bool = False) -> None:
        pending = self._pending
        if pending and self.run_dir.failure is None:
            # Cleared only once written: what a full disk refused is written, without
            # its outputs, at the end (`_write_end`).
            self.run_dir.append(frame(_msgpack.encode(pending)), durable)
            self._pending = []

    def _tick(self) -> None:
        self._timer = None
        if self.run_dir.failure is not None:
            return
        t0 = time.perf_counter()
        try:
            self._flush()
            self._snapshot(1, None, durable=False)
        except RunError as exc:
            self._fail(exc)
            return
        self._every = max(self.SNAPSHOT_EVERY, (time.perf_counter() - t0) * self.SNAPSHOT_SHARE)

    def _fail(self, exc: RunError) -> None:
        """The record cannot be kept (disk full, ...): stop the run, as `dagfast stop`
        would, and free the reserve so that its end can still be recorded."""
        rd = self.run_dir
        rd.failure = exc
        self.error = f"stopped: {exc}"
        rd.free_reserve()
        self._on_failure(exc)

    def _write_end(self, result) -> None:
        """Append what is pending and the run's end. When the record failed (now or
        earlier), the step entries that could not be written go again without their
        outputs (up to 1 MiB each, what may have filled the disk): small enough for the
        space set aside, so that no step stays `running` in the record of an ended run."""
        rd = self.run_dir
        pending, self._pending = self._pending, []
        handlers = dict(getattr(result, "handlers", None) or {}) or None
        end = lambda: (5, int(result.status), result.finished_at, int(result.signal or 0),
                       self.error, handlers)
        if rd.failure is None:
            try:
                rd.append(frame(_msgpack.encode(pending + [end()])), durable=True)
                return
            except RunError as exc:
                rd.failure = exc
                self.error = self.error or f"the end of the journal is missing: {exc}"
        slim = []
        for e in pending:
            if e[0] == 3 and e[6] is not None:  # an End with an output
                self._dropped.add(e[1])
                e = (3, e[1], e[2], e[3], e[4], e[5] or OUTPUT_LOST, None)
            slim.append(e)
        try:
            rd.append(frame(_msgpack.encode(slim + [end()])), durable=True)
        except RunError:
            pass  # the snapshot may still fit: it then says how the run ended

    def _final_snapshot(self, status: int, finished_at: float) -> None:
        """The last snapshot; if it does not fit, again without the outputs the journal
        lacks too, then without any (a file size limit, RLIMIT_FSIZE, is not helped by
        the space set aside): status.json still says how the run ended."""
        try:
            self._snapshot(status, finished_at, durable=True)
            return
        except RunError as exc:
            first = exc
        for lost in (self._dropped, None):
            steps = [
                msgspec.structs.replace(r, output=None, error=r.error or OUTPUT_LOST)
                if r.output is not None and (lost is None or i in lost) else r
                for i, r in enumerate(self.records)
            ]
            try:
                self._snapshot(status, finished_at, durable=True, steps=steps)
                return
            except RunError:
                pass
        raise first

    def _snapshot(self, status: int, finished_at: float | None, durable: bool,
                  steps: list[StepRecord] | None = None) -> None:
        rd = self.run_dir
        rd.write_snapshot(
            Snapshot(
                version=SNAPSHOT_VERSION,
                run_id=rd.run_id,
                dag_name=self.dag.name,
                dag_path=self.dag.path,
                status=status,
                started_at=self.started_at,
                finished_at=finished_at,
                pid=os.getpid(),
                steps=self.records if steps is None else steps,
                attempt=rd.attempt,
                error=self.error,
                journal_offset=rd.journal_offset,
                handlers=self.handlers,
                items=self.items,
            ),
            durable=durable,
        )
