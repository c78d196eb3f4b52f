"""Plain commands without the shell (exec/direct.py): which commands skip it, what their
processes see (the same as under the shell: twin runs through the CLI), and that the
process manager hands the spawn pool the program itself."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest
from spectools import dagfast

from dagfast.errors import SpawnError
from dagfast.exec import direct
from dagfast.exec.local import ProcessManager

BASH = shutil.which("bash")
DASH = shutil.which("dash")
SHELLS = [s for s in (DASH, BASH) if s]


def which(name: str, env: dict) -> str:
    found = shutil.which(name, path=os.fsdecode(env[b"PATH"]))
    if found is None:
        raise SpawnError(f"cannot start `{name}`: command not found in PATH")
    return found


def env_of(**extra: str) -> dict:
    env = {b"PATH": os.fsencode(os.defpath + ":/usr/local/bin"), b"HOME": b"/"}
    env.update({k.encode(): v.encode() for k, v in extra.items()})
    return env


def start(text: str, shell: str | None = None, env: dict | None = None, cwd: str = "/",
          flags: tuple = ("-e",)):
    shell = shell or SHELLS[0]
    return direct.plain_start((shell, *flags, "-c", text), env or env_of(), cwd, which)


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: Path(s).name)
@pytest.mark.parametrize("text, words", [
    ("  sleep 0.01\t", ["sleep", "0.01"]),
    ("dd if=/dev/null of=/dev/null status=none", ["dd", "if=/dev/null", "of=/dev/null",
                                                    "status=none"]),
    ("/bin/ls -l --color=never /", ["/bin/ls", "-l", "--color=never", "/"]),
])
def test_plain_words_run_without_the_shell(text, words, shell):
    got = start(text, shell)
    assert got is not None and got[1] == words
    assert os.path.isabs(got[0])


@pytest.mark.parametrize("text", ["true", "false", "echo a b"])
def test_builtins_that_match_their_programs_skip_bash_and_true_and_false_skip_dash(text):
    # As make starts them; dash's own `echo` costs less than /bin/echo's start.
    if BASH:
        assert start(text, BASH)[1] == text.split()
    if DASH:
        got = start(text, DASH)
        if text == "echo a b":
            assert got is None
        else:
            assert got is not None and got[1] == [text]
            assert os.path.basename(got[0]) == text


@pytest.mark.parametrize("text", [
    "true x",  # builtin `true` ignores what `/bin/true --help` answers
    "echo -n a", "echo --help",  # echo's options differ between shell and program
    "cd /", "exec true", "kill 0", "pwd", "test -e /", "[ -e / ]", "printf x", "type ls",
    ". ./x", "source x", "wait", "read x", "exit 3", "set -x", "if", "time sleep 0",
    "FOO=1 env", "ls | wc", "ls; ls", "ls && ls", "ls > f", "ls < f", "ls &", "sleep 1&",
    "echo $HOME", "echo ${A}", "echo `id`", "echo $(id)", "echo 'a'", 'echo "a"',
    "echo a\\ b", "ls *", "ls ?", "ls [ab]", "ls ~", "ls a#b", "ls {a,b}", "! true",
    "ls (x)", "echo é", "ls\nls", "ls\rx", "",
    "no-such-program-here",  # the shell says `not found` in its own words
])
def test_anything_the_shell_would_read_keeps_the_shell(text):
    assert start(text) is None


def test_only_dash_and_bash_in_their_c_form_are_skipped(tmp_path):
    assert start("sleep 0", flags=()) is not None
    assert start("sleep 0", flags=("-o", "pipefail", "-e")) is None
    assert start("sleep 0", flags=("-x",)) is None
    assert start("sleep 0", shell=shutil.which("python3") or "/usr/bin/env") is None
    link = tmp_path / "sh"
    link.symlink_to(SHELLS[0])
    assert start("sleep 0", shell=str(link)) is not None  # a `sh` that is dash or bash


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_keeps_its_shell_when_the_environment_could_change_what_it_runs():
    assert start("sleep 0", BASH, env_of(BASH_ENV="/etc/x")) is None
    assert start("ls", BASH, env_of(**{"BASH_FUNC_ls%%": "() { :; }"})) is None
    for odd in ("abc", "-3", "999", "1000", "05", ""):
        assert start("sleep 0", BASH, env_of(SHLVL=odd)) is None, odd
    env = env_of()
    assert start("env", BASH, env) is not None
    assert env[b"SHLVL"] == b"0" and env[b"_"] == os.fsencode(which("env", env))


def test_programs_exec_would_not_run_as_the_shell_does_keep_the_shell(tmp_path):
    script = tmp_path / "noshebang"
    script.write_text("echo from sh\n")
    script.chmod(0o755)
    assert start("./noshebang", cwd=str(tmp_path)) is None  # sh runs it as a script
    script.write_text("#!/bin/sh\necho from sh\n")
    assert start("./noshebang", cwd=str(tmp_path)) == ("./noshebang", ["./noshebang"])
    script.chmod(0o644)
    assert start("./noshebang", cwd=str(tmp_path)) is None  # not executable
    assert start("./", cwd=str(tmp_path)) is None  # a directory
    assert start("sleep 0", env=env_of(PATH="bin:/usr/bin:/bin")) is None  # relative entry
    assert start("sleep 0", env=env_of(PATH="/bin%func:/usr/bin")) is None  # dash's %func
    no_path = env_of()
    del no_path[b"PATH"]
    assert start("/bin/sleep 0", env=no_path) is not None
    assert start("sleep 0", env=no_path) is None  # each shell has its own default PATH


def test_pwd_is_what_the_shell_would_export(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    env = env_of(PWD="/")
    assert start("sleep 0", env=env, cwd=str(link)) is not None
    assert env[b"PWD"] == os.fsencode(real)  # stale: the physical path
    env = env_of(PWD=f"{link}/")
    assert start("sleep 0", env=env, cwd=str(link)) is not None
    assert env[b"PWD"] == os.fsencode(f"{link}/")  # names the directory: kept as is


def test_direct_exec_can_be_ruled_out(monkeypatch):
    assert direct.enabled()
    monkeypatch.setenv("DAGFAST_DIRECT_EXEC", "0")
    assert not direct.enabled()


class _Recorder:
    """The spawn pool's submit, recorded."""

    def __init__(self):
        self.calls = []

    def submit(self, token, path, argv, env, cwd, inline):
        self.calls.append((path, list(argv)))


def test_the_process_manager_hands_the_pool_the_program_or_the_shell(monkeypatch):
    async def starts():
        pm = ProcessManager(asyncio.get_running_loop(), 4, lambda ends: None)
        real, pm._pool = pm._pool, _Recorder()
        try:
            env = {b"PATH": os.fsencode(os.defpath)}
            pm.start(1, (SHELLS[0], "-e", "-c", "sleep 0"), dict(env), "/")
            pm.start(2, (SHELLS[0], "-e", "-c", "sleep 0 | cat"), dict(env), "/")
            return pm._pool.calls
        finally:
            pm._pool = real
            pm.close()

    calls = asyncio.run(starts())
    assert calls[0] == (which("sleep", {b"PATH": os.fsencode(os.defpath)}), ["sleep", "0"])
    assert calls[1] == (SHELLS[0], [SHELLS[0], "-e", "-c", "sleep 0 | cat"])


# Twins: the same DAG with and without the shell gives the same outputs and statuses.

_STEPS = """\
    env:
      - FROM_DAG: "1"
    steps:
      - name: env
        command: env
      - name: linked
        dir: {link}
        env:
          - PWD: {link}
        command: env
      - name: stale
        dir: {link}
        command: printenv PWD
      - name: noshebang
        dir: {here}
        command: ./noshebang a
      - name: missing
        command: no-such-program-here x
        continueOn:
          failure: true
      - name: fails
        command: false
        continueOn:
          failure: true
      - name: words
        command: echo a  b=c
      - name: args
        command: {here}/args one two
"""


def _outcome(tmp_path: Path, shell: str, direct_exec: str) -> dict:
    """Each step's (status, exit code, output lines sorted: stdout and stderr as `-v`
    prints them) in a run with or without direct exec."""
    home = tmp_path / f"home-{Path(shell).name}-{direct_exec}"
    res = dagfast("run", "-v", str(tmp_path / "twin.yaml"), home=home,
                  env={"DAGFAST_DIRECT_EXEC": direct_exec, "SHELL": shell, "SHLVL": "2"})
    assert res.code == 0, res.err
    steps = json.loads(dagfast("status", "twin", "--json", home=home).out)["steps"]
    got = {s["name"]: (s["status"], s.get("exit_code"), []) for s in steps}
    for line in res.out.splitlines():
        name, bar, text = line.partition(" | ")
        if bar and name in got and not text.startswith(("DAG_RUN", "DAGFAST_")):
            got[name][2].append(text)
    return {name: (st, code, sorted(lines)) for name, (st, code, lines) in got.items()}


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: Path(s).name)
def test_a_step_sees_the_same_with_or_without_the_shell(tmp_path, shell):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    script = tmp_path / "noshebang"
    script.write_text('echo "sh ran me with $1 in $PWD"\n')
    script.chmod(0o755)
    args = tmp_path / "args"
    args.write_text('#!/bin/sh\necho "$0" "$@"\n')
    args.chmod(0o755)
    (tmp_path / "twin.yaml").write_text(textwrap.dedent(_STEPS).format(link=link, here=tmp_path))
    skipped, kept = _outcome(tmp_path, shell, "1"), _outcome(tmp_path, shell, "0")
    assert skipped == kept
    assert skipped["missing"][:2] == ("failed", 127)
    assert any("not found" in line for line in skipped["missing"][2])
    assert skipped["noshebang"][2] == [f"sh ran me with a in {tmp_path}"]
    assert skipped["stale"][2] == [str(real)]
    assert f"PWD={link}" in skipped["linked"][2]
    assert skipped["args"][2] == [f"{tmp_path}/args one two"]
