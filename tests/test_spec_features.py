"""The spec page's remaining examples, and every feature of issue 3, run for real.

Each test runs `dagfast run` on a DAG in a temporary directory, with stub tools that log
when they start and end, and checks what happened from outside: the exit status, which
commands ran, how many ran at once, the files written. No test depends on timing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spectools import (
    CALL_DAG, CALL_SUB_DAG, CONTINUE_ON_DAG, EXAMPLES, FAN_OUT_DAG, FAN_OUT_ITEM_DAG,
    PRECONDITIONS_DAG, Stubs, dagfast, max_overlap, run_dag as run,
)


def example(tmp_path: Path, slug: str) -> Path:
    dag = tmp_path / "dag.yaml"
    shutil.copy(EXAMPLES / "spec" / f"{slug}.yaml", dag)
    return dag


def own_tmp(tmp_path: Path, text: str) -> str:
    """`text` with the page's `/tmp/` paths moved to the test's own `tmp/`: tests that run
    at once (pytest-xdist, test_dask_spec.py's copies, other checkouts) never share a file."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return re.sub(r"(?<![\w./-])/tmp/", f"{tmp_path}/tmp/", text)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def summary(out: str) -> str:
    """The run's summary line (`<status>: <dag>, N steps ...`)."""
    return [x for x in out.splitlines() if re.match(r"[a-z_]+: .*, \d+ steps", x)][-1]


def step_lines(out: str) -> dict[str, str]:
    """Each step's final status word from the console lines."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"  (succeeded|failed|aborted|skipped|partially_succeeded)\s+(.+?)(?: \d+\.\d\ds)?(?: \(.*\))?$", line)
        if m:
            found[m.group(2)] = m.group(1)
    return found


# ---------------------------------------------------------------------------------------
# The spec page's examples


@pytest.mark.parametrize("limit", [None, "2"])
def test_environment_based_runs_at_most_max_parallel(tmp_path, limit):
    # The page's `# ... more tasks`, filled in: eight tasks.
    dag = example(tmp_path, "environment-based")
    text = dag.read_text().replace(
        "  # ... more tasks\n",
        "".join(f"  - name: task{i}\n    command: process.sh input{i}\n" for i in range(2, 9)),
    )
    dag.write_text(text)
    s = Stubs(tmp_path, ["process.sh"], sleep=0.5, peers=("process.sh",),
              gather=int(limit) if limit else 5)
    env = {"MAX_PARALLEL": limit} if limit else {}
    if not limit:
        env["MAX_PARALLEL"] = ""  # unset and empty both mean the default
    res = run(dag, env=env, stubs=s)
    assert res.code == 0, res.err
    assert len(s.calls()) == 8
    assert max_overlap(s.calls()) == (int(limit) if limit else 5)


def test_time_based_rewrites_max_active_steps_in_dag_yaml(tmp_path):
    dag = example(tmp_path, "time-based")
    res = run(dag)
    assert res.code == 0, res.err
    # The sed in the second step sees MAX_STEPS (the first step's output) and rewrites
    # the file it lives in: its own line now ends with the number.
    line = [x for x in dag.read_text().splitlines() if "sed -i" in x][0]
    assert re.search(r'sed -i "s/maxActiveSteps: (10|3)$', line), line


def test_fan_out_pattern_captures_files_then_processes_in_parallel(tmp_path):
    dag = example(tmp_path, "fan-out-pattern")
    (tmp_path / "data").mkdir()
    for i in (1, 2, 3):
        (tmp_path / "data" / f"file{i}.csv").write_text("x\n")
    s = Stubs(tmp_path, ["process.py"], peers=("process.py",), gather=3)
    res = run(dag, stubs=s)
    assert res.code == 0, res.err
    calls = s.calls()
    assert s.labels() == [f"process.py data/file{i}.csv" for i in (1, 2, 3)]
    assert max_overlap(calls) == 3
    from dagfast.loader import load
    from dagfast.runtime.session import run as api_run

    result = api_run(load(dag, environ=dict(os.environ, **s.env())), home_dir=str(tmp_path / "h2"))
    assert result.outputs == {"FILES": "data/file1.csv\ndata/file2.csv\ndata/file3.csv"}


def test_dynamic_fan_out_runs_the_generated_steps_in_parallel(tmp_path):
    dag = example(tmp_path, "dynamic-fan-out")
    dag.write_text(own_tmp(tmp_path, dag.read_text()))
    (tmp_path / "data").mkdir()
    for name in ("a", "b"):
        (tmp_path / "data" / f"{name}.csv").write_text("x\n")
    s = Stubs(tmp_path, ["process.py"], peers=("process.py",), gather=2)
    res = run(dag, stubs=s)
    assert res.code == 0, res.err
    assert "- name: process_a" in (tmp_path / "tmp" / "dynamic_steps.yaml").read_text()
    assert s.labels() == ["process.py data/a.csv", "process.py data/b.csv"]
    assert max_overlap(s.calls()) == 2


def _risky(tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / "stub-bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    "one, two, code, status",
    [
        # both fail and write nothing: `check results` runs anyway and fails the run
        ("exit 1", "exit 1", 1, "failed"),
        # one fails after writing its result: covered by continueOn -> partially_succeeded
        ("touch /tmp/result1; exit 1", "touch /tmp/result2", 0, "partially_succeeded"),
        ("touch /tmp/result1", "touch /tmp/result2", 0, "succeeded"),
    ],
)
def test_error_handling_continue_on_failure(tmp_path, one, two, code, status):
    dag = example(tmp_path, "error-handling")
    dag.write_text(own_tmp(tmp_path, dag.read_text()))
    _risky(tmp_path, "risky_operation1.sh", own_tmp(tmp_path, one))
    _risky(tmp_path, "risky_operation2.sh", own_tmp(tmp_path, two))
    s = Stubs(tmp_path, [])
    res = run(dag, stubs=s)
    assert res.code == code, res.out + res.err
    assert summary(res.out).startswith(f"{status}: dag")
    assert "started    check results" in res.out


def test_progress_monitoring_completes_with_its_placeholders_filled(tmp_path):
    dag = example(tmp_path, "progress-monitoring")
    more = "".join(
        f"  - name: task{i}\n    command: |\n      do_work.sh\n      touch /tmp/done-task{i}\n"
        f"    depends: monitor\n\n" for i in range(2, 5)
    )
    text = dag.read_text().replace("  # ... more tasks\n", more)
    text = text.replace("[task1, task2, ...]", "[task1, task2, task3, task4]")
    dag.write_text(own_tmp(tmp_path, text))
    s = Stubs(tmp_path, ["do_work.sh"], sleep=0.2, peers=("do_work.sh",), gather=4)
    res = run(dag, stubs=s)
    assert res.code == 0, res.err
    assert len(s.calls()) == 4 and max_overlap(s.calls()) == 4
    pid = int((tmp_path / "tmp" / "monitor.pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()  # `stop monitor` killed it


def test_multiple_dag_runs_loads_and_a_run_without_steps_succeeds(tmp_path):
    dag = example(tmp_path, "multiple-dag-runs")
    res = run(dag)
    assert res.code == 0, res.err
    from dagfast.loader import load

    d = load(dag)
    assert (d.max_active_runs, d.schedule, d.skip_if_successful) == (1, ("*/5 * * * *",), True)


def test_max_active_runs_refuses_a_second_concurrent_run(tmp_path):
    # The second run would queue; with --no-queue it exits 75 at once (more in
    # tests/test_runs_over_time.py).
    dag = write(tmp_path / "one.yaml", """\
        maxActiveRuns: 1
        steps:
          - command: touch started; while [ ! -e release ]; do sleep 0.02; done
        """)
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    first = subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)], env=env,
                             stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        res = dagfast("run", "--no-queue", str(dag), home=tmp_path / "home")
        assert res.code == 75, res.err
        assert "maxActiveRuns (1)" in res.err
    finally:
        (tmp_path / "release").touch()  # the first run holds its slot until now
        first.wait(timeout=60)
    assert first.returncode == 0


def test_parallel_sub_dags_run_their_regions_at_once(tmp_path):
    dag = example(tmp_path, "parallel-sub-dags")
    write(tmp_path / "process_region.yaml", """\
        params: REGION=nowhere
        steps:
          - name: process
            command: process_region.sh $REGION
        """)
    s = Stubs(tmp_path, ["process_region.sh"], peers=("process_region.sh",), gather=3)
    res = run(dag, stubs=s)
    assert res.code == 0, res.err
    assert s.labels() == [f"process_region.sh {r}" for r in
                          ("ap-southeast-1", "eu-west-1", "us-east-1")]
    assert max_overlap(s.calls()) == 3


def test_resource_awareness_step_env_reaches_the_step(tmp_path):
    dag = example(tmp_path, "resource-awareness")
    _risky(tmp_path, "cpu_intensive.py", 'echo "threads=$OMP_NUM_THREADS" > threads.txt')
    res = run(dag, stubs=Stubs(tmp_path, []))
    assert res.code == 0, res.err
    assert (tmp_path / "threads.txt").read_text() == "threads=1\n"


# ---------------------------------------------------------------------------------------
# Variables and params


def test_params_string_overridden_on_the_command_line(tmp_path):
    dag = write(tmp_path / "p.yaml", """\
        params: "A=1 B=2 first second"
        env:
          - GREETING: hi
        steps:
          - command: echo "$GREETING A=$A B=${B} 1=$1 2=$2" > out.txt
        """)
    assert run(dag).code == 0
    assert (tmp_path / "out.txt").read_text() == "hi A=1 B=2 1=first 2=second\n"
    assert run(dag, "B=3", "one").code == 0
    assert (tmp_path / "out.txt").read_text() == "hi A=1 B=3 1=one 2=second\n"


def test_params_map_and_list_forms_and_integer_fields_from_params(tmp_path):
    dag = write(tmp_path / "p.yaml", """\
        params:
          - N: 2
          - WHO: "`echo world`"
        maxActiveSteps: ${N}
        steps:
          - command: echo "$WHO" > who.txt
        """)
    assert run(dag).code == 0
    assert (tmp_path / "who.txt").read_text() == "world\n"
    from dagfast.loader import load

    assert load(dag).max_active_steps == 2
    res = run(dag, "N=two")
    assert res.code == 2
    assert "`maxActiveSteps` is `two` after expansion; expected an integer >= 0" in res.err


def test_integer_field_that_is_not_an_integer_names_field_and_value(tmp_path):
    dag = write(tmp_path / "t.yaml", "timeoutSec: ${T:-soon}\nsteps: [true]\n")
    res = run(dag)
    assert res.code == 2
    assert "`timeoutSec` is `soon` after expansion; expected an integer >= 0" in res.err


def test_dotenv_and_stdout_stderr_files(tmp_path):
    (tmp_path / ".env").write_text("# comment\nexport FROM_FILE='dotenv value'\n")
    dag = write(tmp_path / "d.yaml", """\
        dotenv: .env
        steps:
          - command: echo "$FROM_FILE"; echo oops >&2
            stdout: logs/out.txt
            stderr: logs/err.txt
        """)
    assert run(dag).code == 0
    assert (tmp_path / "logs/out.txt").read_text() == "dotenv value\n"
    assert (tmp_path / "logs/err.txt").read_text() == "oops\n"


# ---------------------------------------------------------------------------------------
# Outputs


def test_output_json_path_and_transitive_visibility(tmp_path):
    #   a (J) -> b -> c ;  d (independent: does not see J)
    dag = write(tmp_path / "o.yaml", """\
        steps:
          - name: a
            command: >-
              echo '  {"x": {"y": [5, 6]}}  '
            output: J
          - name: b
            command: "true"
            depends: a
          - name: c
            command: echo "${J.x.y[1]} $J" > c.txt
            depends: b
          - name: d
            command: echo "[$J]" > d.txt
        """)
    assert run(dag).code == 0
    assert (tmp_path / "c.txt").read_text() == '6 {"x": {"y": [5, 6]}}\n'
    assert (tmp_path / "d.txt").read_text() == "[]\n"


def test_output_larger_than_max_output_size_fails_the_step(tmp_path):
    dag = write(tmp_path / "big.yaml", """\
        maxOutputSize: 10
        steps:
          - name: big
            command: echo 0123456789abcdef
            output: BIG
        """)
    res = run(dag)
    assert res.code == 1
    assert "output exceeded maximum size limit of 10 bytes" in res.out


def test_output_capture_does_not_wait_for_background_children(tmp_path):
    dag = write(tmp_path / "bg.yaml", """\
        steps:
          - name: a
            command: (sleep 30 & echo $! > bg.pid) ; echo value
            output: V
          - name: b
            command: echo "$V" > v.txt
            depends: a
        """)
    try:
        assert run(dag).code == 0
        assert (tmp_path / "v.txt").read_text() == "value\n"
        # The run is over while the child that holds the log open still sleeps.
        assert _is_our_sleep(int((tmp_path / "bg.pid").read_text()))
    finally:
        pid_file = tmp_path / "bg.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else 0
        if pid and _is_our_sleep(pid):  # only the child this test started
            os.kill(pid, signal.SIGKILL)


def _is_our_sleep(pid: int) -> bool:
    """Whether `pid` is still the live `sleep 30` (not a zombie, not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return cmdline == b"sleep\x0030\x00" and state != "Z"


# ---------------------------------------------------------------------------------------
# Sub-DAGs and fan-out


def test_call_passes_params_and_returns_outputs_as_json(tmp_path):
    write(tmp_path / "sub.yaml", CALL_SUB_DAG)
    dag = write(tmp_path / "main.yaml", CALL_DAG)
    res = run(dag)
    assert res.code == 0, res.out + res.err
    assert (tmp_path / "res.txt").read_text() == "got given\n"


def test_a_failing_sub_dag_fails_its_step(tmp_path):
    write(tmp_path / "sub.yaml", "steps:\n  - command: exit 4\n")
    dag = write(tmp_path / "main.yaml", "steps:\n  - name: c\n    run: sub.yaml\n")
    res = run(dag)
    assert res.code == 1
    assert step_lines(res.out)["c"] == "failed"


def test_parallel_items_fan_out_with_max_concurrent(tmp_path):
    write(tmp_path / "one.yaml", FAN_OUT_ITEM_DAG)
    dag = write(tmp_path / "main.yaml", FAN_OUT_DAG)
    s = Stubs(tmp_path, ["work.sh"], peers=("work.sh",), gather=2)
    res = run(dag, stubs=s)
    assert res.code == 0, res.out + res.err
    assert s.labels() == [f"work.sh {x} {x}" for x in "abcd"]
    assert max_overlap(s.calls()) == 2
    assert (tmp_path / "n.txt").read_text() == "4\n"


def test_parallel_map_items_become_named_params(tmp_path):
    write(tmp_path / "one.yaml", "steps:\n  - command: work.sh $REGION\n")
    dag = write(tmp_path / "main.yaml", """\
        steps:
          - call: one.yaml
            parallel: [{REGION: north}, {REGION: south}]
        """)
    s = Stubs(tmp_path, ["work.sh"])
    assert run(dag, stubs=s).code == 0
    assert s.labels() == ["work.sh north", "work.sh south"]


def test_parallel_without_call_is_a_load_error(tmp_path):
    # A fan-out step runs its own command per item, or the DAG it calls: with neither,
    # there is nothing to run (a `command` step with `parallel:` is fine).
    dag = write(tmp_path / "bad.yaml", "steps:\n  - name: fan\n    parallel: [a]\n")
    res = run(dag)
    assert res.code == 2
    assert res.err.splitlines() == [
        f"{dag}:3:5: `parallel` runs something per item: give the step a `command` (or "
        "`script`), or `call` a DAG - at `$.steps[0].parallel`"
    ]


# ---------------------------------------------------------------------------------------
# Error handling and control


def test_continue_on_exit_code_output_and_mark_success(tmp_path):
    dag = write(tmp_path / "c.yaml", CONTINUE_ON_DAG)
    res = run(dag)
    assert res.code == 0, res.out
    assert (tmp_path / "after.txt").exists()
    lines = step_lines(res.out)
    assert (lines["code"], lines["out"], lines["marked"]) == ("failed", "failed", "succeeded")
    assert summary(res.out).startswith("partially_succeeded")


def test_continue_on_exit_code_that_does_not_match_stops_dependents(tmp_path):
    dag = write(tmp_path / "c.yaml", """\
        steps:
          - name: code
            command: exit 4
            continueOn: {exitCode: [3]}
          - name: after
            command: touch after.txt
            depends: code
        """)
    assert run(dag).code == 1
    assert not (tmp_path / "after.txt").exists()


def test_preconditions_skip_steps_and_dependents_unless_continue_on_skipped(tmp_path):
    #   no -> no_child ; maybe(continueOn.skipped) -> maybe_child ; yes
    dag = write(tmp_path / "p.yaml", PRECONDITIONS_DAG)
    res = run(dag)
    assert res.code == 0, res.out
    made = sorted(p.name for p in tmp_path.glob("*.txt"))
    assert made == ["maybe_child.txt", "yes.txt"]
    lines = step_lines(res.out)
    assert (lines["no"], lines["no_child"], lines["maybe"]) == ("skipped", "skipped", "skipped")


def test_dag_preconditions_unmet_runs_nothing_and_exits_zero(tmp_path):
    dag = write(tmp_path / "p.yaml", """\
        preconditions:
          - condition: "test -f nope"
        steps:
          - command: touch ran.txt
        """)
    res = run(dag)
    assert res.code == 0
    assert not (tmp_path / "ran.txt").exists()
    assert summary(res.out).startswith("aborted")


def test_step_timeout_kills_the_process_group_with_exit_124(tmp_path):
    dag = write(tmp_path / "t.yaml", """\
        steps:
          - name: slow
            command: (sleep 60; touch survived.txt) & echo $! > child.pid; sleep 60
            timeoutSec: 1
        """)
    res = run(dag)
    assert res.code == 1
    assert "step timed out after 1s" in res.out
    pid = int((tmp_path / "child.pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    status = next((tmp_path / "home" / "runs").glob("*/*/status.json"))
    import json

    (step,) = json.loads(status.read_text())["steps"]
    assert step[1] == 124


def test_dag_timeout_fails_the_run(tmp_path):
    dag = write(tmp_path / "t.yaml", """\
        timeoutSec: 1
        steps:
          - command: sleep 60
          - command: touch never.txt
            depends: cmd_1
        """)
    res = run(dag)
    assert res.code == 1
    assert not (tmp_path / "never.txt").exists()
    assert summary(res.out).startswith("failed")


def test_retry_policy_retries_until_success(tmp_path):
    dag = write(tmp_path / "r.yaml", """\
        steps:
          - name: flaky
            command: echo x >> tries; test $(wc -l < tries) -ge 3
            retryPolicy: {limit: 5, intervalSec: 0, exitCode: [1]}
          - name: never_retried
            command: echo y >> other; exit 2
            retryPolicy: {limit: 5, intervalSec: 0, exitCode: [1]}
        """)
    res = run(dag)
    assert res.code == 1
    assert (tmp_path / "tries").read_text().count("x") == 3
    assert (tmp_path / "other").read_text().count("y") == 1


def test_repeat_policy_until_condition_and_while_exit_code(tmp_path):
    dag = write(tmp_path / "r.yaml", """\
        steps:
          - name: until
            command: echo x >> until.txt
            repeatPolicy:
              repeat: until
              condition: "`wc -l < until.txt`"
              expected: "re:\\\\s*3"
              intervalSec: 0
          - name: while
            command: echo x >> while.txt; test $(wc -l < while.txt) -ge 2 && exit 0; exit 7
            repeatPolicy: {repeat: while, exitCode: [7], intervalSec: 0, limit: 10}
        """)
    res = run(dag)
    assert res.code == 0, res.out
    assert (tmp_path / "until.txt").read_text().count("x") == 3
    assert (tmp_path / "while.txt").read_text().count("x") == 2


def test_handlers_see_status_and_outputs(tmp_path):
    dag = write(tmp_path / "h.yaml", """\
        handlerOn:
          init:
            command: echo init >> events.txt
          success:
            command: echo "success $V" >> events.txt
          failure:
            command: echo failure >> events.txt
          exit:
            command: echo "exit $DAG_RUN_STATUS" >> events.txt
        steps:
          - command: echo hello
            output: V
        """)
    assert run(dag).code == 0
    assert (tmp_path / "events.txt").read_text() == "init\nsuccess hello\nexit succeeded\n"
    (tmp_path / "events.txt").unlink()
    write(dag, dag.read_text().replace("echo hello", "exit 1"))
    assert run(dag).code == 1
    assert (tmp_path / "events.txt").read_text() == "init\nfailure\nexit failed\n"


def test_cancel_handler_runs_when_the_run_is_stopped(tmp_path):
    # Both steps trap SIGINT and SIGTERM and write down which one came: `own` must get
    # its signalOnStop (SIGINT), `plain` the default SIGTERM.
    dag = write(tmp_path / "s.yaml", """\
        maxCleanUpTimeSec: 1
        handlerOn:
          cancel:
            command: echo "cancel $DAG_RUN_STATUS" > cancel.txt
        steps:
          - name: own
            signalOnStop: SIGINT
            command: |
              trap 'echo INT > own.sig; exit 0' INT
              trap 'echo TERM > own.sig; exit 0' TERM
              echo $$ > own.pid
              while :; do sleep 0.1; done
          - name: plain
            command: |
              trap 'echo INT > plain.sig; exit 0' INT
              trap 'echo TERM > plain.sig; exit 0' TERM
              echo $$ > plain.pid
              while :; do sleep 0.1; done
        """)
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)], env=env,
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"{n}.pid").exists() and (tmp_path / f"{n}.pid").read_text()
                  for n in ("own", "plain")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.terminate()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert (tmp_path / "own.sig").read_text() == "INT\n"
    assert (tmp_path / "plain.sig").read_text() == "TERM\n"
    assert (tmp_path / "cancel.txt").read_text() == "cancel aborted\n"


def test_delay_sec_on_the_dag_spaces_step_starts(tmp_path):
    dag = write(tmp_path / "d.yaml", """\
        delaySec: 2
        steps:
          - command: work.sh 1
          - command: work.sh 2
        """)
    s = Stubs(tmp_path, ["work.sh"], sleep=0.1)
    assert run(dag, stubs=s).code == 0
    a, b = s.calls()
    # The engine spaces the starts by 2 s; each process then takes its own time to begin
    # (under load the first one took 130 ms longer than the second): half the spacing
    # shows the delay without timing the machine.
    assert b.start >= a.start + 1.0


def test_wrong_fields_are_errors_with_paths(tmp_path):
    dag = write(tmp_path / "bad.yaml", """\
        handlerOn:
          sucess: {command: x}
        steps:
          - command: x
            retryPolicy: {limit: 2, intervalSecs: 1}
            continueOn: {failure: maybe}
        """)
    res = run(dag)
    assert res.code == 2
    err = res.err
    assert "unknown key `sucess` (did you mean `success`?) - at `$.handlerOn.sucess`" in err
    assert "- at `$.steps[0].retryPolicy.intervalSecs`" in err
    assert "- at `$.steps[0].continueOn.failure`" in err
    # A wrong value is reported before anything is evaluated; one that needs a variable
    # to be known, once the file's structure is valid.
    write(dag, "steps:\n  - command: x\n    signalOnStop: SIGFOO\n    timeoutSec: ${T:-x}\n")
    assert run(dag).err.splitlines() == [
        f"{dag}:3:19: `SIGFOO` is not a signal name (such as `SIGINT`) - at `$.steps[0].signalOnStop`",
    ]
    write(dag, "steps:\n  - command: x\n    signalOnStop: SIGINT\n    timeoutSec: ${T:-x}\n")
    assert run(dag).err.splitlines() == [
        f"{dag}:4:17: `timeoutSec` is `x` after expansion; expected an integer >= 0 - at `$.steps[0].timeoutSec`",
    ]
