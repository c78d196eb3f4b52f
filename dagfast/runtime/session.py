"""One way to start a run (STYLE rule 14): `dagfast run`, `retry`, `dry` and the Python
API (`dagfast.run`) all come through here.

First, the DAG is loaded with its params and the executor chosen; second, the limit in
force is computed once (the file, `--max-active-steps`, the system's descriptor and
process caps) and written into the DAG the run records, so the banner, `status`,
`--json` and the record all show it; third, a run slot is taken or the run directory
made; last, the engine runs, and the slot is released. `exit_status` is the one rule
that turns an end into an exit status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import msgspec

from dagfast.errors import LoadError, ParamsError, RunError, UsageError
from dagfast.exec.base import UNLIMITED
from dagfast.loader import load, load_sub
from dagfast.loader.params import parse
from dagfast.loader.subdags import check_sub_dags
from dagfast.model import Dag
from dagfast.records.store import OUTPUT_LOST, RunDir, home
from dagfast.report.base import Reporter
from dagfast.runtime.state import Run, RunResult
from dagfast.status import RunStatus, StepStatus

# The event loop, the engine and the spawn pool (about 11 MB) are imported by the
# functions that run, after the DAG is parsed: the parser's transient peak is then
# memory they reuse (a 10,000-step run peaked 5 MB higher with them imported first).

__all__ = ["Children", "dry", "exit_status", "limit_in_force", "retry", "run", "run_in"]


def run(
    dag: Dag | str | os.PathLike,
    *,
    params=None,
    max_active_steps: int | None = None,
    reporter: Reporter | None = None,
    home_dir: str | None = None,
    queue: bool = True,
    executor: str | None = None,
    scheduler: str | None = None,
    shared_dir: str | None = None,
    on_reading=None,
) -> RunResult:
    """Run a DAG (a loaded `Dag` or a path to its YAML file) to its end.

    `params` override the DAG's own as `dagfast run -- ...` does: a mapping
    (`{"DATE": "2026-11-28"}`), a list (`["DATE=2026-11-28", "positional"]`) or a string.
    With maxActiveRuns set, the run waits for a slot unless `queue` is False, when it
    raises runslots.RunsFull at once.
    `executor` ("local" or "dask"), `scheduler` (a Dask scheduler's address; none: a
    local cluster for the run) and `shared_dir` override DAGFAST_EXECUTOR,
    DAGFAST_DASK_SCHEDULER, DAGFAST_DASK_SHARED_DIR and the DAG's own keys.
    `on_reading` is told how the file was read (`loader.Reading`: Dagu 1.x or 2.x).
    Raises LoadError for an invalid file, MissingExtra when Dask is asked for and not
    installed, RunError when the record could not be kept; a failed run is a result,
    not an exception."""
    _check_limit(max_active_steps)
    dag = _load(dag, _params(params), on_reading)
    check_sub_dags(dag)  # every sub-DAG named statically loads, before anything runs
    from dagfast.exec.choose import choose  # after the parse (memory: see the top)
    factory = choose(dag, executor, scheduler, shared_dir)  # before any record
    dag, notice = _in_force(dag, max_active_steps, factory)
    home_dir = home_dir or home()
    slot = None
    if dag.max_active_runs:  # at most maxActiveRuns at once, queued in order
        from dagfast.records import runslots  # only DAGs with maxActiveRuns (start-up)

        tell = reporter.notice if reporter is not None else None  # "waiting for a slot"
        slot, run_dir = runslots.run_dir_for(dag, home_dir, queue=queue, on_queued=tell)
    else:
        run_dir = RunDir.create(dag, home_dir)
    try:
        result = run_in(dag, run_dir, reporter, factory=factory, notice=notice)
    finally:
        if slot is not None:
            slot.release()
    if dag.hist_retention_runs or dag.hist_retention_days:
        _retain(dag, home_dir, reporter)
    return result


def _retain(dag: Dag, home_dir: str, reporter) -> None:
    """histRetentionRuns / histRetentionDays, after a run (never a running or queued
    run: prune skips those); what could not be deleted is a notice, not a failure."""
    from dagfast.records.prune import apply_retention  # only DAGs with the keys

    try:
        done = apply_retention(home_dir, dag.name, dag.hist_retention_runs or None,
                               dag.hist_retention_days or None)
    except OSError as exc:
        if reporter is not None:
            reporter.notice(f"cannot apply histRetention*: {exc.strerror}")
        return
    if done.failed and reporter is not None:
        path, why = done.failed[0]
        reporter.notice(f"histRetention*: could not delete {len(done.failed)} old run(s), "
                        f"such as {path}: {why}")


def retry(
    target: str,
    *,
    step: str | None = None,
    reporter: Reporter | None = None,
    home_dir: str | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    shared_dir: str | None = None,
    out=sys.stdout,
    downstream: bool = False,
    edited: bool = False,
) -> RunResult | None:
    """A new attempt of run `target` (its id): the steps that did not succeed run again
    (or only `step`; with `downstream`, it and every step after it), the others keep
    their records. `edited`: the DAG is loaded again from its file, and only succeeded
    steps whose definition did not change keep their records (records.retryplan).
    Progress lines go to `out`. Returns None when there is nothing to retry."""
    from dagfast.records.read import find_run, read_run  # retries only (start-up)

    home_dir = home_dir or home()
    path = find_run(home_dir, target)
    if path is None:
        raise RunError(f"no run `{target}` under `{home_dir}`")
    run_dir = RunDir.reopen(path, os.path.basename(path))  # RunError if it still runs
    slot = None
    try:
        state = read_run(path)
        dag = state.dag()
        from dagfast.exec.choose import choose  # after the parse (memory: see the top)
        from dagfast.exec.local import end_leftovers

        records = [_for_retry(r) for r in state.steps]
        if len(records) != len(dag.steps):
            raise RunError(f"the record of run `{state.run_id}` does not match its DAG")
        moved = None
        if edited:  # the DAG as its file says now, with the run's parameters
            from dagfast.records import retryplan  # only `retry --edited`

            if not dag.path or not os.path.isfile(dag.path):
                raise RunError(f"run `{state.run_id}`: its DAG file `{dag.path}` is gone; "
                               "cannot retry it --edited")
            new = load(dag.path, params=dag.params or None)
            if new.name != dag.name:  # its runs are kept under its name
                raise RunError(f"{dag.path} now names its DAG `{new.name}`, not `{dag.name}`: "
                               f"run it anew (`dagfast run {dag.path}`)")
            check_sub_dags(new)
            plan = retryplan.plan_edited(dag, records, new)
            dag, records, moved = new, plan.records, plan.kept
        # Where the steps run: the flags, else the environment, else the DAG as recorded.
        factory = choose(dag, executor, scheduler, shared_dir)
        dag, notice = _in_force(dag, None, factory)
        end_leftovers(state.run_id, out)
        if step is not None:
            target_id = dag.step_id(step)
            rerun = [target_id]  # the engine keeps every other step's record as it is
            if downstream:
                from dagfast.records.retryplan import downstream as below  # only here

                rerun = below(dag, target_id)
            kept = {i: r for i, r in enumerate(records) if i not in rerun and r.status}
        else:
            rerun = [i for i, r in enumerate(records) if r.status != StepStatus.SUCCEEDED]
            kept = {i: r for i, r in enumerate(records) if r.status == StepStatus.SUCCEEDED}
        if not rerun:
            out.write(f"dagfast: every step of run {state.run_id} succeeded: nothing to retry\n")
            run_dir.close()
            return None
        if dag.max_active_runs:
            # A retry is a run too: it waits for a slot like any other, before its new
            # attempt is recorded (until then the record still tells the last attempt,
            # and a SIGINT or SIGTERM while it waits leaves that record as it was).
            from dagfast.records import runslots  # only DAGs with maxActiveRuns

            def queued() -> None:
                out.write("dagfast: " + runslots.waiting_line(
                    dag.name, dag.max_active_runs, home_dir, state.run_id) + "\n")
                out.flush()

            slot = runslots.take_or_stop(
                dag.name, dag.max_active_runs, home_dir, on_queued=queued
            )
        if moved is None:
            run_dir.begin_attempt(state.attempt + 1, kept, state.journal_end, rerun)
        else:  # every old log is archived; the kept steps' come back under their new ids
            run_dir.begin_attempt(state.attempt + 1, kept, state.journal_end,
                                  list(range(len(state.steps))))
            retryplan.carry_over(run_dir, dag)
            from dagfast.runtime import output  # only retry --edited

            output.carry_over(run_dir, moved, len(dag.steps) + len(dag.handlers))
    except BaseException:
        if slot is not None:
            slot.release()
        run_dir.close()
        raise
    # A fan-out step that runs again keeps its items that succeeded (by key), unless it
    # was named (`--step`: all of its items run again).
    fanouts = [i for i in rerun if dag.steps[i].extra is not None
               and dag.steps[i].extra.parallel is not None] if step is None else []
    items = {}
    if fanouts:
        from dagfast.records.items import read_items  # only runs with fan-out steps

        items = read_items(path, fanouts)
    kept_items = sum(1 for by_key in items.values() for it in by_key.values()
                     if it.status == StepStatus.SUCCEEDED)
    also = f" (keeping {kept_items} items that succeeded)" if kept_items else ""
    out.write(f"dagfast: attempt {state.attempt + 1} of run {state.run_id}: "
              f"{len(rerun)} of {len(dag.steps)} steps to run again{also}\n")
    try:
        return run_in(
            dag, run_dir, reporter, factory=factory, notice=notice, previous=records,
            rerun=rerun if step is not None else None, items=items,
        )
    finally:
        if slot is not None:
            slot.release()


def dry(dag: Dag, reporter: Reporter, max_active_steps: int | None = None) -> RunResult:
    """The real engine with an executor whose steps all exit 0 at once (ninja's dry
    run): the order steps would start in, as if each took the same time. Nothing is
    started and nothing is recorded; no condition or sub-DAG is evaluated."""
    from dagfast.exec.dry import DryRun  # only `dagfast dry` (start-up of `run`)
    from dagfast.runtime.engine import Engine  # after the parse (memory: see the top)

    _check_limit(max_active_steps)
    dag, _ = _in_force(dag, max_active_steps, DryRun)
    run = Run(dag, "dry", {})
    engine = Engine(run, DryRun, reporter, limit=dag.max_active_steps, plain=True)
    return engine.run_to_end()


def run_in(
    dag: Dag,
    run_dir: RunDir,
    reporter: Reporter | None = None,
    *,
    factory=None,
    notice: str = "",
    previous=None,
    rerun=None,
    environ=None,
    items=None,
) -> RunResult:
    """Run `dag` (its limit in force already in `dag.max_active_steps`) in `run_dir`,
    which it releases; RunError when the record could not be kept. `factory`: the
    executor's (local processes by default). `previous`: the step records of the attempt
    a retry continues. `environ` (str -> str): the steps' base environment instead of
    this process's. `items`: a retry's fan-out items of before (records.items)."""
    # after the parse (memory: see the top)
    from dagfast.exec.local import ProcessManager
    from dagfast.runtime.engine import Engine

    if factory is None:
        factory = ProcessManager
    environ = os.environb if environ is None else {
        os.fsencode(k): os.fsencode(v) for k, v in environ.items()
    }
    state = Run(dag, run_dir.run_id, environ)
    keep = state.keep(previous, rerun) if previous is not None else ()
    if keep and any(s.extra is not None and s.extra.outputs for s in dag.steps):
        from dagfast.runtime.stepoutputs import restore  # only Dagu 2.x outputs (start-up)

        restore(state, run_dir.path, keep)
    engine = Engine(
        state, factory, reporter, limit=dag.max_active_steps, run_dir=run_dir,
        children=Children(factory), keep=keep, notice=notice, items=items,
    )
    # Forked before the executor's threads exist: if this process dies, its steps die.
    guard = factory.guard_run(run_dir.run_id)
    try:
        result = engine.run_to_end()
    finally:
        if guard is not None:  # the run ended: its background children stay
            guard.stand_down()
    if run_dir.failure is not None:  # the record could not be kept: the run was stopped
        raise RunError(f"the run was stopped: {run_dir.failure}")
    return result


def exit_status(result: RunResult) -> int:
    """The exit status of a run (`run` and `retry` alike): 128+N when signal N stopped
    it; 0 when it succeeded, when every failure was allowed by continueOn
    (partially_succeeded), or when the DAG's preconditions were not met (aborted
    without a signal, as Dagu); 1 otherwise."""
    if result.signal:
        return 128 + int(result.signal)
    ok = (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED, RunStatus.ABORTED)
    return 0 if result.status in ok else 1


def limit_in_force(dag: Dag, override: int | None, factory) -> tuple[int, str]:
    """(how many steps may run at once, why it is fewer than asked or ""): the file's
    maxActiveSteps or `override`, lowered to what the system allows the executor."""
    limit = dag.max_active_steps if override is None else override
    room, why = factory.room()
    # A cap no step count can reach changes nothing: the limit stays as asked.
    steps = len(dag.steps) + len(dag.handlers)
    if room < min(limit or UNLIMITED, steps):
        capped = max(1, room)
        return capped, (
            f"running at most {capped} steps at once: {why} "
            f"(maxActiveSteps {limit or 'unlimited'})"
        )
    return limit, ""


class Children:
    """Runs sub-DAGs for the engines of one run: loads the file, makes its run
    directory under the caller's (`children/`), and runs a child engine on the same
    loop and with the same executor factory (a sub-DAG's steps run where the caller's
    do, on its Dask cluster say, whatever the sub-DAG's own file says)."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self._environ: dict[int, dict[str, str]] = {}  # the caller's base environment, as text

    def load(self, caller, path: str, params, document: str = ""):
        """The sub-DAG at `path` (`document`: a local one of that file) loaded for a step
        of `caller` with `params`, its limit in force; or why it cannot be (text)."""
        parent = caller.run
        steps = parent.dag.steps
        done = frozenset(
            steps[j].name for j, r in enumerate(parent.records)
            if r.status in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED,
                            StepStatus.SKIPPED)
        )  # fmt: skip
        environ = self._environ.get(id(parent))
        if environ is None:
            environ = {os.fsdecode(a): os.fsdecode(b) for a, b in parent.base_env.items()}
            self._environ = {id(parent): environ}
        try:
            sub = load_sub(path, environ=environ, params=params, work_dir=parent.dag.dir,
                           done=done, document=document, dags_dir=parent.dag.dags_dir)
        except LoadError as e:
            return "cannot load the sub-DAG: " + "; ".join(str(p) for p in e.problems[:5])
        sub, _ = _in_force(sub, None, self.factory)
        return sub

    async def run(self, caller, i: int, k: int, path: str, params, document: str = ""):
        """Sub-run `k` of step `i` of `caller`: its RunResult, or why it could not
        start (text). `document`: a local sub-DAG of the file at `path`."""
        parent = caller.run
        steps = parent.dag.steps
        loop = _recursion(parent, path, document)
        if loop:  # a sub-DAG named at run time (`call: ${VAR}`) that would never end
            return f"the sub-DAG calls itself: {loop}"
        sub = self.load(caller, path, params, document)
        if type(sub) is str:
            return sub
        # The sub-run's record: a run directory of its own, kept under the caller's.
        mask = parent.masker.bytes if parent.masker is not None else None
        # A retry's sub-runs are new runs beside the earlier attempts' (kept as they were).
        attempt = caller.run_dir.attempt
        run_id = f"{parent.run_id}.{i}.{k}" + (f".a{attempt}" if attempt > 1 else "")
        run_dir = RunDir.create(sub, os.path.join(caller.run_dir.path, "children"), run_id,
                                mask=mask)
        state = Run(sub, run_dir.run_id, parent.base_env, parent=parent)
        from dagfast.runtime.engine import Engine  # loaded by the caller's run already

        # `--verbose`: the sub-run's steps' output too, by address (`fan[1]/work | ...`).
        item = f"[{k}]" if steps[i].extra.parallel is not None else ""
        child = Engine(state, self.factory, caller.reporter.child(f"{steps[i].name}{item}/"),
                       limit=sub.max_active_steps, run_dir=run_dir, children=self, nested=True)
        caller.adopt(child)
        try:
            return await child.run_nested()
        finally:
            caller.disown(child)


# Helpers -------------------------------------------------------------------------------


def _recursion(run, path: str, document: str) -> str:
    """`a.yaml -> b.yaml -> a.yaml` when the DAG at `path` (its local sub-DAG `document`
    when given) is already running in the chain of callers of `run` (a run that
    would never end), else ""."""
    real = os.path.realpath(path)
    chain = []
    caller = run
    while caller is not None:
        dag = caller.dag
        chain.append(_shown(dag.path, dag.document))
        if dag.path and os.path.realpath(dag.path) == real and dag.document == document:
            return " -> ".join(list(reversed(chain)) + [_shown(path, document)])
        caller = caller.parent
    return ""


def _shown(path: str, document: str) -> str:
    """A DAG in a loop's description: its file's name, and its local name if it has one."""
    return os.path.basename(path) + (f"#{document}" if document else "")


# A step that was running when its engine died, as a retry that does not run it keeps it.
INTERRUPTED = "interrupted: its engine died while it ran (`dagfast retry` runs it again)"


def _for_retry(record):
    """A step's record as a retry starts from it. A step whose output the record could
    not keep (the disk filled) runs again: its dependents need the value. A step that
    was running when the engine died ended then, aborted: kept by a `retry --step` of
    another step, it must not read as running."""
    if record.status == StepStatus.SUCCEEDED and record.error == OUTPUT_LOST:
        return msgspec.structs.replace(record, status=StepStatus.NOT_STARTED)
    if record.status == StepStatus.RUNNING:
        return msgspec.structs.replace(record, status=StepStatus.ABORTED, error=INTERRUPTED)
    return record


def _check_limit(max_active_steps: int | None) -> None:
    if max_active_steps is not None and max_active_steps < 0:
        raise UsageError("--max-active-steps must be 0 (unlimited) or more")


def _in_force(dag: Dag, override: int | None, factory) -> tuple[Dag, str]:
    """`dag` with the limit in force as its maxActiveSteps, and the notice to give when
    the system lowered it and that matters (more steps than the limit)."""
    limit, why = limit_in_force(dag, override, factory)
    if limit != dag.max_active_steps:
        dag = msgspec.structs.replace(dag, max_active_steps=limit)
    return dag, why


def _params(params):
    """`run`'s params, parsed (None: none given)."""
    if params is None:
        return None
    if not isinstance(params, (str, Mapping, list, tuple)):
        raise UsageError(
            f"params must be a mapping, a list or a string, not {type(params).__name__}"
        )
    try:
        return parse(dict(params) if isinstance(params, Mapping) else params)
    except ParamsError as exc:
        raise UsageError(f"params: {exc}") from None


def _load(dag, given, on_reading=None) -> Dag:
    """The DAG to run: `dag` as loaded, or loaded again with `given` params."""
    if isinstance(dag, Dag):
        if not given:
            return dag
        # parameters are applied when loading: load the same file again
        if not dag.path:
            raise UsageError("params need the DAG's file; this Dag was not loaded from one")
        return load(dag.path, params=given)
    return load(dag, params=given, on_reading=on_reading)
