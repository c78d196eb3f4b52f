"""Reporters: told what a run does. The base class's hooks do nothing, so a reporter
overrides only what it cares about; the engine never formats output itself."""

from __future__ import annotations

import time

from .status import RunStatus, StepStatus

__all__ = ["ConsoleReporter", "Reporter", "Reporters"]


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

    def run_finished(self, result) -> None:
        """Every step has ended or the run was stopped; `result` is final."""


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

    def run_finished(self, result) -> None:
        for r in self.reporters:
            r.run_finished(result)


class ConsoleReporter(Reporter):
    """Plain lines: one when a step starts and one when it ends, then a summary.

    Writes to the text stream it is given (the CLI passes stdout); with `quiet` only the
    summary is written."""

    def __init__(self, stream, quiet: bool = False) -> None:
        self.out = stream
        self.quiet = quiet
        self.names: tuple[str, ...] = ()

    def run_started(self, dag, run_dir, records) -> None:
        self.dag = dag
        self.names = tuple(s.name for s in dag.steps)
        self.t0 = time.monotonic()
        if not self.quiet:
            limit = dag.max_active_steps or "unlimited"
            self.out.write(
                f"dagfast: run {run_dir.run_id} of {dag.name} "
                f"({len(self.names)} steps, maxActiveSteps {limit})\n"
            )

    def step_started(self, step: int) -> None:
        if not self.quiet:
            self.out.write(f"  started    {self.names[step]}\n")

    def step_finished(self, step: int, record) -> None:
        if self.quiet:
            return
        took = (record.finished_at or 0) - (record.started_at or 0)
        status = StepStatus(record.status).label
        extra = f" ({record.error})" if record.error and status != "succeeded" else ""
        self.out.write(f"  {status:<10} {self.names[step]} {took:.2f}s{extra}\n")

    def steps_cancelled(self, steps, status, reason) -> None:
        if self.quiet:
            return
        label = StepStatus(status).label
        for i in steps:
            self.out.write(f"  {label:<10} {self.names[i]} ({reason})\n")

    def run_finished(self, result) -> None:
        counts: dict[int, int] = {}
        for r in result.steps:
            counts[r.status] = counts.get(r.status, 0) + 1
        parts = ", ".join(
            f"{n} {StepStatus(code).label}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1])
        )
        took = result.finished_at - result.started_at
        out = self.out
        out.write(
            f"{RunStatus(result.status).label}: {result.dag.name}, {len(result.steps)} steps "
            f"in {took:.2f}s ({parts or 'no steps'})\n"
        )
        failed = [i for i, r in enumerate(result.steps) if r.status == StepStatus.FAILED]
        for i in failed[:20]:
            r = result.steps[i]
            out.write(f"  failed: {self.names[i]} ({r.error}); stderr: {result.path}/steps/{i}.err\n")
        if len(failed) > 20:
            out.write(f"  ... and {len(failed) - 20} more failed steps\n")
        out.write(f"  run directory: {result.path}\n")
        out.flush()
