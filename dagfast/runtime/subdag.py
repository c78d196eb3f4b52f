"""`call:`/`run:` steps: another DAG (or a bare list of steps) run inside this engine.

A sub-DAG runs on the same event loop as a child Engine, with its own maxActiveSteps
and its own run directory under the caller's (`children/<step id>.<k>/`); the step's
status is the sub-run's and its stdout (so its `output:`) is a JSON object of the
sub-run's outputs. `parallel:` runs one sub-DAG per item, at most maxConcurrent at once.
"""

from __future__ import annotations

import asyncio
import os

import msgspec

from dagfast.errors import LoadError
from dagfast.loader.expand import ExpandError, expand
from dagfast.model import Params, Step
from dagfast.runtime.outputs import expand_refs
from dagfast.loader.params import override
from dagfast.status import RunStatus, StepStatus
from dagfast.records.store import RunDir

__all__ = ["run"]

_STEP_STATUS = {
    RunStatus.SUCCEEDED: StepStatus.SUCCEEDED,
    RunStatus.PARTIALLY_SUCCEEDED: StepStatus.PARTIALLY_SUCCEEDED,
    RunStatus.ABORTED: StepStatus.ABORTED,
}
_OK = (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED)


async def run(engine, i: int, step: Step, env: dict):
    """Run step `i`'s sub-DAG(s): (status, exit code, error)."""
    ex = step.extra
    scope = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
    dag = engine.dag
    base = os.path.dirname(dag.path) if dag.path else dag.dir
    # `${NAME.key[0]}` reads an output's JSON wherever `${NAME}` works.
    steps = dag.steps
    refs = {steps[p].extra.output: engine.outputs.get(p, "") for p in ex.sees}
    try:
        path = os.path.join(base, os.path.expanduser(expand(expand_refs(ex.call, refs), scope)))
    except ExpandError as e:
        return _fail(engine, i, f"`call`: {e}")
    if ex.parallel is None:
        params = _params(ex.params, scope, refs)
        result = await _one(engine, i, 0, path, params)
        if isinstance(result, str):
            return _fail(engine, i, result)
        _write(engine, i, result.outputs)
        status = _STEP_STATUS.get(result.status, StepStatus.FAILED)
        if status == StepStatus.FAILED:
            why = f": {result.error}" if result.error else ""
            return status, 1, f"sub-DAG `{result.dag.name}` {RunStatus(result.status).label}{why}"
        return status, (0 if result.status in _OK else None), ""
    try:
        items = _items(ex.parallel, scope, refs)
    except ValueError as e:
        return _fail(engine, i, f"`parallel`: {e}")
    if not items:
        # As Dagu: a fan-out over nothing is a mistake (an empty or misspelt variable).
        expr = ex.parallel.expr
        shown = f" (`{expr}` expanded to nothing)" if expr is not None else ""
        return _fail(engine, i, f"parallel: no items to run the sub-DAG with{shown}")
    gate = asyncio.Semaphore(max(1, ex.parallel.max_concurrent))

    async def each(k: int, item):
        async with gate:
            if engine._stopping:
                return "the run was stopped"
            local = dict(scope, ITEM=item if type(item) is str else msgspec.json.encode(item).decode())
            params = _params(ex.params, local, refs)
            if type(item) is dict:
                params = override(params, tuple(item.items()))
            else:
                params = override(params, ((None, item), ("ITEM", item)))
            return await _one(engine, i, k, path, params)

    results = await asyncio.gather(*(each(k, it) for k, it in enumerate(items)))
    ok = sum(1 for r in results if not isinstance(r, str) and r.status in _OK)
    doc = {
        "summary": {"total": len(results), "succeeded": ok, "failed": len(results) - ok},
        "results": [
            {"error": r} if isinstance(r, str) else
            {"name": r.dag.name, "status": RunStatus(r.status).label, "outputs": r.outputs}
            for r in results
        ],  # fmt: skip
        "outputs": [{} if isinstance(r, str) else r.outputs for r in results],
    }
    _write(engine, i, doc)
    if engine._stopping:
        return StepStatus.ABORTED, None, "the run was stopped"
    if ok < len(results):
        return StepStatus.FAILED, 1, f"{len(results) - ok} of {len(results)} sub-DAG runs failed"
    return StepStatus.SUCCEEDED, 0, ""


async def _one(engine, i: int, k: int, path: str, params: Params):
    """One sub-run to its end: its RunResult, or the text of why it could not start."""
    from dagfast.runtime.engine import Engine
    from dagfast.loader import load_sub

    steps = engine.dag.steps
    done = frozenset(
        steps[j].name for j, r in enumerate(engine._records)
        if r.status in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED,
                        StepStatus.SKIPPED)
    )  # fmt: skip
    loop = _recursion(engine, path)
    if loop:
        return f"the sub-DAG calls itself: {loop}"
    environ = {os.fsdecode(a): os.fsdecode(b) for a, b in engine._base_env.items()}
    try:
        sub = load_sub(path, environ=environ, params=params, work_dir=engine.dag.dir, done=done)
    except LoadError as e:
        return "cannot load the sub-DAG: " + "; ".join(str(p) for p in e.problems[:5])
    # The sub-run's record: a run directory of its own, kept under the caller's.
    children = os.path.join(engine.run_dir.path, "children")
    mask = engine.masker.bytes if engine.masker is not None else None
    run_dir = RunDir.create(sub, children, f"{engine.run_dir.run_id}.{i}.{k}", mask=mask)
    # The caller's executor: a sub-DAG's steps run where the caller's do (on its Dask
    # cluster, say), whatever the sub-DAG's own file says.
    child = Engine(sub, run_dir, None, parent=engine, executor=engine._executor)
    engine._children.add(child)
    try:
        return await child.run_nested()
    finally:
        engine._children.discard(child)


def _recursion(engine, path: str) -> str:
    """`a.yaml -> b.yaml -> a.yaml` when the file `path` is already running in the
    chain of callers of `engine` (a run that would never end), else ""."""
    target = os.path.realpath(path)
    chain = []
    caller = engine
    while caller is not None:
        chain.append(caller.dag.path)
        if caller.dag.path and os.path.realpath(caller.dag.path) == target:
            names = [os.path.basename(p) for p in reversed(chain)] + [os.path.basename(path)]
            return " -> ".join(names)
        caller = caller.parent
    return ""


def _params(params: Params, scope: dict, refs: dict) -> Params:
    out = []
    for name, value in params:
        try:
            value = expand(expand_refs(value, refs), scope)
        except ExpandError:
            pass
        out.append((name, value))
    return tuple(out)


def _items(fanout, scope: dict, refs: dict) -> list:
    """The items to fan out over: as written, or a variable holding a JSON array or
    lines (or words) of text."""
    if fanout.expr is None:
        return list(fanout.items)
    text = expand(expand_refs(fanout.expr, refs), scope).strip()
    if text.startswith("["):
        value = msgspec.json.decode(text)
        if type(value) is not list:
            raise ValueError("the items must be a JSON array")
        return [x if type(x) in (str, dict) else msgspec.json.encode(x).decode() for x in value]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        lines = lines[0].split()
    return lines


def _write(engine, i: int, doc) -> None:
    """The step's stdout log holds the JSON (so `output:` captures it)."""
    data = msgspec.json.encode(doc) + b"\n"
    if engine.masker is not None:
        data = engine.masker.bytes(data)
    with open(engine.run_dir.stdout_path(i), "wb", opener=_private) as f:
        f.write(data)


def _fail(engine, i: int, error: str):
    if engine.masker is not None:
        error = engine.masker.text(error)
    with open(engine.run_dir.stderr_path(i), "a", encoding="utf-8", opener=_private) as f:
        f.write(error + "\n")
    return StepStatus.FAILED, 1, error


def _private(path: str, flags: int) -> int:
    """Logs are the user's alone, as every file of a run directory (0600)."""
    return os.open(path, flags, 0o600)
