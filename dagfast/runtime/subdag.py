"""`call:`/`run:` steps: another DAG (or a bare list of steps) run inside this engine.

A sub-DAG runs on the same event loop as a child engine, with its own maxActiveSteps
and its own run directory under the caller's (`children/<step id>.<k>/`); the engine's
`children` (session.Children) loads and runs it, so this module needs neither the
loader nor the engine. The step's status is the sub-run's and its stdout (so its
`output:`) is a JSON object of the sub-run's outputs. `parallel:` and `matrix:` run the
sub-DAG once per item (runtime.fanout).
"""

from __future__ import annotations

import os

import msgspec

from dagfast.loader.expand import ExpandError, expand
from dagfast.loader.subnames import Target, looked_in, resolve
from dagfast.model import Params, Step
from dagfast.runtime.outputs import expand_refs, fill_params
from dagfast.runtime.stepoutputs import fill
from dagfast.status import RunStatus, StepStatus

__all__ = ["run"]

_OK = (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED)


async def run(flow, i: int, step: Step, env: dict):
    """Run step `i`'s sub-DAG(s) for `flow` (flow.Flow): (status, exit code, error)."""
    engine = flow.engine
    state = flow.run
    ex = step.extra
    scope = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
    dag = state.dag
    base = os.path.dirname(dag.path) if dag.path else dag.dir
    # `${NAME.key[0]}` reads an output's JSON wherever `${NAME}` works.
    refs = state.seen_values(ex.sees)
    try:
        ref = expand(expand_refs(ex.call, refs), scope)
    except ExpandError as e:
        return _fail(engine, i, f"`call`: {e}")
    # A local sub-DAG or a file, found as Dagu finds it (loader.subnames).
    target = resolve(ref, dag.path, base, dag.dags_dir, dag.local_dags)
    if target is None:
        why = looked_in(ref, base, dag.dags_dir, dag.local_dags)
        return _fail(engine, i, f"cannot load the sub-DAG `{ref}`: no such DAG ({why})")
    if ex.reads is not None:  # Dagu 2.x `${steps.ID.outputs.NAME}` in the params
        ex = msgspec.structs.replace(ex, params=tuple(
            (k, fill(state, ex.reads, v)) for k, v in ex.params))
    if ex.parallel is None:
        params = fill_params(ex.params, scope, refs)
        result = await _one(engine, i, 0, target, params)
        if isinstance(result, str):
            return _fail(engine, i, result)
        _write(engine, i, result.outputs)
        status = result.step_status()
        if status == StepStatus.FAILED:
            why = result.error or result.first_failure()
            why = f": {why}" if why else ""
            return status, 1, f"sub-DAG `{result.dag.name}` {RunStatus(result.status).label}{why}"
        return status, (0 if result.status in _OK else None), ""
    from dagfast.runtime import fanout  # only DAGs with fan-out steps (start-up)

    return await fanout.run(flow, i, step, env, target)


async def _one(engine, i: int, k: int, target: Target, params: Params):
    """One sub-run to its end: its RunResult, or the text of why it could not start."""
    return await engine.children.run(engine, i, k, target.path, params, target.document)


def _write(engine, i: int, doc) -> None:
    """The step's stdout holds the JSON (so `output:` captures it)."""
    data = msgspec.json.encode(doc) + b"\n"
    if engine.run.masker is not None:
        data = engine.run.masker.bytes(data)
    engine.output.put(i, 0, data)  # a failed write: the record says the step's end


def _fail(engine, i: int, error: str):
    if engine.run.masker is not None:
        error = engine.run.masker.text(error)
    engine.output.put(i, 1, (error + "\n").encode())
    return StepStatus.FAILED, 1, error
