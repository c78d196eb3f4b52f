"""A run stopped while it waits for a `maxActiveRuns` slot says so, and its record keeps
the time it queued and why it never started."""

from __future__ import annotations

import json
import signal
import time

import pytest

from dagfast.records import runslots
from spectools import dagfast
from test_runs_over_time import finish, full_env, one_at_a_time, start, wait_for


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_run_stopped_while_queued_says_so_and_keeps_its_queue_time(tmp_path, sig):
    dag = one_at_a_time(tmp_path, "sh -c 'touch started.$N; while [ ! -e go ]; do sleep 0.01; done'")
    env, home = full_env(tmp_path), tmp_path / "home"
    holder = start(dag, env=env, params="N=1")
    try:
        check(tmp_path, dag, env, home, holder, sig)
    finally:
        (tmp_path / "go").touch()  # whatever happened: the holder ends
        holder.communicate(timeout=60)


def check(tmp_path, dag, env, home, holder, sig) -> None:
    wait_for(lambda: (tmp_path / "started.1").exists(), what="the holder")
    waiter = start(dag, env=env, params="N=2")
    wait_for(lambda: runslots.occupancy("one", 1, str(home)) == (1, 1), what="the waiter")

    def queued() -> str | None:
        for run in (home / "runs" / "one").iterdir():
            if run.name.startswith("."):
                continue  # a run being made (under a hidden name until it is whole)
            doc = json.loads(dagfast("status", "--json", run.name, home=home).out)
            if doc["status"] == "queued":
                return run.name
        return None

    wait_for(queued, what="the queued run's record")
    run_id = queued()
    seen_queued = time.time()
    asked = time.time()  # before the signal: the waiter may record its end at once
    waiter.send_signal(sig)
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 128 + sig
    assert f"dagfast: run {run_id} stopped while waiting for a run slot of one " \
           f"({signal.Signals(sig).name} after " in err
    doc = json.loads(dagfast("status", "--json", run_id, home=home).out)
    assert doc["status"] == "aborted"
    assert "stopped while waiting for a run slot" in doc["error"]
    assert doc["started_at"] <= seen_queued and doc["finished_at"] >= asked  # its queue time
    assert [s["status"] for s in doc["steps"]] == ["not_started"]
    (tmp_path / "go").touch()
    assert finish(holder) == 0
    assert not (tmp_path / "started.2").exists()
