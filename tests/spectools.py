"""Helpers for tests that run real DAGs: stub commands that log when they start and end,
a runner for the `dagfast` command, and readers for what the stubs logged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# A DAG whose processes resist a stop: a background sleeper and a shell that ignore
# SIGTERM, a grandchild that ignores it too, and a step that must never start. Each
# process appends its pid to pids.txt in the DAG's directory (3 pids in all).
STUBBORN_DAG = """\
steps:
  - name: sleeper
    command: |
      sleep 60 &
      echo $! >> pids.txt
      trap '' TERM
      echo $$ >> pids.txt
      sleep 60
  - name: stubborn
    command: |
      sh -c 'trap "" TERM; echo $$ >> pids.txt; sleep 60' &
      wait
  - name: never
    command: touch never-ran
    depends: sleeper
"""

# Preconditions that skip steps (and their dependents, unless continueOn.skipped):
#   no -> no_child ; maybe (continueOn.skipped) -> maybe_child ; yes
# Run for real in test_spec_features, in-process in test_engine_inprocess.
PRECONDITIONS_DAG = """\
env:
  - MODE: prod
steps:
  - name: no
    command: touch no.txt
    preconditions:
      - condition: "$MODE"
        expected: dev
  - name: no_child
    command: touch no_child.txt
    depends: no
  - name: maybe
    command: touch maybe.txt
    preconditions: "test -f missing-file"
    continueOn: {skipped: true}
  - name: maybe_child
    command: touch maybe_child.txt
    depends: maybe
  - name: yes
    command: touch yes.txt
    preconditions:
      - condition: "`echo prod`"
        expected: "re:p.o."
      - condition: "test -f missing-file"
        negate: true
"""

# A `call:` with params whose sub-DAG's outputs come back as JSON:  c (RES) -> show
CALL_SUB_DAG = """\
params: "X=default"
maxActiveSteps: 1
steps:
  - name: s
    command: echo "got $X"
    output: SUB_OUT
"""
CALL_DAG = """\
steps:
  - name: c
    call: sub.yaml
    params:
      X: given
    output: RES
  - name: show
    command: echo "${RES.SUB_OUT}" > res.txt
    depends: c
"""

# continueOn: an exit code, an output pattern, markSuccess; `after` runs all the same.
CONTINUE_ON_DAG = """\
steps:
  - name: code
    command: exit 3
    continueOn: {exitCode: [3]}
  - name: out
    command: echo "WARNING disk"; exit 1
    continueOn: {output: ["re:^WARN"]}
  - name: marked
    command: exit 1
    continueOn: {failure: true, markSuccess: true}
  - name: after
    command: touch after.txt
    depends: [code, out, marked]
"""

# A fan-out over a step's output lines, two sub-runs at a time, then a count:
#   list (ITEMS: a b c d) -> fan (FAN_OUT_ITEM_DAG per item, maxConcurrent 2) -> count
FAN_OUT_ITEM_DAG = "steps:\n  - name: work\n    command: work.sh $ITEM $1\n"
FAN_OUT_DAG = """\
steps:
  - name: list
    command: printf 'a\\nb\\nc\\nd\\n'
    output: ITEMS
  - name: fan
    call: one.yaml
    parallel:
      items: ${ITEMS}
      maxConcurrent: 2
    depends: list
    output: ALL
  - name: count
    command: echo "${ALL.summary.succeeded}" > n.txt
    depends: fan
"""

STUB = textwrap.dedent(
    """\
    #!/bin/sh
    # A stand-in for a real tool: logs its start and end, and sleeps in between. One of
    # STUB_PEERS first waits (60 s at most) until STUB_GATHER of them have started: the
    # overlap that a test expects is then there however slowly the machine starts them.
    name=$(basename "$0")
    echo "start $$ $name $* @$(date +%s.%N)" >> "$STUB_LOG"
    case " $STUB_PEERS " in *" $name "*)
      i=0
      while [ "$(awk -v peers=" $STUB_PEERS " '$1 == "start" && index(peers, " " $3 " ") \
                 { n++ } END { print n + 0 }' "$STUB_LOG")" -lt "$STUB_GATHER" ] &&
            [ $i -lt 3000 ]; do
        sleep 0.02; i=$((i + 1))
      done;;
    esac
    sleep "${STUB_SLEEP:-0.4}"
    echo "end $$ $name $* @$(date +%s.%N)" >> "$STUB_LOG"
    """
)


@dataclass
class Call:
    """One run of a stub: its name, arguments and start/end times."""

    name: str
    args: str
    start: float
    end: float

    @property
    def label(self) -> str:
        return f"{self.name} {self.args}".strip()


class Stubs:
    """A directory of stub commands put first on PATH, and the log they write."""

    def __init__(self, root: Path, names: list[str], sleep: float = 0.4,
                 peers: tuple[str, ...] = (), gather: int = 0) -> None:
        """`peers` (stub names) hold until `gather` of them have started, then sleep."""
        self.bin = root / "stub-bin"
        self.bin.mkdir(exist_ok=True)
        self.log = root / "stub.log"
        self.sleep = sleep
        self.peers, self.gather = peers, gather
        for name in names:
            path = self.bin / name
            path.write_text(STUB)
            path.chmod(0o755)

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "STUB_LOG": str(self.log),
            "STUB_SLEEP": str(self.sleep),
            "STUB_PEERS": " ".join(self.peers),
            "STUB_GATHER": str(self.gather),
        }

    def calls(self) -> list[Call]:
        """Every completed stub run, in start order."""
        if not self.log.exists():
            return []
        starts: dict[str, tuple[str, str, float]] = {}
        calls = []
        for line in self.log.read_text().splitlines():
            event, pid, name, rest = line.split(" ", 3)
            args, _, ts = rest.rpartition("@")
            if event == "start":
                starts[pid] = (name, args.strip(), float(ts))
            else:
                n, a, t0 = starts.pop(pid)
                calls.append(Call(n, a, t0, float(ts)))
        assert not starts, f"stubs that never ended: {starts}"
        return sorted(calls, key=lambda c: c.start)

    def labels(self) -> list[str]:
        return sorted(c.label for c in self.calls())


def max_overlap(calls: list[Call]) -> int:
    """The largest number of calls running at the same moment."""
    events = sorted([(c.start, 1) for c in calls] + [(c.end, -1) for c in calls])
    best = cur = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


def before(calls: list[Call], first: str, then: str) -> bool:
    """Every call labelled `first` ended before any call labelled `then` started."""
    a = [c for c in calls if c.label.startswith(first)]
    b = [c for c in calls if c.label.startswith(then)]
    assert a and b, (first, then, [c.label for c in calls])
    return max(c.end for c in a) <= min(c.start for c in b)


@dataclass
class Result:
    """What a `dagfast` command did."""

    code: int
    out: str
    err: str


def dagfast(*args: str, env: dict[str, str] | None = None, home: Path | None = None,
            cwd: Path | None = None, timeout: float = 120) -> Result:
    """Run `python -m dagfast ARGS` with this interpreter and return its outcome."""
    full_env = dict(os.environ)
    if home is not None:
        full_env["DAGFAST_HOME"] = str(home)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "dagfast", *args],
        env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_under_ulimit_n(dag: Path, limit: int, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`dagfast run --quiet DAG` under `ulimit -n LIMIT` (set by a shell, then exec'd)."""
    return subprocess.run(
        ["sh", "-c", f'ulimit -n {limit} && exec "$0" -m dagfast run --quiet "$1"',
         sys.executable, str(dag)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def run_dag(dag: Path, *params: str, env: dict | None = None, stubs: Stubs | None = None) -> Result:
    """`dagfast run DAG [-- PARAMS]`, recorded in a home beside the DAG file."""
    full = dict(stubs.env() if stubs else {}, **(env or {}))
    args = ["run", str(dag)] + (["--", *params] if params else [])
    return dagfast(*args, env=full, home=dag.parent / "home")


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a zombie is gone for a test)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
