"""Every sub-DAG a DAG names statically, loaded before anything runs.

`validate` (and `run`, before its first step) loads the DAG of each `run:`/`call:`
step whose reference (a local sub-DAG, a file found as `subnames` says) is written out (or built from variables the DAG or its environment
defines), recursively: a problem inside it, a bare-list sub-DAG that depends on an
unknown step, or sub-DAGs that call each other in a loop are located errors that name
both files. A missing file is one too, unless an upstream step may write it (the spec's
dynamic fan-out generates its sub-DAG): then, as for a path made from an output, the
file is loaded when its step runs.
"""

from __future__ import annotations

import os
import re

from dagfast.errors import LoadError, Problem
from dagfast.loader import load_sub
from dagfast.loader.expand import ExpandError, expand
from dagfast.loader.subnames import looked_in, resolve
from dagfast.model import Dag

__all__ = ["check_sub_dags"]

# How deep a chain of sub-DAG files may go before it is called a loop (files differ).
MAX_DEPTH = 64
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def check_sub_dags(dag: Dag, environ=None, evaluate: bool = True) -> None:
    """Load every sub-DAG that `dag` names statically, recursively; LoadError with
    every problem found. `evaluate`: False keeps backtick commands unrun (validate)."""
    calls = any(s.extra is not None and s.extra.call is not None for s in dag.steps)
    if not calls and not dag.local_dags:
        return  # calls no sub-DAG
    problems: list[Problem] = []
    environ = dict(os.environ if environ is None else environ)
    checked: dict = {}
    if calls:
        _check(dag, environ, [(_real(dag.path), dag.document)], problems, checked, evaluate)
    for name in dag.local_dags:
        if (_real(dag.path), name) not in checked:  # called by no one: checked all the same
            try:  # (no backtick of a DAG nobody runs is run)
                load_sub(dag.path, environ=environ, params=(), work_dir=dag.dir,
                         done=frozenset(), evaluate=False, document=name,
                         dags_dir=dag.dags_dir)
            except LoadError as e:
                problems.extend(Problem(f"{p.message} (in the local sub-DAG `{name}`)", p.path,
                                        p.file, p.line, p.column) for p in e.problems)
    if problems:
        raise LoadError(problems)


def _check(dag: Dag, environ: dict, chain: list[str], problems: list[Problem],
           checked: dict, evaluate: bool) -> None:
    scope = dict(environ)
    scope.update((k, v) for k, v in dag.env)
    scope.update((k, v) for k, v in dag.params if k is not None)
    base = os.path.dirname(dag.path) if dag.path else dag.dir
    names = frozenset(s.name for s in dag.steps)
    here = dag.path or "<dag>"
    for i, step in enumerate(dag.steps):
        ex = step.extra
        if ex is None or ex.call is None or "\ue002" in ex.call or "`" in ex.call:
            continue  # no sub-DAG, or a path made by an upstream step or a command
        if not _known(ex.call, scope):
            continue  # a variable the DAG does not define: checked when the step runs
        try:
            written = expand(ex.call, scope)
        except ExpandError:
            continue  # said where the step runs
        where = f"$.steps[{i}].call"
        target = resolve(written, dag.path, base, dag.dags_dir, dag.local_dags)
        if target is None:
            if not step.depends:  # nothing in the run comes first to write it
                why = looked_in(written, base, dag.dags_dir, dag.local_dags)
                problems.append(Problem(f"the sub-DAG `{ex.call}` does not exist ({why})",
                                        where, here))
            continue
        real = (_real(target.path), target.document)
        if real in chain:
            loop = " -> ".join(_shown(p) for p in chain + [real])
            problems.append(Problem(f"the sub-DAGs call each other in a loop: {loop}",
                                    where, here))
            continue
        if real in checked:
            continue
        if len(chain) >= MAX_DEPTH:
            problems.append(Problem(f"sub-DAGs nested more than {MAX_DEPTH} deep", where, here))
            continue
        try:
            sub = load_sub(target.path, environ=scope, params=ex.params, work_dir=dag.dir,
                           done=names, evaluate=evaluate, document=target.document,
                           dags_dir=dag.dags_dir)
        except LoadError as e:
            for p in e.problems:  # where it is, and which step of which file calls it
                problems.append(Problem(f"{p.message} (in the sub-DAG that {here} calls at "
                                        f"`{where}`)", p.path, p.file, p.line, p.column))
            checked[real] = False
            continue
        checked[real] = True
        _check(sub, environ, chain + [real], problems, checked, evaluate)


def _known(text: str, scope: dict) -> bool:
    """Whether every `$NAME` / `${NAME}` in `text` is in `scope`."""
    return all((m.group(1) or m.group(2)) in scope for m in _VAR.finditer(text))


def _real(path: str) -> str:
    return os.path.realpath(path) if path else ""


def _shown(key: tuple[str, str]) -> str:
    """A DAG in a loop's description: its file's name, and its local name if any."""
    return os.path.basename(key[0]) + (f"#{key[1]}" if key[1] else "")
