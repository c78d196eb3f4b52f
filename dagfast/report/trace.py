"""A recorded run as a picture: its steps as bars on concurrency lanes (`timeline`),
and those bars in Chrome's trace event format (`chrome_trace`: open the file in
Perfetto, https://ui.perfetto.dev, or chrome://tracing).

A lane is a concurrency slot: a bar takes the lowest lane free at its start, so the
number of lanes is the most steps that ran at once. Sub-DAG steps' sub-runs follow
their caller, named by their address (`fan[1]/work`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from dagfast.records.address import sub_runs
from dagfast.records.read import RunState, step_attempts
from dagfast.status import StepStatus

__all__ = ["Bar", "chrome_trace", "cost", "timeline"]


@dataclass
class Bar:
    """One step's execution: when, on which lane, how it ended; `run_path` and `step`
    say where its logs are."""

    name: str
    start: float
    end: float
    status: str
    exit_code: int | None
    error: str
    attempts: int
    run_path: str
    step: int
    depends: list[str] = field(default_factory=list)
    lane: int = 0
    depth: int = 0
    cost: dict = field(default_factory=dict)


def cost(record) -> dict:
    """What a step cost (CPU seconds, peak memory), as its record says: every field of
    the record whose name speaks of cpu, rss or memory; {} when the record has none."""
    fields = msgspec.structs.asdict(record)
    return {k: v for k, v in fields.items()
            if v is not None and any(w in k for w in ("cpu", "rss", "mem"))}


def timeline(state: RunState, now: float | None = None) -> list[Bar]:
    """The bars of the run `state` (and of its sub-runs), ordered by start, each on a
    lane; a step still running ends at `now` (default: the record's last time)."""
    bars = _bars(state, state.dag(), "", 0, now or state.last_recorded_at or 0.0)
    bars.sort(key=lambda b: (b.start, b.depth, b.name))
    ends: list[float] = []  # per lane: when its last bar ends
    for b in bars:
        for lane, end in enumerate(ends):
            if end <= b.start:
                break
        else:
            lane = len(ends)
            ends.append(0.0)
        b.lane = lane
        ends[lane] = b.end
    return bars


def _bars(state: RunState, dag, prefix: str, depth: int, now: float) -> list[Bar]:
    bars = []
    names = [s.name for s in dag.steps]
    for i, (step, r) in enumerate(zip(dag.steps, state.steps)):
        name = prefix + step.name
        if r.started_at is not None:
            label = StepStatus(r.status).label
            if r.status == StepStatus.RUNNING and state.interrupted:
                label = "interrupted"
            end = r.finished_at if r.finished_at is not None else max(now, r.started_at)
            bars.append(Bar(name, r.started_at, end, label, r.exit_code, r.error,
                            step_attempts(state.path, state.token(i)), state.path,
                            state.token(i),
                            [prefix + names[d] for d in step.depends], depth=depth,
                            cost=cost(r)))
        if step.extra is None or step.extra.call is None:
            continue
        for here, sub, sub_dag in sub_runs(state.path, i, name):
            bars += _bars(sub, sub_dag, here, depth + 1, now)
    return bars


def chrome_trace(state: RunState, bars: list[Bar]) -> dict:
    """The trace event document: a complete event ("X") a bar, on thread (lane) + 1 of
    one process named after the run; times in microseconds from the run's start."""
    t0 = min([state.started_at or 0.0] + [b.start for b in bars])
    events: list[dict] = [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0,
         "args": {"name": f"{state.dag_name} {state.run_id}"}},
    ]
    for lane in sorted({b.lane for b in bars}):
        events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": lane + 1,
                       "args": {"name": f"slot {lane + 1}"}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": lane + 1,
                       "args": {"sort_index": lane}})
    for b in bars:
        args = {"status": b.status, "exit_code": b.exit_code, "attempts": b.attempts}
        if b.error:
            args["error"] = b.error
        args.update(b.cost)
        events.append({
            "name": b.name, "cat": b.status, "ph": "X", "pid": 1, "tid": b.lane + 1,
            "ts": round((b.start - t0) * 1e6, 3),
            "dur": round(max(0.0, b.end - b.start) * 1e6, 3), "args": args,
        })
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"dag": state.dag_name, "run_id": state.run_id,
                          "status": state.label}}
