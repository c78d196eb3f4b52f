"""Ends a run's steps when the process running it dies without ending them.

`start(run_id)` forks a small process (in C, before the spawn threads exist; see
guardian.h) that waits on a pipe only the engine can write. If the engine dies (kill -9,
the OOM killer, a crash), the kernel closes the pipe and the guardian SIGKILLs, within
milliseconds, every process whose environment carries the run's `DAG_RUN_ID` (a
sub-DAG's `<run id>.<...>` too), with its process group. `Guardian.stand_down()`, when
the run has ended, sends it away without touching anything. Nothing runs per step.
"""

from __future__ import annotations

import os

from dagfast.exec import _spawn

__all__ = ["Guardian", "start"]


class Guardian:
    """The guardian of one run; `stand_down` once the run has ended."""

    __slots__ = ("pid", "_fd", "error")

    def __init__(self, pid: int, fd: int, error: str = "") -> None:
        self.pid = pid  # 0: none could start, and `error` says why
        self._fd = fd
        self.error = error

    def stand_down(self) -> None:
        """Tell the guardian the run ended (it exits, touching nothing) and reap it."""
        if self._fd < 0:
            return
        try:
            os.write(self._fd, b"x")
        except OSError:
            pass  # it is gone already (killed by hand): reaped below all the same
        os.close(self._fd)
        self._fd = -1
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # someone reaped it for us (a SIGCHLD handler of the caller's)


def start(run_id: str) -> Guardian:
    """Fork the guardian of run `run_id`. A guardian that cannot start (no process left)
    leaves the run unguarded rather than failing it: `Guardian.error` says why."""
    try:
        pid, fd = _spawn.guard(os.fsencode(run_id))
    except (OSError, ValueError) as exc:
        return Guardian(0, -1, str(exc))
    return Guardian(pid, fd)
