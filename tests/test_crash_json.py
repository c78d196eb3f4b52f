"""`run --json` to a slow reader: every event arrives, whole, once; the run never waits
for the reader; a reader that goes away ends the stream, not the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

STEPS = 2500


def fan(tmp_path: Path) -> Path:
    """STEPS `true` steps, then `last`, which leaves a file: the run's steps are done."""
    dag = tmp_path / "fan.yaml"
    dag.write_text("steps:\n" + "".join(
        f"  - name: s{i}\n    command: \"true\"\n" for i in range(STEPS)
    ) + f"  - name: last\n    command: touch {tmp_path / 'done'}\n    depends: [s{STEPS - 1}]\n")
    return dag


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
def test_a_pipe_read_only_after_the_run_gets_every_event_whole_and_once(tmp_path, unbuffered):
    dag = fan(tmp_path)
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED=unbuffered)
    if not unbuffered:
        del env["PYTHONUNBUFFERED"]
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", "--json", str(dag)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Not one byte is read until every step has run: the run must not wait for us.
    deadline = time.monotonic() + 120
    while not (tmp_path / "done").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the run waited for its reader"
        time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = out.split(b"\n")
    assert lines.pop() == b""
    events = [json.loads(line) for line in lines]  # every line parses
    assert len(events) == 2 * (STEPS + 1) + 2
    kinds = [(e["event"], e.get("step")) for e in events]
    assert len(set(kinds)) == len(kinds)  # none twice
    assert kinds[0] == ("run_started", None) and kinds[-1] == ("run_finished", None)
    assert events[-1]["status"] == "succeeded"


def test_a_json_reader_that_goes_away_ends_the_stream_not_the_run(tmp_path):
    dag = fan(tmp_path)
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", "--json", str(dag)],
                            env=env, stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    with os.fdopen(r, "rb") as reader:
        first = reader.readline()
    assert json.loads(first)["event"] == "run_started"
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == b""
    assert (tmp_path / "done").exists()
    status = subprocess.run([sys.executable, "-m", "dagfast", "status", "--json", "fan"],
                            env=env, capture_output=True, text=True, check=True)
    assert json.loads(status.stdout)["status"] == "succeeded"
