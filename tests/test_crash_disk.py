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


@pytest.mark.parametrize("what", ["blocks", "inodes"])
def test_a_step_that_fails_of_a_full_home_and_its_run_say_no_space_and_where(tmp_path, what):
    # first waits for the disk to fill (by the test, between two steps), then second runs.
    flag = tmp_path / "filled"
    dag = tmp_path / "d.yaml"
    dag.write_text(f"steps:\n"
                   f"  - name: first\n    command: sh -c 'while [ ! -e {flag} ]; do sleep 0.01; done'\n"
                   f"  - name: second\n    command: echo hello\n    depends: first\n")
    options = "size=2m" if what == "blocks" else "size=8m,nr_inodes=64"
    with tmpfs(tmp_path / "mnt", options) as mnt:
        home = mnt / "home"
        proc = run(dag, home)
        deadline = time.monotonic() + 60
        while not any(home.glob("runs/d/*/steps/0.out")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        (fill_blocks(mnt / "big") if what == "blocks" else fill_inodes(mnt / "many"))
        flag.touch()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0
        doc = status(home)
        (steps,) = home.glob("runs/d/*/steps")
        second = doc["steps"][1]
        assert second["status"] == "failed", doc
        assert "no space left on device" in second["error"], second
        assert str(steps) in second["error"], second
        assert "/bin/bash" not in second["error"]
        assert "no space left on device" in doc["error"].lower(), doc
        assert str(home) in doc["error"], doc
        assert "no space left on device" in (out + err).lower()
