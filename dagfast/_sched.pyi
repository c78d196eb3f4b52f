"""Typed stubs of the compiled scheduler; `dagfast._sched_ref` has the same API."""

from typing import Final, final

from typing_extensions import Buffer

PASS: Final = 0
ABORT: Final = 1
SKIP: Final = 2
PASS_SKIPPED: Final = 1
WAITING: Final = 0
READY: Final = 1
RUNNING: Final = 2
DONE: Final = 3
CANCELLED: Final = 4
DEBUG: Final[bool]
"""True in DAGFAST_DEBUG=1 builds, the only ones with `Scheduler.debug_counters()`."""

@final
class Scheduler:
    """The ready queue and dependency counters of one run over steps 0..n-1.

    Step i waits for dep_idx[dep_ptr[i]:dep_ptr[i+1]]; flags[i] may set PASS_SKIPPED.
    """

    def __init__(
        self, n: int, dep_ptr: Buffer, dep_idx: Buffer, flags: Buffer | None = None
    ) -> None: ...
    @property
    def n(self) -> int:
        """How many steps there are."""
    @property
    def ready_count(self) -> int:
        """How many steps are READY."""
    @property
    def running_count(self) -> int:
        """How many steps are RUNNING."""
    @property
    def done_count(self) -> int:
        """How many steps are DONE or CANCELLED."""
    def state(self, step: int) -> int:
        """The state of `step`: WAITING, READY, RUNNING, DONE or CANCELLED."""
    def finished(self) -> bool:
        """Whether every step is DONE or CANCELLED."""
    def pop(self, limit: int) -> list[int]:
        """Up to `limit` READY steps (all when negative), lowest id first; they become RUNNING."""
    def finish(self, step: int, outcome: int) -> list[int]:
        """Marks a WAITING, READY or RUNNING step DONE with PASS, ABORT or SKIP.

        Returns the ids this cancelled, ascending.
        """
    def debug_counters(self) -> dict[str, int]:
        """Hot-path counters since construction; exists only in DAGFAST_DEBUG=1 builds."""
