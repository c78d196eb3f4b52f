"""The normalised, frozen, integer-indexed DAG that the engine runs.

`dagfast.loader` is the only producer. Steps are ids `0..n-1` in file order; every field is
already resolved (absolute directories, final argv, evaluated environment), so the
engine never parses anything.
"""


from array import array

import msgspec

from dagfast.errors import RunError

__all__ = [
    "Condition",
    "ContinueOn",
    "Dag",
    "Fanout",
    "Handler",
    "Matrix",
    "Repeat",
    "Retry",
    "Secret",
    "Step",
    "StepExtra",
    "output_ref",
    "secret_ref",
    "step_output_ref",
]

Params = tuple[tuple[str | None, str], ...]
"""Parameters in order: (name, value), or (None, value) for a positional one."""


class Condition(msgspec.Struct, frozen=True):
    """`condition` (variables and backticks evaluated by the shell) compared to
    `expected` (literal, or `re:` a pattern); without `expected`, a command whose
    exit status 0 means met. `negate` inverts the answer."""

    condition: str
    expected: str | None = None
    negate: bool = False


class ContinueOn(msgspec.Struct, frozen=True):
    """When a failed step still lets its dependents run (the step stays failed,
    unless `mark_success`); `skipped` lets a skipped step's dependents run."""

    failure: bool = False
    skipped: bool = False
    exit_codes: tuple[int, ...] = ()
    output: tuple[str, ...] = ()
    mark_success: bool = False


class Retry(msgspec.Struct, frozen=True):
    """Up to `limit` more attempts of a failed step whose exit code is in `exit_codes`
    (any non-zero when empty), `interval` seconds apart, times `backoff` each time."""

    limit: int
    interval: float = 0.0
    exit_codes: tuple[int, ...] = ()
    backoff: float = 1.0
    max_interval: float = 0.0


class Repeat(msgspec.Struct, frozen=True):
    """Run a step again `while` (or `until`) its condition / exit code holds; without
    either, `while` repeats while the step succeeds. `limit` caps all executions."""

    mode: str
    condition: Condition | None = None
    exit_codes: tuple[int, ...] = ()
    interval: float = 0.0
    limit: int = 0
    backoff: float = 1.0
    max_interval: float = 0.0


class Matrix(msgspec.Struct, frozen=True):
    """`matrix:`: every combination of one value per axis (axes in file order, values
    as text), without the `exclude` ones (each a partial combination: a combination
    that has all of its pairs is left out), plus the `include` ones."""

    axes: tuple[tuple[str, tuple[str, ...]], ...]
    include: tuple[tuple[tuple[str, str], ...], ...] = ()
    exclude: tuple[tuple[tuple[str, str], ...], ...] = ()


class Fanout(msgspec.Struct, frozen=True):
    """A step's items (`parallel:`, `matrix:`): each item runs the step's sub-DAG
    (`call`) or, on a command step, the step's own command, at most `max_concurrent`
    at once. The items come from exactly one source: `items` as written, `expr` (a
    variable holding a JSON array or lines), `file` (a path, `${VAR}`s expanded when
    the step starts; read as it goes), `command` (its stdout, read as it goes) or
    `matrix`. `format` says how a file or command is read: "lines", "json" (one JSON
    array) or "jsonl"; "" means by the file's extension (`.json`, `.jsonl`/`.ndjson`,
    anything else lines; a command's stdout: lines). `key`: the expression whose value
    names an item (default: the item itself); `max_items`: more items than this fail
    the step."""

    items: tuple[str | dict[str, str], ...] = ()
    expr: str | None = None
    max_concurrent: int = 10
    file: str | None = None
    command: str | None = None
    format: str = ""
    key: str | None = None
    max_items: int = 1_000_000
    matrix: Matrix | None = None


class StepExtra(msgspec.Struct, frozen=True):
    """What a step needs beyond starting a process; steps without any have none, and
    the engine runs them on its fast path."""

    output: str | None = None
    sees: tuple[int, ...] = ()  # steps whose outputs this one sees (its ancestors)
    expand: bool = False  # argv refers to `${OUTPUT.path}`: expanded at start
    continue_on: ContinueOn | None = None
    retry: Retry | None = None
    repeat: Repeat | None = None
    preconditions: tuple[Condition, ...] = ()
    timeout_sec: float = 0.0
    delay_sec: float = 0.0
    signal_on_stop: int = 0
    call: str | None = None
    params: Params = ()
    parallel: Fanout | None = None
    stdout: str | None = None
    stderr: str | None = None
    # Dask worker resources, (name, amount) in file order (memory in bytes): what the
    # Dask executor asks a worker for; the local executor does not use them.
    resources: tuple[tuple[str, float], ...] = ()
    # Dagu 2.x outputs: (name, "string" or "json") the step writes to $DAGU_OUTPUT_FILE,
    # and the steps (its ancestors) whose outputs `${steps.ID.outputs.NAME}` reads.
    # None when the step has no such reference (see `step_output_ref`).
    outputs: tuple[tuple[str, str], ...] = ()
    reads: tuple[int, ...] | None = None


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
    extra: StepExtra | None = None


class Handler(msgspec.Struct, frozen=True):
    """A `handlerOn` step: `on` is init, success, failure, abort or exit."""

    on: str
    step: Step


class Secret(msgspec.Struct, frozen=True):
    """A `secrets:` entry: `name` gets the value `provider` (env or file) finds under
    `key`, read when the run starts; `where` locates the key in the file for errors."""

    name: str
    provider: str
    key: str
    where: str = ""


def secret_ref(name: str) -> str:
    """How a step's `env` value refers to secret `name` until the run starts and fills
    it in: the name between two private-use characters, which no DAG file holds."""
    return f"\ue000{name}\ue001"


def output_ref(name: str, path: str = "") -> str:
    """How a step's `env` value refers to output `name` (and a JSON `path` in it) until
    the step starts: between two private-use characters, which no DAG file holds (as
    `secret_ref`, with another pair)."""
    return f"\ue002{name}{path}\ue003"


def step_output_ref(step_id: str, name: str) -> str:
    """How a command or an `env` value refers to Dagu 2.x output `name` of the step whose
    id is `step_id` (`${steps.ID.outputs.NAME}`) until the step starts: another pair of
    private-use characters (`runtime.stepoutputs` fills them in)."""
    return f"\ue004{step_id}.{name}\ue005"


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
    params: Params = ()
    max_active_runs: int = 0
    schedule: tuple[str, ...] = ()
    skip_if_successful: bool = False
    timeout_sec: float = 0.0
    delay_sec: float = 0.0
    max_cleanup_sec: float = 5.0
    max_output_size: int = 1 << 20
    # histRetentionRuns / histRetentionDays: after each run, older runs beyond these go
    # (records/prune.py; 0: kept).
    hist_retention_runs: int = 0
    hist_retention_days: int = 0
    preconditions: tuple[Condition, ...] = ()
    handlers: tuple[Handler, ...] = ()
    # Where the steps run, as the DAG says (executor.choose applies --executor and the
    # environment first): "" or "local", or "dask" with its scheduler's address ("":
    # a LocalCluster for the run) and a directory shared with the workers for logs.
    step_executor: str = ""
    dask_scheduler: str = ""
    dask_shared_dir: str = ""
    secrets: tuple[Secret, ...] = ()
    # Local sub-DAGs (the documents after `---` in `path`), this DAG's document name
    # ("" for the file's first), and where `call: NAME` looks after its own directory.
    local_dags: tuple[str, ...] = ()
    document: str = ""
    dags_dir: str = ""

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

    def step_id(self, name: str) -> int:
        """The id of the step a user named: by its name, its `id:`, or that number.
        RunError when there is none."""
        for i, step in enumerate(self.steps):
            if step.name == name or step.id == name:
                return i
        if name.isdigit() and int(name) < len(self.steps):
            return int(name)
        raise RunError(f"no step `{name}` in DAG `{self.name}`")
