"""Test doubles that implement the real interfaces (used by tests/ and bench/)."""

from __future__ import annotations

__all__ = ["InstantExits", "Slots"]


class Slots:
    """What every executor double shares: the slot count (maxActiveSteps, with steps
    held between processes) and the signal hooks, which do nothing here."""

    def __init__(self, loop, limit, on_exits):
        self._loop = loop
        self._limit = limit or (1 << 30)
        self._on_exits = on_exits
        self.running_count = 0
        self._held = 0

    def free_slots(self) -> int:
        return self._limit - self.running_count - self._held

    def hold(self) -> None:
        self._held += 1

    def release(self) -> None:
        self._held -= 1

    def signal(self, token, sig) -> None: ...
    def signal_running(self, sig) -> None: ...
    def signal_all_groups(self, sig) -> None: ...
    def signal_escaped(self, sig, step=None) -> int: return 0
    def live_groups(self) -> int: return 0
    def close(self) -> None: ...


class InstantExits(Slots):
    """An executor double (the interface of dagfast/exec/base.py): every started step
    exits 0 on the next loop turn."""

    def __init__(self, loop, limit, on_exits):
        super().__init__(loop, limit, on_exits)
        self._pending: list = []

    def start(self, token, argv, env, cwd, stdout, stderr) -> int:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append((token, 0))
        self.running_count += 1
        return 0

    def _flush(self) -> None:
        exits, self._pending = self._pending, []
        self.running_count -= len(exits)
        self._on_exits(exits)
