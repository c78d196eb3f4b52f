"""Sub-DAGs named as Dagu names them (issue 16): `call: child` finds child.yaml or
child.yml beside the calling file, then in the DAGs directory (`--dags`, DAGFAST_DAGS,
by default the directory of the DAG file run); local sub-DAGs are the documents after
`---`, called by `name:`. Each runs for real; the files the steps write tell."""

from __future__ import annotations

import textwrap
from pathlib import Path

from spectools import dagfast


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run(dag: Path, *args: str, env: dict | None = None):
    return dagfast("run", "-q", *args, str(dag), env=env, home=dag.parent / "home",
                   cwd=dag.parent)


def test_a_name_without_extension_finds_yaml_then_yml_beside_then_in_the_dags_dir(tmp_path):
    #   main.yaml -> child (child.yaml beside it)
    #             -> other (other.yml beside it)
    #             -> sub/inner.yaml -> common (not beside sub/: in the DAGs directory)
    #   user.yaml -> shared (only in lib/, given by --dags or DAGFAST_DAGS)
    write(tmp_path / "child.yaml", "steps:\n  - command: touch child-ran\n")
    write(tmp_path / "child", "not: a dag\n")  # a directory or a stray file: skipped
    (tmp_path / "child").unlink()
    (tmp_path / "child").mkdir()
    write(tmp_path / "other.yml", "steps:\n  - command: touch other-ran\n")
    write(tmp_path / "sub" / "inner.yaml", "steps:\n  - call: common\n")
    write(tmp_path / "common.yaml", "steps:\n  - command: touch common-ran\n")
    write(tmp_path / "lib" / "shared.yaml", "steps:\n  - command: touch shared-ran\n")
    main = write(tmp_path / "main.yaml", """\
        steps:
          - call: child
          - call: other
          - call: sub/inner.yaml
        """)
    res = run(main)
    assert res.code == 0, res
    for name in ("child", "other", "common"):
        assert (tmp_path / f"{name}-ran").exists(), name
    user = write(tmp_path / "user.yaml", "steps:\n  - call: shared\n")
    res = run(user)
    assert res.code == 2
    assert res.err == (
        f"{user}: the sub-DAG `shared` does not exist (looked for `shared`, `shared.yaml`, "
        f"`shared.yml` in `{tmp_path}`) - at `$.steps[0].call`\n"
    )
    assert run(user, "--dags", str(tmp_path / "lib")).code == 0
    assert (tmp_path / "shared-ran").exists()
    (tmp_path / "shared-ran").unlink()
    assert run(user, env={"DAGFAST_DAGS": str(tmp_path / "lib")}).code == 0
    assert (tmp_path / "shared-ran").exists()
    # An absolute path, with or without its extension.
    absolute = write(tmp_path / "abs.yaml", f"steps:\n  - call: {tmp_path / 'lib' / 'shared'}\n")
    assert run(absolute).code == 0


def test_a_name_that_matches_nothing_says_where_it_looked_and_the_nearest_name(tmp_path):
    write(tmp_path / "lib" / "transform.yaml", "steps: [echo]\n")
    write(tmp_path / "extract.yml", "steps: [echo]\n")
    dag = write(tmp_path / "etl.yaml", "steps:\n  - call: extrct\n  - call: transfrom\n")
    res = dagfast("validate", "--dags", str(tmp_path / "lib"), str(dag))
    assert res.code == 2
    where = f"in `{tmp_path}` and `{tmp_path / 'lib'}`"
    assert res.err.splitlines() == [
        f"{dag}: the sub-DAG `extrct` does not exist (looked for `extrct`, `extrct.yaml`, "
        f"`extrct.yml` {where}; did you mean `extract`?) - at `$.steps[0].call`",
        f"{dag}: the sub-DAG `transfrom` does not exist (looked for `transfrom`, "
        f"`transfrom.yaml`, `transfrom.yml` {where}; did you mean `transform`?)"
        " - at `$.steps[1].call`",
    ]
    res = dagfast("validate", "--dags", str(tmp_path / "nope"), str(dag))
    assert (res.code, res.err) == (2, f"dagfast: --dags {tmp_path / 'nope'}: no such directory\n")


def test_a_name_built_at_run_time_that_matches_nothing_fails_its_step(tmp_path):
    dag = write(tmp_path / "late.yaml", """\
        steps:
          - name: pick
            command: echo nowhere
            output: WHICH
          - name: go
            call: ${WHICH}
            depends: pick
        """)
    res = run(dag)
    assert res.code == 1
    assert (f"cannot load the sub-DAG `nowhere`: no such DAG (looked for `nowhere`, "
            f"`nowhere.yaml`, `nowhere.yml` in `{tmp_path}`)") in res.out


def test_local_sub_dags_are_the_documents_after_the_first(tmp_path):
    #   main -> extract (local) -> load (local, called by its sibling); fan-out over
    #   two items of the local `report`
    dag = write(tmp_path / "local.yaml", """\
        steps:
          - name: first
            call: extract
            params: "SRC=db"
          - name: fan
            call: report
            parallel: [x, y]
            depends: first
        ---
        name: extract
        params: "SRC=none"
        steps:
          - name: pull
            command: echo "extract $SRC" >> order.txt
          - call: load
            depends: pull
        ---
        name: load
        steps:
          - command: echo load >> order.txt
        ---
        # a comment before the document
        name: report
        steps:
          - command: touch "report-$ITEM"
        """)
    res = run(dag)
    assert res.code == 0, res
    assert (tmp_path / "order.txt").read_text() == "extract db\nload\n"
    assert (tmp_path / "report-x").exists() and (tmp_path / "report-y").exists()


def test_local_sub_dag_problems_are_located_in_the_file(tmp_path):
    dag = write(tmp_path / "bad.yaml", """\
        steps:
          - call: helper
        ---
        steps: [echo]
        ---
        name: helper
        steps:
          - name: h
            comand: echo
        """)
    res = dagfast("validate", str(dag))
    assert (res.code, res.err) == (
        2, f"{dag}:3:1: a local sub-DAG (a document after `---`) needs a `name:` - at `$`\n"
    )
    text = dag.read_text().replace("steps: [echo]", "name: other\nsteps: [echo]")
    dag.write_text(text)
    res = dagfast("validate", str(dag))
    assert res.code == 2
    assert res.err == (f"{dag}:10:5: unknown key `comand` (did you mean `command`?) (in the "
                       f"sub-DAG that {dag} calls at `$.steps[0].call`) - at `$.steps[0].comand`\n")
    # A local sub-DAG nobody calls is checked too (none of its backticks run).
    write(dag, "steps: [echo]\n---\nname: unused\nenv:\n  - X: \"`touch ran`\"\nsteps:\n"
               "  - comand: x\n")
    res = dagfast("validate", str(dag))
    assert (res.code, res.err) == (2, f"{dag}:7:5: unknown key `comand` (did you mean "
                                      "`command`?) (in the local sub-DAG `unused`) - at "
                                      "`$.steps[0].comand`\n")
    assert not (tmp_path / "ran").exists()
    loop = write(tmp_path / "loop.yaml", "steps:\n  - call: a\n---\nname: a\nsteps:\n"
                                         "  - call: b\n---\nname: b\nsteps:\n  - call: a\n")
    res = dagfast("validate", str(loop))
    assert res.code == 2
    assert ("the sub-DAGs call each other in a loop: loop.yaml -> loop.yaml#a -> loop.yaml#b -> loop.yaml#a"
            in res.err)


def test_a_file_and_its_local_sub_dags_are_read_in_one_dialect(tmp_path):
    # `run: mark` alone would call the sub-DAG `mark` in a 1.x file; the local sub-DAG
    # `tool` writes 2.x outputs, so the whole file is 2.x and `run: mark` is a command.
    (tmp_path / "bin").mkdir()
    write(tmp_path / "bin" / "mark", "#!/bin/sh\ntouch marked\n").chmod(0o755)
    dag = write(tmp_path / "one.yaml", """\
        steps:
          - run: mark
          - call: tool
        ---
        name: tool
        steps:
          - run: mark
          - id: x
            run: echo "a=1" >> "$DAGU_OUTPUT_FILE"
            outputs: [{name: a}]
        """)
    res = dagfast("validate", "-v", str(dag))
    assert res.out.splitlines()[1] == (
        f"{dag}: read as Dagu 2.x: the file's local sub-DAG `tool` is Dagu 2.x (`outputs:` "
        "at `$.steps[1].outputs`); there `run:` is a command")
    res = run(dag, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
    assert res.code == 0, res
    assert (tmp_path / "marked").exists()
