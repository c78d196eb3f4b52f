"""The commands that act on runs: `retry` (a new attempt of a run), `stop`, and
`prune` (delete old runs). Each takes a run id, or a DAG file or name (its latest run)."""

from __future__ import annotations

import os
import signal
import sys
import time

from dagfast.cli.views import dag_named, resolve_run
from dagfast.errors import RunError, UsageError
from dagfast.records.read import dag_names, owner_pid, read_run
from dagfast.records.store import home

__all__ = ["prune", "retry", "stop"]


def retry(args, out=sys.stdout) -> int:
    """Run again, in the same run, the steps that did not succeed (or only `--step`),
    keeping the records of the others; returns the exit status of a run."""
    # The engine and the reporters only for `retry` (`stop` starts faster without).
    from dagfast.report.choose import choose
    from dagfast.runtime.session import exit_status, retry as retry_run

    from dagfast.records.runslots import Stopped  # as the session: only for retry

    from dagfast.records.retryplan import changed_since  # only `retry`

    if args.downstream and args.step is None:
        raise UsageError("--downstream goes with --step STEP")
    path = _top_level(args.run, "retry")
    state = read_run(path)
    # Notes go to stderr: with --json, stdout is JSON lines alone.
    note = sys.stderr if args.json else out
    if not args.edited and changed_since(state.dag_path, state.started_at):
        note.write(f"dagfast: warning: {state.dag_path} changed since run {state.run_id} "
                   "started; this retry runs the DAG as recorded (`--edited`: as the file "
                   "is now)\n")
        note.flush()
    reporter = choose(out, quiet=args.quiet, verbose=args.verbose, json=args.json,
                      junit=args.junit)
    try:
        result = retry_run(
            state.run_id, step=args.step, reporter=reporter, out=note,
            executor=args.executor, scheduler=args.scheduler, shared_dir=args.shared_dir,
            downstream=args.downstream, edited=args.edited,
        )
    except Stopped as exc:  # stopped while waiting for a run slot: said, as `run` does
        print(f"dagfast: {exc}", file=sys.stderr)
        return 128 + exc.signal
    return 0 if result is None else exit_status(result)


def stop(args, out=sys.stdout) -> int:
    """Ask the process running a run to stop it (SIGTERM), and wait until it has."""
    path = _top_level(args.run, "stop")
    run_id = os.path.basename(path)
    pid = owner_pid(path)
    if pid is None:
        state = read_run(path)
        raise RunError(f"run `{run_id}` is not running (it is {state.label})")
    if not pid or not _holds_lock(pid, os.path.join(path, "lock")):
        raise RunError(f"run `{run_id}` is held by a process that is not pid {pid or '?'}; "
                       "not signalling it")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.wait
    while owner_pid(path) is not None:
        if time.monotonic() >= deadline:
            out.write(f"dagfast: sent SIGTERM to pid {pid}; run {run_id} is still stopping\n")
            return 1
        time.sleep(0.05)
    state = read_run(path)
    out.write(f"dagfast: run {run_id} stopped: {state.label}\n")
    return 0


def _top_level(target: str, command: str) -> str:
    """The run directory `target` names; RunError when it is a sub-run's (or a fan-out
    item's): its caller is the run to act on (a sub-run alone has no process of its
    own, nor a record of its caller)."""
    try:
        path = resolve_run(home(), target)
    except RunError:
        from dagfast.records.address import item_run  # only ids with dots

        if not target or item_run(home(), target) is None:
            raise
        path = target
    run_id = os.path.basename(path)
    top = run_id.split(".", 1)[0]
    if top != run_id:
        raise RunError(f"run `{run_id}` is a sub-run of run `{top}`: "
                       f"`dagfast {command} {top}`")
    return path


def _holds_lock(pid: int, lock: str) -> bool:
    """Whether `pid` holds a flock on `lock` (per /proc/locks; True if unreadable)."""
    try:
        inode = os.stat(lock).st_ino
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return True
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[4] == str(pid):
            if parts[5].rsplit(":", 1)[-1] == str(inode):
                return True
    return False


def prune(args, out=sys.stdout) -> int:
    """Delete old runs (of DAG, or of every DAG): show them, or with --yes delete them.
    Running and queued runs are never deleted."""
    from dagfast.records import prune as pruning  # only `prune` (start-up of the others)

    if args.keep is None and args.older_than is None:
        raise UsageError("prune needs --keep N or --older-than AGE (or both)")
    age = pruning.parse_age(args.older_than) if args.older_than is not None else None
    home_dir = home()
    if args.dag is not None:
        name, file = dag_named(args.dag)
        names = [name]
    else:
        names, file = dag_names(home_dir), None
    doomed, busy = pruning.plan(home_dir, names, args.keep, age, file)
    if args.yes:
        done = pruning.prune(doomed)
        busy += done.busy
        for path in done.deleted:
            out.write(f"deleted {_shown(path)}\n")
        for path, why in done.failed:
            out.write(f"dagfast: cannot delete {_shown(path)}: {why}\n")
    else:
        for path in doomed:
            out.write(f"would delete {_shown(path)}\n")
    for path in busy:
        out.write(f"kept {_shown(path)}: it is running or queued\n")
    verb = "deleted" if args.yes else "would delete"
    count = len(done.deleted) if args.yes else len(doomed)
    out.write(f"{verb} {count} run{'s' if count != 1 else ''}"
              + ("" if args.yes or not doomed else "; add --yes to delete them") + "\n")
    return 1 if args.yes and done.failed else 0


def _shown(path: str) -> str:
    """`<dag dir>/<run id>` of a run directory."""
    return f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
