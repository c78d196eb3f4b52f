"""`--junit FILE`: a JUnit XML report, written when the run ends, for CI systems.

One <testsuite> for the DAG, one <testcase> a step (and one a handler that ran, and one
a step of each sub-DAG run, named by its address: `fan[1]/work`), named after the step, with classname the DAG's name and time its duration. A failed step has a
<failure> whose message is the error ("exit status 3") and whose text is the tail of its
stderr; a step stopped with the run has an <error>; a step that never ran (upstream
failed or skipped, precondition unmet) is <skipped> with the reason. Each case carries the
tail of its stdout and stderr in <system-out>/<system-err>.
"""

from __future__ import annotations

import os
import re
import socket
import time

from dagfast.records.address import sub_steps
from dagfast.records.read import step_log
from dagfast.report.base import Reporter, tail_bytes
from dagfast.status import StepStatus

__all__ = ["JUnitReporter", "write_junit"]

# Characters XML 1.0 cannot hold, even escaped.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class JUnitReporter(Reporter):
    """Writes the JUnit XML report of the run to `path` when it ends."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)

    def run_finished(self, result) -> None:
        # Checked before the run (cli), so this fails only on a disk that filled or a
        # directory that went away meanwhile: said in one line, the run's outcome stands.
        try:
            write_junit(result, self.path)
        except OSError as exc:
            import sys

            why = exc.strerror or str(exc)
            print(f"dagfast: cannot write the JUnit report {self.path}: {why}", file=sys.stderr)


def write_junit(result, path: str) -> None:
    """Write the JUnit XML report of a finished run (a RunResult) to `path`."""
    import xml.etree.ElementTree as ET

    dag = result.dag
    cases = []
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for i, (step, record) in enumerate(zip(dag.steps, result.steps)):
        cases.append(_case(ET, dag.name, step.name, record, (result.path, i), counts))
        if step.extra is not None and step.extra.call is not None:
            for t, r in sub_steps(result.path, i, step.name):
                cases.append(_case(ET, dag.name, t.name, r, (t.run_path, t.log), counts))
    events = [h.on for h in dag.handlers]
    for on, record in result.handlers.items():
        log = (result.path, len(dag.steps) + events.index(on)) if on in events else None
        cases.append(_case(ET, f"{dag.name}.handlerOn", on, record, log, counts))
    took = f"{result.finished_at - result.started_at:.3f}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(result.started_at))
    attrs = {"tests": str(len(cases)), **{k: str(v) for k, v in counts.items()}, "time": took}
    root = ET.Element("testsuites", {"name": "dagfast", **attrs})
    suite = ET.SubElement(root, "testsuite", {
        "name": dag.name, **attrs, "timestamp": stamp, "hostname": socket.gethostname(),
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (("run_id", result.run_id), ("dag_file", dag.path),
                        ("run_directory", result.path)):
        ET.SubElement(props, "property", {"name": name, "value": _clean(value)})
    # What each step's process cost, as suite properties (the JUnit schema has none on
    # a test case): `cost.<step>.cpu_seconds`, `cost.<step>.peak_rss_kib`.
    for step, record in zip(dag.steps, result.steps):
        for key, value in (("cpu_seconds", record.cpu), ("peak_rss_kib", record.rss)):
            if value is not None:
                ET.SubElement(props, "property", {"name": _clean(f"cost.{step.name}.{key}"),
                                                  "value": str(value)})
    suite.extend(cases)
    ET.indent(root)
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data + b"\n")
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _case(ET, classname: str, name: str, record, log: tuple[str, int] | None, counts: dict):
    """The test case of one step; `log`: (run directory, step id) of its logs."""
    started, finished = record.started_at, record.finished_at
    took = finished - started if started and finished else 0.0
    case = ET.Element("testcase", {"name": name, "classname": classname, "time": f"{took:.3f}"})
    status = record.status
    err_tail = _tail(*log, "err") if log else []
    if status == StepStatus.FAILED:
        counts["failures"] += 1
        el = ET.SubElement(case, "failure", {"message": _clean(record.error), "type": "failed"})
        el.text = _clean("\n".join(err_tail))
    elif status == StepStatus.ABORTED and started:
        counts["errors"] += 1  # it ran and was stopped
        ET.SubElement(case, "error", {"message": _clean(record.error or "stopped"), "type": "aborted"})
    elif status not in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED):
        counts["skipped"] += 1
        reason = record.error or StepStatus(status).label
        ET.SubElement(case, "skipped", {"message": _clean(reason)})
    if log:
        out_tail = _tail(*log, "out")
        if out_tail:
            ET.SubElement(case, "system-out").text = _clean("\n".join(out_tail))
        if err_tail:
            ET.SubElement(case, "system-err").text = _clean("\n".join(err_tail))
    return case


def _tail(run_path: str, step: int, stream: str) -> list[str]:
    return tail_bytes(step_log(run_path, step, stream, last=16384))


def _clean(text: str) -> str:
    return _ILLEGAL.sub("\ufffd", text)
