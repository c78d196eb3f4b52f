"""The commands that act on runs: `retry` (a new attempt of a run) and `stop`."""

from __future__ import annotations

import os
import signal
import sys
import time

import msgspec

from dagfast.errors import RunError
from dagfast.records.read import find_run, owner_pid, read_run
from dagfast.status import RunStatus, StepStatus
from dagfast.records.store import OUTPUT_LOST, RunDir, home

__all__ = ["leftovers", "retry", "stop"]

LEFTOVER_GRACE_SEC = 5.0  # between SIGTERM and SIGKILL for leftovers of a dead run


def retry(args, out=sys.stdout) -> int:
    """Run again, in the same run, the steps that did not succeed (or only `--step`),
    keeping the records of the others; returns the exit status of a run."""
    home_dir = home()
    path = find_run(home_dir, args.run)
    if path is None:
        raise RunError(f"no run `{args.run}` under `{home_dir}`")
    run_dir = RunDir.reopen(path, os.path.basename(path))  # RunError if it still runs
    try:
        state = read_run(path)
        dag = state.dag()
        # A step whose output the record could not keep (the disk filled) runs again:
        # its dependents need the value.
        state.steps = [
            msgspec.structs.replace(r, status=StepStatus.NOT_STARTED)
            if r.status == StepStatus.SUCCEEDED and r.error == OUTPUT_LOST else r
            for r in state.steps
        ]
        if len(state.steps) != len(dag.steps):
            raise RunError(f"the record of run `{state.run_id}` does not match its DAG")
        from dagfast.exec.base import choose as choose_executor

        # Where the steps run: the flags, else the environment, else the DAG as recorded.
        executor = choose_executor(dag, args.executor, args.scheduler, args.shared_dir)
        _end_leftovers(state.run_id, out)
        if args.step is not None:
            from dagfast.cli.views import step_id

            target = step_id(dag, args.step)
            rerun = [target]  # the engine keeps every other step's record as it is
            kept = {i: r for i, r in enumerate(state.steps) if i != target and r.status}
        else:
            rerun = [i for i, r in enumerate(state.steps) if r.status != StepStatus.SUCCEEDED]
            kept = {i: r for i, r in enumerate(state.steps) if r.status == StepStatus.SUCCEEDED}
        if not rerun:
            out.write(f"dagfast: every step of run {state.run_id} succeeded: nothing to retry\n")
            run_dir.close()
            return 0
        slot = None
        if dag.max_active_runs:
            # A retry is a run too: it waits for a slot like any other, before its new
            # attempt is recorded (until then the record still tells the last attempt,
            # and a SIGINT or SIGTERM while it waits leaves that record as it was).
            from dagfast.records import runslots

            def queued() -> None:
                out.write(f"dagfast: run {state.run_id}: waiting for a run slot "
                          f"(maxActiveRuns {dag.max_active_runs})\n")
                out.flush()

            try:
                slot = runslots.take_or_stop(
                    dag.name, dag.max_active_runs, home_dir, on_queued=queued
                )
            except runslots.Stopped as exc:
                run_dir.close()
                return 128 + exc.signal
        try:
            run_dir.begin_attempt(state.attempt + 1, kept, state.journal_end, rerun)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
    except BaseException:
        run_dir.close()
        raise
    from dagfast.runtime.engine import Engine
    from dagfast.report.base import choose

    out.write(f"dagfast: attempt {state.attempt + 1} of run {state.run_id}: "
              f"{len(rerun)} of {len(dag.steps)} steps to run again\n")
    try:
        result = Engine(
            dag, run_dir, choose(out, quiet=args.quiet), previous=state.steps,
            rerun=rerun if args.step is not None else None, executor=executor,
        ).run()
    finally:
        if slot is not None:
            slot.release()
    if run_dir.failure is not None:
        raise RunError(f"the run was stopped: {run_dir.failure}")
    if result.signal:
        return 128 + int(result.signal)
    return 0 if result.status == RunStatus.SUCCEEDED else 1


def stop(args, out=sys.stdout) -> int:
    """Ask the process running a run to stop it (SIGTERM), and wait until it has."""
    home_dir = home()
    path = find_run(home_dir, args.run)
    if path is None:
        raise RunError(f"no run `{args.run}` under `{home_dir}`")
    pid = owner_pid(path)
    if pid is None:
        state = read_run(path)
        raise RunError(f"run `{args.run}` is not running (it is {state.label})")
    if not pid or not _holds_lock(pid, os.path.join(path, "lock")):
        raise RunError(f"run `{args.run}` is held by a process that is not pid {pid or '?'}; "
                       "not signalling it")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.wait
    while owner_pid(path) is not None:
        if time.monotonic() >= deadline:
            out.write(f"dagfast: sent SIGTERM to pid {pid}; run {args.run} is still stopping\n")
            return 1
        time.sleep(0.05)
    state = read_run(path)
    out.write(f"dagfast: run {args.run} stopped: {state.label}\n")
    return 0


def leftovers(run_id: str) -> list[int]:
    """Pids of live processes whose environment says they belong to run `run_id` (the
    steps of a run whose engine died, and their children)."""
    marker = b"\0DAG_RUN_ID=" + run_id.encode() + b"\0"
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if marker in b"\0" + env:
            found.append(int(name))
    return found


def _end_leftovers(run_id: str, out) -> None:
    """A dead engine leaves its steps running: end them before running them again."""
    pids = leftovers(run_id)
    if not pids:
        return
    noun = "process" if len(pids) == 1 else "processes"
    out.write(f"dagfast: ending {len(pids)} {noun} left by the interrupted attempt\n")
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + LEFTOVER_GRACE_SEC
    while time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


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
