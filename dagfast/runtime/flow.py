"""The engine's slow path: one coroutine per step that has a StepExtra, plus handlers.

A plain step is started and ended by the engine's callbacks alone. A featured step
holds its slot from the moment it is popped until it ends, and goes through, in order:
preconditions, delaySec, the process (or sub-DAG) with timeoutSec, retryPolicy and
repeatPolicy, output capture, continueOn. Its process's exit comes back through the
same `on_exits` batch of the engine, to the future `Engine.start_process` gave.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import msgspec

from dagfast.errors import OutputTooLarge, SecretError, SpawnError
from dagfast.exec.base import describe
from dagfast.model import Step, StepExtra
from dagfast.records.read import step_log
from dagfast.records.store import StepRecord
from dagfast.runtime.conditions import is_met
from dagfast.runtime.outputs import capture, expand_refs
from dagfast.runtime.state import pause, too_long
from dagfast.status import RunStatus, StepStatus

__all__ = ["Flow"]

_SUCCEEDED = StepStatus.SUCCEEDED
_FAILED = StepStatus.FAILED
_ABORTED = StepStatus.ABORTED
TIMEOUT_EXIT = 124
_PLAIN = StepExtra()


class Flow:
    """The slow path of one engine: featured steps, the run's edges (secrets, DAG
    preconditions, handlers) and sleeps that a stop interrupts. It changes the run only
    through the engine's public interface and the run's data (state.Run)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.run = engine.run
        self._tasks: set[asyncio.Task] = set()  # strong references while they run
        self._wake = asyncio.Event()  # set when the run is stopped: ends every sleep

    def start(self, i: int) -> None:
        """Step `i` was popped: it holds a slot until its coroutine ends it."""
        record = self.run.records[i]
        record.status = StepStatus.RUNNING
        record.started_at = time.time()
        engine = self.engine
        engine.began()
        engine.reporter.step_started(i)
        task = asyncio.get_running_loop().create_task(self._run_step(i))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wake(self) -> None:
        """The run was stopped: end every sleep."""
        self._wake.set()

    async def until_stopped(self) -> None:
        """Returns once the run is stopped."""
        await self._wake.wait()

    async def _run_step(self, i: int) -> None:
        try:
            status, code, error, outcome = await self._step_outcome(i)
        except Exception as exc:  # a bug; the run must still end
            status, code, error, outcome = _FAILED, None, f"internal error: {exc!r}", -1
        if error and self.run.masker is not None:
            error = self.run.masker.text(error)  # a sub-DAG's error may quote a value
        self.engine.ended(i, status, code, error, outcome)

    async def _step_outcome(self, i: int):
        """(status, exit code, error, scheduler outcome or -1) of featured step `i`."""
        engine = self.engine
        run = self.run
        dag = run.dag
        step = dag.steps[i]
        ex = step.extra or _PLAIN  # a plain step of a run with secrets
        env = run.env_for(step, ex.sees)
        cwd = step.dir or dag.dir
        if ex.preconditions:
            values = run.seen_values(ex.sees)
            text_env = _str_env(env)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for cond in ex.preconditions:
                left = max(0.0, ex.timeout_sec - (loop.time() - t0)) if ex.timeout_sec else None
                met = await self._holds(_with_refs(cond, values), text_env, cwd, left)
                if met is None:  # interrupted, its processes killed
                    if run.stopping:
                        return _ABORTED, None, "the run was stopped", -1
                    why = f"step timed out after {ex.timeout_sec:g}s (in its preconditions)"
                    return _FAILED, TIMEOUT_EXIT, why, -1
                if not met:
                    return StepStatus.SKIPPED, None, "precondition not met", -1
        if ex.delay_sec:
            await self.sleep(ex.delay_sec)
        if run.stopping:
            return _ABORTED, None, "the run was stopped", -1
        if ex.outputs or ex.reads is not None:
            from dagfast.runtime import stepoutputs  # only Dagu 2.x outputs (start-up)

            if ex.reads is not None:
                stepoutputs.fill_env(run, step, env)
            if ex.outputs:
                stepoutputs.prepare(engine.run_dir.path, i, env)
        if ex.call is not None:
            from dagfast.runtime import subdag  # only DAGs that call sub-DAGs (start-up)

            try:
                engine.begin_execution(i)
            except SpawnError as exc:
                return _FAILED, 127, str(exc), -1
            status, code, error = await subdag.run(self, i, step, env)
        elif ex.parallel is not None:  # a command step's items: its command per item
            from dagfast.runtime import fanout  # only DAGs with fan-out steps (start-up)

            try:
                engine.begin_execution(i)
            except SpawnError as exc:
                return _FAILED, 127, str(exc), -1
            status, code, error = await fanout.run(self, i, step, env)
        else:
            status, code, error = await self.execute(i, step, env, cwd)
        if ex.outputs and status == _SUCCEEDED:
            try:
                run.step_outputs[i] = stepoutputs.parse(env, ex.outputs, dag.max_output_size)
            except stepoutputs.StepOutputError as exc:
                status, error = _FAILED, str(exc)

        def stdout(limit=None):
            return step_log(engine.run_dir.path, i, "out", limit=limit)

        if ex.output is not None:
            try:
                run.outputs[i] = capture(stdout, dag.max_output_size)
            except OutputTooLarge as exc:
                run.outputs[i] = ""
                status, error = _FAILED, f"failed to capture output: {exc}"
        if ex.stdout or ex.stderr:
            _copy_logs(engine.run_dir, i, ex)
        outcome = -1
        c = ex.continue_on
        if status == _FAILED and c is not None:
            if (c.failure or (code in c.exit_codes)
                    or (c.output and _output_matches(stdout(), c.output))):
                run.covered.add(i)
                outcome = 0  # PASS: dependents run; the step stays failed...
                if c.mark_success:
                    status, error = _SUCCEEDED, ""  # ...unless markSuccess says otherwise
        return status, code, error, outcome

    async def execute(self, token: int, step: Step, env: dict, cwd: str):
        """Run the step's process, with its retry and repeat policies: (status, exit
        code, error)."""
        run = self.run
        ex = step.extra
        argv, script = step.argv, step.script
        values = run.seen_values(ex.sees) if ex is not None else {}
        if ex is not None and ex.expand:
            argv = tuple(expand_refs(a, values) for a in argv)
            script = expand_refs(script, values) if script is not None else None
        if ex is not None and ex.reads is not None:
            from dagfast.runtime.stepoutputs import fill  # only Dagu 2.x outputs (start-up)

            argv = tuple(fill(run, ex.reads, a) for a in argv)
            script = fill(run, ex.reads, script) if script is not None else None
        retry = ex.retry if ex is not None else None
        repeat = ex.repeat if ex is not None else None
        runs = 0
        while True:
            attempt = 0
            while True:
                if (runs or attempt) and ex.outputs:
                    # each execution writes its own (Dagu 2.x outputs)
                    from dagfast.runtime.stepoutputs import reset  # start-up, as above

                    reset(env)
                code, error, timed_out = await self._process(token, step, argv, script, env, cwd)
                if code == 0 or timed_out or run.stopping or retry is None:
                    break
                if attempt >= retry.limit or (retry.exit_codes and code not in retry.exit_codes):
                    break
                await self.sleep(pause(retry, attempt))
                attempt += 1
                if run.stopping:
                    break
            runs += 1
            if repeat is None or run.stopping or timed_out:
                break
            if repeat.limit and runs >= repeat.limit:
                break
            again = await self._again(repeat, code, env, cwd, values)
            if not again:  # False, or None: the run was stopped while a condition ran
                break
            await self.sleep(pause(repeat, runs - 1))
            if run.stopping:
                break
        if timed_out:
            return _FAILED, TIMEOUT_EXIT, f"step timed out after {ex.timeout_sec:g}s"
        if code == 0:
            return _SUCCEEDED, 0, ""
        status = _ABORTED if run.stopping else _FAILED
        return status, code, error

    async def _again(self, repeat, code: int, env: dict, cwd: str, values=None):
        """Whether a repeatPolicy runs the step once more after an execution ending `code`
        (None: the run was stopped while its condition ran)."""
        if repeat.condition is not None:
            cond = _with_refs(repeat.condition, values or {})
            holds = await self._holds(cond, _str_env(env), cwd)
            if holds is None:
                return None
        elif repeat.exit_codes:
            holds = code in repeat.exit_codes
        else:
            holds = code == 0
        return holds if repeat.mode == "while" else not holds

    async def _process(self, token: int, step: Step, argv, script, env: dict, cwd: str):
        """Start one process and wait for it: (exit code, error, timed out)."""
        engine = self.engine
        try:
            if script is not None:
                argv = engine.write_script(token, script, argv)
            engine.begin_execution(token, env)
            fut = engine.start_process(token, argv, env, cwd)
        except SpawnError as exc:
            return 127, str(exc), False
        ex = step.extra
        wait_status = await self.wait_process(token, fut, ex.timeout_sec if ex else 0, env)
        if wait_status is None:
            return TIMEOUT_EXIT, "", True
        code, error = describe(wait_status, step.name)
        if code == 127:
            error = too_long(error, lambda: env, argv, self.run.dag)
        return code, error, False

    async def wait_process(self, token: int, fut, timeout: float, env: dict):
        """The wait status of the process started under `token` (its future `fut`) with
        environment `env`, or None when `timeout` (seconds; 0: none) passed first and
        its group was killed, with the processes that left it (`setsid`) but carry its
        identity (run id, step name, a fan-out item's ITEM). While it runs the executor
        counts it, so the slot its step holds is given back."""
        procs = self.engine.executor
        procs.release()
        timed_out = []
        timer = None
        if timeout:
            def kill():
                # The whole group: children of a timed-out step never outlive it. Through
                # the executor, which knows where the step runs (a Dask worker, maybe).
                timed_out.append(True)
                procs.signal(token, signal.SIGKILL)
                procs.signal_escaped(signal.SIGKILL, env=env)  # and those that `setsid`

            timer = asyncio.get_running_loop().call_later(timeout, kill)
        try:
            wait_status = await fut
        finally:
            procs.hold()
            if timer is not None:
                timer.cancel()
        return None if timed_out else wait_status

    async def _holds(self, cond, env: dict, cwd: str, timeout: float | None = None):
        """`is_met`, interrupted when the run is stopped (DAG timeoutSec, `dagfast stop`,
        a signal) or `timeout` passes: None then, and the condition's processes are
        killed."""
        if self.run.stopping:
            return None
        check = asyncio.ensure_future(is_met(cond, env, cwd))
        stopped = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((check, stopped), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not check.done():
                check.cancel()
                try:
                    await check  # is_met kills the shell's session as it is cancelled
                except asyncio.CancelledError:
                    pass
        if check.cancelled():
            return None
        return check.result()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the run is stopped."""
        if seconds <= 0 or self.run.stopping:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    # The run's edges: secrets, preconditions, handlers ------------------------------------

    async def begin(self) -> bool:
        """Before any step: secrets, DAG preconditions, then the init handler. False: run
        no step."""
        run = self.run
        dag = run.dag
        if (dag.secrets or run.masker is not None) and not self._read_secrets():
            return False
        if dag.preconditions:
            env = _str_env(run.base_env)
            for cond in dag.preconditions:
                met = await self._holds(cond, env, dag.dir)
                if met is None:
                    return False  # stopped or timed out while it ran
                if not met:
                    run.precondition_unmet = True
                    return False
        for h in dag.handlers:
            if h.on == "init":
                if not await self._handler(h, "running"):
                    run.failed_handler = True
                    return False
        return True

    def _read_secrets(self) -> bool:
        """Read the run's secrets into its environment and mask them from now on (with
        its caller's, for a sub-DAG). False, with `run.error` saying why, if one cannot
        be read: the run fails before any step, and no handler runs."""
        run = self.run
        dag = run.dag
        if not self.engine.executor.pipes_output:
            # Masking reads the steps' output as they print it (the store's pump); an
            # executor that runs them elsewhere cannot offer that: the run must not start.
            run.error = (
                f"{dag.path or dag.name}: a run with secrets needs its steps' output to pass "
                "through dagfast to be masked, which this run's step executor cannot do"
            )
            return False
        if not dag.secrets:
            return True
        from dagfast.runtime import secrets  # only runs with secrets

        try:
            values = secrets.read_all(dag, run.base_env)
        except SecretError as exc:
            run.error = str(exc)
            return False
        run.base_env.update(values)  # secrets win over the DAG's env and params
        own = secrets.Masker(values.values())
        if own:
            run.masker = own.join(run.masker)
            self.engine.output.mask(run.masker.forms)  # before any step prints
        return True

    async def finish(self, status: RunStatus) -> None:
        """After the steps: the success, failure or abort handler, then exit."""
        await self._finish(status)

    async def _finish(self, status: RunStatus) -> None:
        run = self.run
        if run.precondition_unmet or run.error:
            return
        if status in (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED):
            first = "success"
        elif status == RunStatus.ABORTED:
            first = "abort"
        else:
            first = "failure"
        label = status.label
        for h in run.dag.handlers:
            if h.on == first:
                if not await self._handler(h, label):
                    run.failed_handler = True
        for h in run.dag.handlers:
            if h.on == "exit":
                if not await self._handler(h, label):
                    run.failed_handler = True

    async def _handler(self, handler, status_label: str) -> bool:
        """Run one handler step (every output visible, and DAG_RUN_STATUS); True if it
        succeeded."""
        run = self.run
        dag = run.dag
        token = len(dag.steps) + [h.on for h in dag.handlers].index(handler.on)
        step = handler.step
        names = run.outputs_by_name()
        names["DAG_RUN_STATUS"] = status_label
        env = run.env_for(step, (), names)
        record = run.handler_records[handler.on] = StepRecord(
            StepStatus.RUNNING, started_at=time.time()
        )
        procs = self.engine.executor
        procs.hold()
        try:
            status, code, error = await self.execute(token, step, env, step.dir or dag.dir)
        finally:
            procs.release()
        if error and run.masker is not None:
            error = run.masker.text(error)
        record.status, record.exit_code, record.error = status, code, error
        record.finished_at = time.time()
        cost = procs.cost(token)
        if cost is not None:
            record.cpu, record.rss = cost
        return status == _SUCCEEDED


def _with_refs(cond, values: dict[str, str]):
    """`cond` with its `${NAME.path}` lookups of outputs read (the shell does the rest)."""
    if not values:
        return cond
    expected = cond.expected
    return msgspec.structs.replace(
        cond,
        condition=expand_refs(cond.condition, values),
        expected=expand_refs(expected, values) if expected is not None else None,
    )


def _str_env(env: dict) -> dict:
    return {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}


def _copy_logs(run_dir, i: int, ex) -> None:
    """`stdout:`/`stderr:` files get what the step printed (its latest execution)."""
    for stream, dst in (("out", ex.stdout), ("err", ex.stderr)):
        if dst:
            try:
                os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
                with open(dst, "wb") as f:
                    f.write(step_log(run_dir.path, i, stream))
            except OSError:
                pass


def _output_matches(data: bytes, patterns: tuple[str, ...]) -> bool:
    """continueOn.output: some stdout line holds a pattern (`re:` a regular expression)."""
    lines = data.decode("utf-8", "replace").splitlines()
    for p in patterns:
        if p.startswith("re:"):
            rx = re.compile(p[3:])
            if any(rx.search(line) for line in lines):
                return True
        elif any(p in line for line in lines):
            return True
    return False
