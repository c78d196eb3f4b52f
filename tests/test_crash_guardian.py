"""A killed engine takes its steps with it: within a second of `kill -9`, no process of
the run is alive (background children, `setsid` escapees and sub-DAG steps included),
and `retry` finishes the run. A run that ends normally leaves its background children
alone, and no guardian behind. bench/killloop.py runs the loop for as long as you like.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from spectools import dagfast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import killloop  # noqa: E402  (the kill loop itself: bench/killloop.py)


def engine(dag: Path, home: Path, token: str) -> subprocess.Popen:
    env = dict(os.environ, DAGFAST_HOME=str(home), KILLLOOP_TOKEN=token)
    return subprocess.Popen([sys.executable, "-m", "dagfast", "run", "--quiet", str(dag)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(what, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.005)
    raise AssertionError(f"gave up waiting for {what}")


def kill_and_time(proc: subprocess.Popen, token: str) -> float | None:
    """SIGKILL the engine; seconds until none of its run's processes is alive."""
    proc.send_signal(signal.SIGKILL)
    died = time.monotonic()
    proc.wait()
    return killloop._wait_gone(token, False, died)


def test_kill_9_at_random_moments_leaves_no_step_alive_a_second_later_and_retry_finishes(tmp_path):
    seed = int(os.environ.get("DAGFAST_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    dag = killloop.write_dag(tmp_path)
    rounds = int(os.environ.get("DAGFAST_KILL_LOOPS", "2"))
    for _ in range(rounds):
        r = killloop.one_round(dag, tmp_path / "home", rng)
        assert not killloop.failures(r), (seed, r)


def test_a_killed_engine_ends_the_steps_of_its_sub_dags(tmp_path):
    (tmp_path / "child.yaml").write_text(
        "steps:\n  - command: sh -c 'setsid sleep 60 & sleep 60'\n")
    dag = tmp_path / "main.yaml"
    dag.write_text("steps:\n  - call: child.yaml\n")
    token = uuid.uuid4().hex
    proc = engine(dag, tmp_path / "home", token)
    wait_for(lambda: len(killloop.run_processes(token)) >= 3)  # sh, sleep, setsid sleep
    clean = kill_and_time(proc, token)
    assert clean is not None and clean <= killloop.PROMISE_S, clean


def test_an_engine_run_as_a_step_of_a_killed_engine_ends_its_own_steps(tmp_path):
    # outer's guardian ends inner's engine (a step of outer); inner's guardian, not a
    # process of outer's run, then ends inner's steps.
    (tmp_path / "inner.yaml").write_text(
        "steps:\n  - command: sh -c 'setsid sleep 60 & sleep 60'\n")
    dag = tmp_path / "outer.yaml"
    dag.write_text(f"steps:\n  - command: {sys.executable} -m dagfast run --quiet inner.yaml\n")
    token = uuid.uuid4().hex
    proc = engine(dag, tmp_path / "home", token)
    wait_for(lambda: len(killloop.run_processes(token)) >= 4)  # inner engine, sh, 2 sleeps
    clean = kill_and_time(proc, token)
    assert clean is not None and clean <= killloop.PROMISE_S, clean


def test_a_killed_engine_leaves_another_live_run_of_the_same_dag_alone(tmp_path):
    dag = tmp_path / "same.yaml"
    flag = tmp_path / "go"
    dag.write_text(f"steps:\n  - command: sh -c 'while [ ! -e {flag} ]; do sleep 0.01; done'\n")
    home = tmp_path / "home"
    doomed, alive = uuid.uuid4().hex, uuid.uuid4().hex
    victim, survivor = engine(dag, home, doomed), engine(dag, home, alive)
    try:
        wait_for(lambda: killloop.run_processes(doomed) and killloop.run_processes(alive))
        clean = kill_and_time(victim, doomed)
        assert clean is not None and clean <= killloop.PROMISE_S, clean
        assert killloop.run_processes(alive), "the live run's step was killed"
    finally:
        flag.touch()  # whatever happened: both runs end
        victim.wait(timeout=60)
    assert survivor.wait(timeout=60) == 0


def test_a_finished_run_keeps_its_background_children_and_leaves_no_guardian(tmp_path):
    pid_file = tmp_path / "bg.pid"
    dag = tmp_path / "bg.yaml"
    dag.write_text(f"steps:\n  - command: sh -c 'setsid sleep 60 & echo $! > {pid_file}'\n")
    token = uuid.uuid4().hex
    res = dagfast("run", str(dag), home=tmp_path / "home", env={"KILLLOOP_TOKEN": token})
    assert res.code == 0, res.err
    pid = int(pid_file.read_text())
    try:
        assert killloop.run_processes(token) == [pid]  # the background child lives on
        assert killloop.run_processes(token, guardians=True) == []
    finally:
        os.kill(pid, signal.SIGKILL)


def test_the_guardian_of_a_run_is_its_own_process_group_and_holds_nothing(tmp_path):
    dag = tmp_path / "slow.yaml"
    flag = tmp_path / "go"
    dag.write_text(f"steps:\n  - command: sh -c 'while [ ! -e {flag} ]; do sleep 0.01; done'\n")
    token = uuid.uuid4().hex
    proc = engine(dag, tmp_path / "home", token)
    try:
        (guard,) = wait_for(lambda: killloop.run_processes(token, guardians=True))
        # A Ctrl-C to the engine's group does not reach it; the engine's files, locks
        # and pipes are not held by it (fds 0-2 are /dev/null, 3 its pipe).
        assert os.getpgid(guard) == guard
        assert sorted(int(fd) for fd in os.listdir(f"/proc/{guard}/fd")) == [0, 1, 2, 3]
        assert os.readlink(f"/proc/{guard}/cwd") == "/"
    finally:
        flag.touch()
    assert proc.wait(timeout=60) == 0
    assert killloop.run_processes(token, guardians=True) == []


if not sys.platform.startswith("linux"):  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="the guardian reads /proc")
