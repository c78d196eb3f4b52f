"""`dagfast migrate` (issue 16): a Dagu 1.x file written as 2.x and back, comments and
layout kept, and what has no equivalent refused with its place; the migrated file runs
the same steps (checked from the files they write)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from spectools import dagfast

ONE = """\
    # nightly job (Dagu 1.x)
    maxActiveSteps: 2   # two at once
    env:
      - myVar: kept   # a variable name: never renamed
    handlerOn:
      failure:
        command: echo failed >> events.txt
    steps:
      - name: get
        command: echo "get $myVar" >> events.txt
        retryPolicy: {limit: 1, intervalSec: 0}
      - name: sub
        run: child
        params: "WHO=sub"
        depends: get
      - name: sh
        command: echo "sh $0" >> events.txt
        shell: bash
        depends: sub
    """
TWO = """\
    # nightly job (Dagu 1.x)
    max_active_steps: 2   # two at once
    env:
      - myVar: kept   # a variable name: never renamed
    handler_on:
      failure:
        run: echo failed >> events.txt
    steps:
      - name: get
        run: echo "get $myVar" >> events.txt
        retry_policy: {limit: 1, interval_sec: 0}
      - name: sub
        call: child
        params: "WHO=sub"
        depends: get
      - name: sh
        run: echo "sh $0" >> events.txt
        with:
          shell: bash
        depends: sub
    """


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_1x_file_becomes_2x_and_back_and_runs_the_same(tmp_path):
    write(tmp_path / "child.yaml", "steps:\n  - command: echo \"child $WHO\" >> events.txt\n")
    one = write(tmp_path / "one.yaml", ONE)
    res = dagfast("migrate", str(one))
    assert (res.code, res.out) == (0, textwrap.dedent(TWO))
    two = tmp_path / "two.yaml"
    res = dagfast("migrate", str(one), "-o", str(two))
    assert (res.code, res.err) == (0, f"{one}: Dagu 1.x -> 2.x, written to {two}\n")
    back = dagfast("migrate", str(two))
    assert back.code == 0
    assert back.out == textwrap.dedent(ONE).replace("run: child", "call: child")
    for dag in (one, two):
        res = dagfast("run", "-q", str(dag), home=tmp_path / "home", cwd=tmp_path)
        assert res.code == 0, res
    assert (tmp_path / "events.txt").read_text() == "get kept\nchild sub\nsh bash\n" * 2


def test_2x_sub_dag_actions_become_call_and_params(tmp_path):
    two = write(tmp_path / "two.yaml", """\
        steps:
          - id: a
            run: echo a
          - id: child
            action: dag.run
            with:
              dag: child
              params:
                X: ${params.Y}
            depends: a
        """)
    res = dagfast("migrate", str(two))
    assert res.code == 0, res
    assert res.out == textwrap.dedent("""\
        steps:
          - id: a
            command: echo a
          - id: child
            call: child
            params:
              X: ${Y}
            depends: a
        """)


def test_what_has_no_equivalent_is_refused_with_its_place(tmp_path):
    two = write(tmp_path / "two.yaml", """\
        steps:
          - id: b
            run: printf 'q=1\\n' >> "$DAGU_OUTPUT_FILE"
            outputs: [{name: q}]
          - id: c
            run: echo ${steps.b.outputs.q}
            depends: b
        """)
    res = dagfast("migrate", str(two), "-o", str(tmp_path / "out.yaml"))
    assert res.code == 2
    assert res.err.splitlines() == [
        f"{two}:4:5: `outputs:` ($DAGU_OUTPUT_FILE) has no Dagu 1.x form (1.x has `output:`, "
        "a step's stdout) - at `$.steps[0].outputs`",
        f"{two}:6:15: `${{steps.…}}` reads a Dagu 2.x output; Dagu 1.x has none (use `output:`)",
    ]
    assert not (tmp_path / "out.yaml").exists()
    one = write(tmp_path / "one.yaml", "steps:\n  - command: python3\n    script: print(1)\n")
    res = dagfast("migrate", str(one))
    assert (res.code, res.err) == (2, (
        f"{one}:3:5: a step with both `command:` (the interpreter) and `script:` has no Dagu "
        "2.x form: give the script a `#!` line and drop `command:` - at `$.steps[0].script`\n"))
