"""Addresses of steps in a run, as every command takes and shows them: `STEP` (a name,
`id:` or number), `handlerOn.EVENT` for a handler, `STEP/CHILD` for a step of a sub-DAG
step's run (any depth), `STEP[K]/CHILD` for its fan-out item K."""

from __future__ import annotations

import os

import msgspec

from dagfast.errors import RunError
from dagfast.model import Dag
from dagfast.records.read import RunState, child_runs, read_run
from dagfast.status import StepStatus

__all__ = ["Target", "failed_leaf", "resolve_target", "sub_runs", "sub_steps"]


def sub_runs(run_path: str, step: int, name: str) -> list[tuple[str, RunState, Dag]]:
    """The readable sub-runs of sub-DAG step `step` (named `name`) of the run at
    `run_path`: (address prefix, state, DAG), the prefix `name[K]/` (`name/` when the
    step ran one sub-run), in item order."""
    children = child_runs(run_path, step)
    found = []
    for k, path in children:
        try:
            state = read_run(path)
            dag = state.dag()
        except RunError:
            continue
        found.append((f"{name}[{k}]/" if len(children) > 1 else f"{name}/", state, dag))
    return found


def sub_steps(run_path: str, step: int, name: str) -> list[tuple[Target, object]]:
    """Every step of the sub-runs of sub-DAG step `step` (named `name`), any depth, in
    order, as (Target, its StepRecord)."""
    found = []
    for here, state, dag in sub_runs(run_path, step, name):
        for i, (s, r) in enumerate(zip(dag.steps, state.steps)):
            found.append((Target(state.path, dag, i, here + s.name, r.error), r))
            if s.extra is not None and s.extra.call is not None:
                found += sub_steps(state.path, i, here + s.name)
    return found


def failed_leaf(run_path: str, step: int, name: str) -> Target | None:
    """The first failed step inside the sub-runs of sub-DAG step `step` (named `name`)
    of the run at `run_path`, followed down to a step that is not a sub-DAG step; None
    when it ran no sub-DAG or none of its sub-runs has a failed step."""
    for here, state, dag in sub_runs(run_path, step, name):
        for i, r in enumerate(state.steps):
            if r.status == StepStatus.FAILED:
                child = here + dag.steps[i].name
                return (failed_leaf(state.path, i, child)
                        or Target(state.path, dag, i, child, r.error))
    return None


class Target(msgspec.Struct):  # not a dataclass: start-up
    """What an address names: the run (`run_path`, whose DAG is `dag`) that holds the
    step, the step's id there (handlers follow the steps), and its display name."""

    run_path: str
    dag: Dag
    step: int
    name: str
    error: str = ""


def resolve_target(run_path: str, address: str) -> Target:
    """The step `address` names in the run at `run_path`: `STEP` (a name, `id:` or
    number), `handlerOn.EVENT`, `STEP/CHILD` for the step CHILD of a sub-DAG step's run
    (any depth), `STEP[K]/CHILD` for its fan-out item K. RunError saying which part
    names nothing."""
    path = run_path
    shown = []
    parts = address.split("/")
    for depth, part in enumerate(parts):
        dag = RunState(path=path, run_id=os.path.basename(path)).dag()
        name, k = _item(part)
        i = _step_of(dag, name, address)
        shown.append(part)
        if depth == len(parts) - 1:
            if k is not None:
                raise RunError(f"`{address}`: `{part}` names a sub-run, not a step; add "
                               f"`/STEP` (one of its steps)")
            return Target(path, dag, i, "/".join(shown))
        children = child_runs(path, i)
        if not children:
            raise RunError(f"`{address}`: step `{name}` ran no sub-DAG in run "
                           f"`{os.path.basename(path)}`")
        if k is None:
            if len(children) > 1:
                raise RunError(f"`{address}`: step `{name}` ran {len(children)} sub-runs; "
                               f"name one: `{name}[0]` to `{name}[{children[-1][0]}]`")
            k = children[0][0]
        runs = dict(children)
        if k not in runs:
            raise RunError(f"`{address}`: step `{name}` has no sub-run [{k}] (it has "
                           f"{', '.join(f'[{j}]' for j in runs)})")
        path = runs[k]
    raise RunError(f"`{address}` names no step")  # an empty address: split gives [""]


def _item(part: str) -> tuple[str, int | None]:
    """`fan[2]` -> ("fan", 2); `fan` -> ("fan", None)."""
    if part.endswith("]") and "[" in part:
        name, _, k = part[:-1].rpartition("[")
        if k.isdigit():
            return name, int(k)
    return part, None


# Dagu's own names of the handlers (its UI and logs say `onFailure`): the same handlers.
_DAGU_NAMES = {"onInit": "init", "onSuccess": "success", "onFailure": "failure",
               "onAbort": "abort", "onCancel": "abort", "onExit": "exit"}


def _step_of(dag: Dag, name: str, address: str) -> int:
    if name in _DAGU_NAMES and all(s.name != name and s.id != name for s in dag.steps):
        name = f"handlerOn.{_DAGU_NAMES[name]}"
    if name.startswith("handlerOn."):
        events = [h.on for h in dag.handlers]
        on = name[len("handlerOn."):]
        if on in events:
            return len(dag.steps) + events.index(on)
        have = ", ".join(f"handlerOn.{e}" for e in events) or "none"
        raise RunError(f"`{address}`: DAG `{dag.name}` has no `{name}` handler "
                       f"(its handlers: {have})")
    try:
        return dag.step_id(name)
    except RunError as exc:
        raise RunError(f"`{address}`: {exc}") from None
