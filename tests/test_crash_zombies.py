"""A stop does not wait on zombies: a step's children that died but are not reaped (by a
subreaper that does not reap, or dagfast itself as PID 1 in a container) leave a process
group of zombies only, which is gone, not `maxCleanUpTimeSec` to wait out."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Runs `dagfast run DAG` as a child subreaper that never reaps anything but the engine:
# the step's children, orphaned as their shell dies, come to it and stay zombies.
HELPER = textwrap.dedent("""\
    import ctypes, os, signal, subprocess, sys, time
    PR_SET_CHILD_SUBREAPER = 36
    assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    dag, ready = sys.argv[1], sys.argv[2]
    engine = subprocess.Popen([sys.executable, "-m", "dagfast", "run", "--quiet", dag])
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        assert time.monotonic() < deadline and engine.poll() is None
        time.sleep(0.01)
    time.sleep(0.2)  # the background children are started too
    asked = time.monotonic()
    engine.send_signal(signal.SIGTERM)
    code = engine.wait()
    took = time.monotonic() - asked
    zombies = 0
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        zombies += fields[0] == b"Z" and int(fields[1]) == os.getpid()
    print(f'{{"code": {code}, "took": {took}, "zombies": {zombies}}}')
""")


def test_a_stop_does_not_wait_for_a_group_of_zombies(tmp_path):
    ready = tmp_path / "ready"
    dag = tmp_path / "z.yaml"
    dag.write_text(textwrap.dedent(f"""\
        maxCleanUpTimeSec: 60
        steps:
          - name: parent
            command: sh -c 'sleep 60 & sleep 60 & touch {ready}; wait'
        """))
    res = subprocess.run([sys.executable, "-c", HELPER, str(dag), str(ready)],
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["zombies"] >= 1  # the case is set: the step's children became zombies
    assert got["code"] == 128 + 15
    assert got["took"] < 40, got  # not the 60 s of maxCleanUpTimeSec (a stop takes ~1 s)
