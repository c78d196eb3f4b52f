"""`dagfast scheduler DIR`: run every DAG file of a directory on its `schedule`.

One plain loop. Each turn, First, reaps the runs that ended; Second, rescans the directory
(every SCAN_SEC: new, edited and deleted files, by mtime, size and inode); Third, fires
the DAGs whose tick is due. A tick is claimed in `scheduler/ticks/<key>` under the home
before anything else (the file replaced whole, never rewritten in place), so a tick is
handled once even across restarts, kill -9 or two schedulers; ticks missed while no
scheduler ran, or claimed by one killed before it started their run, are not run (no
catch-up), only logged. A fired tick runs `dagfast run --no-queue FILE` in a child
process (its own session), unless the DAG is at `maxActiveRuns` (1 when absent, as in
Dagu) or `skipIfSuccessful` applies: then the tick is skipped and logged. The tick file also keeps the pid of the run started for
the last tick, so that `skipIfSuccessful` can tell the scheduler's own run from a run by
hand, across restarts too. A schedule that fails (no next date) unschedules its file, and
is logged; it never stops the others. The clock and the process launcher are injectable.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

from dagfast.loader.cron import ScheduleError
from dagfast.errors import DagfastError
from dagfast.records.store import (
    home, make_private_dirs, old_dag_dir_name, run_id_time, write_atomic,
)

__all__ = ["DagFile", "Scheduler", "main"]

SCAN_SEC = 1.0  # how often the directory is looked at again
MAX_SLEEP_SEC = 0.2  # how long the loop sleeps at most (how soon a signal is seen)
LAUNCHES_KEPT = 16  # how many of its launches (pids) per file the scheduler remembers
EXIT_BUSY = 75  # `run --no-queue` found the DAG at maxActiveRuns


def main(args) -> int:
    """The `scheduler` command: serve until SIGINT or SIGTERM, then shut down cleanly."""
    from dagfast.errors import UsageError  # start-up: the module is imported for --help too

    if not os.path.isdir(args.dir):
        raise UsageError(f"`{args.dir}` is not a directory")
    sched = Scheduler(args.dir, home())
    signal.signal(signal.SIGTERM, sched.request_stop)
    signal.signal(signal.SIGINT, sched.request_stop)
    sched.serve(on_stop=args.on_stop)
    return 0


class DagFile:
    """One DAG file as the scheduler knows it: its DAG (None if it failed to load), its
    crons, its next tick, the runs the scheduler started for it that still run, and the
    pids of its last runs started (with their ticks)."""

    def __init__(self, path: str, stamp: tuple) -> None:
        self.path = path
        self.stamp = stamp
        self.dag = None
        self.crons: list = []
        self.key = ""
        self.next_at: float | None = None
        self.children: list = []
        self.launched: dict[int, float] = {}  # pid -> the tick its run was started for


class Scheduler:
    """Fires DAG files' ticks; `turn(now)` is one pass, `serve` loops over it."""

    def __init__(self, directory: str, home_dir: str, *, clock=time.time, launch=None,
                 log=None) -> None:
        self.dir = os.path.abspath(directory)
        self.home = home_dir
        self.clock = clock
        self.launch = launch or self._launch
        self.log = log or _stderr_log
        self.files: dict[str, DagFile] = {}
        self.orphans: list[tuple[str, object]] = []  # runs of files since deleted
        self.next_scan = 0.0
        self.stopping = 0  # the signal that asked us to stop
        self.ticks_dir = os.path.join(home_dir, "scheduler", "ticks")
        self.logs_dir = os.path.join(home_dir, "scheduler", "logs")

    # The loop ---------------------------------------------------------------------------

    def request_stop(self, sig=signal.SIGTERM, frame=None) -> None:
        """Ask the loop to shut down (a signal handler); a second request stops the runs."""
        self.stopping, first = int(sig), not self.stopping
        if not first:
            self._stop_children()

    def serve(self, on_stop: str = "wait", sleep=time.sleep) -> None:
        """Turn until asked to stop, then wait for (or stop) the runs still going."""
        self.log(f"started: watching {self.dir}")
        while not self.stopping:
            wake = self.turn(self.clock())
            sleep(max(0.0, min(wake - self.clock(), MAX_SLEEP_SEC)))
        name = signal.Signals(self.stopping).name
        running = self.running()
        self.log(f"{name}: shutting down; {len(running)} runs going, "
                 f"{'stopping' if on_stop == 'stop' else 'waiting for'} them")
        if on_stop == "stop":
            self._stop_children()
        while self.running():
            self._reap()
            sleep(0.05)
        self._reap()
        self.log("stopped")

    def turn(self, now: float) -> float:
        """One pass at time `now`: reap, rescan if due, fire due ticks; the time of the
        next thing to do."""
        self._reap()
        if now >= self.next_scan:
            self.scan(now)
            self.next_scan = now + SCAN_SEC
        wake = self.next_scan
        for f in list(self.files.values()):
            if f.next_at is not None and f.next_at <= now:
                tick = f.next_at
                # A schedule with no next date, or a home we cannot read or write, is
                # logged; this file waits (for an edit, or its next tick), the others go on.
                try:
                    f.next_at = min(c.next(max(tick, now)) for c in f.crons)
                except ScheduleError as exc:
                    f.next_at = None
                    self.log(f"{f.dag.name}: {exc}; no tick after this one until the "
                             "file changes")
                try:
                    self.fire(f, tick, now)
                except (DagfastError, OSError) as exc:  # ScheduleError, RunError
                    why = exc.strerror or exc if isinstance(exc, OSError) else exc
                    self.log(f"{f.dag.name}: tick {_when(tick)} not run: {why}")
            if f.next_at is not None:
                wake = min(wake, f.next_at)
        return wake

    def running(self) -> list:
        """The runs this scheduler started that have not ended yet."""
        kids = [c for f in self.files.values() for c in f.children]
        return kids + [c for _, c in self.orphans]

    # Files ------------------------------------------------------------------------------

    def scan(self, now: float) -> None:
        """Pick up new, edited and deleted DAG files."""
        seen = {}
        try:
            entries = list(os.scandir(self.dir))
        except OSError as exc:
            self.log(f"cannot read {self.dir}: {exc.strerror}")
            return
        for e in entries:
            if e.name.startswith(".") or not e.name.endswith((".yaml", ".yml")):
                continue
            try:
                st = e.stat()
            except OSError:
                continue
            seen[e.path] = (st.st_mtime_ns, st.st_size, st.st_ino)
        for path in sorted(set(self.files) - set(seen)):
            f = self.files.pop(path)
            self.orphans.extend((path, c) for c in f.children)
            self.log(f"removed {_rel(path)}: no longer scheduled")
        for path, stamp in sorted(seen.items()):
            old = self.files.get(path)
            if old is not None and old.stamp == stamp:
                continue
            f = DagFile(path, stamp)
            if old is not None:
                f.children, f.launched = old.children, old.launched
            self.files[path] = f
            self._load(f, now, "reloaded" if old is not None else "added")

    def _load(self, f: DagFile, now: float, how: str) -> None:
        # the loader and croniter once a DAG file is read (start-up of `--help`)
        from dagfast.loader.cron import parse_all
        from dagfast.errors import LoadError
        from dagfast.loader import load

        try:
            f.dag = load(f.path)
            f.crons = parse_all(f.dag.schedule)
            if f.crons:
                f.next_at = min(c.next(now) for c in f.crons)
                prev = max(c.prev(now) for c in f.crons)
        except LoadError as exc:
            f.dag = None
            first = exc.problems[0] if exc.problems else exc
            more = f" (and {len(exc.problems) - 1} more problems)" if len(exc.problems) > 1 else ""
            self.log(f"cannot load {_rel(f.path)}: {first}{more}; skipped until it changes")
            return
        except ScheduleError as exc:
            f.dag, f.next_at = None, None
            self.log(f"cannot load {_rel(f.path)}: {exc}; skipped until it changes")
            return
        except Exception as exc:  # a bug in the loader must not stop the other DAGs
            f.dag, f.next_at = None, None
            self.log(f"cannot load {_rel(f.path)}: internal error (this is a bug): "
                     f"{type(exc).__name__}: {exc}; skipped until it changes")
            return
        if not f.crons:
            self.log(f"{how} {_rel(f.path)}: no schedule, not run")
            return
        # The file's path makes the key unique; the name, as older homes have it, is for
        # the reader.
        f.key = f"{old_dag_dir_name(f.dag.name)}-{hashlib.sha1(f.path.encode()).hexdigest()[:8]}"
        self.log(f"{how} {_rel(f.path)}: `{f.dag.name}`, next run {_when(f.next_at)}")
        try:
            last, pid = _TickFile(self.ticks_dir, f.key).read()
        except OSError:
            last, pid = None, 0
        if pid == CLAIMED:
            self._cut_short(f, last)
        if last is not None:
            if prev > last:
                self.log(f"{f.dag.name}: ticks since {_when(last)} were missed while no "
                         f"scheduler ran (latest {_when(prev)}); not run")

    def _cut_short(self, f: DagFile, tick: float) -> None:
        """A tick was claimed and its scheduler died before it started a run or logged a
        skip: log it as missed, once (unless another scheduler is at it right now)."""
        with _TickFile(self.ticks_dir, f.key) as ticks:
            if ticks.read() == (tick, CLAIMED):
                ticks.write(tick, 0)
                self.log(f"{f.dag.name}: tick {_when(tick)} was missed: its scheduler "
                         "stopped after claiming it, before starting a run; not run")

    # Ticks ------------------------------------------------------------------------------

    def fire(self, f: DagFile, tick: float, now: float) -> None:
        """Handle `f`'s tick at `tick`: claim it, then start a run or log why not. The
        tick file is held from the claim to the launch: another scheduler never sees a
        claim in progress, so a claim it sees unresolved was cut short (see `_load`)."""
        dag = f.dag
        with _TickFile(self.ticks_dir, f.key) as ticks:
            before = ticks.read()
            if before[0] is not None and before[0] >= tick:
                self.log(f"{dag.name}: tick {_when(tick)} skipped: already handled")
                return
            ticks.write(tick, CLAIMED)
            if before[1] > 0:  # the pid of the run started for the last tick (maybe by
                f.launched.setdefault(before[1], before[0])  # another scheduler, or before a restart)
            why = self.skip_reason(f, tick)
            if why:
                ticks.write(tick, 0)
                self.log(f"{dag.name}: tick {_when(tick)} skipped: {why}")
                return
            make_private_dirs(self.logs_dir)
            child = self.launch(f.path, os.path.join(self.logs_dir, f"{f.key}.log"))
            f.children.append(child)
            f.launched[child.pid] = tick
            while len(f.launched) > LAUNCHES_KEPT:
                del f.launched[next(iter(f.launched))]
            try:
                ticks.write(tick, child.pid)
            except DagfastError:
                pass  # the pid is only a hint for skipIfSuccessful; the run has started
        self.log(f"{dag.name}: tick {_when(tick)}: started (pid {child.pid})")

    def skip_reason(self, f: DagFile, tick: float) -> str:
        """Why `f`'s tick should not run ('' if it should). Reads only."""
        dag = f.dag
        limit = dag.max_active_runs or 1
        mine = sum(1 for c in f.children if c.poll() is None)
        if mine >= limit:
            return f"maxActiveRuns ({limit}) runs going"
        latest = self._latest(dag.name)
        if dag.max_active_runs:
            from dagfast.records.runslots import occupancy  # only DAGs with maxActiveRuns

            held, waiting = occupancy(dag.name, limit, self.home)
            if held >= limit or waiting:
                return f"maxActiveRuns ({limit}) runs going" + (
                    f", {waiting} queued" if waiting else "")
        elif latest is not None and latest.owner_alive and latest.finished_at is None:
            return f"its latest run {latest.run_id} is still going (maxActiveRuns 1)"
        if dag.skip_if_successful:
            prev = max(c.prev(tick) for c in f.crons)
            other = self._succeeded_since(dag.name, prev, f.launched)
            if other:
                return (f"skipIfSuccessful: run {other} succeeded since the "
                        f"previous tick {_when(prev)}")
        return ""

    def _succeeded_since(self, name: str, since: float, ours: dict[int, float]) -> str:
        """The id of a run of `name` that started at or after `since` and succeeded, other
        than the runs this scheduler started for its ticks (`ours`: pid -> tick); ''.

        As Dagu: the run started for the previous tick does not make the next one skip;
        only another run (by hand, say) does. Runs are read newest first. One created
        before `since` may still have started after it (it waited in a queue, or its
        start was slow), so the scan does not stop there; but such a run is read only if
        its directory changed since `since`: a run that ended `succeeded` wrote its final
        status there (a rename) after it started, so an older directory cannot hold one
        that started since. A stat per older run, not a read."""
        # the records once a DAG's runs are read (start-up of `--help`)
        from dagfast.errors import RunError
        from dagfast.records.read import read_run, runs_of
        from dagfast.status import RunStatus

        for path in reversed(runs_of(self.home, name)):
            created = run_id_time(os.path.basename(path))
            if created is None or created < since - 0.001:  # ids hold milliseconds
                try:
                    # 2 s of slack: file systems whose times are that coarse (FAT).
                    if os.stat(path).st_mtime < since - 2:
                        continue
                except OSError:
                    continue
            try:
                run = read_run(path)
            except RunError:
                continue
            started = run.started_at or 0
            if run.status != RunStatus.SUCCEEDED or started < since:
                continue
            if run.pid in ours and started >= ours[run.pid]:
                continue  # a run this scheduler started for a tick
            return run.run_id
        return ""

    def _latest(self, name: str):
        # the records once a DAG's runs are read (start-up of `--help`)
        from dagfast.errors import RunError
        from dagfast.records.read import latest_run, read_run

        path = latest_run(self.home, name)
        if path is None:
            return None
        try:
            return read_run(path)
        except RunError:
            return None

    # Runs -------------------------------------------------------------------------------

    def _reap(self) -> None:
        for f in self.files.values():
            f.children = [c for c in f.children if not self._ended(f.dag.name if f.dag else f.path, c)]
        self.orphans = [(p, c) for p, c in self.orphans if not self._ended(_rel(p), c)]

    def _ended(self, name: str, child) -> bool:
        code = child.poll()
        if code is None:
            return False
        if code == EXIT_BUSY:
            self.log(f"{name}: run (pid {child.pid}) not started: maxActiveRuns reached")
        else:
            self.log(f"{name}: run (pid {child.pid}) ended, exit status {code}")
        return True

    def _stop_children(self) -> None:
        for c in self.running():
            try:
                c.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _launch(self, path: str, log_path: str):
        out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "dagfast", "run", "--no-queue", "--quiet", path],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=os.path.dirname(path), start_new_session=True,
                env=dict(os.environ, DAGFAST_HOME=self.home),  # records where we look
            )
        finally:
            os.close(out)


def _stderr_log(text: str) -> None:
    """One line a event on stderr, with the time."""
    sys.stderr.write(f"{_when(time.time())} scheduler: {text}\n")
    sys.stderr.flush()


# The pid a tick file holds while its tick is claimed but neither run nor skipped yet.
CLAIMED = -1


class _TickFile:
    """`ticks/<key>`, `<tick>[ <pid>]`: the last tick handled for a DAG file, and the pid
    of the run started for it (0: none; CLAIMED). Held (`<key>.lock`, flock) by one
    scheduler at a time; written whole, durably and atomically (temporary file, fsync,
    rename): a scheduler killed at any moment leaves the old line or the new, never an
    empty file that would hand the tick over again."""

    def __init__(self, directory: str, key: str) -> None:
        self.dir, self.key = directory, key

    def __enter__(self) -> _TickFile:
        import fcntl

        make_private_dirs(self.dir)
        self._fd = os.open(os.path.join(self.dir, self.key + ".lock"),
                           os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self._fd)
            raise
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)  # drops the flock

    def read(self) -> tuple[float | None, int]:
        try:
            with open(os.path.join(self.dir, self.key), "rb") as fh:
                return _tick_file(fh.read(64))
        except FileNotFoundError:
            return None, 0

    def write(self, tick: float, pid: int) -> None:
        """RunError if it cannot be written (the tick is then not run, and logged)."""
        line = f"{tick!r} {pid}\n" if pid else f"{tick!r}\n"
        write_atomic(self.dir, self.key, line.encode(), durable=True)


def _tick_file(raw: bytes) -> tuple[float | None, int]:
    """(tick, pid) from a tick file's `<tick>[ <pid>]`; (None, 0) when empty or garbled."""
    parts = raw.decode(errors="replace").split()
    try:
        tick = float(parts[0]) if parts else None
        pid = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None, 0
    return tick, pid


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _rel(path: str) -> str:
    return os.path.basename(path)
