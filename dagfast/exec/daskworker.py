"""The Dask executor's worker side: runs a step's process inside a Dask worker, and
signals it there.

These functions run in Dask worker processes (`run_step` as a task, the others through
`Client.run`), so they live in dagfast itself: every worker needs the same dagfast
installed as the client (`pip install 'dagfast[dask]'`). Only the standard library and
`procs` are imported here; `distributed` is already loaded in any worker.

A step runs as a process in a session (so a process group) of its own, with the step's
argv, environment and working directory, stdin from /dev/null, and stdout and stderr
into files. A registry maps each running step's Dask key to its group, so that a signal
sent by key reaches the step on whichever worker runs it; a future's `cancel()` alone
would leave a running process alone. A watchdog process per worker kills every process
the worker's steps started (found by a tag in their environment) when the worker
exits, however it exits: SIGKILL, a crash, or the cluster closing; a reaper thread
kills the running steps' groups as soon as the worker starts closing (its scheduler
lost, say), since a closing worker may take long to exit.

A scheduler that runs a task again when its worker is lost (allowed-failures > 0)
would run a step twice: with `guard`, each run marks its key started (a Dask Event on
the scheduler) before its process starts, and a second start of the same key runs
nothing and reports the worker lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from dagfast.exec.local import _signal_tagged  # the one /proc scan for processes that left a group

__all__ = ["LOG_CAP", "LOST", "TAG", "dask_setup", "started_marker", "forget", "run_step", "signal_escaped",
           "signal_groups", "signal_steps"]

LOG_CAP = 64 << 20
"""Bytes of each of a step's logs that travel back in the task's result; the rest is
cut (and said so in its stderr). A shared directory has no such limit."""

TAG = b"DAGFAST_DASK_WORKER"
"""The environment variable every step process on a worker carries (the worker's own
id): how the watchdog finds a dead worker's processes, grandchildren included."""

_lock = threading.Lock()  # tasks run in worker threads, signals on the worker's loop
_running: dict[str, int] = {}  # Dask key -> process group of the step running it
_groups: dict[str, list[int]] = {}  # executor id -> every group started for it here
_doomed: dict[str, tuple[int, float]] = {}  # keys signalled before they started here
_watchdog: subprocess.Popen | None = None
_worker = None  # the Dask worker of this process, for the reaper thread
_reaper: threading.Thread | None = None
_tag = b""
_scratch = ""  # this worker's directory of step scratch directories (the watchdog's too)
_DOOMED_KEEP_SEC = 600.0
_REAP_EVERY_SEC = 0.2

LOST = ("its Dask worker was lost; the Dask scheduler started the step again on {worker}, "
        "where dagfast ran nothing (a step never runs twice)")
"""The error of a second start of a key (`guard`): {worker} is where it came."""


def started_marker(key: str) -> str:
    """The name of the Dask Event that says task `key` has started (`guard`)."""
    return f"dagfast-started-{key}"


def run_step(ns: str, argv, env: dict, cwd: str, files, shared_dir: str | None,
             cap: int = LOG_CAP, guard: bool = False):
    """Run one step to its end (a Dask task): (wait status, stdout, stderr, error).

    The logs are bytes (at most `cap` each), or None when they were written to
    `shared_dir` as `<key>.out`/`.err`; `error` is "" unless the process could not
    start, when it says why (as procs.SpawnError does locally). The wait status is
    None when `guard` found the key started before: the run's worker was lost."""
    from distributed import Event, get_worker

    worker = get_worker()
    key = str(worker.get_current_task())
    with _lock:
        doomed = _doomed.pop(key, None)
    if doomed is not None:  # stopped on its way here: it never starts
        return doomed[0], b"", b"", ""
    if guard:
        # No other start of this key runs now: the scheduler starts a task again only
        # once it has given up the worker of the first start, which set this first.
        marker = Event(started_marker(key))
        if marker.is_set():
            logs = None if shared_dir else b""
            return None, logs, logs, LOST.format(worker=worker.address)
        marker.set()
    env = dict(env)
    env[TAG] = _ensure_watchdog(worker)
    scratch = tempfile.mkdtemp(prefix="step-", dir=_scratch)
    try:
        argv = list(argv)
        for i, name, data in files:  # script files of the run record travel with the task
            path = os.path.join(scratch, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            argv[i] = path
        logs = shared_dir or scratch
        out_path, err_path = os.path.join(logs, f"{key}.out"), os.path.join(logs, f"{key}.err")
        status, error = _run(key, ns, argv, env, cwd, out_path, err_path)
        if shared_dir:
            return status, None, None, error
        out, out_size = _read(out_path, cap)
        err, err_size = _read(err_path, cap)
        for name, size in (("stdout", out_size), ("stderr", err_size)):
            if size > cap:
                err += (f"\ndagfast: the step's {name} was {size:,} bytes; only the first "
                        f"{cap:,} came back from the Dask worker (a shared directory, "
                        "--shared-dir, has no such limit)\n").encode()
        return status, out, err, error
    finally:
        _remove(scratch)


def _run(key: str, ns: str, argv, env: dict, cwd: str, out_path: str, err_path: str):
    """Start the process, register its group, wait for it: (wait status, error)."""
    try:
        if not os.path.isdir(cwd):
            os.makedirs(cwd, exist_ok=True)  # as the local executor does (and Dagu)
    except OSError as exc:
        return 127 << 8, f"working directory `{cwd}`: {exc.strerror}"
    try:
        out = open(out_path, "wb", opener=_private)
    except OSError as exc:  # the shared directory is missing on this worker, say
        return 127 << 8, f"cannot write the step's logs `{exc.filename}`: {exc.strerror}"
    try:
        err = open(err_path, "wb", opener=_private)
    except OSError as exc:
        out.close()
        return 127 << 8, f"cannot write the step's logs `{exc.filename}`: {exc.strerror}"
    try:
        with out, err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd,
                start_new_session=True,
            )
    except OSError as exc:
        return 127 << 8, f"cannot start `{argv[0]}`: {exc.strerror}"
    with _lock:
        _running[key] = proc.pid
        _groups.setdefault(ns, []).append(proc.pid)
        doomed = _doomed.pop(key, None)  # signalled between the first check and now
    if doomed is not None:
        _killpg(proc.pid, doomed[0])
    try:
        code = proc.wait()
    finally:
        with _lock:
            _running.pop(key, None)
    # Popen gives -N for a death by signal N: back to the wait status os.waitpid gives.
    return (-code if code < 0 else code << 8), ""


def signal_steps(keys: list[str], sig: int) -> list[str]:
    """Send `sig` to the groups of the steps of `keys` running on this worker; return the
    keys found. A key not running here is remembered, so that a step signalled while
    on its way to this worker exits with `sig` instead of starting."""
    found = []
    now = time.monotonic()
    with _lock:
        for key in keys:
            pgid = _running.get(key)
            if pgid is not None:
                _killpg(pgid, sig)
                found.append(key)
            else:
                _doomed[key] = (sig, now)
        if len(_doomed) > 1000:
            for key in [k for k, (_, t) in _doomed.items() if now - t > _DOOMED_KEEP_SEC]:
                del _doomed[key]
    return found


def signal_groups(ns: str, tags: list[bytes], sig: int) -> int:
    """Send `sig` (0: none) to every group started here for executor `ns`, and to the
    processes that left them but carry `tags`; return how many of those are alive."""
    with _lock:
        groups = _groups.get(ns, [])
        alive = []
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                continue
            alive.append(pgid)
        if groups:
            _groups[ns] = alive
    return len(alive) + (_signal_tagged(tags, sig, alive) if tags else 0)


def signal_escaped(ns: str, tags: list[bytes], sig: int) -> int:
    """Send `sig` to the processes outside the groups of `ns` that carry `tags`."""
    with _lock:
        groups = list(_groups.get(ns, ()))
    return _signal_tagged(tags, sig, groups)


def dask_setup(worker) -> None:
    """Preloaded into the workers of the LocalCluster a run starts: Ctrl-C in a terminal
    reaches them too (they share the run's process group), and the run stops its steps
    itself, so they ignore SIGINT instead of dying with tracebacks mid-step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def forget(ns: str) -> None:
    """Executor `ns` is done: drop its groups (their background children stay alone)."""
    with _lock:
        _groups.pop(ns, None)


# The watchdog ----------------------------------------------------------------------------

# Reads its stdin until EOF, which comes when the worker exits (it holds the only write
# end), then SIGKILLs every process tagged with this worker's id, a few rounds in case
# one forks meanwhile, and removes the worker's scratch directory (the logs of the steps
# it was running). Standalone: it must not depend on the worker's imports.
_WATCHDOG = r"""
import os, shutil, signal, sys
sys.stdin.buffer.read()
tag = b"\0" + sys.argv[1].encode() + b"\0"
me = os.getpid()
for _ in range(5):
    found = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                if tag in b"\0" + f.read() + b"\0":
                    os.kill(int(d), signal.SIGKILL)
                    found += 1
        except OSError:
            pass
    if not found:
        break
shutil.rmtree(sys.argv[2], ignore_errors=True)
"""


def _ensure_watchdog(worker) -> bytes:
    """This worker's tag value, starting its watchdog (and reaper) on first use."""
    global _watchdog, _tag, _scratch, _worker, _reaper
    with _lock:
        _worker = worker
        if _reaper is None:
            _reaper = threading.Thread(target=_reap, name="dagfast-reaper", daemon=True)
            _reaper.start()
        if _watchdog is None or _watchdog.poll() is not None:
            _tag = f"{os.getpid()}-{os.urandom(4).hex()}".encode()
            _scratch = tempfile.mkdtemp(prefix="dagfast-worker-")
            # Its own session: a signal to the worker's group (Ctrl-C in a terminal)
            # must not take the watchdog with it.
            _watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, (TAG + b"=" + _tag).decode(), _scratch],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        return _tag


def _reap() -> None:
    """The reaper thread: once the worker is closing (its scheduler lost, the cluster
    closing), SIGKILL the groups of the steps still running and what left them: the
    worker's close may wait long for their threads, and no one hears of their ends."""
    from distributed.core import Status

    ending = (Status.closing, Status.closed, Status.failed)
    while True:
        time.sleep(_REAP_EVERY_SEC)
        worker = _worker
        if worker is None or worker.status not in ending:
            continue
        with _lock:
            groups = list(_running.values())
            tag = TAG + b"=" + _tag
        for pgid in groups:
            _killpg(pgid, signal.SIGKILL)
        if groups:
            _signal_tagged([tag], signal.SIGKILL, groups)


# Helpers ----------------------------------------------------------------------------------


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read(path: str, cap: int) -> tuple[bytes, int]:
    """The first `cap` bytes of a log, and its whole size."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return f.read(cap), size
    except OSError:
        return b"", 0


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _remove(directory: str) -> None:
    for name in os.listdir(directory):
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass

