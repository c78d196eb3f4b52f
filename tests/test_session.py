"""One way to start a run (runtime/session.py): the limit in force, one exit-status rule
for `run` and `retry`, and `dry` as the real engine with an instant-exit executor."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from spectools import dagfast


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_the_limit_in_force_is_shown_by_the_banner_status_and_json(tmp_path):
    home = tmp_path / "home"
    dag = write(tmp_path / "three.yaml", """\
        maxActiveSteps: 3
        steps:
          - name: a
            command: "true"
          - name: b
            command: "true"
        """)
    res = dagfast("run", "--max-active-steps", "1", str(dag), home=home)
    assert res.code == 0, res.err
    assert "(2 steps, maxActiveSteps 1)" in res.out.splitlines()[0]
    shown = dagfast("status", str(dag), home=home)
    assert "limit:   maxActiveSteps 1" in shown.out.splitlines()
    doc = json.loads(dagfast("status", str(dag), "--json", home=home).out)
    assert doc["max_active_steps"] == 1
    events = dagfast("run", "--json", "--max-active-steps", "1", str(dag), home=home)
    started = json.loads(events.out.splitlines()[0])
    assert started["event"] == "run_started" and started["max_active_steps"] == 1
    # Without the flag, the file's value is the one in force.
    res = dagfast("run", str(dag), home=home)
    assert "(2 steps, maxActiveSteps 3)" in res.out.splitlines()[0]


def test_run_and_retry_exit_alike_for_a_run_whose_failures_continue_on(tmp_path):
    # `flaky` fails and continueOn lets the run go on: partially_succeeded, exit 0,
    # from `run` and from `retry` (which reruns `flaky`, failing again).
    home = tmp_path / "home"
    dag = write(tmp_path / "partial.yaml", """\
        steps:
          - name: flaky
            command: exit 3
            continueOn:
              failure: true
          - name: after
            command: "true"
            depends: flaky
        """)
    first = dagfast("run", str(dag), home=home)
    assert first.code == 0, first.err
    assert "partially_succeeded" in first.out
    run_id = json.loads(dagfast("status", str(dag), "--json", home=home).out)["run_id"]
    again = dagfast("retry", run_id, home=home)
    assert again.code == first.code, again.out + again.err
    assert json.loads(dagfast("status", run_id, "--json", home=home).out)["status"] == (
        "partially_succeeded"
    )


def test_retry_of_a_failed_run_exits_1_and_of_a_fixed_one_0(tmp_path):
    home = tmp_path / "home"
    dag = write(tmp_path / "fix.yaml", f"""\
        steps:
          - name: check
            command: test -e {tmp_path}/fixed
        """)
    assert dagfast("run", str(dag), home=home).code == 1
    run_id = json.loads(dagfast("status", str(dag), "--json", home=home).out)["run_id"]
    assert dagfast("retry", run_id, home=home).code == 1
    (tmp_path / "fixed").touch()
    assert dagfast("retry", run_id, home=home).code == 0


def test_dry_runs_the_engine_but_no_condition_sub_dag_or_command(tmp_path):
    #   check (precondition would touch a file) -> child (a sub-DAG that does not exist)
    home = tmp_path / "home"
    dag = write(tmp_path / "d.yaml", f"""\
        maxActiveSteps: 2
        steps:
          - name: check
            command: touch {tmp_path}/ran
            preconditions:
              - condition: "`touch {tmp_path}/evaluated; echo yes`"
                expected: "yes"
            retryPolicy:
              limit: 2
          - name: child
            call: missing-child.yaml
            depends: check
          - name: side
            command: touch {tmp_path}/ran
        """)
    res = dagfast("dry", str(dag), home=home)
    assert res.code == 0, res.err
    assert res.out == textwrap.dedent("""\
        dry run of d: 3 steps, maxActiveSteps 2; nothing is started
        round  step   after
            1  check
            1  side
            2  child  check
        """)
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "evaluated").exists()
    assert not home.exists()


def test_dry_takes_the_limit_from_the_command_line(tmp_path):
    dag = write(tmp_path / "w.yaml", """\
        maxActiveSteps: 4
        steps:
          - echo a
          - echo b
          - echo c
        """)
    res = dagfast("dry", "--max-active-steps", "1", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.err
    rounds = [line.split()[0] for line in res.out.splitlines()[2:]]
    assert rounds == ["1", "2", "3"]
    bad = dagfast("dry", "--max-active-steps", "-1", str(dag), home=tmp_path / "home")
    assert bad.code == 2 and "--max-active-steps must be 0 (unlimited) or more" in bad.err


def test_version_is_a_flag_and_a_command():
    flag, command = dagfast("--version"), dagfast("version")
    assert (flag.code, command.code) == (0, 0)
    assert flag.out == command.out and flag.out.startswith("dagfast ")
