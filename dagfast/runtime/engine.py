"""The main loop: the only module that sees both the graph and the processes.

The scheduler (`sched`) decides *what* is ready; the process manager (`procs`) decides
*how many* run; the run directory (`store`) keeps the record; the reporter (`report`)
is told what happened. Everything runs on one uvloop event loop, single-threaded.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
from array import array
import signal
import time

import uvloop

from dagfast import sched as _sched
from dagfast.errors import SchedulerBug
from dagfast.model import Dag
from dagfast.exec.base import describe
from dagfast.exec import guardian
from dagfast.exec.local import ProcessManager, SpawnError
from dagfast.report.base import Reporter, Reporters
from dagfast.status import RunStatus, StepStatus
from dagfast.records.store import Recorder, RunDir, StepRecord

__all__ = ["Engine", "RunResult"]

# How long a stopped step gets between SIGTERM and SIGKILL (Dagu's maxCleanUpTimeSec).
DEFAULT_CLEANUP_SEC = 5.0

_SUCCEEDED = StepStatus.SUCCEEDED
_FAILED = StepStatus.FAILED
_ABORTED = StepStatus.ABORTED


class RunResult:
    """What a finished run did: its status and one StepRecord per step, in file order."""

    __slots__ = (
        "dag", "run_id", "path", "status", "steps", "started_at", "finished_at", "signal",
        "outputs", "handlers", "error",
    )  # fmt: skip

    def __init__(
        self, dag, run_id, path, status, steps, started_at, finished_at, sig,
        outputs=None, handlers=None, error="",
    ):  # fmt: skip
        self.dag = dag
        self.run_id = run_id
        self.path = path
        self.status = status
        self.steps = steps
        self.started_at = started_at
        self.finished_at = finished_at
        self.signal = sig
        # Output variables by name (the last writer wins), and handler records by event.
        self.outputs: dict[str, str] = outputs or {}
        self.handlers: dict[str, StepRecord] = handlers or {}
        # Why the run could not go on, when no step says it (a secret could not be read).
        self.error: str = error

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
        cleanup_sec: float | None = None,
        executor=ProcessManager,
        previous=None,
        rerun=None,
        parent: Engine | None = None,
    ) -> None:
        self.dag = dag
        self.run_dir = run_dir
        # The record is kept whatever the caller wants to hear about.
        self.reporter = Reporters(
            (Recorder(run_dir, on_failure=self._record_failed), reporter or Reporter())
        )
        self.limit = dag.max_active_steps if max_active_steps is None else max_active_steps
        self.cleanup_sec = dag.max_cleanup_sec if cleanup_sec is None else cleanup_sec
        # Called as executor(loop, limit, on_exits): anything with the interface that
        # executor.py describes can run the steps (procs.ProcessManager, the default;
        # daskexec.DaskExecutors; tests and benchmarks pass doubles).
        self._executor = executor
        if parent is not None:
            self._environ = parent._base_env  # the caller's env, its DAG's env and params
        else:
            self._environ = os.environb if environ is None else {
                os.fsencode(k): os.fsencode(v) for k, v in environ.items()
            }
        self.parent = parent
        n = len(dag.steps)
        self._records = [StepRecord() for _ in range(n)]
        ptr, idx = dag.dependency_arrays()
        self._sched = _sched.Scheduler(n, ptr, idx, _flags(dag))
        # The slow path (steps with a StepExtra, handlers, sub-DAGs); see stepflow.py.
        self._featured = (
            bool(dag.handlers or dag.preconditions)
            or any(s.extra is not None for s in dag.steps)
        )
        self.error = ""  # see RunResult.error
        # secrets.Masker once the run's secrets (or its caller's) are read; see stepflow.
        self.masker = parent.masker if parent is not None else None
        if dag.secrets or self.masker is not None:
            # Every step, plain ones too, takes the slow path, whose processes write
            # through pipes that the engine masks into the logs (logpipe.py). Only runs
            # with secrets pay for it: the plain path is untouched.
            self._featured = True
            self._start = functools.partial(_slow_path().start, self)
            self._pumps: set = set()  # logpipe.Pumps still open
            from dagfast.exec import pump as logpipe

            self.limit, self._fit_note = logpipe.fit(self.limit)
        self._waiters: dict[int, asyncio.Future] = {}  # token -> its process's exit
        self._active = 0  # featured steps not yet ended
        self._running: set[int] = set()  # tokens of featured engines' running processes
        self.outputs: dict[int, str] = {}  # step id -> captured output
        self._covered: set[int] = set()  # failed steps that continueOn let pass
        self._children: set[Engine] = set()
        self._timed_out = False
        self._failed_handler = False
        self._handler_records: dict[str, StepRecord] = {}
        self._next_start = 0.0  # DAG delaySec: when the next step may start
        if previous is not None:
            self._keep_succeeded(previous, rerun)
        self._stopping = 0  # the signal that stopped the run, 0 while it runs
        # False until stepflow.begin() has let the steps run: an init handler's exit
        # must not start them while begin() still decides.
        self._steps_allowed = False
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
        for child in tuple(self._children):
            child.stop(sig)
        procs = self._procs
        if procs is None:
            return
        note = getattr(procs, "note_descendants", None)
        if note is not None:
            note()  # before any group is signalled and any parent dies
        own = self._own_stop_signals() if self._featured else None
        if own:
            # signalOnStop: those steps get their own signal, so they are signalled one
            # by one; the sweep catches everything else when the clean-up period ends.
            for token in self._running:
                procs.signal(token, own.get(token, signal.SIGTERM))
        else:
            procs.signal_running(signal.SIGTERM)
            procs.signal_all_groups(signal.SIGTERM)
        if self._featured:
            _slow_path().wake(self)
        self._kill_handle = asyncio.get_running_loop().call_later(self.cleanup_sec, self._kill)
        self._check_end()

    def _record_failed(self, exc) -> None:
        """The run's record cannot be kept (a full disk, ...): stop as `stop` would; the
        reason stays on the run directory (`run_dir.failure`) for the caller."""
        self.stop(signal.SIGTERM)

    def _own_stop_signals(self) -> dict[int, int]:
        """token -> signalOnStop of the running steps that set one."""
        steps = self.dag.steps
        own = {}
        for token in self._running:
            if token < len(steps):
                extra = steps[token].extra
                if extra is not None and extra.signal_on_stop:
                    own[token] = extra.signal_on_stop
        return own

    def _keep_succeeded(self, previous, rerun) -> None:
        """A retry: steps that succeeded in `previous` (StepRecords in file order) keep
        their records and outputs and count as done; every other step runs again, and
        so do the ids in `rerun` (`retry --step`) whatever they did before."""
        if len(previous) != len(self._records):
            raise SchedulerBug(
                f"a retry got {len(previous)} earlier step records for {len(self._records)} steps"
            )
        again = frozenset(rerun or ())
        for i, old in enumerate(previous):
            if i in again:
                continue
            # With `rerun`, every step not named keeps its record, whatever it did.
            if old.status == _SUCCEEDED or again:
                self._records[i] = StepRecord(
                    old.status, old.exit_code, old.started_at, old.finished_at, old.error,
                    old.output,
                )
                if old.output is not None:
                    self.outputs[i] = old.output
                self._sched.finish(i, _sched.PASS)

    # The loop ---------------------------------------------------------------------------

    async def run_nested(self) -> RunResult:
        """Run on the caller's loop, as a sub-DAG of `parent` (no signal handlers)."""
        return await self._main(asyncio.get_running_loop(), nested=True)

    async def _main(self, loop, nested: bool = False) -> RunResult:
        dag = self.dag
        self._base_env = self._make_base_env()
        self._done = loop.create_future()
        guard = None  # guardian: this process's death ends the run's steps (exec/guardian.py),
        if not nested and self._executor is ProcessManager:  # forked before the spawn threads
            guard = guardian.start(self.run_dir.run_id)
        self._procs = self._executor(loop, self.limit, self._on_exits)
        capped = getattr(self._procs, "capped", "")
        if capped and not nested and self._procs.free_slots() < len(dag.steps):
            # Said once, before any step: the DAG asked for more than the system allows,
            # and a run that dies of EMFILE helps nobody.
            self.reporter.notice(capped)
        if not nested:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop, sig)
        started_at = time.time()
        self._started_at = started_at
        timer = None
        try:
            # Inside the try: a record that cannot even start (a full disk) must still
            # leave the loop, the signal handlers and the process manager cleaned up.
            opening = getattr(self._procs, "open", None)
            if opening is not None:
                # An executor that needs the loop first (Dask connects to its cluster).
                # If it cannot, the run never starts: its record says not_started.
                try:
                    notice = await opening(dag)
                except BaseException:
                    self.run_dir.close()
                    raise
                if notice and not nested:
                    self.reporter.notice(notice)
            self.reporter.run_started(dag, self.run_dir, self._records)
            if dag.timeout_sec:
                timer = loop.call_later(dag.timeout_sec, self._run_timed_out)
            if self._featured and not await _slow_path().begin(self):
                pass  # DAG preconditions unmet or the init handler failed: no step runs
            else:
                self._steps_allowed = True
                self._fill()
                await self._done
            if self._stopping:
                await self._sweep()
                if self._kill_handle is not None:
                    # The steps are gone: the handlers that run next are not the stop's
                    # to kill (the timer would otherwise fire in the middle of one).
                    self._kill_handle.cancel()
                    self._kill_handle = None
            if self._featured:
                await _slow_path().finish(self, self._final_status())
        finally:
            if timer is not None:
                timer.cancel()
            if not nested:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            if self._kill_handle is not None:
                self._kill_handle.cancel()
            self._procs.close()
            closing = getattr(self._procs, "aclose", None)
            if closing is not None:
                await closing()
            if guard is not None:  # guardian: the run ended, its background children stay
                guard.stand_down()
        status = self._final_status()
        finished_at = time.time()
        names = {}
        if self.outputs:
            steps = dag.steps
            names = {steps[i].extra.output: v for i, v in sorted(self.outputs.items())}
        result = RunResult(
            dag, self.run_dir.run_id, self.run_dir.path, status, self._records,
            started_at, finished_at, 0 if self._timed_out else self._stopping,
            names, self._handler_records, self.error,
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
        if self.dag.delay_sec:
            return self._fill_spaced()
        while not self._stopping:
            free = procs.free_slots()
            ready = sched.ready_count
            if free <= 0 or not ready:
                break
            for i in sched.pop(free if free < ready else ready):
                self._start(i)
        self._check_end()

    def _fill_spaced(self) -> None:
        """`_fill` for a DAG with `delaySec`: one start per period, as Dagu spaces them."""
        sched = self._sched
        loop = asyncio.get_running_loop()
        while not self._stopping and sched.ready_count:
            if self._procs.free_slots() <= 0:
                break
            now = loop.time()
            if now < self._next_start:
                loop.call_at(self._next_start, self._fill)
                break
            self._next_start = now + self.dag.delay_sec
            for i in sched.pop(1):
                self._start(i)
        self._check_end()

    def _start(self, i: int) -> None:
        step = self.dag.steps[i]
        if step.extra is not None:
            return _slow_path().start(self, i)
        run_dir = self.run_dir
        record = self._records[i]
        record.status = StepStatus.RUNNING
        record.started_at = time.time()
        env = self._base_env.copy()
        env[b"DAG_RUN_STEP_NAME"] = step.name.encode()
        for k, v in step.env:
            if "\ue002" in v:  # an output no upstream step gives: the DAG's value or ""
                from dagfast.runtime.outputs import fill_refs

                env[k.encode()] = fill_refs(v, env).encode("utf-8", "surrogateescape")
            else:
                env[k.encode()] = v.encode()
        argv = step.argv
        try:
            if step.script is not None:
                argv = self._write_script(i, step.script, argv)
            self._procs.start(
                i, argv, env, step.dir or self.dag.dir,
                run_dir.stdout_path(i), run_dir.stderr_path(i),
            )
            if self._featured:
                self._running.add(i)
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
        featured = self._featured
        for i, wait_status in exits:
            if featured:
                self._running.discard(i)
                waiter = self._waiters.pop(i, None)
                if waiter is not None:
                    waiter.set_result(wait_status)  # a featured step's coroutine goes on
                    continue
            if wait_status == 0:  # the common case, without a call
                self._ended(i, _SUCCEEDED, 0, "")
            else:
                code, error = describe(wait_status)
                if code == 127:
                    step = self.dag.steps[i]
                    error = too_long(error, lambda: {**self._base_env, **{
                        k.encode(): v.encode() for k, v in step.env}}, step.argv, self.dag)
                self._ended(i, _ABORTED if stopping else _FAILED, code, error)
        if self._steps_allowed:
            self._fill()

    def _ended(
        self, i: int, status: StepStatus, code: int | None, error: str, outcome: int = -1
    ) -> None:
        record = self._records[i]
        record.status = status
        record.exit_code = code
        record.finished_at = time.time()
        record.error = error
        if self.outputs:
            record.output = self.outputs.get(i)  # kept in the record for a retry
        self.reporter.step_finished(i, record)
        if outcome < 0:
            if status == _SUCCEEDED or status == StepStatus.PARTIALLY_SUCCEEDED:
                outcome = _sched.PASS
            elif status == StepStatus.SKIPPED:
                outcome = _sched.SKIP
            else:
                outcome = _sched.ABORT
        cancelled = self._sched.finish(i, outcome)
        if cancelled:
            status, why = _ABORTED, "upstream failed"
            if outcome == _sched.SKIP:
                status, why = StepStatus.SKIPPED, "upstream skipped"
            records = self._records
            for j in cancelled:
                r = records[j]
                r.status = status
                r.error = why
            self.reporter.steps_cancelled(cancelled, status, why)

    def _check_end(self) -> None:
        if self._procs.running_count or self._active:
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

    def _run_timed_out(self) -> None:
        """The DAG's timeoutSec passed: kill what runs; the run ends failed (as Dagu)."""
        self._timed_out = True
        self.stop(signal.SIGTERM)
        self._kill()

    # Helpers ----------------------------------------------------------------------------

    def _make_base_env(self) -> dict:
        env = dict(self._environ)
        for k, v in self.dag.env:
            env[k.encode()] = v.encode()
        for k, v in self.dag.params:
            if k is not None:
                env[k.encode()] = v.encode()
        env[b"DAG_NAME"] = self.dag.name.encode()
        env[b"DAG_RUN_ID"] = self.run_dir.run_id.encode()
        return env

    def _final_status(self) -> RunStatus:
        if self._timed_out or self._failed_handler:
            return RunStatus.FAILED
        if self._stopping:
            return RunStatus.ABORTED
        if not self._featured:
            for r in self._records:
                if r.status != _SUCCEEDED:
                    return RunStatus.FAILED
            return RunStatus.SUCCEEDED
        return _slow_path().final_status(self)


_E2BIG = os.strerror(errno.E2BIG)
MAX_ARG_STRLEN = 128 * 1024  # Linux: the most one argument or `NAME=value` may hold


def too_long(error: str, get_env, argv, dag: Dag) -> str:
    """`error` of a step that could not start; for E2BIG, said in the user's terms: which
    value is too big (an output over 128 KiB is the usual one). `get_env()` gives the
    step's environment, built only then."""
    if not error.endswith(_E2BIG):
        return error
    env = get_env()
    big = max(env.items(), key=lambda kv: len(kv[0]) + len(kv[1]), default=None)
    outputs = {s.extra.output for s in dag.steps if s.extra is not None and s.extra.output}
    if big is not None and len(big[0]) + len(big[1]) + 1 >= MAX_ARG_STRLEN:
        name = os.fsdecode(big[0])
        kind = "output" if name in outputs else "variable"
        return (
            f"{error}: an environment value or the command is over 128 KiB "
            f"({kind} `{name}` holds {len(big[1])} bytes)"
        )
    longest = max((len(os.fsencode(a)) for a in argv), default=0)
    if longest >= MAX_ARG_STRLEN:
        return f"{error}: the command is over 128 KiB ({longest} bytes)"
    return f"{error}: the environment and the command together are over the system's limit"


def _slow_path():
    """The stepflow module, imported by the first run that has a featured step: a DAG of
    plain steps never loads it (~10 ms of a one-step run's start-up)."""
    from dagfast.runtime import flow as stepflow

    return stepflow


def _flags(dag: Dag):
    """PASS_SKIPPED for the steps with continueOn.skipped (None when no step has it)."""
    marked = [
        i for i, s in enumerate(dag.steps)
        if s.extra is not None and s.extra.continue_on is not None and s.extra.continue_on.skipped
    ]  # fmt: skip
    if not marked:
        return None
    flags = array("B", bytes(len(dag.steps)))
    for i in marked:
        flags[i] = _sched.PASS_SKIPPED
    return flags


