"""Starts, watches and kills step processes; the one place `maxActiveSteps` is enforced.

Why this shape (measured on 2 cores, `true` 16 at a time; see bench/ and
docs/performance.md): a step starts on the loop's thread with clone(CLONE_VM) without
waiting for its exec (`_spawn.Pool`, exec/vmclone.h): the kernel makes the child at
once, in the engine's memory, and the loop goes on while the child sets up its
descriptors and execs. glibc's `posix_spawn` would keep the caller waiting for that
(vfork), so where clone cannot be used (another architecture, a kernel before 5.9, or
`DAGFAST_SPAWN=posix`) the pool's C threads run it without the GIL, several windows at
once, and a start refused with EAGAIN always waits for room on one of them. Each
child's pidfd is in one private epoll set, with the step's token in the event data;
that set is one reader on the uvloop loop, so a burst of exits costs one wake-up, and
reaping is one native call (`wait4` on the pid the pool holds, no pid table in Python).

A step's stdout and stderr are two pipes that the pool makes and hands to the
run's output store (`_spawn.Store`, outstore.h), whose pump thread stores what they
carry; reaping drains a step's pipes before its end is reported, so everything it
printed is stored by then.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import signal
import time
from collections.abc import Callable

from dagfast.errors import SpawnError
from dagfast.exec import _spawn, direct, guardian
from dagfast.exec.base import Executor, Outcome, describe_exit, identity

__all__ = ["ProcessManager", "end_leftovers", "killpg", "leftovers", "system_room"]

# A running step holds its pidfd and the read ends of its two pipes here.
STEP_DESCRIPTORS = 3

# Spawning threads: one is enough when one step runs at a time (a chain), and past
# four the windows they overlap no longer add up on a small machine.
_MAX_THREADS = 4


class ProcessManager(Executor):
    """Local processes: runs at most `limit` at once (0: unlimited), each in its own
    process group, and calls `on_exits([(token, end), ...])` on the loop as they end,
    where `end` is a wait status, or an Outcome for a process that never started."""

    pipes_output = True

    def __init__(self, loop, limit: int, on_exits: Callable[[list], None]) -> None:
        super().__init__(loop, limit, on_exits)
        self._epoll = select.epoll()
        threads = min(self.limit, _MAX_THREADS) if self.limit else _MAX_THREADS
        try:
            self._pool = _spawn.Pool(threads, self._epoll.fileno(), vmclone=_vmclone())
        except OSError:
            self._epoll.close()
            raise
        self._count = 0  # started (queued or running) and not yet reported ended
        self._env: dict = {}  # the last step's environment: its DAG_RUN_ID finds escapees
        self._descendants: set[tuple[int, int]] = set()  # see note_descendants
        self._direct = direct.enabled()  # plain commands skip the shell (exec/direct.py)
        loop.add_reader(self._epoll.fileno(), self._on_readable)

    @classmethod
    def room(cls) -> tuple[int, str]:
        """What the system allows: each running step holds three descriptors here (its
        pidfd and two pipes), and is one of the user's processes."""
        room, why = system_room()
        if why.startswith("the open-file limit"):
            room //= STEP_DESCRIPTORS
            why += f", and a running step holds {STEP_DESCRIPTORS} descriptors"
        return room, why

    def cost(self, token: int) -> tuple[float, int] | None:
        """What step `token`'s process that just ended cost (wait4's rusage), once."""
        return self._pool.cost(token)

    def use_output(self, store) -> None:
        """Steps' stdout and stderr go into `store` through pipes from now on."""
        self.output = store
        self._pool.use_store(store)

    @classmethod
    def guard_run(cls, run_id: str):
        """A guardian process that ends the run's steps if this process dies (forked
        now, before any spawn thread exists); `stand_down()` when the run has ended."""
        return guardian.start(run_id)

    # Queries -------------------------------------------------------------------------

    @property
    def running_count(self) -> int:
        """How many processes were started and have not been reported ended."""
        return self._count

    def free_slots(self) -> int:
        """How many more processes may start now (the hot path: no property call)."""
        if not self.limit:
            return 1 << 30
        return self.limit - self._count - self.held

    # Events --------------------------------------------------------------------------

    def start(self, token: int, argv, env: dict, cwd: str) -> int:
        """Start `argv` (environment: a bytes -> bytes dict) in `cwd` with stdin from
        /dev/null and stdout/stderr into the output store (under `token`, in the
        execution the store began for it). The start completes after this returns (in
        the child before its exec, or on a spawn thread): a failure there (a missing
        working directory is made first, as Dagu does; EAGAIN waits for room) comes
        back through `on_exits` as an Outcome.
        Raises SpawnError for what can be told at once. Returns 0 (no pid: the step is
        signalled by its token)."""
        plain = direct.plain_start(argv, env, cwd, _which) if self._direct else None
        try:
            if plain is not None:
                path, argv = plain
            else:
                path = argv[0] if "/" in argv[0] else _which(argv[0], env)
            # With nothing else in flight there is nothing to overlap: even where a
            # start waits for the exec (posix_spawn), make it here and spare a chain
            # of steps a thread hand-off each.
            self._pool.submit(token, path, argv, env, cwd, not self._count)
        except ValueError as exc:
            raise SpawnError(f"cannot start `{argv[0]}`: {exc}") from None
        self._env = env
        self._count += 1
        return 0

    def signal(self, token: int, sig: int) -> None:
        """Send `sig` to the process group of step `token` (if it has a process; one
        still being started gets it right after its start)."""
        self._pool.signal(token, sig)

    def signal_running(self, sig: int) -> None:
        """Send `sig` to the process group of every running step."""
        self._pool.signal_running(sig)

    def signal_all_groups(self, sig: int) -> None:
        """Send `sig` to every process group this manager ever started, and to every
        process that left its group (`setsid`) but still carries this run's DAG_RUN_ID."""
        self._pool.signal_groups(sig)
        self.signal_escaped(sig)

    def signal_escaped(self, sig: int, env: dict | None = None) -> int:
        """Send `sig` to the processes outside our groups whose environment says they
        belong to this run, and to those noted by `note_descendants`; with `env`, only
        to those that carry the identity of a process started with `env` (one step's,
        or one fan-out item's). Return how many there were."""
        if env is not None:
            tags = identity(env)
            if not tags:
                return 0
            return _signal_tagged(tags, sig, self._pool.groups())
        # The run's own id (a fan-out item's environment says `<run id>.<step>.<k>`).
        run_id = self.run_id.encode() if self.run_id else self._env.get(b"DAG_RUN_ID")
        if run_id is None:
            return 0
        return _signal_tagged([b"DAG_RUN_ID=" + run_id], sig, self._pool.groups(),
                              self._descendants)

    def note_descendants(self) -> None:
        """Remember the processes outside our groups whose parents lead back to one of
        them. Called as a stop begins, before any group is signalled: once a parent is
        gone, its children are re-parented and the chain to the step is lost."""
        self._descendants |= _descendants(self._pool.groups())

    def live_groups(self) -> int:
        """How many started process groups still have live members (prunes the dead
        ones), plus the escaped processes of this run that are still alive. A group of
        zombies only is gone: its members wait for a reaper that may never come (a
        subreaper that does not reap, dagfast as PID 1), not for us."""
        groups = self._pool.signal_groups(0)
        if groups:
            live = {pgrp for _, pgrp, _ in _proc_table().values()}  # zombies left out
            groups = sum(1 for g in self._pool.groups() if g in live)
        return groups + self.signal_escaped(0)

    def close(self) -> None:
        """Stop watching and stop the spawn pool; processes still running are not
        waited for."""
        self.loop.remove_reader(self._epoll.fileno())
        self._pool.close()
        self._epoll.close()

    # Internals -----------------------------------------------------------------------

    def _on_readable(self) -> None:
        ends = self._pool.reap()
        if not ends:
            return
        self._count -= len(ends)
        for k, (token, end) in enumerate(ends):
            if end.__class__ is tuple:
                if len(end) == 2:  # it ended, but its output could not all be stored
                    ends[k] = (token, _lost_output(*end))
                else:  # a start that failed after `start` returned
                    ends[k] = (token, _start_failure(*end))
        self.on_exits(ends)


def _vmclone() -> bool:
    """Whether steps may start without waiting for their exec (vmclone.h);
    `DAGFAST_SPAWN=posix` keeps glibc's posix_spawn on the pool's threads."""
    return os.environ.get("DAGFAST_SPAWN", "") != "posix"


def _start_failure(err: int, started: bool, path: bytes, cwd: bytes):
    """The Outcome of a start that failed after `start` returned (in the pool, or in
    the child before its exec), in the user's terms."""
    name = os.fsdecode(path)
    why = os.strerror(err)
    if started:
        text = f"cannot watch `{name}`: {why}"  # out of descriptors: it was killed
    elif not os.path.isdir(cwd):
        text = f"working directory `{os.fsdecode(cwd)}`: {why}"
    else:
        text = f"cannot start `{name}`: {why}"
    return Outcome(127, text)


_NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def _lost_output(status: int, err: int) -> Outcome:
    """A step that ended but whose output could not all be stored (a full disk): it
    fails, whatever its exit status; the engine names the step (Outcome.lost)."""
    code, error = describe_exit(status)
    why = _NO_SPACE.get(err) or os.strerror(err).lower()
    return Outcome(code or 1, error, lost=why)


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


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, start time) of every process but ours and
    zombies (they are dead: nothing to signal or wait for)."""
    me = os.getpid()
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return {}
    table = {}
    for pid in pids:
        if pid != me:
            stat = _stat(pid)
            if stat is not None:
                table[pid] = stat
    return table


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, start time) of `pid` from /proc, or None (also for a
    zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        rest = data[data.rindex(b")") + 2:].split()
        if rest[0] == b"Z":
            return None
        return int(rest[1]), int(rest[2]), int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def _descendants(groups: list[int]) -> set[tuple[int, int]]:
    """(pid, start time) of the processes outside `groups` whose chain of parents
    reaches a member of one of them: a step's children that left its group."""
    skip = set(groups)
    if not skip:
        return set()
    table = _proc_table()
    ours: set[int] = set()
    strangers: set[int] = set()
    for pid in table:
        chain, p, hit = [], pid, False
        while p in table and p not in strangers:
            if p in ours or table[p][1] in skip:
                hit = True
                break
            chain.append(p)
            p = table[p][0]
            if len(chain) > len(table):  # a cycle: /proc changed under us
                break
        (ours if hit else strangers).update(chain)
    return {(pid, table[pid][2]) for pid in ours if table[pid][1] not in skip}


def _signal_tagged(
    tags: list[bytes], sig: int, groups: list[int], known: set[tuple[int, int]] = frozenset()
) -> int:
    """Send `sig` to each of the user's processes outside `groups` that belong to the
    run: those in `known` (pid, start time), and those whose environment holds every one
    of `tags` (`NAME=value`); how many were found.

    A step's process that calls `setsid` leaves the group a stop signals. While its
    parent lives, the chain of parents still leads to the step (`_descendants`, noted as
    a stop begins); once that parent is gone nothing links it to the run but the
    environment it inherited. Read from /proc only when a run stops or a step times out.
    A pidfd pins each process, and its start time is checked again, so a reused pid is
    never hit.
    """
    uid, found = os.getuid(), 0
    skip = set(groups)
    for pid, (_, pgrp, started) in _proc_table().items():
        if pgrp in skip:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            again = _stat(pid)
            if again is None or again[2] != started:
                continue  # it ended, and the pid may be someone else's now
            hit = (pid, started) in known
            if not hit:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = b"\0" + f.read() + b"\0"
                hit = all(b"\0" + t + b"\0" in env for t in tags)
            if hit:
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
        if len(_which_cache) >= 4096:  # a few programs in any real DAG: bounded anyway
            _which_cache.clear()
        _which_cache[key] = found
    return found


# Leftovers of a dead engine ---------------------------------------------------------

LEFTOVER_GRACE_SEC = 5.0  # between SIGTERM and SIGKILL for leftovers of a dead run


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


def end_leftovers(run_id: str, out) -> None:
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
