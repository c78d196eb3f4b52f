"""Reading runs back: find them under the home, rebuild their state from the snapshot and
the journal, and tell whether their owner still lives. Reading never changes a record."""

from __future__ import annotations

import fcntl
import os

import msgspec

from dagfast.errors import RunError
from dagfast.records.journal import frames
from dagfast.records.outstore import STDERR, STDOUT, Output
from dagfast.model import Dag
from dagfast.status import RunStatus, StepStatus
from dagfast.records.store import (
    DAG_VERSION, JOURNAL_VERSION, SNAPSHOT_VERSION, Begin, Cancel, End, Entry, Fan, Finish, Item,
    OUTPUT_LOST, Snapshot, Start, StepRecord, dag_dir_name, old_dag_dir_name,
)

__all__ = [
    "RunState", "child_runs", "dag_names", "find_run", "follow_step_log", "latest_run",
    "owner_pid", "read_run", "runs_of", "step_attempts", "step_log",
]

_snapshot = msgspec.json.Decoder(Snapshot)
_entries = msgspec.msgpack.Decoder(list[Entry])
_dag = msgspec.json.Decoder(Dag)


class _Versioned(msgspec.Struct):
    """Just the `version` of a JSON record, read before the rest: a newer dagfast may
    have changed everything else."""

    version: int = 1


_version = msgspec.json.Decoder(_Versioned)
_ENTRY_KINDS = frozenset(t.__struct_config__.tag for t in (Begin, Start, End, Cancel, Finish, Item, Fan))


class RunState(msgspec.Struct):  # a Struct, not a dataclass: 9 ms less start-up
    """One run as its record tells it, plus whether its owner is alive."""

    path: str
    run_id: str
    dag_name: str = ""
    dag_path: str = ""
    attempt: int = 1
    status: int = RunStatus.NOT_STARTED
    started_at: float | None = None
    finished_at: float | None = None
    pid: int = 0
    error: str = ""
    steps: list[StepRecord] = msgspec.field(default_factory=list)
    handlers: dict[str, StepRecord] = msgspec.field(default_factory=dict)  # by event, if they ran
    items: dict[int, dict[str, int]] = msgspec.field(default_factory=dict)  # see Snapshot.items
    # A fan-out item's run (records.address): step i's output is under token tokens[i]
    # of the output store in `path` (its caller's run); None for a run of its own.
    tokens: list[int] | None = None
    virtual_dag: Dag | None = None  # such a run's DAG (it has no dag.json of its own)
    journal_end: int = 0  # the byte just past the last whole frame
    torn: bool = False  # the journal ended in a torn or corrupt frame
    rebuilt: bool = False  # the snapshot was corrupt: rebuilt from the journal
    owner_alive: bool = False

    def token(self, i: int) -> int:
        """Where step `i`'s output is in the output store of `path`."""
        return self.tokens[i] if self.tokens is not None else i

    @property
    def interrupted(self) -> bool:
        """The record says running (or queued), or nothing yet (the owner died before
        its first journal record), but no process holds the run any more."""
        if self.owner_alive:
            return False
        if self.status == RunStatus.NOT_STARTED:
            return self.finished_at is None
        return self.status in (RunStatus.RUNNING, RunStatus.QUEUED)

    @property
    def last_recorded_at(self) -> float | None:
        """The latest time the record holds (the run's start, a step's start or end):
        how far an interrupted run is known to have got."""
        times = [self.started_at]
        for r in self.steps:
            times += (r.started_at, r.finished_at)
        known = [t for t in times if t is not None]
        return max(known) if known else None

    @property
    def label(self) -> str:
        """`interrupted`, or the run status's name."""
        return "interrupted" if self.interrupted else RunStatus(self.status).label

    def dag(self) -> Dag:
        """The DAG as it was loaded for this run."""
        if self.virtual_dag is not None:
            return self.virtual_dag
        path = os.path.join(self.path, "dag.json")
        try:
            with open(path, "rb") as f:
                data = f.read()
            _check_version(path, "DAG", _version.decode(data).version, DAG_VERSION)
            return _dag.decode(data)
        except (OSError, msgspec.DecodeError, RunError) as exc:
            raise RunError(f"cannot read the DAG of run `{self.run_id}`: {exc}") from None


def read_run(path: str) -> RunState:
    """The state of the run in `path`: the snapshot, brought up to date by the journal
    entries after it (all of them when the snapshot is missing or corrupt). RunError,
    naming the run and why, when the record cannot be read."""
    try:
        return _read_run(path)
    except RunError as exc:
        run_id = os.path.basename(path)
        raise RunError(f"the record of run `{run_id}` is unreadable: {exc}") from None


def _read_run(path: str) -> RunState:
    state = RunState(path=path, run_id=os.path.basename(path))
    data = _read(os.path.join(path, "journal"))
    snap = None
    raw = _read(os.path.join(path, "status.json"))
    if raw:
        try:
            version = _version.decode(raw).version
        except msgspec.DecodeError:
            version = None  # corrupt: rebuilt from the journal below
        if version is not None:
            _check_version(os.path.join(path, "status.json"), "snapshot", version,
                           SNAPSHOT_VERSION)
        try:
            snap = _snapshot.decode(raw)
        except msgspec.DecodeError:
            snap = None
    offset = 0
    if snap is not None and snap.journal_offset <= len(data):
        _apply_snapshot(state, snap)
        offset = snap.journal_offset
    payloads, end, torn = frames(data, offset)
    if offset and torn and not payloads:
        # The snapshot points into the journal somewhere that is not a frame: trust
        # the journal alone.
        snap = None
    if snap is None:
        state = RunState(path=path, run_id=state.run_id, rebuilt=bool(raw))
        payloads, end, torn = frames(data, 0)
        if raw and not data:
            raise RunError("corrupt status.json, empty journal")
    for payload in payloads:
        try:
            entries = _entries.decode(payload)
        except msgspec.DecodeError:
            # A frame with a good CRC that this version cannot decode was most likely
            # written by a newer one: say so, rather than read it as torn (a retry
            # would cut it off).
            _check_newer_journal(path, payload)
            torn = True
            break
        try:
            _replay(state, entries)
        except (IndexError, TypeError):
            raise RunError("its journal names a step the run does not have") from None
    state.journal_end = end
    state.torn = torn
    if snap is not None and any(r.error == OUTPUT_LOST for r in state.steps):
        _recover_outputs(state, data)
    if state.finished_at is not None:
        _close_unended_steps(state)
    if not state.dag_name:  # rebuilt: the journal does not repeat what dag.json says
        try:
            dag = state.dag()
            state.dag_name, state.dag_path = dag.name, dag.path
            if not state.steps:  # the owner died before its first step started
                state.steps = [StepRecord() for _ in dag.steps]
        except RunError:
            state.dag_name = os.path.basename(os.path.dirname(path))
    state.owner_alive = owner_pid(path) is not None
    if not state.pid:  # no Begin yet: the lock still says whose run it was
        text = _read(os.path.join(path, "lock")).strip()
        state.pid = int(text) if text.isdigit() else 0
    return state


def owner_pid(path: str) -> int | None:
    """The pid of the process holding the run in `path`, or None if none does."""
    lock = os.path.join(path, "lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def runs_of(home_dir: str, dag: str, file: str | None = None) -> list[str]:
    """The run directories of the DAG called exactly `dag` (and, with `file`, loaded from
    that file, symbolic links resolved), oldest first."""
    root = os.path.join(home_dir, "runs")
    runs = _runs_in(os.path.join(root, dag_dir_name(dag)))
    old = old_dag_dir_name(dag)
    if old != dag_dir_name(dag):
        # A home from before names were kept apart: this name's runs may be there, among
        # other names'.
        runs += [r for r in _runs_in(os.path.join(root, old)) if _origin(r)[0] == dag]
    if file is not None:
        real = os.path.realpath(file)
        runs = [r for r in runs if os.path.realpath(_origin(r)[1]) == real]
    return sorted(runs, key=os.path.basename)


def dag_names(home_dir: str) -> list[str]:
    """The names of the DAGs that have runs under `home_dir`, sorted."""
    root = os.path.join(home_dir, "runs")
    names = {_origin(r)[0] for d in _listdir(root) for r in _runs_in(os.path.join(root, d))}
    return sorted(n for n in names if n)


def find_run(home_dir: str, run_id: str) -> str | None:
    """The directory of the run `run_id` (any DAG), or None."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        return None
    root = os.path.join(home_dir, "runs")
    for d in _listdir(root):
        path = os.path.join(root, d, run_id)
        if os.path.exists(os.path.join(path, "dag.json")):
            return path
    top, dot, _ = run_id.partition(".")
    if dot:  # a sub-run's id, `<run id>.<step>.<k>[.a<attempt>]...`: under its caller's
        path = find_run(home_dir, top)
        while path is not None and os.path.basename(path) != run_id:
            path = _sub_run_toward(path, run_id)
        return path
    return None


def _sub_run_toward(path: str, run_id: str) -> str | None:
    """The sub-run directory under the run at `path` that is `run_id` or one of its
    callers (its id is a prefix of `run_id` up to a dot)."""
    root = os.path.join(path, "children", "runs")
    for d in _listdir(root):
        for sub in _runs_in(os.path.join(root, d)):
            name = os.path.basename(sub)
            if run_id == name or run_id.startswith(name + "."):
                if run_id == name or not run_id[len(name) + 1:].startswith("a"):
                    return sub
    return None


def latest_run(home_dir: str, dag: str | None = None, file: str | None = None) -> str | None:
    """The most recently started run (of `dag`, and of `file`; or of any DAG), or None."""
    if dag is not None:
        runs = runs_of(home_dir, dag, file)
        return runs[-1] if runs else None
    root = os.path.join(home_dir, "runs")
    runs = [r for d in _listdir(root) for r in _runs_in(os.path.join(root, d))]
    return max(runs, key=os.path.basename) if runs else None


# Steps' logs and sub-runs --------------------------------------------------------------
# Every read of a step's log bytes goes through step_log / step_attempts /
# follow_step_log: they alone know where the bytes live.


def step_log(run_path: str, step: int, stream: str, attempt: int | None = None,
             last: int | None = None, limit: int | None = None) -> bytes:
    """Step `step`'s `stream` ("out" or "err") in the run at `run_path` (its output
    store): of its latest execution, or of execution `attempt` (1 = the first; retries,
    repeats and `dagfast retry` each add one); only its `last` bytes, or its first
    `limit`, when given. b"" when there is none."""
    k = STDERR if stream == "err" else STDOUT
    try:
        with Output(run_path) as out:
            if last is not None and attempt is None:
                return out.tail(step, k, last)
            data = out.read(step, k, attempt, limit)
    except OSError:
        return b""
    return data[-last:] if last is not None else data


def step_attempts(run_path: str, step: int) -> int:
    """How many executions of step `step` began in the run (0: it never ran)."""
    try:
        with Output(run_path) as out:
            return out.executions(step)
    except OSError:
        return 0


def follow_step_log(run_path: str, step: int, stream: str, write, wait) -> None:
    """Pass what step `step` writes to `stream` to `write(bytes)` until the run's owner
    is gone and everything is read; `wait()` is called when there is nothing new. Each
    round reads only the records that are new; a new execution is followed from its
    start."""
    k = STDERR if stream == "err" else STDOUT
    with Output(run_path) as out:
        after, execution = -1, None
        while True:
            alive = owner_pid(run_path) is not None
            now = out.executions(step)
            if now != execution:
                after, execution = -1, now
            data, after = out.since(step, k, after, execution)
            if data:
                write(data)
            elif not alive:
                return
            else:
                wait()


def child_runs(run_path: str, step: int) -> list[tuple[int, str]]:
    """The sub-runs of step `step` of the run at `run_path` in its last run attempt:
    (item index K, run directory), K in order."""
    run_id = os.path.basename(run_path)
    prefix = f"{run_id}.{step}."
    found: dict[int, tuple[int, str]] = {}
    root = os.path.join(run_path, "children", "runs")
    for d in _listdir(root):
        for path in _runs_in(os.path.join(root, d)):
            rest = os.path.basename(path)[len(prefix):]
            if not os.path.basename(path).startswith(prefix):
                continue
            k, _, tries = rest.partition(".a")
            if not k.isdigit() or (tries and not tries.isdigit()):
                continue
            attempt = int(tries or 1)
            if int(k) not in found or found[int(k)][0] < attempt:
                found[int(k)] = (attempt, path)
    return [(k, found[k][1]) for k in sorted(found)]


# Internals -----------------------------------------------------------------------------


def _runs_in(parent: str) -> list[str]:
    # A dot name is a run being deleted (records.prune): no longer a run.
    return [os.path.join(parent, n) for n in _listdir(parent)
            if not n.startswith(".") and os.path.exists(os.path.join(parent, n, "dag.json"))]


class _Origin(msgspec.Struct):
    """Just the name and file of a run's DAG (its dag.json holds much more)."""

    name: str = ""
    path: str = ""


_origin_of = msgspec.json.Decoder(_Origin)


def _origin(run: str) -> tuple[str, str]:
    """(name, file) of the DAG of the run in `run`; ("", "") if unreadable."""
    try:
        with open(os.path.join(run, "dag.json"), "rb") as f:
            got = _origin_of.decode(f.read())
        return got.name, got.path
    except (OSError, msgspec.DecodeError):
        return "", ""


def _listdir(path: str) -> list[str]:
    """The names in `path`; none if it does not exist; RunError if it cannot be read
    (the home under a regular file, no permission)."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunError(f"cannot read `{path}`: {exc.strerror}") from None


def _check_version(path: str, what: str, version: int, known: int) -> None:
    if version > known:
        raise RunError(f"`{path}` was written by a newer dagfast ({what} version {version}; "
                       f"this one reads up to {known})")


def _check_newer_journal(run_path: str, payload) -> None:
    """RunError if the undecodable `payload` holds an entry of a newer journal."""
    try:
        entries = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        return
    if not isinstance(entries, list):
        return
    path = os.path.join(run_path, "journal")
    for e in entries:
        if not (isinstance(e, list) and e and isinstance(e[0], int)):
            continue
        if e[0] == Begin.__struct_config__.tag and len(e) > 1 and isinstance(e[1], int):
            _check_version(path, "journal", e[1], JOURNAL_VERSION)
        elif e[0] not in _ENTRY_KINDS:
            raise RunError(f"`{path}` was written by a newer dagfast (entry kind {e[0]} is "
                           f"unknown to this one, which reads journal version {JOURNAL_VERSION})")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise RunError(f"cannot read `{path}`: {exc.strerror}") from None


def _apply_snapshot(state: RunState, snap: Snapshot) -> None:
    state.dag_name = snap.dag_name
    state.dag_path = snap.dag_path
    state.attempt = snap.attempt
    state.status = snap.status
    state.started_at = snap.started_at
    state.finished_at = snap.finished_at
    state.pid = snap.pid
    state.error = snap.error
    state.steps = snap.steps
    state.handlers = dict(snap.handlers)
    state.items = dict(snap.items)


def _recover_outputs(state: RunState, data: bytes) -> None:
    """A final snapshot that had to leave outputs out (a full disk) keeps the ones its
    journal holds: a retry gives them to the steps that run again."""
    full = RunState(path=state.path, run_id=state.run_id)
    payloads, _, _ = frames(data, 0)
    try:
        for payload in payloads:
            _replay(full, _entries.decode(payload))
    except (msgspec.DecodeError, IndexError, TypeError, RunError):
        return
    if len(full.steps) != len(state.steps):
        return
    for r, j in zip(state.steps, full.steps):
        if r.error == OUTPUT_LOST and j.output is not None and j.status == r.status:
            r.output, r.error = j.output, j.error


def _close_unended_steps(state: RunState) -> None:
    """A run that ended has no running step: one whose end its record lacks (the disk
    filled before it could be written) was stopped with the run, so it reads aborted."""
    for r in state.steps:
        if r.status == StepStatus.RUNNING:
            r.status = StepStatus.ABORTED
            r.finished_at = state.finished_at
            r.error = r.error or "its end was not recorded (the record could not be kept)"


def _replay(state: RunState, entries: list) -> None:
    steps = state.steps
    for e in entries:
        kind = type(e)
        if kind is End:
            r = steps[e.step]
            r.status, r.exit_code, r.finished_at, r.error, r.output, r.cpu, r.rss = (
                e.status, e.exit_code, e.at, e.error, e.output, e.cpu, e.rss)
        elif kind is Start:
            r = steps[e.step]
            r.status = StepStatus.RUNNING
            r.started_at = e.at
        elif kind is Cancel:
            for i in e.steps:
                steps[i].status = e.status
                steps[i].error = e.reason
        elif kind is Finish:
            state.status = e.status
            state.finished_at = e.at
            state.error = e.error
            if e.handlers is not None:
                state.handlers = dict(e.handlers)
        elif kind is Begin:
            _check_version(os.path.join(state.path, "journal"), "journal", e.version,
                           JOURNAL_VERSION)
            steps = state.steps = [StepRecord() for _ in range(e.steps)]
            for i, r in e.kept:
                steps[i] = r
            state.attempt = e.attempt
            state.pid = e.pid
            state.started_at = e.started_at
            state.finished_at = None
            state.status = RunStatus.RUNNING
            state.error = ""
