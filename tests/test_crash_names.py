"""DAG names that differ only in characters a directory name cannot keep (`日本` and
`中国`, `a/b` and `a_b`) have runs, history and `maxActiveRuns` slots of their own; a
DAG file given to `status` or `history` means that file, not every file whose DAG has
its name; plain names keep their directories, and older homes their runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dagfast.records import runslots
from dagfast.records.store import dag_dir_name, old_dag_dir_name
from spectools import dagfast

CLASHING = [("日本", "中国"), ("a/b", "a_b"), (".x", "_.x"), ("a b", "a_b")]


def named(tmp_path: Path, name: str, file: str) -> Path:
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"name: {json.dumps(name)}\nsteps:\n  - command: \"true\"\n")
    return path


def run_ids(res) -> set[str]:
    assert res.code == 0, res.err
    return {line.split()[0] for line in res.out.splitlines()[1:]}


@pytest.mark.parametrize("one, two", CLASHING)
def test_names_that_clash_once_sanitized_have_their_own_runs(tmp_path, one, two):
    home = tmp_path / "home"
    for k, name in enumerate((one, two, one)):
        assert dagfast("run", str(named(tmp_path, name, f"{k}.yaml")), home=home).code == 0
    assert len(run_ids(dagfast("history", one, home=home))) == 2
    (theirs,) = run_ids(dagfast("history", two, home=home))
    doc = json.loads(dagfast("status", "--json", two, home=home).out)
    assert doc["run_id"] == theirs and doc["dag"] == two
    assert dag_dir_name(one) != dag_dir_name(two)


def test_plain_names_keep_their_directories():
    for name in ("a_b", "build-2.1", "X"):
        assert dag_dir_name(name) == name == old_dag_dir_name(name)
    assert dag_dir_name("日本").startswith("__+")  # readable where it can be


def test_max_active_runs_slots_are_per_exact_name(tmp_path):
    home = str(tmp_path / "home")
    held = runslots.take("日本", 1, home, queue=False)
    try:
        other = runslots.take("中国", 1, home, queue=False)  # RunsFull before
        other.release()
        with pytest.raises(runslots.RunsFull):
            runslots.take("日本", 1, home, queue=False)
    finally:
        held.release()


def test_an_older_home_still_shows_the_runs_of_a_renamed_directory(tmp_path):
    # Before: `日本` and `中国` both kept their runs in runs/__.
    home = tmp_path / "home"
    for name, file in (("日本", "j.yaml"), ("中国", "c.yaml")):
        assert dagfast("run", str(named(tmp_path, name, file)), home=home).code == 0
        new = home / "runs" / dag_dir_name(name)
        (run,) = new.iterdir()
        old = home / "runs" / old_dag_dir_name(name)
        old.mkdir(exist_ok=True)
        run.rename(old / run.name)
        new.rmdir()
    (mine,) = run_ids(dagfast("history", "日本", home=home))
    assert json.loads(dagfast("status", "--json", "日本", home=home).out)["run_id"] == mine
    assert dagfast("retry", mine, home=home).code == 0  # found by id, as before


def test_a_dag_file_means_that_file_not_every_file_of_its_name(tmp_path):
    home = tmp_path / "home"
    p1, p2 = named(tmp_path, "dag", "p1/dag.yaml"), named(tmp_path, "dag", "p2/dag.yaml")
    assert dagfast("run", str(p2), home=home).code == 0
    res = dagfast("status", str(p1), home=home)
    assert res.code != 0 and "no run" in res.err
    assert dagfast("history", str(p1), home=home).code != 0
    assert dagfast("run", str(p1), home=home).code == 0
    assert dagfast("run", str(p2), home=home).code == 0
    (mine,) = run_ids(dagfast("history", str(p1), home=home))
    doc = json.loads(dagfast("status", "--json", str(p1), home=home).out)
    assert doc["run_id"] == mine and doc["dag_path"] == str(p1)
    # Through a symbolic link, it is the same file.
    (tmp_path / "link").symlink_to(tmp_path / "p1")
    assert run_ids(dagfast("history", str(tmp_path / "link" / "dag.yaml"), home=home)) == {mine}
    assert run_ids(dagfast("history", "p1/dag.yaml", home=home, cwd=tmp_path)) == {mine}
    # A name still means every file of that name.
    assert len(run_ids(dagfast("history", "dag", home=home))) == 3
