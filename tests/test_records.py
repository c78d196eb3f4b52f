"""Run records under faults: torn journals, corrupt snapshots, a killed engine, a full
disk, many runs at once. Real processes, real files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

import dagfast
from dagfast.records.journal import frame, frames
from dagfast.records.read import read_run
from dagfast.records.store import Begin, End
from spectools import alive
from spectools import dagfast as cli
from outputs import printed

from dagfast.records.outstore import Output


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def runs(home: Path) -> list[Path]:
    return sorted(p for p in (home / "runs").glob("*/*") if p.is_dir())


def spawn(*args: str, home: Path) -> subprocess.Popen:
    env = dict(os.environ, DAGFAST_HOME=str(home))
    return subprocess.Popen([sys.executable, "-m", "dagfast", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(pred, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def journal_entries(run: Path) -> list:
    payloads, end, torn = frames((run / "journal").read_bytes())
    assert not torn
    dec = msgspec.msgpack.Decoder(list[dagfast.records.store.Entry])
    return [e for p in payloads for e in dec.decode(p)]


# The format ---------------------------------------------------------------------------


def test_frames_stop_at_a_torn_or_corrupt_frame():
    data = frame(b"\x91\x01") + frame(b"\x91\x02")
    assert [bytes(p) for p in frames(data)[0]] == [b"\x91\x01", b"\x91\x02"]
    for cut in range(1, 10):
        payloads, end, torn = frames(data[:-cut])
        assert [bytes(p) for p in payloads] == [b"\x91\x01"] and end == 10 and torn
    corrupt = data[:-1] + b"\x03"
    assert len(frames(corrupt)[0]) == 1 and frames(corrupt)[2]


def test_a_run_leaves_a_private_versioned_record(tmp_path):
    #   a -> b
    dag = write(tmp_path / "d.yaml", """\
        steps:
          - name: a
            command: echo hi
          - name: b
            command: exit 4
            depends: a
        """)
    res = cli("run", str(dag), home=tmp_path / "home")
    assert res.code == 1
    (run,) = runs(tmp_path / "home")
    snap = json.loads((run / "status.json").read_text())
    assert snap["version"] == 2 and snap["attempt"] == 1 and snap["status"] == 2
    assert snap["journal_offset"] == (run / "journal").stat().st_size
    entries = journal_entries(run)
    assert isinstance(entries[0], Begin) and entries[0].steps == 2 and entries[0].version == 1
    assert [type(e).__name__ for e in entries[1:]] == ["Start", "End", "Start", "End", "Finish"]
    end = entries[-2]
    assert end == End(1, 2, 4, end.at, "exit status 4", None, end.cpu, end.rss)
    assert end.cpu is not None  # what its process cost
    assert entries[-1].status == 2
    assert not (run / "reserve").exists()
    for p in [run, *run.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, (p, oct(mode))
    assert (run / "lock").read_text().strip().isdigit()


def test_torn_journal_is_read_up_to_the_torn_record(tmp_path):
    dag = write(tmp_path / "d.yaml", "steps:\n  - name: a\n    command: 'true'\n"
                "  - name: b\n    command: 'true'\n    depends: a\n")
    cli("run", str(dag), home=tmp_path / "home")
    (run,) = runs(tmp_path / "home")
    journal = run / "journal"
    whole = journal.read_bytes()
    ends, pos = [], 0
    for payload in frames(whole)[0]:
        pos += 8 + len(payload)
        ends.append(pos)
    # Frames: [begin], [start a], [end a, start b], [end b], [finish]; tear [end b].
    journal.write_bytes(whole[:ends[-2] - 3])
    (run / "status.json").unlink()
    state = read_run(str(run))
    assert state.torn and not state.rebuilt and state.interrupted
    assert [r.status for r in state.steps] == [4, 1]
    res = cli("status", run.name, home=tmp_path / "home")
    assert res.code == 0
    assert "interrupted" in res.out and "torn record" in res.out
    # A retry cuts the torn tail off, then appends whole frames.
    res = cli("retry", run.name, home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    assert not frames(journal.read_bytes())[2]
    assert read_run(str(run)).status == 4


def test_corrupt_snapshot_is_rebuilt_from_the_journal(tmp_path):
    dag = write(tmp_path / "d.yaml", "steps:\n  - name: a\n    command: exit 3\n")
    cli("run", str(dag), home=tmp_path / "home")
    (run,) = runs(tmp_path / "home")
    before = read_run(str(run))
    (run / "status.json").write_bytes(b'{"version": 2, "run_id": ')
    after = read_run(str(run))
    assert after.rebuilt and not after.torn
    assert (after.status, after.steps, after.finished_at) == (
        before.status, before.steps, before.finished_at)
    res = cli("status", "--json", run.name, home=tmp_path / "home")
    doc = json.loads(res.out)
    assert doc["status"] == "failed" and doc["steps"][0]["exit_code"] == 3


# A killed engine -----------------------------------------------------------------------


def guardian_of(engine: int) -> int:
    """The pid of the guardian the engine `engine` forked for its run."""
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == engine and fields[0] != b"Z":
            with open(f"/proc/{name}/comm", "rb") as f:
                if f.read().strip() == b"dagfast-guard":
                    return int(name)
    raise AssertionError(f"engine {engine} has no guardian")


def test_kill_9_then_status_says_interrupted_and_retry_finishes(tmp_path):
    #   quick -> slow -> last
    home = tmp_path / "home"
    dag = write(tmp_path / "k.yaml", """\
        steps:
          - name: quick
            command: echo quick >> order.txt
          - name: slow
            command: |
              if [ -e go ]; then echo slow >> order.txt; exit 0; fi
              echo $$ > slow.pid
              exec sleep 60  # one process, whatever the timing
            depends: quick
          - name: last
            command: echo last >> order.txt
            depends: slow
        """)
    proc = spawn("run", str(dag), home=home)
    wait_for(lambda: (tmp_path / "slow.pid").exists() and (tmp_path / "slow.pid").read_text())
    slow_pid = int((tmp_path / "slow.pid").read_text())
    # Its guardian first (as if the OOM killer took both): nothing ends the step then.
    os.kill(guardian_of(proc.pid), signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    (run,) = runs(home)

    res = cli("status", run.name, home=home)
    assert res.code == 0
    assert "interrupted" in res.out and "retry" in res.out
    table = res.out.split("\n\n", 1)[1].splitlines()[1:]  # the step rows, after the header
    lines = {line.split()[0]: line.split()[1] for line in table if line}
    assert lines == {"quick": "succeeded", "slow": "interrupted", "last": "not_started"}
    doc = json.loads(cli("status", "--json", str(dag), home=home).out)
    assert doc["interrupted"] is True and doc["run_id"] == run.name
    assert alive(slow_pid)  # the dead engine's step is still running

    (tmp_path / "go").touch()
    res = cli("retry", run.name, home=home)
    assert res.code == 0, res.out + res.err
    assert "ending 1 process left" in res.out
    assert not alive(slow_pid)
    assert (tmp_path / "order.txt").read_text().split() == ["quick", "slow", "last"]
    doc = json.loads(cli("status", "--json", run.name, home=home).out)
    assert doc["status"] == "succeeded" and doc["attempt"] == 2
    assert [s["status"] for s in doc["steps"]] == ["succeeded"] * 3
    # The slow step ran twice: its first execution's output is kept apart.
    with Output(str(run)) as out:
        assert out.executions(1) == 2


def test_retry_of_a_running_run_is_refused(tmp_path):
    home = tmp_path / "home"
    dag = write(tmp_path / "s.yaml", "steps:\n  - command: touch started; sleep 30\n")
    proc = spawn("run", str(dag), home=home)
    try:
        wait_for(lambda: (tmp_path / "started").exists())
        (run,) = runs(home)
        res = cli("retry", run.name, home=home)
        assert res.code == 1 and "still running" in res.err
        res = cli("status", run.name, home=home)
        assert f"running (pid {proc.pid})" in res.out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)


# Disks -------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mnt: Path, options: str):
    """A tmpfs mounted at `mnt` with `options` for the block. These tests need root (to
    mount): without it they fail, saying so, rather than skip what they check."""
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.fail(f"cannot mount a tmpfs at {mnt} (these disk tests need root): "
                    f"{res.stderr.strip()}", pytrace=False)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs."""
    with tmpfs(tmp_path / "mnt", "size=1m") as mnt:
        yield mnt


def fill(path: Path) -> None:
    """Write `path` until the disk is full."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_full_home_is_a_clear_error_before_any_step(tmp_path, small_disk):
    fill(small_disk / "filler")
    dag = write(tmp_path / "d.yaml", "steps:\n  - command: touch ran\n")
    res = cli("run", str(dag), home=small_disk / "home")
    assert res.code == 1
    assert "No space left on device" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "ran").exists()


def test_a_start_that_fails_on_a_full_home_leaves_no_run_directory(tmp_path, small_disk):
    fill(small_disk / "filler")
    dag = write(tmp_path / "d.yaml", "steps:\n  - command: touch ran\n")
    home = small_disk / "home"
    for _ in range(3):
        res = cli("run", str(dag), home=home)
        assert res.code == 1 and "No space left on device" in res.err, res.err
    assert runs(home) == []
    res = cli("status", home=home)
    assert res.code == 1 and "no run recorded" in res.err


def test_a_disk_filled_by_the_last_step_still_gets_the_true_end_of_the_run(tmp_path):
    # The last step fills the disk: the space set aside is freed for the final record,
    # which says how the run ended, as the exit status does. (Had a snapshot come due
    # while the disk was full, the run stops and says why: true as well.)
    dag = write(tmp_path / "fill.yaml", """\
        steps:
          - name: fill
            command: head -c 3000000 /dev/zero || true
        """)
    with tmpfs(tmp_path / "mnt", "size=2m") as mnt:
        home = mnt / "home"
        res = cli("run", "--quiet", str(dag), home=home)
        (run,) = runs(home)
        assert (run / "status.json").exists(), res.err
        state = read_run(str(run))
        assert not state.torn and not state.interrupted and state.finished_at
        snap = json.loads((run / "status.json").read_text())
        assert snap["status"] == state.status and snap["finished_at"] == state.finished_at
        # The step's output fills the disk as it is stored: the step fails of it, and
        # says so (or the record's own write found the disk full first: the run stops).
        assert res.code == 1
        assert "no space left on device" in res.err.lower()
        assert state.status in (2, 3) and "no space left on device" in state.error.lower()
        assert not (run / "reserve").exists()


def test_the_final_record_uses_the_space_set_aside(tmp_path, small_disk):
    # Driven by hand (no event loop: every hook writes at once), so that the disk is
    # full exactly when the run ends.
    from types import SimpleNamespace

    from dagfast.loader import load
    from dagfast.records.store import Recorder, RunDir, StepRecord

    dag = load(str(write(tmp_path / "d.yaml", "steps:\n  - name: a\n    command: 'true'\n")))
    rd = RunDir.create(dag, str(small_disk / "home"))
    failures = []
    rec = Recorder(rd, on_failure=failures.append)
    records = [StepRecord()]
    rec.run_started(dag, rd, records)
    t0 = time.time()
    records[0] = StepRecord(status=1, started_at=t0)
    rec.step_started(0)
    records[0] = StepRecord(4, 0, t0, t0 + 1)
    rec.step_finished(0, records[0])
    fill(small_disk / "filler")
    rec.run_finished(SimpleNamespace(status=4, started_at=t0, finished_at=t0 + 1, signal=0,
                                     error=""))
    assert failures == [] and rd.failure is None
    snap = json.loads((Path(rd.path) / "status.json").read_text())
    assert snap["status"] == 4 and snap["finished_at"] == t0 + 1 and snap["error"] == ""
    assert read_run(rd.path).status == 4


def test_the_final_snapshot_is_durable_rename_and_all(tmp_path, monkeypatch):
    # fsync the file, rename it, then fsync the directory: the rename is on disk too.
    from dagfast.loader import load
    from dagfast.records.store import RunDir, Snapshot

    dag = load(str(write(tmp_path / "d.yaml", "steps:\n  - command: 'true'\n")))
    rd = RunDir.create(dag, str(tmp_path / "home"))
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (
        calls.append(("replace", str(b))), real_replace(a, b))[1])
    rd.write_snapshot(Snapshot(2, rd.run_id, "d", "", 4, 1.0, 2.0, os.getpid(), []),
                      durable=True)
    monkeypatch.undo()
    rd.close()
    final = os.path.join(rd.path, "status.json")
    assert calls == [("fsync", final + ".tmp"), ("replace", final), ("fsync", rd.path)]


def test_disk_filling_during_a_run_stops_it_and_says_why(tmp_path, small_disk):
    #   fill -> s0 -> s1 -> ... -> s399
    steps = "".join(f"  - name: s{i}\n    command: 'true'\n    depends: {'fill' if i == 0 else f's{i - 1}'}\n"
                    for i in range(400))
    dag = write(tmp_path / "d.yaml", "steps:\n  - name: fill\n"
                "    command: head -c 2000000 /dev/zero > /dev/stdout || true\n" + steps)
    home = small_disk / "home"
    res = cli("run", str(dag), home=home)
    assert res.code == 1, res.out + res.err
    # fill's output cannot all be stored: it fails of it, by name (or the record's own
    # write found the disk full first, and the run stopped).
    assert "no space left on device" in res.err.lower()
    (run,) = runs(home)
    state = read_run(str(run))
    assert state.status in (2, 3)  # failed, or aborted
    assert "no space left on device" in state.error.lower()
    assert state.steps[-1].status != 4  # it did not run to the end
    assert_record_agrees_with_console(res.out, run, home)
    res = cli("status", run.name, home=home)
    assert "no space left on device" in res.out.lower()


def console_counts(out: str) -> dict[str, int]:
    """The step counts of `run`'s summary line: `aborted: d, 40 steps in 0.2s (6 ...)`."""
    (line,) = [ln for ln in out.splitlines() if " steps in " in ln]
    return {k: int(n) for n, k in (part.split() for part in line.rsplit("(", 1)[1]
                                   .rstrip(")").split(", "))}


def assert_record_agrees_with_console(out: str, run: Path, home: Path) -> None:
    """No step of the ended run reads `running`, and `status --json` and `history` count
    the steps as the console did."""
    printed = console_counts(out)
    assert "running" not in printed
    state = read_run(str(run))
    assert state.finished_at is not None and not state.interrupted
    snap = json.loads(cli("status", "--json", run.name, home=home).out)
    counts: dict[str, int] = {}
    for step in snap["steps"]:
        counts[step["status"]] = counts.get(step["status"], 0) + 1
    assert counts == printed, (counts, printed)
    hist = cli("history", state.dag_name, home=home).out.splitlines()[-1]
    listed = {k: int(n) for n, k in (p.split() for p in hist.split("  ")[-1].split(", "))}
    assert listed == printed, (hist, printed)


def wide_dag(path: Path, steps: int, size: str, limit: int) -> Path:
    """`steps` independent steps, `limit` at a time, each printing `size` bytes as its
    output and then sleeping a little, so that several are running when space runs out."""
    text = f"maxActiveSteps: {limit}\nsteps:\n" + "".join(
        f"  - name: s{i}\n    output: O{i}\n"
        f"    command: head -c {size} /dev/zero | tr '\\0' a; sleep 0.2\n"
        for i in range(steps))
    return write(path, text)


def test_disk_filling_while_steps_run_leaves_none_running_in_the_record(tmp_path, small_disk):
    # 40 steps, 6 at a time, each with a 60 KiB output: the journal fills the 1 MiB disk
    # while steps run. The ends the engine records for them (aborted when stopped) must
    # reach the record, not stay `running` forever.
    dag = wide_dag(tmp_path / "d.yaml", 40, "60K", 6)
    home = small_disk / "home"
    res = cli("run", str(dag), home=home)
    assert res.code == 1 and "No space left on device" in res.err, res.out + res.err
    (run,) = runs(home)
    state = read_run(str(run))
    assert state.status == 3 and all(r.status != 1 for r in state.steps)
    assert_record_agrees_with_console(res.out, run, home)
    # The outputs the journal holds are kept for a retry, even if the last snapshot
    # had no room for them.
    for r in state.steps:
        if r.status == 4 and r.error == "":
            assert r.output == "a" * 60 * 1024


def test_a_file_size_limit_during_a_run_still_records_how_it_ended(tmp_path):
    # RLIMIT_FSIZE (`ulimit -f`): the space set aside does not help, as no file may grow
    # past the limit; status.json is still written, without the outputs that do not fit.
    dag = wide_dag(tmp_path / "d.yaml", 30, "100K", 8)
    home = tmp_path / "home"
    proc = subprocess.run(
        ["sh", "-c", 'ulimit -f 1000 && exec "$0" -m dagfast run "$1"', sys.executable,
         str(dag)],
        env=dict(os.environ, DAGFAST_HOME=str(home)), capture_output=True, text=True,
        timeout=120)
    # The output store reaches the limit first: the steps whose output it could not
    # store fail of it, by name (or the record's own write did, and the run stopped).
    text = (proc.stdout + proc.stderr).lower()
    assert proc.returncode == 1 and "file too large" in text, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (run,) = runs(home)
    snap = json.loads((run / "status.json").read_text())
    assert snap["status"] in (2, 3) and snap["finished_at"]
    assert "file too large" in (snap["error"] + str(snap["steps"])).lower()
    assert all(step[0] != 1 for step in snap["steps"])
    assert_record_agrees_with_console(proc.stdout, run, home)
    # Without the limit, a retry finishes the run; a step whose output the record could
    # not keep runs again, so that every output is there.
    from dagfast.records.store import OUTPUT_LOST

    lost = {i for i, r in enumerate(read_run(str(run)).steps) if r.error == OUTPUT_LOST}
    assert cli("retry", run.name, home=home).code == 0
    state = read_run(str(run))
    assert all(r.status == 4 and r.output == "a" * 100 * 1024 for r in state.steps)
    assert all(state.steps[i].error == "" for i in lost)


def test_a_finished_run_whose_record_lacks_a_step_end_reads_it_aborted(tmp_path):
    # The reader's side: a step started, then the run's end was recorded without the
    # step's (a disk that filled in between). It is not `running` in an ended run.
    import msgspec as _msgspec

    from dagfast.loader import load
    from dagfast.records.store import Recorder, RunDir, StepRecord

    dag = load(str(write(tmp_path / "d.yaml", "steps:\n  - name: a\n    command: 'true'\n")))
    rd = RunDir.create(dag, str(tmp_path / "home"))
    rec = Recorder(rd, on_failure=lambda exc: None)
    records = [StepRecord()]
    rec.run_started(dag, rd, records)
    t0 = time.time()
    records[0] = StepRecord(status=1, started_at=t0)
    rec.step_started(0)
    rd.append(frame(_msgspec.msgpack.encode([(5, 3, t0 + 1, 0, "stopped: disk full")])))
    rd.close()
    state = read_run(rd.path)
    assert state.status == 3 and state.finished_at == t0 + 1
    assert state.steps[0].status == 3 and state.steps[0].finished_at == t0 + 1
    assert "not recorded" in state.steps[0].error


@pytest.mark.parametrize("name", [".", "..", ".hidden", "..."])
def test_a_dag_named_with_leading_dots_keeps_its_runs_under_runs(tmp_path, name):
    dag = write(tmp_path / "d.yaml", f'name: "{name}"\nsteps:\n  - command: "true"\n')
    home = tmp_path / "home"
    res = cli("run", "--quiet", str(dag), home=home)
    assert res.code == 0, res.err
    (run,) = [p for p in home.rglob("*") if (p / "dag.json").exists()]
    # `_` first, and a hash of the name: a DAG called `_.hidden` has runs of its own.
    assert run.parent.parent == home / "runs" and run.parent.name.startswith(f"_{name}+")
    assert read_run(str(run)).dag_name == name
    for args in (["status", run.name], ["status", name], ["history", name], ["status"]):
        res = cli(*args, home=home)
        assert res.code == 0 and run.name in res.out and "succeeded" in res.out, (args, res)


def test_read_only_home_is_a_clear_error(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mnt:
        dag = write(tmp_path / "d.yaml", "steps:\n  - command: touch ran\n")
        res = cli("run", str(dag), home=mnt / "home")
        assert res.code == 1
        assert "cannot create the run directory" in res.err and "Read-only" in res.err
        assert not (tmp_path / "ran").exists()


# Many at once ----------------------------------------------------------------------------


def test_fifty_runs_of_the_same_dag_at_once_leave_fifty_records(tmp_path):
    home = tmp_path / "home"
    dag = write(tmp_path / "d.yaml", """\
        steps:
          - name: a
            command: echo $DAG_RUN_ID
          - name: b
            command: echo b
            depends: a
        """)
    procs = [spawn("run", "--quiet", str(dag), home=home) for _ in range(50)]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    found = runs(home)
    assert len(found) == 50
    for run in found:
        state = read_run(str(run))
        assert state.status == 4 and not state.torn and not state.rebuilt
        assert printed(run, 0) == run.name + "\n"


def test_retry_keeps_the_outputs_of_steps_that_succeeded(tmp_path):
    #   make -> use      (use fails the first time; the retry must still see ${VALUE})
    dag = tmp_path / "out.yaml"
    dag.write_text(
        "steps:\n"
        "  - name: make\n"
        "    command: echo made-$$ >> made.txt; echo value-42\n"
        "    output: VALUE\n"
        "  - name: use\n"
        "    command: test -e fixed && echo \"got $VALUE\" > got.txt\n"
        "    depends: make\n"
    )
    home = tmp_path / "home"
    first = cli("run", str(dag), home=home)
    assert first.code == 1
    run_id = next((home / "runs").glob("*/*")).name
    (tmp_path / "fixed").touch()
    again = cli("retry", run_id, home=home)
    assert again.code == 0, again.out + again.err
    assert (tmp_path / "got.txt").read_text() == "got value-42\n"
    assert len((tmp_path / "made.txt").read_text().split()) == 1  # `make` ran once


# Versions and early deaths ---------------------------------------------------------------


def test_a_record_from_a_newer_dagfast_is_refused_not_misread(tmp_path):
    home = tmp_path / "home"
    dag = write(tmp_path / "d.yaml", "steps:\n  - name: a\n    command: 'true'\n")
    assert cli("run", str(dag), home=home).code == 0
    (run,) = runs(home)
    assert json.loads((run / "dag.json").read_text())["version"] == 1
    original = {n: (run / n).read_bytes() for n in ("status.json", "journal", "dag.json")}

    def refused(name: str, what: str, version: int, reads: int = 1) -> None:
        # The lock aside (a retry takes it first), nothing is changed.
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "lock"}
        for args in (["status", run.name], ["status", "--json", run.name], ["retry", run.name]):
            res = cli(*args, home=home)
            assert res.code == 1 and res.out == "", (args, res.out)
            assert res.err == (
                f"dagfast: the record of run `{run.name}` is unreadable: `{run / name}` was "
                f"written by a newer dagfast ({what} version {version}; this one reads up to "
                f"{reads})\n"), (args, res.err)
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "lock"} == before

    snap = json.loads(original["status.json"])
    (run / "status.json").write_text(json.dumps(dict(snap, version=3, steps="new shape")))
    refused("status.json", "snapshot", 3, reads=2)
    (run / "status.json").unlink()  # the journal alone: its Begin says version 2
    payloads = frames(original["journal"])[0]
    begin = msgspec.msgpack.decode(payloads[0])
    begin[0][1] = 2
    rest = original["journal"][8 + len(payloads[0]):]
    (run / "journal").write_bytes(frame(msgspec.msgpack.encode(begin)) + rest)
    refused("journal", "journal", 2)
    # ... or a newer Begin this version cannot even decode
    begin[0][2:] = [{"new": "shape"}]
    (run / "journal").write_bytes(frame(msgspec.msgpack.encode(begin)) + rest)
    refused("journal", "journal", 2)
    # ... or an entry kind this version does not know, after a Begin it does
    (run / "journal").write_bytes(original["journal"] + frame(msgspec.msgpack.encode([[9, 0]])))
    res = cli("retry", run.name, home=home)
    assert res.code == 1 and "written by a newer dagfast (entry kind 9" in res.err
    assert frames((run / "journal").read_bytes())[1] > len(original["journal"])  # not cut
    (run / "journal").write_bytes(original["journal"])
    (run / "status.json").write_bytes(original["status.json"])

    doc = json.loads(original["dag.json"])
    (run / "dag.json").write_text(json.dumps(dict(doc, version=2)))
    res = cli("status", run.name, home=home)
    assert res.code == 1 and res.err == (
        f"dagfast: cannot read the DAG of run `{run.name}`: `{run / 'dag.json'}` was written "
        "by a newer dagfast (DAG version 2; this one reads up to 1)\n")
    (run / "dag.json").write_bytes(original["dag.json"])
    assert cli("status", run.name, home=home).code == 0


def test_a_run_killed_before_its_first_record_reads_interrupted(tmp_path):
    # The engine died after making the run directory, before the journal's first frame:
    # nobody holds the run and nothing says it ended.
    home = tmp_path / "home"
    dag = write(tmp_path / "d.yaml", """\
        steps:
          - name: a
            command: echo a >> ran.txt
          - name: b
            command: echo b >> ran.txt
            depends: a
        """)
    assert cli("run", "--quiet", str(dag), home=home).code == 0
    (run,) = runs(home)
    (run / "journal").write_bytes(b"")
    (run / "status.json").unlink()
    (tmp_path / "ran.txt").unlink()
    pid = int((run / "lock").read_text())
    state = read_run(str(run))
    assert state.interrupted and state.label == "interrupted" and state.pid == pid
    res = cli("status", run.name, home=home)
    assert res.code == 0, res.err
    assert res.out.splitlines()[2] == (
        f"status:  interrupted: its process (pid {pid}) is gone before its first step; "
        f"`dagfast retry {run.name}` finishes it")
    assert json.loads(cli("status", "--json", run.name, home=home).out)["interrupted"] is True
    res = cli("stop", run.name, home=home)
    assert res.code == 1 and "is not running (it is interrupted)" in res.err
    res = cli("retry", run.name, home=home)
    assert res.code == 0, res.out + res.err
    assert (tmp_path / "ran.txt").read_text().split() == ["a", "b"]
    assert read_run(str(run)).status == 4
    # A run its owner let go of before its first record (an executor that could not
    # open) is not_started, not interrupted.
    from dagfast.loader import load
    from dagfast.records.store import RunDir

    rd = RunDir.create(load(str(dag)), str(home))
    rd.close()
    state = read_run(rd.path)
    assert (state.label, state.interrupted, len(state.steps)) == ("not_started", False, 2)
