"""`dagfast scheduler`: ticks, skips, reloading and shutdown.

Most tests drive `Scheduler.turn(now)` with an injected clock and a launcher that starts
nothing (FakeRun); one runs the real command over a directory with per-second schedules.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dagfast.records import runslots
from dagfast.loader.cron import ScheduleError, parse
from dagfast.cli.scheduler import Scheduler

T0 = 1_800_000_000.0  # a whole second (and minute), far from any real run


class FakeRun:
    """Stands for a `dagfast run` child: running until `end` (or a signal)."""

    def __init__(self, path: str, n: int) -> None:
        self.path = path
        self.pid = 1000 + n
        self.code = None
        self.signals = []

    def poll(self):
        return self.code

    def send_signal(self, sig):
        self.signals.append(sig)
        self.code = 128 + sig

    def end(self, code: int = 0) -> None:
        self.code = code


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "dags"
        self.dir.mkdir()
        self.home = str(tmp_path / "home")
        self.runs: list[FakeRun] = []
        self.lines: list[str] = []
        self.sched = self.new()

    def new(self) -> Scheduler:
        return Scheduler(str(self.dir), self.home, launch=self.launch, log=self.lines.append)

    def launch(self, path, log_path):
        run = FakeRun(path, len(self.runs))
        self.runs.append(run)
        return run

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(textwrap.dedent(text))
        return path

    def started(self) -> list[str]:
        return [Path(r.path).stem for r in self.runs]

    def log(self, word: str) -> list[str]:
        return [x for x in self.lines if word in x]


def every_second(name: str, extra: str = "") -> str:
    return f"""\
        name: {name}
        schedule: "* * * * * *"
        {extra}
        steps:
          - command: "true"
        """


@pytest.fixture
def h(tmp_path):
    return Harness(tmp_path)


def test_cron_six_fields_end_in_seconds_and_time_zones_apply():
    assert [parse("* * * * * */2").next(T0 + k) for k in (0, 1)] == [T0 + 2, T0 + 2]
    assert parse("*/5 * * * *").next(T0) == T0 + 300
    tokyo = parse("CRON_TZ=Asia/Tokyo 0 9 * * *")
    assert time.strftime("%H:%M", time.gmtime(tokyo.next(T0))) == "00:00"  # 09:00 JST
    assert parse("@hourly").next(T0) == T0 + 3600
    with pytest.raises(ScheduleError, match="not a cron expression: `61 \\* \\* \\* \\*`"):
        parse("61 * * * *")
    with pytest.raises(ScheduleError, match="unknown time zone `Nowhere/City`"):
        parse("CRON_TZ=Nowhere/City * * * * *")


@pytest.mark.parametrize("expr, why", [
    ("* * * * * * *", "not a cron expression (7 fields, not 5 or 6)"),  # croniter: a year
    ("0 0 30 2 *", "never matches a date"),  # valid for croniter, yet no date
    ("CRON_TZ=UTC 0 0 31 4 *", "never matches a date"),
    ("start: 0 8 * * *", "not a cron expression"),  # the map form is YAML, not a string
])
def test_cron_refuses_seven_fields_and_expressions_that_never_match(expr, why):
    with pytest.raises(ScheduleError) as err:
        parse(expr)
    assert str(err.value) == f"{why}: `{expr}` - at `$.schedule`"


def test_ticks_fire_once_each_and_a_late_turn_does_not_replay_a_backlog(h):
    h.write("a.yaml", every_second("a"))
    h.sched.turn(T0 + 0.5)
    assert h.started() == []
    h.sched.turn(T0 + 1.0)
    h.runs[-1].end()
    h.sched.turn(T0 + 1.5)
    h.sched.turn(T0 + 2.0)
    h.runs[-1].end()
    assert h.started() == ["a", "a"]
    h.sched.turn(T0 + 9.5)  # the loop was late: one run, not seven
    h.runs[-1].end()
    h.sched.turn(T0 + 9.9)
    assert h.started() == ["a", "a", "a"]


def test_a_tick_at_max_active_runs_is_skipped_and_logged_not_piled_up(h):
    h.write("a.yaml", every_second("a"))  # maxActiveRuns absent: 1 for the scheduler
    h.write("b.yaml", every_second("b", "maxActiveRuns: 2"))
    h.sched.turn(T0)  # loaded: ticks strictly after now
    for k in range(1, 5):
        h.sched.turn(T0 + k)
    assert h.started().count("a") == 1 and h.started().count("b") == 2
    assert len(h.log("a: tick")) == 4 and len(h.log("skipped: maxActiveRuns (1) runs going")) == 3
    # a hand run holding b's slots also counts
    for r in h.runs:
        r.end()
    slots = [runslots.take("b", 2, h.home), runslots.take("b", 2, h.home)]
    h.sched.turn(T0 + 5)
    assert h.started().count("b") == 2 and h.log("skipped: maxActiveRuns (2) runs going")
    for s in slots:
        s.release()
    h.sched.turn(T0 + 6)
    assert h.started().count("b") == 3


def test_skip_if_successful_skips_a_tick_after_a_success_since_the_previous_tick(h):
    from dagfast.runtime.session import run

    from dagfast.records.store import run_id_time

    path = h.write("a.yaml", every_second("a", "skipIfSuccessful: true"))
    result = run(str(path), home_dir=h.home)  # "by hand"
    assert result.status == 4
    # The hand run was created within [t, t + 1) and started at or after that (on a busy
    # machine, maybe a second later: see the xfail below for a start across the tick).
    t = float(int(run_id_time(result.run_id)))
    h.sched.turn(t)
    h.sched.turn(t + 1)  # previous tick t <= the hand run: skipped
    assert h.started() == [] and h.log("skipIfSuccessful: run")
    h.sched.turn(int(result.started_at) + 2)  # previous tick after the hand run: runs
    assert h.started() == ["a"]


def test_skip_if_successful_counts_a_run_created_before_the_tick_that_started_after(
    h, monkeypatch
):
    # A run created before the previous tick but started after it (a slow start, a run
    # queued by maxActiveRuns) counts: the scan goes on past the runs created before.
    from dagfast.records import store
    from dagfast.runtime.session import run

    made = store.new_run_id
    # The hand run's directory is made 5 s before it starts (it waited, say, in a queue).
    monkeypatch.setattr(store, "new_run_id", lambda now=None: made(time.time() - 5))
    path = h.write("a.yaml", every_second("a", "skipIfSuccessful: true"))
    result = run(str(path), home_dir=h.home)
    assert result.status == 4
    t = float(int(result.started_at))  # it started within [t, t + 1)
    h.sched.turn(t)
    h.sched.turn(t + 1)  # previous tick t <= the hand run's start: skipped
    assert h.started() == [] and h.log("skipIfSuccessful: run"), h.lines


def test_skip_if_successful_reads_no_old_run_whose_directory_did_not_change_since(
    h, monkeypatch
):
    # The scan goes past runs created before the previous tick, but one whose directory
    # has not changed since then cannot have started since: it costs a stat, not a read.
    from dagfast.records import read
    from dagfast.runtime.session import run

    path = h.write("a.yaml", every_second("a", "skipIfSuccessful: true"))
    done = [run(str(path), home_dir=h.home) for _ in range(3)]
    assert [r.status for r in done] == [4, 4, 4]
    old = time.time() - 3600
    for r in done:
        os.utime(r.path, (old, old))
    reads = []
    real = read.read_run
    monkeypatch.setattr(read, "read_run", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    t = float(int(time.time())) + 10
    h.sched.turn(t)
    h.sched.turn(t + 1)
    # (The newest run is read for maxActiveRuns, whatever its age.)
    assert h.started() == ["a"] and set(reads) <= {done[2].path}
    # A directory that did change is read; its run started before the previous tick,
    # so it does not count.
    h.runs[-1].end()
    os.utime(done[1].path, (t + 1.5, t + 1.5))
    h.sched.turn(t + 2)
    assert done[1].path in reads and done[0].path not in reads
    assert h.started() == ["a", "a"]


def test_skip_if_successful_ignores_the_schedulers_own_runs_but_not_a_hand_run(h, tmp_path):
    # Real runs, recorded: the clock lags the real time, so each run starts after its
    # tick, as it does for real (and a run for the previous tick always started since it).
    from dagfast.runtime.session import run
    from dagfast.records.read import read_run, runs_of

    path = h.write("a.yaml", every_second("a", "skipIfSuccessful: true"))
    sched = Scheduler(str(h.dir), h.home, log=h.lines.append)  # the real launcher
    f = str(path)

    def tick(t):
        sched.turn(t)
        for child in sched.running():
            assert child.wait(timeout=60) == 0

    def succeeded():
        return [read_run(p).status for p in runs_of(h.home, "a")].count(4)

    t = float(int(time.time())) - 30
    sched.turn(t)
    for k in (1, 2, 3, 4):  # every tick runs: its own previous run does not count
        tick(t + k)
        assert succeeded() == k, h.lines
    assert not h.log("skipped")
    pids = [int(x.split("(pid ")[1].rstrip(")")) for x in h.log("started (pid")]
    assert sorted(read_run(p).pid for p in runs_of(h.home, "a")) == sorted(pids)
    hand = run(f, home_dir=h.home)  # by hand, after the tick t + 4
    assert hand.status == 4
    tick(t + 5)  # a run other than its own succeeded since the previous tick: skipped
    assert succeeded() == 5 and h.log(f"skipIfSuccessful: run {hand.run_id} succeeded")
    # The tick file keeps the pid of the run started last, so that a restarted scheduler
    # does not take that run for one by hand either.
    later = float(int(hand.started_at)) + 2  # its previous tick is past the hand run
    wait_for(lambda: time.time() >= later, "the clock to reach the next tick")
    sched = Scheduler(str(h.dir), h.home, log=h.lines.append)
    sched.turn(later - 0.5)
    tick(later)
    assert succeeded() == 6
    sched = Scheduler(str(h.dir), h.home, log=h.lines.append)  # a restart
    sched.turn(later + 0.5)
    tick(later + 1)
    assert succeeded() == 7 and len(h.log("skipped")) == 1, h.lines


def test_new_edited_deleted_and_broken_files_are_picked_up_without_a_restart(h):
    h.write("a.yaml", every_second("a"))
    h.sched.turn(T0)
    h.sched.turn(T0 + 1)
    assert h.started() == ["a"]
    h.runs[-1].end()
    h.write("b.yaml", every_second("b"))
    h.write("bad.yaml", "steps:\n  - name: x\n    depend: y\n")
    h.write("badcron.yaml", 'schedule: "61 * * * *"\nsteps:\n  - command: "true"\n')
    h.sched.turn(T0 + 2)  # rescanned: b added, the broken ones logged and skipped
    assert h.log("added b.yaml") and len(h.log("cannot load bad.yaml")) == 1
    assert h.log("skipped until it changes")
    # `load` checks the schedule too, so the line carries the file's place for it.
    assert [x for x in h.log("cannot load badcron.yaml: ") if "not a cron expression" in x]
    for r in h.runs:
        r.end()
    h.sched.turn(T0 + 3)  # a and b tick; the broken files do not stop them
    assert sorted(h.started()) == ["a", "a", "a", "b"]
    for r in h.runs:
        r.end()
    h.write("a.yaml", every_second("a").replace("* * * * * *", "0 0 1 1 *"))  # edited
    os.utime(h.dir / "a.yaml", ns=(1, 1))
    (h.dir / "b.yaml").unlink()
    h.sched.turn(T0 + 4)
    h.sched.turn(T0 + 5)
    assert sorted(h.started()) == ["a", "a", "a", "b"]
    assert h.log("reloaded a.yaml") and h.log("removed b.yaml")
    assert len(h.log("cannot load bad.yaml")) == 1  # logged once, not every scan


def test_a_tick_is_handled_once_across_a_restart_and_missed_ticks_are_not_run(h):
    h.write("a.yaml", every_second("a"))
    h.sched.turn(T0 + 0.5)
    h.sched.turn(T0 + 1)
    assert h.started() == ["a"]
    h.runs[-1].end()
    again = h.new()  # a second scheduler (or a restart) at the same tick
    again.next_scan = 0
    again.turn(T0 + 0.9)
    again.turn(T0 + 1.0)
    assert h.started() == ["a"]
    later = h.new()  # restarted after a while: the missed ticks are logged, not run
    later.turn(T0 + 30.5)
    assert h.started() == ["a"] and h.log("were missed while no scheduler ran")
    later.turn(T0 + 31)
    assert h.started() == ["a", "a"]


@pytest.mark.parametrize("on_stop", ["wait", "stop"])
def test_shutdown_waits_for_or_stops_the_runs(h, on_stop):
    h.write("a.yaml", every_second("a"))
    h.sched.turn(T0)
    h.sched.turn(T0 + 1)
    run = h.runs[0]
    sleeps = []

    def sleep(sec):
        sleeps.append(sec)
        if len(sleeps) == 3:
            run.end(0)  # with on_stop=wait, the run ends by itself a bit later

    h.sched.request_stop(signal.SIGTERM)
    h.sched.serve(on_stop=on_stop, sleep=sleep)
    assert run.signals == ([signal.SIGTERM] if on_stop == "stop" else [])
    assert run.code == (143 if on_stop == "stop" else 0)
    assert h.lines[-1] == "stopped"
    assert h.log(f"SIGTERM: shutting down; 1 runs going, "
                 f"{'stopping' if on_stop == 'stop' else 'waiting for'} them")


def test_the_scheduler_command_runs_a_directory_on_a_per_second_schedule(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    out = tmp_path / "ticks.txt"
    (dags / "a.yaml").write_text(textwrap.dedent(f"""\
        name: a
        schedule: "* * * * * *"
        steps:
          - command: echo a >> {out}
        """))
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "scheduler", str(dags)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: out.exists() and out.read_text().count("a\n") >= 2, "two ticks of a")
        (dags / "b.yaml").write_text((dags / "a.yaml").read_text()
                                     .replace("name: a", "name: b").replace("echo a", "echo b"))
        wait_for(lambda: "b\n" in out.read_text(), "b, added while running")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "scheduler: added a.yaml: `a`" in err and "scheduler: added b.yaml: `b`" in err
    assert "a: tick" in err and "started (pid" in err
    assert "SIGTERM: shutting down" in err and err.rstrip().endswith("scheduler: stopped")


def wait_for(cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_schedule_that_stops_matching_unschedules_its_file_and_the_others_go_on(h):
    import calendar

    h.write("a.yaml", every_second("a"))
    h.write("feb30.yaml", every_second("feb30").replace("* * * * * *", "0 0 30 2 *"))
    h.write("dec.yaml", every_second("dec").replace("* * * * * *", "CRON_TZ=UTC 0 0 1 12 *"))
    t = float(calendar.timegm((9999, 11, 30, 23, 59, 58)))
    h.sched.turn(t)  # dec's next tick is 9999-12-01 (t + 2); the one after has no date
    assert [x for x in h.log("cannot load feb30.yaml: ") if "never matches a date" in x]
    dec = h.sched.files[str(h.dir / "dec.yaml")]
    for k in range(1, 5):
        h.sched.turn(t + k)
        for r in h.runs:
            r.end()
    assert h.log("dec: no date after ") and h.log("no tick after this one until the file")
    assert dec.next_at is None and h.started().count("dec") == 1
    assert h.started().count("a") >= 3  # a kept ticking; nothing raised


def test_a_home_it_cannot_write_is_logged_at_each_tick_and_stops_nothing(h):
    Path(h.home).write_text("a file, not a directory\n")
    h.write("a.yaml", every_second("a"))
    for k in range(3):
        h.sched.turn(T0 + k)
    assert h.started() == [] and len(h.log("not run: Not a directory")) == 2


def test_validate_rejects_a_bad_schedule_with_its_place(tmp_path):
    from spectools import dagfast as cli

    bad = tmp_path / "bad.yaml"
    bad.write_text('schedule: "61 * * * *"\nsteps:\n  - command: "true"\n')
    res = cli("validate", str(bad))
    assert res.code == 2
    assert res.err.strip() == (
        f"{bad}:1:11: not a cron expression: `61 * * * *` - at `$.schedule`")


def test_each_schedule_entry_is_checked_at_its_own_place(tmp_path):
    from spectools import dagfast as cli

    files = {
        "list.yaml": 'schedule:\n  - "*/5 * * * *"\n  - "bogus"\n',
        "map.yaml": ('schedule:\n  start:\n    - "0 8 * * *"\n    - "0 0 30 2 *"\n'
                     '  stop: "0 18 * * *"\n  until: x\n'),
        "seven.yaml": 'schedule:\n  start: "* * * * * * *"\n',
        "feb30.yaml": 'schedule: "0 0 30 2 *"\n',
        "brackets.yaml": 'schedule: "start: [1, 2"\n',
    }
    errors = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text + 'steps:\n  - command: "true"\n')
        res = cli("validate", str(tmp_path / name))
        assert res.code == 2 and "Traceback" not in res.err, res.err
        errors[name] = res.err.replace(f"{tmp_path}/", "").splitlines()
    assert errors == {
        "list.yaml": ["list.yaml:3:5: not a cron expression: `bogus` - at `$.schedule[1]`"],
        "map.yaml": [
            "map.yaml:4:7: never matches a date: `0 0 30 2 *` - at `$.schedule.start[1]`",
            "map.yaml:5:3: `schedule.stop` is not supported yet - at `$.schedule.stop`",
            "map.yaml:6:3: `until` is not a key of `schedule` (start, stop or restart) "
            "- at `$.schedule.until`",
        ],
        "seven.yaml": ["seven.yaml:2:10: not a cron expression (7 fields, not 5 or 6): "
                       "`* * * * * * *` - at `$.schedule.start`"],
        "feb30.yaml": ["feb30.yaml:1:11: never matches a date: `0 0 30 2 *` - at `$.schedule`"],
        "brackets.yaml": ["brackets.yaml:1:11: not a cron expression: `start: [1, 2` "
                          "- at `$.schedule`"],
    }
    from dagfast.loader import load

    good = tmp_path / "good.yaml"
    good.write_text('schedule:\n  start: ["0 8 * * *", "CRON_TZ=UTC 0 9 * * 1-5"]\n'
                    'steps:\n  - command: "true"\n')
    assert load(good).schedule == ("0 8 * * *", "CRON_TZ=UTC 0 9 * * 1-5")
