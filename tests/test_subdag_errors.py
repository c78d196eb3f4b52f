"""Sub-DAG errors: those of files named statically are found before anything runs, and
a sub-DAG's failure is named in its caller's record, however deep it happened."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from spectools import dagfast


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_loop_of_sub_dags_through_three_files_is_named_in_the_outermost_record(tmp_path):
    #   a.yaml -> b.yaml -> c.yaml -> a.yaml   (a.yaml names b.yaml through an output,
    #   so the loop is found running, in the innermost sub-run)
    write(tmp_path / "a.yaml", """\
        steps:
          - name: which
            command: echo b.yaml
            output: SUB
          - name: to-b
            call: ${SUB}
            depends: which
        """)
    (tmp_path / "b.yaml").write_text("steps:\n  - name: to-c\n    call: c.yaml\n")
    (tmp_path / "c.yaml").write_text("steps:\n  - name: to-a\n    call: a.yaml\n")
    home = tmp_path / "home"
    res = dagfast("run", str(tmp_path / "a.yaml"), home=home)
    assert res.code == 1
    doc = json.loads(dagfast("status", str(tmp_path / "a.yaml"), "--json", home=home).out)
    assert doc["steps"][1]["error"] == (
        "sub-DAG `b` failed: step `to-c`: sub-DAG `c` failed: step `to-a`: "
        "the sub-DAG calls itself: a.yaml -> b.yaml -> c.yaml -> a.yaml"
    )
    assert "a.yaml -> b.yaml -> c.yaml -> a.yaml" in res.out


def test_validate_and_run_load_every_sub_dag_named_statically(tmp_path):
    #   m.yaml: x -> nothere.yaml (missing); y -> bad.yaml (unknown depends);
    #           z -> bare.yaml (a bare list whose depends names no step of either file);
    #           ok -> ${DIR}/fine.yaml (a variable the DAG defines: checked too)
    write(tmp_path / "m.yaml", """\
        env:
          - DIR: sub
        steps:
          - name: x
            call: nothere.yaml
          - name: y
            run: bad.yaml
          - name: z
            call: bare.yaml
          - name: ok
            call: ${DIR}/fine.yaml
          - name: ran
            command: touch ran
        """)
    write(tmp_path / "bad.yaml", """\
        steps:
          - name: q
            command: echo
            depends: zz
        """)
    write(tmp_path / "bare.yaml", """\
        - name: q
          command: echo
          depends: nope
        """)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "fine.yaml", "steps:\n  - echo fine\n")
    m, bad, bare = tmp_path / "m.yaml", tmp_path / "bad.yaml", tmp_path / "bare.yaml"
    expected = [
        f"{m}: the sub-DAG `nothere.yaml` does not exist (no file `{tmp_path}/nothere.yaml`)"
        " - at `$.steps[0].call`",
        f"{bad}:4:14: depends on unknown step `zz` (in the sub-DAG that {m} calls at "
        "`$.steps[1].call`) - at `$.steps[0].depends`",
        f"{bare}:3:12: depends on unknown step `nope` (in the sub-DAG that {m} calls at "
        "`$.steps[2].call`) - at `$[0].depends`",
    ]
    home = tmp_path / "home"
    for command in ("validate", "run"):
        res = dagfast(command, str(m), home=home, cwd=tmp_path)
        assert res.code == 2, (command, res)
        assert res.err.splitlines() == expected, command
    assert not home.exists() and not (tmp_path / "ran").exists()


def test_sub_dags_that_call_each_other_statically_are_refused_before_anything_runs(tmp_path):
    #   a.yaml -> b.yaml -> a.yaml
    write(tmp_path / "a.yaml", "steps:\n  - name: to_b\n    call: b.yaml\n"
                               "  - name: side\n    command: touch ran\n")
    write(tmp_path / "b.yaml", "steps:\n  - name: to_a\n    call: a.yaml\n")
    for command in ("validate", "run"):
        res = dagfast(command, str(tmp_path / "a.yaml"), home=tmp_path / "home")
        assert res.code == 2, (command, res)
        assert res.err == (
            f"{tmp_path}/b.yaml: the sub-DAGs call each other in a loop: "
            "a.yaml -> b.yaml -> a.yaml - at `$.steps[0].call`\n"
        )
    assert not (tmp_path / "ran").exists() and not (tmp_path / "home").exists()


def test_a_sub_dag_named_by_an_outside_variable_is_checked_when_known(tmp_path):
    # SUBDIR comes from the caller's environment: known when the run starts.
    write(tmp_path / "v.yaml", "steps:\n  - name: c\n    call: ${SUBDIR}/child.yaml\n")
    res = dagfast("validate", str(tmp_path / "v.yaml"), env={"SUBDIR": str(tmp_path)})
    assert res.code == 2
    assert f"no file `{tmp_path}/child.yaml`" in res.err
    write(tmp_path / "child.yaml", "steps:\n  - echo child\n")
    res = dagfast("validate", str(tmp_path / "v.yaml"), env={"SUBDIR": str(tmp_path)})
    assert res.code == 0, res.err


def test_a_sub_dag_an_upstream_step_writes_is_loaded_when_its_step_runs(tmp_path):
    # The spec's dynamic fan-out: `gen` writes the file that `fan` runs; the file does
    # not exist when the run starts, and that is no error. Without an upstream step, it is.
    write(tmp_path / "dyn.yaml", f"""\
        steps:
          - name: gen
            command: |
              printf -- '- name: g1\\n  command: touch {tmp_path}/g1\\n' > gen.yaml
          - name: fan
            run: gen.yaml
            depends: gen
        """)
    assert dagfast("validate", str(tmp_path / "dyn.yaml")).code == 0
    res = dagfast("run", str(tmp_path / "dyn.yaml"), home=tmp_path / "home", cwd=tmp_path)
    assert res.code == 0, res.out + res.err
    assert (tmp_path / "g1").exists()
    write(tmp_path / "alone.yaml", "steps:\n  - name: fan\n    run: never.yaml\n")
    res = dagfast("validate", str(tmp_path / "alone.yaml"))
    assert res.code == 2 and "the sub-DAG `never.yaml` does not exist" in res.err
