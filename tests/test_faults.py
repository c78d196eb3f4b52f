"""Faults around the engine: SIGKILL at random moments, again and again, and two
engines racing for the same run. Every record stays readable, and `retry` finishes the
run without running again any step the record says succeeded.

DAGFAST_KILL_LOOPS sets how many kills (default 4); DAGFAST_KILL_SEED replays a run.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from spectools import dagfast


def spawn(*args: str, home: Path) -> subprocess.Popen:
    env = dict(os.environ, DAGFAST_HOME=str(home))
    return subprocess.Popen([sys.executable, "-m", "dagfast", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ledger(path: Path) -> collections.Counter:
    """How many times each step ran to its end."""
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def status(run_id: str, home: Path) -> dict:
    res = dagfast("status", run_id, "--json", home=home)
    assert res.code == 0, res.err
    return json.loads(res.out)


def long_dag(tmp_path: Path) -> Path:
    #   w0..w19 (fan out, 4 at a time) -> join -> c0 -> c1 -> ... -> c9
    lines = ["maxActiveSteps: 4", "steps:"]
    step = "    command: sleep 0.{d}; echo $DAG_RUN_STEP_NAME >> {ledger}"
    for i in range(20):
        lines += [f"  - name: w{i}", step.format(d=i % 4 + 1, ledger=tmp_path / "ledger")]
    lines += ["  - name: join", "    depends: [" + ", ".join(f"w{i}" for i in range(20)) + "]",
              step.format(d=1, ledger=tmp_path / "ledger")]
    for i in range(10):
        lines += [f"  - name: c{i}", f"    depends: {'join' if i == 0 else f'c{i - 1}'}",
                  step.format(d=2, ledger=tmp_path / "ledger")]
    path = tmp_path / "long.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sigkill_at_random_moments_then_retry_never_reruns_a_succeeded_step(tmp_path):
    seed = int(os.environ.get("DAGFAST_KILL_SEED", random.randrange(1 << 30)))
    loops = int(os.environ.get("DAGFAST_KILL_LOOPS", "4"))
    rng = random.Random(seed)
    home, book = tmp_path / "home", tmp_path / "ledger"
    dag = long_dag(tmp_path)
    proc = spawn("run", str(dag), home=home)
    run_id = None
    first_done: dict[str, int] = {}  # step -> its ledger count when first recorded succeeded
    for k in range(loops):
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        if run_id is None:
            # A run is made under a hidden name and renamed once it is whole: a kill
            # in between leaves only that, which is no run.
            runs = [p for p in (home / "runs" / "long").glob("*") if not p.name.startswith(".")]
            if not runs:
                # Killed before the run had a record: there is nothing to retry or to
                # read, so it is started again, as a user would.
                proc = spawn("run", str(dag), home=home)
                continue
            (run,) = runs
            run_id = run.name
        doc = status(run_id, home)  # readable, whatever the moment of the kill
        assert dagfast("history", str(dag), home=home).code == 0
        # How many times each step had run when the record first said it succeeded:
        # from then on, over every later attempt (killed or not), it must not run again.
        counts = ledger(book)
        for s in doc["steps"]:
            if s["status"] == "succeeded":
                first_done.setdefault(s["name"], counts[s["name"]])
        if doc["status"] == "succeeded":
            break
        proc = spawn("retry", run_id, "--quiet", home=home)
        if k == loops - 1:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, (seed, out, err)
    if proc.poll() is None:
        proc.communicate(timeout=120)
    if run_id is None:  # every kill came before the record existed; the last run ran
        (run,) = (home / "runs" / "long").glob("*")
        run_id = run.name
    doc = status(run_id, home)
    assert doc["status"] == "succeeded", seed
    assert all(s["status"] == "succeeded" for s in doc["steps"]), seed
    counts = ledger(book)
    assert all(counts[s["name"]] >= 1 for s in doc["steps"]), (seed, counts)
    assert all(n >= 1 for n in first_done.values()), (seed, first_done)
    rerun = {name: (n, counts[name]) for name, n in first_done.items() if counts[name] != n}
    assert rerun == {}, (seed, "succeeded, then ran again (runs then, runs in all)", rerun)


def test_two_retries_of_the_same_run_at_once_one_runs_one_is_refused(tmp_path):
    home, book = tmp_path / "home", tmp_path / "ledger"
    dag = tmp_path / "two.yaml"
    # `gate` sleeps in the first attempt (killed there); in the retry it says it has
    # started, then waits for `release`, so the second retry comes while the first runs.
    dag.write_text(f"""\
steps:
  - name: first
    command: echo first >> {book}
  - name: gate
    depends: first
    command: >-
      if [ ! -e {tmp_path}/go ]; then sleep 60; fi; echo gate-started >> {book};
      while [ ! -e {tmp_path}/release ]; do sleep 0.02; done; echo gate >> {book}
""")
    proc = spawn("run", str(dag), home=home)
    deadline = time.monotonic() + 30
    while "first" not in ledger(book):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (run,) = (home / "runs" / "two").iterdir()
    deadline = time.monotonic() + 120  # each `status` is a new interpreter
    while status(run.name, home)["steps"][0]["status"] != "succeeded":
        assert time.monotonic() < deadline, "the record never said `first` succeeded"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    (tmp_path / "go").touch()
    a = spawn("retry", run.name, home=home)
    deadline = time.monotonic() + 120
    while "gate-started" not in ledger(book):  # the first retry holds the run
        assert time.monotonic() < deadline, a.communicate()
        time.sleep(0.02)
    b = spawn("retry", run.name, home=home)
    b_out = b.communicate(timeout=60)
    (tmp_path / "release").touch()
    a_out = a.communicate(timeout=60)
    assert (a.returncode, b.returncode) == (0, 1), (a_out, b_out)
    assert "is still running" in b_out[1]
    assert ledger(book) == {"first": 1, "gate-started": 1, "gate": 1}
    assert status(run.name, home)["status"] == "succeeded"


def test_every_directory_and_file_of_a_run_is_private_whatever_the_umask(tmp_path):
    # Sub-DAG logs, retried steps' archives and the home's own directories included.
    (tmp_path / "sub.yaml").write_text("steps:\n  - echo sub\n")
    dag = tmp_path / "m.yaml"
    dag.write_text("""\
steps:
  - name: call
    call: sub.yaml
  - name: missing
    command: "false"
  - name: script
    script: echo hi
    output: OUT
""")
    home = tmp_path / "new" / "home"
    env = dict(os.environ, DAGFAST_HOME=str(home))
    private = 'umask 022 && exec "$0" -m dagfast "$@"'
    first = subprocess.run(["sh", "-c", private, sys.executable, "run", str(dag)], env=env,
                           capture_output=True)
    assert first.returncode == 1
    (run,) = (home / "runs" / "m").iterdir()
    subprocess.run(["sh", "-c", private, sys.executable, "retry", run.name], env=env,
                   capture_output=True)
    doc = subprocess.run([sys.executable, "-m", "dagfast", "status", "--json", run.name],
                         env=env, capture_output=True, text=True)
    assert json.loads(doc.stdout)["attempt"] == 2  # the retry ran, and wrote its record
    for p in [tmp_path / "new", home, *home.rglob("*")]:
        assert p.stat().st_mode & 0o077 == 0, (p, oct(p.stat().st_mode))
