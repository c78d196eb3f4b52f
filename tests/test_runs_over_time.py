"""`maxActiveRuns` across processes: real `dagfast run`s of one DAG, started at once.

Every run's step is a stub that logs when it starts and ends; the log shows whether two
runs overlapped. Waits are bounded (generous timeouts), never timed thresholds.
"""

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

from spectools import Stubs, dagfast, max_overlap

from dagfast.records import runslots


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def one_at_a_time(tmp_path: Path, command: str = "work.sh $N", limit: int = 1) -> Path:
    return write(tmp_path / "one.yaml", f"""\
        name: one
        maxActiveRuns: {limit}
        params: N=0
        steps:
          - command: {command}
        """)


def start(dag: Path, *extra: str, env: dict, params: str = "") -> subprocess.Popen:
    args = [sys.executable, "-m", "dagfast", "run", *extra, str(dag)]
    if params:
        args += ["--", params]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(p: subprocess.Popen, timeout: float = 60) -> int:
    """Wait for a run started by `start` to end; its exit status."""
    p.communicate(timeout=timeout)
    return p.returncode


def wait_for(cond, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def full_env(tmp_path: Path, stubs: Stubs | None = None) -> dict:
    return dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"), **(stubs.env() if stubs else {}))


@pytest.mark.parametrize("n", [2, 10])
def test_concurrent_runs_of_a_max_active_runs_1_dag_never_overlap_and_none_is_lost(tmp_path, n):
    s = Stubs(tmp_path, ["work.sh"], sleep=0.2)
    dag = one_at_a_time(tmp_path)
    env = full_env(tmp_path, s)
    procs = [start(dag, env=env, params=f"N={i}") for i in range(n)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [r[1] for r in results]
    calls = s.calls()
    assert sorted(c.label for c in calls) == sorted(f"work.sh {i}" for i in range(n))
    assert max_overlap(calls) == 1
    hist = dagfast("history", str(dag), "-n", "0", home=tmp_path / "home")
    assert [line.split()[1] for line in hist.out.splitlines()[1:]] == ["succeeded"] * n


def test_queued_runs_start_in_arrival_order(tmp_path):
    s = Stubs(tmp_path, ["work.sh"], sleep=0.1)
    dag = one_at_a_time(tmp_path, "touch started.$N; work.sh $N")
    env = full_env(tmp_path, s)
    home = str(tmp_path / "home")
    procs = [start(dag, env=env, params="N=0")]
    wait_for(lambda: (tmp_path / "started.0").exists(), what="the first run")
    for i in range(1, 6):  # each one arrives after the previous one queued
        procs.append(start(dag, env=env, params=f"N={i}"))
        wait_for(lambda: runslots.occupancy("one", 1, home)[1] == i or
                 (tmp_path / f"started.{i}").exists(), what=f"run {i} to queue")
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    assert [c.label for c in s.calls()] == [f"work.sh {i}" for i in range(6)]


def test_a_queued_run_shows_as_queued_and_no_queue_exits_75(tmp_path):
    dag = one_at_a_time(tmp_path, "touch started.$N; sleep 30")
    env = full_env(tmp_path)
    home = tmp_path / "home"
    holder = start(dag, env=env, params="N=1")
    waiter = None
    try:
        wait_for(lambda: (tmp_path / "started.1").exists(), what="the holder")
        busy = dagfast("run", "--no-queue", str(dag), home=home)
        assert busy.code == 75
        assert "`one` already has maxActiveRuns (1) runs going" in busy.err
        assert "queued" not in dagfast("history", str(dag), home=home).out  # nothing recorded
        waiter = start(dag, env=env, params="N=2")
        wait_for(lambda: runslots.occupancy("one", 1, str(home)) == (1, 1), what="the waiter")
        wait_for(lambda: "status:  queued" in dagfast("status", "one", home=home).out,
                 what="a queued record")
        # `stop` ends a queued run before it starts: aborted, 143
        queued = json.loads(dagfast("status", "one", "--json", home=home).out)
        assert queued["status"] == "queued", queued
        run_id = queued["run_id"]
        assert dagfast("stop", run_id, home=home).code == 0
        assert finish(waiter) == 143
        st = dagfast("status", run_id, home=home).out
        assert "status:  aborted" in st
        assert f"run {run_id} stopped while waiting for a run slot of one (SIGTERM" in st
        assert not (tmp_path / "started.2").exists()
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=30)


def test_a_retry_waits_for_a_slot_and_a_sigterm_meanwhile_leaves_the_record_as_it_was(tmp_path):
    failing = write(tmp_path / "one.yaml", """\
        name: one
        maxActiveRuns: 1
        params: N=0
        steps:
          - command: test "$N" = 1 && sleep 30 || test -e ok
        """)
    env = full_env(tmp_path)
    home = tmp_path / "home"
    assert dagfast("run", str(failing), home=home).code == 1  # N=0 and no `ok`: failed
    failed_id = dagfast("status", "one", "--json", home=home).out.split('"run_id": "')[1][:26]
    holder = start(failing, env=env, params="N=1")  # holds the slot for 30 s
    retry = None
    try:
        wait_for(lambda: runslots.occupancy("one", 1, str(home)) == (1, 0), what="the holder")
        (tmp_path / "ok").touch()
        retry = subprocess.Popen([sys.executable, "-m", "dagfast", "retry", failed_id], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: runslots.occupancy("one", 1, str(home)) == (1, 1), what="the retry")
        # It joins the queue, then says so: wait for the line (the event), then stop it.
        first = retry.stdout.readline()
        retry.send_signal(signal.SIGTERM)
        out, err = retry.communicate(timeout=30)
        out = first + out
        assert retry.returncode == 143, (out, err)
        assert (f"dagfast: run {failed_id}: waiting for a run slot of one: 1 of 1 in use "
                "(run ") in out, out
        st = dagfast("status", failed_id, "--json", home=home).out
        assert '"status": "failed"' in st and '"attempt": 1' in st, st
    finally:
        for p in (holder, retry):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=30)
    # With the slot free, the same retry runs its attempt and succeeds.
    assert finish(holder) == 143
    assert dagfast("retry", failed_id, home=home).code == 0
    assert '"attempt": 2' in dagfast("status", failed_id, "--json", home=home).out


def test_a_crashed_holder_releases_its_slot(tmp_path):
    dag = one_at_a_time(tmp_path, "echo $$ > step.$N.pid; sleep 60")
    env = full_env(tmp_path)
    home = tmp_path / "home"
    holder = start(dag, env=env, params="N=1")
    pid_file = tmp_path / "step.1.pid"
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the holder")
        assert dagfast("run", "--no-queue", str(dag), home=home).code == 75
        holder.kill()  # SIGKILL: no clean-up at all
        holder.communicate(timeout=30)
        quick = write(tmp_path / "quick.yaml", """\
            name: one
            maxActiveRuns: 1
            steps:
              - command: "true"
            """)
        res = dagfast("run", "--no-queue", str(quick), home=home)
        assert res.code == 0, res.err
    finally:
        try:  # the orphaned step, if the dead engine's guardian has not ended it yet
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_crashed_waiter_leaves_the_queue(tmp_path):
    # Each run holds its slot until `release` exists: the holder until the waiter died.
    dag = one_at_a_time(tmp_path, "touch started.$N; while [ ! -e release ]; do sleep 0.02; done")
    env = full_env(tmp_path)
    home = str(tmp_path / "home")
    holder = start(dag, env=env, params="N=1")
    wait_for(lambda: (tmp_path / "started.1").exists(), what="the holder")
    dead = start(dag, env=env, params="N=2")
    wait_for(lambda: runslots.occupancy("one", 1, home) == (1, 1), what="the first waiter")
    dead.kill()
    dead.communicate(timeout=30)
    assert runslots.occupancy("one", 1, home) == (1, 0)
    (tmp_path / "release").touch()
    late = start(dag, env=env, params="N=3")  # not stuck behind the dead ticket
    assert finish(late) == 0 and finish(holder) == 0
    assert (tmp_path / "started.3").exists() and not (tmp_path / "started.2").exists()


def test_max_active_runs_2_runs_two_at_once(tmp_path):
    s = Stubs(tmp_path, ["work.sh"], sleep=0.3)
    dag = one_at_a_time(tmp_path, limit=2)
    env = full_env(tmp_path, s)
    procs = [start(dag, env=env, params=f"N={i}") for i in range(4)]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    assert len(s.calls()) == 4 and max_overlap(s.calls()) <= 2


def test_api_run_takes_a_slot_and_can_refuse_to_queue(tmp_path):
    from dagfast.runtime.session import run

    dag = one_at_a_time(tmp_path, "true")
    home = str(tmp_path / "home")
    slot = runslots.take("one", 1, home)
    try:
        with pytest.raises(runslots.RunsFull):
            run(str(dag), home_dir=home, queue=False)
    finally:
        slot.release()
    assert run(str(dag), home_dir=home).status == 4


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_slots_and_the_scheduler_files_are_private_whatever_the_umask(tmp_path, umask):
    # The first run of a new home takes a slot before it has a record: the slots (and
    # the home) must come out 0700 all the same; so must the scheduler's ticks and logs.
    from dagfast.cli.scheduler import Scheduler

    dag = one_at_a_time(tmp_path, "true")
    home = tmp_path / "new" / "home"
    env = dict(os.environ, DAGFAST_HOME=str(home))
    res = subprocess.run(["sh", "-c", f'umask {umask:03o} && exec "$0" -m dagfast run "$1"',
                          sys.executable, str(dag)], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (home / "slots" / "one" / "0.lock").exists()
    dags = tmp_path / "dags"
    dags.mkdir()
    write(dags / "s.yaml", """\
        name: s
        schedule: "* * * * * *"
        maxActiveRuns: 1
        steps:
          - command: "true"
        """)
    sched = Scheduler(str(dags), str(tmp_path / "new" / "home2"), log=lambda line: None)
    old = os.umask(umask)
    try:
        t = float(int(time.time())) - 10
        sched.turn(t)
        sched.turn(t + 1)  # the real launcher: a `dagfast run` child, with this umask
    finally:
        os.umask(old)
    (child,) = sched.running()
    assert child.wait(timeout=60) == 0
    home2 = tmp_path / "new" / "home2"
    assert [p.name for p in (home2 / "scheduler" / "logs").iterdir()][0].startswith("s-")
    assert (home2 / "runs" / "s").is_dir() and (home2 / "slots" / "s").is_dir()
    for p in [tmp_path / "new", *(tmp_path / "new").rglob("*")]:
        assert p.stat().st_mode & 0o077 == 0, (p, oct(p.stat().st_mode))
