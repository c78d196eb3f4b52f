"""Which steps a retry runs again, beyond "every step that did not succeed": a step and
everything after it (`retry --step S --downstream`), and a run carried over to its DAG
file as edited since (`retry --edited`). Pure functions of DAGs and step records."""

from __future__ import annotations

import os

import msgspec

from dagfast.model import Dag, Step
from dagfast.records.store import DAG_VERSION, StepRecord
from dagfast.status import StepStatus

__all__ = ["EditedPlan", "changed_since", "downstream", "plan_edited"]


def downstream(dag: Dag, start: int) -> list[int]:
    """`start` and every step that depends on it, directly or not, in file order."""
    below: dict[int, list[int]] = {}
    for i, step in enumerate(dag.steps):
        for d in step.depends:
            below.setdefault(d, []).append(i)
    seen = {start}
    todo = [start]
    while todo:
        for j in below.get(todo.pop(), ()):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return sorted(seen)


def changed_since(dag_path: str, started_at: float | None) -> bool:
    """Whether the DAG file at `dag_path` was modified after the run started (False
    when there is no such file to compare)."""
    if not dag_path or started_at is None:
        return False
    try:
        return os.stat(dag_path).st_mtime > started_at
    except OSError:
        return False


class EditedPlan(msgspec.Struct):
    """A retry carried over to an edited DAG: `records` (one a step of the new DAG:
    the old record of a kept step, else a blank one), `kept` (new id -> old id) and
    `changed` (names of the steps that run again because they are new or changed)."""

    records: list[StepRecord]
    kept: dict[int, int]
    changed: list[str]


def plan_edited(old: Dag, old_records: list[StepRecord], new: Dag) -> EditedPlan:
    """Keep a step of `new` when a step of `old` has its name, the same definition
    (dependencies compared by name) and succeeded, and every step it depends on is kept
    too; every other step runs again."""
    before = {s.name: i for i, s in enumerate(old.steps)}
    records: list[StepRecord] = []
    kept: dict[int, int] = {}
    changed: list[str] = []
    for i, step in enumerate(new.steps):  # file order: dependencies come first
        j = before.get(step.name)
        same = (
            j is not None
            and old_records[j].status == StepStatus.SUCCEEDED
            and _shape(new, step) == _shape(old, old.steps[j])
            and all(d in kept for d in step.depends)
        )
        if same:
            kept[i] = j
            records.append(old_records[j])
        else:
            records.append(StepRecord())
            if j is None or _shape(new, step) != _shape(old, old.steps[j]):
                changed.append(step.name)
    return EditedPlan(records, kept, changed)


def _shape(dag: Dag, step: Step) -> tuple:
    """What defines a step, with step ids (which an edit may shift) as names."""
    names = [s.name for s in dag.steps]
    extra = step.extra
    if extra is not None:
        extra = msgspec.structs.replace(extra, sees=tuple(sorted(names[k] for k in extra.sees)))
    plain = msgspec.structs.replace(step, depends=(), extra=extra)
    return msgspec.to_builtins(plain), tuple(sorted(names[d] for d in step.depends))


def carry_over(run_dir, dag: Dag) -> None:
    """Record `dag` (the edited file) as the run's DAG. (The kept steps' output follows
    them to their new ids in runtime.output.carry_over.)"""
    run_dir.write_atomic("dag.json", b'{"version":%d,' % DAG_VERSION
                         + msgspec.json.encode(dag)[1:], durable=True)
