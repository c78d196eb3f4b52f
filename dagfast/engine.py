"""The main loop: the only module that sees both the graph and the processes.

The scheduler (`sched`) decides *what* is ready; the process manager (`procs`) decides
*how many* run; the run directory (`store`) keeps the record; the reporter (`report`)
is told what happened. Everything runs on one uvloop event loop, single-threaded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import uvloop

from . import sched as _sched
from .errors import SchedulerBug
from .model import Dag
from .procs import ProcessManager, SpawnError
from .report import Reporter, Reporters
from .status import RunStatus, StepStatus
from .store import Recorder, RunDir, StepRecord

__all__ = ["Engine", "RunResult"]

# How long a stopped step gets between SIGTERM and SIGKILL (Dagu's maxCleanUpTimeSec).
DEFAULT_CLEANUP_SEC = 5.0

_SUCCEEDED = StepStatus.SUCCEEDED
_FAILED = StepStatus.FAILED
_ABORTED = StepStatus.ABORTED


class RunResult:
    """What a finished run did: its status and one StepRecord per step, in file order."""

    __slots__ = ("dag", "run_id", "path", "status", "steps", "started_at", "finished_at", "signal")

    def __init__(self, dag, run_id, path, status, steps, started_at, finished_at, sig):
        self.dag = dag
        self.run_id = run_id
        self.path = path
        self.status = status
        self.steps = steps
        self.started_at = started_at
        self.finished_at = finished_at
        self.signal = sig

    def step(self, name: str) -> StepRecord:
        """The record of the step called `name`."""
        return self.steps[self.dag.index(name)]


class Engine:
    """Runs one DAG to its end in a run directory, reporting each transition."""

    def __init__(
        self,
        dag: Dag,
        run_dir: RunDir,
        reporter: Reporter | None = None,
        *,
        max_active_steps: int | None = None,
        environ=None,
        cleanup_sec: float = DEFAULT_CLEANUP_SEC,
        executor=ProcessManager,
        previous=None,
    ) -> None:
        self.dag = dag
        self.run_dir = run_dir
        # The record is kept whatever the caller wants to hear about.
        self.reporter = Reporters((Recorder(run_dir), reporter or Reporter()))
        self.limit = dag.max_active_steps if max_active_steps is None else max_active_steps
        self.cleanup_sec = cleanup_sec
        # Called as executor(loop, limit, on_exits): anything with ProcessManager's
        # methods can run the steps (tests and benchmarks pass doubles).
        self._executor = executor
        self._environ = os.environb if environ is None else {
            os.fsencode(k): os.fsencode(v) for k, v in environ.items()
        }
        n = len(dag.steps)
        self._records = [StepRecord() for _ in range(n)]
        ptr, idx = dag.dependency_arrays()
        self._sched = _sched.Scheduler(n, ptr, idx)
        if previous is not None:
            self._keep_succeeded(previous)
        self._stopping = 0  # the signal that stopped the run, 0 while it runs
        self._kill_handle = None
        self._done: asyncio.Future | None = None
        self._procs: ProcessManager | None = None

    # The public entry point -------------------------------------------------------------

    def run(self) -> RunResult:
        """Run the DAG on a fresh uvloop loop and return what happened."""
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(self._main(loop))
        finally:
            loop.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the run: no new step starts, running steps' groups get SIGTERM, then
        SIGKILL after the clean-up period; the run ends `aborted`."""
        if self._stopping:
            return
        self._stopping = sig
        self._stop_deadline = time.monotonic() + self.cleanup_sec
        procs = self._procs
        if procs is None:
            return
        procs.signal_running(signal.SIGTERM)
        procs.signal_all_groups(signal.SIGTERM)
        self._kill_handle = asyncio.get_running_loop().call_later(self.cleanup_sec, self._kill)
        self._check_end()

    def _keep_succeeded(self, previous) -> None:
        """A retry: steps that succeeded in `previous` (StepRecords in file order) keep
        their records and count as done; every other step runs again."""
        if len(previous) != len(self._records):
            raise SchedulerBug(
                f"a retry got {len(previous)} earlier step records for {len(self._records)} steps"
            )
        for i, old in enumerate(previous):
            if old.status == _SUCCEEDED:
                self._records[i] = StepRecord(
                    old.status, old.exit_code, old.started_at, old.finished_at, old.error
                )
                self._sched.finish(i, _sched.PASS)

    # The loop ---------------------------------------------------------------------------

    async def _main(self, loop) -> RunResult:
        dag = self.dag
        self._base_env = self._make_base_env()
        self._done = loop.create_future()
        self._procs = self._executor(loop, self.limit, self._on_exits)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop, sig)
        started_at = time.time()
        self._started_at = started_at
        self.reporter.run_started(dag, self.run_dir, self._records)
        try:
            self._fill()
            await self._done
            if self._stopping:
                await self._sweep()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if self._kill_handle is not None:
                self._kill_handle.cancel()
            self._procs.close()
        status = self._final_status()
        finished_at = time.time()
        result = RunResult(
            dag, self.run_dir.run_id, self.run_dir.path, status, self._records,
            started_at, finished_at, self._stopping,
        )
        self.reporter.run_finished(result)
        return result

    def _fill(self) -> None:
        """Start ready steps while the process manager has room, then see if we are done.

        First, take as many ready steps as there are free slots, lowest id first. Second,
        start each; a step that cannot start ends failed at once, which may cancel its
        dependents or free more slots, so we go round again until nothing changes.
        """
        sched = self._sched
        procs = self._procs
        while not self._stopping:
            free = procs.free_slots()
            ready = sched.ready_count
            if free <= 0 or not ready:
                break
            for i in sched.pop(free if free < ready else ready):
                self._start(i)
        self._check_end()

    def _start(self, i: int) -> None:
        step = self.dag.steps[i]
        run_dir = self.run_dir
        record = self._records[i]
        record.status = StepStatus.RUNNING
        record.started_at = time.time()
        env = self._base_env.copy()
        env[b"DAG_RUN_STEP_NAME"] = step.name.encode()
        for k, v in step.env:
            env[k.encode()] = v.encode()
        argv = step.argv
        try:
            if step.script is not None:
                argv = self._write_script(i, step.script, argv)
            self._procs.start(
                i, argv, env, step.dir or self.dag.dir,
                run_dir.stdout_path(i), run_dir.stderr_path(i),
            )
        except SpawnError as exc:
            self.reporter.step_started(i)
            self._ended(i, _FAILED, 127, str(exc))
            return
        self.reporter.step_started(i)

    def _write_script(self, i: int, text: str, argv: tuple[str, ...]) -> tuple[str, ...]:
        path = self.run_dir.script_path(i)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise SpawnError(f"cannot write the script file `{path}`: {exc.strerror}") from None
        return argv + (path,) if argv else (path,)

    def _on_exits(self, exits: list) -> None:
        """Exits picked up by the process manager, in one batch: record, then refill."""
        stopping = self._stopping
        for i, wait_status in exits:
            if os.WIFSIGNALED(wait_status):
                sig = os.WTERMSIG(wait_status)
                code = 128 + sig
                status = _ABORTED if stopping else _FAILED
                self._ended(i, status, code, f"killed by {_signame(sig)}")
            else:
                code = os.waitstatus_to_exitcode(wait_status)
                if code == 0:
                    self._ended(i, _SUCCEEDED, 0, "")
                else:
                    self._ended(i, _ABORTED if stopping else _FAILED, code, f"exit status {code}")
        self._fill()

    def _ended(self, i: int, status: StepStatus, code: int, error: str) -> None:
        record = self._records[i]
        record.status = status
        record.exit_code = code
        record.finished_at = time.time()
        record.error = error
        self.reporter.step_finished(i, record)
        outcome = _sched.PASS if status == _SUCCEEDED else _sched.ABORT
        cancelled = self._sched.finish(i, outcome)
        if cancelled:
            records = self._records
            for j in cancelled:
                r = records[j]
                r.status = _ABORTED
                r.error = "upstream failed"
            self.reporter.steps_cancelled(cancelled, _ABORTED, "upstream failed")

    def _check_end(self) -> None:
        if self._procs.running_count:
            return
        sched = self._sched
        if self._stopping or sched.finished():
            if not self._done.done():
                self._done.set_result(None)
            return
        if not sched.ready_count:
            waiting = [self.dag.steps[i].name for i in range(sched.n) if sched.state(i) == _sched.WAITING]
            raise SchedulerBug(
                f"stuck: nothing runs and nothing is ready, but {len(waiting)} steps wait "
                f"(first: {waiting[:3]})"
            )

    async def _sweep(self) -> None:
        """After a stop: wait for every step's process group (background children
        included) to go, and SIGKILL what is left when the clean-up period ends."""
        procs = self._procs
        while procs.live_groups():
            if time.monotonic() >= self._stop_deadline:
                self._kill()
                break
            await asyncio.sleep(0.02)

    def _kill(self) -> None:
        self._procs.signal_running(signal.SIGKILL)
        self._procs.signal_all_groups(signal.SIGKILL)

    # Helpers ----------------------------------------------------------------------------

    def _make_base_env(self) -> dict:
        env = dict(self._environ)
        for k, v in self.dag.env:
            env[k.encode()] = v.encode()
        env[b"DAG_NAME"] = self.dag.name.encode()
        env[b"DAG_RUN_ID"] = self.run_dir.run_id.encode()
        return env

    def _final_status(self) -> RunStatus:
        if self._stopping:
            return RunStatus.ABORTED
        for r in self._records:
            if r.status != _SUCCEEDED:
                return RunStatus.FAILED
        return RunStatus.SUCCEEDED


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
