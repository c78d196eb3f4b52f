"""Starts, watches and kills step processes; the one place `maxActiveSteps` is enforced.

Why this shape (measured on 2 cores, 5,000 x `sh -c true`, 16 at a time; see bench/):
`os.posix_spawn` is glibc's vfork-based spawn, and opening the log files as spawn
file actions moves those `open` calls into the child. Exits are picked up through
pidfds registered in one private epoll set, which is itself one reader on the uvloop
loop, so a burst of exits costs one wake-up. uvloop refuses SIGCHLD handlers, and one
uvloop reader per pidfd cost ~20 us more parent CPU per step than this.
"""

from __future__ import annotations

import os
import resource
import select
import signal
from collections.abc import Callable

__all__ = ["ProcessManager", "SpawnError", "describe_exit", "killpg"]

_DEVNULL = "/dev/null"
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC  # no O_CLOEXEC: they become fds 1 and 2
_OPEN = os.POSIX_SPAWN_OPEN
# One-shot: each pidfd reports its exit exactly once. Closing a pidfd does not always end
# its registration at once: a child that is just exec'ing still holds a close-on-exec copy
# of our fd table for a moment after vfork lets us run again, and a level-triggered entry
# for an exited process would keep firing until that copy is gone.
_ONESHOT = select.EPOLLIN | select.EPOLLONESHOT


class SpawnError(Exception):
    """A step's process could not be started; the message says why in the user's terms."""


class ProcessManager:
    """Runs at most `limit` processes at once (0: unlimited), each in its own process
    group, and calls `on_exits([(token, wait_status), ...])` on the loop as they end."""

    def __init__(self, loop, limit: int, on_exits: Callable[[list], None]) -> None:
        self._loop = loop
        self._limit = limit if limit > 0 else 0
        # What the system allows: each running step holds a pidfd here, and is one of
        # the user's processes. `capped` says why the limit was lowered, for the user.
        room = system_room()
        self.capped = ""
        if room[0] < (self._limit or 1 << 62):
            self._limit = max(1, room[0])
            self.capped = (
                f"running at most {self._limit} steps at once: {room[1]} "
                f"(maxActiveSteps {limit or 'unlimited'})"
            )
        self._on_exits = on_exits
        self._epoll = select.epoll()
        # pidfd -> (token, pid): the running processes.
        self._running: dict[int, tuple[int, int]] = {}
        # Every process group ever started: a stop must reach background children of
        # steps that already ended too (they keep the group alive after its leader).
        self._groups: list[int] = []
        self._held = 0  # slots held by steps that are between processes (see hold)
        self._env: dict = {}  # the last step's environment: its DAG_RUN_ID finds escapees
        self._cwd = os.getcwd()
        self._home_cwd = self._cwd
        loop.add_reader(self._epoll.fileno(), self._on_readable)

    # Queries -------------------------------------------------------------------------

    def free_slots(self) -> int:
        """How many more processes may start now (a large number when unlimited)."""
        if not self._limit:
            return 1 << 30
        return self._limit - len(self._running) - self._held

    @property
    def running_count(self) -> int:
        """How many processes are running."""
        return len(self._running)

    # Events --------------------------------------------------------------------------

    def hold(self) -> None:
        """Take a slot for a step that has none of its own process now (its preconditions
        are being checked, or it waits to retry): it still counts against the limit."""
        self._held += 1

    def release(self) -> None:
        """Give back a slot taken with `hold`."""
        self._held -= 1

    def start(self, token: int, argv, env: dict, cwd: str, stdout: str, stderr: str) -> int:
        """Start `argv` (environment: a bytes -> bytes dict) with stdin from /dev/null and
        stdout/stderr truncated into the given files; return its pid. Raises SpawnError."""
        # Every time, not only when `cwd` changes: a step may have deleted the directory
        # the last one ran in, and a path is looked up afresh only by chdir (~1 us).
        self._chdir(cwd)
        try:
            pid = os.posix_spawn(
                argv[0] if "/" in argv[0] else _which(argv[0], env),
                argv,
                env,
                file_actions=(
                    (_OPEN, 0, _DEVNULL, os.O_RDONLY, 0),
                    (_OPEN, 1, stdout, _LOG_FLAGS, 0o600),
                    (_OPEN, 2, stderr, _LOG_FLAGS, 0o600),
                ),
                setpgroup=0,
            )
        except OSError as exc:
            raise SpawnError(f"cannot start `{argv[0]}`: {exc.strerror}") from None
        try:
            fd = os.pidfd_open(pid)
        except OSError as exc:  # out of descriptors: a process we could not watch
            killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise SpawnError(f"cannot watch `{argv[0]}`: {exc.strerror}") from None
        self._env = env
        self._running[fd] = (token, pid)
        self._groups.append(pid)
        self._epoll.register(fd, _ONESHOT)
        return pid

    def signal_running(self, sig: int) -> None:
        """Send `sig` to the process group of every running step."""
        for _token, pid in self._running.values():
            killpg(pid, sig)

    def signal_all_groups(self, sig: int) -> None:
        """Send `sig` to every process group this manager ever started, and to every
        process that left its group (`setsid`) but still carries this run's DAG_RUN_ID."""
        for pgid in self._groups:
            killpg(pgid, sig)
        self.signal_escaped(sig)

    def signal_escaped(self, sig: int, step: str | None = None) -> int:
        """Send `sig` to the processes outside our groups whose environment says they
        belong to this run (and to `step`, if given); return how many there were."""
        run_id = self._env.get(b"DAG_RUN_ID")
        if run_id is None:
            return 0
        tags = [b"DAG_RUN_ID=" + run_id]
        if step is not None:
            tags.append(b"DAG_RUN_STEP_NAME=" + step.encode())
        return _signal_tagged(tags, sig, self._groups)

    def live_groups(self) -> int:
        """How many started process groups still have members (prunes the dead ones),
        plus the escaped processes of this run that are still alive."""
        alive = []
        for pgid in self._groups:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                continue
            alive.append(pgid)
        self._groups = alive
        return len(alive) + self.signal_escaped(0)

    def close(self) -> None:
        """Stop watching; processes still running are not waited for."""
        self._loop.remove_reader(self._epoll.fileno())
        for fd in self._running:
            os.close(fd)
        self._running.clear()
        self._epoll.close()
        if self._cwd != self._home_cwd:
            os.chdir(self._home_cwd)
            self._cwd = self._home_cwd

    # Internals -----------------------------------------------------------------------

    def _chdir(self, cwd: str) -> None:
        # posix_spawn has no portable chdir action in Python 3.11, and the loop is
        # single-threaded, so the parent changes directory just before spawning.
        try:
            os.chdir(cwd)
        except FileNotFoundError:
            try:
                os.makedirs(cwd, exist_ok=True)  # as Dagu does for a missing workingDir
                os.chdir(cwd)
            except OSError as exc:
                raise SpawnError(f"working directory `{cwd}`: {exc.strerror}") from None
        except OSError as exc:
            raise SpawnError(f"working directory `{cwd}`: {exc.strerror}") from None
        self._cwd = cwd

    def _on_readable(self) -> None:
        exits = []
        running = self._running
        for fd, _events in self._epoll.poll(0):
            token, pid = running.pop(fd)
            os.close(fd)  # its one-shot entry is spent, and goes with the file
            _, status = os.waitpid(pid, 0)
            exits.append((token, status))
        if exits:
            self._on_exits(exits)


def killpg(pgid: int, sig: int) -> None:
    """Signal a process group; a group that is gone or no longer ours is skipped."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        # The group id now belongs to someone else's processes: not ours to signal.
        pass


# Descriptors kept for the engine itself (journal, snapshots, epoll, loop, scripts).
_FD_RESERVE = 64


def system_room() -> tuple[int, str]:
    """(how many step processes may run at once, why) under RLIMIT_NOFILE (one pidfd
    each) and RLIMIT_NPROC (one process each, among the user's others)."""
    best, why = 1 << 62, ""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        room = soft - len(os.listdir("/proc/self/fd")) - _FD_RESERVE
        best, why = room, f"the open-file limit (ulimit -n) is {soft}"
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if soft != resource.RLIM_INFINITY and os.getuid() != 0:
        room = soft - _user_processes() - _FD_RESERVE
        if room < best:
            best, why = room, f"the process limit (ulimit -u) is {soft}"
    return best, why


def _user_processes() -> int:
    uid = os.getuid()
    count = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                count += os.stat(f"/proc/{d}").st_uid == uid
            except OSError:
                pass
    return count


def _signal_tagged(tags: list[bytes], sig: int, groups: list[int]) -> int:
    """Send `sig` to each of the user's processes whose environment holds every one of
    `tags` (`NAME=value`) and whose group is not in `groups`; how many were found.

    A step's process that calls `setsid` leaves the group a stop signals, and once its
    parent is gone nothing links it to the run but the environment it inherited. Read
    from /proc only when a run stops or a step times out. A pidfd pins the process
    between reading its environment and signalling it, so a reused pid is never hit.
    """
    me, uid, found = os.getpid(), os.getuid(), 0
    skip = set(groups)
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid or os.getpgid(pid) in skip:
                continue
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = b"\0" + f.read() + b"\0"
            if all(b"\0" + t + b"\0" in env for t in tags):
                found += 1
                if sig:
                    signal.pidfd_send_signal(fd, sig)
        except OSError:
            pass
        finally:
            os.close(fd)
    return found


_which_cache: dict[tuple[str, bytes | None], str] = {}


def _which(name: str, env: dict) -> str:
    """Resolve a command name through the step's PATH, as execvp would; cached."""
    path = env.get(b"PATH")
    key = (name, path)
    found = _which_cache.get(key)
    if found is None:
        dirs = os.fsdecode(path) if path is not None else os.defpath
        for d in dirs.split(os.pathsep):
            candidate = os.path.join(d or ".", name)
            if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                found = candidate
                break
        else:
            raise SpawnError(f"cannot start `{name}`: command not found in PATH")
        _which_cache[key] = found
    return found


def describe_exit(status: int) -> tuple[int, str]:
    """(exit code, error text) for a wait status: a signal death gives 128+N and
    "killed by SIGX", as shells do; a clean exit gives (0, "")."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return 128 + sig, f"killed by {name}"
    code = os.waitstatus_to_exitcode(status)
    return code, (f"exit status {code}" if code else "")
