"""The engine driven in-process by a scripted executor double (ninja's FakeCommandRunner).

    result = run(tmp_path, YAML, script={"a": fail(3), "b": ok(turns=2, out="x\\n")})
    result.status, result.step("b").output, result.log.order, result.log.max_running

A step's script says how it ends: its exit status (or the signal that kills it), how
many loop turns it "runs" first (so overlap is observable without sleeping), and the
bytes it writes to its stdout and stderr logs. Nothing is started: a run takes a few
milliseconds (preconditions and repeat conditions still run `sh`, as the engine does).

`run` is the only function here that calls into dagfast.runtime and dagfast.records:
when the engine's way in changes, it changes here and nowhere else.
"""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from doubles import Slots

__all__ = [
    "Do", "Log", "RunResult", "ScriptedExecutor", "Scripts", "Start", "fail", "hang",
    "killed", "ok", "run",
]  # fmt: skip


@dataclass(frozen=True)
class Do:
    """What one execution of a step does: runs `turns` loop turns (None: until it is
    signalled), writes `out`/`err` to its logs and `append` to files (relative to its
    working directory), then exits with `code`, or dies of `sig`. Signals in `ignore`
    do nothing to it (a step that traps SIGTERM)."""

    code: int = 0
    turns: int | None = 0
    out: str | bytes = b""
    err: str | bytes = b""
    sig: int = 0
    append: Mapping[str, str] = field(default_factory=dict)
    ignore: tuple[int, ...] = ()

    def wait_status(self) -> int:
        """The end as os.waitpid reports it."""
        return self.sig if self.sig else (self.code & 0xFF) << 8


def ok(turns: int | None = 0, out: str | bytes = b"", **kw) -> Do:
    """Exits 0 after `turns` loop turns, having printed `out`."""
    return Do(0, turns, out, **kw)


def fail(code: int = 1, turns: int | None = 0, out: str | bytes = b"", **kw) -> Do:
    """Exits `code` after `turns` loop turns, having printed `out`."""
    return Do(code, turns, out, **kw)


def killed(sig: int = _signal.SIGKILL, turns: int | None = 0) -> Do:
    """Dies of `sig` after `turns` loop turns."""
    return Do(turns=turns, sig=sig)


def hang(**kw) -> Do:
    """Runs until it is signalled (a stop, a timeout)."""
    return Do(turns=None, **kw)


Script = Do | list[Do] | Callable[["Start"], Do]
"""A step's script: one Do for every execution, a list (one per execution, the last
repeated: retries and repeats), or a function of the Start."""


@dataclass
class Start:
    """One execution the engine asked for: what it got, and how many ran with it."""

    name: str  # DAG_RUN_STEP_NAME (a handler's is its event: `success`, `exit`, ...)
    dag: str  # DAG_NAME: the caller's or a sub-DAG's
    token: int
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    running: int  # executions running once this one started, in every engine


@dataclass
class Log:
    """What the double saw, across every engine of the run (sub-DAGs included)."""

    starts: list[Start] = field(default_factory=list)
    ends: list[tuple[str, int]] = field(default_factory=list)  # (name, wait status)
    signals: list[tuple[str, int]] = field(default_factory=list)  # (name, signal)
    running: int = 0
    max_running: int = 0

    @property
    def order(self) -> list[str]:
        """Step names in the order they were started (once per execution)."""
        return [s.name for s in self.starts]

    def count(self, name: str) -> int:
        """How many times step `name` was started."""
        return sum(1 for s in self.starts if s.name == name)

    def start(self, name: str) -> Start:
        """The only (or last) start of step `name`."""
        found = [s for s in self.starts if s.name == name]
        assert found, f"`{name}` never started; started: {self.order}"
        return found[-1]


class Scripts:
    """The scripts by step name (`name`, or `dag/name` for a sub-DAG's step) and the log
    that every ScriptedExecutor of a run shares; `factory` is what the engine calls."""

    def __init__(self, scripts: Mapping[str, Script] | None = None,
                 on_start: Callable[[Start], None] | None = None) -> None:
        self.scripts = dict(scripts or {})
        self.log = Log()
        self.on_start = on_start
        self._executions: dict[str, int] = {}

    def __call__(self, loop, limit, on_exits) -> "ScriptedExecutor":
        """The executor factory the engine calls (once per engine: sub-DAGs too)."""
        return ScriptedExecutor(loop, limit, on_exits, self)

    def room(self) -> tuple[int, str]:
        """As the base class: no cap of the system's."""
        return ScriptedExecutor.room()

    def guard_run(self, run_id: str):
        """As the base class: nothing runs, nothing to guard."""
        return ScriptedExecutor.guard_run(run_id)

    def next_do(self, start: Start) -> Do:
        """The Do for this execution of the step."""
        key = f"{start.dag}/{start.name}"
        if key not in self.scripts:
            key = start.name
        script = self.scripts.get(key, Do())
        n = self._executions.get(key, 0)
        self._executions[key] = n + 1
        if isinstance(script, list):
            return script[min(n, len(script) - 1)]
        if callable(script):
            return script(start)
        return script


class ScriptedExecutor(Slots):
    """An executor (dagfast.exec.base.Executor) whose steps run no process: each ends as
    its script says, a loop turn at a time."""

    def __init__(self, loop, limit, on_exits, book: Scripts) -> None:
        super().__init__(loop, limit, on_exits)
        self._book = book
        self._running: dict[int, list] = {}  # token -> [name, turns left, Do]
        self._dying: list[tuple[int, int]] = []  # (token, wait status) for the next turn
        self._ticking = False
        self.max_running = 0  # in this engine alone

    def start(self, token, argv, env, cwd) -> int:
        text = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
        log = self._book.log
        log.running += 1
        log.max_running = max(log.max_running, log.running)
        self.running_count += 1
        self.max_running = max(self.max_running, self.running_count)
        start = Start(text.get("DAG_RUN_STEP_NAME", ""), text.get("DAG_NAME", ""), token,
                      tuple(argv), text, cwd, log.running)
        log.starts.append(start)
        do = self._book.next_do(start)
        for stream, data in ((0, do.out), (1, do.err)):
            if data:  # into the run's output store, as a process's pipes would
                self.output.put(token, stream, data.encode() if isinstance(data, str) else data)
        for name, data in do.append.items():
            with open(os.path.join(cwd, name), "a") as f:
                f.write(data)
        self._running[token] = [start.name, do.turns, do]
        self._tick_soon()
        if self._book.on_start is not None:
            self._book.on_start(start)
        return len(log.starts)

    def _tick_soon(self) -> None:
        if not self._ticking:
            self._ticking = True
            self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        """One loop turn: every running step's count goes down; those at zero end, in
        one batch with those that a signal ended (as the process manager batches)."""
        self._ticking = False
        ends, self._dying = self._dying, []
        for token, (name, left, do) in list(self._running.items()):
            if left is None:
                continue
            if left <= 0:
                ends.append((token, do.wait_status()))
            else:
                self._running[token][1] = left - 1
        if ends:
            log = self._book.log
            for token, status in ends:
                log.ends.append((self._running.pop(token)[0], status))
            self.running_count -= len(ends)
            log.running -= len(ends)
            self.on_exits(ends)
        if any(v[1] is not None for v in self._running.values()) or self._dying:
            self._tick_soon()

    def signal(self, token, sig) -> None:
        entry = self._running.get(token)
        if entry is None or any(t == token for t, _ in self._dying):
            return
        self._book.log.signals.append((entry[0], sig))
        if sig in entry[2].ignore and sig != _signal.SIGKILL:
            return
        self._dying.append((token, sig))
        entry[1] = None  # it ends with the signal, not with its script
        self._tick_soon()

    def signal_running(self, sig) -> None:
        for token in list(self._running):
            self.signal(token, sig)

    def signal_all_groups(self, sig) -> None:
        self.signal_running(sig)  # no step leaves a background child behind

    def live_groups(self) -> int:
        return len(self._running)

    def close(self) -> None:
        assert not self._running, f"steps still running at close: {self._running}"


@dataclass
class RunResult:
    """What a run did: its status label, a record per step (StepRecord: status label,
    exit_code, error, output) by name, handler records by event, and the double's log."""

    status: str
    steps: dict[str, "Record"]
    handlers: dict[str, "Record"]
    outputs: dict[str, str]
    log: Log
    error: str
    path: Path

    def step(self, name: str) -> "Record":
        return self.steps[name]

    @property
    def statuses(self) -> dict[str, str]:
        """Each step's status label, by name, in file order."""
        return {k: r.status for k, r in self.steps.items()}


@dataclass(frozen=True)
class Record:
    """One step's record, with its status as a label (`succeeded`, `failed`, ...)."""

    status: str
    exit_code: int | None
    error: str
    output: str | None


def run(
    tmp_path: Path,
    yaml_text: str,
    script: Mapping[str, Script] | None = None,
    *,
    max_active_steps: int | None = None,
    stop_after: str | tuple[str, ...] = (),
    previous: RunResult | None = None,
    rerun: tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
) -> RunResult:
    """Load `yaml_text` (relative paths from `tmp_path`), run it in-process with the
    steps scripted, and return what happened. `stop_after`: the run is stopped (as by
    SIGTERM) once that step (or every one of those steps) has started. `previous`: a
    retry of that run (`rerun`: the step names run again whatever they did).

    The one place that knows how the engine is started: load_text, RunDir.create, the
    session's limit in force, the run's data (state.Run), Engine(...).run_to_end(), and
    StepRecord/StepStatus/RunStatus to carry records both ways."""
    import asyncio
    import textwrap

    from dagfast.loader import load_text
    from dagfast.records.store import RunDir, StepRecord
    from dagfast.runtime.engine import Engine
    from dagfast.runtime.session import Children, limit_in_force
    from dagfast.runtime.state import Run
    from dagfast.status import RunStatus, StepStatus

    waiting = {stop_after} if isinstance(stop_after, str) else set(stop_after)

    def on_start(start: Start) -> None:
        waiting.discard(start.name)
        if not waiting:
            # As SIGTERM would: on the loop's next turn, not inside the engine's call.
            asyncio.get_running_loop().call_soon(engine.stop, _signal.SIGTERM)
            book.on_start = None

    book = Scripts(script, on_start if waiting else None)
    env = dict(os.environ if environ is None else environ)
    dag = load_text(textwrap.dedent(yaml_text), base_dir=tmp_path, environ=env)
    home = tmp_path / "home"
    run_dir = RunDir.create(dag, str(home))
    kept = None
    if previous is not None:
        kept = [StepRecord(int(StepStatus[r.status.upper()]), r.exit_code, None, None,
                           r.error, r.output) for r in previous.steps.values()]
    state = Run(dag, run_dir.run_id, {os.fsencode(k): os.fsencode(v) for k, v in env.items()})
    keep = state.keep(kept, [dag.index(n) for n in rerun] or None) if kept else ()
    limit, _ = limit_in_force(dag, max_active_steps, book)
    engine = Engine(state, book, limit=limit, run_dir=run_dir, children=Children(book),
                    keep=keep)
    res = engine.run_to_end()

    def record(r) -> Record:
        return Record(StepStatus(r.status).label, r.exit_code, r.error, r.output)

    return RunResult(
        RunStatus(res.status).label,
        {s.name: record(r) for s, r in zip(dag.steps, res.steps)},
        {on: record(r) for on, r in res.handlers.items()},
        dict(res.outputs), book.log, res.error, Path(res.path),
    )  # fmt: skip
