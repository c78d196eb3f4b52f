"""The one place that picks a scheduler: the compiled one, or its twin when asked.

DAGFAST_SCHED=compiled (or unset) -> `dagfast._sched`; DAGFAST_SCHED=ref -> the
pure-Python `dagfast._sched_ref`. A missing compiled module is an error, never a
silent fallback: the twin is much slower and must only run when chosen.
"""

import os
from importlib import import_module

from dagfast.errors import RunError, UsageError

__all__ = [
    "ABORT",
    "CANCELLED",
    "DONE",
    "IMPLEMENTATION",
    "PASS",
    "PASS_SKIPPED",
    "READY",
    "RUNNING",
    "SKIP",
    "Scheduler",
    "WAITING",
]

IMPLEMENTATION = os.environ.get("DAGFAST_SCHED") or "compiled"

if IMPLEMENTATION == "ref":
    _impl = import_module("dagfast._sched_ref")
elif IMPLEMENTATION == "compiled":
    try:
        _impl = import_module("dagfast._sched")
    except ImportError as exc:
        raise RunError(
            "dagfast's compiled scheduler is missing (dagfast._sched): "
            "reinstall with `pip install .`"
        ) from exc
else:
    raise UsageError(
        f"DAGFAST_SCHED must be `compiled` (the default) or `ref`, not {IMPLEMENTATION!r}"
    )

# Both implementations export the same names; re-export the chosen one's.
ABORT, CANCELLED, DONE, PASS, PASS_SKIPPED = (
    _impl.ABORT, _impl.CANCELLED, _impl.DONE, _impl.PASS, _impl.PASS_SKIPPED)
READY, RUNNING, SKIP, WAITING, Scheduler = (
    _impl.READY, _impl.RUNNING, _impl.SKIP, _impl.WAITING, _impl.Scheduler)
