"""The engine's slow path: one coroutine per step that has a StepExtra, plus handlers.

A plain step is started and ended by the engine's callbacks alone. A featured step
holds its slot from the moment it is popped until it ends, and goes through, in order:
preconditions, delaySec, the process (or sub-DAG) with timeoutSec, retryPolicy and
repeatPolicy, output capture, continueOn. Its process's exit comes back through the
same `Engine._on_exits` batch, to the future this module waits on.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import msgspec

from dagfast.runtime.conditions import is_met
from dagfast.model import Step, StepExtra
from dagfast.runtime.outputs import OutputTooLarge, capture, expand_refs, fill_refs
from dagfast.exec.base import describe
from dagfast.exec.local import SpawnError
from dagfast.status import RunStatus, StepStatus
from dagfast.records.store import StepRecord

__all__ = ["begin", "final_status", "finish", "start", "wake"]

_SUCCEEDED = StepStatus.SUCCEEDED
_FAILED = StepStatus.FAILED
_ABORTED = StepStatus.ABORTED
TIMEOUT_EXIT = 124


def start(engine, i: int) -> None:
    """Step `i` was popped: it holds a slot until its coroutine ends it."""
    record = engine._records[i]
    record.status = StepStatus.RUNNING
    record.started_at = time.time()
    engine._active += 1
    engine._procs.hold()
    engine.reporter.step_started(i)
    task = asyncio.get_running_loop().create_task(_run_step(engine, i))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


_tasks: set[asyncio.Task] = set()  # strong references while they run
_PLAIN = StepExtra()


async def _run_step(engine, i: int) -> None:
    try:
        status, code, error, outcome = await _step_outcome(engine, i)
    except Exception as exc:  # a bug; the run must still end
        status, code, error, outcome = _FAILED, None, f"internal error: {exc!r}", -1
    if error and engine.masker is not None:
        error = engine.masker.text(error)  # a sub-DAG's error may quote a value
    engine._active -= 1
    engine._procs.release()
    engine._ended(i, status, code, error, outcome)
    engine._fill()


async def _step_outcome(engine, i: int):
    """(status, exit code, error, scheduler outcome or -1) of featured step `i`."""
    dag = engine.dag
    step = dag.steps[i]
    ex = step.extra or _PLAIN  # a plain step of a run with secrets
    env = _step_env(engine, step, ex.sees)
    cwd = step.dir or dag.dir
    if ex.preconditions:
        values = _seen_values(engine, ex)
        text_env = _str_env(env)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for cond in ex.preconditions:
            left = max(0.0, ex.timeout_sec - (loop.time() - t0)) if ex.timeout_sec else None
            met = await _holds(engine, _with_refs(cond, values), text_env, cwd, left)
            if met is None:  # interrupted, its processes killed
                if engine._stopping:
                    return _ABORTED, None, "the run was stopped", -1
                why = f"step timed out after {ex.timeout_sec:g}s (in its preconditions)"
                return _FAILED, TIMEOUT_EXIT, why, -1
            if not met:
                return StepStatus.SKIPPED, None, "precondition not met", -1
    if ex.delay_sec:
        await sleep(engine, ex.delay_sec)
    if engine._stopping:
        return _ABORTED, None, "the run was stopped", -1
    if ex.call is not None:
        from dagfast.runtime import subdag

        status, code, error = await subdag.run(engine, i, step, env)
    else:
        status, code, error = await _execute(engine, i, step, env, cwd)
    out_path = engine.run_dir.stdout_path(i)
    if ex.output is not None:
        try:
            engine.outputs[i] = capture(out_path, dag.max_output_size)
        except OutputTooLarge as exc:
            engine.outputs[i] = ""
            status, error = _FAILED, f"failed to capture output: {exc}"
    if ex.stdout or ex.stderr:
        _copy_logs(engine, i, ex)
    outcome = -1
    c = ex.continue_on
    if status == _FAILED and c is not None:
        if c.failure or (code in c.exit_codes) or (c.output and _output_matches(out_path, c.output)):
            engine._covered.add(i)
            outcome = 0  # PASS: dependents run; the step stays failed...
            if c.mark_success:
                status, error = _SUCCEEDED, ""  # ...unless markSuccess says otherwise
    return status, code, error, outcome


async def _execute(engine, token: int, step: Step, env: dict, cwd: str):
    """Run the step's process, with its retry and repeat policies."""
    ex = step.extra
    argv, script = step.argv, step.script
    values = _seen_values(engine, ex) if ex is not None else {}
    if ex is not None and ex.expand:
        argv = tuple(expand_refs(a, values) for a in argv)
        script = expand_refs(script, values) if script is not None else None
    retry = ex.retry if ex is not None else None
    repeat = ex.repeat if ex is not None else None
    runs = 0
    while True:
        attempt = 0
        while True:
            if runs or attempt:
                _keep_old_logs(engine, token, runs + attempt)
            code, error, timed_out = await _process(engine, token, step, argv, script, env, cwd)
            if code == 0 or timed_out or engine._stopping or retry is None:
                break
            if attempt >= retry.limit or (retry.exit_codes and code not in retry.exit_codes):
                break
            await sleep(engine, _interval(retry.interval, retry.backoff, retry.max_interval, attempt))
            attempt += 1
            if engine._stopping:
                break
        runs += 1
        if repeat is None or engine._stopping or timed_out:
            break
        if repeat.limit and runs >= repeat.limit:
            break
        again = await _again(engine, repeat, code, env, cwd, values)
        if not again:  # False, or None: the run was stopped while a condition ran
            break
        await sleep(engine, _interval(repeat.interval, repeat.backoff, repeat.max_interval, runs - 1))
        if engine._stopping:
            break
    if timed_out:
        return _FAILED, TIMEOUT_EXIT, f"step timed out after {ex.timeout_sec:g}s"
    if code == 0:
        return _SUCCEEDED, 0, ""
    status = _ABORTED if engine._stopping else _FAILED
    return status, code, error


async def _again(engine, repeat, code: int, env: dict, cwd: str, values=None) -> bool | None:
    """Whether a repeatPolicy runs the step once more after an execution ending `code`
    (None: the run was stopped while its condition ran)."""
    if repeat.condition is not None:
        cond = _with_refs(repeat.condition, values or {})
        holds = await _holds(engine, cond, _str_env(env), cwd)
        if holds is None:
            return None
    elif repeat.exit_codes:
        holds = code in repeat.exit_codes
    else:
        holds = code == 0
    return holds if repeat.mode == "while" else not holds


def _seen_values(engine, ex) -> dict[str, str]:
    """The outputs step `ex` sees, by name (for `${NAME.key[0]}` lookups)."""
    steps = engine.dag.steps
    outputs = engine.outputs
    return {steps[p].extra.output: outputs.get(p, "") for p in ex.sees}


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


def _interval(base: float, backoff: float, cap: float, k: int) -> float:
    value = base * (backoff**k)
    return min(value, cap) if cap else value


async def _process(engine, token: int, step: Step, argv, script, env: dict, cwd: str):
    """Start one process and wait for it: (exit code, error, timed out)."""
    loop = asyncio.get_running_loop()
    run_dir = engine.run_dir
    fut = loop.create_future()
    try:
        if script is not None:
            argv = engine._write_script(token, script, argv)
        engine._waiters[token] = fut
        if engine.masker is None:
            engine._procs.start(
                token, argv, env, cwd, run_dir.stdout_path(token), run_dir.stderr_path(token)
            )
        else:
            from dagfast.exec import pump as logpipe

            pid, pumps = logpipe.start(engine, token, argv, env, cwd)
    except SpawnError as exc:
        engine._waiters.pop(token, None)
        return 127, str(exc), False
    engine._procs.release()  # the process manager counts it now
    engine._running.add(token)
    timed_out = []
    timer = None
    ex = step.extra
    if ex is not None and ex.timeout_sec:
        def kill():
            # The whole group: children of a timed-out step never outlive it. Through
            # the executor, which knows where the step runs (a Dask worker, maybe).
            timed_out.append(True)
            engine._procs.signal(token, signal.SIGKILL)
            engine._procs.signal_escaped(signal.SIGKILL, step.name)  # and those that `setsid`

        timer = loop.call_later(ex.timeout_sec, kill)
    try:
        wait_status = await fut
    finally:
        engine._procs.hold()
        if timer is not None:
            timer.cancel()
        if engine.masker is not None:
            logpipe.drain(pumps)  # the logs are whole before the output is captured
    if timed_out:
        return TIMEOUT_EXIT, "", True
    code, error = describe(wait_status)
    if code == 127:
        from dagfast.runtime.engine import too_long

        error = too_long(error, lambda: env, argv, engine.dag)
    return code, error, False


def _wake_event(engine) -> asyncio.Event:
    event = getattr(engine, "_wake_event", None)
    if event is None:
        event = engine._wake_event = asyncio.Event()
    return event


async def _holds(engine, cond, env: dict, cwd: str, timeout: float | None = None):
    """`is_met`, interrupted when the run is stopped (DAG timeoutSec, `dagfast stop`,
    a signal) or `timeout` passes: None then, and the condition's processes are killed."""
    if engine._stopping:
        return None
    event = _wake_event(engine)
    check = asyncio.ensure_future(is_met(cond, env, cwd))
    stopped = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((check, stopped), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
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


async def sleep(engine, seconds: float) -> None:
    """Sleep, but wake at once when the run is stopped."""
    if seconds <= 0 or engine._stopping:
        return
    event = _wake_event(engine)
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass


def wake(engine) -> None:
    """The run was stopped: end every sleep."""
    event = getattr(engine, "_wake_event", None)
    if event is not None:
        event.set()


# Environment, logs ---------------------------------------------------------------------


def _step_env(engine, step: Step, sees=(), extra: dict | None = None) -> dict:
    """The step's environment: the run's, outputs it sees, its own `env`, its name."""
    env = engine._base_env.copy()
    steps = engine.dag.steps
    outputs = engine.outputs
    for p in sees:
        if p in outputs:
            env[steps[p].extra.output.encode()] = outputs[p].encode()
    if extra:
        for k, v in extra.items():
            env[k.encode()] = v.encode()
    secret = engine.dag.secrets
    for k, v in step.env:
        if "\ue002" in v:  # references to outputs are filled in (see load._evaluate)
            v = fill_refs(v, env)
        if secret and "\ue000" in v:  # and so are references to secrets (load.py)
            from dagfast.runtime.secrets import fill

            env[k.encode()] = fill(v, engine._base_env)
        else:
            env[k.encode()] = v.encode("utf-8", "surrogateescape")
    env[b"DAG_RUN_STEP_NAME"] = step.name.encode()
    return env


def _str_env(env: dict) -> dict:
    return {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}


def _keep_old_logs(engine, token: int, n: int) -> None:
    """Before execution n+1 of a step: its logs so far become `<id>.out.<n>`."""
    for path in (engine.run_dir.stdout_path(token), engine.run_dir.stderr_path(token)):
        try:
            os.replace(path, f"{path}.{n}")
        except FileNotFoundError:
            pass


def _copy_logs(engine, i: int, ex) -> None:
    """`stdout:`/`stderr:` files get a copy of the step's logs."""
    for src, dst in (
        (engine.run_dir.stdout_path(i), ex.stdout),
        (engine.run_dir.stderr_path(i), ex.stderr),
    ):
        if dst:
            try:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                import shutil  # only steps with `stdout:`/`stderr:` files pay for it

                shutil.copyfile(src, dst)
            except OSError:
                pass


def _output_matches(path: str, patterns: tuple[str, ...]) -> bool:
    """continueOn.output: some stdout line holds a pattern (`re:` a regular expression)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for p in patterns:
        if p.startswith("re:"):
            rx = re.compile(p[3:])
            if any(rx.search(line) for line in lines):
                return True
        elif any(p in line for line in lines):
            return True
    return False


# The run's edges: preconditions, handlers, status ----------------------------------------


async def begin(engine) -> bool:
    """Before any step: secrets, DAG preconditions, then the init handler. False: run
    no step."""
    dag = engine.dag
    if (dag.secrets or engine.masker is not None) and not _read_secrets(engine):
        return False
    if dag.preconditions:
        env = _str_env(engine._base_env)
        for cond in dag.preconditions:
            met = await _holds(engine, cond, env, dag.dir)
            if met is None:
                return False  # stopped or timed out while it ran
            if not met:
                engine._precondition_unmet = True
                return False
    for h in dag.handlers:
        if h.on == "init":
            if not await _handler(engine, h, "running"):
                engine._failed_handler = True
                return False
    return True


def _read_secrets(engine) -> bool:
    """Read the run's secrets into its environment and mask them from now on (with its
    caller's, for a sub-DAG). False, with `engine.error` saying why, if one cannot be
    read: the run fails before any step, and no handler runs."""
    dag = engine.dag
    if engine._fit_note and engine.parent is None and engine.limit < len(dag.steps):
        engine.reporter.notice(engine._fit_note)
    if getattr(engine._procs, "start_piped", None) is None:
        # Masking reads the steps' output as they write it (logpipe.py); an executor
        # that runs them elsewhere cannot offer that, so the run must not start.
        engine.error = (
            f"{dag.path or dag.name}: a run with secrets needs its steps' output to pass "
            "through dagfast to be masked, which this run's step executor cannot do"
        )
        return False
    if not dag.secrets:
        return True
    from dagfast.runtime import secrets

    try:
        values = secrets.read_all(dag, engine._base_env)
    except secrets.SecretError as exc:
        engine.error = str(exc)
        return False
    engine._base_env.update(values)  # secrets win over the DAG's env and params
    own = secrets.Masker(values.values())
    if own:
        engine.masker = own.join(engine.masker)
    return True


async def finish(engine, status: RunStatus) -> None:
    """After the steps: the success, failure or abort handler, then exit."""
    try:
        await _finish(engine, status)
    finally:
        if engine.masker is not None or engine.dag.secrets:
            from dagfast.exec import pump as logpipe

            logpipe.close_all(engine)  # pipes that background children still hold


async def _finish(engine, status: RunStatus) -> None:
    if getattr(engine, "_precondition_unmet", False) or engine.error:
        return
    if status in (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED):
        first = "success"
    elif status == RunStatus.ABORTED:
        first = "abort"
    else:
        first = "failure"
    label = status.label
    for h in engine.dag.handlers:
        if h.on == first:
            if not await _handler(engine, h, label):
                engine._failed_handler = True
    for h in engine.dag.handlers:
        if h.on == "exit":
            if not await _handler(engine, h, label):
                engine._failed_handler = True


async def _handler(engine, handler, status_label: str) -> bool:
    """Run one handler step (every output visible, and DAG_RUN_STATUS); True if it
    succeeded."""
    dag = engine.dag
    token = len(dag.steps) + [h.on for h in dag.handlers].index(handler.on)
    step = handler.step
    names = {dag.steps[i].extra.output: v for i, v in sorted(engine.outputs.items())}
    names["DAG_RUN_STATUS"] = status_label
    env = _step_env(engine, step, (), names)
    record = engine._handler_records[handler.on] = StepRecord(
        StepStatus.RUNNING, started_at=time.time()
    )
    engine._procs.hold()
    try:
        status, code, error = await _execute(engine, token, step, env, step.dir or dag.dir)
    finally:
        engine._procs.release()
    if error and engine.masker is not None:
        error = engine.masker.text(error)
    record.status, record.exit_code, record.error = status, code, error
    record.finished_at = time.time()
    return status == _SUCCEEDED


def final_status(engine) -> RunStatus:
    """The run's status once its steps ended (not stopped, not timed out)."""
    if engine.error:
        return RunStatus.FAILED  # it could not start (a secret could not be read)
    if getattr(engine, "_precondition_unmet", False):
        return RunStatus.ABORTED
    partial = succeeded = False
    covered = engine._covered
    for i, r in enumerate(engine._records):
        status = r.status
        if status == _SUCCEEDED or status == StepStatus.PARTIALLY_SUCCEEDED:
            succeeded = True
        elif status == _FAILED:
            if i not in covered:
                return RunStatus.FAILED
            partial = True
        elif status == _ABORTED or status == StepStatus.NOT_STARTED:
            return RunStatus.FAILED
    if partial:
        return RunStatus.PARTIALLY_SUCCEEDED if succeeded else RunStatus.FAILED
    return RunStatus.SUCCEEDED
