"""The executor of `dagfast dry` (and of tests and benchmarks): every step started
exits 0 on the next turn of the loop, and nothing is run."""

from __future__ import annotations

from dagfast.exec.base import Executor

__all__ = ["DryRun"]


class DryRun(Executor):
    """Steps "run" in rounds: everything started in one turn of the loop ends together
    in the next, as if every step took the same time."""

    def __init__(self, loop, limit: int, on_exits) -> None:
        super().__init__(loop, limit, on_exits)
        self._pending: list = []
        self._count = 0

    @property
    def running_count(self) -> int:
        return self._count

    def start(self, token, argv, env, cwd) -> int:
        if not self._pending:
            self.loop.call_soon(self._flush)
        self._pending.append((token, 0))
        self._count += 1
        return 0

    def _flush(self) -> None:
        exits, self._pending = self._pending, []
        self._count -= len(exits)
        self.on_exits(exits)

    def signal(self, token, sig) -> None:
        """Nothing runs: nothing to signal."""

    def signal_running(self, sig) -> None:
        """Nothing runs: nothing to signal."""

    def signal_all_groups(self, sig) -> None:
        """Nothing runs: nothing to signal."""
