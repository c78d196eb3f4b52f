"""`retry` finishes what the first attempt left: sub-DAG steps whose sub-run failed or
was stopped, and steps a killed engine left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spectools import dagfast


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def status_doc(target: str, home: Path) -> dict:
    res = dagfast("status", target, "--json", home=home)
    assert res.code == 0, res.err
    return json.loads(res.out)


def run_until_started(dag: Path, home: Path, started: Path, deadline: float):
    """`dagfast run DAG` in the background, once `started` exists (a step made it)."""
    env = dict(os.environ, DAGFAST_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not started.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    return proc


SUB = """\
    steps:
      - name: inner
        command: test -e {ok}
    """

CALLERS = {
    "run": """\
        steps:
          - name: call
            run: sub.yaml
        """,
    "call": """\
        steps:
          - name: call
            call: sub.yaml
        """,
    "parallel": """\
        steps:
          - name: call
            call: sub.yaml
            parallel:
              items: [one, two]
        """,
}


@pytest.mark.parametrize("form", sorted(CALLERS))
def test_retry_finishes_a_run_whose_sub_dag_failed(tmp_path, form):
    home = tmp_path / "home"
    write(tmp_path / "sub.yaml", SUB.format(ok=tmp_path / "ok"))
    dag = write(tmp_path / "dag.yaml", CALLERS[form])
    assert dagfast("run", str(dag), home=home).code == 1
    run_id = status_doc(str(dag), home)["run_id"]
    (tmp_path / "ok").touch()
    again = dagfast("retry", run_id, home=home)
    assert again.code == 0, again.out + again.err
    doc = status_doc(run_id, home)
    assert doc["status"] == "succeeded" and doc["attempt"] == 2
    if form == "parallel":
        # Items of a one-step sub-DAG run in the caller's engine: no sub-run directory;
        # each item's two executions (the failed one, the retry's) are in its record.
        assert not (home / "runs" / "dag" / run_id / "children").exists()
        runs = doc["steps"][0]["runs"]
        assert [(r["item"], r["status"], r["steps"][0]["attempts"]) for r in runs] == [
            (0, "succeeded", 2), (1, "succeeded", 2)]
        return
    # The first attempt's sub-runs are kept as they were, beside the retry's.
    children = sorted(p.name for p in (home / "runs" / "dag" / run_id / "children" / "runs"
                                       / "sub").iterdir())
    assert len(children) == 2, children


def test_retry_finishes_a_run_whose_sub_dag_was_stopped(tmp_path):
    home = tmp_path / "home"
    write(tmp_path / "sub.yaml", f"""\
        steps:
          - name: inner
            command: test -e {tmp_path}/ok || {{ touch {tmp_path}/started; sleep 60; }}
        """)
    dag = write(tmp_path / "dag.yaml", CALLERS["call"])
    proc = run_until_started(dag, home, tmp_path / "started", time.monotonic() + 120)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    (tmp_path / "ok").touch()
    run_id = status_doc(str(dag), home)["run_id"]
    again = dagfast("retry", run_id, home=home)
    assert again.code == 0, again.out + again.err
    assert status_doc(run_id, home)["status"] == "succeeded"


def test_retry_of_one_step_after_a_kill_keeps_the_killed_step_aborted_not_running(tmp_path):
    # `slow` runs when the engine is killed; `retry --step fast` runs `fast` only: the
    # console and the record agree that `slow` was aborted by the engine's death.
    home = tmp_path / "home"
    dag = write(tmp_path / "k.yaml", f"""\
        steps:
          - name: slow
            command: touch {tmp_path}/started; exec sleep 60
          - name: fast
            command: "true"
        """)
    deadline = time.monotonic() + 120
    proc = run_until_started(dag, home, tmp_path / "started", deadline)
    # The record says `slow` runs and `fast` ended (it is written in batches).
    while [s["status"] for s in status_doc(str(dag), home)["steps"]] != ["running",
                                                                         "succeeded"]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    run_id = status_doc(str(dag), home)["run_id"]
    res = dagfast("retry", "--step", "fast", run_id, home=home)
    assert res.code == 1, res.out + res.err  # `slow` never finished: the run failed
    assert "running" not in res.out.splitlines()[-2]
    assert "1 aborted, 1 succeeded" in res.out
    slow = status_doc(run_id, home)["steps"][0]
    assert slow["status"] == "aborted"
    assert slow["error"].startswith("interrupted: its engine died while it ran")
    assert "could not be kept" not in slow["error"]
