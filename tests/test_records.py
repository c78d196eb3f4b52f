"""Run records under faults: torn journals, corrupt snapshots, a killed engine, a full
disk, many runs at once. Real processes, real files."""

from __future__ import annotations

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
from dagfast.journal import frame, frames
from dagfast.records import read_run
from dagfast.store import Begin, End
from spectools import dagfast as cli


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


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def journal_entries(run: Path) -> list:
    payloads, end, torn = frames((run / "journal").read_bytes())
    assert not torn
    dec = msgspec.msgpack.Decoder(list[dagfast.store.Entry])
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
    assert entries[-2] == End(1, 2, 4, entries[-2].at, "exit status 4", None)
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
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    (run,) = runs(home)

    res = cli("status", run.name, home=home)
    assert res.code == 0
    assert "interrupted" in res.out and "retry" in res.out
    lines = {line.split()[0]: line.split()[1] for line in res.out.splitlines()[6:] if line}
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
    # The slow step's first log went to attempts/1/.
    assert (run / "attempts" / "1" / "steps" / "1.out").exists()


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


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_home_is_a_clear_error_before_any_step(tmp_path, small_disk):
    with open(small_disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    dag = write(tmp_path / "d.yaml", "steps:\n  - command: touch ran\n")
    res = cli("run", str(dag), home=small_disk / "home")
    assert res.code == 1
    assert "No space left on device" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "ran").exists()


def test_disk_filling_during_a_run_stops_it_and_says_why(tmp_path, small_disk):
    #   fill -> s0 -> s1 -> ... -> s399
    steps = "".join(f"  - name: s{i}\n    command: 'true'\n    depends: {'fill' if i == 0 else f's{i - 1}'}\n"
                    for i in range(400))
    dag = write(tmp_path / "d.yaml", "steps:\n  - name: fill\n"
                "    command: head -c 2000000 /dev/zero > /dev/stdout || true\n" + steps)
    home = small_disk / "home"
    res = cli("run", str(dag), home=home)
    assert res.code == 1, res.out + res.err
    assert "the run was stopped" in res.err and "No space left on device" in res.err
    (run,) = runs(home)
    state = read_run(str(run))
    assert state.status == 3  # aborted
    assert "No space left on device" in state.error
    assert state.steps[-1].status != 4  # it did not run to the end
    res = cli("status", run.name, home=home)
    assert "aborted" in res.out and "No space left on device" in res.out


def test_read_only_home_is_a_clear_error(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        dag = write(tmp_path / "d.yaml", "steps:\n  - command: touch ran\n")
        res = cli("run", str(dag), home=mnt / "home")
        assert res.code == 1
        assert "cannot create the run directory" in res.err and "Read-only" in res.err
        assert not (tmp_path / "ran").exists()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


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
        assert (run / "steps" / "0.out").read_text() == run.name + "\n"


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
