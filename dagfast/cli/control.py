"""The commands that act on runs: `retry` (a new attempt of a run) and `stop`."""

from __future__ import annotations

import os
import signal
import sys
import time

from dagfast.errors import RunError
from dagfast.records.read import find_run, owner_pid, read_run
from dagfast.records.store import home

__all__ = ["retry", "stop"]


def retry(args, out=sys.stdout) -> int:
    """Run again, in the same run, the steps that did not succeed (or only `--step`),
    keeping the records of the others; returns the exit status of a run."""
    # The engine and the reporters only for `retry` (`stop` starts faster without).
    from dagfast.report.choose import choose
    from dagfast.runtime.session import exit_status, retry as retry_run

    from dagfast.records.runslots import Stopped  # as the session: only for retry

    try:
        result = retry_run(
            args.run, step=args.step, reporter=choose(out, quiet=args.quiet), out=out,
            executor=args.executor, scheduler=args.scheduler, shared_dir=args.shared_dir,
        )
    except Stopped as exc:  # stopped while waiting for a run slot: said, as `run` does
        print(f"dagfast: {exc}", file=sys.stderr)
        return 128 + exc.signal
    return 0 if result is None else exit_status(result)


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
