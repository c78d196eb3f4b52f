"""The normalised, frozen, integer-indexed DAG that the engine runs.

`load.py` is the only producer. Steps are ids `0..n-1` in file order; every field is
already resolved (absolute directories, final argv, evaluated environment), so the
engine never parses anything.
"""

from __future__ import annotations

from array import array

import msgspec

__all__ = ["Dag", "Step"]


class Step(msgspec.Struct, frozen=True):
    """One step, ready to start: `argv` is exec'd as is; `script`, when set, is first
    written to a file in the run directory whose path is appended to `argv`."""

    name: str
    argv: tuple[str, ...]
    depends: tuple[int, ...] = ()
    id: str | None = None
    description: str = ""
    dir: str = ""
    env: tuple[tuple[str, str], ...] = ()
    script: str | None = None


class Dag(msgspec.Struct, frozen=True):
    """A whole DAG: its steps in file order and the settings the engine honours."""

    name: str
    steps: tuple[Step, ...]
    path: str = ""
    dir: str = ""
    description: str = ""
    env: tuple[tuple[str, str], ...] = ()
    max_active_steps: int = 0
    type: str = "graph"

    def dependency_arrays(self) -> tuple[array, array]:
        """The dependencies in CSR form: step i waits for `idx[ptr[i]:ptr[i+1]]`."""
        ptr = array("i", [0])
        idx = array("i")
        for step in self.steps:
            idx.extend(step.depends)
            ptr.append(len(idx))
        return ptr, idx

    def index(self, name: str) -> int:
        """The id of the step called `name` (KeyError when there is none)."""
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        raise KeyError(name)
