"""The main loop: the only module that sees both the graph and the processes.

The scheduler (`sched`) decides *what* is ready; the executor decides *how many* run;
the run (`state.Run`) holds the data; the reporters (the record first) are told what
happened. Steps with options (conditions, retries, outputs, sub-DAGs, handlers) go
through the slow path (`flow.Flow`), a collaborator with a public interface. Everything
runs on one uvloop event loop, single-threaded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from array import array

import uvloop

from dagfast import sched as _sched
from dagfast.errors import SchedulerBug, SpawnError
from dagfast.exec.base import describe
from dagfast.records.store import Recorder, RunDir
from dagfast.report.base import ConsoleReporter, Reporter, Reporters
from dagfast.runtime.output import open_step_files, open_store, step_files, used_tokens
from dagfast.runtime.state import Run, RunResult, too_long
from dagfast.status import StepStatus

__all__ = ["Engine"]

_SUCCEEDED = StepStatus.SUCCEEDED
_FAILED = StepStatus.FAILED
_ABORTED = StepStatus.ABORTED
_RUNNING = StepStatus.RUNNING


class Engine:
    """Runs one DAG to its end, reporting each transition: ready steps in, executor
    out, events to the record and the reporters.

    `run` holds the data (state.Run); `factory` makes the executor; `run_dir` keeps the
    record (None: nothing is recorded, as in `dagfast dry`); `children` runs sub-DAGs
    (session.Children); `keep`: ids of steps done before (a retry); `plain`: every step
    takes the plain path (a dry run evaluates no condition and calls no sub-DAG);
    `notice`: said once before any step (the system lowered the limit); `items`: a
    retry's fan-out items of before (step id -> key -> records.store.Item)."""

    def __init__(
        self,
        run: Run,
        factory,
        reporter: Reporter | None = None,
        *,
        limit: int,
        run_dir: RunDir | None = None,
        children=None,
        cleanup_sec: float | None = None,
        keep=(),
        nested: bool = False,
        plain: bool = False,
        notice: str = "",
        items=None,
    ) -> None:
        dag = run.dag
        self.run = run
        self.dag = dag
        self.run_dir = run_dir
        # The run's lists, bound once for the hot path (the run still owns them).
        self._steps = dag.steps
        self._records = run.records
        self._outputs = run.outputs
        self.children = children
        hooks = [reporter or Reporter()]
        # Steps that name DAG_RUN_LOG_FILE or DAG_RUN_STEP_STDOUT_FILE/_STDERR_FILE: the
        # variables their environments get (see output.step_files).
        self._step_files: dict[int, dict[bytes, bytes]] = {}
        if run_dir is not None:  # the record is kept whatever the caller wants to hear
            hooks.insert(0, Recorder(run_dir, on_failure=self._record_failed))
            self._step_files, log = step_files(dag, run_dir.path)
            if log is not None:
                hooks.append(_run_log(log))
        self.reporter = Reporters(hooks)
        self.limit = limit
        self.cleanup_sec = dag.max_cleanup_sec if cleanup_sec is None else cleanup_sec
        self.nested = nested
        self._notice = notice
        self._factory = factory
        ptr, idx = dag.dependency_arrays()
        self._sched = _sched.Scheduler(len(dag.steps), ptr, idx, _flags(dag))
        for i in keep:  # a retry: what succeeded before counts as done
            self._sched.finish(i, _sched.PASS)
        featured = not plain and (
            bool(dag.handlers or dag.preconditions or dag.secrets or run.masker is not None)
            or any(s.extra is not None for s in dag.steps)
        )
        self._flow = None
        if featured:
            from dagfast.runtime.flow import Flow  # plain DAGs never load it (start-up)

            self._flow = Flow(self)
        self._waiters: dict[int, asyncio.Future] = {}  # token -> its process's exit
        self._active = 0  # featured steps not yet ended
        self._running: set[int] = set()  # tokens of featured steps' running processes
        self._live_children: set[Engine] = set()
        self._next_start = 0.0  # DAG delaySec: when the next step may start
        # False until flow.begin() has let the steps run: an init handler's exit must
        # not start them while begin() still decides.
        self._steps_allowed = False
        self._kill_handle = None
        self._stop_deadline = 0.0
        self._done: asyncio.Future | None = None
        self.executor = None  # made on the loop, in _main
        self.output = None  # the run's output store (exec._spawn.Store), opened in _main
        self.items = items or {}
        # Fan-out items' output-store tokens come after the steps' and handlers' (and, in
        # a retry, after every token an earlier attempt used).
        self._next_token = len(dag.steps) + len(dag.handlers)

    # The public interface --------------------------------------------------------------

    def run_to_end(self) -> RunResult:
        """Run the DAG on a fresh uvloop loop and return what happened."""
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(self._main(loop))
        finally:
            loop.close()

    async def run_nested(self) -> RunResult:
        """Run on the caller's loop, as a sub-DAG (no signal handlers of its own)."""
        return await self._main(asyncio.get_running_loop())

    @property
    def stopping(self) -> int:
        """The signal that stopped the run; 0 while it runs."""
        return self.run.stopping

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the run: no new step starts, running steps' groups get SIGTERM, then
        SIGKILL after the clean-up period; the run ends `aborted`."""
        if self.run.stopping:
            return
        self.run.stopping = sig
        self._stop_deadline = time.monotonic() + self.cleanup_sec
        for child in tuple(self._live_children):
            child.stop(sig)
        procs = self.executor
        if procs is None:
            return
        procs.note_descendants()  # before any group is signalled and any parent dies
        own = self._own_stop_signals() if self._flow is not None else None
        if own:
            # signalOnStop: those steps get their own signal, so they are signalled one
            # by one; the sweep catches everything else when the clean-up period ends.
            for token in self._running:
                procs.signal(token, own.get(token, signal.SIGTERM))
        else:
            procs.signal_running(signal.SIGTERM)
            procs.signal_all_groups(signal.SIGTERM)
        if self._flow is not None:
            self._flow.wake()
        self._kill_handle = asyncio.get_running_loop().call_later(self.cleanup_sec, self._kill)
        self._check_end()

    def adopt(self, child: Engine) -> None:
        """A sub-DAG's engine now runs under this one: a stop reaches it too."""
        self._live_children.add(child)

    def disown(self, child: Engine) -> None:
        """The sub-DAG's engine has ended."""
        self._live_children.discard(child)

    # The slow path's interface (flow.Flow) -----------------------------------------------

    def begin_execution(self, token: int, env: dict | None = None) -> int:
        """Step `token` runs (again): its output from now on is this execution's, whose
        number (1, 2, ...) is returned; `env`, its process's environment, gets Dagu's
        per-step variables if it names them. Raises SpawnError when it cannot be
        recorded."""
        if self.output is None:
            return 1
        try:
            execution = self.output.begin(token)
            files = self._step_files.get(token)
            if files is not None:
                open_step_files(self.output, token, files)
                if env is not None:
                    env.update(files)
        except OSError as exc:
            raise SpawnError(f"cannot record the step's output: {exc.strerror}") from None
        return execution

    def item_token(self) -> int:
        """A token of the output store that no step, handler or item has used."""
        token = self._next_token
        self._next_token += 1
        return token

    def start_process(self, token: int, argv, env: dict, cwd: str):
        """Start a featured step's process (in the execution begun for it); returns a
        future of its wait status. Raises SpawnError."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters[token] = fut
        try:
            self.executor.start(token, argv, env, cwd)
        except BaseException:
            self._waiters.pop(token, None)
            raise
        self._running.add(token)
        return fut

    def began(self) -> None:
        """A featured step took a slot (it holds it until `ended` is called for it)."""
        self._active += 1
        self.executor.hold()

    def ended(self, i: int, status: StepStatus, code: int | None, error: str,
              outcome: int = -1) -> None:
        """A featured step's end: its slot is free, its record final; refill."""
        self._active -= 1
        self.executor.release()
        self._ended(i, status, code, error, outcome)
        self.fill()

    def write_script(self, i: int, text: str, argv: tuple[str, ...]) -> tuple[str, ...]:
        """The argv that runs step `i`'s `script:` text, written to the run directory."""
        if self.run_dir is None:  # a dry run starts nothing
            return argv
        try:
            path = self.run_dir.write_script(i, text)
        except OSError as exc:
            path = self.run_dir.script_path(i)
            raise SpawnError(f"cannot write the script file `{path}`: {exc.strerror}") from None
        return argv + (path,) if argv else (path,)

    # The loop ---------------------------------------------------------------------------

    async def _main(self, loop) -> RunResult:
        run = self.run
        dag = self.dag
        nested = self.nested
        self._done = loop.create_future()
        self.executor = self._factory(loop, self.limit, self._on_exits)
        self.executor.run_id = run.run_id  # what its stray processes' DAG_RUN_ID says
        if not nested:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop, sig)
        started_at = time.time()
        timer = None
        try:
            # Inside the try: a record that cannot even start (a full disk) must still
            # leave the loop, the signal handlers and the executor cleaned up.
            # An executor that needs the loop first (Dask connects to its cluster);
            # if it cannot, the run never starts: its record says not_started.
            try:
                notice = await self.executor.open(dag)
                if self.run_dir is not None:
                    self.output = open_store(self.run_dir, run.masker,
                                             len(dag.steps) + len(dag.handlers))
                    self.executor.use_output(self.output)
                    self._next_token = max(self._next_token, used_tokens(self.run_dir))
            except BaseException:
                if self.run_dir is not None:
                    self.run_dir.close()
                raise
            if notice and not nested:
                self.reporter.notice(notice)
            if self._notice:
                self.reporter.notice(self._notice)
            self.reporter.run_started(dag, self.run_dir, run.records)
            if dag.timeout_sec:
                timer = loop.call_later(dag.timeout_sec, self._run_timed_out)
            if self._flow is None or await self._flow.begin():
                self._steps_allowed = True
                self.fill()
                await self._done
            # else: DAG preconditions unmet or the init handler failed: no step runs
            if run.stopping:
                await self._sweep()
                if self._kill_handle is not None:
                    # The steps are gone: the handlers that run next are not the stop's
                    # to kill (the timer would otherwise fire in the middle of one).
                    self._kill_handle.cancel()
                    self._kill_handle = None
            if self._flow is not None:
                await self._flow.finish(run.final_status(True))
        finally:
            if timer is not None:
                timer.cancel()
            if not nested:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            if self._kill_handle is not None:
                self._kill_handle.cancel()
            self.executor.close()
            if self.output is not None:
                self.output.close()  # after the spawn threads: none hands it a pipe now
            await self.executor.aclose()
        result = RunResult(
            dag, run.run_id, self.run_dir.path if self.run_dir is not None else "",
            run.final_status(self._flow is not None), run.records, started_at, time.time(),
            0 if run.timed_out else run.stopping, run.outputs_by_name(),
            run.handler_records, run.error,
        )
        self.reporter.run_finished(result)
        return result

    def fill(self) -> None:
        """Start ready steps while the executor has room, then see if we are done.

        First, take as many ready steps as there are free slots, lowest id first. Second,
        start each; a step that cannot start ends failed at once, which may cancel its
        dependents or free more slots, so we go round again until nothing changes.
        """
        if not self._steps_allowed:
            return
        sched = self._sched
        procs = self.executor
        run = self.run
        if self.dag.delay_sec:
            return self._fill_spaced()
        while not run.stopping:
            free = procs.free_slots()
            ready = sched.ready_count
            if free <= 0 or not ready:
                break
            for i in sched.pop(free if free < ready else ready):
                self._start(i)
        self._check_end()

    def _fill_spaced(self) -> None:
        """`fill` for a DAG with `delaySec`: one start per period, as Dagu spaces them."""
        sched = self._sched
        loop = asyncio.get_running_loop()
        while not self.run.stopping and sched.ready_count:
            if self.executor.free_slots() <= 0:
                break
            now = loop.time()
            if now < self._next_start:
                loop.call_at(self._next_start, self.fill)
                break
            self._next_start = now + self.dag.delay_sec
            for i in sched.pop(1):
                self._start(i)
        self._check_end()

    def _start(self, i: int) -> None:
        step = self._steps[i]
        flow = self._flow
        if flow is not None and step.extra is not None:
            return flow.start(i)
        record = self._records[i]
        record.status = _RUNNING
        record.started_at = time.time()
        argv = step.argv
        try:
            if step.script is not None:
                argv = self.write_script(i, step.script, argv)
            env = self.run.env_for(step)
            self.begin_execution(i, env)
            self.executor.start(i, argv, env, step.dir or self.dag.dir)
            if flow is not None:
                self._running.add(i)  # a stop with signalOnStop signals it one by one
        except SpawnError as exc:
            self.reporter.step_started(i)
            self._ended(i, _FAILED, 127, str(exc))
            return
        self.reporter.step_started(i)

    def _on_exits(self, exits: list) -> None:
        """Exits picked up by the executor, in one batch: record, then refill."""
        stopping = self.run.stopping
        featured = self._flow is not None
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
                code, error = describe(wait_status, self._steps[i].name)
                if code == 127:
                    step = self.dag.steps[i]
                    error = too_long(error, lambda: self.run.env_for(step), step.argv, self.dag)
                self._ended(i, _ABORTED if stopping else _FAILED, code, error)
        self.fill()

    def _ended(
        self, i: int, status: StepStatus, code: int | None, error: str, outcome: int = -1
    ) -> None:
        record = self._records[i]
        record.status = status
        record.exit_code = code
        record.finished_at = time.time()
        record.error = error
        cost = self.executor.cost(i)
        if cost is not None:
            record.cpu, record.rss = cost
        if self._outputs:
            record.output = self._outputs.get(i)  # kept in the record for a retry
        self.reporter.step_finished(i, record)
        if outcome < 0:
            if status == _SUCCEEDED or status == StepStatus.PARTIALLY_SUCCEEDED:
                outcome = _sched.PASS
            elif status == StepStatus.SKIPPED:
                outcome = _sched.SKIP
            else:
                outcome = _sched.ABORT
        cancelled = self._sched.finish(i, outcome)
        if cancelled and outcome == _sched.ABORT and self.run.stopping:
            # The run was stopped: its dependents never start, as no step does from now
            # on, and they end as those do (not started), not as if the upstream failed.
            return
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
        if self.executor.running_count or self._active:
            return
        sched = self._sched
        if self.run.stopping or sched.finished():
            if not self._done.done():
                self._done.set_result(None)
            return
        if not sched.ready_count:
            waiting = [self.dag.steps[i].name for i in range(sched.n)
                       if sched.state(i) == _sched.WAITING]
            raise SchedulerBug(
                f"stuck: nothing runs and nothing is ready, but {len(waiting)} steps wait "
                f"(first: {waiting[:3]})"
            )

    # Stopping ---------------------------------------------------------------------------

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

    async def _sweep(self) -> None:
        """After a stop: wait for every step's process group (background children
        included) to go, and SIGKILL what is left when the clean-up period ends."""
        procs = self.executor
        while procs.live_groups():
            if time.monotonic() >= self._stop_deadline:
                self._kill()
                break
            await asyncio.sleep(0.02)

    def _kill(self) -> None:
        self.executor.signal_running(signal.SIGKILL)
        self.executor.signal_all_groups(signal.SIGKILL)

    def _run_timed_out(self) -> None:
        """The DAG's timeoutSec passed: kill what runs; the run ends failed (as Dagu)."""
        self.run.timed_out = True
        self.stop(signal.SIGTERM)
        self._kill()


def _flags(dag):
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


def _run_log(path: str):
    """The run's console lines, as they happen, in the file behind DAG_RUN_LOG_FILE (a
    line-buffered file: a handler that reads it sees every line so far)."""
    try:
        return ConsoleReporter(open(path, "w", buffering=1, encoding="utf-8", opener=_private))
    except OSError:
        return Reporter()  # the variable then names a file that is not there


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
