"""The pure-Python twin of `dagfast._sched`: the same API and the same results, readable.

It exists to be read and to be tested against: every contract test and a property
test run both, and any difference is a bug. `dagfast.sched` picks it only when
DAGFAST_SCHED=ref. See `_sched.pyx` for the outcome rules. The algorithm is the same
(dependency counters, dependents lists, breadth-first cancel cascade); only the ready
set differs: here a heapq heap whose entries go stale when a READY step finishes early,
there a bitset.
"""

from __future__ import annotations

import heapq
from operator import index

PASS = 0
ABORT = 1
SKIP = 2
PASS_SKIPPED = 1
WAITING = 0
READY = 1
RUNNING = 2
DONE = 3
CANCELLED = 4

_INT_MAX = 2**31 - 1
_INTS = "a buffer of C ints such as array('i')"
_BYTES = "a buffer of unsigned bytes such as array('B')"


def _c_buffer(buf: object, name: str, fmt: str, what: str) -> memoryview:
    """A 1-d contiguous memoryview of `buf` with item format `fmt`, or a TypeError."""
    try:
        view = memoryview(buf)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be {what}, not {type(buf).__name__}") from None
    if view.ndim != 1 or view.format != fmt or not view.c_contiguous:
        raise TypeError(f"{name} must be {what}, not a buffer of format {view.format!r}")
    return view


def _bad_step(step: object, n: int) -> str:
    """The error text for an id that names no step."""
    if n == 0:
        return f"step {step!r} is not a step id (there are no steps)"
    return f"step {step!r} is not a step id (0..{n - 1})"


class Scheduler:
    """The ready queue and dependency counters of one run over steps 0..n-1.

    Step i waits for dep_idx[dep_ptr[i]:dep_ptr[i+1]]; flags[i] may set PASS_SKIPPED.
    """

    __slots__ = ("_n", "_ready", "_running", "_done", "_state", "_flags", "_pending",
                 "_dependents", "_heap")

    def __init__(self, n: int, dep_ptr: object, dep_idx: object, flags: object = None) -> None:
        count = index(n)
        if count < 0:
            raise ValueError(f"n must be >= 0, not {n!r}")
        if count > _INT_MAX:
            raise ValueError(f"n = {n!r} is more steps than supported ({_INT_MAX})")
        ptr = _c_buffer(dep_ptr, "dep_ptr", "i", _INTS).tolist()
        idx = _c_buffer(dep_idx, "dep_idx", "i", _INTS).tolist()
        flag_bytes = None if flags is None else _c_buffer(flags, "flags", "B", _BYTES).tolist()
        if len(ptr) != count + 1:
            raise ValueError(f"dep_ptr must hold n + 1 = {count + 1} offsets, not {len(ptr)}")
        if flag_bytes is not None and len(flag_bytes) != count:
            raise ValueError(f"flags must hold n = {count} bytes, not {len(flag_bytes)}")
        if ptr[0] != 0:
            raise ValueError(f"dep_ptr[0] must be 0, not {ptr[0]}")
        for i in range(count):
            if ptr[i + 1] < ptr[i]:
                raise ValueError(
                    f"dep_ptr must not decrease, but dep_ptr[{i + 1}] = {ptr[i + 1]}"
                    f" < dep_ptr[{i}] = {ptr[i]}"
                )
        if ptr[count] != len(idx):
            raise ValueError(f"dep_ptr[{count}] = {ptr[count]} must equal len(dep_idx) = {len(idx)}")
        for i in range(count):
            for dep in idx[ptr[i]:ptr[i + 1]]:
                if not 0 <= dep < count:
                    raise ValueError(
                        f"step {i} depends on {dep}, which is not a step id (0..{count - 1})"
                    )
                if dep == i:
                    raise ValueError(f"step {i} depends on itself")
        if flag_bytes is not None:
            for i, bits in enumerate(flag_bytes):
                if bits & ~PASS_SKIPPED:
                    raise ValueError(
                        f"flags[{i}] = {bits} sets unknown bits"
                        f" (only PASS_SKIPPED = {PASS_SKIPPED} is defined)"
                    )

        self._n = count
        self._flags = flag_bytes or [0] * count
        self._state = [WAITING] * count
        # Duplicated deps count once; visiting steps in order keeps dependents ascending.
        self._pending = [0] * count
        self._dependents: list[list[int]] = [[] for _ in range(count)]
        for i in range(count):
            deps = set(idx[ptr[i]:ptr[i + 1]])
            self._pending[i] = len(deps)
            for dep in deps:
                self._dependents[dep].append(i)
        self._heap = [i for i in range(count) if self._pending[i] == 0]  # sorted: a heap
        for i in self._heap:
            self._state[i] = READY
        self._ready = len(self._heap)
        self._running = 0
        self._done = 0

    @property
    def n(self) -> int:
        """How many steps there are."""
        return self._n

    @property
    def ready_count(self) -> int:
        """How many steps are READY."""
        return self._ready

    @property
    def running_count(self) -> int:
        """How many steps are RUNNING."""
        return self._running

    @property
    def done_count(self) -> int:
        """How many steps are DONE or CANCELLED."""
        return self._done

    def state(self, step: int) -> int:
        """The state of `step`: WAITING, READY, RUNNING, DONE or CANCELLED."""
        s = index(step)
        if not 0 <= s < self._n:
            raise ValueError(_bad_step(step, self._n))
        return self._state[s]

    def finished(self) -> bool:
        """Whether every step is DONE or CANCELLED."""
        return self._done == self._n

    def pop(self, limit: int) -> list[int]:
        """Up to `limit` READY steps (all when negative), lowest id first; they become RUNNING."""
        k = index(limit)
        if k < 0 or k > self._ready:
            k = self._ready
        popped: list[int] = []
        while len(popped) < k:
            step = heapq.heappop(self._heap)
            if self._state[step] != READY:
                continue  # it left READY (finished early or cancelled) after being pushed
            self._state[step] = RUNNING
            popped.append(step)
        self._ready -= k
        self._running += k
        return popped

    def finish(self, step: int, outcome: int) -> list[int]:
        """Marks a WAITING, READY or RUNNING step DONE with PASS, ABORT or SKIP.

        Returns the ids this cancelled, ascending.
        """
        s = index(step)
        if not 0 <= s < self._n:
            raise ValueError(_bad_step(step, self._n))
        o = index(outcome)
        if o not in (PASS, ABORT, SKIP):
            raise ValueError(f"outcome must be PASS (0), ABORT (1) or SKIP (2), not {outcome!r}")
        if self._state[s] == DONE:
            raise ValueError(f"step {s} is already done")
        if self._state[s] == CANCELLED:
            raise ValueError(f"step {s} was cancelled, so it cannot finish")

        self._leave(s)
        self._state[s] = DONE
        self._done += 1
        if o == PASS or (o == SKIP and self._flags[s] & PASS_SKIPPED):
            self._release(s)
            return []
        # Breadth-first over an explicit worklist: long chains must not recurse.
        skip = o == SKIP
        cancelled: list[int] = []
        self._cancel_dependents(s, cancelled)
        head = 0
        while head < len(cancelled):
            dep = cancelled[head]
            head += 1
            if skip and self._flags[dep] & PASS_SKIPPED:
                self._release(dep)
            else:
                self._cancel_dependents(dep, cancelled)
        self._done += len(cancelled)
        cancelled.sort()
        return cancelled

    def _leave(self, step: int) -> None:
        """Takes a step out of the ready/running counts before it becomes DONE or CANCELLED."""
        if self._state[step] == READY:
            self._ready -= 1  # its heap entry goes stale
        elif self._state[step] == RUNNING:
            self._running -= 1

    def _release(self, step: int) -> None:
        """Tells the dependents of `step` that it passed; those left with none pending are READY."""
        for dep in self._dependents[step]:
            self._pending[dep] -= 1
            if self._pending[dep] == 0 and self._state[dep] == WAITING:
                self._state[dep] = READY
                self._ready += 1
                heapq.heappush(self._heap, dep)

    def _cancel_dependents(self, step: int, cancelled: list[int]) -> None:
        """Cancels the unfinished dependents of `step`, appending them to `cancelled`."""
        for dep in self._dependents[step]:
            if self._state[dep] >= DONE:
                continue
            self._leave(dep)
            self._state[dep] = CANCELLED
            cancelled.append(dep)

    def __repr__(self) -> str:
        return (
            f"<Scheduler n={self._n} ready={self._ready} running={self._running}"
            f" done={self._done}>"
        )
