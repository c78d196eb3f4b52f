"""The spawn path (`dagfast._spawn`): what a step's process starts with, on both ways
of starting it, and how a start that fails after `start` returned is told. Real runs
through the CLI, and the process manager driven in process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import uvloop

from dagfast.exec import _spawn
from dagfast.exec.local import ProcessManager
from spectools import dagfast


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def steps_of(home: Path) -> dict[str, dict]:
    (run,) = [p for p in (home / "runs").glob("*/*") if p.is_dir()]
    status = json.loads(dagfast("status", run.name, "--json", home=home).out)
    return {s["name"]: s for s in status["steps"]}


@pytest.fixture(params=["vmclone", "posix"])
def spawn_mode(request, monkeypatch):
    """Both ways a step starts (exec/vmclone.h, and posix_spawn on the pool's threads)
    must give it the same process: the engine and the steps it runs see the choice."""
    monkeypatch.setenv("DAGFAST_SPAWN", request.param)
    return request.param


def _kernel() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def test_steps_start_without_waiting_for_exec_where_the_system_allows():
    # Otherwise the "vmclone" runs below would test posix_spawn twice.
    ep = select.epoll()
    pools = []
    try:
        pools.append(_spawn.Pool(1, ep.fileno()))
        able = platform.machine() in ("x86_64", "aarch64") and _kernel() >= (5, 9)
        assert pools[0].waits is not able
        pools.append(_spawn.Pool(1, ep.fileno(), vmclone=False))
        assert pools[1].waits is True
    finally:
        for pool in pools:
            pool.close()
        ep.close()


def test_a_stop_right_after_each_start_ends_every_step(tmp_path, spawn_mode):
    # A step is signalled the moment its start returns, before its process can have
    # made its own group or reached exec: the group must already exist (or the signal
    # be kept for it), or the step would run on, unseen by the stop.
    loop = uvloop.new_event_loop()
    ends = []
    pm = ProcessManager(loop, 0, ends.extend)
    files = [os.open(tmp_path / name, os.O_RDWR | os.O_CREAT) for name in ("out", "out.idx")]
    pm.use_output(_spawn.Store(files[0], 0, files[1], 0))
    env = {k.encode(): v.encode() for k, v in os.environ.items()}
    n = 64
    try:
        for token in range(n):
            pm.output.begin(token)
            pm.start(token, ["/bin/sh", "-c", "exec sleep 30"], env, str(tmp_path))
            pm.signal(token, signal.SIGTERM)

        async def all_ended():
            while len(ends) < n:
                await asyncio.sleep(0.01)
        loop.run_until_complete(asyncio.wait_for(all_ended(), 60))
    finally:
        pm.signal_all_groups(signal.SIGKILL)
        pm.close()
        loop.close()
    assert sorted(t for t, _ in ends) == list(range(n))
    # Killed by SIGTERM (wait status), or never started because of it (the same).
    assert {end for _, end in ends} == {signal.SIGTERM}, ends


def test_steps_start_with_default_signal_dispositions_and_nothing_blocked(tmp_path, spawn_mode):
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
    # What the caller ignored stays ignored (`nohup`, or a shell's background job that
    # ignores SIGINT and SIGQUIT), except SIGPIPE and SIGXFSZ, which Python ignores.
    with open("/proc/self/status") as f:
        ours = int(next(ln for ln in f if ln.startswith("SigIgn:")).split()[1], 16)
    python_only = 1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)
    assert masks["SigIgn:"] & 0x7FFFFFFF == ours & ~python_only & 0x7FFFFFFF


def test_a_start_that_fails_after_start_returned_fails_its_step_with_the_reason(tmp_path, spawn_mode):
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


def test_a_missing_working_directory_is_made_before_the_step_runs(tmp_path, spawn_mode):
    where = tmp_path / "made" / "for" / "it"
    code, home = _run_in_dir(tmp_path, where)
    assert code == 0
    assert dagfast("logs", "dir", "here", home=home).out.strip() == str(where)


def test_a_working_directory_that_is_a_file_fails_the_step_and_says_so(tmp_path, spawn_mode):
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


@contextlib.contextmanager
def _squeezed_engine(tmp_path: Path, dag: Path):
    """A `dagfast run dag` command line whose process table has room for about a dozen
    processes: as root in a pids cgroup of its own (root ignores RLIMIT_NPROC), else
    under RLIMIT_NPROC. Yields (argv, cgroup or None); the cgroup is removed after."""
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
        yield [sys.executable, "-c", script, str(dag)], group
    finally:
        if group is not None:
            group.rmdir()


def _refusals(group: Path | None) -> int:
    return int((group / "pids.events").read_text().split()[1]) if group is not None else 1


def test_a_full_process_table_makes_steps_wait_not_fail(tmp_path):
    # The engine caps how many steps run at once by RLIMIT_NPROC when it starts, but
    # cannot see every limit (a cgroup's pids.max, other processes of the user). A start
    # refused with EAGAIN waits for room on its spawn thread instead of failing the step.
    # Each step `exec`s its sleep, so it is one process from start to end: a shell that
    # forked would need room of its own, and its fork (which the engine cannot wait for)
    # could fail with "Cannot fork" whatever the engine does.
    home = tmp_path / "home"
    dag = write(tmp_path / "nproc.yaml", "maxActiveSteps: 0\nsteps:\n" + "".join(
        f"  - name: s{i}\n    command: exec sleep 0.3\n" for i in range(30)
    ))
    with _squeezed_engine(tmp_path, dag) as (argv, group):
        proc = subprocess.run(
            argv, env=dict(os.environ, DAGFAST_HOME=str(home)), cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )
        assert _refusals(group) > 0  # starts were refused, so waiting was needed
    assert proc.returncode == 0, proc.stdout + proc.stderr
    statuses = {s["status"] for s in steps_of(home).values()}
    assert statuses == {"succeeded"}


def test_a_stop_ends_starts_that_wait_for_room_and_they_never_run(tmp_path):
    # Steps waiting for room in a full process table give up when the run is stopped
    # (they do not wait out their minute), and never start afterwards.
    home = tmp_path / "home"
    marks = tmp_path / "marks"
    marks.mkdir()
    dag = write(tmp_path / "nproc.yaml", "maxActiveSteps: 0\nsteps:\n" + "".join(
        f"  - name: s{i}\n    command: exec sleep 60\n" for i in range(30)
    ))
    with _squeezed_engine(tmp_path, dag) as (argv, group):
        proc = subprocess.Popen(
            argv, env=dict(os.environ, DAGFAST_HOME=str(home)), cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while _refusals(group) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _refusals(group) > 0, "no start was ever refused"
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=40)  # far less than the 60 s of patience
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, out
    steps = steps_of(home).values()
    assert {s["status"] for s in steps} <= {"aborted", "failed", "not_started"}, steps
    assert sum(1 for s in steps if s["status"] == "not_started") < 30


def test_descriptors_the_caller_left_open_do_not_reach_steps(tmp_path, spawn_mode):
    # A CI harness's pipe (or a make jobserver) open in the caller must not reach a step:
    # a step's background child holding it would keep the caller waiting.
    home = tmp_path / "home"
    r, w = os.pipe()
    dag = write(tmp_path / "fds.yaml", f"""\
        steps:
          - name: look
            command: if test -e /proc/self/fd/{w}; then echo leaked; else echo clean; fi
        """)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dagfast", "run", str(dag)], pass_fds=(w,),
            env=dict(os.environ, DAGFAST_HOME=str(home)), capture_output=True, text=True,
            timeout=60,
        )
    finally:
        os.close(r)
        os.close(w)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dagfast("logs", "fds", "look", home=home).out == "clean\n"


_GROUPS = r"""
import asyncio, os, signal, subprocess, sys, time
import uvloop
from dagfast.exec import _spawn
from dagfast.exec.local import ProcessManager

loop = uvloop.new_event_loop()
asyncio.set_event_loop(loop)
ends = []
pm = ProcessManager(loop, 16, lambda e: ends.extend(e))
env = {k.encode(): v.encode() for k, v in os.environ.items()}
scratch = sys.argv[1]
files = [os.open(f"{scratch}/{name}", os.O_RDWR | os.O_CREAT) for name in ("output", "output.idx")]
pm.use_output(_spawn.Store(files[0], 0, files[1], 0))


def step(token, command):
    pm.start(token, ["/bin/sh", "-c", command], env, scratch)

    async def ended():
        while not any(t == token for t, _ in ends):
            await asyncio.sleep(0.01)
    loop.run_until_complete(ended())


# A step whose process group ends with it is forgotten when it is reaped.
step(0, "exit 0")
assert pm._pool.groups() == [], pm._pool.groups()
# A step that leaves a background child: its group is kept while the child lives...
step(1, "sleep 30 & echo $! > " + scratch + "/child")
(lingering,) = pm._pool.groups()
child = int(open(scratch + "/child").read())
assert os.getpgid(child) == lingering
assert pm.live_groups() == 1
# ...and once the child is gone and a stranger is given the group's number (ns_last_pid,
# in this pid namespace of our own), a stop must not touch the stranger.
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)  # pid 1 of this namespace adopted the orphan; its number is free once reaped
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(lingering - 1))
stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
assert stranger.pid == lingering, (stranger.pid, lingering)
pm.signal_all_groups(signal.SIGTERM)
time.sleep(0.2)
assert stranger.poll() is None, "a stop signalled a process group that was not ours"
assert pm.live_groups() == 0
stranger.kill()
print("ok")
"""


def test_a_stop_never_signals_a_process_group_number_that_was_reused(tmp_path):
    # The pool remembers a group after its leader is reaped only while members live, and
    # never signals a group whose number a new process now has. The reuse is forced in
    # a pid namespace of the test's own (as root directly, else in a user namespace).
    unshare = shutil.which("unshare")
    assert unshare, "this test needs util-linux's unshare"
    ns = ["--pid", "--fork", "--mount-proc"]
    if os.getuid() != 0:
        ns = ["--user", "--map-root-user"] + ns
    script = tmp_path / "groups.py"
    script.write_text(_GROUPS)
    proc = subprocess.run(
        [unshare, *ns, sys.executable, str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def _pool_in(tmp_path: Path, vmclone: bool):
    """A pool whose steps' output goes into a fresh store under `tmp_path`."""
    ep = select.epoll()
    pool = _spawn.Pool(1, ep.fileno(), vmclone=vmclone)
    fds = [os.open(tmp_path / name, os.O_RDWR | os.O_CREAT | os.O_TRUNC) for name in "di"]
    store = _spawn.Store(fds[0], 0, fds[1], 0)
    pool.use_store(store)
    return ep, pool, store


@pytest.mark.parametrize("vmclone", [True, False], ids=["vmclone", "posix"])
def test_the_environment_reaches_the_step_byte_for_byte_and_a_bad_entry_is_refused(
        tmp_path, vmclone):
    # The pool builds each `name=value` entry straight from the dict's bytes: '=' in a
    # value, an empty value and bytes that are not UTF-8 must arrive as given.
    ep, pool, store = _pool_in(tmp_path, vmclone)
    out = tmp_path / "env.bin"
    env = {b"PATH": os.environ["PATH"].encode(), b"A": b"x=y==", b"B": b"",
           b"C": b"\xff\xfe caf\xc3\xa9", b"LONG": b"v" * 100_000}
    try:
        store.begin(0)
        pool.submit(0, "/bin/sh", ["sh", "-c", f"cat /proc/$$/environ > {out}"], env, "/",
                    True)
        ended = []
        while not ended:
            select.select([ep.fileno()], [], [], 30)
            ended += pool.reap()
        assert ended == [(0, 0)]
        got = dict(entry.split(b"=", 1) for entry in out.read_bytes().split(b"\0") if entry)
        assert {k: got.get(k) for k in env} == env
        # What cannot be an environment entry is refused before anything starts.
        with pytest.raises(ValueError, match="embedded NUL"):
            pool.submit(1, "/bin/true", ["true"], {b"A": b"x\0y"}, "/", True)
        with pytest.raises(ValueError, match="embedded NUL"):
            pool.submit(1, "/bin/true", ["true"], {b"A\0": b"x"}, "/", True)
        with pytest.raises(TypeError, match="must be bytes"):
            pool.submit(1, "/bin/true", ["true"], {b"A": "text"}, "/", True)
        assert pool.reap() == []
    finally:
        pool.close()
        store.close()
        ep.close()
