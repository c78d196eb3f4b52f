"""`--json`: one JSON object a line for each event of a run, for machines.

Events (`event` is the first key; times are unix seconds, durations seconds):

    {"event": "run_started", "run_id", "dag", "steps": N, "time"}
    {"event": "step_started", "step": NAME, "id": I, "time"}
    {"event": "step_finished", "step", "id", "status", "exit_code", "duration", "error",
     "time"}                       status: succeeded, failed, aborted, skipped, ...;
                                   exit_code and duration are null for a step that
                                   never ran (aborted or skipped because of upstream);
                                   a sub-DAG step's event follows one a step of its
                                   sub-runs, named by address (`fan[1]/work`), no `id`
    {"event": "handler_finished", "handler": ON, "status", "exit_code", "duration", "error",
     "step": "handlerOn.ON"}
    {"event": "run_finished", "run_id", "status", "duration", "counts": {status: N},
     "outputs": {NAME: VALUE}, "path", "time"}

Lines are buffered and written 10 times a second and at the end, not once per event.
A slow reader never holds up the run: what its pipe cannot take now waits in memory, and
the end of the run waits until every line has gone (a reader that goes away ends the
stream; the run goes on).
"""

from __future__ import annotations

import time

import msgspec

from dagfast.records.address import sub_steps
from dagfast.report.base import Reporter, Ticker, Unbreakable
from dagfast.status import RunStatus, StepStatus

__all__ = ["JsonReporter"]

_LABELS = {int(s): s.label for s in StepStatus}


class JsonReporter(Reporter):
    """Writes JSON lines to the binary stream `stream` (the CLI passes stdout's buffer)."""

    def __init__(self, stream, flush_interval: float = 0.1) -> None:
        self.out = stream if isinstance(stream, Unbreakable) else Unbreakable(stream)
        self.flush_interval = flush_interval
        self.buf = bytearray()
        self._encode = msgspec.json.Encoder().encode_into
        self._ticker = None

    def _emit(self, event: dict) -> None:
        self._encode(event, self.buf, -1)
        self.buf += b"\n"

    def _flush(self, wait: bool = False) -> None:
        if self.buf:
            del self.buf[:self.out.write_ready(self.buf, wait)]

    def run_started(self, dag, run_dir, records) -> None:
        self.names = [s.name for s in dag.steps]
        self.steps = dag.steps
        self.path = run_dir.path
        self.run_id = run_dir.run_id
        self._emit({"event": "run_started", "run_id": run_dir.run_id, "dag": dag.name,
                    "steps": len(self.names), "max_active_steps": dag.max_active_steps,
                    "time": time.time()})
        self._flush()
        self._ticker = Ticker(self.flush_interval, self._flush)

    def step_started(self, step: int) -> None:
        self._emit({"event": "step_started", "step": self.names[step], "id": step,
                    "time": time.time()})

    def step_finished(self, step: int, record) -> None:
        extra = self.steps[step].extra
        if extra is not None and extra.call is not None:
            # A sub-DAG step: first its sub-runs' steps, by address (`fan[1]/work`).
            for t, r in sub_steps(self.path, step, self.names[step]):
                self._emit(_finished("step_finished", "step", t.name, r))
        self._emit(_finished("step_finished", "step", self.names[step], record, step))

    def item_finished(self, step, index, key, record, token, output) -> None:
        # One event per item, naming it by its step, index (from 0) and key.
        event = _finished("item_finished", "step", self.names[step], record, step)
        event["item"] = index
        event["key"] = key
        self._emit(event)

    def steps_cancelled(self, steps, status, reason) -> None:
        label = _LABELS[int(status)]
        now = time.time()
        names = self.names
        for i in steps:
            self._emit({"event": "step_finished", "step": names[i], "id": i, "status": label,
                        "exit_code": None, "duration": None, "error": reason, "time": now})

    def run_finished(self, result) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for on, record in result.handlers.items():
            event = _finished("handler_finished", "handler", on, record)
            event["step"] = f"handlerOn.{on}"  # its address in `logs` and `status`
            self._emit(event)
        counts: dict[str, int] = {}
        for r in result.steps:
            label = _LABELS[r.status]
            counts[label] = counts.get(label, 0) + 1
        self._emit({
            "event": "run_finished", "run_id": result.run_id,
            "status": RunStatus(result.status).label,
            "duration": result.finished_at - result.started_at, "counts": counts,
            "outputs": result.outputs, "path": result.path, "time": time.time(),
        })
        self._flush(wait=True)


def _finished(event: str, key: str, name: str, record, step: int | None = None) -> dict:
    started, finished = record.started_at, record.finished_at
    out = {"event": event, key: name}
    if step is not None:
        out["id"] = step
    out.update({
        "status": _LABELS[record.status], "exit_code": record.exit_code,
        "duration": finished - started if started and finished else None,
        "error": record.error, "time": finished or time.time(),
    })
    if record.cpu is not None:  # what its process cost (wait4's rusage)
        out["cpu_seconds"] = record.cpu
        out["peak_rss_kib"] = record.rss
    return out
