"""The DAG file's schema: msgspec Structs mirroring the YAML, and the one key table.

Field names are the spec page's camelCase keys. `KEYS` lists, for each kind of mapping,
every key dagfast knows: the ones the Structs hold, and the Dagu keys it does not
support yet (reported, never ignored). `ALIASES` adds the spellings that mean the same
key: Dagu 2's snake_case, and `dir` for a step's `workingDir`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "ALIASES",
    "DAG_TYPES",
    "KEYS",
    "SUPPORTED",
    "DagSpec",
    "EnvSpec",
    "StepSpec",
]

NonNegInt = Annotated[int, Meta(ge=0)]

DagType = Literal["graph", "chain"]
DAG_TYPES: tuple[str, ...] = get_args(DagType)

EnvSpec = dict[str, str | None] | list[dict[str, str | None] | str]
"""A map, or a list of single-key maps or `KEY=value` strings; evaluated in order."""

Shell = str | list[str]
"""A command line split with shlex, or the words themselves."""


class StepSpec(Struct, forbid_unknown_fields=True, rename="camel", gc=False):
    """One step as written; a bare string in the steps list is `StepSpec(command=...)`.

    `gc=False` (here and below): instances hold only YAML values, so they can never be
    part of a reference cycle, and 100,000 of them stay out of the collector's way."""

    name: str | None = None
    id: str | None = None
    description: str | None = None
    command: str | list[str] | None = None
    script: str | None = None
    shell: Shell | None = None
    working_dir: str | None = None
    env: EnvSpec | None = None
    # UNSET (absent) differs from [] (written): `depends: []` opts out of chaining.
    depends: str | list[str] | None | UnsetType = UNSET


class DagSpec(Struct, forbid_unknown_fields=True, rename="camel", gc=False):
    """The whole file as written. `maxActiveSteps` may also be a `${VAR}` expression;
    the loader takes that out before conversion and expands it after the env."""

    name: str | None = None
    description: str | None = None
    type: DagType = "graph"
    env: EnvSpec | None = None
    max_active_steps: NonNegInt = 0
    working_dir: str | None = None
    shell: Shell | None = None
    steps: list[StepSpec | str | None] | dict[str, StepSpec | str | None] | None = None


def _fields(cls: type[Struct]) -> tuple[str, ...]:
    return tuple(cls.__struct_encode_fields__)


# Known keys per mapping kind; those not in the Struct are "not supported yet".
KEYS: dict[str, tuple[str, ...]] = {
    "dag": _fields(DagSpec)
    + (
        "group", "tags", "params", "dotenv", "schedule", "skipIfSuccessful",
        "maxActiveRuns", "timeoutSec", "delaySec", "restartWaitSec", "maxCleanUpTimeSec",
        "maxOutputSize", "preconditions", "handlerOn", "logDir", "logOutput",
        "histRetentionDays", "histRetentionRuns", "queue", "workerSelector", "container",
        "ssh", "smtp", "mailOn", "errorMail", "infoMail", "secrets", "otel",
        "registryAuths", "runConfig", "llm", "defaults", "catchupWindow", "overlapPolicy",
    ),  # fmt: skip
    "step": _fields(StepSpec)
    + (
        "output", "continueOn", "retryPolicy", "repeatPolicy", "preconditions",
        "timeoutSec", "signalOnStop", "run", "call", "params", "parallel", "stdout",
        "stderr", "logOutput", "delaySec", "mailOnError", "executor", "type", "config",
        "container", "workerSelector", "shellPackages", "llm", "messages",
    ),  # fmt: skip
}

SUPPORTED: dict[str, frozenset[str]] = {
    "dag": frozenset(_fields(DagSpec)),
    "step": frozenset(_fields(StepSpec)),
}

_EXTRA_ALIASES: dict[str, dict[str, str]] = {
    "dag": {"precondition": "preconditions"},
    "step": {"dir": "workingDir", "precondition": "preconditions"},
}


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def _aliases(kind: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for key in KEYS[kind]:
        table[key] = key
        table[_snake(key)] = key
    extra = _EXTRA_ALIASES[kind]
    for alias, key in extra.items():
        table[alias] = key
        table[_snake(alias)] = key
    return table


ALIASES: dict[str, dict[str, str]] = {kind: _aliases(kind) for kind in KEYS}
"""Every accepted spelling -> the canonical (camelCase) key, per mapping kind."""
