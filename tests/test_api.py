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


def test_params_of_the_wrong_type_are_a_usage_error(tmp_path):
    dag = tmp_path / "ok.yaml"
    dag.write_text("steps:\n  - command: 'true'\n")
    with pytest.raises(dagfast.UsageError, match="params must be a mapping, a list or a string"):
        dagfast.run(dag, params=5, home_dir=str(tmp_path / "home"))
    assert not (tmp_path / "home").exists()


def test_negative_override_is_a_usage_error(tmp_path):
    dag = tmp_path / "ok.yaml"
    dag.write_text("steps:\n  - command: 'true'\n")
    with pytest.raises(dagfast.UsageError):
        dagfast.run(dag, max_active_steps=-1, home_dir=str(tmp_path / "home"))
    assert not (tmp_path / "home").exists()


def test_a_retry_reruns_only_what_did_not_succeed(tmp_path):
    #   a -> b -> c      (b fails the first time only)
    #   d
    from dagfast.runtime.session import run_in
    from dagfast.records.store import RunDir

    (tmp_path / "dag.yaml").write_text(textwrap.dedent("""\
        steps:
          - name: a
            command: echo a >> runs.txt
          - name: b
            command: echo b >> runs.txt; test -e fixed
            depends: a
          - name: c
            command: echo c >> runs.txt
            depends: b
          - name: d
            command: echo d >> runs.txt
        """))
    dag = dagfast.load(tmp_path / "dag.yaml")
    first = dagfast.run(dag, home_dir=str(tmp_path / "home"))
    assert first.status == dagfast.RunStatus.FAILED
    (tmp_path / "fixed").touch()
    run_dir = RunDir.create(dag, str(tmp_path / "home"), run_id=first.run_id + "-retry")
    second = run_in(dag, run_dir, previous=first.steps)
    assert second.status == dagfast.RunStatus.SUCCEEDED
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["a", "b", "b", "c", "d"]
    assert second.step("a").started_at == first.step("a").started_at


def test_run_with_params_returns_status_outputs_and_timings(tmp_path):
    #   greet -> shout
    dag = tmp_path / "params.yaml"
    dag.write_text(textwrap.dedent("""\
        params: WHO=world
        steps:
          - name: greet
            command: echo "hello $WHO"
            output: GREETING
          - name: shout
            command: echo "$GREETING!"
            depends: greet
            output: SHOUT
        """))
    for params in ({"WHO": "you"}, ["WHO=you"], "WHO=you"):
        result = dagfast.run(dag, params=params, home_dir=str(tmp_path / "home"))
        assert result.status == dagfast.RunStatus.SUCCEEDED
        assert result.outputs == {"GREETING": "hello you", "SHOUT": "hello you!"}
        greet, shout = result.step("greet"), result.step("shout")
        assert isinstance(greet, dagfast.StepRecord)
        assert greet.status == shout.status == dagfast.StepStatus.SUCCEEDED
        assert greet.started_at <= greet.finished_at <= shout.started_at <= shout.finished_at
    loaded = dagfast.load(dag)
    again = dagfast.run(loaded, params={"WHO": "again"}, home_dir=str(tmp_path / "home"))
    assert again.outputs["GREETING"] == "hello again"


def test_a_reporter_hears_every_step(tmp_path):
    dag = tmp_path / "r.yaml"
    dag.write_text("steps:\n  - name: a\n    command: 'true'\n  - name: b\n    command: exit 1\n")
    heard = []

    class Listen(dagfast.Reporter):
        def step_finished(self, step, record):
            heard.append((step, record.status))

    dagfast.run(dag, reporter=Listen(), home_dir=str(tmp_path / "home"))
    assert sorted(heard) == [(0, dagfast.StepStatus.SUCCEEDED), (1, dagfast.StepStatus.FAILED)]
