"""`secrets:` (Dagu's env and file providers): read when the run starts, never while
loading, and masked (`*******`) in everything dagfast writes or shows. Real runs; every
file under the home is searched for the values, and so is what the commands print."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dagfast.runtime.secrets import MASK, Masker
from spectools import dagfast, run_under_ulimit_n
from outputs import printed

from dagfast.records.outstore import Output

PASSWORD = "pw-7Hq2-zz"  # from the environment (provider: env)
TOKEN = "tok-Rk81-yy"  # from a file, which ends with a newline (provider: file)
VALUES = (PASSWORD.encode(), TOKEN.encode())

SECRETS = """\
secrets:
  - name: DB_PASSWORD
    provider: env
    key: DAGFAST_TEST_PASSWORD
  - name: API_TOKEN
    provider: file
    key: token.txt
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def project(tmp_path: Path, dag: str) -> Path:
    """A DAG file (secrets first) next to the token file it reads."""
    (tmp_path / "token.txt").write_text(TOKEN + "\n")
    return write(tmp_path / "dag.yaml", SECRETS + textwrap.dedent(dag))


def leaks(home: Path, *texts: str) -> list[str]:
    """Every file under `home`, and every text, that holds a secret value."""
    found = []
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [str(path) for v in VALUES if v in data]
    return found + [t for t in texts if PASSWORD in t or TOKEN in t]


def the_run(home: Path) -> str:
    (run,) = [p.name for p in (home / "runs").glob("*/*") if p.is_dir()]
    return run


def status(home: Path, run: str) -> tuple[dict, str]:
    shown = dagfast("status", run, "--json", home=home)
    assert shown.code == 0, shown.err
    return json.loads(shown.out), shown.out


# A variable no environment has: the tests that leave it out see it unset.
ENV = {"DAGFAST_TEST_PASSWORD": PASSWORD}


def test_steps_get_the_secrets_and_no_file_output_or_console_shows_them(tmp_path):
    r"""
        show   (stdout and stderr)      captured (output: CAPTURED) --> reader
        split  (the value in two writes, 0.3 s apart, on stdout and stderr)
        failing (prints it on stderr, exits 3)
        called (call: ${DB_PASSWORD}.yaml: its error quotes the value)
        handlerOn.exit
    """
    dag = project(tmp_path, """\
        handlerOn:
          exit:
            command: echo "exit handler saw $DB_PASSWORD"
        steps:
          - name: show
            env:
              - URL: postgres://app:${DB_PASSWORD}@db/prod
            command: |
              printf '%s' "$DB_PASSWORD" > received-password
              printf '%s' "$API_TOKEN" > received-token
              printf '%s' "$URL" > received-url
              echo "password=$DB_PASSWORD token=$API_TOKEN url=$URL"
              echo "on stderr: $DB_PASSWORD $(cat token.txt)" >&2
          - name: split
            command: |
              a=${DB_PASSWORD%???}; b=${DB_PASSWORD#"$a"}
              printf 'half: %s' "$a"; printf '%s' "$a" >&2; sleep 0.3
              printf '%s and more\\n' "$b"; printf '%s\\n' "$b" >&2
          - name: captured
            command: echo "$DB_PASSWORD"
            output: CAPTURED
          - name: reader
            command: echo "the reader got $CAPTURED"
            depends: captured
          - name: failing
            command: echo "failing with $DB_PASSWORD" >&2; exit 3
          - name: called
            call: ${DB_PASSWORD}.yaml
    """)
    home = tmp_path / "home"
    junit = tmp_path / "junit.xml"
    run = dagfast("run", "--verbose", "--junit", str(junit), str(dag), env=ENV, home=home,
                  cwd=tmp_path)
    assert run.code == 1, run.err
    # The steps got the values: the password, the file's whole content, a step env.
    assert (tmp_path / "received-password").read_text() == PASSWORD
    assert (tmp_path / "received-token").read_text() == TOKEN + "\n"
    assert (tmp_path / "received-url").read_text() == f"postgres://app:{PASSWORD}@db/prod"

    run_id = the_run(home)
    doc, shown = status(home, run_id)
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["captured"]["output"] == MASK
    assert steps["failing"]["error"] == "exit status 3"
    assert steps["called"]["status"] == "failed"
    assert f"/{MASK}.yaml" in steps["called"]["error"]
    logs = dagfast("logs", run_id, home=home)
    errs = dagfast("logs", run_id, "--stderr", home=home)
    steps_dir = next((home / "runs").glob("*/*/output")).parent
    assert printed(steps_dir, 0) == (
        f"password={MASK} token={MASK} url=postgres://app:{MASK}@db/prod\n"
    )
    # The file's value ends with its newline: echo's newline after it is part of it.
    assert printed(steps_dir, 0, "err") == f"on stderr: {MASK} {MASK}"
    assert printed(steps_dir, 1) == f"half: {MASK} and more\n"
    assert printed(steps_dir, 1, "err") == f"{MASK}\n"
    assert printed(steps_dir, 3) == f"the reader got {MASK}\n"
    assert printed(steps_dir, 4, "err") == f"failing with {MASK}\n"
    assert printed(steps_dir, 6) == f"exit handler saw {MASK}\n"
    assert f"| failing with {MASK}" in run.out  # the ending's tail of the failed step
    assert f"show | password={MASK}" in run.out  # --verbose
    texts = (run.out, run.err, shown, logs.out, errs.out, junit.read_text())
    assert leaks(home, *texts) == []

    again = dagfast("run", "--json", str(dag), env=ENV, home=tmp_path / "home2", cwd=tmp_path)
    assert again.code == 1
    finished = json.loads(again.out.splitlines()[-1])
    assert finished["outputs"] == {"CAPTURED": MASK}
    assert leaks(tmp_path / "home2", again.out, again.err) == []


def test_a_missing_environment_variable_fails_the_run_before_any_step(tmp_path):
    project(tmp_path, """\
        steps:
          - name: never
            command: touch ran
    """)
    assert "DAGFAST_TEST_PASSWORD" not in os.environ
    run = dagfast("run", "dag.yaml", home=tmp_path / "home", cwd=tmp_path,
                  env={"DAGFAST_TEST_PASSWORD": ""})
    assert run.code == 0  # an empty value is a value (and is not masked, as in Dagu)
    (tmp_path / "ran").unlink()
    home = tmp_path / "home2"
    run = dagfast("run", "dag.yaml", home=home, cwd=tmp_path)
    line = ("dag.yaml:4:10: the secret `DB_PASSWORD` comes from the environment variable "
            "`DAGFAST_TEST_PASSWORD`, which is not set - at `$.secrets[0].key`")
    assert run.code == 1
    assert run.err == line + "\n"
    assert not (tmp_path / "ran").exists()
    doc, _ = status(home, the_run(home))
    assert doc["status"] == "failed" and doc["error"] == line
    assert [s["status"] for s in doc["steps"]] == ["not_started"]


def test_an_unreadable_secret_file_fails_the_run_with_one_located_line(tmp_path):
    write(tmp_path / "dag.yaml", """\
        name: files
        secrets:
          - name: API_TOKEN
            provider: file
            key: missing.txt
          - name: DIR_TOKEN
            provider: file
            key: /
        steps:
          - name: never
            command: touch ran
    """)
    home = tmp_path / "home"
    run = dagfast("run", "dag.yaml", home=home, cwd=tmp_path)
    line = ("dag.yaml:5:10: cannot read the secret `API_TOKEN` from `missing.txt`: "
            "No such file or directory - at `$.secrets[0].key`")
    assert (run.code, run.err) == (1, line + "\n")
    assert not (tmp_path / "ran").exists()
    assert status(home, the_run(home))[0]["error"] == line

    (tmp_path / "missing.txt").write_text("found")
    run = dagfast("run", "dag.yaml", home=tmp_path / "home2", cwd=tmp_path)
    assert (run.code, run.err) == (1, "dag.yaml:8:10: the secret `DIR_TOKEN`: `/` is not a "
                                      "regular file - at `$.secrets[1].key`\n")


def test_a_relative_secret_file_is_looked_for_in_the_working_dir_then_the_dag_dir(tmp_path):
    (tmp_path / "wd").mkdir()
    (tmp_path / "wd" / "first.txt").write_text("from-working-dir")
    (tmp_path / "first.txt").write_text("from-dag-dir")
    (tmp_path / "second.txt").write_text("only-in-dag-dir")
    write(tmp_path / "dag.yaml", """\
        workingDir: wd
        secrets:
          - name: FIRST
            provider: file
            key: first.txt
          - name: SECOND
            provider: file
            key: second.txt
        steps:
          - printf '%s %s' "$FIRST" "$SECOND" > got.txt
    """)
    run = dagfast("run", "dag.yaml", home=tmp_path / "home", cwd=tmp_path)
    assert run.code == 0, run.err
    assert (tmp_path / "wd" / "got.txt").read_text() == "from-working-dir only-in-dag-dir"

    (tmp_path / "second.txt").unlink()
    run = dagfast("run", "dag.yaml", home=tmp_path / "home", cwd=tmp_path)
    assert run.err == (
        f"dag.yaml:8:10: cannot read the secret `SECOND` from `second.txt`: No such file or "
        f"directory (looked for `{tmp_path}/wd/second.txt`, `{tmp_path}/second.txt`) - at "
        "`$.secrets[1].key`\n"
    )


def test_validate_dry_and_graph_never_read_a_secret(tmp_path):
    write(tmp_path / "dag.yaml", """\
        secrets:
          - name: API_TOKEN
            provider: file
            key: /nonexistent/api-token
          - name: DB_PASSWORD
            provider: env
            key: DAGFAST_TEST_UNSET_VARIABLE
        steps:
          - echo "$API_TOKEN"
    """)
    for args in (("validate",), ("dry",), ("graph",)):
        done = dagfast(*args, "dag.yaml", home=tmp_path / "home", cwd=tmp_path)
        assert done.code == 0, (args, done.err)
    assert not (tmp_path / "home").exists()


def test_bad_secrets_entries_are_all_reported_with_their_places(tmp_path):
    write(tmp_path / "dag.yaml", """\
        secrets:
          - name: 1bad
            provider: vault
            key: ""
          - name: A
            provider: env
          - name: B
            provider: env
            key: X
            bogus: 1
          - name: C
            provider: env
            key: Y
          - name: C
            provider: file
            key: Z
          - just a string
        steps:
          - echo hi
    """)
    done = dagfast("validate", "dag.yaml", cwd=tmp_path)
    assert done.code == 2
    assert done.err.splitlines() == [
        "dag.yaml:2:11: `1bad` is not a valid environment variable name - at `$.secrets[0].name`",
        "dag.yaml:3:15: secret provider `vault` is not supported yet (dagfast has `env` and "
        "`file`) - at `$.secrets[0].provider`",
        "dag.yaml:4:10: `key` is empty - at `$.secrets[0].key`",
        "dag.yaml:5:5: `key` is missing - at `$.secrets[1]`",
        "dag.yaml:10:5: unknown key `bogus` - at `$.secrets[2].bogus`",
        "dag.yaml:14:11: duplicate secret name `C` (first at `$.secrets[3]`) - at "
        "`$.secrets[4].name`",
        "dag.yaml:17:5: expected a mapping, got `just a string` - at `$.secrets[5]`",
    ]


def test_sub_dags_and_retries_get_the_secrets_masked_too(tmp_path):
    r"""
        sub (call: child.yaml, params P=${DB_PASSWORD})    gate (fails until `go` exists)
          child: its own secret read from the caller's DB_PASSWORD; a DAG env from it
    """
    write(tmp_path / "child.yaml", """\
        env:
          - FROM_CALLER: c:${DB_PASSWORD}
        params: P=none
        secrets:
          - name: CHILD_PW
            provider: env
            key: DB_PASSWORD
        steps:
          - name: c
            command: echo "[$DB_PASSWORD] [$FROM_CALLER] [$P] [$CHILD_PW]"
            output: COUT
    """)
    dag = project(tmp_path, """\
        steps:
          - name: sub
            call: child.yaml
            params: P=${DB_PASSWORD}
          - name: gate
            command: test -f go && echo "through with $API_TOKEN"
    """)
    home = tmp_path / "home"
    run = dagfast("run", str(dag), env=ENV, home=home, cwd=tmp_path)
    assert run.code == 1
    run_id = the_run(home)
    child = next((home / "runs").glob("*/*/children/runs/*/*/output")).parent
    assert printed(child, 0) == f"[{MASK}] [c:{MASK}] [{MASK}] [{MASK}]\n"
    doc, shown = status(home, run_id)
    assert doc["steps"][0]["status"] == "succeeded"
    (tmp_path / "go").touch()
    retried = dagfast("retry", run_id, env=ENV, home=home, cwd=tmp_path)
    assert retried.code == 0, retried.out + retried.err
    steps_dir = next((home / "runs").glob("*/*/output")).parent
    assert printed(steps_dir, 1) == f"through with {MASK}\n"
    assert leaks(home, run.out, run.err, retried.out, retried.err, shown) == []

    # A retry reads the secrets again: without them, it fails before any step.
    home2 = tmp_path / "home2"
    first = dagfast("run", str(dag), env=ENV, home=home2, cwd=tmp_path)
    assert first.code == 0
    again = dagfast("retry", the_run(home2), "--step", "gate", home=home2)
    assert again.code == 1
    assert again.err.endswith(
        "`DAGFAST_TEST_PASSWORD`, which is not set - at `$.secrets[0].key`\n"
    )


def test_a_background_child_holding_the_pipe_does_not_hold_the_step(tmp_path):
    """The step ends when its process exits; what a background child prints later is
    still read (and masked) while the run lasts."""
    dag = project(tmp_path, """\
        steps:
          - name: starter
            command: |
              sh -c 'sleep 0.2; echo "late $DB_PASSWORD"; exec sleep 60' &
              echo $! > bg.pid
              echo "started"
            output: STARTED
          - name: next
            command: sleep 1
            depends: starter
    """)
    home = tmp_path / "home"
    try:
        run = dagfast("run", str(dag), env=ENV, home=home, cwd=tmp_path, timeout=30)
        assert run.code == 0, run.out + run.err
        doc, _ = status(home, the_run(home))
        assert doc["steps"][0]["output"] == "started"
        steps_dir = next((home / "runs").glob("*/*/output")).parent
        assert printed(steps_dir, 0) == f"started\nlate {MASK}\n"
        assert leaks(home) == []
    finally:
        pid = int((tmp_path / "bg.pid").read_text())
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_hundreds_of_megabytes_through_the_masking_pipes_keep_the_engine_small(tmp_path):
    dag = project(tmp_path, """\
        steps:
          - name: both
            command: |
              (head -c 100M /dev/zero; echo "$DB_PASSWORD") >&2 &
              head -c 100M /dev/zero; echo "$DB_PASSWORD"; wait
          - name: captured
            output: OUT
            command: head -c 100M /dev/zero
    """)
    code = textwrap.dedent(f"""\
        import dagfast
        r = dagfast.run(dagfast.load({str(dag)!r}))
        print(r.step("both").status.label, r.step("captured").status.label)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                print(int(line.split()[1]) // 1024)
        """)  # VmHWM, as in test_hostile_steps.py
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"), **ENV)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    statuses, peak = done.stdout.splitlines()
    assert statuses == "succeeded failed"  # failed: past maxOutputSize
    assert int(peak) < 150  # MiB: streamed through, never held
    run_path = next((tmp_path / "home" / "runs").glob("*/*/output")).parent
    with Output(str(run_path)) as out:
        for stream in (0, 1):
            assert out.total(0, stream) == 100 * 1024 * 1024 + len(MASK) + 1
            assert out.tail(0, stream, 20).endswith(b"\0" + MASK.encode() + b"\n")
    assert leaks(tmp_path / "home") == []


def test_unlimited_steps_of_a_run_with_secrets_are_capped_to_fit_the_descriptors(tmp_path):
    # 300 steps at once under `ulimit -n 200`: each running step holds three of the
    # engine's descriptors (pidfd, two pipes), as any run's, secrets or not.
    dag = project(tmp_path, "maxActiveSteps: 0\nsteps:\n" + "".join(
        f"  - name: s{i}\n    command: sleep 0.05; echo $DB_PASSWORD\n" for i in range(300)))
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"), **ENV)
    done = run_under_ulimit_n(dag, 200, env)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "steps at once" in line]
    assert len(notes) == 1
    assert notes[0].startswith("dagfast: running at most ")
    assert notes[0].endswith("the open-file limit (ulimit -n) is 200, and a running step holds "
                             "3 descriptors (maxActiveSteps unlimited)")
    doc, _ = status(tmp_path / "home", the_run(tmp_path / "home"))
    assert {s["status"] for s in doc["steps"]} == {"succeeded"}
    assert leaks(tmp_path / "home") == []


# The stream masker alone: any cut of any text masks as the whole text does ---------------

_PIECES = st.sampled_from([
    b"pw-7Hq2-zz", b"pw-7", b"Hq2-zz", b"tok", b"tok-Rk81-yy\n", b"x", b"\n", b"abcdefgh",
    b"abc", b"abcde", b'q"uote', b"-",
])  # fmt: skip


@settings(max_examples=300, deadline=None, database=None)
@given(pieces=st.lists(_PIECES, max_size=20), cuts=st.lists(st.integers(1, 9), max_size=40))
def test_a_value_split_anywhere_is_masked_as_if_it_came_whole(pieces, cuts):
    masker = Masker([b"pw-7Hq2-zz", b"tok-Rk81-yy\n", b"abc", b"abcdefgh", b'q"uote', b""])
    data = b"".join(pieces)
    stream = masker.stream()
    out, pos = [], 0
    for n in cuts + [len(data)]:
        out.append(stream.feed(data[pos : pos + n]))
        pos += n
    out.append(stream.flush())
    assert b"".join(out) == masker.bytes(data)
    assert b"pw-7Hq2-zz" not in masker.bytes(data)
    assert b"tok-Rk81-yy" not in masker.bytes(data)  # the value without its newline too
