"""Evaluation, once a file's structure passed every check: `env` values in order,
`params`, directories and integer keys written as `${VAR}`, with backticks run by
`sh -c` in the DAG's directory (or, for `validate`, `dry` and `graph`, left as written).
"""

from __future__ import annotations

import os
import re
from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any

from dagfast.loader.expand import ExpandError, expand, has_references
from dagfast.loader.integers import MAX_INT, integer
from dagfast.loader.params import ParamsError
from dagfast.loader.params import override as override_params
from dagfast.loader.params import parse as parse_params
from dagfast.loader.problems import Problems, show
from dagfast.loader.tree import Path
from dagfast.model import Params, output_ref

__all__ = ["ENV_NAME", "Evaluator", "env_entries", "named_params"]

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Entries = list[tuple[str, str, Path]]


def env_entries(env: Any, path: Path, problems: Problems) -> Entries:
    """(name, unevaluated value, path) for each entry of an `env`, in order."""
    if env is None:
        return []
    items: list[tuple[str, str | None, Path]] = []
    if type(env) is dict:
        items = [(k, v, path + (k,)) for k, v in env.items()]
    else:
        for j, item in enumerate(env):
            if type(item) is dict:
                items.extend((k, v, path + (j, k)) for k, v in item.items())
            else:
                name, sep, value = item.partition("=")
                if not sep:
                    problems.add(path + (j,), f"`{show(item)}` is not `NAME=value` or a mapping")
                    continue
                items.append((name, value, path + (j,)))
    out = []
    for name, value, where in items:
        if not ENV_NAME.fullmatch(name):
            problems.add(where, f"`{name}` is not a valid environment variable name", True)
        out.append((name, "" if value is None else value, where))
    return out


def named_params(params: Params) -> dict[str, str]:
    """The named params as variables (positional ones are `$1`, `$2`... in the shell)."""
    return {k: v for k, v in params if k is not None}


class Evaluator:
    """Expands what a checked file wrote, reporting each failure at its path.

    With `commands=False` (`validate`, `dry`, `graph`) no backtick runs: its text is
    kept as written, and an integer key that needs one is reported as not an integer
    only when it has no backtick."""

    def __init__(self, problems: Problems, commands: bool = True) -> None:
        self.problems = problems
        self.commands = commands

    def known(self, value: str) -> bool:
        """Whether `value` is what a run would see (no backtick was left unevaluated)."""
        return self.commands or "`" not in value

    def text(self, value: str, scope: Mapping[str, str], cwd: str, where: Path, paths=None):
        """`value` expanded over `scope`; None (and a problem) when it cannot be."""
        try:
            return expand(value, scope, self._runner(cwd, scope), paths)
        except ExpandError as e:
            self.problems.add(where, str(e))
            return None

    def env(
        self, entries: Entries, base: Mapping[str, str], cwd: str,
        outputs: frozenset[str] = frozenset(),
    ) -> tuple[tuple[str, str], ...]:  # fmt: skip
        """Expand each value in order over `base` plus the entries before it.

        A step's references to `outputs` (`${A}`, `$A`, `${A.key[0]}`, A not set by an
        entry before) are kept, as `model.output_ref`s that the engine fills in when the
        step starts, from the outputs it sees over `base` (as it fills in secrets)."""
        own: dict[str, str] = {}
        scope = ChainMap(own, base)
        names, paths = scope, None
        if outputs:
            names = ChainMap(own, {n: output_ref(n) for n in outputs}, base)

            def output_path(name: str, path: str) -> str | None:
                return output_ref(name, path) if name in outputs and name not in own else None

            paths = output_path
        run = self._runner(cwd, scope)
        out = []
        for name, value, where in entries:
            if has_references(value):
                try:
                    value = expand(value, names, run, paths)
                except ExpandError as e:
                    self.problems.add(where, str(e))
                    value = ""
            out.append((name, value))
            own[name] = value
        return tuple(out)

    def directory(self, base: str, value: str, scope: Mapping[str, str], where: Path) -> str:
        """An absolute directory from a `workingDir`/`dir` value: variables expanded, a
        leading `~` made the home directory, a relative path joined to `base`."""
        value = self.text(value, scope, base, where)
        if value is None:
            return base
        if value == "~" or value.startswith("~/"):
            value = scope.get("HOME", os.path.expanduser("~")) + value[1:]
        return os.path.normpath(os.path.join(base, value))

    def integer(
        self, expr: str, key: str, where: Path, scope, cwd: str, most: int = MAX_INT
    ) -> int:
        """An integer key written as an expression, expanded over the DAG's variables."""
        value = self.text(expr, scope, cwd, where)
        if value is None:
            return 0
        if not self.known(value):
            return 0  # a backtick left as written: its value is not known here
        n = integer(value, key, where, self.problems, expanded=True, most=most)
        return 0 if n is None else n

    def params(self, value, where: Path, given: Params | None, scope, cwd: str) -> Params:
        """The DAG's params, their values evaluated in order, then `given` applied."""
        try:
            defaults = parse_params(value)
        except ParamsError as e:
            self.problems.add(where, str(e))
            defaults = ()
        out = []
        own: dict[str, str] = {}
        local = scope.new_child(own)
        for name, text in defaults:
            if has_references(text):
                expanded = self.text(text, local, cwd, where)
                text = text if expanded is None else expanded
            out.append((name, text))
            if name is not None:
                own[name] = text
        return override_params(tuple(out), given) if given else tuple(out)

    def _runner(self, cwd: str, scope: Mapping[str, str]) -> Callable[[str], str] | None:
        """Runs a backtick command with `sh -c` in `cwd`, with `scope` as its environment
        (None when commands are not run: `expand` keeps the backticks as written)."""
        if not self.commands:
            return None

        def run(command: str) -> str:
            try:
                import subprocess  # start-up speed: only DAGs with backticks pay for it

                done = subprocess.run(
                    ["/bin/sh", "-c", command],
                    cwd=cwd,
                    env=dict(scope),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            except OSError as e:
                raise ExpandError(f"cannot run `{show(command)}`: {e.strerror}") from None
            if done.returncode:
                lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
                why = f": {lines[-1]}" if lines else ""
                raise ExpandError(f"`{show(command)}` failed with exit code {done.returncode}{why}")
            return done.stdout.decode("utf-8", "replace")

        return run
