"""The DAG file's schema: msgspec Structs mirroring the YAML, and the one key table.

Field names are the spec page's camelCase keys. `KEYS` lists, for each kind of mapping,
every key dagfast knows: the ones the Structs hold, and the Dagu keys it does not
support yet (reported, never ignored). `ALIASES` adds the spellings that mean the same
key: Dagu 2's snake_case, and `dir` for a step's `workingDir`.
"""


import re
from typing import Any, Literal, get_args

from msgspec import UNSET, Struct, UnsetType

__all__ = [
    "ALIASES",
    "DAG_TYPES",
    "INT_KEYS",
    "KEYS",
    "NESTED",
    "STEP_EXECUTORS",
    "SUPPORTED",
    "ConditionSpec",
    "ContinueOnSpec",
    "DagSpec",
    "EnvSpec",
    "HandlersSpec",
    "OutputItemSpec",
    "OutputSpec",
    "ParallelSpec",
    "RepeatSpec",
    "RetrySpec",
    "SecretSpec",
    "StepSpec",
]

DagType = Literal["graph", "chain"]
DAG_TYPES: tuple[str, ...] = get_args(DagType)

StepExecutor = Literal["local", "dask"]
STEP_EXECUTORS: tuple[str, ...] = get_args(StepExecutor)

EnvSpec = dict[str, str | None] | list[dict[str, str | None] | str]
"""A map, or a list of single-key maps or `KEY=value` strings; evaluated in order."""

Shell = str | list[str]
"""A command line split with shlex, or the words themselves."""


Int = Any
"""An integer key as written: text that must be an integer >= 0, or a `${VAR}`
expression that must expand to one. msgspec takes it as it is; `integers.integer`
checks every one, at DAG and step level alike, so that they all speak one way."""

Params = str | dict[str, str | None] | list[dict[str, str | None] | str]
"""`"A=1 B=2 positional"`, a map, or a list of single-key maps and plain values."""

Codes = int | list[int]


class OutputSpec(Struct, forbid_unknown_fields=True, gc=False):
    """`output: {name: NAME}`; `key` and `omit` are accepted for Dagu's outputs.json."""

    name: str
    key: str | None = None
    omit: bool = False


class OutputItemSpec(Struct, forbid_unknown_fields=True, gc=False):
    """One Dagu 2.x `outputs:` entry: a value the step writes to `$DAGU_OUTPUT_FILE`."""

    name: str
    type: Literal["string", "json"] = "string"


class ContinueOnSpec(Struct, forbid_unknown_fields=True, rename="camel", gc=False):
    """When a failed (or skipped) step still lets its dependents run."""

    failure: bool = False
    skipped: bool = False
    exit_code: Codes | None = None
    output: str | list[str] | None = None
    mark_success: bool = False


class ConditionSpec(Struct, forbid_unknown_fields=True, gc=False):
    """A precondition: `condition` compared to `expected`, or run as a command."""

    condition: str
    expected: str | None = None
    negate: bool = False


Conditions = str | ConditionSpec | list[str | ConditionSpec]


class RetrySpec(Struct, forbid_unknown_fields=True, rename="camel", gc=False):
    """Run a failed step again, up to `limit` more times."""

    limit: Int
    interval_sec: Int = 0
    exit_code: Codes | None = None
    backoff: bool | float = False
    max_interval_sec: Int = 0


class RepeatSpec(Struct, forbid_unknown_fields=True, rename="camel", gc=False):
    """Run a step again while (or until) a condition or exit code holds."""

    repeat: bool | Literal["while", "until"] = True
    condition: str | None = None
    expected: str | None = None
    exit_code: Codes | None = None
    interval_sec: Int = 0
    limit: Int = 0
    backoff: bool | float = False
    max_interval_sec: Int = 0


class ParallelSpec(Struct, forbid_unknown_fields=True, rename="camel", gc=False):
    """Fan-out: the step's sub-DAG (or its own command) once per item, at most
    `maxConcurrent` at once. The items come from one source: `items`, `file`,
    `command`, or the step's `matrix` (then this mapping holds only the limits and `key`).
    `format` (lines, json, jsonl) is checked by `stepopts`, which names the three."""

    items: str | list[str | dict[str, str | None]] | None = None
    file: str | None = None
    command: str | None = None
    format: str | None = None
    key: str | None = None
    max_concurrent: Int = 10
    max_items: Int = 1_000_000


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
    output: str | OutputSpec | None = None
    continue_on: Literal["failed", "failure", "skipped"] | ContinueOnSpec | None = None
    retry_policy: RetrySpec | None = None
    repeat_policy: RepeatSpec | None = None
    preconditions: Conditions | None = None
    timeout_sec: Int | None = None
    delay_sec: Int | None = None
    signal_on_stop: str | None = None
    run: str | None = None
    call: str | None = None
    params: Params | None = None
    parallel: ParallelSpec | str | list[str | dict[str, str | None]] | None = None
    # Axis name -> list of values, plus `include` / `exclude` lists of mappings; its keys
    # are the user's own names, so it is checked (and located) by `loader.matrix`.
    matrix: dict[str, Any] | None = None
    stdout: str | None = None
    stderr: str | None = None
    # Dask worker resources the step needs (`cpu: 2`, `memory: 4GB`); see stepopts.
    resources: dict[str, float | str] | None = None
    # Dagu 2.x: named values written to $DAGU_OUTPUT_FILE (loader.dialects, stepopts).
    outputs: list[OutputItemSpec] | None = None


class HandlersSpec(Struct, forbid_unknown_fields=True, gc=False):
    """`handlerOn`: steps run at the run's edges (`cancel` is `abort`'s other name)."""

    init: StepSpec | None = None
    success: StepSpec | None = None
    failure: StepSpec | None = None
    abort: StepSpec | None = None
    cancel: StepSpec | None = None
    exit: StepSpec | None = None


class SecretSpec(Struct, forbid_unknown_fields=True, gc=False):
    """One `secrets:` entry: the variable `name` gets the value `provider` finds under
    `key`, when the run starts. `options` is accepted and unused, as in Dagu."""

    name: str
    provider: str
    key: str
    options: dict[str, str] | None = None


class DagSpec(Struct, forbid_unknown_fields=True, rename="camel", gc=False):
    """The whole file as written. Integer keys (`Int`) are checked by the loader, and
    those written as `${VAR}` expressions expanded after the env."""

    name: str | None = None
    description: str | None = None
    type: DagType = "graph"
    env: EnvSpec | None = None
    dotenv: str | list[str] | None = None
    params: Params | None = None
    max_active_steps: Int = 0
    max_active_runs: Int = 0
    timeout_sec: Int = 0
    delay_sec: Int = 0
    max_clean_up_time_sec: Int = 5
    max_output_size: Int = 1 << 20
    hist_retention_runs: Int = 0  # 0: keep every run
    hist_retention_days: Int = 0
    schedule: str | list[str] | dict[str, str | list[str]] | None = None
    skip_if_successful: bool = False
    preconditions: Conditions | None = None
    handler_on: HandlersSpec | None = None
    working_dir: str | None = None
    shell: Shell | None = None
    # Where the steps run (README, "Beyond one machine"): overridden by --executor and
    # DAGFAST_EXECUTOR, and so on for the other two.
    step_executor: StepExecutor | None = None
    dask_scheduler: str | None = None
    dask_shared_dir: str | None = None
    secrets: list[SecretSpec] | None = None
    steps: list[StepSpec | str | None] | dict[str, StepSpec | str | None] | None = None


INT_KEYS: dict[str, tuple[str, ...]] = {
    "dag": ("maxActiveSteps", "maxActiveRuns", "timeoutSec", "delaySec",
            "maxCleanUpTimeSec", "maxOutputSize", "histRetentionRuns", "histRetentionDays"),
    "step": ("timeoutSec", "delaySec"),
    "retryPolicy": ("limit", "intervalSec", "maxIntervalSec"),
    "repeatPolicy": ("limit", "intervalSec", "maxIntervalSec"),
    "parallel": ("maxConcurrent", "maxItems"),
}  # fmt: skip
"""Every integer key (typed `Int` above), per mapping kind: each may be a `${VAR}`."""


def _fields(cls: type[Struct]) -> tuple[str, ...]:
    return tuple(cls.__struct_encode_fields__)


def _with(fields: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return fields + tuple(k for k in more if k not in fields)


# Known keys per mapping kind; those not in the Struct are "not supported yet".
# The nested kinds are the mappings whose keys also have a snake_case spelling.
KEYS: dict[str, tuple[str, ...]] = {
    "dag": _with(_fields(DagSpec), (
        "group", "tags", "restartWaitSec", "logDir", "logOutput",
        "queue", "workerSelector", "container",
        "ssh", "smtp", "mailOn", "errorMail", "infoMail", "otel",
        "registryAuths", "runConfig", "llm", "defaults", "catchupWindow", "overlapPolicy",
    )),  # fmt: skip
    "step": _with(_fields(StepSpec), (
        "logOutput", "mailOnError", "executor", "type", "config",
        "container", "workerSelector", "shellPackages", "llm", "messages",
    )),  # fmt: skip
    "continueOn": _fields(ContinueOnSpec),
    "retryPolicy": _fields(RetrySpec),
    "repeatPolicy": _fields(RepeatSpec),
    "parallel": _fields(ParallelSpec),
    "handlerOn": _fields(HandlersSpec),
    "secret": _fields(SecretSpec),
    "output": _fields(OutputSpec),
    "outputItem": _fields(OutputItemSpec),
    "condition": _fields(ConditionSpec),
}

SUPPORTED: dict[str, frozenset[str]] = {
    "dag": frozenset(_fields(DagSpec)),
    "step": frozenset(_fields(StepSpec)),
    "continueOn": frozenset(KEYS["continueOn"]),
    "retryPolicy": frozenset(KEYS["retryPolicy"]),
    "repeatPolicy": frozenset(KEYS["repeatPolicy"]),
    "parallel": frozenset(KEYS["parallel"]),
    "handlerOn": frozenset(KEYS["handlerOn"]),
    "secret": frozenset(KEYS["secret"]),
    "output": frozenset(KEYS["output"]),
    "outputItem": frozenset(KEYS["outputItem"]),
    "condition": frozenset(KEYS["condition"]),
}

NESTED: dict[str, str] = {
    "continueOn": "continueOn",
    "retryPolicy": "retryPolicy",
    "repeatPolicy": "repeatPolicy",
    "parallel": "parallel",
    "handlerOn": "handlerOn",
    "output": "output",
    "outputs": "outputItem",
    "preconditions": "condition",
}
"""Keys whose mapping value (or, for `preconditions`, each mapping in its list) has keys
of its own to normalise: key -> its kind."""

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
    extra = _EXTRA_ALIASES.get(kind, {})
    for alias, key in extra.items():
        table[alias] = key
        table[_snake(alias)] = key
    return table


ALIASES: dict[str, dict[str, str]] = {kind: _aliases(kind) for kind in KEYS}
"""Every accepted spelling -> the canonical (camelCase) key, per mapping kind."""
