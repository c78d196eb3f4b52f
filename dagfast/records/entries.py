"""What a run's record holds: the schemas of `status.json` (Snapshot, StepRecord) and of
the journal's entries (Begin, Start, End, Cancel, Finish, Item, Fan), with the version
each record file says. `store` writes them and re-exports them; readers decode them.
"""

import msgspec

__all__ = [
    "Begin", "Cancel", "DAG_VERSION", "End", "Entry", "Fan", "Finish", "Item", "JOURNAL_VERSION",
    "SNAPSHOT_VERSION", "Snapshot", "Start", "StepRecord",
]

# What each record file's `version` says; a reader refuses a version newer than its own
# (records.read_run) rather than misread it.
SNAPSHOT_VERSION = 2  # 1: no attempt, error, journal_offset
JOURNAL_VERSION = 1
DAG_VERSION = 1  # dag.json; a file without the key is version 1


class StepRecord(msgspec.Struct, array_like=True):
    """One step's outcome: status code, exit code, start/end (unix seconds), error text,
    its `output:` value (None: none), and what its last process cost, with the children
    it waited for: CPU seconds (user + system), peak RSS in KiB (None: not reaped here;
    also when no larger than the engine's, whose memory each child runs in until its
    exec)."""

    status: int = 0
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    output: str | None = None
    cpu: float | None = None
    rss: int | None = None


class Snapshot(msgspec.Struct):
    """The whole run at one moment; `version` says how to read it. It reflects the
    journal up to byte `journal_offset`."""

    version: int
    run_id: str
    dag_name: str
    dag_path: str
    status: int
    started_at: float
    finished_at: float | None
    pid: int
    steps: list[StepRecord]
    attempt: int = 1
    error: str = ""
    journal_offset: int = 0
    handlers: dict[str, StepRecord] = {}  # the handlers that ran, by event (`failure`)
    # Fan-out steps' items so far, by step id: status label -> how many (this attempt's
    # and those a retry kept); each item's own record is its Item entry in the journal.
    items: dict[int, dict[str, int]] = {}


# Journal entries: arrays whose first element is the kind. The Recorder writes plain
# tuples of the same shape (cheaper than building Structs); readers decode these.


class Begin(msgspec.Struct, array_like=True, tag=1):
    """An attempt starts: `steps` steps, of which `kept` (id, record) already ended."""

    version: int
    attempt: int
    run_id: str
    pid: int
    started_at: float
    steps: int
    kept: list[tuple[int, StepRecord]]


class Start(msgspec.Struct, array_like=True, tag=2):
    """Step `step` started at `at`."""

    step: int
    at: float | None


class End(msgspec.Struct, array_like=True, tag=3):
    """Step `step` ended; `output` is the value of its output variable, if any."""

    step: int
    status: int
    exit_code: int | None
    at: float | None
    error: str
    output: str | None = None
    cpu: float | None = None  # what its last process cost (see StepRecord)
    rss: int | None = None


class Cancel(msgspec.Struct, array_like=True, tag=4):
    """These steps will never run in this attempt."""

    steps: list[int]
    status: int
    reason: str


class Finish(msgspec.Struct, array_like=True, tag=5):
    """The attempt ended with run status `status`; `error` says why if it was cut short."""

    status: int
    at: float
    signal: int
    error: str = ""
    handlers: dict[str, StepRecord] | None = None  # the handlers that ran, by event


class Item(msgspec.Struct, array_like=True, tag=6):
    """Item `index` of fan-out step `step` ended. Its `key` names it across attempts (a
    retry keeps the succeeded keys); `token` is where the output store holds what it
    printed (-1: a sub-run of its own, `children/`); `output` is what it gives the
    fan-in (JSON of its outputs), None when nothing. The last entry of a key wins."""

    step: int
    index: int
    key: str
    status: int
    exit_code: int | None
    started_at: float | None
    finished_at: float | None
    error: str
    token: int
    output: str | None = None
    cpu: float | None = None  # what its last process cost (see StepRecord)
    rss: int | None = None


class Fan(msgspec.Struct, array_like=True, tag=7):
    """The items of fan-out step `step` run step `step_name` of sub-DAG `dag_name` as
    processes of the caller's engine (no sub-run of their own): what `fan[K]/STEP`
    addresses."""

    step: int
    dag_name: str
    step_name: str


Entry = Begin | Start | End | Cancel | Finish | Item | Fan
