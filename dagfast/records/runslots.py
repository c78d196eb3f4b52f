"""`maxActiveRuns`: at most N runs of a DAG at once, across processes, waiting in order.

A DAG's runs share a directory `slots/<dag>/` under the home (`<dag>` as in `runs/`:
the DAG's name, so every file of that name shares the limit, as its records do):

    mutex         flock'ed for a moment by whoever reads or changes the queue
    <k>.lock      slot k (0 <= k < N): flock'ed by the process running a run, for its
                  whole life; the kernel frees it when that process dies, however it dies
    queue/<seq>   a waiter's ticket, flock'ed by it while it waits; lowest seq first

A newcomer takes a free slot at once only when nobody waits; otherwise it queues behind
the others (or, with `queue=False`, gives up: RunsFull). Only the head of the queue
takes a slot that frees. A ticket whose lock is free belongs to a dead waiter and is
removed. No daemon: every process that runs the DAG enforces the limit.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time

from dagfast.status import RunStatus
from dagfast.errors import RunError, RunsFull, Stopped  # defined with the others
from dagfast.records.read import owner_pid, read_run, runs_of
from dagfast.records.store import RunDir, Snapshot, StepRecord, dag_dir_name, make_private_dirs

__all__ = [
    "RunsFull", "Slot", "Stopped", "occupancy", "run_dir_for", "take", "take_or_stop",
    "waiting_line",
]

POLL_SEC = 0.05  # how often a waiter looks for a free slot


class Slot:
    """One held slot; `release` (or the process's end) frees it."""

    def __init__(self, fd: int, index: int) -> None:
        self.fd = fd
        self.index = index

    def release(self) -> None:
        """Free the slot (closing the descriptor drops the flock)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def take(name: str, limit: int, home_dir: str, *, queue: bool = True,
         on_queued=None, poll: float = POLL_SEC) -> Slot:
    """A slot among `limit` for the DAG called `name`: at once if one is free and nobody
    waits; else, with `queue`, after the waiters that came first (`on_queued()` is called
    once, before waiting); else RunsFull."""
    q = _Queue(name, home_dir)
    with q.locked():
        q.purge()
        if not q.tickets():
            slot = q.try_slot(limit)
            if slot is not None:
                return slot
        if not queue:
            raise RunsFull(name, limit)
        ticket = q.enqueue()
    try:
        if on_queued is not None:
            on_queued()
        while True:
            with q.locked():
                q.purge()
                if q.tickets()[0] == ticket[0]:
                    slot = q.try_slot(limit)
                    if slot is not None:
                        q.dequeue(ticket)
                        ticket = None
                        return slot
            time.sleep(poll)
    finally:
        if ticket is not None:
            with q.locked():
                q.dequeue(ticket)


def occupancy(name: str, limit: int, home_dir: str) -> tuple[int, int]:
    """(runs holding a slot, runs waiting) for the DAG called `name`; reads only."""
    q = _Queue(name, home_dir)
    held = sum(1 for k in range(limit) if _held(os.path.join(q.dir, f"{k}.lock")))
    waiting = 0
    try:
        names = os.listdir(q.queue_dir)
    except FileNotFoundError:
        names = []
    for n in names:
        waiting += _held(os.path.join(q.queue_dir, n))
    return held, waiting


def take_or_stop(name: str, limit: int, home_dir: str, *, queue: bool = True,
                 on_queued=None, on_stopped=None) -> Slot:
    """`take`, where SIGINT or SIGTERM while waiting raise Stopped (after
    `on_stopped(Stopped)`), whatever handlers the caller had."""

    def stop(sig, frame):
        raise Stopped(sig)

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (api.run from a thread): no handler
        old = None
    try:
        return take(name, limit, home_dir, queue=queue, on_queued=on_queued)
    except (Stopped, KeyboardInterrupt) as exc:
        stopped = exc if isinstance(exc, Stopped) else Stopped(signal.SIGINT)
        if on_stopped is not None:
            on_stopped(stopped)
        if stopped is exc:
            raise
        raise stopped from None
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def run_dir_for(dag, home_dir: str, *, queue: bool = True, on_queued=None):
    """Take a slot for a run of `dag` and make its run directory: `(slot, run_dir)`.

    A run that has to wait gets its record first, with status `queued` (since the time it
    queued), so that `status` shows it, and `on_queued(text)` is told (`waiting_line`);
    SIGINT or SIGTERM while it waits ends it `aborted`, its time in the queue kept, and
    raises Stopped, which says so."""
    made: list = []

    def queued() -> None:
        made.append(RunDir.create(dag, home_dir))
        made.append(time.time())
        _write_status(made[0], dag, 5, made[1], None, "")  # RunStatus.QUEUED
        if on_queued is not None:
            on_queued(waiting_line(dag.name, dag.max_active_runs, home_dir, made[0].run_id))

    def stopped(exc: Stopped) -> None:
        if made:
            # Its record keeps the time it queued, and says why it never started.
            now = time.time()
            exc.run_id, exc.dag, exc.waited = made[0].run_id, dag.name, now - made[1]
            _write_status(made[0], dag, 3, made[1], now, str(exc))  # RunStatus.ABORTED
            made[0].close()

    slot = take_or_stop(dag.name, dag.max_active_runs, home_dir, queue=queue,
                        on_queued=queued, on_stopped=stopped)
    try:
        run_dir = made[0] if made else RunDir.create(dag, home_dir)
    except BaseException:
        slot.release()
        raise
    return slot, run_dir


def waiting_line(name: str, limit: int, home_dir: str, run_id: str) -> str:
    """What a queued run says: `run R: waiting for a run slot of D: 2 of 2 in use (runs
    A, B); Ctrl-C leaves the queue`, the runs being those of D that hold a slot now."""
    held, _ = occupancy(name, limit, home_dir)
    holders = _running(name, home_dir, run_id, held)
    runs = f" (run{'s' if len(holders) != 1 else ''} {', '.join(holders)})" if holders else ""
    return (f"run {run_id}: waiting for a run slot of {name}: {held} of {limit} in use"
            f"{runs}; Ctrl-C leaves the queue, running nothing")


def _running(name: str, home_dir: str, own: str, most: int) -> list[str]:
    """Up to `most` ids of the DAG's runs that are running now (their owner alive and
    their record not queued), newest first; `own` left out."""
    found = []
    for path in reversed(runs_of(home_dir, name)[-200:]):
        if len(found) >= most:
            break
        if os.path.basename(path) == own or owner_pid(path) is None:
            continue
        try:
            if read_run(path).status == RunStatus.QUEUED:  # waiting, not holding a slot
                continue
        except RunError:
            continue
        found.append(os.path.basename(path))
    return found


# Internals -----------------------------------------------------------------------------


def _write_status(run_dir, dag, status: int, started_at: float, finished_at, error: str) -> None:
    run_dir.write_snapshot(Snapshot(
        version=2, run_id=run_dir.run_id, dag_name=dag.name, dag_path=dag.path,
        status=status, started_at=started_at, finished_at=finished_at, pid=os.getpid(), steps=[StepRecord() for _ in dag.steps],
        error=error, journal_offset=0,
    ), durable=finished_at is not None)


def _held(path: str) -> bool:
    """Whether some process holds the flock on `path` (False when there is no file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock if we got it
    return False


class _Queue:
    """The slot directory of one DAG; every method but `locked` expects the mutex held."""

    def __init__(self, name: str, home_dir: str) -> None:
        self.dir = os.path.join(home_dir, "slots", dag_dir_name(name))
        self.queue_dir = os.path.join(self.dir, "queue")

    def locked(self):
        return _Mutex(self)

    def tickets(self) -> list[str]:
        """The waiting tickets' names, first come first."""
        return sorted(os.listdir(self.queue_dir))

    def purge(self) -> None:
        """Remove the tickets of waiters that died."""
        for n in os.listdir(self.queue_dir):
            path = os.path.join(self.queue_dir, n)
            if not _held(path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def try_slot(self, limit: int) -> Slot | None:
        for k in range(limit):
            fd = _open(os.path.join(self.dir, f"{k}.lock"))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return Slot(fd, k)
        return None

    def enqueue(self) -> tuple[str, int]:
        """A new ticket behind every other: (name, locked fd)."""
        names = self.tickets()
        seq = int(names[-1]) + 1 if names else 0
        name = f"{seq:012d}"
        fd = _open(os.path.join(self.queue_dir, name))
        fcntl.flock(fd, fcntl.LOCK_EX)  # nobody else can hold it: we made it, under mutex
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return name, fd

    def dequeue(self, ticket: tuple[str, int]) -> None:
        try:
            os.unlink(os.path.join(self.queue_dir, ticket[0]))
        except FileNotFoundError:
            pass
        os.close(ticket[1])


class _Mutex:
    def __init__(self, q: _Queue) -> None:
        self.q = q
        self.fd = -1

    def __enter__(self) -> _Queue:
        try:
            make_private_dirs(self.q.queue_dir)  # the home too, if this comes first: 0700
            self.fd = _open(os.path.join(self.q.dir, "mutex"))
        except OSError as exc:
            raise RunError(f"cannot use the run slots in `{self.q.dir}`: {exc.strerror}") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.q

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def _open(path: str) -> int:
    # O_CLOEXEC: step processes must not inherit a slot (a background child would hold it)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
