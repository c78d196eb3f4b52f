"""`load(path, evaluate=False)`, for `validate`, `dry` and `graph`: the file is checked
as fully as a run's load, but no backtick runs; its text is kept as written."""

from __future__ import annotations

from dagfast.loader import load, load_sub, load_text

DAG = """\
env:
  - WHO: "`touch env-ran; echo world`"
  - N: "`touch int-ran; echo 3`"
params:
  - P: "`touch params-ran; echo p`"
workingDir: "`touch dir-ran; echo sub`"
maxActiveSteps: ${N}
steps:
  - name: a
    command: echo $WHO
    timeoutSec: ${N}
    env:
      - S: "`touch step-ran; echo s`"
"""


def test_without_evaluation_no_backtick_runs_and_the_text_stays_as_written(tmp_path):
    dag = tmp_path / "dag.yaml"
    dag.write_text(DAG)
    d = load(dag, environ={}, evaluate=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dag.yaml"]
    assert d.env == (("WHO", "`touch env-ran; echo world`"), ("N", "`touch int-ran; echo 3`"))
    assert d.params == (("P", "`touch params-ran; echo p`"),)
    assert d.dir == str(tmp_path / "`touch dir-ran; echo sub`")
    assert d.max_active_steps == 0
    assert d.steps[0].env == (("S", "`touch step-ran; echo s`"),)
    assert d.steps[0].extra.timeout_sec == 0
    d = load_text(DAG, base_dir=tmp_path, environ={}, evaluate=False)
    s = load_sub(dag, environ={}, params=(), work_dir=str(tmp_path), done=frozenset(),
                 evaluate=False)  # fmt: skip
    assert d.env == s.env == (("WHO", "`touch env-ran; echo world`"), ("N", "`touch int-ran; echo 3`"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dag.yaml"]


def test_with_evaluation_the_backticks_run(tmp_path):
    dag = tmp_path / "dag.yaml"
    dag.write_text(DAG)
    (tmp_path / "sub").mkdir()  # where the DAG runs, so where its other backticks run
    d = load(dag, environ={})
    ran = {"env-ran", "int-ran", "params-ran", "dir-ran", "step-ran"}
    assert ran <= {p.name for p in tmp_path.iterdir()} | {p.name for p in (tmp_path / "sub").iterdir()}
    assert d.env == (("WHO", "world"), ("N", "3")) and d.max_active_steps == 3
    assert d.params == (("P", "p"),) and d.dir == str(tmp_path / "sub")
    assert d.steps[0].extra.timeout_sec == 3
