"""The scheduler's tick files survive kill -9 at any moment: a tick file holds the last
tick whole or the one before, never nothing (which would hand the tick over again), and
a tick claimed by a scheduler killed before it started the run is logged as missed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dagfast.cli.scheduler import _tick_file
from test_scheduler import T0, Harness, every_second


class Killed(BaseException):
    """The scheduler dies here: nothing after it runs, no handler sees it."""


def die(*args, **kwargs):
    raise Killed


def tick_files(home: str) -> list[Path]:
    ticks = Path(home) / "scheduler" / "ticks"
    return [p for p in ticks.iterdir() if "." not in p.name] if ticks.exists() else []


@pytest.fixture
def h(tmp_path):
    return Harness(tmp_path)


def test_a_scheduler_killed_while_writing_a_tick_leaves_the_last_tick_whole(h, monkeypatch):
    h.write("a.yaml", every_second("a"))
    h.sched.turn(T0 + 0.5)
    h.sched.turn(T0 + 1)
    h.runs[-1].end()
    (ticks,) = tick_files(h.home)
    assert _tick_file(ticks.read_bytes())[0] == T0 + 1
    with monkeypatch.context() as m:  # killed as it writes the claim of the next tick
        for name in ("write", "pwrite"):
            m.setattr(os, name, die)
        with pytest.raises(Killed):
            h.sched.turn(T0 + 2)
    assert _tick_file(ticks.read_bytes())[0] == T0 + 1  # not empty, not half
    again = h.new()  # restarted: the next tick runs once
    again.turn(T0 + 2.5)
    again.turn(T0 + 3)
    assert h.started() == ["a", "a"]


def test_a_tick_claimed_by_a_scheduler_killed_before_its_run_is_logged_as_missed(h, monkeypatch):
    h.write("a.yaml", every_second("a"))
    h.sched.turn(T0 + 0.5)
    with monkeypatch.context() as m:
        m.setattr(h.sched, "launch", die)
        with pytest.raises(Killed):
            h.sched.turn(T0 + 1)
    assert h.started() == []
    again = h.new()
    again.turn(T0 + 1.5)
    (line,) = h.log("was missed: its scheduler stopped after claiming it")
    assert "a: tick" in line
    h.new().turn(T0 + 1.6)  # said once
    assert len(h.log("was missed: its scheduler stopped")) == 1


def test_kill_9_at_random_moments_never_leaves_a_tick_file_empty(tmp_path):
    rng = random.Random(int(os.environ.get("DAGFAST_KILL_SEED", random.randrange(1 << 30))))
    dags = tmp_path / "dags"
    dags.mkdir()
    ledger = tmp_path / "ledger"
    for name in "abc":
        (dags / f"{name}.yaml").write_text(textwrap.dedent(f"""\
            name: {name}
            schedule: "* * * * * *"
            maxActiveRuns: 5
            steps:
              - command: echo {name} >> {ledger}
            """))
    home = str(tmp_path / "home")
    env = dict(os.environ, DAGFAST_HOME=home)
    for _ in range(int(os.environ.get("DAGFAST_KILL_LOOPS", "6"))):
        seen = {str(p): p.read_bytes() for p in tick_files(home)}
        proc = subprocess.Popen([sys.executable, "-m", "dagfast", "scheduler", str(dags)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Until some tick file changes (a tick is being handled), then a little more.
        deadline = time.monotonic() + 30
        while {str(p): p.read_bytes() for p in tick_files(home)} == seen:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for p in tick_files(home):
            assert _tick_file(p.read_bytes())[0] is not None, (p, p.read_bytes())
