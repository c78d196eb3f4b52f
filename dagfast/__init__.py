"""dagfast: a fast local engine for DAGs of shell steps, written in Dagu-style YAML.

The public API, re-exported here only. Attributes load on first use, so that
`dagfast validate` never pays for the event loop and `dagfast run` only for what it uses.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "Dag",
    "DagfastError",
    "LoadError",
    "MissingExtra",
    "Problem",
    "Reporter",
    "RunError",
    "RunResult",
    "RunStatus",
    "SchedulerBug",
    "Step",
    "StepRecord",
    "StepStatus",
    "UsageError",
    "__version__",
    "load",
    "run",
]

_WHERE = {
    "Dag": "model",
    "Step": "model",
    "DagfastError": "errors",
    "LoadError": "errors",
    "MissingExtra": "errors",
    "Problem": "errors",
    "RunError": "errors",
    "SchedulerBug": "errors",
    "UsageError": "errors",
    "RunResult": "runtime.state",
    "StepRecord": "records.store",
    "Reporter": "report.base",
    "RunStatus": "status",
    "StepStatus": "status",
    "run": "runtime.session",
    # The function, not the subpackage: read-only commands (status, logs, history,
    # version) never load PyYAML.
    "load": "loader",
}

def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dagfast' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
