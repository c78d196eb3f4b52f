"""DAG file -> `model.Dag`: the only code that joins the `spec` and `model` layers.

First the YAML becomes plain values (`yamlsrc`). Second msgspec converts them to the
spec Structs in one call; only when that fails are the keys checked mapping by
mapping and the fields converted one by one, so that every problem is reported.
Third the steps are checked and resolved (names, ids, depends, cycles, commands,
directories, the extra keys as written), and the schedule parsed. Nothing runs until
all of that passed: only then are the `env` values evaluated (backticks run commands)
and `maxActiveSteps` expanded; what is checked after that needed those values.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import ChainMap
from collections.abc import Callable, Mapping
from functools import partial
from operator import attrgetter
from typing import Any

import msgspec
from msgspec import UNSET
from msgspec.structs import replace

from dagfast.loader import tree as yamlsrc
from dagfast.errors import LoadError, Problem
from dagfast.loader.expand import ExpandError, expand, has_references
from dagfast.model import Dag, Handler, Params, Secret, Step, StepExtra, secret_ref
from dagfast.loader.params import ParamsError
from dagfast.loader.params import override as override_params
from dagfast.loader.params import parse as parse_params
from dagfast.loader.stepopts import build_extra, check_condition_types, check_extra, conditions, featured
from dagfast.loader.shellcmd import Shell, sets_errexit, shell_words, text_argv
from dagfast.loader.spec import (
    ALIASES, DAG_TYPES, INT_FIELDS, NESTED, STEP_EXECUTORS, SUPPORTED, DagSpec, SecretSpec,
    StepSpec,
)
from dagfast.topo import cycles, seen_outputs
from dagfast.loader.tree import Path

__all__ = ["load", "load_text"]

MAX_PROBLEMS = 1000
"""Problems listed in one LoadError; the rest are counted."""

RESERVED_IDS = frozenset(("env", "params", "args", "stdout", "stderr", "output", "outputs"))

_ID = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UINT = re.compile(r"[0-9]+")
_MAY_HOLD_NUL = re.compile(rb"\\(0|x00|u0000|U00000000)")  # YAML escapes; raw NULs fail to parse
_MSGSPEC_PATH = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_HINT_BUDGET = 20_000  # names difflib may compare in all (0.3 s; 1.4 s per 100,000-name lookup)
_STEPS_TYPE = list[StepSpec | str | None]


def _close_matches(word: str, candidates) -> list[str]:
    """The nearest candidate to `word`, if any is close (difflib, imported on error only)."""
    import difflib

    return difflib.get_close_matches(word, candidates, n=1)


class _Sub:
    """How a sub-DAG is loaded: it may be a bare list of steps, runs in its caller's
    directory unless it sets one, and may depend on caller steps that are `done`."""

    __slots__ = ("work_dir", "done")

    def __init__(self, work_dir: str, done: frozenset[str]) -> None:
        self.work_dir = work_dir
        self.done = done


def load(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    params: Params | None = None,
) -> Dag:
    """Load and check the DAG file at `path`; raises LoadError listing every problem.
    `params` (see `dagfast.params`) override the file's own."""
    return _load_file(path, environ, params, None)


def load_sub(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str],
    params: Params,
    work_dir: str,
    done: frozenset[str],
) -> Dag:
    """Load a DAG that a `call`/`run` step runs: a DAG file or a bare list of steps,
    whose `depends` on the caller's finished steps (`done`) are already satisfied."""
    try:
        return _load_file(path, environ, params, _Sub(work_dir, done))
    except LoadError as e:
        _bare_list_paths(e, path)
        raise


def _bare_list_paths(error: LoadError, path) -> None:
    """A bare list of steps is loaded as `{"steps": [...]}`; its problems' paths say
    `$[0]`, as its text does, not `$.steps[0]` (`yamlsrc.locate` already maps lines)."""
    if not any(p.path and p.path.startswith("$.steps") for p in error.problems):
        return
    try:
        with open(path, "rb") as f:
            data = f.read(yamlsrc.MAX_BYTES + 1)
    except OSError:
        return
    if not yamlsrc.is_list(data):
        return
    for p in error.problems:
        if p.path == "$.steps" or (p.path and p.path.startswith("$.steps[")):
            p.path = "$" + p.path[len("$.steps"):]


def _load_file(path, environ, params, sub) -> Dag:
    file = os.fspath(path)
    full = os.path.abspath(file)
    try:
        with open(full, "rb") as f:
            data = f.read(yamlsrc.MAX_BYTES + 1)
    except OSError as e:
        raise LoadError([Problem(f"cannot read the file: {e.strerror}", file=file)]) from None
    stem = os.path.splitext(os.path.basename(full))[0]
    return _load(data, file, full, os.path.dirname(full), stem, environ, params, sub)


def load_text(
    text: str | bytes,
    *,
    file: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    params: Params | None = None,
) -> Dag:
    """Load DAG YAML given as text; relative directories are taken from `base_dir`
    (default: the current directory) and the DAG is named "dag" unless it says."""
    if isinstance(text, str):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise LoadError(
                [Problem(f"text is not valid Unicode ({e.reason})", file=file)]
            ) from None
    else:
        data = bytes(text)
    base = os.path.abspath(os.fspath(base_dir) if base_dir is not None else os.getcwd())
    return _load(data, file, "", base, "dag", environ, params, None)


# ---------------------------------------------------------------------------------------


class _Problems:
    """Problems found so far, each at a path; located in the source only when raised.

    Past MAX_PROBLEMS only a count is kept: a file with a million broken steps must
    still fail fast, and nobody reads the millionth line."""

    def __init__(self, data: bytes, file: str) -> None:
        self.data = data
        self.file = file
        self.found: list[tuple[Path, str, bool]] = []
        self.more = 0

    def add(self, path: Path, message: str, at_key: bool = False) -> None:
        if len(self.found) < MAX_PROBLEMS:
            self.found.append((path, message, at_key))
        else:
            self.more += 1

    def __len__(self) -> int:
        return len(self.found) + self.more

    def raise_if_any(self) -> None:
        if not self.found:
            return
        spans = yamlsrc.locate(self.data, [p for p, _, _ in self.found])
        problems = []
        for path, message, at_key in self.found:
            span = spans.get(path)
            line = col = None
            if span is not None:
                line, col = (span[0], span[1]) if at_key else (span[2], span[3])
            problems.append(Problem(message, yamlsrc.render(path), self.file, line, col))
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        if self.more:
            problems.append(Problem(f"... and {self.more:,} more problems", file=self.file))
        raise LoadError(problems)


class _Steps:
    """The steps after conversion, and how to name their paths in messages."""

    def __init__(self, key: str, keys: list[str] | None) -> None:
        self.key = key  # the user's spelling of `steps`
        self.keys = keys  # the mapping keys, when steps were written as a mapping
        self.specs: list[StepSpec] = []
        self.spell: list[dict[str, str] | None] | None = None
        self.incomplete: set[int] = set()  # steps whose problems are already reported
        self.featured: list[int] = []  # steps with extra keys (`stepopts.featured`)

    def path(self, i: int, *rest: str | int) -> Path:
        head = self.keys[i] if self.keys is not None else i
        if rest and self.spell is not None and self.spell[i] is not None:
            rest = (self.spell[i].get(rest[0], rest[0]),) + rest[1:]
        return (self.key, head) + rest


def _load(
    data: bytes,
    file: str,
    dag_path: str,
    base_dir: str,
    default_name: str,
    environ: Mapping[str, str] | None,
    given_params: Params | None = None,
    sub: _Sub | None = None,
) -> Dag:
    if environ is None:
        environ = os.environ
    tree = yamlsrc.parse(data, file, steps_list=sub is not None)
    problems = _Problems(data, file)

    # First: spec Structs, in one msgspec call when the file has no problem.
    header, dag_spell, int_exprs, steps = _convert(tree, problems)
    name = header.name or default_name

    # Second: the steps, resolved and checked.
    shell = _dag_shell(header, dag_spell, environ, problems)
    dag_entries = _env_entries(header.env, (dag_spell.get("env", "env"),), problems)
    built = _build_steps(
        steps, header.type == "chain", shell, problems, sub.done if sub else frozenset()
    )
    handler_steps = _handler_steps(header, dag_spell, problems)
    secret_specs = _secrets(header, dag_spell, problems) if header.secrets else ()
    if header.preconditions is not None:
        check_condition_types(
            header.preconditions, lambda key, *rest: (dag_spell.get(key, key),) + rest, problems
        )
    handlers_built = None
    if handler_steps is not None:
        handlers_built = _build_steps(handler_steps, False, shell, problems)
        _check_extras(handler_steps, problems)
    _check_extras(steps, problems)
    schedule = _schedule(header, dag_spell, problems) if header.schedule is not None else ()
    if header.dask_scheduler is not None or header.dask_shared_dir is not None:
        _check_cluster(header, dag_spell, problems)
    if _MAY_HOLD_NUL.search(data):
        _check_nul(tree, problems)
    problems.raise_if_any()

    # Third: evaluation, which may run commands (backticks); directories come first,
    # since commands run in the DAG's. Then params (which see the env), then the
    # integer fields written as expressions, then each step's own settings.
    dag_dir = base_dir if sub is None else sub.work_dir
    if header.working_dir:
        where = (dag_spell.get("workingDir", "workingDir"),)
        dag_dir = _directory(base_dir, header.working_dir, environ, base_dir, where, problems)
    if header.dotenv is not None:
        where = (dag_spell.get("dotenv", "dotenv"),)
        dag_entries = _dotenv(header.dotenv, dag_dir, where, problems) + dag_entries
        problems.raise_if_any()  # a dotenv file that cannot be used: no backtick runs
    dag_env = _evaluate(dag_entries, environ, dag_dir, problems)
    scope = ChainMap(dict(dag_env), dict(environ))
    params = _params(header, dag_spell, given_params, scope, dag_dir, problems)
    if params:
        scope = scope.new_child(_named_params(params))
    ints = {
        key: _expand_int(expr, key, dag_spell, scope, dag_dir, problems)
        for key, expr in int_exprs.items()
    }
    step_scope = scope
    if secret_specs:
        # Secrets are read when the run starts, never here: a step's `env` that refers
        # to one holds a reference the engine fills in (secrets win over DAG env and
        # params, a step's own env over secrets, as in Dagu).
        step_scope = scope.new_child({s.name: secret_ref(s.name) for _, s in secret_specs})
    steps_out = _finish_steps(built, steps, dag_dir, step_scope, params, problems)
    handlers: tuple[Handler, ...] = ()
    if handlers_built is not None:
        hsteps = _finish_steps(
            handlers_built, handler_steps, dag_dir, step_scope, params, problems
        )
        handlers = tuple(map(Handler, handler_steps.keys, hsteps))
    cluster = ("", "", "")
    if header.step_executor or header.dask_scheduler is not None or header.dask_shared_dir is not None:
        cluster = _cluster(header, dag_spell, scope, dag_dir, problems)
    problems.raise_if_any()

    def get(key: str, default):
        return ints.get(key, default)

    return Dag(
        name=name,
        steps=steps_out,
        path=dag_path,
        dir=dag_dir,
        description=header.description or "",
        env=tuple(dag_env),
        max_active_steps=get("maxActiveSteps", header.max_active_steps),
        type=header.type,
        params=params,
        max_active_runs=get("maxActiveRuns", header.max_active_runs),
        schedule=schedule,
        skip_if_successful=header.skip_if_successful,
        timeout_sec=get("timeoutSec", header.timeout_sec),
        delay_sec=get("delaySec", header.delay_sec),
        max_cleanup_sec=get("maxCleanUpTimeSec", header.max_clean_up_time_sec),
        max_output_size=get("maxOutputSize", header.max_output_size),
        preconditions=conditions(header.preconditions),
        handlers=handlers,
        step_executor=cluster[0],
        dask_scheduler=cluster[1],
        dask_shared_dir=cluster[2],
        secrets=_located_secrets(secret_specs, dag_spell, problems) if secret_specs else (),
    )


def _schedule(header: DagSpec, spell: dict[str, str], problems: _Problems) -> tuple[str, ...]:
    """`schedule`: one expression, a list, or a map whose `start` holds one or a list;
    each is parsed alone, so that an error names its entry (`$.schedule.start[1]`).
    Only DAGs that have one import the cron library. The model keeps them, flat."""
    at = spell.get("schedule", "schedule")
    entries: list[tuple[Path, str]] = []
    if type(header.schedule) is str:
        entries.append(((at,), header.schedule))
    elif type(header.schedule) is list:
        entries.extend(((at, i), e) for i, e in enumerate(header.schedule))
    elif type(header.schedule) is dict:
        for key, value in header.schedule.items():
            if key in ("stop", "restart"):
                problems.add((at, key), f"`{at}.{key}` is not supported yet", True)
            elif key != "start":
                problems.add((at, key), f"`{_show(key)}` is not a key of `{at}` (start, "
                             "stop or restart)", True)
            elif type(value) is str:
                entries.append(((at, key), value))
            else:
                entries.extend(((at, key, i), e) for i, e in enumerate(value))
    if entries:
        from dagfast.loader.cron import ScheduleError, parse

        for where, expr in entries:
            try:
                parse(expr)
            except ScheduleError as e:
                problems.add(where, f"{e.why}: `{_show(e.expr)}`")
    return tuple(expr for _, expr in entries)


def _finish_steps(
    built: _Built, steps: _Steps, dag_dir: str, scope, params: Params, problems: _Problems
) -> tuple[Step, ...]:
    """The model's Steps: env and directories evaluated, extras built, `$1`... bound."""
    outputs = _output_names(steps.specs) if any(built.env_entries) else frozenset()
    step_envs = [
        _evaluate(entries, scope, dag_dir, problems, outputs) if entries else ()
        for entries in built.env_entries
    ]
    dirs = _step_dirs(built, steps, dag_dir, scope, step_envs, problems)
    extras = _extras(built, steps, scope, step_envs, dirs, problems)
    argvs = built.argv
    positional = tuple(v for k, v in params if k is None)
    if positional:
        # `$1`, `$2`... are the shell's own positional parameters: `sh -c TEXT $0 $1...`.
        argvs = [a + (a[0],) + positional if len(a) > 2 and a[-2] == "-c" else a for a in argvs]
    return tuple(
        map(Step, built.names, argvs, built.depends, built.ids, built.descriptions,
            dirs, step_envs, built.scripts, extras)
    )  # fmt: skip


def _check_extras(steps: _Steps, problems: _Problems) -> None:
    """The extra keys of each step as written (`stepopts.check_extra`), before anything
    is evaluated; notes which steps have any. A plain step costs one C-level pass."""
    steps.featured = featured(steps.specs)
    for i in steps.featured:
        if i not in steps.incomplete:  # its keys did not convert: already reported
            check_extra(steps.specs[i], partial(steps.path, i), problems)


def _extras(built: _Built, steps: _Steps, scope, step_envs, dirs, problems: _Problems):
    """Each step's StepExtra (None for a plain step), and who sees which outputs."""
    n = len(built.names)
    extras: list = [None] * n
    for i in steps.featured:
        step_scope = scope.new_child(dict(step_envs[i])) if step_envs[i] else scope
        extras[i] = build_extra(
            steps.specs[i], partial(steps.path, i), step_scope, dirs[i], problems
        )
    producers = {i: e.output for i, e in enumerate(extras) if e is not None and e.output}
    if producers:
        for i, sees in seen_outputs(built.depends, producers).items():
            texts = [*built.argv[i], built.scripts[i] or ""]
            refs = any(
                ("${" + producers[p] + ".") in t or ("${" + producers[p] + "[") in t
                for p in sees
                for t in texts
            )
            extras[i] = replace(extras[i] or StepExtra(), sees=sees, expand=refs)
    return extras


def _handler_steps(header: DagSpec, spell: dict[str, str], problems: _Problems):
    """The `handlerOn` steps as a _Steps keyed by event (`cancel` is `abort`)."""
    h = header.handler_on
    if h is None:
        return None
    key = spell.get("handlerOn", "handlerOn")
    if h.abort is not None and h.cancel is not None:
        problems.add((key, "cancel"), "`cancel` is the same handler as `abort`; give it once")
    kinds, specs = [], []
    for kind in ("init", "success", "failure", "abort", "exit"):
        s = getattr(h, kind)
        if kind == "abort" and s is None:
            s = h.cancel
        if s is None:
            continue
        if s.depends is not UNSET:
            problems.add((key, kind, "depends"), "a handler runs on its own; it has no `depends`")
        kinds.append(kind)
        specs.append(replace(s, name=None, depends=UNSET))
    steps = _Steps(key, kinds)
    steps.specs = specs
    return steps


SECRET_PROVIDERS = ("env", "file")
_DAGFAST_VARS = frozenset(("DAG_NAME", "DAG_RUN_ID", "DAG_RUN_STEP_NAME"))


def _secrets(header: DagSpec, spell: dict[str, str], problems: _Problems) -> list:
    """The `secrets:` entries, checked (names, providers, keys), as (index, entry);
    nothing is read."""
    key = spell.get("secrets", "secrets")
    first: dict[str, int] = {}
    out = []
    for i, s in enumerate(header.secrets):
        if s is None:
            continue  # it did not convert: already reported
        out.append((i, s))
        if not _ENV_NAME.fullmatch(s.name):
            problems.add(
                (key, i, "name"), f"`{_show(s.name)}` is not a valid environment variable name"
            )
        elif s.name in _DAGFAST_VARS:
            problems.add((key, i, "name"), f"`{s.name}` is set by dagfast for every step")
        elif s.name in first:
            problems.add(
                (key, i, "name"),
                f"duplicate secret name `{s.name}` (first at `$.{key}[{first[s.name]}]`)",
            )
        else:
            first[s.name] = i
        if s.provider not in SECRET_PROVIDERS:
            problems.add(
                (key, i, "provider"),
                f"secret provider `{_show(s.provider)}` is not supported yet "
                "(dagfast has `env` and `file`)",
            )
        if not s.key:
            problems.add((key, i, "key"), "`key` is empty")
        elif s.provider == "env" and "=" in s.key:
            problems.add((key, i, "key"), f"`{_show(s.key)}` is not an environment variable name")
    return out


def _located_secrets(specs, spell: dict[str, str], problems: _Problems) -> tuple[Secret, ...]:
    """The model's Secrets, each with where its `key` is (`file:line:col`), so that a
    secret that cannot be read when the run starts is reported as a load error is."""
    key = spell.get("secrets", "secrets")
    paths = [(key, i, "key") for i, _ in specs]
    spans = yamlsrc.locate(problems.data, paths)
    out = []
    for (_, s), path in zip(specs, paths):
        span = spans.get(path)
        where = problems.file + (f":{span[2]}:{span[3]}" if span is not None else "")
        out.append(Secret(s.name, s.provider, s.key, where))
    return tuple(out)


def _params(header, spell, given, scope, cwd: str, problems: _Problems) -> Params:
    """The DAG's params, their values evaluated in order, then `given` applied."""
    where = (spell.get("params", "params"),)
    try:
        defaults = parse_params(header.params)
    except ParamsError as e:
        problems.add(where, str(e))
        defaults = ()
    out = []
    own: dict[str, str] = {}
    local = scope.new_child(own)
    for name, value in defaults:
        if has_references(value):
            try:
                value = expand(value, local, _runner(cwd, local))
            except ExpandError as e:
                problems.add(where, str(e))
        out.append((name, value))
        if name is not None:
            own[name] = value
    return override_params(tuple(out), given) if given else tuple(out)


def _cluster(header: DagSpec, spell, scope, cwd: str, problems: _Problems) -> tuple[str, str, str]:
    """`stepExecutor`, `daskScheduler` (variables expanded) and `daskSharedDir` (an
    absolute directory; a relative one is the DAG's directory's)."""
    kind = header.step_executor or ""
    address = shared = ""
    if header.dask_scheduler is not None:
        where = (spell.get("daskScheduler", "daskScheduler"),)
        try:
            address = expand(header.dask_scheduler, scope, _runner(cwd, scope)).strip()
        except ExpandError as e:
            problems.add(where, str(e))
            address = None
        if kind != "dask":
            pass  # _check_cluster says so
        elif address == "":  # an unset variable must not mean "a LocalCluster here"
            problems.add(where, f"`{where[0]}` is empty after expansion; expected an "
                                "address such as tcp://10.0.0.5:8786")
        elif address and not re.fullmatch(r"[a-z][a-z0-9+.-]*://(\[[0-9a-fA-F:.]+\]|"
                                           r"[^\s/:\[\]]+):[0-9]{1,5}", address):
            problems.add(where, f"`{_show(address)}` is not a Dask scheduler address: "
                                "expected scheme://host:port, such as tcp://10.0.0.5:8786")
        address = address or ""
    if header.dask_shared_dir is not None:
        where = (spell.get("daskSharedDir", "daskSharedDir"),)
        shared = _directory(cwd, header.dask_shared_dir, scope, cwd, where, problems)
        if kind == "dask" and not os.path.isdir(shared):  # the logs would have nowhere to go
            why = "not a directory" if os.path.exists(shared) else "no such directory"
            problems.add(where, f"`{_show(header.dask_shared_dir)}`: {why}")
    return kind, address, shared


def _check_cluster(header: DagSpec, spell, problems: _Problems) -> None:
    """`daskScheduler` and `daskSharedDir` are only for `stepExecutor: dask`."""
    if header.step_executor == "dask":
        return
    needs = f"`{spell.get('stepExecutor', 'stepExecutor')}: dask`"
    for key, value in (("daskScheduler", header.dask_scheduler),
                       ("daskSharedDir", header.dask_shared_dir)):
        if value is not None:
            where = (spell.get(key, key),)
            problems.add(where, f"`{where[0]}` is for {needs}")


def _named_params(params: Params) -> dict[str, str]:
    return {k: v for k, v in params if k is not None}


def _dotenv(value, cwd: str, where: Path, problems: _Problems) -> list:
    """The entries of the dotenv file(s), `NAME=value` lines, as env entries."""
    files = [value] if type(value) is str else value
    out = []
    for k, name in enumerate(files):
        at = where if type(value) is str else where + (k,)
        path = os.path.join(cwd, os.path.expanduser(name))
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            problems.add(at, f"cannot read the dotenv file `{name}`: {e.strerror}")
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[7:].lstrip()
            key, sep, val = line.partition("=")
            key, val = key.strip(), val.strip()
            if not sep or not _ENV_NAME.fullmatch(key):
                problems.add(at, f"`{_show(line)}` in `{name}` is not `NAME=value`")
                continue
            if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
                val = val[1:-1]
            out.append((key, val, at))
    return out


# ---------------------------------------------------------------------------------------
# First: conversion


def _convert(
    tree: dict, problems: _Problems
) -> tuple[DagSpec, dict[str, str], dict[str, str], _Steps]:
    """The header as a DagSpec (steps left out), the user's key spellings, the
    integer fields written as expressions, and the converted steps."""
    exprs = _int_exprs(tree)
    if exprs:
        tree = {**tree, **dict.fromkeys(exprs, 0)}
    try:
        spec = msgspec.convert(tree, DagSpec, strict=False)
    except msgspec.ValidationError:
        return _convert_slowly(tree, exprs, problems)
    raw = spec.steps
    steps = _Steps("steps", list(raw) if type(raw) is dict else None)
    steps.specs = list(raw.values()) if type(raw) is dict else (raw or [])
    return spec, {}, exprs, steps


def _int_exprs(mapping: dict) -> dict[str, str]:
    """The integer fields written as `${VAR}` expressions (expanded after the env)."""
    return {
        key: value
        for key in INT_FIELDS
        if type(value := mapping.get(key)) is str and has_references(value)
    }


def _convert_slowly(tree: dict, exprs: dict[str, str], problems: _Problems):
    """Check the keys of every mapping, then convert field by field: every problem."""
    norm, dag_spell, _ = _normalize(tree, "dag", (), problems)
    more = _int_exprs(norm)
    if more:
        exprs = {**exprs, **more}
        norm.update(dict.fromkeys(more, 0))
    raw_steps = norm.pop("steps", None)
    raw_secrets = norm.pop("secrets") if type(norm.get("secrets")) is list else None
    header = _convert_fields(norm, DagSpec, (), dag_spell, problems)
    if raw_secrets is not None:
        key = dag_spell.get("secrets", "secrets")
        header = replace(header, secrets=_convert_secrets(raw_secrets, key, problems))
    steps_key = dag_spell.get("steps", "steps")

    if type(raw_steps) is dict:
        steps = _Steps(steps_key, list(raw_steps))
        items = list(raw_steps.values())
    elif type(raw_steps) is list:
        steps = _Steps(steps_key, None)
        items = raw_steps
    else:
        steps = _Steps(steps_key, None)
        items = []
        if raw_steps is not None:
            problems.add(
                (steps_key,), f"Expected a list or a mapping of steps, got `{_show(raw_steps)}`"
            )

    steps.spell = spell_list = [None] * len(items)
    norm_items: list[Any] = []
    for i, item in enumerate(items):
        if type(item) is dict:
            item, spell, left_out = _normalize(item, "step", steps.path(i), problems)
            spell_list[i] = spell
            if left_out:
                steps.incomplete.add(i)
        elif type(item) is list:
            problems.add(
                steps.path(i), "a nested list of steps (a parallel group) is not supported yet"
            )
            steps.incomplete.add(i)
            item = None
        norm_items.append(item)
    try:
        steps.specs = msgspec.convert(norm_items, _STEPS_TYPE, strict=False)
    except msgspec.ValidationError:
        specs = []
        for i, item in enumerate(norm_items):
            if type(item) is dict:
                before = len(problems)
                specs.append(
                    _convert_fields(item, StepSpec, steps.path(i), spell_list[i], problems)
                )
                if len(problems) > before:
                    steps.incomplete.add(i)
            else:
                specs.append(item)
        steps.specs = specs
    return header, dag_spell, exprs, steps


def _convert_secrets(raw: list, key: str, problems: _Problems) -> list[SecretSpec | None]:
    """Each `secrets:` entry alone, so that every broken one is reported (None in its
    place); those that convert are checked further by `_secrets`."""
    out: list[SecretSpec | None] = []
    for i, item in enumerate(raw):
        if type(item) is dict:
            item = _normalize(item, "secret", (key, i), problems)[0]
        try:
            out.append(msgspec.convert(item, SecretSpec, strict=False))
        except msgspec.ValidationError as e:
            rel, message = _explain(str(e), item)
            problems.add((key, i) + rel, message)
            out.append(None)
    return out


def _normalize(mapping: dict, kind: str, path: Path, problems: _Problems):
    """The mapping with canonical keys (unknown and unsupported ones reported and left
    out), the user's spelling of each key, and whether any key was left out (then a
    step's "nothing to run" would only repeat the problem: `run:`, `comand:`)."""
    aliases = ALIASES[kind]
    supported = SUPPORTED[kind]
    norm: dict[str, Any] = {}
    spell: dict[str, str] = {}
    left_out = False
    for key, value in mapping.items():
        canon = aliases.get(key)
        if canon is None:
            left_out = True
            hint = _close_matches(key, aliases)
            problems.add(
                path + (key,),
                f"unknown key `{key}`" + (f" (did you mean `{hint[0]}`?)" if hint else ""),
                True,
            )
        elif canon in spell:
            problems.add(
                path + (key,), f"`{key}` is the same key as `{spell[canon]}`; give it once", True
            )
        else:
            spell[canon] = key
            if canon in supported:
                if canon in NESTED and type(value) is list:
                    # `preconditions: [{condition, expected}, ...]`
                    items = []
                    for i, item in enumerate(value):
                        if type(item) is dict:
                            item, _, item_left_out = _normalize(
                                item, NESTED[canon], path + (key, i), problems
                            )
                            left_out = left_out or item_left_out
                        items.append(item)
                    value = items
                elif canon in NESTED and type(value) is dict:
                    # Nested keys have snake_case spellings too (`continue_on: {exit_code}`).
                    value, _, nested_left_out = _normalize(
                        value, NESTED[canon], path + (key,), problems
                    )
                    left_out = left_out or nested_left_out
                    if canon == "handlerOn":
                        value = {
                            k: _normalize(v, "step", path + (key, k), problems)[0]
                            if type(v) is dict else v
                            for k, v in value.items()
                        }
                norm[canon] = value
            else:
                problems.add(path + (key,), f"`{key}` is not supported yet", True)
                left_out = True
    return norm, spell, left_out


def _convert_fields(
    norm: dict, cls: type, path: Path, spell: dict[str, str] | None, problems: _Problems
):
    """`cls` from `norm`; on failure each field alone, reporting each one that fails."""
    try:
        return msgspec.convert(norm, cls, strict=False)
    except msgspec.ValidationError:
        pass
    good = {}
    for key, value in norm.items():
        try:
            msgspec.convert({key: value}, cls, strict=False)
        except msgspec.ValidationError as e:
            rel, message = _explain(str(e), norm)
            if rel and spell:
                rel = (spell.get(rel[0], rel[0]),) + rel[1:]
            problems.add(path + rel, message)
        else:
            good[key] = value
    return msgspec.convert(good, cls, strict=False)


def _explain(text: str, raw: Any) -> tuple[Path, str]:
    """A msgspec message as a path and a message that shows the value as written."""
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        return (), text
    rel: list[str | int] = []
    for m in _MSGSPEC_PATH.finditer(where.rstrip("`"), 1):
        if m.group(1) is not None:
            rel.append(m.group(1))
        elif m.group(2) is not None:
            rel.append(int(m.group(2)))
        else:
            break  # `[...]`: a mapping value whose key msgspec does not say
    value = raw
    for part in rel:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            value = None
            break
    if message.startswith("Invalid enum value") and rel == ["type"]:
        message = "Expected " + " or ".join(f"`{t}`" for t in DAG_TYPES)
    if message.startswith("Invalid enum value") and rel == ["stepExecutor"]:
        message = "Expected " + " or ".join(f"`{t}`" for t in STEP_EXECUTORS)
    if message.startswith("Expected") and type(value) is str:
        message = re.sub(r", got `[^`]*`$", "", message) + f", got `{_show(value)}`"
    return tuple(rel), message


def _show(value: Any, width: int = 60) -> str:
    """A value as it may appear inside backticks in a one-line message."""
    if value is None:
        return "null"
    if type(value) is list:
        return "a list"
    if type(value) is dict:
        return "a mapping"
    text = value.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------------------------
# Second: the steps


class _Built:
    """The per-step columns of the model, in file order."""

    __slots__ = (
        "names",
        "argv",
        "depends",
        "ids",
        "descriptions",
        "working_dirs",
        "scripts",
        "env_entries",
    )


def _dag_shell(
    header: DagSpec, spell: dict[str, str], environ: Mapping[str, str], problems: _Problems
):
    """The shell words steps use unless they set their own."""
    if header.shell is not None:
        return _shell_words_or_report(header.shell, (spell.get("shell", "shell"),), problems) or ("sh",)
    # $SHELL when it names a program we can run (not a login shell set to a path that no
    # longer exists), else sh.
    default = environ.get("SHELL")
    if default and os.path.isabs(default) and os.access(default, os.X_OK) and not os.path.isdir(default):
        return (default,)
    return ("sh",)


def _shell_words_or_report(value, path: Path, problems: _Problems) -> tuple[str, ...] | None:
    try:
        return shell_words(value)
    except ValueError as e:
        problems.add(path, str(e))
        return None


def _build_steps(
    steps: _Steps,
    chain: bool,
    dag_shell: tuple[str, ...],
    problems: _Problems,
    outer: frozenset[str] = frozenset(),
) -> _Built:
    """Names, ids, argv and depends of every step, checking as it goes.

    Works column by column: a field no step sets costs one C-level count, and only
    the steps that are not a plain one-line command go through `_command`."""
    specs = steps.specs
    n = len(specs)
    if n and set(map(type, specs)) != {StepSpec}:
        specs = steps.specs = [s if type(s) is StepSpec else _shorthand(s) for s in specs]
    written, cmds, scripts_in, shells, wds, envs, ids, descs, deps = [
        list(map(g, specs)) for g in _COLUMNS
    ]
    keys = steps.keys

    # Names, and the index that depends and ids resolve through.
    if keys is not None:
        for i, name in enumerate(written):
            if name and name != keys[i]:
                problems.add(
                    steps.path(i, "name"),
                    f"the name `{name}` differs from the step's key `{keys[i]}`",
                )
        names = list(keys)
    elif None in written or "" in written:
        names = [
            w or (f"script_{i + 1}" if scripts_in[i] is not None else f"cmd_{i + 1}")
            for i, w in enumerate(written)
        ]
    else:
        names = written
    index = dict(zip(names, range(n)))
    if len(index) != n:
        index = {}
        for i, name in enumerate(names):
            if name in index:
                where = steps.path(i, "name") if written[i] else steps.path(i)
                problems.add(where, f"duplicate step name `{name}`")
            else:
                index[name] = i

    # argv: plain one-line commands with the DAG's shell at C speed, the rest one by one.
    default = Shell(dag_shell, True)
    single = default.c
    argvs = [single + (c,) if c.__class__ is str and c and "\n" not in c else None for c in cmds]
    scripts: list[str | None] = [None] * n
    odd = set()
    if None in argvs:
        odd.update(i for i, a in enumerate(argvs) if a is None)
    for column in (shells, scripts_in):
        if column.count(None) != n:
            odd.update(i for i, x in enumerate(column) if x is not None)
    for i in sorted(odd):
        s = specs[i]
        if not s.command and not s.script:
            argvs[i] = ()
            if i not in steps.incomplete and s.run is None and s.call is None:
                problems.add(
                    steps.path(i), "the step has nothing to run (no `command` or `script`)"
                )
        else:
            argvs[i], scripts[i] = _command(s, i, steps, default, problems)

    working_dirs = [] if wds.count(None) == n else [(i, wd) for i, wd in enumerate(wds) if wd]
    descriptions = [""] * n if descs.count(None) == n else [d or "" for d in descs]
    env_entries: list[list] = [[]] * n
    if envs.count(None) != n:
        for i, env in enumerate(envs):
            if env is not None:
                env_entries[i] = _env_entries(env, steps.path(i, "env"), problems)

    id_index: dict[str, int] = {}
    if ids.count(None) != n:
        for i, sid in enumerate(ids):
            if sid is None:
                continue
            where = steps.path(i, "id")
            if not _ID.fullmatch(sid):
                problems.add(
                    where, f"id `{sid}` must be a letter followed by letters, digits, `_` or `-`"
                )
            elif sid in RESERVED_IDS:
                problems.add(where, f"id `{sid}` is reserved")
            elif sid in id_index:
                problems.add(where, f"duplicate id `{sid}`")
            elif index.get(sid, i) != i:
                problems.add(where, f"id `{sid}` is the name of another step")
            else:
                id_index[sid] = i

    built = _Built()
    built.names, built.argv, built.ids, built.scripts = names, argvs, ids, scripts
    built.descriptions, built.working_dirs, built.env_entries = (
        descriptions,
        working_dirs,
        env_entries,
    )
    built.depends = _resolve_depends(
        deps, names, steps, index, id_index, chain, problems, outer
    )
    return built


_COLUMNS = [
    attrgetter(field)
    for field in (
        "name",
        "command",
        "script",
        "shell",
        "working_dir",
        "env",
        "id",
        "description",
        "depends",
    )
]


def _shorthand(item: str | None) -> StepSpec:
    """A bare string in the steps list is its command; an empty item is an empty step."""
    return StepSpec() if item is None else StepSpec(command=item)


def _command(s: StepSpec, i: int, steps: _Steps, default: Shell, problems: _Problems):
    """argv and script of a step that is not a plain one-line command."""
    shell = default
    if s.shell is not None:
        words = _shell_words_or_report(s.shell, steps.path(i, "shell"), problems)
        if words is None:
            return (), None
        shell = Shell(words, False)  # a step's own shell gets no -e
    cmd, script = s.command, s.script
    if not cmd and script is None:
        return (), None  # nothing to run: reported later
    if script is not None:
        if cmd:
            if type(cmd) is not str or "\n" in cmd.rstrip("\n"):
                problems.add(
                    steps.path(i, "command"), "`command` must be one line when `script` is given"
                )
                return (), None
            try:
                argv = shlex.split(cmd)
            except ValueError as e:
                problems.add(
                    steps.path(i, "command"), f"cannot split `{_show(cmd)}` into words ({e})"
                )
                return (), None
            if not argv:
                problems.add(steps.path(i, "command"), "`command` is blank")
            return tuple(argv), script
        return text_argv(script, shell)
    if type(cmd) is list:
        # One sh-like script with -e: it stops at the first failing line.
        sh = shell if shell.sh_like else Shell(("sh",), True)
        errexit = () if sets_errexit(sh.words) else ("-e",)
        return sh.words + errexit + ("-c", "\n".join(cmd)), None
    if "\n" in cmd.rstrip("\n"):
        return text_argv(cmd, shell)
    return shell.c + (cmd,), None


def _resolve_depends(
    deps: list,
    names: list[str],
    steps: _Steps,
    index: dict[str, int],
    id_index: dict[str, int],
    chain: bool,
    problems: _Problems,
    outer: frozenset[str] = frozenset(),
) -> list[tuple[int, ...]]:
    """Each step's dependencies as ids (chain edges added), then a check for cycles.
    A name in `outer` (a caller's finished step, for a sub-DAG) is already satisfied."""
    n = len(deps)
    out: list[tuple[int, ...]] = [()] * n
    forward = False  # an edge to a later step (or itself): only then can there be a cycle
    hint_budget = _HINT_BUDGET
    chain = chain and steps.keys is None
    for i, dep in enumerate(deps):
        if dep is UNSET or dep is None:
            if chain and i:
                out[i] = (i - 1,)
            continue
        if dep.__class__ is str:
            j = index.get(dep)
            if j is None:
                j = id_index.get(dep)
            if j is not None:
                ids: tuple[int, ...] = (j,)
                if chain and i and j != i - 1:
                    ids = (j, i - 1)
                out[i] = ids
                if j >= i:
                    forward = True
                continue
            entries = [(dep, steps.path(i, "depends"))]
        else:
            if not dep:
                continue  # `depends: []`: explicitly nothing, even in a chain
            entries = [(d, steps.path(i, "depends", k)) for k, d in enumerate(dep)]
        resolved: list[int] = []
        seen: set[int] = set()  # a list scan would make 10,000 dependencies quadratic
        for name, where in entries:
            j = index.get(name)
            if j is None:
                j = id_index.get(name)
            if j is None and name in outer:
                continue
            if j is None:
                hint = ""
                if hint_budget >= len(index):
                    hint_budget -= len(index)
                    close = _close_matches(name, index)
                    hint = f" (did you mean `{close[0]}`?)" if close else ""
                problems.add(where, f"depends on unknown step `{name}`{hint}")
            elif j not in seen:
                seen.add(j)
                resolved.append(j)
                if j >= i:
                    forward = True
        if chain and i and i - 1 not in resolved:
            resolved.append(i - 1)
        out[i] = tuple(resolved)
    if forward:
        for cycle in cycles(out):
            first = cycle[0]
            text = " -> ".join(names[k] for k in cycle + [first])
            problems.add(steps.path(first, "depends"), f"dependency cycle: {text}")
    return out


def _check_nul(tree: dict, problems: _Problems) -> None:
    """Report every string holding a NUL character: no process can receive one."""
    work: list[tuple[Path, Any]] = [((), tree)]
    while work:
        path, node = work.pop()
        if type(node) is dict:
            for key, value in node.items():
                if "\0" in key:
                    problems.add(path + (key,), "a NUL character (`\\0`) is not allowed", True)
                work.append((path + (key,), value))
        elif type(node) is list:
            work.extend((path + (i,), v) for i, v in enumerate(node))
        elif type(node) is str and "\0" in node:
            problems.add(path, "a NUL character (`\\0`) is not allowed")


def _env_entries(env: Any, path: Path, problems: _Problems) -> list[tuple[str, str, Path]]:
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
                    problems.add(path + (j,), f"`{_show(item)}` is not `NAME=value` or a mapping")
                    continue
                items.append((name, value, path + (j,)))
    out = []
    for name, value, where in items:
        if not _ENV_NAME.fullmatch(name):
            problems.add(where, f"`{name}` is not a valid environment variable name", True)
        out.append((name, "" if value is None else value, where))
    return out


def _evaluate(
    entries: list[tuple[str, str, Path]],
    base: Mapping[str, str],
    cwd: str,
    problems: _Problems,
    outputs: frozenset[str] = frozenset(),
) -> tuple[tuple[str, str], ...]:
    """Expand each value in order over `base` plus the entries before it.

    A step's references to `outputs` (`${A}`, `$A`, `${A.key[0]}`, A not set by an
    entry before) are kept, as `outputs.output_ref`s that the engine fills in when the
    step starts, from the outputs it sees over `base` (as it fills in secrets)."""
    own: dict[str, str] = {}
    scope = ChainMap(own, base)
    names, paths = scope, None
    if outputs:
        from dagfast.runtime.outputs import output_ref

        names = ChainMap(own, {n: output_ref(n) for n in outputs}, base)

        def output_path(name: str, path: str) -> str | None:
            return output_ref(name, path) if name in outputs and name not in own else None

        paths = output_path

    out = []
    for name, value, where in entries:
        if has_references(value):
            try:
                value = expand(value, names, _runner(cwd, scope), paths)
            except ExpandError as e:
                problems.add(where, str(e))
                value = ""
        out.append((name, value))
        own[name] = value
    return tuple(out)


def _output_names(specs) -> frozenset[str]:
    """The names the steps' `output:` keys give (checked by stepopts.build_extra)."""
    found = set()
    for s in specs:
        out = s.output
        if out is not None and type(out) is not str:
            out = out.name
        if type(out) is str:
            found.add(out.lstrip("$"))
    return frozenset(found)


def _runner(cwd: str, scope: Mapping[str, str]) -> Callable[[str], str]:
    """Runs a backtick command with `sh -c` in `cwd`, with `scope` as its environment."""

    def run(command: str) -> str:
        try:
            import subprocess  # only DAGs with backticks pay for it

            done = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=dict(scope),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as e:
            raise ExpandError(f"cannot run `{_show(command)}`: {e.strerror}") from None
        if done.returncode:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            why = f": {lines[-1]}" if lines else ""
            raise ExpandError(f"`{_show(command)}` failed with exit code {done.returncode}{why}")
        return done.stdout.decode("utf-8", "replace")

    return run


def _step_dirs(
    built: _Built, steps: _Steps, dag_dir: str, scope, step_envs, problems: _Problems
) -> list[str]:
    """Each step's directory: its own `dir`, evaluated with its env, else the DAG's."""
    dirs = [dag_dir] * len(built.names)
    done: dict[tuple[str, tuple], str] = {}
    for i, wd in built.working_dirs:
        key = (wd, step_envs[i])
        d = done.get(key)
        if d is None:
            step_scope = scope.new_child(dict(step_envs[i])) if step_envs[i] else scope
            where = steps.path(i, "workingDir")
            d = done[key] = _directory(dag_dir, wd, step_scope, dag_dir, where, problems)
        dirs[i] = d
    return dirs


def _directory(
    base: str, value: str, scope: Mapping[str, str], cwd: str, where: Path, problems: _Problems
) -> str:
    """An absolute directory from a `workingDir`/`dir` value: variables expanded, a
    leading `~` made the home directory, a relative path joined to `base`."""
    try:
        value = expand(value, scope, _runner(cwd, scope))
    except ExpandError as e:
        problems.add(where, str(e))
        return base
    if value == "~" or value.startswith("~/"):
        value = scope.get("HOME", os.path.expanduser("~")) + value[1:]
    return os.path.normpath(os.path.join(base, value))


def _expand_int(
    expr: str, field: str, spell: dict[str, str], scope, cwd: str, problems: _Problems
) -> int:
    """An integer field written as an expression, expanded over the DAG's variables."""
    key = spell.get(field, field)
    try:
        value = expand(expr, scope, _runner(cwd, scope)).strip()
    except ExpandError as e:
        problems.add((key,), str(e))
        return 0
    if not _UINT.fullmatch(value):
        shown = f"is `{_show(value)}`" if value else "is empty"
        problems.add((key,), f"`{key}` {shown} after expansion; expected an integer >= 0")
        return 0
    return int(value)
