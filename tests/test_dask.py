"""The Dask executor (issue 9), on a LocalCluster whose workers are processes.

      pytest ─── LocalCluster: scheduler here, 2 worker processes, 127.0.0.1, no dashboard
                    ▲
      dagfast run ──┘  DAGFAST_EXECUTOR=dask  DAGFAST_DASK_SCHEDULER=tcp://127.0.0.1:PORT

What only a cluster has: steps in worker processes, a stop and a timeout that reach them
there, a worker SIGKILLed mid-step, `resources:`, a shared log directory, and the errors
of a missing or wrong set-up. The spec's examples run again on Dask in
test_dask_spec.py (its own module and cluster, so that the two run side by side).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import distributed  # the `test` extra installs it: CI runs these tests, never skips them
import pytest
from daskkit import cluster, on_dask  # noqa: F401 (fixtures)
from outputs import printed

from spectools import STUBBORN_DAG, dagfast


# Helpers ----------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def gone(pids, within: float = 10.0) -> list[int]:
    """The pids of `pids` still alive (zombies count as gone) after waiting up to
    `within` seconds for them to go."""
    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def wait_for(path: Path, lines: int = 1, within: float = 120.0) -> list[str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().split()) >= lines:
            return path.read_text().split()
        time.sleep(0.05)
    raise AssertionError(f"{path} never had {lines} lines")


def start(dag: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, DAGFAST_HOME=str(dag.parent / "home"))
    return subprocess.Popen([sys.executable, "-m", "dagfast", "run", *args, str(dag)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def status(home: Path) -> dict:
    res = dagfast("status", "--json", home=home)
    assert res.code == 0, res.err
    return json.loads(res.out)


# Steps run on the workers ------------------------------------------------------------------


def test_steps_run_in_worker_processes_and_their_logs_and_outputs_come_back(tmp_path, cluster):
    #   hello -> show
    #         -> script (a `script:` file of the run record travels with the task)
    dag = write(tmp_path / "w.yaml", """\
        steps:
          - name: hello
            command: echo $PPID > hello.ppid; echo "hi from $DAG_RUN_STEP_NAME"; echo oops >&2
            output: GREETING
          - name: show
            command: echo "got ${GREETING}"; pwd
            depends: hello
          - name: script
            shell: @PYTHON@
            script: |
              import os
              print("python in", os.getcwd())
            depends: hello
        """.replace("@PYTHON@", sys.executable))
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    assert int((tmp_path / "hello.ppid").read_text()) in worker_pids(cluster)
    logs = dagfast("logs", "w", home=tmp_path / "home").out
    assert "==> hello <==\nhi from hello\n" in logs
    assert f"got hi from hello\n{tmp_path}\n" in logs
    assert f"python in {tmp_path}\n" in logs
    assert dagfast("logs", "w", "hello", "--stderr", home=tmp_path / "home").out == "oops\n"


def test_a_sub_dag_runs_on_its_callers_executor(tmp_path, cluster):
    write(tmp_path / "sub.yaml", """\
        steps:
          - command: echo $PPID > sub.ppid
        """)
    dag = write(tmp_path / "main.yaml", """\
        steps:
          - call: sub.yaml
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    assert int((tmp_path / "sub.ppid").read_text()) in worker_pids(cluster)


def test_the_python_api_takes_the_executor_and_the_scheduler(tmp_path, cluster, monkeypatch):
    import dagfast

    monkeypatch.delenv("DAGFAST_EXECUTOR")
    monkeypatch.delenv("DAGFAST_DASK_SCHEDULER")
    dag = write(tmp_path / "api.yaml", """\
        steps:
          - command: echo $PPID
            output: PPID
        """)
    result = dagfast.run(dag, home_dir=str(tmp_path / "home"), executor="dask",
                         scheduler=cluster.scheduler.address)
    assert result.status == dagfast.RunStatus.SUCCEEDED
    assert int(result.outputs["PPID"]) in worker_pids(cluster)


# Stop, timeout, a lost worker ----------------------------------------------------------------


def test_a_stop_kills_every_step_group_on_the_workers(tmp_path):
    # Processes that ignore SIGTERM and a grandchild: SIGKILL after maxCleanUpTimeSec.
    dag = write(tmp_path / "s.yaml", "maxCleanUpTimeSec: 1\n" + STUBBORN_DAG)
    proc = start(dag)
    pids = [int(p) for p in wait_for(tmp_path / "pids.txt", lines=3)]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert gone(pids) == []
    assert not (tmp_path / "never-ran").exists()
    steps = {s["name"]: s for s in status(tmp_path / "home")["steps"]}
    assert [steps[n]["status"] for n in ("sleeper", "stubborn", "never")] == [
        "aborted", "aborted", "not_started"]


def test_ctrl_c_stops_the_run_and_not_the_workers_of_its_local_cluster(tmp_path, monkeypatch):
    # Ctrl-C in a terminal signals the whole foreground group: dagfast, and the worker
    # processes of the LocalCluster it started. The run stops its steps; the workers
    # must not die mid-step (which would read as lost workers, with tracebacks).
    monkeypatch.delenv("DAGFAST_DASK_SCHEDULER")
    dag = write(tmp_path / "c.yaml", """\
        steps:
          - command: echo $$ >> pids.txt; sleep 60 & echo $! >> pids.txt; wait
          - command: echo $$ >> pids.txt; sleep 60
        """)
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    pids = [int(p) for p in wait_for(tmp_path / "pids.txt", lines=3)]
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert err == ""
    assert [s["error"] for s in status(tmp_path / "home")["steps"]] == ["killed by SIGTERM"] * 2
    assert gone(pids) == []


def test_a_step_timeout_kills_its_group_on_the_worker_escapees_too(tmp_path):
    dag = write(tmp_path / "t.yaml", """\
        steps:
          - name: slow
            command: |
              echo $$ >> pids.txt
              sleep 60 & echo $! >> pids.txt
              setsid sleep 60 & echo $! >> pids.txt
              wait
            timeoutSec: 1
          - name: after
            command: touch after-ran
            depends: slow
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 1
    assert "failed     slow" in res.out and "(step timed out after 1s)" in res.out
    slow = status(tmp_path / "home")["steps"][0]
    assert (slow["status"], slow["exit_code"]) == ("failed", 124)
    assert gone([int(p) for p in (tmp_path / "pids.txt").read_text().split()]) == []
    assert not (tmp_path / "after-ran").exists()


# A step that says where it started, leaves a background child, and names its worker;
# and a step after it.
VICTIM = """\
    steps:
      - name: victim
        command: |
          echo "start on $PPID" >> runs.txt
          echo $$ >> pids.txt
          sleep 60 & echo $! >> pids.txt
          echo $PPID > worker.pid
          wait
      - name: after
        command: touch after-ran
        depends: victim
    """


def test_a_worker_killed_mid_step_fails_the_step_naming_it_and_reaps_its_processes(
    tmp_path, monkeypatch
):
    # No address: dagfast starts a LocalCluster of its own (allowed-failures 0).
    monkeypatch.delenv("DAGFAST_DASK_SCHEDULER")
    dag = write(tmp_path / "k.yaml", VICTIM)
    proc = start(dag)
    pids = [int(p) for p in wait_for(tmp_path / "pids.txt", lines=2)]
    worker = int(wait_for(tmp_path / "worker.pid")[0])
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert gone(pids) == []
    (victim, after) = status(tmp_path / "home")["steps"]
    assert victim["status"] == "failed"
    assert victim["error"].startswith("its Dask worker tcp://127.0.0.1:")
    assert victim["error"].endswith(" was lost")
    assert after["status"] == "aborted"
    assert not (tmp_path / "after-ran").exists()


def test_a_lost_worker_is_retried_by_the_retry_policy(tmp_path, cluster):
    before = worker_pids(cluster)
    dag = write(tmp_path / "r.yaml", """\
        steps:
          - name: victim
            command: |
              if [ -f first-done ]; then echo $PPID > second.ppid; exit 0; fi
              touch first-done
              echo $$ >> pids.txt
              sleep 60 & echo $! >> pids.txt
              echo $PPID > worker.pid
              wait
            retryPolicy: {limit: 1}
        """)
    proc = start(dag)
    pids = [int(p) for p in wait_for(tmp_path / "pids.txt", lines=2)]
    worker = int(wait_for(tmp_path / "worker.pid")[0])
    assert worker in before
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert gone(pids) == []
    assert int((tmp_path / "second.ppid").read_text()) != worker
    (run,) = (tmp_path / "home" / "runs" / "r").iterdir()
    first = printed(run, 0, "err", attempt=1)
    assert "the Dask worker tcp://127.0.0.1:" in first and "was lost" in first
    cluster.wait_for_workers(2, timeout=120)  # the nanny brings the worker back


# This interpreter's own Dask commands, through sys.executable: the `dask` script sits
# wherever pip put distributed (a venv with system site-packages may have none).
SCHEDULER = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


@pytest.fixture
def remote(tmp_path):
    """`dask scheduler` (its default allowed-failures: 3) and 2 `dask worker`s without a
    nanny, as separate processes on 127.0.0.1: a test may kill any of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    info = tmp_path / "scheduler.json"
    procs = [subprocess.Popen(
        [*SCHEDULER, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(info)], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_for(info)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [*WORKER, "--scheduler-file", str(info), "--host", "127.0.0.1",
                 "--no-nanny", "--nthreads", "4", "--no-dashboard"], env=env, cwd=tmp_path,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(info.read_text())["address"]
        with distributed.Client(address, timeout=120, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_a_scheduler_that_runs_tasks_again_never_runs_a_step_twice(tmp_path, remote, monkeypatch):
    # allowed-failures 3: Dask starts the task again on the other worker. dagfast's
    # started marker makes that second start run nothing and fail the step as lost.
    address, _ = remote
    monkeypatch.setenv("DAGFAST_DASK_SCHEDULER", address)
    dag = write(tmp_path / "twice.yaml", VICTIM)
    proc = start(dag)
    pids = [int(p) for p in wait_for(tmp_path / "pids.txt", lines=2)]
    os.kill(int(wait_for(tmp_path / "worker.pid")[0]), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert len((tmp_path / "runs.txt").read_text().splitlines()) == 1
    assert gone(pids) == []
    (victim, after) = status(tmp_path / "home")["steps"]
    assert victim["status"] == "failed"
    assert victim["error"].startswith("its Dask worker was lost; the Dask scheduler started "
                                      "the step again on tcp://127.0.0.1:")
    assert after["status"] == "aborted"
    assert err == ""


def test_a_lost_scheduler_kills_the_step_on_its_worker_and_no_dask_log_reaches_the_user(
    tmp_path, remote, monkeypatch
):
    address, (scheduler, *_) = remote
    monkeypatch.setenv("DAGFAST_DASK_SCHEDULER", address)
    # The run's client gives up on the scheduler after this (Dask's default: 30 s).
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "5s")
    dag = write(tmp_path / "sd.yaml", """\
        steps:
          - name: long
            command: echo $$ > pid.txt; sleep 60
          - name: next
            command: touch next-ran
            depends: long
        """)
    proc = start(dag)
    pid = int(wait_for(tmp_path / "pid.txt")[0])
    scheduler.kill()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, out + err
    # A worker takes 30 s to close after losing its scheduler; its steps end at once.
    assert gone([pid], within=10) == []
    assert "distributed." not in err
    assert not (tmp_path / "next-ran").exists()


# resources, the shared directory -----------------------------------------------------------


def test_resources_go_to_dask_and_one_no_worker_offers_fails_the_step(tmp_path):
    dag = write(tmp_path / "res.yaml", """\
        steps:
          - name: fits
            command: echo ok
            resources: {cpu: 2, memory: 4GB}
          - name: too_big
            command: touch too-big-ran
            resources: {cpu: 1000}
          - name: unknown
            command: touch unknown-ran
            resources: {gpu: 1}
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 1
    steps = {s["name"]: s for s in status(tmp_path / "home")["steps"]}
    assert steps["fits"]["status"] == "succeeded"
    assert steps["too_big"]["error"] == (
        "no Dask worker offers the resources this step needs (cpu=1,000); the workers "
        "offer: cpu=4, memory=8,000,000,000")
    assert steps["unknown"]["error"].startswith("no Dask worker offers the resources this "
                                                "step needs (gpu=1)")
    assert not (tmp_path / "too-big-ran").exists()


def test_resources_are_checked_when_loading_and_unused_by_the_local_executor(tmp_path):
    bad = write(tmp_path / "bad.yaml", """\
        steps:
          - command: echo
            resources: {cpu: -1, memory: 4XB}
        """)
    res = dagfast("validate", str(bad))
    assert res.code == 2
    assert res.err.splitlines() == [
        f"{bad}:3:22: `-1` is not an amount: expected a number >= 0 or a size such as "
        "`4GB` or `512MiB` - at `$.steps[0].resources.cpu`",
        f"{bad}:3:34: `4XB` is not an amount: expected a number >= 0 or a size such as "
        "`4GB` or `512MiB` - at `$.steps[0].resources.memory`",
    ]
    ok = write(tmp_path / "ok.yaml", """\
        steps:
          - command: echo $PPID > ppid
            resources: {cpu: 1000, memory: 1PiB}
        """)
    res = dagfast("run", "--executor", "local", str(ok), home=tmp_path / "home")
    assert res.code == 0, res.err
    assert (tmp_path / "ppid").read_text().strip().isdigit()


def test_a_shared_directory_carries_the_logs_into_the_record(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    dag = write(tmp_path / "sh.yaml", """\
        steps:
          - name: a
            command: seq 1 3; echo warn >&2
            output: NUMBERS
          - name: b
            command: echo "${NUMBERS}" | wc -l
            depends: a
        """)
    res = dagfast("run", "--shared-dir", str(shared), str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    assert dagfast("logs", "sh", "a", home=tmp_path / "home").out == "1\n2\n3\n"
    assert dagfast("logs", "sh", "a", "--stderr", home=tmp_path / "home").out == "warn\n"
    assert dagfast("logs", "sh", "b", home=tmp_path / "home").out.strip() == "3"
    assert list(shared.iterdir()) == []  # moved into the record, not copied


def test_a_lost_worker_with_a_shared_directory_keeps_its_partial_logs(tmp_path, cluster,
                                                                    monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    dag = write(tmp_path / "ks.yaml", """\
        steps:
          - name: victim
            command: echo partial-output-before-loss; echo $PPID > worker.pid; sleep 60
        """)
    proc = start(dag, "--shared-dir", str(shared))
    os.kill(int(wait_for(tmp_path / "worker.pid")[0]), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    home = tmp_path / "home"
    assert dagfast("logs", "ks", "victim", home=home).out == "partial-output-before-loss\n"
    assert "was lost" in dagfast("logs", "ks", "victim", "--stderr", home=home).out
    assert list(shared.iterdir()) == []
    cluster.wait_for_workers(2, timeout=120)  # the nanny brings the worker back


def test_exponent_amounts_are_accepted_in_resources(tmp_path):
    dag = write(tmp_path / "e.yaml", """\
        steps:
          - command: echo ok
            resources: {memory: 4e9, cpu: 1.5E0}
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err


# Choosing the executor, and what goes wrong ------------------------------------------------


def test_a_bad_cluster_setting_is_a_usage_error_naming_where_it_came_from(tmp_path,
                                                                        monkeypatch):
    dag = write(tmp_path / "u.yaml", "steps:\n  - command: touch ran\n")
    missing = tmp_path / "missing"
    res = dagfast("run", "--shared-dir", str(missing), str(dag), home=tmp_path / "h")
    assert (res.code, res.err) == (2, f"dagfast: --shared-dir {missing}: no such directory\n")
    res = dagfast("run", str(dag), home=tmp_path / "h",
                  env={"DAGFAST_DASK_SHARED_DIR": str(dag)})
    assert (res.code, res.err) == (2, f"dagfast: DAGFAST_DASK_SHARED_DIR {dag}: not a "
                                      "directory\n")
    res = dagfast("run", str(dag), home=tmp_path / "h", env={"DAGFAST_DASK_SCHEDULER": "8786"})
    assert res.code == 2
    assert res.err.startswith("dagfast: DAGFAST_DASK_SCHEDULER `8786` is not a Dask "
                              "scheduler address")
    assert not (tmp_path / "ran").exists() and not (tmp_path / "h").exists()


@pytest.mark.parametrize("line, message", [
    ("daskScheduler: nonsense", "2:16: `nonsense` is not a Dask scheduler address: expected "
     "scheme://host:port, such as tcp://10.0.0.5:8786 - at `$.daskScheduler`"),
    ("daskScheduler: 8786", "2:16: `8786` is not a Dask scheduler address: expected "
     "scheme://host:port, such as tcp://10.0.0.5:8786 - at `$.daskScheduler`"),
    ("daskScheduler: ${DAGFAST_TEST_UNSET}", "2:16: `daskScheduler` is empty after "
     "expansion; expected an address such as tcp://10.0.0.5:8786 - at `$.daskScheduler`"),
    ("daskSharedDir: nothere", "2:16: `nothere`: no such directory - at "
     "`$.daskSharedDir`"),
])
def test_a_bad_cluster_key_in_the_dag_fails_validation_at_its_place(tmp_path, line, message):
    dag = write(tmp_path / "k.yaml", f"stepExecutor: dask\n{line}\nsteps:\n  - echo\n")
    res = dagfast("validate", str(dag))
    assert (res.code, res.err) == (2, f"{dag}:{message}\n")




@pytest.mark.parametrize("flag, env, dag_key, chosen", [
    (None, None, None, "local"),
    (None, None, "dask", "dask"),
    (None, "local", "dask", "local"),
    ("dask", "local", None, "dask"),
    ("local", "dask", "dask", "local"),
])
def test_the_flag_beats_the_environment_which_beats_the_dag(flag, env, dag_key, chosen):
    from dagfast.exec.choose import choose
    from dagfast.loader import load_text
    from dagfast.exec.local import ProcessManager

    text = "steps:\n  - echo\n" + (f"stepExecutor: {dag_key}\n" if dag_key else "")
    environ = {"DAGFAST_EXECUTOR": env} if env else {}
    factory = choose(load_text(text), flag, environ=environ)
    assert ("local" if factory is ProcessManager else "dask") == chosen


def test_the_scheduler_the_dag_names_yields_to_the_environment_and_the_flag():
    from dagfast.exec.choose import choose
    from dagfast.loader import load_text

    dag = load_text("stepExecutor: dask\ndaskScheduler: tcp://dag:1\nsteps:\n  - echo\n")
    assert choose(dag, environ={}).address == "tcp://dag:1"
    env = {"DAGFAST_DASK_SCHEDULER": "tcp://env:2"}
    assert choose(dag, environ=env).address == "tcp://env:2"
    assert choose(dag, scheduler="tcp://flag:3", environ=env).address == "tcp://flag:3"


def test_wrong_set_ups_are_usage_errors(tmp_path, monkeypatch):
    dag = write(tmp_path / "u.yaml", "steps:\n  - echo\n")
    monkeypatch.delenv("DAGFAST_EXECUTOR")
    res = dagfast("run", "--scheduler", "tcp://127.0.0.1:8786", str(dag), home=tmp_path / "h")
    assert (res.code, res.err) == (2, "dagfast: --scheduler is for the Dask executor "
                                      "(--executor dask)\n")
    res = dagfast("run", "--executor", "dask", "--scheduler", "nonsense", str(dag),
                  home=tmp_path / "h")
    assert res.code == 2
    assert res.err.startswith("dagfast: --scheduler `nonsense` is not a Dask scheduler address")
    secret = write(tmp_path / "secret.yaml", """\
        secrets:
          - {name: TOKEN, provider: env, key: HOME}
        steps:
          - echo
        """)
    res = dagfast("run", "--executor", "dask", str(secret), home=tmp_path / "h")
    assert (res.code, res.err) == (2, "dagfast: `secrets:` cannot be used with the Dask "
                                      "executor yet: their masking reads the steps' output "
                                      "through local pipes\n")
    res = dagfast("run", str(dag), home=tmp_path / "h", env={"DAGFAST_EXECUTOR": "ray"})
    assert (res.code, res.err) == (2, "dagfast: DAGFAST_EXECUTOR is `ray`; expected `local` "
                                      "or `dask`\n")
    res = dagfast("validate", str(write(tmp_path / "v.yaml", """\
        stepExecutor: dusk
        steps:
          - echo
        """)))
    assert res.err == (f"{tmp_path}/v.yaml:1:15: expected `local` or `dask`, got `dusk` - at "
                       "`$.stepExecutor`\n")
    res = dagfast("validate", str(write(tmp_path / "v.yaml", """\
        daskScheduler: tcp://x:1
        steps:
          - echo
        """)))
    assert res.err == (f"{tmp_path}/v.yaml:1:16: `daskScheduler` is for `stepExecutor: dask` "
                       "- at `$.daskScheduler`\n")
    assert not (tmp_path / "h").exists()


def test_asking_for_dask_without_it_installed_names_the_install_command(tmp_path):
    dag = write(tmp_path / "m.yaml", "steps:\n  - echo\n")
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from dagfast.cli.app import main\n"
        f"sys.exit(main(['run', '--executor', 'dask', {str(dag)!r}]))\n"
    )
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == ("dagfast: the Dask executor needs the `distributed` package: "
                           "pip install 'dagfast[dask]'\n")
    assert not (tmp_path / "home").exists()


def test_an_unreachable_scheduler_is_a_clear_error_and_runs_nothing(tmp_path):
    dag = write(tmp_path / "n.yaml", "steps:\n  - command: touch ran\n")
    res = dagfast("run", str(dag), home=tmp_path / "home", env={
        "DAGFAST_DASK_SCHEDULER": "tcp://127.0.0.1:9", "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s",
    })
    assert res.code == 1
    assert res.err.startswith("dagfast: cannot reach the Dask scheduler at tcp://127.0.0.1:9: ")
    assert not (tmp_path / "ran").exists()
    assert status(tmp_path / "home")["status"] == "not_started"
