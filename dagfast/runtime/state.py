"""One run's data, with one owner: step records, outputs, the environment, the status.

The engine (the loop) and the slow path (flow) both change a run through this object,
and every step's environment is built here, by `env_for`, whatever path starts it.
"""

from __future__ import annotations

import errno
import os

from dagfast.errors import SchedulerBug
from dagfast.model import Dag, Step
from dagfast.records.store import StepRecord
from dagfast.runtime.outputs import fill_refs
from dagfast.status import RunStatus, StepStatus

__all__ = ["MAX_ARG_STRLEN", "Run", "RunResult", "pause", "too_long"]

_SUCCEEDED = StepStatus.SUCCEEDED
_FAILED = StepStatus.FAILED
_ABORTED = StepStatus.ABORTED


_AS_STEP = {
    RunStatus.SUCCEEDED: StepStatus.SUCCEEDED,
    RunStatus.PARTIALLY_SUCCEEDED: StepStatus.PARTIALLY_SUCCEEDED,
    RunStatus.ABORTED: StepStatus.ABORTED,
}


class RunResult:
    """What a finished run did: its status and one StepRecord per step, in file order."""

    __slots__ = (
        "dag", "run_id", "path", "status", "steps", "started_at", "finished_at", "signal",
        "outputs", "handlers", "error",
    )  # fmt: skip

    def __init__(
        self, dag, run_id, path, status, steps, started_at, finished_at, sig,
        outputs=None, handlers=None, error="",
    ):  # fmt: skip
        self.dag = dag
        self.run_id = run_id
        self.path = path
        self.status = status
        self.steps = steps
        self.started_at = started_at
        self.finished_at = finished_at
        self.signal = sig
        # Output variables by name (the last writer wins), and handler records by event.
        self.outputs: dict[str, str] = outputs or {}
        self.handlers: dict[str, StepRecord] = handlers or {}
        # Why the run could not go on, when no step says it (a secret could not be read).
        self.error: str = error

    def step(self, name: str) -> StepRecord:
        """The record of the step called `name`."""
        return self.steps[self.dag.index(name)]

    def step_status(self) -> StepStatus:
        """The status of the step that ran this run as its sub-DAG."""
        return _AS_STEP.get(self.status, _FAILED)

    def first_failure(self) -> str:
        """`step: error` of the first failed step (a loop of sub-DAGs is found in the
        innermost one: its callers' records say it too), or ""."""
        for step, record in zip(self.dag.steps, self.steps):
            if record.status == _FAILED and record.error:
                return f"step `{step.name}`: {record.error}"
        return ""


class Run:
    """The data of one run while it goes: the DAG, where it is recorded, each step's
    record and output, the run's base environment and how the run is ending."""

    def __init__(self, dag: Dag, run_id: str, environ: dict, parent: Run | None = None):
        self.dag = dag
        self.run_id = run_id
        self.parent = parent  # the caller's run, for a sub-DAG
        n = len(dag.steps)
        self.records = [StepRecord() for _ in range(n)]
        self.outputs: dict[int, str] = {}  # step id -> captured output
        self.step_outputs: dict[int, dict[str, str]] = {}  # Dagu 2.x `outputs:`, published
        self.covered: set[int] = set()  # failed steps that continueOn let pass
        self.handler_records: dict[str, StepRecord] = {}
        # secrets.Masker once the run's secrets (or its caller's) are read.
        self.masker = parent.masker if parent is not None else None
        self.error = ""  # see RunResult.error
        self.stopping = 0  # the signal that stopped the run, 0 while it runs
        self.timed_out = False
        self.failed_handler = False
        self.precondition_unmet = False
        self.base_env = self._make_base_env(environ)

    def _make_base_env(self, environ: dict) -> dict:
        """The caller's environment, the DAG's `env`, its params, DAG_NAME, DAG_RUN_ID."""
        env = dict(environ)
        for k, v in self.dag.env:
            env[k.encode()] = v.encode()
        for k, v in self.dag.params:
            if k is not None:
                env[k.encode()] = v.encode()
        env[b"DAG_NAME"] = self.dag.name.encode()
        env[b"DAG_RUN_ID"] = self.run_id.encode()
        return env

    # The environment ------------------------------------------------------------------

    def env_for(self, step: Step, sees=(), extra: dict | None = None) -> dict:
        """Step `step`'s environment (bytes -> bytes): the run's, the outputs it sees,
        `extra` (a handler's), its own `env` with references filled in, its name."""
        env = self.base_env.copy()
        if sees:
            steps = self.dag.steps
            outputs = self.outputs
            for p in sees:
                if p in outputs:
                    env[steps[p].extra.output.encode()] = outputs[p].encode()
        if extra:
            for k, v in extra.items():
                env[k.encode()] = v.encode()
        if step.env:
            secret = self.dag.secrets
            for k, v in step.env:
                if "\ue002" in v:  # references to outputs are filled in (see the loader)
                    v = fill_refs(v, env)
                if secret and "\ue000" in v:  # and so are references to secrets
                    from dagfast.runtime.secrets import fill  # only runs with secrets

                    env[k.encode()] = fill(v, self.base_env)
                else:
                    env[k.encode()] = v.encode("utf-8", "surrogateescape")
        env[b"DAG_RUN_STEP_NAME"] = step.name.encode()
        return env

    def seen_values(self, sees) -> dict[str, str]:
        """The outputs of steps `sees`, by name (for `${NAME.key[0]}` lookups)."""
        steps = self.dag.steps
        outputs = self.outputs
        return {steps[p].extra.output: outputs.get(p, "") for p in sees}

    def outputs_by_name(self) -> dict[str, str]:
        """Every captured output by its variable's name (the last writer wins)."""
        steps = self.dag.steps
        return {steps[i].extra.output: v for i, v in sorted(self.outputs.items())}

    # Retry ----------------------------------------------------------------------------

    def keep(self, previous, rerun) -> list[int]:
        """A retry: steps that succeeded in `previous` (StepRecords in file order) keep
        their records and outputs; every other step runs again, and so do the ids in
        `rerun` (`retry --step`) whatever they did before. Returns the kept ids."""
        if len(previous) != len(self.records):
            raise SchedulerBug(
                f"a retry got {len(previous)} earlier step records for {len(self.records)} steps"
            )
        again = frozenset(rerun or ())
        kept = []
        for i, old in enumerate(previous):
            if i in again:
                continue
            # With `rerun`, every step not named keeps its record, whatever it did.
            if old.status == _SUCCEEDED or again:
                self.records[i] = StepRecord(
                    old.status, old.exit_code, old.started_at, old.finished_at, old.error,
                    old.output,
                )
                if old.output is not None:
                    self.outputs[i] = old.output
                kept.append(i)
        return kept

    # The end --------------------------------------------------------------------------

    def final_status(self, featured: bool) -> RunStatus:
        """The run's status once its steps ended; `featured`: continueOn may have let a
        failure pass (plain runs need not look)."""
        if self.timed_out or self.failed_handler:
            return RunStatus.FAILED
        if self.stopping:
            return RunStatus.ABORTED
        if not featured:
            for r in self.records:
                if r.status != _SUCCEEDED:
                    return RunStatus.FAILED
            return RunStatus.SUCCEEDED
        if self.error:
            return RunStatus.FAILED  # it could not start (a secret could not be read)
        if self.precondition_unmet:
            return RunStatus.ABORTED
        partial = succeeded = False
        covered = self.covered
        for i, r in enumerate(self.records):
            status = r.status
            if status == _SUCCEEDED or status == StepStatus.PARTIALLY_SUCCEEDED:
                succeeded = True
            elif status == _FAILED:
                if i not in covered:
                    return RunStatus.FAILED
                partial = True
            elif status == _ABORTED or status == StepStatus.NOT_STARTED:
                return RunStatus.FAILED
        if partial:
            return RunStatus.PARTIALLY_SUCCEEDED if succeeded else RunStatus.FAILED
        return RunStatus.SUCCEEDED


_E2BIG = os.strerror(errno.E2BIG)
MAX_ARG_STRLEN = 128 * 1024  # Linux: the most one argument or `NAME=value` may hold


def pause(policy, k: int) -> float:
    """The wait before the (k+2)th execution under a retryPolicy or repeatPolicy:
    its interval times backoff^k, capped by its maxIntervalSec."""
    value = policy.interval * (policy.backoff ** k)
    return min(value, policy.max_interval) if policy.max_interval else value


def too_long(error: str, get_env, argv, dag: Dag) -> str:
    """`error` of a step that could not start; for E2BIG, said in the user's terms: which
    value is too big (an output over 128 KiB is the usual one). `get_env()` gives the
    step's environment, built only then."""
    if not error.endswith(_E2BIG):
        return error
    env = get_env()
    big = max(env.items(), key=lambda kv: len(kv[0]) + len(kv[1]), default=None)
    outputs = {s.extra.output for s in dag.steps if s.extra is not None and s.extra.output}
    if big is not None and len(big[0]) + len(big[1]) + 1 >= MAX_ARG_STRLEN:
        name = os.fsdecode(big[0])
        kind = "output" if name in outputs else "variable"
        return (
            f"{error}: an environment value or the command is over 128 KiB "
            f"({kind} `{name}` holds {len(big[1])} bytes)"
        )
    longest = max((len(os.fsencode(a)) for a in argv), default=0)
    if longest >= MAX_ARG_STRLEN:
        return f"{error}: the command is over 128 KiB ({longest} bytes)"
    return f"{error}: the environment and the command together are over the system's limit"
