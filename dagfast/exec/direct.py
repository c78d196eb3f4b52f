"""Plain commands started without the shell, as make starts them.

A one-line `command:` runs as `<shell> -e -c "<text>"` (Dagu's rule). When the text is
plain words (letters, digits and `_ . / , : + @ % = -`, separated by spaces or tabs)
and its first word is neither a shell builtin nor a keyword, the shell would do nothing
but look the program up in PATH and exec it (dash and bash both exec the last command
of `-c` in place). So we exec it ourselves and spare every such step one exec of the
shell: `sleep 0` starts twice as fast (see docs/performance.md). `true` and `false`
alone are builtins that do just what the programs do, and are exec'd too, as make does
(and `echo` without options under bash; see _SHELL_WORDS).

What the program sees is what it would see under the shell, and `tests/test_direct.py`
holds the two equal (argv, environment, working directory, process group, exit
status, output):

- argv is the words, argv[0] as written;
- the environment is the step's, with what the shell adds: `PWD` (kept when it already
  names the working directory, else the physical path; dash and bash), and for bash
  `SHLVL` (`0` when unset) and `_` (the program's path as found, or as written);
- a program the shell would not exec as we would (not found, not executable, a file
  without `#!` that the shell runs as a script, a relative PATH entry) goes to the
  shell after all, which reports or runs it as before.

Only `dash` and `bash` are trusted to behave so (a `sh` that is either counts), and only
as `<shell> [-e] -c TEXT`: any other shell or flag keeps the shell. Nothing under the
shell is skipped that a user could have set: bash's BASH_ENV or exported functions
(`BASH_FUNC_*`) in the environment keep the shell, as does `DAGFAST_DIRECT_EXEC=0` in
the engine's own environment (to rule all of this out).
"""

from __future__ import annotations

import os
import re

from dagfast.errors import SpawnError

__all__ = ["enabled", "plain_start"]

# Words the shell does not exec as a program: builtins and keywords of bash and dash.
# `true` and `false` alone and `echo` with no option behave the same as the programs.
# `true` and `false` skip either shell, as make starts them (at 16 at once on 2 cores,
# dash's `true` costs 12 to 14% more a step than /bin/true: docs/performance.md);
# `echo` skips bash only (a start of bash costs about 0.6 ms more than one of /bin/true
# here, while dash's `echo` costs less than /bin/echo's start).
_SHELL_WORDS = frozenset(
    ". : [ alias bg bind break builtin caller cd chdir command compgen complete compopt "
    "continue declare dirs disown echo enable eval exec exit export false fc fg getopts "
    "hash help history jobs kill let local logout mapfile popd printf pushd pwd read "
    "readarray readonly return set shift shopt source suspend test times trap true type "
    "typeset ulimit umask unalias unset wait "
    "if then else elif fi case esac for select while until do done in function time "
    "coproc".split()
)
_AS_PROGRAM = frozenset(("true", "false"))
_MAY_SKIP = _AS_PROGRAM | {"echo"}  # the builtins that may skip a shell (_same_as_program)

_PLAIN = re.compile(r"[ \t]*[A-Za-z0-9_./,:+@%-]+(?:[ \t]+[A-Za-z0-9_./,:+@%=-]+)*[ \t]*")

_EXECUTABLE = (b"\x7fELF", b"#!")  # what exec runs; anything else the shell runs as sh

# The caches below hold a few entries in any real DAG (programs, shells, directories);
# one that grows past this (a fan-out of a million `dir:`s) starts again.
_CACHE_MAX = 4096


def enabled() -> bool:
    """Whether the engine may skip the shell (`DAGFAST_DIRECT_EXEC=0` says no)."""
    return os.environ.get("DAGFAST_DIRECT_EXEC", "1") != "0"


def plain_start(argv, env: dict, cwd: str, which):
    """(program path, argv) to exec instead of `argv` (a shell's `-c` form), with the
    shell's additions made to `env` (the step's own dict); None to keep the shell.
    `which(name, env)` resolves a name through the step's PATH (SpawnError when it
    cannot)."""
    n = len(argv)
    if n == 4:
        if argv[1] != "-e":
            return None
    elif n != 3:
        return None
    if argv[-2] != "-c":
        return None
    text = argv[-1]
    if _PLAIN.fullmatch(text) is None:
        return None
    words = text.split()
    first = words[0]
    if "=" in first:
        return None  # an assignment
    if first in _SHELL_WORDS and first not in _MAY_SKIP:
        return None  # the common case of a builtin, told before any lookup
    shell = _kind(argv[0], env, which)
    if shell is None:
        return None
    if first in _SHELL_WORDS and not _same_as_program(words, shell):
        return None
    # One scan in C of all the names joined (a step's environment has dozens).
    if shell == "bash" and (b"BASH_ENV" in env or b"\0BASH_FUNC_" in b"\0" + b"\0".join(env)):
        return None
    try:
        if "/" in first:  # exec'd as written, after the spawn's chdir into `cwd`
            path = first
            if not _runnable(os.path.join(cwd, first)):
                return None
        else:
            if not _plain_path(env.get(b"PATH")):
                return None  # no PATH (each shell has its own default), relative or
                # empty entries, dash's `%func`: the shell's to read
            path = which(first, env)
            if not _runnable(path):
                return None
        pwd = _pwd(env.get(b"PWD"), cwd)
    except (OSError, SpawnError):
        return None
    if shell == "bash":
        level = env.get(b"SHLVL")
        if level is None:
            env[b"SHLVL"] = b"0"
        elif not (level.isdigit() and int(level) < 999 and str(int(level)).encode() == level):
            return None  # bash's own arithmetic on odd values: leave it to bash
        env[b"_"] = os.fsencode(path)  # as found in PATH, or as written
    if pwd is not None:
        env[b"PWD"] = pwd
    return path, words


def _same_as_program(words: list[str], shell: str) -> bool:
    """Whether a builtin behaves as the program of that name would here, and is worth
    the program's start instead of the shell's."""
    if words[0] in _AS_PROGRAM:
        return len(words) == 1
    if words[0] == "echo" and shell == "bash":
        # No backslashes reach here; options differ (-e, --help).
        return all(w[0] != "-" for w in words[1:])
    return False


_kinds: dict[tuple[str, bytes | None], str | None] = {}


def _kind(shell: str, env: dict, which) -> str | None:
    """"dash" or "bash" when `shell` is one of them (through links), else None."""
    key = (shell, env.get(b"PATH"))
    if key in _kinds:
        return _kinds[key]
    try:
        path = shell if "/" in shell else which(shell, env)
        name = os.path.basename(os.path.realpath(path))
    except (OSError, SpawnError):
        name = None
    if len(_kinds) >= _CACHE_MAX:
        _kinds.clear()
    kind = _kinds[key] = name if name in ("dash", "bash") else None
    return kind


_plain_paths: dict[bytes | None, bool] = {}


def _plain_path(search: bytes | None) -> bool:
    """Whether PATH is a list of absolute directories only (cached: one PATH in a run)."""
    ok = _plain_paths.get(search)
    if ok is None:
        ok = search is not None and all(
            d.startswith(b"/") and b"%" not in d for d in search.split(b":"))
        if len(_plain_paths) >= _CACHE_MAX:
            _plain_paths.clear()
        _plain_paths[search] = ok
    return ok


_runnables: dict[str, tuple[int, int, bool]] = {}


def _runnable(path: str) -> bool:
    """Whether exec runs `path` as the shell would: an executable regular file that is
    a binary or starts with `#!` (the shell runs any other file as a script itself)."""
    st = os.stat(path)
    seen = _runnables.get(path)
    if seen is not None and seen[0] == st.st_ino and seen[1] == st.st_ctime_ns:
        return seen[2]
    ok = False
    if (st.st_mode & 0o170000) == 0o100000 and os.access(path, os.X_OK):
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError:
            head = b""
        ok = head.startswith(_EXECUTABLE)
    if len(_runnables) >= _CACHE_MAX:
        _runnables.clear()
    _runnables[path] = (st.st_ino, st.st_ctime_ns, ok)  # chmod and writes change ctime
    return ok


_pwds: dict[tuple[bytes | None, str], bytes | None] = {}


def _pwd(given: bytes | None, cwd: str) -> bytes | None:
    """The PWD the shell would export in `cwd`: `given` when it is absolute and names
    that directory (None: keep it), else the physical path. Cached: a working
    directory that moves under a running engine is not worth a stat per step."""
    key = (given, cwd)
    if key in _pwds:
        return _pwds[key]
    here = os.stat(cwd)
    pwd = None
    if given is None or not given.startswith(b"/"):
        pwd = os.fsencode(os.path.realpath(cwd))
    else:
        try:
            there = os.stat(given)
            same = (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)
        except OSError:
            same = False
        if not same:
            pwd = os.fsencode(os.path.realpath(cwd))
    if len(_pwds) >= _CACHE_MAX:
        _pwds.clear()
    _pwds[key] = pwd
    return pwd
