"""Persisted status codes. Their numbers and names never change meaning (Dagu's codes)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["RunStatus", "StepStatus"]


class StepStatus(IntEnum):
    """What happened to one step."""

    NOT_STARTED = 0
    RUNNING = 1
    FAILED = 2
    ABORTED = 3
    SUCCEEDED = 4
    SKIPPED = 5
    PARTIALLY_SUCCEEDED = 6

    @property
    def label(self) -> str:
        """The lowercase name used in output and records (`not_started`, ...)."""
        return self.name.lower()


class RunStatus(IntEnum):
    """What happened to a whole run."""

    NOT_STARTED = 0
    RUNNING = 1
    FAILED = 2
    ABORTED = 3
    SUCCEEDED = 4
    QUEUED = 5
    PARTIALLY_SUCCEEDED = 6

    @property
    def label(self) -> str:
        """The lowercase name used in output and records (`succeeded`, ...)."""
        return self.name.lower()
