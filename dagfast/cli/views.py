"""The bodies of the commands that read records or plan runs: status, history, logs, dry.

Each takes parsed arguments and an output stream and returns an exit status; errors are
raised (RunError: the run asked for does not exist, exit 1) for the CLI to print."""

from __future__ import annotations

import os
import sys
import time

from dagfast.errors import RunError, UsageError
from dagfast.records.address import Target, resolve_target, runs_by_item, sub_runs
from dagfast.records.address import item_runs as item_runs_of
from dagfast.records.read import (
    RunState, child_runs, find_run, follow_step_log, latest_run, read_run, runs_of,
    step_attempts, step_log,
)
from dagfast.status import RunStatus, StepStatus
from dagfast.records.store import StepRecord, home
from dagfast.report.base import Reporter, shell_word

__all__ = [
    "dag_named", "dry", "history", "logs", "read_target", "report", "resolve_run", "status",
    "trace",
]


def resolve_run(home_dir: str, target: str | None) -> str:
    """The run directory `target` names: a run id, a DAG file or DAG name (its latest
    run), or nothing (the latest run of any DAG). RunError when there is none."""
    if target is None:
        path = latest_run(home_dir)
        if path is None:
            raise RunError(f"no run recorded under `{home_dir}`")
        return path
    path = find_run(home_dir, target)
    if path is not None:
        return path
    name, file = dag_named(target)
    path = latest_run(home_dir, name, file)
    if path is None:
        raise RunError(f"no run `{target}` (neither a run id nor a DAG with runs)")
    return path


def read_target(home_dir: str, target: str | None) -> RunState:
    """The run `target` names (see `resolve_run`), or a fan-out item that ran in its
    caller's engine, by its own run id (`<run id>.<step>.<K>`)."""
    try:
        return read_run(resolve_run(home_dir, target))
    except RunError:
        if target:
            from dagfast.records.address import item_run  # only ids with dots

            state = item_run(home_dir, target)
            if state is not None:
                return state
        raise


def dag_named(target: str) -> tuple[str, str | None]:
    """(DAG name, DAG file or None) of a command's DAG argument: a file means the runs
    of that file alone, not of every file that gives its DAG the same name."""
    if not os.path.isfile(target):
        return target, None
    from dagfast.loader import load  # only when a file is named (start-up)

    return load(target, evaluate=False).name, target


# status --------------------------------------------------------------------------------


def status(args, out=sys.stdout) -> int:
    """Print one run, step by step (or as one JSON document with --json)."""
    state = read_target(home(), args.target)
    if args.step is not None:
        return _step_status(state, args, out)
    dag = state.dag()
    if args.json:
        import msgspec

        doc = _status_doc(state, dag)
        out.write(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n")
        return 0
    now = time.time()
    w = 9
    out.write(f"{'dag:':<{w}}{state.dag_name}" + (f" ({state.dag_path})" if state.dag_path else "") + "\n")
    attempt = f", attempt {state.attempt}" if state.attempt > 1 else ""
    out.write(f"{'run:':<{w}}{state.run_id}{attempt}\n")
    out.write(f"{'status:':<{w}}{_run_label(state)}\n")
    if dag.max_active_steps:  # the limit in force (an unlimited run says nothing)
        out.write(f"{'limit:':<{w}}maxActiveSteps {dag.max_active_steps}\n")
    if state.started_at:
        if state.finished_at:
            took = f"took {_dur(state.finished_at - state.started_at)}"
        elif state.interrupted:  # its clock stopped with its process: never "running for"
            took = f"interrupted after {_dur(state.last_recorded_at - state.started_at)}"
        else:
            took = f"running for {_dur(now - state.started_at)}"
        out.write(f"{'started:':<{w}}{_when(state.started_at)}, {took}\n")
    if state.error:
        out.write(f"{'error:':<{w}}{state.error}\n")
    if state.rebuilt or state.torn:
        why = []
        if state.rebuilt:
            why.append("the snapshot was corrupt: rebuilt from the journal")
        if state.torn:
            why.append(f"the journal ends in a torn record (read up to byte {state.journal_end})")
        out.write(f"{'note:':<{w}}{'; '.join(why)}\n")
    cpu = [r.cpu for r in state.steps if r.cpu is not None]
    if cpu:
        peak = max((r.rss or 0, s.name) for s, r in zip(dag.steps, state.steps))
        largest = f"; the largest peak memory {_kib(peak[0])} ({peak[1]})" if peak[0] else ""
        out.write(f"{'cost:':<{w}}{sum(cpu):.2f}s CPU in all steps{largest}\n")
    rows = _rows(state, dag, "", 0)
    nw = max([4] + [len(r[0]) for r in rows])
    lw = max([6] + [len(r[1]) for r in rows])
    out.write(f"\n{'step':<{nw}}  {'status':<{lw}}  {'duration':>8}  {'exit':>4}  "
              f"{'cpu':>7}  {'peak mem':>8}  error\n")
    for name, label, r, stopped in rows:
        if r.started_at is None:
            took = "-"
        elif r.finished_at is None:
            took = _dur(now - r.started_at) if not stopped else "-"
        else:
            took = _dur(r.finished_at - r.started_at)
        code = "-" if r.exit_code is None else str(r.exit_code)
        cpu_s = "-" if r.cpu is None else f"{r.cpu:.2f}s"
        rss = "-" if r.rss is None else _kib(r.rss)  # "-": no more than the engine's
        out.write(f"{name:<{nw}}  {label:<{lw}}  {took:>8}  {code:>4}  {cpu_s:>7}  {rss:>8}  "
                  f"{r.error}".rstrip() + "\n")
    return 0


def _kib(kib: int) -> str:
    """A size in KiB, as people read it (`812K`, `45.6M`, `1.2G`)."""
    if kib < 1024:
        return f"{kib}K"
    if kib < 1024 * 1024:
        return f"{kib / 1024:.1f}M"
    return f"{kib / 1024 / 1024:.1f}G"


# Past this many sub-runs (a fan-out), `status RUN` lists only the failed ones (this
# many), then one row for the rest; `status RUN STEP` pages them (--limit).
_SUB_ROWS = 20
_RUN_OK = (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED)


def _rows(state: RunState, dag, prefix: str, depth: int) -> list[tuple]:
    """(name, status label, record, interrupted) a step, each sub-DAG step followed by
    its sub-runs' steps, indented, named by their address (`fan[1]/work`)."""
    rows = []
    for i, (step, r) in enumerate(zip(dag.steps, state.steps)):
        label = _step_label(state, r)
        tries = step_attempts(state.path, state.token(i))
        if tries > 1:
            label += f" ({tries} attempts)"
        name = f"{prefix}{step.name}"
        rows.append(("  " * depth + name, label, r, state.interrupted))
        if step.extra is not None:
            subs = sub_runs(state.path, i, name)
            if len(subs) > _SUB_ROWS:  # a large fan-out: its failed items, a page of them
                shown = [x for x in subs if x[1].status not in _RUN_OK][:_SUB_ROWS]
                for here, sub, sub_dag in shown:
                    rows += _rows(sub, sub_dag, here, depth + 1)
                rows.append(("  " * (depth + 1) + f"{name}[...]",
                             f"{len(subs) - len(shown)} more", StepRecord(), False))
            else:
                for here, sub, sub_dag in subs:
                    rows += _rows(sub, sub_dag, here, depth + 1)
    for on, r in state.handlers.items():  # the handlers that ran, as the console names them
        rows.append(("  " * depth + f"{prefix}handlerOn.{on}", StepStatus(r.status).label, r,
                     False))
    return rows


def _handler_status(state: RunState, name: str, r, as_json: bool, out) -> int:
    """`status RUN handlerOn.EVENT`: the handler's record."""
    took = r.finished_at - r.started_at if r.started_at and r.finished_at else None
    doc = {"address": name, "run_id": state.run_id, "status": StepStatus(r.status).label,
           "exit_code": r.exit_code, "started_at": r.started_at, "finished_at": r.finished_at,
           "duration": took, "error": r.error, "cpu_seconds": r.cpu, "peak_rss_kib": r.rss}
    if as_json:
        import msgspec

        out.write(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n")
        return 0
    w = 10
    code = "" if r.exit_code is None else f", exit {r.exit_code}"
    out.write(f"{'step:':<{w}}{name}\n{'run:':<{w}}{state.run_id}\n"
              f"{'status:':<{w}}{doc['status']}{code}, took {_dur(took) if took else '-'}\n")
    if r.error:
        out.write(f"{'error:':<{w}}{r.error}\n")
    return 0


def _step_status(state: RunState, args, out) -> int:
    """`status RUN STEP`: one step (any address) in detail, and its sub-runs' steps."""
    t = resolve_target(state.path, args.step)
    if t.step >= len(t.dag.steps):
        here = state if t.run_path == state.path else read_run(t.run_path)
        on = t.name.rsplit("handlerOn.", 1)[-1]
        r = here.handlers.get(on)
        if r is None:
            raise RunError(f"`{args.step}` did not run in run {here.run_id}")
        return _handler_status(here, t.name, r, args.json, out)
    here = t.state or (state if t.run_path == state.path else read_run(t.run_path))
    doc = dict(_status_doc(here, t.dag)["steps"][t.step], address=t.name,
               run_id=here.run_id)
    step = t.dag.steps[t.step]
    fanout = t.state is None and step.extra is not None and step.extra.parallel is not None
    items = None
    if fanout:
        from dagfast.records.items import read_items  # only fan-out steps

        items = read_items(here.path, [t.step]).get(t.step, {})
        doc["items"] = _items_doc(items, args.limit)
    if args.json:
        import msgspec

        out.write(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n")
        return 0
    w = 10
    took = "-" if doc["duration"] is None else _dur(doc["duration"])
    code = "" if doc["exit_code"] is None else f", exit {doc['exit_code']}"
    out.write(f"{'step:':<{w}}{t.name}\n{'run:':<{w}}{here.run_id}\n"
              f"{'status:':<{w}}{doc['status']}{code}, took {took}\n"
              f"{'attempts:':<{w}}{doc['attempts']}\n")
    if doc["error"]:
        out.write(f"{'error:':<{w}}{doc['error']}\n")
    if items is not None and (args.limit == 0 or len(items) > args.limit):
        # A large fan-out: its failed items first (a page of them), then the counts.
        failed = doc["items"]["failed"]
        for f in failed:
            code = "-" if f["exit_code"] is None else str(f["exit_code"])
            out.write(f"  {t.name}[{f['index']}]  {f['status']}  exit {code}  "
                      f"key {shell_word(f['key'])}  {f['error']}".rstrip() + "\n")
        more = doc["items"]["not_shown"]
        if more:
            out.write(f"  ... and {more} more (--limit 0 lists them all)\n")
    else:
        rows = _rows(here, t.dag, "", 0)
        inner = [r for r in rows if r[0].lstrip().startswith((step.name + "/", step.name + "["))]
        for name, label, r, _ in inner:
            code = "-" if r.exit_code is None else str(r.exit_code)
            shown = (t.name.rsplit("/", 1)[0] + "/" + name.strip() if "/" in t.name
                     else name.strip())
            out.write(f"  {shown}  {label}  exit {code}  {r.error}".rstrip() + "\n")
    if items is not None:
        counts = doc["items"]["counts"]
        running = (here.items.get(t.step) or {}).get("running", 0) if not here.finished_at else 0
        if running:
            counts = dict(counts, running=running)
        tally = ", ".join(f"{n} {label}" for label, n in sorted(counts.items(),
                                                                key=lambda c: -c[1]))
        out.write(f"{'items:':<{w}}{doc['items']['total']}" + (f" ({tally})" if tally else "")
                  + "\n")
    logs = f"dagfast logs {state.run_id} {shell_word(t.name)}"
    if items:
        logs += " [--item K]"
    out.write(f"{'logs:':<{w}}{logs} [--stderr]\n")
    return 0


def _items_doc(items: dict, limit: int) -> dict:
    """A fan-out step's items: how many ended with each status, and the failed ones
    (the first `limit`; 0: all), by index."""
    from dagfast.records.items import summary  # only fan-out steps

    bad = sorted((it for it in items.values()
                  if it.status not in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED)),
                 key=lambda it: it.index)
    shown = bad if limit <= 0 else bad[:limit]
    return {
        "total": len(items), "counts": summary(items),
        "failed": [{"index": it.index, "key": it.key, "status": StepStatus(it.status).label,
                    "exit_code": it.exit_code, "error": it.error} for it in shown],
        "not_shown": len(bad) - len(shown),
    }


def _run_label(state: RunState) -> str:
    if state.interrupted:
        running = sum(1 for r in state.steps if r.status == StepStatus.RUNNING)
        if running:
            were = f", {running} step{' was' if running == 1 else 's were'} running"
        elif state.status == RunStatus.NOT_STARTED:
            were = " before its first step"
        else:
            were = ""
        return (f"interrupted: its process (pid {state.pid or '?'}) is gone{were}; "
                f"`dagfast retry {state.run_id}` finishes it")
    label = RunStatus(state.status).label
    if state.owner_alive and state.status == RunStatus.RUNNING:
        label += f" (pid {state.pid})"
    return label


def _step_label(state: RunState, r) -> str:
    if r.status == StepStatus.RUNNING and state.interrupted:
        return "interrupted"
    return StepStatus(r.status).label


def _status_doc(state: RunState, dag) -> dict:
    steps = []
    for i, (step, r) in enumerate(zip(dag.steps, state.steps)):
        took = None
        if r.started_at is not None and r.finished_at is not None:
            took = round(r.finished_at - r.started_at, 6)
        doc = {
            "id": i, "name": step.name, "status": _step_label(state, r),
            "exit_code": r.exit_code, "started_at": r.started_at,
            "finished_at": r.finished_at, "duration": took, "error": r.error,
            "output": r.output, "attempts": step_attempts(state.path, state.token(i)),
            "cpu_seconds": r.cpu, "peak_rss_kib": r.rss,
        }
        if step.extra is not None and step.extra.call is not None:
            doc["runs"] = [dict(_status_doc(sub, sub_dag), item=k)
                           for k, sub, sub_dag in runs_by_item(state.path, i)]
        steps.append(doc)
    took = None
    end = state.finished_at or (state.last_recorded_at if state.interrupted else None)
    if state.started_at and end:
        took = round(end - state.started_at, 6)  # an interrupted run: up to its last record
    return {
        "dag": state.dag_name, "dag_path": state.dag_path, "run_id": state.run_id,
        "attempt": state.attempt, "max_active_steps": dag.max_active_steps,
        "status": "interrupted" if state.interrupted else RunStatus(state.status).label,
        "interrupted": state.interrupted, "pid": state.pid,
        "started_at": state.started_at, "finished_at": state.finished_at, "duration": took,
        "error": state.error, "path": state.path, "steps": steps,
        "handlers": {
            on: {"status": StepStatus(r.status).label, "exit_code": r.exit_code,
                 "started_at": r.started_at, "finished_at": r.finished_at, "error": r.error,
                 "cpu_seconds": r.cpu, "peak_rss_kib": r.rss}
            for on, r in state.handlers.items()
        },
        "cpu_seconds": round(sum(r.cpu for r in state.steps if r.cpu is not None), 6),
    }


# history -------------------------------------------------------------------------------


def history(args, out=sys.stdout) -> int:
    """List the runs of a DAG, newest first."""
    name, file = dag_named(args.dag)
    paths = runs_of(home(), name, file)
    if not paths:
        raise RunError(f"no runs of `{args.dag}` under `{home()}`")
    rows = []
    for path in reversed(paths[-args.limit:] if args.limit else paths):
        try:
            s = read_run(path)
        except RunError as exc:  # one bad record must not hide the others
            rows.append((os.path.basename(path), "unreadable", "-", "-", "-", str(exc)))
            continue
        counts: dict[str, int] = {}
        for r in s.steps:
            label = _step_label(s, r)
            counts[label] = counts.get(label, 0) + 1
        order = [x.label for x in StepStatus] + ["interrupted"]
        summary = ", ".join(f"{counts[x]} {x}" for x in order if x in counts)
        end = s.finished_at or (s.last_recorded_at if s.interrupted else None)
        took = _dur(end - s.started_at) if end and s.started_at else "-"
        attempt = str(s.attempt)
        rows.append((s.run_id, s.label, _when(s.started_at) if s.started_at else "-",
                     took, attempt, summary))
    widths = [max(len(r[k]) for r in rows + [("run", "status", "started", "took", "try", "")])
              for k in range(5)]
    head = ("run", "status", "started", "took", "try", "steps")
    for row in [head] + rows:
        out.write("  ".join(
            f"{v:>{widths[k]}}" if k in (3, 4) else f"{v:<{widths[k]}}" for k, v in enumerate(row[:5])
        ) + f"  {row[5]}\n")
    return 0


# logs ----------------------------------------------------------------------------------


def logs(args, out=None) -> int:
    """Print a step's stdout (or stderr), of its last execution or of `--attempt N`;
    with --follow, until the run ends. STEP may be `handlerOn.EVENT`, `STEP/CHILD`,
    `STEP[K]/CHILD` (read.resolve_target)."""
    out = out or sys.stdout.buffer
    state = read_target(home(), args.run)
    stream = "err" if args.stderr else "out"
    if state.tokens is not None:  # a fan-out item's run of one step, by its own id
        dag = state.dag()
        one = dag.steps[0].name
        if args.step not in (None, one, "0"):
            raise RunError(f"`{args.step}`: no step `{args.step}` in DAG `{dag.name}` "
                           f"(its step: {one})")
        targets = [Target(state.path, dag, 0, one, state.steps[0].error, state.tokens[0],
                          state)]
    elif args.step is None:
        dag = state.dag()
        if len(dag.steps) != 1:
            for flag, given in (("--follow", args.follow), ("--attempt", args.attempt)):
                if given not in (None, False):
                    raise UsageError(f"{flag} needs a STEP when the DAG has more than one step")
        targets = [leaf for i, s in enumerate(dag.steps)
                   for leaf in _leaves(Target(state.path, dag, i, s.name))]
        if not args.follow and args.attempt is None:  # every step's output: handlers' too
            n = len(dag.steps)
            targets += [Target(state.path, dag, n + k, f"handlerOn.{h.on}")
                        for k, h in enumerate(dag.handlers)]
    elif getattr(args, "item", None) is not None:
        targets = _item_leaves(state, args.step, args.item)
    else:
        # A sub-DAG step writes nothing itself: its logs are its sub-runs' steps'.
        targets = _leaves(resolve_target(state.path, args.step))
    if (args.follow or args.attempt is not None) and len(targets) != 1:
        raise UsageError(f"`{args.step or targets[0].name.split('/')[0]}` is a sub-DAG "
                         f"step; name one of its steps: "
                         f"{', '.join(t.name for t in targets[:3])}, ...")
    if args.attempt is not None:
        t = targets[0]
        n = step_attempts(t.run_path, t.log)
        if not 1 <= args.attempt <= n:
            raise RunError(f"step `{t.name}` of run `{state.run_id}` ran "
                           f"{n} time{'s' if n != 1 else ''}: no attempt {args.attempt}")
    if args.follow:
        t = targets[0]

        def write(data: bytes) -> None:
            out.write(data)
            out.flush()

        follow_step_log(t.run_path, t.log, stream, write, lambda: time.sleep(0.1))
        return 0
    for t in targets:
        data = step_log(t.run_path, t.log, stream, args.attempt)
        if len(targets) > 1:
            if not data:
                continue
            out.write(f"==> {t.name} <==\n".encode())
        out.write(data)
        if len(targets) > 1 and not data.endswith(b"\n"):
            out.write(b"\n")
    out.flush()
    return 0


def _item_leaves(state: RunState, address: str | None, which: str) -> list[Target]:
    """`logs RUN STEP --item K`: the steps whose output is item K's of fan-out STEP."""
    from dagfast.records.items import find, read_items  # only --item

    if address is None:
        raise UsageError("--item needs a STEP: the fan-out step whose item it is")
    t = resolve_target(state.path, address)
    step = t.dag.steps[t.step] if t.step < len(t.dag.steps) else None
    if t.state is not None or step is None or step.extra is None or step.extra.parallel is None:
        raise RunError(f"`{address}` is not a fan-out step (`parallel:` or `matrix:`): "
                       f"it has no items")
    items = read_items(t.run_path, [t.step]).get(t.step, {})
    item = find(items, which)
    if item is None:
        if not items:
            raise RunError(f"no item of step `{t.name}` ended in run `{state.run_id}`")
        keys = ", ".join(f"`{k}`" for k in list(items)[:3])
        raise RunError(f"step `{t.name}` has no item `{which}` (it has {len(items)} items, "
                       f"indexes 0 to {max(it.index for it in items.values())}; keys such as "
                       f"{keys})")
    if item.token >= 0:
        runs = item_runs_of(t.run_path, t.step)
        if item.index in runs:  # an item of a one-step sub-DAG: that step
            sub_state, sub = runs[item.index]
            return [Target(t.run_path, sub, 0, f"{t.name}[{item.index}]/{sub.steps[0].name}",
                           item.error, item.token, sub_state)]
        return [Target(t.run_path, t.dag, t.step, f"{t.name}[{item.index}]", item.error,
                       item.token)]
    for k, sub_state, sub in runs_by_item(t.run_path, t.step):  # a sub-run of its own
        if k == item.index:
            return [leaf for i, s in enumerate(sub.steps)
                    for leaf in _leaves(Target(sub_state.path, sub, i,
                                               f"{t.name}[{k}]/{s.name}"))]
    raise RunError(f"the record of item `{which}` of step `{t.name}` is missing")


def _leaves(t: Target) -> list[Target]:
    """`t`, or when it is a sub-DAG step, the steps of its sub-runs (any depth)."""
    if t.token is not None:  # a fan-out item's one step: a leaf
        return [t]
    found = []
    for here, sub, dag in sub_runs(t.run_path, t.step, t.name):
        for i, step in enumerate(dag.steps):
            token = sub.tokens[i] if sub.tokens is not None else None
            found += _leaves(Target(sub.path, dag, i, here + step.name, token=token,
                                    state=sub if token is not None else None))
    return found or [t]


# trace, report --------------------------------------------------------------------------


def trace(args, out=sys.stdout) -> int:
    """Write the run in Chrome's trace event format to `-o FILE` (`-`: stdout)."""
    import msgspec

    from dagfast.report.trace import chrome_trace, timeline  # only `trace` (start-up)

    state = read_run(resolve_run(home(), args.run))
    doc = msgspec.json.encode(chrome_trace(state, timeline(state))) + b"\n"
    _write_output(args.output, doc, out)
    return 0


def report(args, out=sys.stdout) -> int:
    """Write the run as one self-contained HTML page to `-o FILE` (`-`: stdout)."""
    from dagfast.report.html import render  # only `report` (start-up)
    from dagfast.report.trace import timeline

    state = read_run(resolve_run(home(), args.run))
    _write_output(args.output, render(state, timeline(state)).encode(), out)
    return 0


def _write_output(path: str, data: bytes, out) -> None:
    """`data` to the file `path` (`-`: to `out`); UsageError naming the file when it
    cannot be written."""
    if path == "-":
        out.write(data.decode())
        out.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise UsageError(f"-o {path}: {exc.strerror}") from None
    print(f"dagfast: wrote {path}", file=sys.stderr)


# dry -----------------------------------------------------------------------------------


def dry(args, out=sys.stdout) -> int:
    """Print the order steps would start in (as if each took the same time): the real
    engine with an executor whose steps exit at once; runs nothing."""
    # `dry` alone loads the engine (start-up of status, history and logs)
    from dagfast.loader import load
    from dagfast.runtime.session import dry as dry_run

    dag = load(args.dag, evaluate=False)  # "runs nothing": no backtick command either
    dry_run(dag, _Rounds(out), args.max_active_steps)
    return 0


class _Rounds(Reporter):
    """`dry`'s table: a round is what starts after the previous round's ends."""

    def __init__(self, out) -> None:
        self.out = out
        self.round = 0
        self.ended = True  # the last event was an end: the next start opens a round

    def run_started(self, dag, run_dir, records) -> None:
        self.dag = dag
        self.names = [st.name for st in dag.steps]
        self.width = max([4] + [len(x) for x in self.names])
        limit = dag.max_active_steps or "unlimited"
        self.out.write(f"dry run of {dag.name}: {len(dag.steps)} steps, maxActiveSteps "
                       f"{limit}; nothing is started\n")
        self.out.write(f"{'round':>5}  {'step':<{self.width}}  after\n")

    def step_started(self, step: int) -> None:
        if self.ended:
            self.round += 1
            self.ended = False
        after = ", ".join(self.names[d] for d in self.dag.steps[step].depends)
        self.out.write(f"{self.round:>5}  {self.names[step]:<{self.width}}  {after}".rstrip()
                       + "\n")

    def step_finished(self, step: int, record) -> None:
        self.ended = True


# Formatting ----------------------------------------------------------------------------


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t))


def _dur(sec: float) -> str:
    if sec < 60:
        return f"{sec:.2f}s"
    m, s = divmod(int(sec), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s"
