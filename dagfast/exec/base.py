"""The executor interface: what runs the steps' processes, as one base class.

The engine drives an executor and never knows which one (ninja's CommandRunner,
httpx's BaseTransport). A run's executor comes from a factory, called as
`factory(loop, limit, on_exits)`; the factory also says how many steps the system lets
run at once (`room`). Ends come back as `on_exits([(token, end), ...])` on the loop,
where `end` is a wait status as `os.waitpid` gives it, or an `Outcome` when the
executor can say more than a wait status can (a start that failed, a lost worker).

Executors: `local.ProcessManager` (local processes, the default), `dask.DaskExecutor`
(a Dask cluster; `pip install 'dagfast[dask]'`) and `dry.DryRun` (every step exits 0 at
once: `dagfast dry`, tests and benchmarks).
"""

from __future__ import annotations

import os
import signal


__all__ = ["Executor", "IDENTITY", "Outcome", "describe", "describe_exit", "identity"]

UNLIMITED = 1 << 62


class Outcome:
    """A step's end that is not a process's wait status: the exit code to record (None:
    no process was seen to end) and the error text. `lost`: why the step's output could
    not all be stored (the step then fails, whatever its exit code; `describe` names
    the step in its error)."""

    __slots__ = ("code", "error", "lost")

    def __init__(self, code: int | None, error: str, lost: str = "") -> None:
        self.code = code
        self.error = error
        self.lost = lost

    def __repr__(self) -> str:
        return f"Outcome({self.code!r}, {self.error!r})"


class Executor:
    """Runs at most `limit` steps at once (0: unlimited; dagfast enforces it here,
    whatever executes the steps) and reports their ends to `on_exits`.

    Subclasses implement `start`, the signals and `running_count`; the optional hooks
    (`open`, `aclose`, `note_descendants`) do nothing by default."""

    # Whether the steps' output passes through dagfast as they print it (through pipes
    # into the output store's pump), where secrets can be masked before anything is
    # written: a run with secrets needs it.
    pipes_output = False
    # The run's output store (exec._spawn.Store; None in a dry run): a step's stdout
    # and stderr must be in it, under the step's token, when its end is reported.
    output = None

    def __init__(self, loop, limit: int, on_exits) -> None:
        self.loop = loop
        self.limit = limit if limit > 0 else 0
        self.on_exits = on_exits
        self.held = 0  # slots held by steps that are between processes (see hold)
        self.run_id = ""  # the run's id, set by the engine (see signal_escaped)

    @classmethod
    def room(cls) -> tuple[int, str]:
        """(how many steps the system lets run at once, why). No cap by default."""
        return UNLIMITED, ""

    @classmethod
    def guard_run(cls, run_id: str):
        """Before a top-level run starts (no executor made yet): something that ends the
        run's steps if this process dies, with a `stand_down()` for when the run has
        ended; None when the executor needs none (its steps are not this machine's)."""
        return None

    # Queries -------------------------------------------------------------------------

    @property
    def running_count(self) -> int:
        """How many started steps have not been reported ended."""
        raise NotImplementedError

    def free_slots(self) -> int:
        """How many more steps may start now (a large number when unlimited)."""
        if not self.limit:
            return 1 << 30
        return self.limit - self.running_count - self.held

    def live_groups(self) -> int:
        """Truthy while any process this executor started (background children of
        ended steps too, and those that left their group) is alive."""
        return 0

    # Events --------------------------------------------------------------------------

    def hold(self) -> None:
        """Take a slot for a step that has no process of its own now (its preconditions
        are being checked, or it waits to retry): it still counts against the limit."""
        self.held += 1

    def release(self) -> None:
        """Give back a slot taken with `hold`."""
        self.held -= 1

    def cost(self, token: int) -> tuple[float, int] | None:
        """(CPU seconds, peak RSS in KiB) of step `token`'s process that just ended,
        once (None when this executor cannot tell)."""
        return None

    def use_output(self, store) -> None:
        """The run's output store, before the first start."""
        self.output = store

    def start(self, token: int, argv, env: dict, cwd: str) -> int:
        """Start step `token` (env: bytes -> bytes); its stdout and stderr must be in
        the output store when its end is reported; returns an id for messages only.
        Raises SpawnError."""
        raise NotImplementedError

    def signal(self, token: int, sig: int) -> None:
        """Send `sig` to the process group of running step `token`."""
        raise NotImplementedError

    def signal_running(self, sig: int) -> None:
        """... to the process group of every running step."""
        raise NotImplementedError

    def signal_all_groups(self, sig: int) -> None:
        """... to every group ever started (background children of ended steps too),
        and to this run's processes that left them."""
        raise NotImplementedError

    def signal_escaped(self, sig: int, env: dict | None = None) -> int:
        """... to this run's processes that left their groups only (`setsid`); with
        `env` (a process's environment), to those that carry its identity (see
        `identity`: one step's, or one fan-out item's); returns how many there were."""
        return 0

    def note_descendants(self) -> None:
        """Called as a stop begins, before any signal: remember the processes that left
        a step's group while their parents still lead back to it."""

    async def open(self, dag) -> str:
        """Before the run's first step (on the loop): connect, if the executor needs
        to; returns a notice for the user, or ""."""
        return ""

    def close(self) -> None:
        """Stop watching (synchronous, in the engine's `finally`)."""

    async def aclose(self) -> None:
        """After `close`, on the loop: give back what `open` took."""


def describe(end, name: str = "the step") -> tuple[int | None, str]:
    """(exit code, error text) of an end reported through `on_exits`, for step `name`."""
    if end.__class__ is Outcome:
        if end.lost:
            after = f" ({end.error})" if end.error else ""
            return end.code, f"{end.lost} while writing the log of {name}{after}"
        return end.code, end.error
    return describe_exit(end)


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


# What says which step (and which item of a fan-out) a process belongs to: every step's
# process inherits these, and so do its children, also those that leave its group.
IDENTITY = (b"DAG_RUN_ID", b"DAG_RUN_STEP_NAME", b"ITEM")


def identity(env: dict) -> list[bytes]:
    """`NAME=value` of `env`'s identity variables: what a process started with `env`,
    and each of its children, carries. A fan-out item's ITEM is unique in its step (its
    key is, and a key is made from the value when none is given)."""
    return [k + b"=" + env[k] for k in IDENTITY if k in env]
