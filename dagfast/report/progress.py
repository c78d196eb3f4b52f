"""The live terminal view of a run: counts, rate, elapsed time, ETA, running steps, and
failures as they happen, redrawn in place by `rich`.

The hooks only count (a few attribute updates a step); drawing happens on a timer on the
event loop, REDRAWS_PER_SEC times a second at most, however many steps end in between.
rich is imported here only, and this module only when stdout is a terminal.
"""

from __future__ import annotations

import time
from collections import deque

from rich.console import Console
from rich.live import Live
from rich.text import Text

from dagfast.report.base import ChildOutput, Reporter, Ticker, summary
from dagfast.status import StepStatus

__all__ = ["ProgressReporter"]

REDRAWS_PER_SEC = 12
RATE_WINDOW_SEC = 3.0  # steps per second is measured over this much recent time
FAILURES_PER_REDRAW = 10  # failure lines printed at each redraw at most; the rest later

_FAILED = StepStatus.FAILED
_OK = (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED, StepStatus.SKIPPED)


class ProgressReporter(Reporter):
    """Draws the run on a terminal (the text stream `stream`), then prints its ending."""

    def __init__(self, stream, *, verbose: bool = False, color: bool = True,
                 width: int | None = None) -> None:
        self.stream = stream
        self.verbose = verbose
        self.console = Console(
            file=stream, force_terminal=True, no_color=not color, highlight=False,
            width=width, emoji=False, markup=False,
        )
        self.live: Live | None = None
        self.done = 0
        self.failed = 0
        self.aborted = 0
        self.running: dict[int, None] = {}  # insertion-ordered: the oldest first
        self.failures: deque[tuple[int, str]] = deque()
        self._tail = None
        self._ticker = None

    # Hooks: counting only --------------------------------------------------------------

    def run_started(self, dag, run_dir, records) -> None:
        self.dag = dag
        self.run_id = run_dir.run_id
        self.records = records
        self.names = [s.name for s in dag.steps]
        self.total = len(self.names)
        # A retry: steps kept from the earlier attempt are done before anything runs.
        self.done = sum(1 for r in records if r.status in _OK)
        self.t0 = time.monotonic()
        self.samples: deque[tuple[float, int]] = deque([(self.t0, self.done)])
        if self.verbose:
            from dagfast.report.logtail import LogTail  # only with --verbose (start-up)

            self._tail = LogTail(run_dir, self.names, self._print_output)
        self.live = Live(
            self._frame(), console=self.console, auto_refresh=False, transient=False,
            redirect_stdout=False, redirect_stderr=False,
        )
        self.live.start(refresh=True)
        self._ticker = Ticker(1 / REDRAWS_PER_SEC, self._redraw)

    def step_started(self, step: int) -> None:
        self.running[step] = None
        if self._tail is not None:
            self._tail.follow(step)

    def step_finished(self, step: int, record) -> None:
        self.running.pop(step, None)
        status = record.status
        if status == _FAILED:
            self.failed += 1
            self.failures.append((step, record.error))
        elif status in _OK:
            self.done += 1
        else:
            self.aborted += 1
        if self._tail is not None:
            self._tail.finish(step)

    def steps_cancelled(self, steps, status, reason) -> None:
        if status == StepStatus.SKIPPED:
            self.done += len(steps)
        else:
            self.aborted += len(steps)

    def run_finished(self, result) -> None:
        self._ticker.cancel()
        self._redraw()
        self.live.stop()
        color = None if self.console.no_color else _paint
        self.stream.write("".join(line + "\n" for line in summary(result, color)))
        self.stream.flush()

    # Drawing, on the timer --------------------------------------------------------------

    def _redraw(self) -> None:
        if self._tail is not None:
            self._tail.poll()
        shown = 0
        while self.failures and shown < FAILURES_PER_REDRAW:
            step, error = self.failures.popleft()
            line = Text()
            line.append("✗ failed ", style="bold red")
            line.append(f"{self.names[step]} ({error})")
            self.console.print(line)
            shown += 1
        self.live.update(self._frame(), refresh=True)

    def child(self, prefix: str):
        return ChildOutput(self._print_output, prefix) if self.verbose else None

    def _print_output(self, text: str) -> None:
        self.console.print(Text(text.rstrip("\n")), soft_wrap=True)

    def _frame(self) -> Text:
        now = time.monotonic()
        elapsed = now - self.t0
        ended = self.done + self.failed + self.aborted
        running = len(self.running)
        pending = self.total - ended - running
        samples = self.samples
        samples.append((now, ended))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_SEC:
            samples.popleft()
        t_old, n_old = samples[0]
        rate = (ended - n_old) / (now - t_old) if now > t_old else 0.0
        left = self.total - ended
        eta = _duration(left / rate) if rate > 0 and left else ("0s" if not left else "?")

        width = self.console.width
        bar_w = max(10, min(40, width - 50))
        frac = ended / self.total if self.total else 1.0
        full = int(frac * bar_w)
        text = Text()
        text.append(self.dag.name, style="bold")
        text.append(" ")
        text.append("━" * full, style="green")
        text.append("━" * (bar_w - full), style="bright_black")
        text.append(f" {frac:4.0%}  {_duration(elapsed)} elapsed  ETA {eta}\n")
        text.append(f"done {self.done}", style="green")
        text.append("  ")
        text.append(f"running {running}", style="yellow")
        text.append("  ")
        text.append(f"failed {self.failed}", style="red" if self.failed else "")
        if self.aborted:
            text.append(f"  aborted {self.aborted}", style="red")
        text.append(f"  pending {pending}  {rate:,.1f} steps/s")
        if running:
            text.append("\nrunning: ", style="yellow")
            text.append(self._running_names(width - 9, now))
        return text

    def _running_names(self, room: int, now: float) -> str:
        """The oldest running steps' names (with how long they have run) that fit."""
        records = self.records
        parts: list[str] = []
        used = 0
        for k, step in enumerate(self.running):
            r = records[step]
            took = f" {_duration(time.time() - r.started_at)}" if r.started_at else ""
            part = self.names[step] + took
            more = len(self.running) - k
            if parts and used + len(part) + 2 > room - len(f", +{more} more"):
                return ", ".join(parts) + f", +{more} more"
            parts.append(part)
            used += len(part) + 2
        return ", ".join(parts)


def _duration(sec: float) -> str:
    if sec < 60:
        return f"{sec:.1f}s"
    if sec < 3600:
        return f"{int(sec // 60)}m{int(sec % 60):02d}s"
    return f"{int(sec // 3600)}h{int(sec % 3600 // 60):02d}m"


def _paint(text: str, style: str) -> str:
    codes = {"red": "31", "green": "32"}
    return f"\x1b[{codes[style]}m{text}\x1b[0m"
