"""`dagfast.load` and `dagfast.run` from Python, with real processes."""

import textwrap

import pytest

import dagfast


def test_run_a_file_and_read_the_result(tmp_path):
    dag = tmp_path / "api.yaml"
    dag.write_text(textwrap.dedent("""\
        steps:
          - name: a
            command: echo a > a.txt
          - name: b
            command: exit 4
            depends: a
          - name: c
            command: 'true'
            depends: b
        """))
    result = dagfast.run(dag, home_dir=str(tmp_path / "home"))
    assert result.status == dagfast.RunStatus.FAILED
    assert result.step("a").status == dagfast.StepStatus.SUCCEEDED
    assert result.step("b").exit_code == 4
    assert result.step("c").status == dagfast.StepStatus.ABORTED
    assert (tmp_path / "a.txt").read_text() == "a\n"


def test_load_then_run_with_an_override(tmp_path):
    dag = tmp_path / "two.yaml"
    dag.write_text("maxActiveSteps: 1\nsteps:\n  - command: 'true'\n  - command: 'true'\n")
    loaded = dagfast.load(dag)
    assert isinstance(loaded, dagfast.Dag) and loaded.max_active_steps == 1
    result = dagfast.run(loaded, max_active_steps=0, home_dir=str(tmp_path / "home"))
    assert result.status == dagfast.RunStatus.SUCCEEDED


def test_bad_file_raises_load_error(tmp_path):
    dag = tmp_path / "bad.yaml"
    dag.write_text("steps:\n  - name: a\n    depends: missing\n    command: x\n")
    with pytest.raises(dagfast.LoadError) as info:
        dagfast.load(dag)
    assert "missing" in str(info.value)
    assert not (tmp_path / "home").exists()


def test_negative_override_is_a_usage_error(tmp_path):
    dag = tmp_path / "ok.yaml"
    dag.write_text("steps:\n  - command: 'true'\n")
    with pytest.raises(dagfast.UsageError):
        dagfast.run(dag, max_active_steps=-1, home_dir=str(tmp_path / "home"))
    assert not (tmp_path / "home").exists()
