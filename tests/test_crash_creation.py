"""A kill -9 while a run's directory is being made leaves no run that `status` or
`retry` cannot read: the directory appears under its run id only once its lock,
dag.json and journal exist."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from spectools import dagfast

KILL_WHILE_MAKING = textwrap.dedent("""\
    import os, signal, sys
    from dagfast.loader import load
    from dagfast.records.store import RunDir

    def die(self, name, data, durable=False):
        os.kill(os.getpid(), signal.SIGKILL)  # after mkdir and the lock, before dag.json

    RunDir.write_atomic = die
    RunDir.create(load(sys.argv[1]), sys.argv[2])
    """)


def test_a_kill_while_a_run_is_made_leaves_no_half_made_run(tmp_path):
    dag = tmp_path / "one.yaml"
    dag.write_text("steps:\n  - name: a\n    command: 'true'\n")
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-c", KILL_WHILE_MAKING, str(dag), str(home)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    runs = home / "runs" / "one"
    visible = [p.name for p in runs.iterdir() if not p.name.startswith(".")]
    assert visible == []  # only the hidden, half-made one
    got = dagfast("status", str(dag), home=home)
    assert got.code == 1 and got.err.startswith("dagfast: no run"), got.err
    # The next run is made and read as usual beside it.
    assert dagfast("run", "-q", str(dag), home=home).code == 0
    assert dagfast("status", str(dag), home=home).code == 0
    assert len([p for p in runs.iterdir() if not p.name.startswith(".")]) == 1
