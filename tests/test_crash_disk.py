"""A full home is named: when its disk (or its inode table) fills, the step that fails of
it and the run both say `no space left on device` and where, instead of `exit status 1`
with an empty stderr, or blaming `/bin/bash`."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(mnt: Path, options: str):
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def status(home: Path) -> dict:
    res = subprocess.run([sys.executable, "-m", "dagfast", "status", "--json"],
                         env=dict(os.environ, DAGFAST_HOME=str(home)),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def run(dag: Path, home: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)],
                            env=dict(os.environ, DAGFAST_HOME=str(home)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def fill_blocks(path: Path) -> None:
    with open(path, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)


def fill_inodes(folder: Path) -> None:
    folder.mkdir()
    with contextlib.suppress(OSError):
        for i in range(1_000_000):
            (folder / str(i)).touch()


def run_filling_between(tmp_path: Path, options: str, fill, then: str) -> tuple:
    """Run `first` (waits for a flag) then the steps `then` (YAML, each depending on
    first) with the home on a tmpfs of `options`, filled by `fill(mnt)` while first
    waits: (exit status, stdout + stderr, `status --json`)."""
    flag, started = tmp_path / "filled", tmp_path / "started"
    dag = tmp_path / "d.yaml"
    dag.write_text(f"steps:\n"
                   f"  - name: first\n    command: sh -c 'touch {started}; "
                   f"while [ ! -e {flag} ]; do sleep 0.01; done'\n" + then)
    with tmpfs(tmp_path / "mnt", options) as mnt:
        home = mnt / "home"
        proc = run(dag, home)
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        fill(mnt)
        flag.touch()
        out, err = proc.communicate(timeout=60)
        return proc.returncode, out + err, status(home)


def test_a_step_whose_output_cannot_be_stored_fails_of_it_by_name(tmp_path):
    # second prints a line that the run's output store has no room for.
    code, said, doc = run_filling_between(
        tmp_path, "size=2m", lambda mnt: fill_blocks(mnt / "big"),
        "  - name: second\n    command: echo hello\n    depends: first\n")
    assert code != 0
    second = doc["steps"][1]
    assert second["status"] == "failed", doc
    assert second["error"] == "no space left on device while writing the log of second", second
    assert "no space left on device" in doc["error"].lower(), doc
    assert "no space left on device while writing the log of second" in said


def test_a_full_inode_table_fails_no_step_that_prints(tmp_path):
    # The output store is two files made with the run: a step that prints needs no new
    # inode. (The record's snapshot does, when one comes due: then the run stops, as
    # for a full disk, and says why; its steps are stopped, not failed.)
    code, said, doc = run_filling_between(
        tmp_path, "size=8m,nr_inodes=64", lambda mnt: fill_inodes(mnt / "many"),
        "".join(f"  - name: s{i}\n    command: echo line {i}\n    depends: first\n"
                for i in range(20)))
    statuses = {s["status"] for s in doc["steps"]}
    assert "failed" not in statuses, doc
    if code == 0:
        assert statuses == {"succeeded"}
    else:
        assert doc["status"] == "aborted" and "no space left on device" in doc["error"].lower()
        assert statuses <= {"succeeded", "aborted", "not_started"}
