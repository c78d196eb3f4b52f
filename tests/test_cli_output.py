"""What `dagfast run` prints: the live view in a pseudo-terminal, plain lines through pipes,
the ending, `--verbose`, `--json`, `--junit`, GitHub annotations, `-p`, and --help."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest

from spectools import dagfast

ESC = "\x1b"
CURSOR_UP = "\x1b[1A"
COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-9]m")
SGR = re.compile(r"\x1b\[[0-9;]*m")  # colours and bold: stripped to read the text


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def plain_env(**extra: str) -> dict[str, str]:
    """The caller's environment less what changes the output (CI, NO_COLOR, ...) and
    where runs are recorded (each test passes its own home)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "NO_COLOR", "GITHUB_ACTIONS", "TERM", "DAGFAST_HOME")}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def in_pty(*args: str, env: dict[str, str], cols: int = 100) -> tuple[int, str]:
    """Run `python -m dagfast ARGS` with a pseudo-terminal as stdin, stdout and stderr;
    return its exit status and everything it wrote to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", *args], env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every holder of the terminal has closed it
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def failing(tmp_path) -> Path:
    #   slow -> fails -> never
    #   other
    return write(tmp_path / "failing.yaml", """\
        steps:
          - name: slow
            command: sleep 0.6
          - name: fails
            command: for i in $(seq 1 15); do echo "problem $i" >&2; done; exit 3
            depends: slow
          - name: never
            command: 'true'
            depends: fails
          - name: other
            command: echo from other
        """)


def test_terminal_redraws_the_progress_in_place(tmp_path, failing):
    code, screen = in_pty("run", str(failing), env=plain_env(DAGFAST_HOME=str(tmp_path / "h")))
    assert code == 1, screen
    assert CURSOR_UP in screen  # a frame is rewritten, not appended
    assert COLOUR.search(screen)
    text = SGR.sub("", screen)
    assert "running: slow" in text
    assert re.search(r"done 1  running 1  failed 0  pending 2", text)
    assert re.search(r"\d+(\.\d+)? steps/s", text)  # the rate,
    assert re.search(r"\d+(\.\d+)?s elapsed", text)  # the time so far,
    assert re.search(r"ETA \d", text)  # and the time left
    assert "✗ failed fails (exit status 3)" in text
    ending = text[text.index("failed: failing"):]
    assert "problem 15" in ending and "problem 5" not in ending.replace("problem 15", "")


def test_no_color_keeps_the_redraws_without_colour(tmp_path, failing):
    code, screen = in_pty("run", str(failing),
                          env=plain_env(NO_COLOR="1", DAGFAST_HOME=str(tmp_path / "h")))
    assert code == 1
    assert CURSOR_UP in screen
    assert not COLOUR.search(screen)


def test_ci_on_a_terminal_prints_plain_lines(tmp_path, failing):
    code, screen = in_pty("run", str(failing),
                          env=plain_env(CI="true", DAGFAST_HOME=str(tmp_path / "h")))
    assert code == 1
    assert ESC not in screen
    assert "  started    slow" in screen


def test_quiet_on_a_terminal_prints_only_the_ending(tmp_path, failing):
    code, screen = in_pty("run", "-q", str(failing), env=plain_env(DAGFAST_HOME=str(tmp_path / "h")))
    assert code == 1
    assert CURSOR_UP not in screen and "started" not in screen
    assert "failed: fails (exit status 3)" in SGR.sub("", screen)


def test_pipe_ending_names_failures_with_stderr_tail_and_log_command(tmp_path, failing):
    home = tmp_path / "h"
    res = dagfast("run", str(failing), home=home, env=plain_env())
    assert res.code == 1
    assert ESC not in res.out
    lines = res.out.splitlines()
    at = lines.index("  failed: fails (exit status 3)")
    assert lines[at + 1:at + 11] == [f"    | problem {i}" for i in range(6, 16)]
    command = lines[at + 11].strip()
    assert re.fullmatch(r"whole log: dagfast logs \S+ fails --stderr", command)
    logs = dagfast(*command.split()[3:], home=home)
    assert logs.out.splitlines()[0] == "problem 1"


def test_verbose_streams_output_prefixed_with_the_step_name(tmp_path):
    dag = write(tmp_path / "v.yaml", """\
        steps:
          - name: talk
            command: echo one; echo two >&2; sleep 0.3; printf 'no newline'
          - name: quiet
            command: 'true'
        """)
    res = dagfast("run", "--verbose", str(dag), home=tmp_path / "h", env=plain_env())
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert {"talk | one", "talk | two", "talk | no newline"} <= set(lines)
    done = next(i for i, line in enumerate(lines) if line.startswith("  succeeded  talk"))
    assert lines.index("talk | no newline") < done


def test_json_prints_one_event_a_line(tmp_path, failing):
    res = dagfast("run", "--json", str(failing), home=tmp_path / "h", env=plain_env())
    assert res.code == 1
    events = [json.loads(line) for line in res.out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("step_started") == 3 and kinds.count("step_finished") == 4
    finished = {e["step"]: e for e in events if e["event"] == "step_finished"}
    assert finished["fails"]["status"] == "failed" and finished["fails"]["exit_code"] == 3
    assert finished["slow"]["duration"] >= 0.6
    assert finished["never"] == {**finished["never"], "status": "aborted", "exit_code": None,
                                 "error": "upstream failed"}
    assert events[-1]["status"] == "failed"
    assert events[-1]["counts"] == {"succeeded": 2, "failed": 1, "aborted": 1}


def test_junit_report_is_valid_and_names_failures(tmp_path, failing):
    import xmlschema

    report = tmp_path / "junit.xml"
    failing.write_text(failing.read_text() + "  - name: odd\n    command: printf 'a\\001b' >&2\n")
    res = dagfast("run", "--junit", str(report), str(failing), home=tmp_path / "h",
                  env=plain_env())
    assert res.code == 1
    xmlschema.XMLSchema(str(Path(__file__).parent / "junit.xsd")).validate(str(report))
    import xml.etree.ElementTree as ET

    suite = ET.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["fails"].find("failure")
    assert failure.get("message") == "exit status 3"
    assert failure.text.splitlines() == [f"problem {i}" for i in range(6, 16)]
    assert cases["never"].find("skipped").get("message") == "upstream failed"
    assert cases["other"].find("system-out").text == "from other"
    assert cases["odd"].find("system-err").text == "a\ufffdb"


@pytest.mark.parametrize("where, says", [
    ("missing/report.xml", "no directory"),
    (".", "is a directory"),
])
def test_a_junit_file_that_cannot_be_written_is_a_usage_error_before_the_run(
    tmp_path, failing, where, says
):
    home = tmp_path / "h"
    res = dagfast("run", "--junit", str(tmp_path / where), str(failing), home=home,
                  env=plain_env())
    assert res.code == 2, res.out + res.err
    assert res.err.count("\n") == 1 and says in res.err and "--junit" in res.err, res.err
    assert not home.exists()  # nothing ran, nothing was recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failing.yaml"]


def test_a_junit_report_that_fails_at_the_end_is_said_and_leaves_no_temporary_file(tmp_path):
    # Checked before the run, the report can still fail when written (a full disk, or
    # here a directory put where the file goes): one line, no `.tmp` left behind.
    import pickle

    import dagfast as api

    dag_file = write(tmp_path / "one.yaml", "steps:\n  - command: 'true'\n")
    result = api.run(dag_file, home_dir=str(tmp_path / "h"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.xml").mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, pickle; from dagfast.report.junit import JUnitReporter; "
         "JUnitReporter(sys.argv[1]).run_finished(pickle.load(sys.stdin.buffer))",
         str(out / "report.xml")],
        input=pickle.dumps(result), capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert err.startswith(f"dagfast: cannot write the JUnit report {out / 'report.xml'}: "), err
    assert err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["report.xml"]  # no report.xml.tmp


def test_quiet_and_verbose_together_and_a_negative_history_limit_are_usage_errors(tmp_path, failing):
    home = tmp_path / "h"
    res = dagfast("run", "-q", "-v", str(failing), home=home, env=plain_env())
    assert res.code == 2 and "--quiet and --verbose" in res.err, res.err
    assert not home.exists()
    res = dagfast("history", "-n", "-3", str(failing), home=home, env=plain_env())
    assert res.code == 2 and "must be 0 or more" in res.err, res.err


def test_github_actions_failures_become_error_annotations(tmp_path, failing):
    res = dagfast("run", str(failing), home=tmp_path / "h",
                  env=plain_env(CI="true", GITHUB_ACTIONS="true"))
    (line,) = [x for x in res.out.splitlines() if x.startswith("::error")]
    assert line.startswith("::error title=dagfast%3A failing%3A fails failed::"
                           "step fails failed (exit status 3)%0Aproblem 6%0A")
    res = dagfast("run", "--json", str(failing), home=tmp_path / "h",
                  env=plain_env(GITHUB_ACTIONS="true"))
    assert "::error" in res.err and all(json.loads(x) for x in res.out.splitlines())


def test_p_overrides_params_as_double_dash_does(tmp_path):
    dag = write(tmp_path / "p.yaml", """\
        params: A=1 B=2 C=3
        steps:
          - command: echo "$A $B $C" > out.txt
        """)
    res = dagfast("run", "-q", "-p", "A=x", "--param", "B=y z", str(dag), "--", "C=w",
                  home=tmp_path / "h")
    assert res.code == 0, res.err
    assert (tmp_path / "out.txt").read_text() == "x y z w\n"
    bad = dagfast("run", "-p", "A", str(dag), home=tmp_path / "h")
    assert bad.code == 2 and "-p takes KEY=VALUE, not `A`" in bad.err


COMMANDS = ["run", "dry", "validate", "graph", "status", "history", "logs", "retry", "stop",
            "scheduler", "version", "completion"]


def test_every_command_has_help_with_examples_and_exit_statuses():
    from dagfast.cli.app import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)
    for name in COMMANDS:
        text = sub.choices[name].format_help()
        assert "exit statuses: 0 succeeded" in text, name
        examples = text.partition("\nexamples:\n")[2]
        assert examples.startswith(f"  dagfast {name}"), (name, text)


def test_completion_script_knows_the_commands():
    res = dagfast("completion", "bash")
    assert res.code == 0
    for name in ("run", "graph", "status", "--max-active-steps", "--junit"):
        assert name in res.out
    assert subprocess.run(["bash", "-n"], input=res.out, text=True).returncode == 0


def test_a_run_through_a_pipe_does_not_import_rich(tmp_path):
    dag = write(tmp_path / "one.yaml", "steps:\n  - command: 'true'\n")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dagfast", "run", str(dag)],
                          env=plain_env(DAGFAST_HOME=str(tmp_path / "h")),
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "dagfast.report" in proc.stderr and " rich" not in proc.stderr


def _closed_after_first_line(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run dagfast with a reader that takes one line of its stdout, then goes away."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagfast", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = proc.wait(timeout=120)
    return subprocess.CompletedProcess(args, code, first.decode(), err)


def test_a_reader_that_goes_away_quiets_run_but_never_ends_it(tmp_path):
    dag = tmp_path / "many.yaml"
    dag.write_text("steps:\n" + "".join(
        f"  - name: s{i}\n    command: echo {i} >> {tmp_path}/done.txt\n" for i in range(1500)
    ))  # `status` prints more than a pipe holds
    env = dict(os.environ, DAGFAST_HOME=str(tmp_path / "home"), NO_COLOR="1")
    res = _closed_after_first_line(["run", str(dag)], env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("dagfast: run ")
    assert "internal error" not in res.stderr
    assert len((tmp_path / "done.txt").read_text().split()) == 1500
    status = json.loads(dagfast("status", "many", "--json", home=tmp_path / "home").out)
    assert status["status"] == "succeeded"

    # A command whose output is the product stops quietly, as if killed by SIGPIPE.
    res = _closed_after_first_line(["status", "many"], env)
    assert res.returncode == 141, res.stderr
    assert res.stderr == ""
