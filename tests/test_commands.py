"""The record commands end to end: status, history, logs, retry, stop, dry."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spectools import STUBBORN_DAG, dagfast
from outputs import printed, started_printing


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def only_run(home: Path) -> Path:
    (run,) = [p for p in (home / "runs").glob("*/*") if p.is_dir()]
    return run


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(pid)
        except OSError:
            pass
    return out


@pytest.fixture
def failed_run(tmp_path):
    """A run of `fix.yaml` that failed:  a -> b (fails until `fixed` exists) -> c;  d."""
    dag = write(tmp_path / "fix.yaml", """\
        steps:
          - name: a
            command: echo a >> runs.txt
          - name: b
            command: echo b >> runs.txt; echo to-err >&2; test -e fixed
            depends: a
          - name: c
            command: echo c >> runs.txt
            depends: b
          - name: d
            command: echo d >> runs.txt; echo d-out
        """)
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 1
    return dag, home, only_run(home)


def test_status_prints_a_header_and_one_line_a_step(failed_run):
    dag, home, run = failed_run
    res = dagfast("status", run.name, home=home)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == f"dag:     fix ({dag})"
    assert lines[1] == f"run:     {run.name}"
    assert lines[2] == "status:  failed"
    assert re.fullmatch(r"started: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}, took \d+\.\d\ds", lines[3])
    assert re.fullmatch(r"cost:    \d+\.\d\ds CPU in all steps", lines[4])
    assert lines[5] == ""
    assert lines[6].split() == ["step", "status", "duration", "exit", "cpu", "peak", "mem", "error"]
    rows = [re.sub(r"\d+\.\d\ds", "T", line).split(None, 6) for line in lines[7:]]
    assert rows == [
        ["a", "succeeded", "T", "0", "T", "-"],
        ["b", "failed", "T", "1", "T", "-", "exit status 1"],
        ["c", "aborted", "-", "-", "-", "-", "upstream failed"],
        ["d", "succeeded", "T", "0", "T", "-"],
    ]
    # By DAG file, by DAG name and with no argument: the same (latest) run.
    for target in ([str(dag)], ["fix"], []):
        assert dagfast("status", *target, home=home).out == res.out


def test_status_json_is_one_document(failed_run):
    dag, home, run = failed_run
    doc = json.loads(dagfast("status", "--json", run.name, home=home).out)
    assert {k: doc[k] for k in ("dag", "run_id", "attempt", "status", "interrupted")} == {
        "dag": "fix", "run_id": run.name, "attempt": 1, "status": "failed", "interrupted": False}
    assert [(s["name"], s["status"], s["exit_code"]) for s in doc["steps"]] == [
        ("a", "succeeded", 0), ("b", "failed", 1), ("c", "aborted", None), ("d", "succeeded", 0)]
    assert doc["duration"] >= 0 and doc["steps"][0]["duration"] >= 0


def test_status_and_history_of_nothing_exit_1(tmp_path):
    home = tmp_path / "home"
    res = dagfast("status", home=home)
    assert res.code == 1 and "no run recorded" in res.err
    res = dagfast("status", "nope", home=home)
    assert res.code == 1 and "no run `nope`" in res.err
    res = dagfast("history", "nope", home=home)
    assert res.code == 1 and "no runs of `nope`" in res.err
    assert dagfast("status", "--bogus", home=home).code == 2


def test_history_lists_runs_newest_first(failed_run, tmp_path):
    dag, home, first = failed_run
    (tmp_path / "fixed").touch()
    assert dagfast("run", "--quiet", str(dag), home=home).code == 0
    res = dagfast("history", str(dag), home=home)
    assert res.code == 0
    lines = res.out.splitlines()
    assert lines[0].split() == ["run", "status", "started", "took", "try", "steps"]
    assert len(lines) == 3
    assert lines[1].split()[1] == "succeeded" and lines[2].split()[0] == first.name
    assert lines[2].split()[1] == "failed"
    assert lines[2].endswith("1 failed, 1 aborted, 2 succeeded")
    assert dagfast("history", "-n", "1", "fix", home=home).out.count("\n") == 2


def test_logs_prints_stdout_stderr_and_all_steps(failed_run):
    dag, home, run = failed_run
    res = dagfast("logs", run.name, "d", home=home)
    assert (res.code, res.out) == (0, "d-out\n")
    assert dagfast("logs", run.name, "b", "--stderr", home=home).out == "to-err\n"
    assert dagfast("logs", run.name, "3", home=home).out == "d-out\n"  # by id
    assert dagfast("logs", run.name, home=home).out == "==> d <==\nd-out\n"
    res = dagfast("logs", run.name, "zz", home=home)
    assert res.code == 1 and "no step `zz`" in res.err
    assert dagfast("logs", "nope", home=home).code == 1


def test_logs_follow_prints_until_the_run_ends(tmp_path):
    home = tmp_path / "home"
    dag = write(tmp_path / "f.yaml", """\
        steps:
          - name: talk
            command: for i in 1 2 3; do echo line $i; sleep 0.3; done
        """)
    env = dict(os.environ, DAGFAST_HOME=str(home))
    run = subprocess.Popen([sys.executable, "-m", "dagfast", "run", "-q", str(dag)], env=env,
                           stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while started_printing(home) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    run_id = only_run(home).name
    res = dagfast("logs", "--follow", run_id, "talk", home=home, timeout=30)
    assert run.wait(timeout=10) == 0
    assert (res.code, res.out) == (0, "line 1\nline 2\nline 3\n")


def test_retry_reruns_what_did_not_succeed_in_the_same_run(failed_run, tmp_path):
    dag, home, run = failed_run
    (tmp_path / "fixed").touch()
    res = dagfast("retry", run.name, home=home)
    assert res.code == 0, res.out + res.err
    assert "attempt 2" in res.out and "2 of 4 steps" in res.out
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["a", "b", "b", "c", "d"]
    doc = json.loads(dagfast("status", "--json", run.name, home=home).out)
    assert doc["status"] == "succeeded" and doc["attempt"] == 2
    assert printed(run, 1, "err", attempt=1) == "to-err\n"  # the first execution's
    assert printed(run, 3) == "d-out\n"  # kept from attempt 1
    res = dagfast("retry", run.name, home=home)
    assert res.code == 0 and "nothing to retry" in res.out
    assert dagfast("retry", "nope", home=home).code == 1


def test_retry_step_reruns_only_that_step_and_keeps_the_others_true(failed_run, tmp_path):
    dag, home, run = failed_run
    res = dagfast("retry", run.name, "--step", "d", home=home)
    assert res.code == 1  # b still failed: the run's status stays true
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["a", "b", "d", "d"]
    doc = json.loads(dagfast("status", "--json", run.name, home=home).out)
    assert [s["status"] for s in doc["steps"]] == ["succeeded", "failed", "aborted", "succeeded"]
    assert doc["status"] == "failed" and doc["attempt"] == 2


def test_stop_ends_every_process_of_the_run(tmp_path):
    # Grandchildren that ignore SIGTERM included; `never` must not start.
    home = tmp_path / "home"
    dag = write(tmp_path / "long.yaml", STUBBORN_DAG)
    env = dict(os.environ, DAGFAST_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids_file = tmp_path / "pids.txt"
    deadline = time.monotonic() + 20
    while not (pids_file.exists() and len(pids_file.read_text().split()) >= 3):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = [int(p) for p in pids_file.read_text().split()]
    run_id = only_run(home).name
    res = dagfast("stop", run_id, home=home)
    assert res.code == 0, res.err
    assert res.out == f"dagfast: run {run_id} stopped: aborted\n"
    proc.communicate(timeout=10)
    assert proc.returncode == 143
    assert alive(pids) == []
    assert not (tmp_path / "never-ran").exists()
    doc = json.loads(dagfast("status", "--json", run_id, home=home).out)
    assert doc["status"] == "aborted"
    assert [s["status"] for s in doc["steps"]] == ["aborted", "aborted", "not_started"]
    res = dagfast("stop", run_id, home=home)
    assert res.code == 1 and "is not running (it is aborted)" in res.err
    assert dagfast("stop", "nope", home=home).code == 1


def test_dry_shows_the_start_order_and_runs_nothing(tmp_path):
    #   setup -> process_a -> combine
    #         -> process_b ->
    home = tmp_path / "home"
    dag = write(tmp_path / "p.yaml", """\
        maxActiveSteps: 1
        steps:
          - name: setup
            command: touch ran
          - name: process_a
            command: touch ran
            depends: setup
          - name: process_b
            command: touch ran
            depends: setup
          - name: combine
            command: touch ran
            depends: [process_a, process_b]
        """)
    res = dagfast("dry", "--max-active-steps", "0", str(dag), home=home)
    assert res.code == 0, res.err
    assert res.out == textwrap.dedent("""\
        dry run of p: 4 steps, maxActiveSteps unlimited; nothing is started
        round  step       after
            1  setup
            2  process_a  setup
            2  process_b  setup
            3  combine    process_a, process_b
        """)
    res = dagfast("dry", str(dag), home=home)
    assert [line.split()[:2] for line in res.out.splitlines()[2:]] == [
        ["1", "setup"], ["2", "process_a"], ["3", "process_b"], ["4", "combine"]]
    assert not (tmp_path / "ran").exists() and not home.exists()
    bad = write(tmp_path / "bad.yaml", "steps:\n  - name: a\n    depends: zz\n    command: x\n")
    assert dagfast("dry", str(bad), home=home).code == 2


def test_help_documents_the_exit_statuses():
    for command in ("status", "history", "logs", "retry", "stop", "dry"):
        res = dagfast(command, "--help")
        assert res.code == 0 and "exit statuses" in res.out, command


def test_one_unreadable_record_is_one_row_of_history(failed_run, tmp_path):
    dag, home, first = failed_run
    (tmp_path / "fixed").touch()
    assert dagfast("run", "--quiet", str(dag), home=home).code == 0
    latest = max((home / "runs" / "fix").iterdir())
    (latest / "journal").write_bytes(b"")
    (latest / "status.json").write_text("garbage")
    res = dagfast("history", str(dag), home=home)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert len(lines) == 3
    assert lines[1].split()[:2] == [latest.name, "unreadable"]
    assert lines[1].endswith(f"the record of run `{latest.name}` is unreadable: "
                             "corrupt status.json, empty journal")
    assert lines[2].split()[:2] == [first.name, "failed"]
    # `status` of the DAG reads its latest run: one line that says which and why.
    for target in ([str(dag)], ["fix"], [latest.name], []):
        res = dagfast("status", *target, home=home)
        assert res.code == 1 and res.out == ""
        assert res.err == (f"dagfast: the record of run `{latest.name}` is unreadable: "
                           "corrupt status.json, empty journal\n")
    assert dagfast("status", first.name, home=home).code == 0


def test_an_interrupted_run_stays_at_its_last_record(tmp_path):
    #   a -> b      the engine died just after b started
    from dagfast.records.journal import frames
    from dagfast.records.read import read_run

    home = tmp_path / "home"
    dag = write(tmp_path / "ab.yaml", """\
        steps:
          - name: a
            command: sleep 0.1
          - name: b
            command: 'true'
            depends: a
        """)
    assert dagfast("run", "--quiet", str(dag), home=home).code == 0
    run = only_run(home)
    # Frames: [begin], [start a], [end a, start b], [end b], [finish]: keep three.
    whole = (run / "journal").read_bytes()
    end = sum(8 + len(p) for p in frames(whole)[0][:3])
    (run / "journal").write_bytes(whole[:end])
    (run / "status.json").unlink()
    state = read_run(str(run))
    assert state.interrupted and state.last_recorded_at == state.steps[1].started_at
    took = state.steps[1].started_at - state.started_at
    assert took >= 0.1

    res = dagfast("status", run.name, home=home)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[2] == (f"status:  interrupted: its process (pid {state.pid}) is gone, 1 step "
                        f"was running; `dagfast retry {run.name}` finishes it")
    assert lines[3].endswith(f", interrupted after {took:.2f}s") and "running" not in lines[3]
    (row_b,) = [line for line in lines if line.startswith("b ")]
    assert row_b.split() == ["b", "interrupted", "-", "-", "-", "-"]
    doc = json.loads(dagfast("status", "--json", run.name, home=home).out)
    assert doc["status"] == "interrupted" and doc["duration"] == round(took, 6)
    assert doc["finished_at"] is None

    res = dagfast("history", str(dag), home=home)
    row = res.out.splitlines()[1]
    assert row.split()[1] == "interrupted" and f" {took:.2f}s " in row
    assert row.endswith("  1 succeeded, 1 interrupted") and "running" not in row


def test_read_commands_on_a_home_under_a_file_are_one_line_errors(tmp_path, failed_run):
    dag, _, run = failed_run
    (tmp_path / "afile").write_text("")
    home = tmp_path / "afile" / "home"
    for args in (["status"], ["status", "fix"], ["status", run.name], ["history", str(dag)],
                 ["logs", run.name], ["retry", run.name], ["stop", run.name]):
        res = dagfast(*args, home=home)
        assert res.code == 1, (args, res.err)
        assert res.err.count("\n") == 1 and "Not a directory" in res.err, (args, res.err)
        assert "internal error" not in res.err and "Traceback" not in res.err
