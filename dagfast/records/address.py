"""Addresses of steps in a run, as every command takes and shows them: `STEP` (a name,
`id:` or number), `handlerOn.EVENT` for a handler, `STEP/CHILD` for a step of a sub-DAG
step's run (any depth), `STEP[K]/CHILD` for its fan-out item K."""

from __future__ import annotations

import os

import msgspec

from dagfast.errors import RunError
from dagfast.model import Dag, Step
from dagfast.records.read import RunState, child_runs, read_run
from dagfast.records.store import StepRecord
from dagfast.status import RunStatus, StepStatus

__all__ = [
    "Target", "failed_leaf", "item_run", "item_runs", "resolve_target", "runs_by_item", "sub_runs",
    "sub_steps",
]


def sub_runs(run_path: str, step: int, name: str) -> list[tuple[str, RunState, Dag]]:
    """The readable sub-runs of sub-DAG step `step` (named `name`) of the run at
    `run_path`: (address prefix, state, DAG), the prefix `name[K]/` (`name/` when the
    step ran one sub-run), in item order. A fan-out item that ran as a process of the
    caller's engine (runtime.fanout) is a run of one step, read from the caller's
    record (`RunState.tokens`)."""
    found = runs_by_item(run_path, step)
    many = len(found) > 1
    return [(f"{name}[{k}]/" if many else f"{name}/", state, dag) for k, state, dag in found]


def runs_by_item(run_path: str, step: int) -> list[tuple[int, RunState, Dag]]:
    """(item index K, state, DAG) of the readable sub-runs of step `step`, K in order
    (see `sub_runs`)."""
    children = child_runs(run_path, step)
    items = item_runs(run_path, step)
    found = []
    for k, path in children:
        if k in items:
            continue  # a later attempt ran it in the caller's engine
        try:
            state = read_run(path)
            dag = state.dag()
        except RunError:
            continue
        found.append((k, state, dag))
    found += [(k, state, dag) for k, (state, dag) in items.items()]
    found.sort(key=lambda f: f[0])
    return found


# (run path, journal size) -> {step: {k: (state, dag)}}: a journal is read once per
# command, however many of its steps are asked about.
_ITEM_RUNS: dict[tuple[str, int], dict] = {}


def item_runs(run_path: str, step: int) -> dict[int, tuple[RunState, Dag]]:
    """Item index K -> (state, DAG) of fan-out step `step`'s items that ran as processes
    of the engine of the run at `run_path` (their latest run)."""
    try:
        size = os.stat(os.path.join(run_path, "journal")).st_size
    except OSError:
        return {}
    cached = _ITEM_RUNS.get((run_path, size))
    if cached is None:
        cached = _ITEM_RUNS[(run_path, size)] = _item_runs(run_path)
    return cached.get(step, {})


def item_run(home_dir: str, run_id: str) -> RunState | None:
    """The fan-out item whose run id (its DAG_RUN_ID) is `run_id`,
    `<caller's run id>.<step>.<K>[.a<attempt>]`, when it ran in its caller's engine."""
    from dagfast.records.read import find_run  # only here

    head, dot, k = run_id.rpartition(".")
    if k.startswith("a"):  # a retry's: the same item
        head, dot, k = head.rpartition(".")
    caller, dot2, i = head.rpartition(".")
    if not (dot and dot2 and i.isdigit() and k.isdigit()):
        return None
    path = find_run(home_dir, caller)
    if path is None:
        return None
    found = item_runs(path, int(i)).get(int(k))
    return found[0] if found is not None else None


def _item_runs(run_path: str) -> dict[int, dict[int, tuple[RunState, Dag]]]:
    from dagfast.records.items import item_dags  # only runs with fan-out steps

    by_step, fans = item_dags(run_path)
    run_id = os.path.basename(run_path)
    out: dict[int, dict[int, tuple[RunState, Dag]]] = {}
    for i, fan in fans.items():
        dag = Dag(name=fan.dag_name, steps=(Step(name=fan.step_name, argv=()),))
        runs = out[i] = {}
        for item in by_step.get(i, {}).values():
            if item.token < 0:
                continue
            record = StepRecord(item.status, item.exit_code, item.started_at,
                                item.finished_at, item.error, cpu=item.cpu, rss=item.rss)
            status = _RUN_STATUS.get(item.status, RunStatus.FAILED)
            runs[item.index] = (RunState(
                path=run_path, run_id=f"{run_id}.{i}.{item.index}", dag_name=fan.dag_name,
                status=status, started_at=item.started_at, finished_at=item.finished_at,
                steps=[record], tokens=[item.token], virtual_dag=dag,
            ), dag)
    return out


_RUN_STATUS = {
    StepStatus.SUCCEEDED: RunStatus.SUCCEEDED, StepStatus.FAILED: RunStatus.FAILED,
    StepStatus.ABORTED: RunStatus.ABORTED,
    StepStatus.PARTIALLY_SUCCEEDED: RunStatus.PARTIALLY_SUCCEEDED,
}


def sub_steps(run_path: str, step: int, name: str) -> list[tuple[Target, object]]:
    """Every step of the sub-runs of sub-DAG step `step` (named `name`), any depth, in
    order, as (Target, its StepRecord)."""
    found = []
    for here, state, dag in sub_runs(run_path, step, name):
        for i, (s, r) in enumerate(zip(dag.steps, state.steps)):
            found.append((Target(state.path, dag, i, here + s.name, r.error, _token(state, i)), r))
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
                deeper = failed_leaf(state.path, i, child) if state.tokens is None else None
                return (deeper
                        or Target(state.path, dag, i, child, r.error, _token(state, i)))
    return None


class Target(msgspec.Struct):  # not a dataclass: start-up
    """What an address names: the run (`run_path`, whose DAG is `dag`) that holds the
    step, the step's id there (handlers follow the steps), and its display name."""

    run_path: str
    dag: Dag
    step: int
    name: str
    error: str = ""
    # A fan-out item run in its caller's engine: where its output is in the caller's
    # output store (`run_path` is the caller's run), and its state.
    token: int | None = None
    state: RunState | None = None

    @property
    def log(self) -> int:
        """The step's token in the output store of `run_path`."""
        return self.step if self.token is None else self.token


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
        items = item_runs(path, i)
        if not children and not items:
            raise RunError(f"`{address}`: step `{name}` ran no sub-DAG in run "
                           f"`{os.path.basename(path)}`")
        runs = dict(children)
        runs.update(items)
        ks = sorted(runs)
        if k is None:
            if len(runs) > 1:
                raise RunError(f"`{address}`: step `{name}` ran {len(runs)} sub-runs; "
                               f"name one: `{name}[0]` to `{name}[{ks[-1]}]`")
            k = ks[0]
        if k not in runs:
            have = ", ".join(f"[{j}]" for j in ks[:20]) + (", ..." if len(ks) > 20 else "")
            raise RunError(f"`{address}`: step `{name}` has no sub-run [{k}] (it has "
                           f"{have})")
        if k in items:  # an item run in the caller's engine: its one step
            state, sub = items[k]
            shown.append(parts[depth + 1] if depth + 1 < len(parts) else "")
            if depth + 2 != len(parts):
                raise RunError(f"`{address}`: `{part}` ran one step, "
                               f"`{sub.steps[0].name}`: name it last")
            last = parts[depth + 1]
            if last not in (sub.steps[0].name, "0"):
                raise RunError(f"`{address}`: DAG `{sub.name}` has no step `{last}` (its "
                               f"step: {sub.steps[0].name})")
            return Target(path, sub, 0, "/".join(shown), state.steps[0].error,
                          state.tokens[0], state)
        path = runs[k]
    raise RunError(f"`{address}` names no step")  # an empty address: split gives [""]


def _token(state: RunState, i: int) -> int | None:
    return state.tokens[i] if state.tokens is not None else None


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
