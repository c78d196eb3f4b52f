"""Fan-out steps (`parallel:`, `matrix:`): items from a source, each run as close to a
plain step as it can be.

First, the items come from their source (runtime.items) as they are needed: the step
holds a window of them, never all. Second, each item runs one of two ways:

- a *process* of this engine, for an item of a command step, or of a sub-DAG that is
  one plain step (loaded once per shape of params, then filled in per item, `_Shapes`):
  its output goes to the run's output store under a token of its own; no run
  directory, no snapshot, no file of its own;
- a *sub-run* (session.Children), for any other sub-DAG, with its own record under
  `children/`.

Either way an item's end is one journal entry (records.store.Item), which names it by
its key: a retry keeps the items whose key succeeded and runs the others
(`engine.items`), and a retryPolicy applies to each item. The step holds one slot of
the run; its items run beside the other steps, at most `maxConcurrent` at once. Last,
the fan-in: the step's stdout (so its `output:`) is a JSON summary of the items, with
each item's outputs inline up to INLINE items, or in a JSON-lines file past that.
"""

from __future__ import annotations

import asyncio
import os
import re
import time

import msgspec

from dagfast.errors import OutputTooLarge, SpawnError
from dagfast.exec.base import describe
from dagfast.loader.params import override
from dagfast.model import Step, StepExtra
from dagfast.records.read import step_log
from dagfast.records.store import StepRecord
from dagfast.runtime import items as sources
from dagfast.runtime.outputs import capture, expand_refs, fill_params
from dagfast.runtime.state import pause, too_long
from dagfast.status import RunStatus, StepStatus

__all__ = ["INLINE", "run"]

INLINE = 1000  # items whose outputs the fan-in lists inline; past that, a JSON-lines file
_SUCCEEDED = StepStatus.SUCCEEDED
_FAILED = StepStatus.FAILED
_ABORTED = StepStatus.ABORTED
_OK = (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED)
_PLAIN = StepExtra()
_LABEL = {int(s): s.label for s in StepStatus}
_json = msgspec.json.Encoder()


async def run(flow, i: int, step: Step, env: dict, target=None):
    """Run fan-out step `i`'s items: (status, exit code, error). `target`: its sub-DAG
    (loader.subnames.Target), None for a command step's own command."""
    return await _FanOut(flow, i, step, env, target).run()


class _FanOut:
    def __init__(self, flow, i: int, step: Step, env: dict, target) -> None:
        self.flow = flow
        self.engine = engine = flow.engine
        self.state = state = flow.run
        self.i = i
        self.step = step
        self.ex = ex = step.extra
        self.fan = ex.parallel
        self.env = env
        self.target = target
        dag = state.dag
        self.cwd = step.dir or dag.dir
        self.scope = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
        self.refs = state.seen_values(ex.sees)
        self.kept = engine.items.get(i, {})  # a retry: key -> its Item of before
        self.counts: dict[str, int] = {}
        self.keys: set[str] = set()
        self.results: dict[int, dict] = {}  # index -> its fan-in entry (up to INLINE)
        self.spill = None  # the JSON-lines file of the fan-in, past INLINE items
        self.total = 0
        self.ok = 0
        self.running = 0
        self.costs: dict[int, tuple] = {}  # token -> what its last process cost
        self._script = None  # the argv of the step's script, once written
        self.error = ""
        self.wake: asyncio.Future | None = None
        self.shapes = _Shapes(self, target) if target is not None else None
        self.attempt = engine.run_dir.attempt if engine.run_dir is not None else 1

    # The loop ---------------------------------------------------------------------------

    async def run(self):
        engine, state, fan = self.engine, self.state, self.fan
        engine.reporter.items_started(self.i, self.counts)
        try:
            source = sources.open_source(
                fan, scope=self.scope, refs=self.refs, base_dir=self._base_dir(),
                env=self.env, cwd=self.cwd, on_stderr=self._stderr)
        except sources.ItemError as exc:
            return self._fail(str(exc))
        room = max(1, fan.max_concurrent)
        tasks: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        exhausted = False

        async def close_on_stop():  # a source that waits (a command) gives up at a stop
            await self.flow.until_stopped()
            source.close()

        watch = loop.create_task(close_on_stop())
        try:
            while not state.stopping and not self.error:
                free = room - self.running
                if free > 0 and not exhausted:
                    try:
                        batch = await source.take(free)
                    except sources.ItemError as exc:
                        self.error = str(exc)
                        break
                    if not batch:
                        exhausted = True
                        continue
                    for item in batch:
                        task = self._start(item)
                        if task is not None:
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)
                        if self.error:
                            break
                    continue
                if not self.running:
                    break
                self.wake = loop.create_future()
                await self.wake
        finally:
            watch.cancel()
            await source.aclose()  # a command's process reaped, its pipes closed
        while self.running:  # a stop or an error: what runs ends first
            self.wake = loop.create_future()
            await self.wake
        return self._end()

    def _start(self, item):
        """Item number `self.total` begins (or is kept from before): its task, if any."""
        k = self.total
        self.total += 1
        try:
            key = sources.item_key(item, self.fan.key, self.scope, self.refs)
        except sources.ItemError as exc:
            self.error = f"item {k}: {exc}"
            return None
        if key in self.keys:
            self.error = f"item {k} has the same key as an earlier item: `{key}`"
            return None
        self.keys.add(key)
        old = self.kept.get(key)
        if old is not None and old.status == _SUCCEEDED:
            self._ended(k, key, old.status, old, old.token, old.output, record=False)
            return None
        token = old.token if old is not None and old.token >= 0 else None
        self.running += 1
        self.counts["running"] = self.counts.get("running", 0) + 1
        return asyncio.get_running_loop().create_task(self._item(k, key, item, token))

    async def _item(self, k: int, key: str, item, token):
        started = time.time()
        try:
            status, code, error, token, outputs = await self._outcome(k, key, item, token)
        except Exception as exc:  # a bug: the item fails, the run goes on
            status, code, error, outputs = _FAILED, None, f"internal error: {exc!r}", None
            token = -1 if token is None else token
        cost = self.costs.pop(token, None)
        record = StepRecord(int(status), code, started, time.time(), error,
                            cpu=cost[0] if cost else None, rss=cost[1] if cost else None)
        output = _json.encode(outputs).decode() if outputs else None
        self.running -= 1
        self.counts["running"] -= 1
        self._ended(k, key, status, record, token, output)
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def _outcome(self, k: int, key: str, item, token):
        """(status, exit code, error, token, outputs) of item `k`."""
        text = item if type(item) is str else _json.encode(item).decode()
        if self.target is None:  # a command step: its own command, the item in its env
            env = self.env.copy()
            env[b"ITEM"] = text.encode("utf-8", "surrogateescape")
            if type(item) is dict:
                for name, value in item.items():
                    env[name.encode()] = value.encode("utf-8", "surrogateescape")
            token = self._token(token)
            argv = self._argv(self.step, {"ITEM": text})
            status, code, error = await self._process(token, self.step, argv, env, self.cwd,
                                                      (k, key))
            return status, code, error, token, self._outputs(self.step, token, status)
        params = self._params(item, text)
        plan = self.shapes.plan(params, k)
        if type(plan) is str:
            return _FAILED, 1, plan, -1 if token is None else token, None
        if plan is None:  # a sub-run of its own
            result = await self.engine.children.run(self.engine, self.i, k, self.target.path,
                                                    params, self.target.document)
            if type(result) is str:
                return _FAILED, 1, result, -1, None
            status = result.step_status()
            error = ""
            if status == _FAILED:
                why = result.error or result.first_failure()
                error = f"sub-DAG `{result.dag.name}` failed" + (f": {why}" if why else "")
            return status, (1 if status == _FAILED else 0), error, -1, result.outputs or None
        sub, env = plan
        token = self._token(token)
        one = sub.steps[0]
        status, code, error = await self._process(token, one, one.argv, env, one.dir or sub.dir,
                                                  (k, key))
        return status, code, error, token, self._outputs(one, token, status, sub)

    # One process --------------------------------------------------------------------------

    async def _process(self, token: int, step: Step, argv, env: dict, cwd: str, item: tuple):
        """Run an item's process under `token`, with the step's retryPolicy (the fan-out
        step's, else the item step's own) and timeoutSec: (status, exit code, error)."""
        ex = step.extra or _PLAIN
        retry = self.ex.retry or ex.retry
        timeout = ex.timeout_sec
        state = self.state
        attempt = 0
        while True:
            code, error, timed_out = await self._once(token, step, argv, env, cwd, timeout,
                                                      item)
            if code == 0 or timed_out or state.stopping or retry is None:
                break
            if attempt >= retry.limit or (retry.exit_codes and code not in retry.exit_codes):
                break
            await self.flow.sleep(pause(retry, attempt))
            attempt += 1
            if state.stopping:
                break
        if timed_out:
            return _FAILED, 124, f"step timed out after {timeout:g}s"
        if code == 0:
            return _SUCCEEDED, 0, ""
        return (_ABORTED if state.stopping else _FAILED), code, error

    async def _once(self, token: int, step: Step, argv, env: dict, cwd: str, timeout: float,
                    item: tuple):
        engine = self.engine
        procs = engine.executor
        try:
            engine.begin_execution(token, env)
            engine.reporter.item_started(self.i, *item, token, self._address(item[0], step))
            fut = engine.start_process(token, argv, env, cwd)
        except SpawnError as exc:
            return 127, str(exc), False
        # The item's process is not one of the run's maxActiveSteps (the step holds one
        # slot for all of its items). A timeout kills its group, and the processes that
        # left it but carry this item's identity (its ITEM, or a sub-DAG item's run id).
        wait_status = await self.flow.wait_process(token, fut, timeout, env)
        self.costs[token] = procs.cost(token)  # kept per token until read: read it once
        if wait_status is None:
            return 124, "", True
        code, error = describe(wait_status, step.name)
        if code == 127:
            error = too_long(error, lambda: env, argv, self.state.dag)
        return code, error, False

    # Helpers ------------------------------------------------------------------------------

    def _address(self, k: int, step: Step) -> str:
        """Item `k`'s address: `fan[k]/STEP` for a sub-DAG's step, `fan[k]` for the
        step's own command."""
        own = self.step.name
        return f"{own}[{k}]" if step is self.step else f"{own}[{k}]/{step.name}"

    def _token(self, token):
        return self.engine.item_token() if token is None else token

    def _argv(self, step: Step, values: dict):
        ex = step.extra
        argv = step.argv
        if ex is not None and ex.expand:
            values = dict(self.refs, **values)
            argv = tuple(expand_refs(a, values) for a in argv)
        if step.script is not None:
            argv = self._script_argv(step)
        return argv

    def _script_argv(self, step: Step):
        """The argv that runs the step's script, written once for all of its items."""
        if self._script is None:
            ex = step.extra
            text = expand_refs(step.script, self.refs) if ex is not None and ex.expand else step.script
            self._script = self.engine.write_script(self.i, text, step.argv)
        return self._script

    def _outputs(self, step: Step, token: int, status, sub=None):
        """An item's outputs for the fan-in: its step's `output:` variable."""
        ex = step.extra
        if ex is None or ex.output is None or status != _SUCCEEDED:
            return None
        path = self.engine.run_dir.path
        limit = (sub or self.state.dag).max_output_size
        try:
            value = capture(lambda n=None: step_log(path, token, "out", limit=n), limit)
        except OutputTooLarge:
            return None
        return {ex.output: value}

    def _params(self, item, text: str):
        """The sub-DAG's params for `item`: the step's, `${ITEM}` and `${ITEM.key}`
        filled in, then the item's own (a map's fields, else the item as `ITEM` and
        the first positional one)."""
        params = fill_params(self.ex.params, dict(self.scope, ITEM=text),
                             dict(self.refs, ITEM=text))
        if type(item) is dict:
            return override(params, tuple(item.items()))
        return override(params, ((None, item), ("ITEM", item)))

    def _base_dir(self) -> str:
        dag = self.state.dag
        return os.path.dirname(dag.path) if dag.path else dag.dir

    def _stderr(self, data: bytes) -> None:
        """What an item command prints on stderr: the fan-out step's stderr."""
        if self.engine.output is not None:
            self.engine.output.put(self.i, 1, data)

    def _ended(self, k, key, status, rec, token, output, record=True) -> None:
        """Item `k` ended (or was kept from before): the tally, its journal entry, the
        fan-in."""
        label = _LABEL[int(status)]
        counts = self.counts
        counts[label] = counts.get(label, 0) + 1
        ok = status == _SUCCEEDED or status == StepStatus.PARTIALLY_SUCCEEDED
        if ok:
            self.ok += 1
        if record:
            self.engine.reporter.item_finished(self.i, k, key, rec, token, output)
        entry = {"key": key, "status": label}
        if self.target is not None:
            entry["name"] = self.shapes.name if self.shapes is not None else ""
        if rec.error and not ok:
            entry["error"] = rec.error
        entry["outputs"] = msgspec.json.decode(output) if output else {}
        if self.spill is None and len(self.results) < INLINE:
            self.results[k] = entry
            return
        if self.spill is None:
            self.spill = _Spill(self.engine, self.i)
            for j in sorted(self.results):
                self.spill.write(j, self.results[j])
            self.results.clear()
        self.spill.write(k, entry)

    def _end(self):
        """The fan-in, and the step's (status, exit code, error)."""
        failed = self.total - self.ok
        doc = {"summary": {"total": self.total, "succeeded": self.ok, "failed": failed}}
        if self.spill is None:
            doc["results"] = [self.results[k] for k in sorted(self.results)]
            doc["outputs"] = [r.get("outputs", {}) for r in doc["results"]]
        else:
            self.spill.close()
            doc["file"] = self.spill.name
        data = _json.encode(doc) + b"\n"
        engine = self.engine
        if self.state.masker is not None:
            data = self.state.masker.bytes(data)
        if engine.output is not None:
            engine.output.put(self.i, 0, data)
        if self.state.stopping:
            return _ABORTED, None, "the run was stopped"
        if self.error:
            return self._fail(self.error)
        if not self.total:
            expr = self.fan.expr
            shown = f" (`{expr}` expanded to nothing)" if expr is not None else ""
            what = "the sub-DAG" if self.target is not None else "the step"
            return self._fail(f"parallel: no items to run {what} with{shown}")
        if failed:
            what = "sub-DAG runs" if self.target is not None else "items"
            return _FAILED, 1, f"{failed} of {self.total} {what} failed"
        return _SUCCEEDED, 0, ""

    def _fail(self, error: str):
        engine = self.engine
        if self.state.masker is not None:
            error = self.state.masker.text(error)
        if engine.output is not None:
            engine.output.put(self.i, 1, (error + "\n").encode())
        return _FAILED, 1, error




class _Spill:
    """The fan-in's JSON-lines file (`items/<step id>.jsonl` in the run directory), one
    line an item, in the order they ended: {"index", "key", "status", "outputs", ...}."""

    def __init__(self, engine, i: int) -> None:
        folder = os.path.join(engine.run_dir.path, "items")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self.name = os.path.join(folder, f"{i}.jsonl")
        # Private, as every record file is (outputs can hold secrets).
        self._f = open(self.name, "wb", buffering=1 << 16,
                       opener=lambda path, flags: os.open(path, flags, 0o600))
        self._mask = engine.run.masker

    def write(self, k: int, entry: dict) -> None:
        data = _json.encode(dict(index=k, **entry)) + b"\n"
        if self._mask is not None:
            data = self._mask.bytes(data)
        self._f.write(data)

    def close(self) -> None:
        self._f.close()


class _Shapes:
    """How each item of a sub-DAG step runs. A sub-DAG of one plain step runs as a
    process of this engine: it is loaded once per shape (the names of its params) with
    placeholders for the values, which are then filled in per item; the first item of
    each shape is loaded for real too, and any difference sends the shape's items to a
    real load each. Any other sub-DAG runs as a sub-run."""

    _MARK = re.compile("\ue0f0([0-9]+)\ue0f1")

    def __init__(self, fanout: _FanOut, target) -> None:
        self.fanout = fanout
        self.target = target
        self.name = ""
        self._shapes: dict[tuple, object] = {}  # names -> template Dag, "load", "sub"
        self._told = False

    def plan(self, params, k: int):
        """(sub-DAG, environment) for a process, None for a sub-run, or the text of why
        it cannot run."""
        names = tuple(n for n, _ in params)
        values = [v for _, v in params]
        shape = self._shapes.get(names)
        if shape is None:
            shape = self._shapes[names] = self._learn(names, params)
        if shape == "sub":
            return None
        if shape == "load":
            sub = self._load(params)
            if type(sub) is str:
                return sub
            if not _one_plain_step(sub):
                return None
            self._tell(sub)
        else:
            sub = _fill(shape, values, self._MARK)
        return sub, self._env(sub, k)

    def _learn(self, names, params):
        marks = tuple((n, f"\ue0f0{j}\ue0f1") for j, n in enumerate(names))
        template = self._load(marks)
        if type(template) is str or not _one_plain_step(template):
            return "sub" if type(template) is not str else "load"
        self._tell(template)
        if "\ue0f0" in _json.encode(_blank(template)).decode():
            return "load"  # a value reaches a part that is not filled in: load each
        real = self._load(params)
        if type(real) is str:
            return "load"
        values = [v for _, v in params]
        if _json.encode(_fill(template, values, self._MARK)) != _json.encode(real):
            return "load"
        return template

    def _tell(self, sub) -> None:
        """The record learns, once, what `fan[K]/STEP` names for these items."""
        self.name = sub.name
        if not self._told:
            self._told = True
            fo = self.fanout
            fo.engine.reporter.item_dag(fo.i, sub.name, sub.steps[0].name)

    def _load(self, params):
        fo = self.fanout
        got = fo.engine.children.load(fo.engine, self.target.path, params, self.target.document)
        return got

    def _env(self, sub, k: int) -> dict:
        """The item's environment, as a sub-run of `sub` would give its one step."""
        fo = self.fanout
        state = fo.state
        env = state.base_env.copy()
        for name, value in sub.env:
            env[name.encode()] = value.encode()
        for name, value in sub.params:
            if name is not None:
                env[name.encode()] = value.encode()
        env[b"DAG_NAME"] = sub.name.encode()
        run_id = f"{state.run_id}.{fo.i}.{k}" + (f".a{fo.attempt}" if fo.attempt > 1 else "")
        env[b"DAG_RUN_ID"] = run_id.encode()
        step = sub.steps[0]
        for name, value in step.env:
            env[name.encode()] = value.encode("utf-8", "surrogateescape")
        env[b"DAG_RUN_STEP_NAME"] = step.name.encode()
        return env


def _one_plain_step(dag) -> bool:
    """A sub-DAG that runs as a process of its caller's engine: one step, with nothing
    beyond an `output:`, a retryPolicy and a timeoutSec; no handlers, preconditions,
    secrets or run-wide timers."""
    if len(dag.steps) != 1 or dag.handlers or dag.preconditions or dag.secrets:
        return False
    if dag.timeout_sec or dag.delay_sec or dag.max_active_runs:
        return False
    step = dag.steps[0]
    if step.script is not None or step.depends:
        return False
    ex = step.extra
    if ex is None:
        return True
    rest = msgspec.structs.replace(ex, output=None, retry=None, timeout_sec=0)
    return rest == _PLAIN


def _blank(dag):
    """`dag` without the parts `_fill` fills in."""
    step = dag.steps[0]
    step = msgspec.structs.replace(step, argv=(), env=(), dir="")
    return msgspec.structs.replace(dag, params=(), env=(), steps=(step,))


def _fill(template, values: list, mark):
    """`template` with each placeholder replaced by its value."""

    def one(text):
        if text is None or "\ue0f0" not in text:
            return text
        return mark.sub(lambda m: values[int(m.group(1))], text)

    step = template.steps[0]
    step = msgspec.structs.replace(
        step, argv=tuple(one(a) for a in step.argv),
        env=tuple((n, one(v)) for n, v in step.env), dir=one(step.dir))
    return msgspec.structs.replace(
        template, params=tuple((n, one(v)) for n, v in template.params),
        env=tuple((n, one(v)) for n, v in template.env), steps=(step,))


