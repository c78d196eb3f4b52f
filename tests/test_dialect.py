"""Dagu 1.x and 2.x files in one loader (issue 16): which dialect a file is read as and
why, the forms each has, the meaning-change line, run for real and checked from outside
(the files the steps write, the exit status, the lines on stderr)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from spectools import Stubs, dagfast, max_overlap

WARNING = ('steps run in parallel (dagfast\'s default); Dagu 1.x ran them in order - add '
           '"type: chain" for that')


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run(dag: Path, *args: str, env: dict | None = None):
    return dagfast("run", *args, str(dag), env=env, home=dag.parent / "home", cwd=dag.parent)


# A Dagu 2.x file: `run:` commands, outputs written to $DAGU_OUTPUT_FILE and read by a
# later step, namespaced references, and a local sub-DAG run with `action: dag.run`.
#
#   build (outputs: image, notes) -> deploy -> child (dag.run of the local `publish`)
TWO = """\
    # Dagu 2.x: snake_case, run:, outputs:
    params:
      - WHO: world
    env:
      - STAGE: prod
    max_active_steps: -1
    steps:
      - id: build
        run: |
          printf 'image=v1.2.3\\n' >> "$DAGU_OUTPUT_FILE"
          printf 'notes<<END\\nline one\\nline two\\nEND\\n' >> "$DAGU_OUTPUT_FILE"
          env > build.env
        outputs:
          - name: image
          - name: notes
      - id: deploy
        depends: build
        env:
          IMAGE: "img-${steps.build.outputs.image}"
        run: echo "$IMAGE|${steps.build.outputs.notes}|${params.WHO}|${env.STAGE}|$${params.WHO}" > deploy.txt
      - id: child
        depends: deploy
        action: dag.run
        with:
          dag: publish
          params:
            TAG: ${steps.build.outputs.image}
      - id: direct
        action: exec
        with:
          command: touch
          args: [exec ran]
    ---
    name: publish
    params:
      - TAG: none
    steps:
      - run: echo "published $TAG" > published.txt
    """


def test_a_dagu_2_file_runs_its_commands_outputs_references_and_local_sub_dag(tmp_path):
    dag = write(tmp_path / "two.yaml", TWO)
    res = run(dag)
    assert res.code == 0, res
    assert (tmp_path / "deploy.txt").read_text() == (
        "img-v1.2.3|line one\nline two|world|prod|${params.WHO}\n"
    )
    assert (tmp_path / "published.txt").read_text() == "published v1.2.3\n"
    assert (tmp_path / "exec ran").exists()  # one argument, as `with.args` gave it
    # Only the step that declares outputs has the file, under the run's directory.
    env = dict(x.split("=", 1) for x in (tmp_path / "build.env").read_text().splitlines()
               if "=" in x)
    assert env["DAGU_OUTPUT_FILE"].startswith(str(tmp_path / "home")), env["DAGU_OUTPUT_FILE"]
    assert res.err == ""  # a 2.x file gets no note about Dagu 1.x's order


def test_validate_says_which_dialect_it_read_and_why(tmp_path):
    two = write(tmp_path / "two.yaml", TWO)
    res = dagfast("validate", "--verbose", str(two))
    assert res.code == 0, res
    assert res.out.splitlines()[1] == (
        f"{two}: read as Dagu 2.x: it uses `outputs:` at `$.steps[0].outputs`, which only "
        "Dagu 2.x has; there `run:` is a command"
    )
    one = write(tmp_path / "one.yaml", """\
        maxActiveSteps: 1
        steps:
          - name: a
            command: echo a
        """)
    res = dagfast("validate", "-v", str(one))
    assert res.out.splitlines()[1] == (
        f"{one}: read as Dagu 1.x: no form only Dagu 2.x has; camelCase keys such as "
        "`maxActiveSteps` are 1.x's"
    )
    res = dagfast("validate", "-v", "--dialect", "2", str(one))
    assert res.out.splitlines()[1] == f"{one}: read as Dagu 2.x: --dialect 2 says so"
    # Without --verbose, said when it matters: the file has a `run:`.
    assert dagfast("validate", str(one)).out == f"{one}: valid (1 steps)\n"
    write(tmp_path / "child.yaml", "steps: [echo]\n")
    write(one, "steps:\n  - run: child\n")
    assert dagfast("validate", str(one)).out.splitlines() == [
        f"{one}: valid (1 steps)",
        f"{one}: read as Dagu 1.x: no form only Dagu 2.x has; there `run: NAME` calls the "
        "sub-DAG NAME",
    ]


def test_run_means_a_command_in_2x_and_a_sub_dag_in_1x(tmp_path):
    # `run: echo` (a command line) makes the file 2.x; `run: make` alone is 1.x's sub-DAG
    # `make` (make.yaml beside it), unless `dialect: 2` or --dialect 2 says otherwise.
    write(tmp_path / "make.yaml", "steps:\n  - command: touch sub-ran\n")
    cmd = write(tmp_path / "cmd.yaml", "steps:\n  - run: echo hi > hi.txt\n")
    assert run(cmd).code == 0
    assert (tmp_path / "hi.txt").read_text() == "hi\n"
    one = write(tmp_path / "one.yaml", "steps:\n  - run: make\n")
    assert run(one).code == 0
    assert (tmp_path / "sub-ran").exists()
    (tmp_path / "bin").mkdir()
    write(tmp_path / "bin" / "make", "#!/bin/sh\ntouch command-ran\n").chmod(0o755)
    path = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    assert run(one, "--dialect", "2", env=path).code == 0
    assert (tmp_path / "command-ran").exists()
    (tmp_path / "command-ran").unlink()
    keyed = write(tmp_path / "keyed.yaml", "dialect: 2\nsteps:\n  - run: make\n")
    assert run(keyed, env=path).code == 0
    assert (tmp_path / "command-ran").exists()


def test_forms_that_cannot_be_reconciled_are_located_errors(tmp_path):
    dag = write(tmp_path / "mix.yaml", """\
        steps:
          - name: a
            run: echo hi
          - name: b
            run: other.yaml
          - name: c
            run: echo c
            command: echo c
          - name: d
            action: http.request
          - id: e
            run: echo e
            outputs:
              - name: 1x
        dialect: three
        """)
    res = dagfast("validate", str(dag))
    assert res.code == 2
    why = "it uses a `run:` that is a command at `$.steps[0].run`, which only Dagu 2.x has"
    assert res.err.splitlines() == [
        f"{dag}:5:10: `run: other.yaml` calls a sub-DAG in Dagu 1.x but is a command in 2.x, "
        f"which this file is read as ({why}); write `call: other.yaml` for the sub-DAG, or "
        "`dialect: 1` - at `$.steps[1].run`",
        f"{dag}:8:5: `run` is the command in Dagu 2.x: give `run` or `command`, not both"
        " - at `$.steps[2].command`",
        f"{dag}:10:5: `action: http.request` is not supported (dagfast runs `run:` commands, "
        "`action: dag.run` and `action: exec`) - at `$.steps[3].action`",
        f"{dag}:14:15: `1x` is not an output name (a letter, then letters, digits or `_`)"
        " - at `$.steps[4].outputs[0].name`",
        f"{dag}:15:10: expected `1` or `2` (Dagu 1.x or 2.x), got `three` - at `$.dialect`",
    ]


def test_the_meaning_change_is_said_once_for_a_1x_file_without_type_or_depends(tmp_path):
    stubs = Stubs(tmp_path, ["download", "process"], sleep=0, peers=("download", "process"),
                  gather=2)
    dag = write(tmp_path / "pipeline.yaml", """\
        maxActiveSteps: 4
        steps:
          - name: download
            command: download
          - name: process
            command: process
        """)
    res = run(dag, env=stubs.env())
    assert res.code == 0, res
    assert res.err == f"{dag}: {WARNING}\n"
    assert max_overlap(stubs.calls()) == 2  # as said: both at once
    assert run(dag, "--quiet", env=stubs.env()).err == ""
    res = dagfast("validate", str(dag))
    assert (res.code, res.err) == (0, f"{dag}: {WARNING}\n")
    assert dagfast("validate", "-q", str(dag)).err == ""
    # `type:`, a `depends`, one step or no camelCase key: nothing to say.
    for text in ("type: graph\nmaxActiveSteps: 4\nsteps: [a, b]\n",
                 "maxActiveSteps: 4\nsteps:\n  - name: a\n    command: a\n"
                 "  - name: b\n    command: b\n    depends: []\n",
                 "maxActiveSteps: 4\nsteps: [a]\n",
                 "max_active_steps: 4\nsteps: [a, b]\n"):
        write(dag, text)
        assert dagfast("validate", str(dag)).err == "", text


def test_type_chain_runs_a_1x_file_in_order(tmp_path):
    stubs = Stubs(tmp_path, ["download", "process", "upload"], sleep=0)
    dag = write(tmp_path / "chain.yaml", """\
        type: chain
        maxActiveSteps: 4
        steps:
          - {name: download, command: download}
          - {name: process, command: process}
          - {name: upload, command: upload}
        """)
    res = run(dag, env=stubs.env())
    assert (res.code, res.err) == (0, "")
    calls = stubs.calls()
    assert [c.name for c in calls] == ["download", "process", "upload"]
    assert max_overlap(calls) == 1


def test_2x_shorthand_steps_and_unlimited_max_active_steps_run_at_once(tmp_path):
    stubs = Stubs(tmp_path, ["left", "right"], sleep=0, peers=("left", "right"), gather=2)
    dag = write(tmp_path / "short.yaml", """\
        max_active_steps: 0
        steps: ["left ${params.N}", "right ${params.N}"]
        params: "N=7"
        """)
    res = run(dag, env=stubs.env())
    assert res.code == 0, res
    assert stubs.labels() == ["left 7", "right 7"]
    assert max_overlap(stubs.calls()) == 2
    # 2.x reads a negative limit as unlimited; 1.x refuses it.
    write(dag, "max_active_steps: -1\nsteps: [\"left ${params.N}\"]\nparams: N=1\n")
    assert dagfast("validate", str(dag)).code == 0
    write(dag, "maxActiveSteps: -1\nsteps: [left]\n")
    assert dagfast("validate", str(dag)).code == 2


def test_a_step_whose_output_file_is_wrong_fails_and_publishes_nothing(tmp_path):
    dag = write(tmp_path / "bad.yaml", """\
        steps:
          - id: undeclared
            run: echo 'other=1' >> "$DAGU_OUTPUT_FILE"
            outputs: [{name: x}]
          - id: missing
            run: "true"
            outputs: [{name: x}]
          - id: unclosed
            run: printf 'x<<EOF\\nabc\\n' >> "$DAGU_OUTPUT_FILE"
            outputs: [{name: x}]
          - id: notjson
            run: echo 'x={nope' >> "$DAGU_OUTPUT_FILE"
            outputs: [{name: x, type: json}]
          - id: after
            depends: [undeclared]
            run: touch never
        """)
    res = run(dag)
    assert res.code == 1
    doc = json.loads(dagfast("status", str(dag), "--json", home=tmp_path / "home").out)
    errors = {s["name"]: s["error"] for s in doc["steps"]}
    assert errors["undeclared"] == "$DAGU_OUTPUT_FILE sets `other`, which `outputs:` does not declare"
    assert errors["missing"] == "$DAGU_OUTPUT_FILE does not set `x`"
    assert errors["unclosed"] == ("line 1 of $DAGU_OUTPUT_FILE: `x<<EOF` is never closed by "
                                  "a `EOF` line")
    assert errors["notjson"] == "output `x` is not JSON: '{nope'"
    assert not (tmp_path / "never").exists()


def test_each_retry_attempt_gets_an_empty_output_file(tmp_path):
    # The first attempt writes its value then fails; the second writes it again and
    # succeeds: only one `n=` is read (a kept file would hold it twice, an error).
    dag = write(tmp_path / "retry.yaml", """\
        steps:
          - id: flaky
            run: |
              echo "n=$(ls tries | wc -l | tr -d ' ')" >> "$DAGU_OUTPUT_FILE"
              touch "tries/$(date +%s%N)"
              [ "$(ls tries | wc -l)" -ge 2 ]
            retry_policy: {limit: 2}
            outputs: [{name: n}]
          - id: show
            depends: flaky
            run: echo "${steps.flaky.outputs.n}" > n.txt
        """)
    (tmp_path / "tries").mkdir()
    res = run(dag)
    assert res.code == 0, res
    assert (tmp_path / "n.txt").read_text() == "1\n"


def test_the_callers_params_win_over_the_sub_dags_defaults_in_every_form(tmp_path):
    # Dagu's open bug #2813 lets the caller's env override them; here the params win,
    # and a param the caller does not pass keeps the sub-DAG's default.
    write(tmp_path / "child.yaml", """\
        params:
          - X: child-default
          - Y: child-y
        steps:
          - command: echo "$X $Y" >> seen.txt
        """)
    dag = write(tmp_path / "parent.yaml", """\
        env:
          - X: parent-env
          - Y: parent-env
        steps:
          - name: one
            call: child
            params: "X=by-call"
          - name: two
            action: dag.run
            with:
              dag: child.yaml
              params:
                X: by-dag-run
          - name: three
            call: child
            params: "X=by-item-${ITEM}"
            parallel: [a]
        """)
    res = run(dag)
    assert res.code == 0, res
    assert sorted((tmp_path / "seen.txt").read_text().splitlines()) == [
        "by-call child-y", "by-dag-run child-y", "by-item-a child-y",
    ]


def test_2x_typed_params_are_read_as_their_defaults(tmp_path):
    dag = write(tmp_path / "typed.yaml", """\
        params:
          - name: environment
            type: string
            enum: [dev, staging]
            default: staging
          - name: batch_size
            type: integer
            default: 100
          - name: plain
        steps:
          - run: echo "$environment $batch_size $name" > p.txt
        """)
    assert run(dag).code == 0
    assert (tmp_path / "p.txt").read_text() == "staging 100 plain\n"
    assert run(dag, "-p", "environment=dev").code == 0
    assert (tmp_path / "p.txt").read_text() == "dev 100 plain\n"


def test_a_retry_keeps_the_outputs_of_the_steps_it_does_not_run_again(tmp_path):
    dag = write(tmp_path / "retry.yaml", """\
        steps:
          - id: a
            run: echo "x=from-a" >> "$DAGU_OUTPUT_FILE"
            outputs: [{name: x}]
          - id: b
            depends: a
            run: test -f go && echo "${steps.a.outputs.x}" > got.txt
        """)
    assert run(dag).code == 1
    (tmp_path / "go").touch()
    run_id = next((tmp_path / "home" / "runs" / "retry").iterdir()).name
    res = dagfast("retry", "-q", run_id, home=tmp_path / "home", cwd=tmp_path)
    assert res.code == 0, res
    assert (tmp_path / "got.txt").read_text() == "from-a\n"


def test_2x_steps_keyed_by_name_run_their_commands(tmp_path):
    dag = write(tmp_path / "keyed.yaml", """\
        dialect: 2
        steps:
          first:
            run: echo one > one.txt
            retry_policy: {limit: 1}
          second:
            run: touch two
            depends: [first]
        """)
    res = run(dag)
    assert res.code == 0, res
    assert (tmp_path / "one.txt").read_text() == "one\n" and (tmp_path / "two").exists()
    write(dag, "dialect: 2\nsteps:\n  a:\n    run: \"\"\n")
    res = dagfast("validate", str(dag))
    assert (res.code, res.err) == (2, f"{dag}:4:10: `run` is empty - at `$.steps.a.run`\n")
