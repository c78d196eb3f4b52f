"""The run's output store (records/outstore.py, exec/outstore.h) from outside: what
steps print lands in two files per run, per step and execution, whatever their
background children do, a kill -9 or a retry; `logs --attempt` reads any execution."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from outputs import printed, the_run
from spectools import dagfast

from dagfast.records.outstore import Output


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def wait_for(check, what: str, proc=None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.01)


def test_a_background_childs_late_output_lands_in_its_own_steps_log(tmp_path):
    # `early` ends at once and leaves a child that prints after it ended; `later`
    # runs meanwhile, and waits for the child's line before it ends.
    flag = tmp_path / "printed"
    dag = write(tmp_path / "bg.yaml", f"""\
        steps:
          - name: early
            command: sh -c '(sleep 0.3; echo late; touch {flag}) & echo first'
          - name: later
            command: sh -c 'echo own; while [ ! -e {flag} ]; do sleep 0.01; done'
            depends: early
        """)
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 0, res.out + res.err
    run = the_run(home)
    assert printed(run, 0) == "first\nlate\n"
    assert printed(run, 1) == "own\n"
    # It ended when its own process did, not when the child let go of the pipe.
    assert "succeeded  early" in res.out.split("started    later")[0]


def test_logs_attempt_reads_each_execution_and_names_what_is_not_there(tmp_path):
    counter = tmp_path / "n"
    dag = write(tmp_path / "flaky.yaml", f"""\
        steps:
          - name: flaky
            command: sh -c 'n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); echo $n > {counter}; echo try $n; echo oops $n >&2; [ $n -ge 3 ]'
            retryPolicy: {{limit: 3, intervalSec: 0}}
        """)
    home = tmp_path / "home"
    assert dagfast("run", str(dag), home=home).code == 0
    got = [dagfast("logs", "flaky", "flaky", "--attempt", str(k), home=home).out for k in (1, 2, 3)]
    assert got == ["try 1\n", "try 2\n", "try 3\n"]
    err = dagfast("logs", "flaky", "flaky", "--stderr", "--attempt", "2", home=home)
    assert err.out == "oops 2\n"
    assert dagfast("logs", "flaky", "flaky", home=home).out == "try 3\n"  # the latest
    res = dagfast("logs", "flaky", "flaky", "--attempt", "4", home=home)
    assert res.code != 0 and "ran 3 times: no attempt 4" in res.err
    res = dagfast("logs", "flaky", "flaky", "--attempt", "0", home=home)
    assert res.code != 0 and "must be 1 or more" in res.err


def test_kill_9_mid_output_keeps_what_was_stored_and_retry_appends(tmp_path):
    # `talk` prints a numbered line every few milliseconds until a flag exists; the
    # engine is killed with SIGKILL in the middle of it.
    flag = tmp_path / "go"
    dag = write(tmp_path / "talk.yaml", f"""\
        steps:
          - name: talk
            command: sh -c 'i=0; while [ ! -e {flag} ]; do i=$((i+1)); echo line $i; sleep 0.002; done; echo done'
          - name: after
            command: echo after
            depends: talk
        """)
    home = tmp_path / "home"
    env = dict(os.environ, DAGFAST_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", "-q", str(dag)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def lines_stored() -> int:
        runs = list((home / "runs").glob("*/*/output"))
        if not runs:
            return 0
        with Output(str(runs[0].parent)) as out:
            return out.read(0, 0).count(b"\n")

    wait_for(lambda: lines_stored() >= 50, "50 stored lines", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    run = the_run(home)
    # Whatever the store acknowledged reads back whole, in order, lines never torn.
    shown = dagfast("logs", run.name, "talk", home=home)
    assert shown.code == 0
    lines = shown.out.splitlines()
    assert len(lines) >= 50
    assert lines == [f"line {k}" for k in range(1, len(lines) + 1)]
    # A torn record at the end (a write cut by the kill) is cut back by the retry.
    with open(run / "output", "ab") as f:
        f.write(b"\xd7\x00torn")
    flag.touch()
    res = dagfast("retry", run.name, home=home)
    assert res.code == 0, res.out + res.err
    assert printed(run, 0, attempt=1).splitlines()[: len(lines)] == lines
    assert printed(run, 0).endswith("done\n")  # the retry's execution, appended
    assert printed(run, 1) == "after\n"
    with Output(str(run)) as out:
        assert out.executions(0) == 2


def test_a_run_leaves_a_handful_of_files_whatever_its_size(tmp_path):
    # The files do not grow with the steps: 2,000 here (a 20,000-step run leaves 6 too:
    # see docs/performance.md), half of them printing a line.
    n = 2000
    dag = tmp_path / "wide.yaml"
    dag.write_text("maxActiveSteps: 64\nsteps:\n" + "".join(
        f"  - name: s{i}\n    command: {'echo hi' if i % 2 else 'true'}\n" for i in range(n)))
    home = tmp_path / "home"
    res = dagfast("run", "-q", str(dag), home=home, timeout=600)
    assert res.code == 0, res.err
    run = the_run(home)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) < 20, sorted(p.name for p in files)
    with Output(str(run)) as out:
        assert out.read(1, 0) == b"hi\n" and out.read(2, 0) == b""
    # 40 bytes of index per step, and 24 bytes of framing per record of output.
    assert (run / "output.idx").stat().st_size == n * 40
    assert (run / "output").stat().st_size == n // 2 * (24 + 3)


def test_a_gigabyte_of_output_keeps_the_engine_small(tmp_path):
    dag = write(tmp_path / "loud.yaml", """\
        steps:
          - name: loud
            command: head -c 1G /dev/zero
        """)
    code = textwrap.dedent(f"""\
        import dagfast
        r = dagfast.run(dagfast.load({str(dag)!r}))
        print(r.step("loud").status.label)
        for line in open("/proc/self/status"):
            if line.startswith(("VmHWM:", "VmRSS:")):
                print(line.split()[0], int(line.split()[1]) // 1024)
        """)
    home = tmp_path / "home"
    env = dict(os.environ, DAGFAST_HOME=str(home))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    status, hwm = done.stdout.splitlines()[:2]
    try:
        assert status == "succeeded"
        with Output(str(the_run(home))) as out:
            assert out.total(0, 0) == 1 << 30
            assert out.tail(0, 0, 16) == b"\0" * 16
        # MiB (the bound): 29 measured, 15 of them the interpreter's own; the
        # output streams through 64 KiB at a time.
        assert int(hwm.split()[1]) < 50, done.stdout
    finally:
        os.unlink(the_run(home) / "output")  # a gigabyte is not left in /tmp


def test_dagus_per_step_variables_name_real_files_made_only_for_the_steps_that_use_them(tmp_path):
    dag = write(tmp_path / "vars.yaml", """\
        steps:
          - name: talk
            command: sh -c 'echo out-line; echo err-line >&2; until grep -q out-line "$DAG_RUN_STEP_STDOUT_FILE"; do sleep 0.01; done; cp "$DAG_RUN_STEP_STDOUT_FILE" seen.txt'
          - name: quiet
            command: sh -c 'echo "[$DAG_RUN_STEP_STDOUT_FILE]" > quiet.txt'
            depends: talk
          - name: bad
            command: sh -c 'echo broken >&2; exit 3'
            depends: quiet
        handlerOn:
          failure:
            command: sh -c 'cp "$DAG_RUN_LOG_FILE" mailed.txt'
        """)
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home, cwd=tmp_path)
    assert res.code == 1, res.out + res.err
    run = the_run(home)
    # The step's own files: what it printed reaches them while it runs (the pump copies
    # it as it stores it: the step waits for its line), then all of it.
    assert (tmp_path / "seen.txt").read_text() == "out-line\n"
    assert (run / "steps" / "0.out").read_text() == "out-line\n"
    assert (run / "steps" / "0.err").read_text() == "err-line\n"
    # `quiet` names it too (in quotes inside its command): only steps that never name
    # the variables get no files, and see no variable.
    assert sorted(p.name for p in (run / "steps").iterdir()) == ["0.err", "0.out", "1.err", "1.out"]
    # The failure handler attaches the run's log: every line up to the failure.
    mailed = (tmp_path / "mailed.txt").read_text()
    assert "succeeded  talk" in mailed and "failed     bad" in mailed
    assert (run / "run.log").read_text().startswith(mailed)


def test_verbose_shows_sub_runs_output_by_address(tmp_path):
    write(tmp_path / "sub.yaml", """\
        steps:
          - name: work
            command: sh -c 'echo "hello from $ITEM"'
        """)
    dag = write(tmp_path / "par.yaml", """\
        steps:
          - name: fan
            call: sub.yaml
            parallel: [a, b]
          - name: one
            call: sub.yaml
            params: ITEM=z
        """)
    res = dagfast("run", "-v", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    lines = res.out.splitlines()
    for line in ("fan[0]/work | hello from a", "fan[1]/work | hello from b",
                 "one/work | hello from z"):
        assert line in lines, res.out
