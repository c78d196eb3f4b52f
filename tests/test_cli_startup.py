"""The command line's start-up shortcuts change nothing it does: the parser made for one
command reads and helps as the whole one, and a command ended by `_exit` (no interpreter
teardown) has printed all it had to."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dagfast.cli import app


def subparsers(parser):
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


def test_the_command_list_is_every_command():
    assert set(subparsers(app._parser())) == app._COMMANDS


@pytest.mark.parametrize("command", sorted(app._COMMANDS))
def test_the_parser_of_one_command_helps_as_the_whole_one(command):
    whole = subparsers(app._parser())[command]
    (only,) = subparsers(app._parser(command)).values()
    assert only.format_help() == whole.format_help()
    assert app._parser(command).format_usage() == app._parser().format_usage()


@pytest.mark.parametrize("argv", [
    ["run", "-q", "d.yaml", "--", "A=1", "b"],
    ["run", "d.yaml", "-q", "A=8"],
    ["run", "--max-active-steps", "3", "-p", "X=1", "--json", "d.yaml"],
    ["logs", "r", "s", "--stderr", "--attempt", "2"],
    ["history", "d", "-n", "5"],
    ["status"],
    ["validate", "--dialect", "2", "--dags", "x", "d.yaml"],
    ["version"],
])  # fmt: skip
def test_the_parser_of_one_command_reads_as_the_whole_one(argv, monkeypatch):
    monkeypatch.setattr(app, "_COMMANDS", frozenset())  # `_parse` makes the whole parser
    whole = app._parse(argv)
    monkeypatch.undo()
    assert vars(app._parse(argv)) == vars(whole)


def dagfast(*args, home, cwd):
    return subprocess.run([sys.executable, "-m", "dagfast", *args], cwd=cwd,
                          env=dict(os.environ, DAGFAST_HOME=str(home)),
                          capture_output=True, text=True, timeout=120)


def test_a_command_ended_without_teardown_printed_everything(tmp_path):
    """`run -v` prints through buffered streams, `--junit` writes a file, `status
    --json` prints one document: all of it is there when the process is gone."""
    (tmp_path / "d.yaml").write_text(
        "steps:\n" + "".join(f"  - name: s{i}\n    command: seq {i * 500}\n" for i in range(4))
    )
    home = tmp_path / "home"
    run = dagfast("run", "-v", "--junit", "j.xml", "d.yaml", home=home, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("s3 | ") == 1500
    assert (tmp_path / "j.xml").read_text().rstrip().endswith("</testsuites>")
    status = dagfast("status", "d", "--json", home=home, cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.rstrip().endswith("}")
    bad = dagfast("run", "nowhere.yaml", home=home, cwd=tmp_path)
    assert bad.returncode == 2 and "nowhere.yaml" in bad.stderr
