"""Test doubles that implement the real interfaces (used by tests/ and bench/)."""

from __future__ import annotations

from dagfast.exec.base import Executor
from dagfast.exec.dry import DryRun as InstantExits

__all__ = ["InstantExits", "Slots"]


class Slots(Executor):
    """What every executor double shares: the base class's slot count (maxActiveSteps,
    with steps held between processes), a plain `running_count`, and signals that do
    nothing here."""

    running_count = 0  # a plain attribute (the base class asks for a property)

    def signal(self, token, sig) -> None:
        """Nothing runs: nothing to signal."""

    def signal_running(self, sig) -> None:
        """Nothing runs: nothing to signal."""

    def signal_all_groups(self, sig) -> None:
        """Nothing runs: nothing to signal."""
