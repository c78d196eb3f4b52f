"""Issue 3's fields that no example on the spec page exercises, each run for real.

Every test runs `python -m dagfast run` on a DAG in a temporary directory and checks what
the steps wrote: timestamps, start/end marks, files, logs. Where a field is about time
(`backoff`, `maxIntervalSec`, `delaySec`, `intervalSec`), the checks are lower bounds the
engine must honour, or upper bounds several seconds wide; never a race.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spectools import Stubs, dagfast, max_overlap, run_dag as run


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def stamps(path: Path) -> list[float]:
    """The `date +%s.%N` lines a step appended to `path`, one per execution."""
    return [float(x) for x in path.read_text().split()]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def wait_for_file(path: Path, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def spawn_run(dag: Path) -> subprocess.Popen:
    env = dict(os.environ, DAGFAST_HOME=str(dag.parent / "home"))
    return subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------------------
# retryPolicy and repeatPolicy


def test_retry_backoff_multiplies_the_interval_and_max_interval_sec_caps_it(tmp_path):
    # Both steps fail every time and are retried 3 times, 1 s apart at first:
    #   grow:   x2 each time             -> gaps 1, 2, 4
    #   capped: x10 each time, at most 2 -> gaps 1, 2, 2  (uncapped: 1, 10, 100)
    dag = write(tmp_path / "r.yaml", """\
        steps:
          - name: grow
            command: date +%s.%N >> grow.txt; exit 1
            retryPolicy: {limit: 3, intervalSec: 1, backoff: true}
          - name: capped
            command: date +%s.%N >> capped.txt; exit 1
            retryPolicy: {limit: 3, intervalSec: 1, backoff: 10, maxIntervalSec: 2}
        """)
    res = run(dag)
    assert res.code == 1, res.out + res.err
    grow, capped = gaps(stamps(tmp_path / "grow.txt")), gaps(stamps(tmp_path / "capped.txt"))
    assert len(grow) == len(capped) == 3
    # Waits are never shorter than asked: without backoff the last gap would be 1 s.
    assert grow[0] >= 0.9 and grow[1] >= 1.9 and grow[2] >= 3.9, grow
    # Capped at 2 s: the third wait is about 2 s (10x room for a slow machine), far from
    # the uncapped 100 s.
    assert capped[1] >= 1.9 and 1.9 <= capped[2] < 20, capped


def test_repeat_policy_limit_caps_the_executions_and_interval_sec_spaces_them(tmp_path):
    # `repeat: while` with no condition repeats while the step succeeds: forever, but
    # for `limit`. The DAG timeout only ends the run should the limit be ignored.
    dag = write(tmp_path / "r.yaml", """\
        timeoutSec: 60
        steps:
          - name: forever
            command: date +%s.%N >> runs.txt
            repeatPolicy: {repeat: while, intervalSec: 1, limit: 3}
          - name: after
            command: touch after.txt
            depends: forever
        """)
    res = run(dag)
    assert res.code == 0, res.out + res.err
    times = stamps(tmp_path / "runs.txt")
    assert len(times) == 3
    assert all(g >= 0.9 for g in gaps(times)), times
    assert (tmp_path / "after.txt").exists()


# ---------------------------------------------------------------------------------------
# delaySec, handlers, stop


def test_step_delay_sec_waits_before_the_step_starts(tmp_path):
    dag = write(tmp_path / "d.yaml", """\
        steps:
          - name: prompt
            command: date +%s.%N > prompt.txt
          - name: delayed
            command: date +%s.%N > delayed.txt
            delaySec: 2
        """)
    res = run(dag)
    assert res.code == 0, res.out + res.err
    (prompt,), (delayed,) = stamps(tmp_path / "prompt.txt"), stamps(tmp_path / "delayed.txt")
    assert delayed >= prompt + 1.9  # both are ready at once; only delaySec holds one back


@pytest.mark.parametrize("spelling", ["abort", "cancel"])
def test_abort_handler_runs_under_either_spelling_when_the_run_is_stopped(tmp_path, spelling):
    dag = write(tmp_path / "a.yaml", f"""\
        handlerOn:
          {spelling}:
            command: echo "{spelling} $DAG_RUN_STATUS $V" > handler.txt
          failure:
            command: touch failure-ran
        steps:
          - name: first
            command: echo early
            output: V
          - name: busy
            command: echo $$ > busy.pid; while :; do sleep 0.1; done
            depends: first
        """)
    proc = spawn_run(dag)
    wait_for_file(tmp_path / "busy.pid")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert (tmp_path / "handler.txt").read_text() == f"{spelling} aborted early\n"
    assert not (tmp_path / "failure-ran").exists()


# ---------------------------------------------------------------------------------------
# Sub-DAGs and fan-out


def test_a_sub_dags_own_max_active_steps_limits_its_concurrency(tmp_path):
    #   main: one (call limited.yaml P=one) | two (call limited.yaml P=two) | free (call free.yaml)
    #   limited.yaml: maxActiveSteps 1, three independent steps; free.yaml: no limit
    body = "".join(f"  - command: work.sh $P {i}\n" for i in (1, 2, 3))
    write(tmp_path / "limited.yaml", "params: P=none\nmaxActiveSteps: 1\nsteps:\n" + body)
    write(tmp_path / "free.yaml", "params: P=free\nsteps:\n" + body)
    dag = write(tmp_path / "main.yaml", """\
        steps:
          - name: one
            call: limited.yaml
            params: P=one
          - name: two
            call: limited.yaml
            params: P=two
          - name: free
            call: free.yaml
        """)
    # The first five (one's first, two's first, free's three) hold until all have started.
    s = Stubs(tmp_path, ["work.sh"], peers=("work.sh",), gather=5)
    res = run(dag, stubs=s)
    assert res.code == 0, res.out + res.err
    calls = s.calls()
    assert len(calls) == 9
    by_run = {p: [c for c in calls if c.args.startswith(p + " ")] for p in ("one", "two", "free")}
    assert max_overlap(by_run["one"]) == 1 and max_overlap(by_run["two"]) == 1
    assert max_overlap(by_run["free"]) == 3
    # The two limited sub-runs still run at the same time as each other.
    assert max_overlap(by_run["one"] + by_run["two"]) == 2


def test_sub_dag_steps_are_started_by_the_same_engine_process(tmp_path):
    # A sub-DAG run in a new interpreter would give its steps another parent.
    write(tmp_path / "inner.yaml", "steps:\n  - command: echo $PPID >> ppids.txt\n")
    dag = write(tmp_path / "main.yaml", """\
        steps:
          - command: echo $PPID >> ppids.txt
          - call: inner.yaml
          - run: inner.yaml
        """)
    res = run(dag)
    assert res.code == 0, res.out + res.err
    ppids = (tmp_path / "ppids.txt").read_text().split()
    assert len(ppids) == 3 and len(set(ppids)) == 1, ppids


def test_parallel_items_from_a_json_array_in_a_variable(tmp_path):
    # Split as JSON: `a b` stays one item (split on white space it would be `["a`, `b",`, ...).
    write(tmp_path / "one.yaml", "steps:\n  - command: echo \"[$ITEM]\" >> items.txt\n")
    dag = write(tmp_path / "main.yaml", """\
        env:
          - ITEMS: '["a b", "c"]'
        steps:
          - name: fan
            call: one.yaml
            parallel:
              items: ${ITEMS}
            output: ALL
          - command: echo "${ALL.summary.total}" > total.txt
            depends: fan
        """)
    res = run(dag)
    assert res.code == 0, res.out + res.err
    assert sorted((tmp_path / "items.txt").read_text().splitlines()) == ["[a b]", "[c]"]
    assert (tmp_path / "total.txt").read_text() == "2\n"


# ---------------------------------------------------------------------------------------
# continueOn, outputs


def test_continue_on_output_is_a_plain_substring_not_a_pattern(tmp_path):
    #   literal -> literal_child   (`usage (high)` appears as written: covered)
    #   regex   -> regex_child     (only a regex `usage (high)` would match `usage high`)
    dag = write(tmp_path / "c.yaml", """\
        steps:
          - name: literal
            command: echo "disk usage (high) now"; exit 1
            continueOn: {output: ["usage (high)"]}
          - name: literal_child
            command: touch literal_child.txt
            depends: literal
          - name: regex
            command: echo "disk usage high now"; exit 1
            continueOn: {output: ["usage (high)"]}
          - name: regex_child
            command: touch regex_child.txt
            depends: regex
        """)
    res = run(dag)
    assert res.code == 1, res.out + res.err
    assert (tmp_path / "literal_child.txt").exists()
    assert not (tmp_path / "regex_child.txt").exists()


def test_default_max_output_size_is_one_mib_and_the_log_keeps_everything(tmp_path):
    mib = 1024 * 1024
    dag = write(tmp_path / "big.yaml", f"""\
        steps:
          - name: fits
            command: head -c {mib} /dev/zero | tr '\\0' x
            output: FITS
          - name: over
            command: head -c {mib + 1} /dev/zero | tr '\\0' y
            output: OVER
        """)
    res = run(dag)
    assert res.code == 1
    lines = {m.group(1): line for line in res.out.splitlines()
             if (m := re.match(r"  (?:succeeded|failed)\s+(\w+) ", line))}
    assert lines["fits"].startswith("  succeeded")
    assert "output exceeded maximum size limit of 1048576 bytes (maxOutputSize)" in lines["over"]
    run_id = re.search(r"dagfast: run (\S+) of", res.out).group(1)
    log = dagfast("logs", run_id, "over", home=tmp_path / "home")
    assert log.code == 0, log.err
    assert log.out == "y" * (mib + 1)


# ---------------------------------------------------------------------------------------
# Variables, dirs and shells


def test_working_dir_dir_and_shells_reach_real_steps(tmp_path):
    dag = write(tmp_path / "w.yaml", """\
        workingDir: wd
        shell: bash -o pipefail
        steps:
          - name: dag_defaults
            command: echo "${BASH_VERSION:+bash} $(basename "$PWD") ${SHELLOPTS}" > dag.txt
          - name: own
            dir: other
            shell: @PYTHON@
            command: import os; open("step.txt", "w").write(os.getcwd() + "\\n")
        """.replace("@PYTHON@", sys.executable))
    res = run(dag, env={"SHELL": "/bin/sh"})  # bash only because the DAG says so
    assert res.code == 0, res.out + res.err
    words = (tmp_path / "wd" / "dag.txt").read_text().split()
    assert words[:2] == ["bash", "wd"] and "pipefail" in words[2].split(":")
    assert (tmp_path / "wd" / "other" / "step.txt").read_text() == f"{tmp_path / 'wd' / 'other'}\n"


def test_positional_params_are_also_dollar_at(tmp_path):
    dag = write(tmp_path / "p.yaml", """\
        params: "K=v one two"
        steps:
          - command: echo "$# [$@] $K" > args.txt
        """)
    assert run(dag).code == 0
    assert (tmp_path / "args.txt").read_text() == "2 [one two] v\n"


def test_a_negative_max_active_steps_is_refused_when_loading(tmp_path):
    dag = write(tmp_path / "n.yaml", "maxActiveSteps: ${N:--1}\nsteps:\n  - touch ran.txt\n")
    res = run(dag)
    assert res.code == 2
    assert res.err.splitlines() == [
        f"{dag}:1:17: `maxActiveSteps` is `-1` after expansion; expected an integer >= 0"
        " - at `$.maxActiveSteps`"
    ]
    write(dag, "maxActiveSteps: -1\nsteps:\n  - touch ran.txt\n")
    res = run(dag)
    assert res.code == 2
    assert res.err.splitlines() == [
        f"{dag}:1:17: expected an integer >= 0, got `-1` - at `$.maxActiveSteps`"
    ]
    assert not (tmp_path / "ran.txt").exists() and not (tmp_path / "home" / "runs").exists()
