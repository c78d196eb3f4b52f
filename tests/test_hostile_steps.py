"""Hostile steps: huge output, closed stdout, signals, escaping grandchildren, a deleted
working directory, exhausted descriptors. The engine stays up, records what really
happened, and leaves no process behind after a stop or a timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from spectools import alive, dagfast, run_under_ulimit_n
from outputs import printed, the_run

from dagfast.records.outstore import Output

MB = 1024 * 1024


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def steps_of(home: Path) -> dict[str, dict]:
    status = json.loads(dagfast("status", the_run(home).name, "--json", home=home).out)
    return {s["name"]: s for s in status["steps"]}


def wait_for(pred, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def spawn_run(dag: Path, home: Path) -> subprocess.Popen:
    env = dict(os.environ, DAGFAST_HOME=str(home))
    return subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_hundreds_of_megabytes_of_output_keep_the_engine_small(tmp_path):
    dag = write(tmp_path / "loud.yaml", """\
        steps:
          - name: out
            command: head -c 200M /dev/zero
          - name: err
            command: head -c 200M /dev/zero >&2
          - name: both
            command: head -c 100M /dev/zero & head -c 100M /dev/zero >&2; wait
          - name: captured
            output: OUT
            command: head -c 200M /dev/zero
        """)
    # The engine in a process of its own, so its peak memory is its own.
    code = textwrap.dedent(f"""\
        import dagfast
        r = dagfast.run(dagfast.load({str(dag)!r}))
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                print(int(line.split()[1]) // 1024)
        """)  # VmHWM, not ru_maxrss: that one keeps a vforking parent's peak across exec
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) < 150  # MiB: streamed through the store, never held
    with Output(str(the_run(tmp_path / "home"))) as out:
        assert [out.total(i, s) // MB for i, s in [(0, 0), (1, 1), (2, 0), (2, 1), (3, 0)]] \
            == [200, 200, 100, 100, 200]
    got = steps_of(tmp_path / "home")
    assert [got[n]["status"] for n in ("out", "err", "both")] == ["succeeded"] * 3
    assert got["captured"]["status"] == "failed"
    assert "output exceeded maximum size limit of 1048576 bytes" in got["captured"]["error"]


def test_closed_stdout_stdin_and_signals_are_recorded_as_they_happened(tmp_path):
    dag = write(tmp_path / "odd.yaml", """\
        steps:
          - name: closes_stdout
            command: exec >&- 2>&-; exit 0
          - name: reads_stdin
            command: cat; read line || echo end of input
          - name: segfaults
            command: kill -SEGV $$
          - name: killed
            command: kill -KILL $$
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=60)
    assert res.code == 1
    got = steps_of(tmp_path / "home")
    assert got["closes_stdout"]["status"] == "succeeded"
    assert got["reads_stdin"]["status"] == "succeeded"
    assert (got["segfaults"]["exit_code"], got["segfaults"]["error"]) == (139, "killed by SIGSEGV")
    assert (got["killed"]["exit_code"], got["killed"]["error"]) == (137, "killed by SIGKILL")


def test_a_step_that_ignores_sigterm_is_killed_after_the_clean_up_time(tmp_path):
    dag = write(tmp_path / "deaf.yaml", """\
        maxCleanUpTimeSec: 1
        steps:
          - name: deaf
            command: trap '' TERM; echo $$ > deaf.pid; while :; do sleep 0.1; done
        """)
    proc = spawn_run(dag, tmp_path / "home")
    wait_for(lambda: (tmp_path / "deaf.pid").exists() and (tmp_path / "deaf.pid").read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    assert not alive(int((tmp_path / "deaf.pid").read_text()))
    got = steps_of(tmp_path / "home")["deaf"]
    assert (got["status"], got["error"]) == ("aborted", "killed by SIGKILL")


ESCAPE = "setsid sh -c 'echo $$ >> escaped.pids; exec sleep 300' &"
# Leaves the group and sheds the environment (no DAG_RUN_ID to find it by).
BARE_ESCAPE = "setsid env -i sh -c 'echo $$ >> escaped.pids; exec sleep 300' &"


def test_grandchildren_that_setsid_out_of_the_group_do_not_survive_a_stop(tmp_path):
    dag = write(tmp_path / "escape.yaml", f"""\
        steps:
          - name: plain
            command: {ESCAPE} sleep 300
          - name: featured
            retryPolicy: {{limit: 1}}
            command: {ESCAPE} {ESCAPE} sleep 300
          - name: bare
            command: {BARE_ESCAPE} sleep 300
        """)
    proc = spawn_run(dag, tmp_path / "home")
    pids = tmp_path / "escaped.pids"
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 4)
    escaped = [int(p) for p in pids.read_text().split()]
    assert all(alive(p) for p in escaped)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    wait_for(lambda: not any(alive(p) for p in escaped), timeout=10)


def test_grandchildren_that_setsid_out_of_the_group_do_not_survive_a_timeout(tmp_path):
    dag = write(tmp_path / "escape.yaml", f"""\
        steps:
          - name: slow
            timeoutSec: 1
            command: {ESCAPE} sleep 300
          - name: other
            command: {ESCAPE} sleep 2
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", cwd=tmp_path, timeout=60)
    assert res.code == 1
    got = steps_of(tmp_path / "home")
    assert (got["slow"]["exit_code"], got["slow"]["error"]) == (124, "step timed out after 1s")
    assert got["other"]["status"] == "succeeded"
    pids = [int(p) for p in (tmp_path / "escaped.pids").read_text().split()]
    # The timed-out step's escapee is gone; the other step ended normally, and its
    # background child is left alone, as any background child of a finished step.
    assert sum(alive(p) for p in pids) == 1
    for p in pids:
        if alive(p):
            os.kill(p, signal.SIGKILL)


def test_a_step_that_deletes_its_own_working_directory(tmp_path):
    #   remover -> next (same dir)
    work = tmp_path / "work"
    work.mkdir()
    dag = write(tmp_path / "rm.yaml", f"""\
        type: chain
        steps:
          - name: remover
            dir: {work}
            command: cd .. && rm -rf {work}
          - name: next
            dir: {work}
            command: /bin/pwd -P && touch here
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=60)
    assert res.code == 0, res.out + res.err
    assert (work / "here").exists()  # ran in a real directory, made afresh, as Dagu does
    assert printed(the_run(tmp_path / "home"), 1) == f"{work}\n"


def test_a_step_that_exhausts_its_descriptors_fails_alone(tmp_path):
    dag = write(tmp_path / "fds.yaml", f"""\
        steps:
          - name: hog
            command: {sys.executable} -c "import os; [os.open('/dev/null', 0) for _ in iter(int, 1)]"
          - name: sibling
            command: for i in 1 2 3 4 5; do sh -c 'echo ok' > /dev/null; done
          - name: after_sibling
            depends: sibling
            command: echo fine
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=60)
    assert res.code == 1
    got = steps_of(tmp_path / "home")
    assert (got["hog"]["status"], got["hog"]["exit_code"]) == ("failed", 1)
    assert "Too many open files" in printed(the_run(tmp_path / "home"), 0, "err")
    assert got["after_sibling"]["status"] == "succeeded"


def test_unlimited_steps_are_capped_to_the_open_file_limit_and_said_once(tmp_path):
    # 600 steps with maxActiveSteps 0 under `ulimit -n 200`: each running step holds a
    # pidfd, so an uncapped engine would die of EMFILE long before the end.
    dag = tmp_path / "wide.yaml"
    dag.write_text("maxActiveSteps: 0\nsteps:\n" + "".join(
        f"  - name: s{i}\n    command: sleep 0.05\n" for i in range(600)))  # fmt: skip
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    done = run_under_ulimit_n(dag, 200, env)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "steps at once" in line]
    assert len(notes) == 1
    assert notes[0].startswith("dagfast: running at most ")
    assert notes[0].endswith("the open-file limit (ulimit -n) is 200, and a running step holds "
                             "3 descriptors (maxActiveSteps unlimited)")
    status = json.loads(dagfast("status", the_run(tmp_path / "home").name, "--json",
                                home=tmp_path / "home").out)
    assert {s["status"] for s in status["steps"]} == {"succeeded"}


def test_unlimited_steps_are_capped_to_the_process_limit_and_said_once(tmp_path):
    # RLIMIT_NPROC (`ulimit -u`) counts every process of the user. As a user, the limit is
    # set to what the user runs now plus the engine's reserve and a dozen. Root is not
    # bound by it (the kernel lets root past), so as root the engine is made to believe
    # it runs as `nobody`, who runs nothing: the same cap, computed the same way.
    from dagfast.exec.local import _FD_RESERVE

    dag = tmp_path / "wide.yaml"
    dag.write_text("maxActiveSteps: 0\nsteps:\n" + "".join(
        f"  - name: s{i}\n    command: sleep 0.2\n" for i in range(40)))  # fmt: skip
    if os.getuid() == 0:
        mine, pretend = 0, "import dagfast.exec.local as p; p.os = type(os)('os'); " \
            "p.os.__dict__.update(os.__dict__); p.os.getuid = lambda: 65534; "
    else:
        mine = sum(1 for d in os.listdir("/proc")
                   if d.isdigit() and os.stat(f"/proc/{d}").st_uid == os.getuid())
        pretend = ""
    limit = mine + _FD_RESERVE + 12
    script = (
        f"import os, resource, runpy, sys; {pretend}"
        f"resource.setrlimit(resource.RLIMIT_NPROC, ({limit}, {limit})); "
        "sys.argv = ['dagfast', 'run', '--quiet', sys.argv[1]]; "
        "runpy.run_module('dagfast', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", script, str(dag)],
                          env=dict(os.environ, DAGFAST_HOME=str(tmp_path / "home")),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "steps at once" in line]
    assert len(notes) == 1, done.stderr
    assert notes[0].endswith(f"the process limit (ulimit -u) is {limit} (maxActiveSteps unlimited)")
    cap = int(notes[0].split("running at most ")[1].split()[0])
    assert 1 <= cap <= 12
    status = json.loads(dagfast("status", the_run(tmp_path / "home").name, "--json",
                                home=tmp_path / "home").out)
    assert {s["status"] for s in status["steps"]} == {"succeeded"}
    spans = sorted([(s["started_at"], 1) for s in status["steps"]] +
                   [(s["finished_at"], -1) for s in status["steps"]])
    running = most = 0
    for _, delta in spans:
        running += delta
        most = max(most, running)
    assert most <= cap
