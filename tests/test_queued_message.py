"""A run waiting for a `maxActiveRuns` slot says so (which runs hold the slots), and
Ctrl-C there says what it did."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time


def test_a_queued_run_says_what_it_waits_for_and_what_ctrl_c_did(tmp_path):
    go, started = tmp_path / "go", tmp_path / "started"
    dag = tmp_path / "one.yaml"
    dag.write_text(textwrap.dedent(f"""\
        maxActiveRuns: 1
        steps:
          - name: hold
            command: touch {started}; while [ ! -e {go} ]; do sleep 0.05; done
        """))
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"), CI="1")
    cmd = [sys.executable, "-m", "dagfast", "run", str(dag)]
    holder = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    waiter = None
    try:
        while not started.exists():
            assert holder.poll() is None, holder.communicate()
            time.sleep(0.02)
        waiter = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        # Waits for the line; the 120 s only keeps a missing line from hanging the suite.
        assert select.select([waiter.stderr], [], [], 120)[0], "no line on stderr"
        line = waiter.stderr.readline()
        holding = re.search(r"run (\S+) of one", holder.stdout.readline()).group(1)
        m = re.fullmatch(r"dagfast: run (\S+): waiting for a run slot of one: 1 of 1 in use "
                         r"\(run (\S+)\); Ctrl-C leaves the queue, running nothing\n", line)
        assert m, line
        queued, shown = m.groups()
        assert shown == holding
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate()
        assert waiter.returncode == 130
        assert re.match(rf"dagfast: run {queued} stopped while waiting for a run slot of one "
                        r"\(SIGINT after \d+\.\d\d s in the queue\)", err), err
        assert out == ""
    finally:
        go.touch()
        for p in (holder, waiter):
            if p is not None:
                p.communicate()
    assert holder.returncode == 0
