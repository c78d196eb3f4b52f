"""Reporters: told what a run does. The base class's hooks do nothing, so a reporter
overrides only what it cares about; the engine never formats output itself.

Here: the hooks, the fan-out, plain lines (ConsoleReporter), GitHub Actions annotations
and the run's ending (`summary`). The live terminal view is in progress.py, `--json`
in jsonl.py, `--junit` in junit.py; choose.py picks the reporters for the CLI.
"""

from __future__ import annotations

import os
import select
import stat
import time

from dagfast.records.address import failed_leaf
from dagfast.records.read import step_log
from dagfast.status import RunStatus, StepStatus

__all__ = [
    "ConsoleReporter", "GithubAnnotations", "Notices", "Reporter", "Reporters", "Ticker",
    "Unbreakable", "shell_word", "summary", "tail_bytes", "to_devnull",
]

TAIL_LINES = 10  # stderr lines shown for a failed step in the ending and in reports
SHOWN_FAILURES = 20  # failed steps named one by one in the ending


class Reporter:
    """The hooks the engine calls; each does nothing by default."""

    def run_started(self, dag, run_dir, records) -> None:
        """The run's directory exists and no step has started yet; `records` is the
        live list of StepRecords (one per step, in file order) the engine updates."""

    def step_started(self, step: int) -> None:
        """Step `step` was started (or tried to start)."""

    def step_finished(self, step: int, record) -> None:
        """Step `step` ended; `record` holds its status, exit code and times."""

    def steps_cancelled(self, steps: list[int], status: StepStatus, reason: str) -> None:
        """These steps will never run (their upstream failed or was skipped)."""

    def item_dag(self, step: int, dag_name: str, step_name: str) -> None:
        """The items of fan-out step `step` run the one step `step_name` of sub-DAG
        `dag_name` as processes of this engine (no sub-run directory)."""

    def items_started(self, step: int, counts: dict[str, int]) -> None:
        """Fan-out step `step` begins its items; `counts` is the live tally (status
        label -> how many items ended so), the engine updates it."""

    def item_started(self, step: int, index: int, key: str, token: int, name: str) -> None:
        """Item `index` (named `key`) of fan-out step `step` started a process (again,
        for a retry) whose output the store keeps under `token`; `name` is its address
        (`fan[3]/work`, `fan[3]`)."""

    def item_finished(self, step: int, index: int, key: str, record, token: int,
                      output: str | None) -> None:
        """Item `index` (named `key`) of fan-out step `step` ended; `record` holds its
        status, exit code, times and error; `token`: its output in the store (-1: its
        own sub-run); `output`: the JSON of its outputs (None: none)."""

    def run_finished(self, result) -> None:
        """Every step has ended or the run was stopped; `result` is final."""

    def notice(self, text: str) -> None:
        """Something the user should know about the run as a whole (for example that
        the system's limits cap how many steps run at once)."""

    def child(self, prefix: str):
        """The reporter of a sub-run whose steps are addressed `prefix` + name
        (`fan[1]/`), or None: sub-runs report nothing of their own by default."""
        return None


class ChildOutput(Reporter):
    """`--verbose` for a sub-run: its steps' output, each line prefixed with the step's
    address (`fan[1]/work | ...`), through the parent's `write`."""

    def __init__(self, write, prefix: str) -> None:
        self.write = write
        self.prefix = prefix
        self._tail = None
        self._ticker = None

    def run_started(self, dag, run_dir, records) -> None:
        from dagfast.report.logtail import LogTail  # only with --verbose (start-up)

        self._tail = LogTail(run_dir, [self.prefix + s.name for s in dag.steps], self.write)
        self._ticker = Ticker(0.1, self._tail.poll)

    def step_started(self, step: int) -> None:
        if self._tail is not None:
            self._tail.follow(step)

    def step_finished(self, step: int, record) -> None:
        if self._tail is not None:
            self._tail.finish(step)

    def item_started(self, step, index, key, token, name) -> None:
        if self._tail is not None:
            self._tail.follow(token, self.prefix + name)

    def item_finished(self, step, index, key, record, token, output) -> None:
        if self._tail is not None and token >= 0:
            self._tail.finish(token)

    def run_finished(self, result) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._tail.poll()

    def child(self, prefix: str):
        return ChildOutput(self.write, self.prefix + prefix)


class Notices(Reporter):
    """Writes notices to a stream (the CLI gives it stderr), one line each."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def notice(self, text: str) -> None:
        self.stream.write(f"dagfast: {text}\n")
        self.stream.flush()

    def run_finished(self, result) -> None:
        # Why the run could not go on, when no step says it: one line, located like a
        # problem of the DAG file when it is one (a secret that cannot be read).
        if result.error:
            self.stream.write(f"{result.error}\n")
            self.stream.flush()


class Reporters(Reporter):
    """Tells several reporters, in order, about everything."""

    def __init__(self, reporters) -> None:
        self.reporters = tuple(reporters)

    def run_started(self, dag, run_dir, records) -> None:
        for r in self.reporters:
            r.run_started(dag, run_dir, records)

    def step_started(self, step: int) -> None:
        for r in self.reporters:
            r.step_started(step)

    def step_finished(self, step: int, record) -> None:
        for r in self.reporters:
            r.step_finished(step, record)

    def steps_cancelled(self, steps, status, reason) -> None:
        for r in self.reporters:
            r.steps_cancelled(steps, status, reason)

    def item_dag(self, step: int, dag_name: str, step_name: str) -> None:
        for r in self.reporters:
            r.item_dag(step, dag_name, step_name)

    def items_started(self, step: int, counts: dict[str, int]) -> None:
        for r in self.reporters:
            r.items_started(step, counts)

    def item_started(self, step, index, key, token, name) -> None:
        for r in self.reporters:
            r.item_started(step, index, key, token, name)

    def item_finished(self, step, index, key, record, token, output) -> None:
        for r in self.reporters:
            r.item_finished(step, index, key, record, token, output)

    def notice(self, text: str) -> None:
        for r in self.reporters:
            r.notice(text)

    def run_finished(self, result) -> None:
        # Every reporter hears the end even if one fails (a record that cannot be
        # written must not hide the summary); the first failure is raised after.
        failure = None
        for r in self.reporters:
            try:
                r.run_finished(result)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def child(self, prefix: str):
        for r in self.reporters:
            hook = getattr(r, "child", None)  # the Recorder keeps no sub-run reporter
            found = hook(prefix) if hook is not None else None
            if found is not None:
                return found
        return None


class ConsoleReporter(Reporter):
    """Plain append-only lines: one when a step starts and one when it ends, then the
    ending (`summary`). With `quiet` only the ending; with `verbose` each step's output
    too, line by line, prefixed with the step's name (see logtail.py)."""

    def __init__(self, stream, quiet: bool = False, verbose: bool = False) -> None:
        self.out = stream
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.names: tuple[str, ...] = ()
        self._tail = None
        self._ticker = None

    def run_started(self, dag, run_dir, records) -> None:
        self.dag = dag
        self.names = tuple(s.name for s in dag.steps)
        self.t0 = time.monotonic()
        if self.verbose:
            from dagfast.report.logtail import LogTail  # only with --verbose (start-up)

            self._tail = LogTail(run_dir, self.names, self.out.write)
            self._ticker = Ticker(0.1, self._tick)
        if not self.quiet:
            limit = dag.max_active_steps or "unlimited"
            self.out.write(
                f"dagfast: run {run_dir.run_id} of {dag.name} "
                f"({len(self.names)} steps, maxActiveSteps {limit})\n"
            )

    def _tick(self) -> None:
        self._tail.poll()
        self.out.flush()

    def step_started(self, step: int) -> None:
        if not self.quiet:
            self.out.write(f"  started    {self.names[step]}\n")
        if self._tail is not None:
            self._tail.follow(step)

    def step_finished(self, step: int, record) -> None:
        if self.quiet:
            return
        if self._tail is not None:
            self._tail.finish(step)
        took = (record.finished_at or 0) - (record.started_at or 0)
        status = StepStatus(record.status).label
        extra = f" ({record.error})" if record.error and status != "succeeded" else ""
        self.out.write(f"  {status:<10} {self.names[step]} {took:.2f}s{extra}\n")

    def item_started(self, step, index, key, token, name) -> None:
        if self._tail is not None:
            self._tail.follow(token, name)

    def item_finished(self, step, index, key, record, token, output) -> None:
        if self._tail is not None and token >= 0:
            self._tail.finish(token)

    def steps_cancelled(self, steps, status, reason) -> None:
        if self.quiet:
            return
        label = StepStatus(status).label
        for i in steps:
            self.out.write(f"  {label:<10} {self.names[i]} ({reason})\n")

    def run_finished(self, result) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._tail.poll()
        self.out.write("".join(line + "\n" for line in summary(result)))
        self.out.flush()

    def child(self, prefix: str):
        return ChildOutput(self.out.write, prefix) if self.verbose else None


class GithubAnnotations(Reporter):
    """Under GitHub Actions: each failed step becomes an `::error` workflow command as it
    fails, so that it is shown on the job's page (and a failed handler at the end)."""

    def __init__(self, stream) -> None:
        self.out = stream

    def run_started(self, dag, run_dir, records) -> None:
        self.dag = dag
        self.run_dir = run_dir

    def step_finished(self, step: int, record) -> None:
        if record.status == StepStatus.FAILED:
            self._error(self.dag.steps[step].name, record, step)

    def run_finished(self, result) -> None:
        for on, record in result.handlers.items():
            if record.status == StepStatus.FAILED:
                self._error(f"handlerOn.{on}", record, None)
        self.out.flush()

    def _error(self, name: str, record, step: int | None) -> None:
        lines = [f"step {name} failed ({record.error})"]
        if step is not None:
            lines += tail_bytes(step_log(self.run_dir.path, step, "err", last=16384))
        title = _gh_escape(f"dagfast: {self.dag.name}: {name} failed", prop=True)
        self.out.write(f"::error title={title}::{_gh_escape(chr(10).join(lines))}\n")


def _gh_escape(text: str, prop: bool = False) -> str:
    """Escape a workflow command's message (or, with `prop`, a property value)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


class Ticker:
    """Calls `fn` every `interval` seconds on the running event loop until cancelled: the
    reporters' redraws and flushes happen here, never once per step."""

    def __init__(self, interval: float, fn) -> None:
        import asyncio

        self.interval = interval
        self.fn = fn
        self.loop = asyncio.get_running_loop()
        self.handle = self.loop.call_later(interval, self._fire)

    def _fire(self) -> None:
        self.handle = self.loop.call_later(self.interval, self._fire)
        self.fn()

    def cancel(self) -> None:
        self.handle.cancel()


def summary(result, color=None) -> list[str]:
    """The run's ending: its status and counts, then every failed step (up to
    SHOWN_FAILURES) with its exit status and the last lines of its stderr, and the
    commands that show whole logs. `color(text, style)` may colour parts."""
    paint = color or (lambda text, style: text)
    steps = result.dag.steps
    counts: dict[int, int] = {}
    for r in result.steps:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = ", ".join(
        f"{n} {StepStatus(code).label}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1])
    )
    took = result.finished_at - result.started_at
    status = RunStatus(result.status)
    style = "green" if status in (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED) else "red"
    out = [
        f"{paint(status.label, style)}: {result.dag.name}, {len(result.steps)} steps "
        f"in {took:.2f}s ({parts or 'no steps'})"
    ]
    failed = [i for i, r in enumerate(result.steps) if r.status == StepStatus.FAILED]
    for i in failed[:SHOWN_FAILURES]:
        r = result.steps[i]
        out.append(f"  {paint('failed', 'red')}: {steps[i].name} ({r.error})")
        # A sub-DAG step's own stderr is empty: show the failing step inside it.
        ex = steps[i].extra
        leaf = failed_leaf(result.path, i, steps[i].name) if ex else None
        path, step, name = (leaf.run_path, leaf.log, leaf.name) if leaf else (result.path, i, steps[i].name)
        more = ""
        if leaf is None and ex is not None and ex.parallel is not None:
            item = _first_failed_item(result.path, i)  # an item with no sub-run to show
            if item is not None:
                out.append(f"    {steps[i].name}[{item.index}]: {item.error}")
                if item.token < 0:  # its sub-run never started: no output to show
                    out.append(f"    its items: dagfast status {result.run_id} {shell_word(name)}")
                    continue
                step, more = item.token, f" --item {item.index}"
        elif leaf is not None:
            out.append(f"    {leaf.name}: {leaf.error}")
        out += [f"    | {line}" for line in tail_bytes(step_log(path, step, "err", last=16384))]
        out.append(f"    whole log: dagfast logs {result.run_id} {shell_word(name)}{more} --stderr")
    if len(failed) > SHOWN_FAILURES:
        out.append(f"  ... and {len(failed) - SHOWN_FAILURES} more failed steps: "
                   f"dagfast status {result.run_id}")
    events = [h.on for h in result.dag.handlers]
    for on, r in result.handlers.items():
        if r.status == StepStatus.FAILED:
            out.append(f"  {paint('failed', 'red')}: handlerOn.{on} ({r.error})")
            if on in events:
                token = len(steps) + events.index(on)
                out += [f"    | {line}" for line in tail_bytes(step_log(result.path, token, "err",
                                                                    last=16384))]
                out.append(f"    whole log: dagfast logs {result.run_id} handlerOn.{on} --stderr")
    out.append(f"  run directory: {result.path}")
    if result.signal or status == RunStatus.FAILED:
        if result.steps and not _all_done(result):
            out.append(f"  to finish it: dagfast retry {result.run_id}")
    return out


def _first_failed_item(run_path: str, step: int):
    """The failed item of fan-out step `step` with the lowest index (its Item), or None."""
    from dagfast.errors import RunError  # with the next (start-up)
    from dagfast.records.items import read_items  # only runs with a failed fan-out step

    try:
        items = read_items(run_path, [step]).get(step, {})
    except RunError:  # the ending must not fail for want of an excerpt
        return None
    bad = [it for it in items.values() if it.status == StepStatus.FAILED]
    return min(bad, key=lambda it: it.index) if bad else None


def _all_done(result) -> bool:
    """Whether every step succeeded (a run that failed only in a handler, or whose
    preconditions were unmet, has nothing to retry)."""
    return all(r.status == StepStatus.SUCCEEDED for r in result.steps)


def tail_bytes(data: bytes, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` lines of `data`, decoded leniently."""
    text = data.decode("utf-8", "replace").rstrip("\n")
    return text.split("\n")[-lines:] if text else []


def shell_word(word: str) -> str:
    """`word` quoted for a shell command line when it needs to be."""
    import re

    if re.fullmatch(r"[\w@%+=:,./-]+", word):
        return word
    import shlex

    return shlex.quote(word)


def to_devnull(stream) -> None:
    """Point the descriptor under `stream` at /dev/null: its reader went away, and what
    is still buffered would fail again when the interpreter exits."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):
        pass


class Unbreakable:
    """A stream that a reader going away cannot break: after EPIPE (`dagfast run | head`)
    its writes go nowhere, so the run goes on to its end and its record, instead of
    dying of the console. Everything else is the wrapped stream's."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._break()

    @property
    def buffer(self):
        return Unbreakable(self._stream.buffer)

    def write_ready(self, data, wait: bool) -> int:
        """Write the bytes `data` to the descriptor under this (binary) stream: with
        `wait`, all of them, however slow the reader; without, only what fits now, so a
        slow reader never holds up the run. How many bytes are done with (all once the
        reader has gone). A short write, which an unbuffered (PYTHONUNBUFFERED) or
        non-blocking stdout gives, is retried with the rest; never half of it dropped."""
        if self.broken:
            return len(data)
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # in memory: it never blocks
            self.write(data)
            self.flush()
            return len(data)
        try:
            self._stream.flush()  # what the stream itself holds goes first
            # A pipe or socket with room takes PIPE_BUF bytes without blocking; a file
            # takes anything.
            chunk = len(data) if wait or stat.S_ISREG(os.fstat(fd).st_mode) else select.PIPE_BUF
            ready = select.poll()
            ready.register(fd, select.POLLOUT)
            done = 0
            with memoryview(data) as view:  # released on return: the caller may resize data
                while done < len(view) and ready.poll(-1 if wait else 0):
                    try:
                        done += os.write(fd, view[done:done + chunk])
                    except BlockingIOError:  # O_NONBLOCK, set by someone sharing the pipe
                        if not wait:
                            break
            return done
        except OSError:  # EPIPE: the reader went away (EBADF: there never was one)
            self._break()
            return len(data)

    def _break(self) -> None:
        self.broken = True
        to_devnull(self._stream)

    def __getattr__(self, name):
        return getattr(self._stream, name)
