"""`dagfast prune`: shows what it would delete, deletes with --yes, by count or age,
never a running run, and leaves no half-deleted run behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from spectools import dagfast

from dagfast.records.prune import parse_age, runs_to_prune


def runs(home: Path, dag: str) -> list[str]:
    return sorted(p.name for p in (home / "runs" / dag).iterdir())


def test_prune_keeps_the_latest_runs_and_never_a_running_one(tmp_path):
    home = tmp_path / "home"
    quick = tmp_path / "quick.yaml"
    quick.write_text("steps:\n  - name: a\n    command: 'true'\n")
    for _ in range(3):
        assert dagfast("run", "-q", str(quick), home=home).code == 0
    old = runs(home, "quick")
    # A running run of another DAG, older than every quick run's cut.
    started = tmp_path / "started"
    slow = tmp_path / "slow.yaml"
    slow.write_text(textwrap.dedent(f"""\
        steps:
          - name: s
            command: touch {started}; exec sleep 600
        """))
    env = dict(os.environ, DAGFAST_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", "-q", str(slow)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not started.exists():
            assert proc.poll() is None
            time.sleep(0.02)
        (running,) = runs(home, "slow")
        # Dry by default: says what it would delete, deletes nothing.
        res = dagfast("prune", "--keep", "1", home=home)
        assert res.code == 0, res.err
        assert res.out.splitlines() == [
            f"would delete quick/{old[0]}", f"would delete quick/{old[1]}",
            "would delete 2 runs; add --yes to delete them"]
        assert runs(home, "quick") == old
        # Every DAG's runs: the running one is kept, and said to be.
        res = dagfast("prune", "--keep", "0", "--yes", home=home)
        assert res.code == 0, res.err
        assert res.out.splitlines() == [
            *(f"deleted quick/{r}" for r in old),
            f"kept slow/{running}: it is running or queued", "deleted 3 runs"]
        assert runs(home, "quick") == [] and runs(home, "slow") == [running]
        assert dagfast("status", running, home=home).code == 0
    finally:
        proc.kill()
        proc.wait()


def test_prune_by_age_and_by_dag_file(tmp_path):
    home = tmp_path / "home"
    dag = tmp_path / "d.yaml"
    dag.write_text("steps:\n  - name: a\n    command: 'true'\n")
    assert dagfast("run", "-q", str(dag), home=home).code == 0
    (run,) = runs(home, "d")
    res = dagfast("prune", str(dag), "--older-than", "1d", "--yes", home=home)
    assert res.out.splitlines() == ["deleted 0 runs"]
    # A run whose id says it started 2 days ago goes; what is left of an interrupted
    # prune (a dot directory) goes too, and is never listed as a run.
    old_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - 2 * 86400)) + "000Z-aaaaaa"
    os.rename(home / "runs" / "d" / run, home / "runs" / "d" / old_id)
    leftover = home / "runs" / "d" / ".x.pruning"
    (leftover / "steps").mkdir(parents=True)
    (leftover / "dag.json").write_text("{}")
    assert dagfast("history", str(dag), home=home).out.count("\n") == 2
    res = dagfast("prune", "d", "--older-than", "36h", "--yes", home=home)
    assert res.code == 0, res.err
    assert res.out.splitlines() == [f"deleted d/{old_id}", "deleted 1 run"]
    assert runs(home, "d") == []


def test_prune_errors_are_one_line():
    for args, err in [
        (("prune",), "dagfast: prune needs --keep N or --older-than AGE (or both)"),
        (("prune", "--older-than", "ten days"), "dagfast: --older-than ten days: not an "
         "age; write a number and a unit, s, m, h, d or w (10d: ten days)"),
        (("prune", "--keep", "-1"), None),
    ]:
        res = dagfast(*args)
        assert res.code == 2 and res.out == ""
        if err is not None:
            assert res.err.strip() == err
        else:
            assert re.search(r"--keep: must be 0 or more, not -1", res.err)


def test_runs_to_prune_by_count_and_age():
    day = 86400.0
    now = 1_800_000_000.0
    ids = [time.strftime("%Y%m%dT%H%M%S", time.gmtime(now - d * day)) + "000Z-abcdef"
           for d in (5, 3, 1)]
    assert runs_to_prune(ids, 2, None, now) == ids[:1]
    assert runs_to_prune(ids, None, parse_age("2d"), now) == ids[:2]
    assert runs_to_prune(ids, 5, parse_age("4d"), now) == ids[:1]
    assert runs_to_prune(ids, None, None, now) == []
    assert parse_age("1.5h") == 5400 and parse_age("2w") == 14 * day


def test_retention_after_a_run_keeps_the_latest_and_the_running(tmp_path):
    """records.prune.apply_retention, the hook for histRetentionRuns/histRetentionDays:
    called while the latest run is still held, it keeps that one."""
    from dagfast.records.prune import apply_retention
    from dagfast.records.read import runs_of
    from dagfast.records.store import RunDir
    from dagfast.loader import load

    home = tmp_path / "home"
    dag = tmp_path / "r.yaml"
    dag.write_text("steps:\n  - name: a\n    command: 'true'\n")
    for _ in range(3):
        assert dagfast("run", "-q", str(dag), home=home).code == 0
    first = runs_of(str(home), "r")
    held = RunDir.create(load(str(dag)), str(home))  # a run that is going on
    try:
        done = apply_retention(str(home), "r", 0, None)
        assert sorted(done.deleted) == first and done.busy == [held.path]
        assert runs_of(str(home), "r") == [held.path]
    finally:
        held.close()
    assert apply_retention(str(home), "r", None, None).deleted == []


def test_hist_retention_keys_apply_after_each_run(tmp_path):
    home = tmp_path / "home"
    dag = tmp_path / "kept.yaml"
    dag.write_text("histRetentionRuns: 2\nsteps:\n  - name: a\n    command: 'true'\n")
    made = []
    for _ in range(4):
        assert dagfast("run", "-q", str(dag), home=home).code == 0
        made.append(runs(home, "kept")[-1])
    assert runs(home, "kept") == made[-2:]
    # By age: a run whose id says it started 3 days ago goes after the next run.
    days = tmp_path / "days.yaml"
    days.write_text("hist_retention_days: 2\nsteps:\n  - name: a\n    command: 'true'\n")
    assert dagfast("run", "-q", str(days), home=home).code == 0
    (run,) = runs(home, "days")
    old_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - 3 * 86400)) + "000Z-bbbbbb"
    os.rename(home / "runs" / "days" / run, home / "runs" / "days" / old_id)
    assert dagfast("run", "-q", str(days), home=home).code == 0
    assert old_id not in runs(home, "days") and len(runs(home, "days")) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("histRetentionRuns: many\nsteps: ['true']\n")
    res = dagfast("validate", str(bad), home=home)
    assert res.code == 2 and "$.histRetentionRuns" in res.err
