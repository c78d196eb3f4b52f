"""The spawn path: what a step's process starts with, and how a start that fails on a
spawn thread (`dagfast._spawn`) is told. Real runs through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from spectools import dagfast


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def steps_of(home: Path) -> dict[str, dict]:
    (run,) = [p for p in (home / "runs").glob("*/*") if p.is_dir()]
    status = json.loads(dagfast("status", run.name, "--json", home=home).out)
    return {s["name"]: s for s in status["steps"]}


def test_steps_start_with_default_signal_dispositions_and_nothing_blocked(tmp_path):
    # Python ignores SIGPIPE; a step inheriting that would see `yes` complain of a
    # broken pipe instead of dying quietly of SIGPIPE, as it does in a terminal.
    dag = write(tmp_path / "sig.yaml", """\
        steps:
          - name: pipe
            command: yes | head -n 1
          - name: mask
            command: grep -E '^(SigBlk|SigIgn)' /proc/self/status
        """)
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 0, res.out + res.err
    assert dagfast("logs", "sig", "pipe", "--stderr", home=home).out == ""
    fields = dagfast("logs", "sig", "mask", home=home).out.split()
    masks = dict(zip(fields[::2], (int(v, 16) for v in fields[1::2])))
    assert masks["SigBlk:"] == 0
    # Signals 1-31; glibc's posix_spawn leaves its own internal two (32, 33) ignored.
    assert masks["SigIgn:"] & 0x7FFFFFFF == 0


def test_a_start_that_fails_on_a_spawn_thread_fails_its_step_with_the_reason(tmp_path):
    not_exec = tmp_path / "not-exec.sh"
    not_exec.write_text("echo hi\n")
    not_exec.chmod(0o644)
    dag = write(tmp_path / "bad.yaml", f"""\
        steps:
          - name: denied
            shell: {not_exec}
            command: echo denied
          - name: after
            command: echo after
            depends: denied
          - name: fine
            command: echo fine
        """)
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 1
    steps = steps_of(home)
    assert steps["denied"]["status"] == "failed"
    assert steps["denied"]["exit_code"] == 127
    assert steps["denied"]["error"] == f"cannot start `{not_exec}`: Permission denied"
    assert steps["after"]["status"] == "aborted"
    assert steps["fine"]["status"] == "succeeded"


def _run_in_dir(tmp_path: Path, where: Path) -> tuple[int, Path]:
    """Run a one-step DAG whose step (`pwd`) has `dir: where`; (exit status, home)."""
    dag = write(tmp_path / "dir.yaml", f"""\
        steps:
          - name: here
            dir: {where}
            command: pwd
        """)
    home = tmp_path / "home"
    return dagfast("run", str(dag), home=home).code, home


def test_a_missing_working_directory_is_made_on_the_spawn_thread(tmp_path):
    where = tmp_path / "made" / "for" / "it"
    code, home = _run_in_dir(tmp_path, where)
    assert code == 0
    assert dagfast("logs", "dir", "here", home=home).out.strip() == str(where)


def test_a_working_directory_that_is_a_file_fails_the_step_and_says_so(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    code, home = _run_in_dir(tmp_path, afile)
    assert code == 1
    assert steps_of(home)["here"]["error"] == f"working directory `{afile}`: Not a directory"


def _pids_cgroup(tmp_path: Path) -> Path | None:
    """A new pids cgroup (v1 or v2) we may write, or None."""
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if not (base / "cgroup.procs").exists():
            continue
        group = base / f"dagfast-test-{os.getpid()}-{tmp_path.name}"
        try:
            group.mkdir()
        except OSError:
            continue
        if (group / "pids.max").exists():
            return group
        group.rmdir()
    return None


def test_a_full_process_table_makes_steps_wait_not_fail(tmp_path):
    # The engine caps how many steps run at once by RLIMIT_NPROC when it starts, but
    # cannot see every limit (a cgroup's pids.max, other processes of the user). A start
    # refused with EAGAIN waits for room on its spawn thread instead of failing the step.
    # Root ignores RLIMIT_NPROC, so root runs the engine in a pids cgroup of its own.
    # Each step `exec`s its sleep, so it is one process from start to end: a shell that
    # forked would need room of its own, and its fork (which the engine cannot wait for)
    # could fail with "Cannot fork" whatever the engine does.
    home = tmp_path / "home"
    dag = write(tmp_path / "nproc.yaml", "maxActiveSteps: 0\nsteps:\n" + "".join(
        f"  - name: s{i}\n    command: exec sleep 0.3\n" for i in range(30)
    ))
    group = None
    if os.getuid() == 0:
        group = _pids_cgroup(tmp_path)
        assert group is not None, "running as root, this test needs a pids cgroup it may make"
        (group / "pids.max").write_text("16\n")  # the engine's own threads count too
        enter = f"open({str(group / 'cgroup.procs')!r}, 'w').write(str(os.getpid()))"
    else:
        # Room for the user's processes now and a dozen more.
        mine = sum(
            1 for d in os.listdir("/proc") if d.isdigit() and os.stat(f"/proc/{d}").st_uid == os.getuid()
        )
        enter = f"resource.setrlimit(resource.RLIMIT_NPROC, ({mine + 12}, {mine + 12}))"
    script = (
        f"import os, resource, sys, runpy; {enter}; "
        "sys.argv = ['dagfast', 'run', sys.argv[1]]; "
        "runpy.run_module('dagfast', run_name='__main__')"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(dag)],
            env=dict(os.environ, DAGFAST_HOME=str(home)), cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )
        if group is not None:
            refused = int((group / "pids.events").read_text().split()[1])
            assert refused > 0  # starts were refused, so waiting was needed
    finally:
        if group is not None:
            group.rmdir()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    statuses = {s["status"] for s in steps_of(home).values()}
    assert statuses == {"succeeded"}
