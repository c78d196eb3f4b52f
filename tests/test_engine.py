"""The engine end to end: real processes started by `dagfast run`, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spectools import STUBBORN_DAG, Stubs, dagfast, max_overlap
from outputs import printed


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run_dir(home: Path) -> Path:
    (run,) = [p for p in (home / "runs").glob("*/*") if p.is_dir()]
    return run


def snapshot(home: Path) -> dict:
    return json.loads((run_dir(home) / "status.json").read_text())


def test_success_exit_zero_and_step_lines(tmp_path):
    dag = write(tmp_path / "ok.yaml", """\
        steps:
          - name: hello
            command: echo hello
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.err
    assert "started    hello" in res.out
    assert "succeeded  hello" in res.out
    assert res.out.splitlines()[-2].startswith("succeeded: ok, 1 steps")
    run = run_dir(tmp_path / "home")
    assert printed(run, 0) == "hello\n"
    assert snapshot(tmp_path / "home")["status"] == 4


def test_failure_aborts_dependents_but_not_independent_branches(tmp_path):
    #   bad -> after_bad -> after_after
    #   good
    dag = write(tmp_path / "f.yaml", """\
        steps:
          - name: bad
            command: echo oops >&2; exit 3
          - name: after_bad
            command: touch ran-after-bad
            depends: bad
          - name: after_after
            command: touch ran-after-after
            depends: after_bad
          - name: good
            command: sleep 0.2; touch ran-good
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 1
    assert not (tmp_path / "ran-after-bad").exists()
    assert not (tmp_path / "ran-after-after").exists()
    assert (tmp_path / "ran-good").exists()
    assert "aborted    after_bad (upstream failed)" in res.out
    assert "failed: bad (exit status 3)" in res.out
    snap = snapshot(tmp_path / "home")
    assert snap["status"] == 2
    statuses = [s[0] for s in snap["steps"]]
    assert statuses == [2, 3, 3, 4]
    assert snap["steps"][0][1] == 3
    assert printed(run_dir(tmp_path / "home"), 0, "err") == "oops\n"


def test_environment_reaches_steps(tmp_path):
    dag = write(tmp_path / "env.yaml", """\
        name: envdag
        env:
          - GREETING: hello
        steps:
          - name: show env
            env:
              - WHO: world
            command: echo "$GREETING $WHO $FROM_CALLER $DAG_NAME $DAG_RUN_STEP_NAME $DAG_RUN_ID" > env.txt
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", env={"FROM_CALLER": "caller"})
    assert res.code == 0, res.err
    words = (tmp_path / "env.txt").read_text().split()
    assert words[:5] == ["hello", "world", "caller", "envdag", "show"]
    assert words[6] == run_dir(tmp_path / "home").name


def test_shell_features_and_working_directory(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.csv").write_text("1\n")
    (sub / "b.csv").write_text("2\n")
    dag = write(tmp_path / "sh.yaml", """\
        steps:
          - name: glob pipe subst
            dir: sub
            command: echo $(ls *.csv | wc -l) files in $(basename "$PWD") > ../out.txt
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.err
    assert (tmp_path / "out.txt").read_text() == "2 files in sub\n"


def test_commands_run_through_shell_or_sh_when_shell_is_not_a_program(tmp_path):
    # $SHELL -c when $SHELL is a program (bash here: `$BASH_VERSION` is set), else sh.
    bash = "/bin/bash"
    assert os.access(bash, os.X_OK), "this test needs bash"
    dag = write(tmp_path / "which.yaml", """\
        steps:
          - command: echo "[${BASH_VERSION:+bash}]" >> shells.txt
        """)
    for shell in (bash, str(tmp_path / "no-such-shell"), "bash", ""):
        res = dagfast("run", str(dag), home=tmp_path / "home", env={"SHELL": shell})
        assert res.code == 0, (shell, res.out + res.err)
    assert (tmp_path / "shells.txt").read_text().split() == ["[bash]", "[]", "[]", "[]"]


def test_default_working_directory_is_the_dag_files(tmp_path):
    dag = write(tmp_path / "wd.yaml", """\
        steps:
          - command: pwd > where.txt
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", cwd=Path("/"))
    assert res.code == 0, res.err
    assert (tmp_path / "where.txt").read_text().strip() == str(tmp_path)


def test_command_forms(tmp_path):
    dag = write(tmp_path / "forms.yaml", """\
        steps:
          - name: multi
            command: |
              echo one > multi.txt
              echo two >> multi.txt
          - name: list
            command:
              - echo a > list.txt
              - "false"
              - echo never >> list.txt
          - name: python
            shell: @PYTHON@
            script: |
              open("py.txt", "w").write("from python\\n")
          - name: shebang
            script: |
              #!@PYTHON@
              open("shebang.txt", "w").write("shebang\\n")
          - echo bare >> bare.txt
        """.replace("@PYTHON@", sys.executable))
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 1  # the list stops at `false`
    assert (tmp_path / "multi.txt").read_text() == "one\ntwo\n"
    assert (tmp_path / "list.txt").read_text() == "a\n"
    assert (tmp_path / "py.txt").read_text() == "from python\n"
    assert (tmp_path / "shebang.txt").read_text() == "shebang\n"
    assert (tmp_path / "bare.txt").read_text() == "bare\n"
    assert "failed: list" in res.out


def test_stdin_is_dev_null(tmp_path):
    dag = write(tmp_path / "stdin.yaml", """\
        steps:
          - command: cat > got.txt; echo "rc=$?" >> got.txt
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=30)
    assert res.code == 0, res.err
    assert (tmp_path / "got.txt").read_text() == "rc=0\n"


def test_background_child_does_not_keep_the_step_running(tmp_path):
    # The spec's Progress Monitoring example depends on this: the step ends when its own
    # process exits, even though a background child still holds the log file open.
    dag = write(tmp_path / "bg.yaml", """\
        steps:
          - name: monitor
            command: |
              (while true; do echo tick; touch ticked; sleep 0.1; done) &
              echo $! > monitor.pid
              until [ -e ticked ]; do sleep 0.01; done
          - name: next
            command: echo next
            depends: monitor
          - name: stop monitor
            command: kill $(cat monitor.pid)
            depends: next
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", timeout=30)
    assert res.code == 0, res.err
    assert "tick" in printed(run_dir(tmp_path / "home"), 0)


def test_one_at_a_time_runs_in_file_order(tmp_path):
    steps = "".join(f"  - name: s{i}\n    command: echo {i} >> order.txt\n" for i in range(8))
    dag = write(tmp_path / "order.yaml", "maxActiveSteps: 1\nsteps:\n" + steps)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.err
    assert (tmp_path / "order.txt").read_text().split() == [str(i) for i in range(8)]


def test_chain_type_runs_steps_one_after_another(tmp_path):
    dag = write(tmp_path / "chain.yaml", """\
        type: chain
        steps:
          - command: work a
          - command: work b
          - command: work c
        """)
    s = Stubs(tmp_path, ["work"], sleep=0.2)
    res = dagfast("run", str(dag), env=s.env(), home=tmp_path / "home")
    assert res.code == 0, res.err
    calls = s.calls()
    assert [c.args for c in calls] == ["a", "b", "c"]
    assert max_overlap(calls) == 1


def test_validate_and_invalid_dag_writes_nothing(tmp_path):
    good = write(tmp_path / "good.yaml", "steps:\n  - command: 'true'\n")
    bad = write(tmp_path / "bad.yaml", """\
        steps:
          - name: a
            command: 'true'
            depend: b
        """)
    home = tmp_path / "home"
    assert dagfast("validate", str(good), home=home).code == 0
    res = dagfast("validate", str(bad), home=home)
    assert res.code == 2
    assert "bad.yaml:4:5" in res.err and "did you mean `depends`" in res.err
    assert "Traceback" not in res.err
    res = dagfast("run", str(bad), home=home)
    assert res.code == 2
    assert not home.exists()


def test_missing_file_is_a_clear_error(tmp_path):
    res = dagfast("run", str(tmp_path / "nope.yaml"), home=tmp_path / "home")
    assert res.code == 2
    assert "nope.yaml" in res.err and "Traceback" not in res.err


def test_unwritable_home_is_a_clear_error(tmp_path):
    dag = write(tmp_path / "ok.yaml", "steps:\n  - command: touch ran\n")
    home = tmp_path / "home"
    home.write_text("not a directory")
    res = dagfast("run", str(dag), home=home)
    assert res.code == 1
    assert "cannot create the run directory" in res.err
    assert not (tmp_path / "ran").exists()


def test_command_not_found_fails_the_step(tmp_path):
    dag = write(tmp_path / "nf.yaml", """\
        steps:
          - command: no-such-command-xyz
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 1
    assert "127" in res.out or "not found" in res.out


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # A zombie waiting for its reaper is gone for our purposes.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_running_steps_and_leaves_no_process(tmp_path, sig, code):
    dag = write(tmp_path / "long.yaml", STUBBORN_DAG)
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    pids_file = tmp_path / "pids.txt"
    while time.monotonic() < deadline:
        if pids_file.exists() and len(pids_file.read_text().split()) >= 3:
            break
        time.sleep(0.05)
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 3
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, (out, err)
    assert not (tmp_path / "never-ran").exists()
    deadline = time.monotonic() + 5
    while _pids_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pids_alive(pids) == []
    snap = json.loads((run_dir(tmp_path / "home") / "status.json").read_text())
    assert snap["status"] == 3  # aborted


def test_python_module_and_console_script_agree():
    res = dagfast("version")
    assert res.code == 0 and res.out.startswith("dagfast ")


@pytest.mark.parametrize("sched", ["compiled", "ref"])
def test_thousands_of_short_steps_all_recorded(tmp_path, sched):
    # Many short processes exiting together: every exit is picked up once, for the
    # right step, and nothing is printed on stderr (a stale pidfd event once was).
    n = 1500
    steps = "".join(f"  - name: s{i}\n    command: 'true'\n    depends: root\n" for i in range(n))
    dag = write(tmp_path / "fan.yaml",
                "maxActiveSteps: 16\nsteps:\n  - name: root\n    command: 'true'\n" + steps)
    res = dagfast("run", "--quiet", str(dag), home=tmp_path / "home",
                  env={"DAGFAST_SCHED": sched})
    assert res.code == 0, res.err
    assert res.err == ""
    snap = snapshot(tmp_path / "home")
    assert [s[0] for s in snap["steps"]] == [4] * (n + 1)
    assert all(s[1] == 0 for s in snap["steps"])
