"""Run-time behaviour of issue 3's features, run for real through `dagfast run`.

The init handler that fails, conditions and stops, `${NAME.path}` lookups outside
commands, step `env` that refers to outputs, empty fan-outs and oversized values. Each
test checks what happened from outside: exit status, files written, processes left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from spectools import dagfast


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run(dag: Path, *args: str, env: dict | None = None):
    return dagfast("run", str(dag), *args, env=env, home=dag.parent / "home")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# handlerOn.init


def test_a_failing_init_handler_starts_no_step(tmp_path):
    dag = write(tmp_path / "h.yaml", """\
        handlerOn:
          init:
            command: sleep 0.3; exit 3
        steps:
          - name: slow
            command: echo $$ > slow.pid; touch ran.txt; sleep 5
          - name: after
            depends: slow
            command: touch after.txt
        """)
    res = run(dag)
    assert res.code == 1, res.out + res.err
    assert not (tmp_path / "ran.txt").exists()
    assert not (tmp_path / "slow.pid").exists()
    assert not (tmp_path / "after.txt").exists()
    status = dagfast("status", str(dag), home=tmp_path / "home")
    assert "running" not in status.out, status.out


# ---------------------------------------------------------------------------------------
# Conditions are interrupted by a DAG timeout, a step timeout and a stop

# The condition writes its shell's pid, then sleeps far longer than any test waits: a
# run that waited for it would hit the helper's time limit.
SLOW_CONDITION = "echo $$ > cond.pid; sleep 100; true"


def _condition_gone(tmp_path: Path) -> bool:
    return not _alive(int((tmp_path / "cond.pid").read_text()))


def test_dag_timeout_interrupts_a_step_precondition(tmp_path):
    dag = write(tmp_path / "t.yaml", f"""\
        timeoutSec: 1
        steps:
          - name: a
            preconditions: "{SLOW_CONDITION}"
            command: touch ran.txt
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=60)
    assert res.code == 1, res.out + res.err
    assert not (tmp_path / "ran.txt").exists()
    assert _condition_gone(tmp_path)


def test_dag_timeout_interrupts_a_dag_precondition(tmp_path):
    dag = write(tmp_path / "t.yaml", f"""\
        timeoutSec: 1
        preconditions: ["{SLOW_CONDITION}"]
        steps:
          - name: a
            command: touch ran.txt
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=60)
    assert res.code == 1, res.out + res.err
    assert res.out.startswith("failed") or "\nfailed: " in res.out, res.out
    assert not (tmp_path / "ran.txt").exists()
    assert _condition_gone(tmp_path)


def test_step_timeout_covers_its_preconditions(tmp_path):
    dag = write(tmp_path / "t.yaml", f"""\
        steps:
          - name: a
            timeoutSec: 1
            preconditions: "{SLOW_CONDITION}"
            command: touch ran.txt
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=60)
    assert res.code == 1, res.out + res.err
    assert "step timed out after 1s (in its preconditions)" in res.out
    assert not (tmp_path / "ran.txt").exists()
    assert _condition_gone(tmp_path)


def test_dag_timeout_interrupts_a_repeat_condition(tmp_path):
    # Without DAG_RUN_ID, the stop's sweep of this run's tagged processes cannot find
    # the condition: only its own session being killed ends it.
    dag = write(tmp_path / "t.yaml", f"""\
        timeoutSec: 1
        steps:
          - name: a
            command: echo x >> runs.txt
            repeatPolicy:
              repeat: while
              condition: "env -u DAG_RUN_ID sh -c '{SLOW_CONDITION}'"
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=60)
    assert res.code == 1, res.out + res.err
    assert (tmp_path / "runs.txt").read_text() == "x\n"
    assert _condition_gone(tmp_path)


def _run_then_sigterm(tmp_path: Path, dag: Path, ready: Path) -> tuple[subprocess.Popen, str]:
    """`dagfast run -q DAG`, sent SIGTERM once `ready` holds something; (process, output)."""
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagfast", "run", "-q", str(dag)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, out + err


def test_sigterm_interrupts_a_running_precondition(tmp_path):
    dag = write(tmp_path / "t.yaml", f"""\
        steps:
          - name: a
            preconditions: "{SLOW_CONDITION}"
            command: touch ran.txt
        """)
    proc, out = _run_then_sigterm(tmp_path, dag, tmp_path / "cond.pid")
    assert proc.returncode != 0, out
    assert "aborted" in out, out
    assert not (tmp_path / "ran.txt").exists()
    assert _condition_gone(tmp_path)
    status = dagfast("status", str(dag), home=tmp_path / "home")
    assert "running" not in status.out, status.out


def test_the_abort_handler_outlives_the_clean_up_period_of_the_stop(tmp_path):
    # The steps die at once on SIGTERM; the handler then runs past the end of the clean-up
    # period (1 s), whose SIGKILL is for the steps, never for the handler that follows.
    dag = write(tmp_path / "h.yaml", """\
        maxCleanUpTimeSec: 1
        steps:
          - name: a
            command: echo go > started; exec sleep 30
        handlerOn:
          abort:
            command: sleep 2.5; echo ran > handler.txt
        """)
    proc, out = _run_then_sigterm(tmp_path, dag, tmp_path / "started")
    assert proc.returncode == 143, out
    assert (tmp_path / "handler.txt").read_text() == "ran\n"
    status = dagfast("status", str(dag), home=tmp_path / "home").out
    assert "status:  aborted" in status, status


# ---------------------------------------------------------------------------------------
# `${NAME.key[0]}` wherever `${NAME}` works

JSON_STEP = """\
  - name: a
    command: >-
      echo '{"go": "yes", "n": [3], "f": "eff", "items": ["x", "y"]}'
    output: A
"""


def test_json_lookups_in_preconditions_and_repeat_conditions(tmp_path):
    dag = write(tmp_path / "c.yaml", "steps:\n" + JSON_STEP + """\
  - name: met
    depends: a
    preconditions:
      - condition: "${A.go}"
        expected: "yes"
    command: touch met.txt
  - name: cmd
    depends: a
    preconditions: 'test "${A.n[0]}" = 3'
    command: touch cmd.txt
  - name: unmet
    depends: a
    preconditions:
      - condition: "no"
        expected: "${A.go}"
    command: touch unmet.txt
  - name: until
    depends: a
    command: echo x >> lines.txt
    repeatPolicy:
      repeat: until
      condition: "`wc -l < lines.txt | tr -d ' '`"
      expected: "${A.n[0]}"
      limit: 10
""")
    res = run(dag)
    assert res.code == 0, res.out + res.err
    assert (tmp_path / "met.txt").exists()
    assert (tmp_path / "cmd.txt").exists()
    assert not (tmp_path / "unmet.txt").exists()
    assert (tmp_path / "lines.txt").read_text() == "x\nx\nx\n"


def test_json_lookups_in_call_params_and_parallel_items(tmp_path):
    write(tmp_path / "g.yaml", """\
        params: "FILE=none"
        steps:
          - name: w
            command: echo "$FILE" >> got.txt
        """)
    dag = write(tmp_path / "m.yaml", "steps:\n" + JSON_STEP.replace("[3]", '"g.yaml"') + """\
  - name: one
    depends: a
    call: ${A.n}
    params: "FILE=${A.f}"
  - name: many
    depends: [one]
    call: g.yaml
    parallel: ${A.items}
    params:
      FILE: "${ITEM}-${A.f}"
""")
    res = run(dag)
    assert res.code == 0, res.out + res.err
    got = (tmp_path / "got.txt").read_text().splitlines()
    assert got[0] == "eff" and sorted(got[1:]) == ["x-eff", "y-eff"]


# ---------------------------------------------------------------------------------------
# A step's env may refer to the outputs it sees


def test_step_env_refers_to_upstream_outputs(tmp_path):
    dag = write(tmp_path / "e.yaml", "env:\n  - D: dag\nsteps:\n" + JSON_STEP + """\
  - name: b
    depends: a
    env:
      - Y: "got-${A}"
      - Z: "f=${A.f} n=${A.n[0]} $D"
      - W: "${Z}!"
    command: printf '%s\\n' "$Y" "$Z" "$W" > b.txt
  - name: c
    env:
      - Y: "c-${A}-${NOPE}-$D"
    command: printf '%s\\n' "$Y" > c.txt
""")
    res = run(dag)
    assert res.code == 0, res.out + res.err
    whole = '{"go": "yes", "n": [3], "f": "eff", "items": ["x", "y"]}'
    assert (tmp_path / "b.txt").read_text() == f"got-{whole}\nf=eff n=3 dag\nf=eff n=3 dag!\n"
    # c does not depend on a: as before, A is empty there.
    assert (tmp_path / "c.txt").read_text() == "c---dag\n"


# ---------------------------------------------------------------------------------------
# Fan-out over nothing, values too big for the kernel


def test_parallel_with_no_items_fails_the_step(tmp_path):
    write(tmp_path / "g.yaml", "steps:\n  - command: touch sub-ran\n")
    dag = write(tmp_path / "p.yaml", """\
        steps:
          - name: var
            call: g.yaml
            parallel: ${NOPE}
          - name: list
            call: g.yaml
            parallel:
              items: []
        """)
    res = run(dag)
    assert res.code == 1, res.out + res.err
    assert "failed: var (parallel: no items" in res.out
    assert "`${NOPE}` expanded to nothing" in res.out
    assert "failed: list (parallel: no items" in res.out
    assert not (tmp_path / "sub-ran").exists()


def test_an_output_over_128_kib_is_named_when_a_dependent_cannot_start(tmp_path):
    dag = write(tmp_path / "b.yaml", """\
        steps:
          - name: a
            command: head -c 200000 /dev/zero | tr '\\0' x
            output: BIG
          - name: featured
            depends: a
            command: touch f.txt
          - name: plain
            command: touch p.txt
            env:
              - HUGE: "`head -c 140000 /dev/zero | tr '\\\\0' y`"
        """)
    res = run(dag)
    assert res.code == 1, res.out + res.err
    assert "Argument list too long: an environment value or the command is over 128 KiB " \
        "(output `BIG` holds 200000 bytes)" in res.out, res.out
    assert "(variable `HUGE` holds 140000 bytes)" in res.out, res.out
