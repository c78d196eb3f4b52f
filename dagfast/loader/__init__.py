"""The loader: DAG file -> `model.Dag`, the only code that joins the `spec` and `model`
layers. One module per job, joined here:

    files     the files read: regular ones only, bounded
    tree      YAML bytes -> plain values (bounded; positions found only for errors)
    convert   plain values -> spec Structs (`spec.py`); msgspec errors -> problems
    problems  the problems found, located (file:line:col, `$.path`) when raised
    header    the DAG-level keys          steps     the steps (and `stepopts`, their extras)
    integers  the one route for integer keys
    evaluate  env, params, directories, `${VAR}` integers; backticks run here only
    dialects  Dagu 1.x or 2.x: which one a file is read as; 2.x forms rewritten
    subnames  where `call: NAME` finds its sub-DAG (a local `---` document, a file)

First the file becomes spec Structs (after its dialect is read and its Dagu 2.x forms
are rewritten as the 1.x ones they mean, `dialects`). Second everything the text as written can answer
is checked, and every problem is reported at once. Nothing runs until all of that
passed: only then, third, are values evaluated (backticks run commands).
"""

from __future__ import annotations

import gc
import os
import re
from collections import ChainMap
from collections.abc import Callable, Mapping

import msgspec

from dagfast.errors import LoadError, Problem
from dagfast.loader import dialects
from dagfast.loader import files, subnames
from dagfast.loader import header as hdr
from dagfast.loader import steps as stp
from dagfast.loader import tree as yamlsrc
from dagfast.loader.convert import Steps, convert
from dagfast.loader.dialects import Reading
from dagfast.loader.evaluate import Evaluator, env_entries, named_params
from dagfast.loader.problems import Problems
from dagfast.loader.stepopts import check_condition_types, conditions
from dagfast.model import Dag, Handler, Params, secret_ref

__all__ = ["DIALECT_ENV", "Reading", "load", "load_sub", "load_text"]

DIALECT_ENV = "DAGFAST_DIALECT"
"""`1` or `2`: read every file as Dagu 1.x or 2.x (`--dialect` sets it)."""
_REFS = re.compile(rb"\$\{(?:params|env|steps)\.")
_MAY_HOLD_NUL = re.compile(rb"\\(0|x00|u0000|U00000000)")  # YAML escapes; raw NULs fail to parse


def load(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    params: Params | None = None,
    evaluate: bool = True,
    dialect: str = "",
    on_reading: Callable[[Reading], None] | None = None,
) -> Dag:
    """Load and check the DAG file at `path`; raises LoadError listing every problem.
    `params` (see `dagfast.loader.params`) override the file's own. `evaluate=False`
    (`validate`, `dry`, `graph`) checks as much but runs no backtick: its text stays.
    `dialect` ("1", "2"; default DAGFAST_DIALECT, else the file's) forces a reading;
    `on_reading`, when given, is told which dialect the file was read as, and why."""
    return _load_file(path, environ, params, None, evaluate, dialect=dialect,
                      on_reading=on_reading)


def load_sub(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str],
    params: Params,
    work_dir: str,
    done: frozenset[str],
    evaluate: bool = True,
    document: str = "",
    dags_dir: str = "",
) -> Dag:
    """Load a DAG that a `call`/`run` step runs: a DAG file or a bare list of steps,
    whose `depends` on the caller's finished steps (`done`) are already satisfied;
    `document` names a local sub-DAG of the file (one after `---`)."""
    try:
        return _load_file(path, environ, params, _Sub(work_dir, done, dags_dir), evaluate,
                          document)
    except LoadError as e:
        _bare_list_paths(e, path)
        raise


def load_text(
    text: str | bytes,
    *,
    file: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    params: Params | None = None,
    evaluate: bool = True,
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
    return _load(data, _Source(file, "", base, "dag"), environ, params, None, evaluate)


class _Sub:
    """How a sub-DAG is loaded: it may be a bare list of steps, runs in its caller's
    directory unless it sets one, and may depend on caller steps that are `done`."""

    __slots__ = ("work_dir", "done", "dags_dir")

    def __init__(self, work_dir: str, done: frozenset[str], dags_dir: str = "") -> None:
        self.work_dir = work_dir
        self.done = done
        self.dags_dir = dags_dir


class _Source:
    """Where the text came from: its name in messages, its path in the model, the
    directory relative paths start from, and the DAG's name unless it gives one."""

    __slots__ = ("file", "path", "base_dir", "default_name", "local", "document", "dialect",
                 "on_reading", "elsewhere")  # fmt: skip

    def __init__(self, file: str, path: str, base_dir: str, default_name: str) -> None:
        self.file = file
        self.path = path
        self.base_dir = base_dir
        self.default_name = default_name
        self.local: tuple[str, ...] = ()  # the file's local sub-DAGs but this one
        self.document = ""  # this DAG's document name ("": the file's first)
        self.dialect = ""  # forced by the caller ("": DAGFAST_DIALECT, else the file's)
        self.on_reading = None  # told how the file was read (dialects.Reading), if set
        self.elsewhere = None  # (document, why) when another document is Dagu 2.x


def _load_file(path, environ, params, sub, evaluate: bool, document: str = "",
               dialect: str = "", on_reading=None) -> Dag:  # fmt: skip
    file = os.fspath(path)
    full = os.path.abspath(file)
    try:
        data = files.read(full, yamlsrc.MAX_BYTES)
    except OSError as e:
        raise LoadError([Problem(f"cannot read the file: {e.strerror}", file=file)]) from None
    stem = os.path.splitext(os.path.basename(full))[0]
    src = _Source(file, full, os.path.dirname(full), stem)
    src.dialect = dialect
    src.on_reading = on_reading
    if len(data) <= yamlsrc.MAX_BYTES:
        docs = yamlsrc.documents(data)
        if len(docs) > 1 or document:
            names, trees = _local_names(docs, file, bool(document))
            if document:
                if document not in names:
                    raise LoadError([Problem(f"no local sub-DAG `{document}` in the file",
                                             file=file)])
                k = names.index(document)
                src.default_name = src.document = document
            else:
                k = 0
            data = docs[k]
            src.local = tuple(n for n in names[1:] if n != document)
            src.elsewhere = _two_elsewhere(names, trees, docs, k)
    return _load(data, src, environ, params, sub, evaluate)


def _two_elsewhere(names: list[str], trees: list, docs: list[bytes], k: int):
    """(which document, why) when a document of the file but the k-th is Dagu 2.x: the
    whole file, its local sub-DAGs included, is read in one dialect."""
    for j, tree in enumerate(trees):
        if j != k and tree is not None:
            why = dialects.two_in(tree, _REFS.search(docs[j]) is not None)
            if why:
                return (f"local sub-DAG `{names[j]}`" if j else "first document"), why
    return None


def _local_names(docs: list[bytes], file: str, first: bool):
    """"" for the first document, then each later one's `name:` (each must have one,
    and a name of its own), and the documents' trees (the first's only if `first`);
    LoadError, located, otherwise."""
    names, problems = [""], []
    trees = [yamlsrc.parse(docs[0], file) if first else None]
    for doc in docs[1:]:
        line = doc.count(b"\n", 0, len(doc) - len(doc.lstrip(b"\n"))) + 1
        tree = yamlsrc.parse(doc, file)
        trees.append(tree)
        name = tree.get("name")
        if type(name) is not str or not name:
            problems.append(Problem("a local sub-DAG (a document after `---`) needs a `name:`",
                                    "$", file, line, 1))
        elif name in names:
            problems.append(Problem(f"two local sub-DAGs are named `{name}`", "$.name", file,
                                    line, 1))
        names.append(name if type(name) is str else "")
    if problems:
        raise LoadError(problems)
    return names, trees


def _bare_list_paths(error: LoadError, path) -> None:
    """A bare list of steps is loaded as `{"steps": [...]}`; its problems' paths say
    `$[0]`, as its text does, not `$.steps[0]` (`yamlsrc.locate` already maps lines)."""
    if not any(p.path and p.path.startswith("$.steps") for p in error.problems):
        return
    try:
        data = files.read(os.fspath(path), yamlsrc.MAX_BYTES)
    except OSError:
        return
    if not yamlsrc.is_list(data):
        return
    for p in error.problems:
        if p.path == "$.steps" or (p.path and p.path.startswith("$.steps[")):
            p.path = "$" + p.path[len("$.steps"):]


class _Checked:
    """What the checks of the text as written produced, for evaluation to finish."""

    __slots__ = ("ints", "int_exprs", "dag_entries", "built", "handler_steps",
                 "handlers_built", "secrets", "schedule")  # fmt: skip


def _load(data: bytes, src: _Source, environ, given_params, sub: _Sub | None,
          evaluate: bool = True) -> Dag:  # fmt: skip
    """`_load_data` with the cyclic garbage collector paused: a load allocates hundreds
    of thousands of dicts, lists and strings and makes no cycle that matters, and the
    collector would walk them again each time they grew by a quarter (15 to 20% of a
    100,000-step load). It runs again, as before, once the load is over."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return _load_data(data, src, environ, given_params, sub, evaluate)
    finally:
        if paused:
            gc.enable()


def _load_data(data: bytes, src: _Source, environ, given_params, sub: _Sub | None,
               evaluate: bool = True) -> Dag:  # fmt: skip
    if environ is None:
        environ = os.environ
    tree = yamlsrc.parse(data, src.file, steps_list=sub is not None)
    problems = Problems(data, src.file)
    forced = src.dialect or environ.get(DIALECT_ENV, "")
    if forced not in ("",) + dialects.DIALECTS:
        raise LoadError([Problem(f"{DIALECT_ENV} (or --dialect) must be 1 or 2, not "
                                 f"`{forced}`", file=src.file)])
    has_refs = _REFS.search(data) is not None
    reading = dialects.read(tree, forced, problems, has_refs, src.elsewhere)
    if has_refs:
        dialects.rewrite_refs(tree)
    # First: spec Structs, in one msgspec call when the file has no problem.
    header, spell, steps = convert(tree, problems)
    if reading.renamed:
        steps.respell(reading.renamed)
    steps.step_refs = has_refs and b"${steps." in data
    # Second: everything the text as written can answer.
    checked = _check(header, spell, steps, environ, problems, sub)
    if _MAY_HOLD_NUL.search(data):
        for path, at_key in yamlsrc.nul_paths(tree):
            problems.add(path, "a NUL character (`\\0`) is not allowed", at_key)
    problems.raise_if_any()
    # Third: evaluation, which may run commands (backticks).
    ev = Evaluator(problems, commands=evaluate)
    dag = _evaluate(header, spell, steps, checked, src, environ, given_params, sub, ev)
    if src.on_reading is not None:
        src.on_reading(reading)
    dags_dir = sub.dags_dir if sub is not None else environ.get(subnames.DAGS_ENV, "")
    return msgspec.structs.replace(
        dag, local_dags=src.local, document=src.document,
        dags_dir=os.path.abspath(dags_dir) if dags_dir else src.base_dir,
    )


def _check(header, spell, steps: Steps, environ, problems: Problems, sub) -> _Checked:
    """Check the header and the steps, resolving what needs no variable."""
    c = _Checked()
    hdr.name(header, spell, problems)
    c.ints, c.int_exprs = hdr.integers(header, spell, problems)
    shell = hdr.dag_shell(header, spell, environ, problems)
    c.dag_entries = env_entries(header.env, (spell.get("env", "env"),), problems)
    c.built = stp.build(
        steps, header.type == "chain", shell, problems, sub.done if sub else frozenset()
    )
    c.handler_steps = hdr.handler_steps(header, spell, problems)
    if c.handler_steps is not None:
        c.handler_steps.step_refs = steps.step_refs  # kept as written there (no scope)
    c.secrets = hdr.secrets(header, spell, problems) if header.secrets else ()
    if header.preconditions is not None:
        check_condition_types(
            header.preconditions, lambda key, *rest: (spell.get(key, key),) + rest, problems
        )
    c.handlers_built = None
    if c.handler_steps is not None:
        c.handlers_built = stp.build(c.handler_steps, False, shell, problems)
        stp.check_extras(c.handler_steps, problems)
    stp.check_extras(steps, problems)
    c.schedule = hdr.schedule(header, spell, problems) if header.schedule is not None else ()
    if header.dask_scheduler is not None or header.dask_shared_dir is not None:
        hdr.check_cluster(header, spell, problems)
    return c


def _evaluate(header, spell, steps: Steps, c: _Checked, src: _Source, environ, given_params,
              sub, ev: Evaluator) -> Dag:  # fmt: skip
    """Directories first, since commands run in the DAG's; then the env, then params
    (which see the env), then the integer keys written as `${VAR}`, then each step."""
    problems = ev.problems
    dag_dir = src.base_dir if sub is None else sub.work_dir
    if header.working_dir:
        where = (spell.get("workingDir", "workingDir"),)
        dag_dir = ev.directory(src.base_dir, header.working_dir, environ, where)
    dag_entries = c.dag_entries
    if header.dotenv is not None:
        where = (spell.get("dotenv", "dotenv"),)
        dag_entries = hdr.dotenv(header.dotenv, dag_dir, where, problems) + dag_entries
        problems.raise_if_any()  # a dotenv file that cannot be used: no backtick runs
    dag_env = ev.env(dag_entries, environ, dag_dir)
    scope = ChainMap(dict(dag_env), dict(environ))
    params = ev.params(header.params, (spell.get("params", "params"),), given_params, scope,
                       dag_dir)  # fmt: skip
    if params:
        scope = scope.new_child(named_params(params))
    ints = dict(c.ints)
    for key, (expr, where, most) in c.int_exprs.items():
        ints[key] = ev.integer(expr, where[0], where, scope, dag_dir, most)
    step_scope = scope
    if c.secrets:
        # Secrets are read when the run starts, never here: a step's `env` that refers
        # to one holds a reference the engine fills in (secrets win over DAG env and
        # params, a step's own env over secrets, as in Dagu).
        step_scope = scope.new_child({s.name: secret_ref(s.name) for _, s in c.secrets})
    steps_out = stp.finish(c.built, steps, dag_dir, step_scope, params, ev)
    handlers: tuple[Handler, ...] = ()
    if c.handlers_built is not None:
        hsteps = stp.finish(c.handlers_built, c.handler_steps, dag_dir, step_scope, params, ev)
        handlers = tuple(map(Handler, c.handler_steps.keys, hsteps))
    cluster = ("", "", "")
    if header.step_executor or header.dask_scheduler is not None or header.dask_shared_dir is not None:
        cluster = hdr.cluster(header, spell, scope, dag_dir, ev)
    problems.raise_if_any()
    return Dag(
        name=header.name or src.default_name,
        steps=steps_out,
        path=src.path,
        dir=dag_dir,
        description=header.description or "",
        env=tuple(dag_env),
        max_active_steps=ints["maxActiveSteps"],
        type=header.type,
        params=params,
        max_active_runs=ints["maxActiveRuns"],
        schedule=c.schedule,
        skip_if_successful=header.skip_if_successful,
        timeout_sec=ints["timeoutSec"],
        delay_sec=ints["delaySec"],
        max_cleanup_sec=ints["maxCleanUpTimeSec"],
        max_output_size=ints["maxOutputSize"],
        hist_retention_runs=ints["histRetentionRuns"],
        hist_retention_days=ints["histRetentionDays"],
        preconditions=conditions(header.preconditions),
        handlers=handlers,
        step_executor=cluster[0],
        dask_scheduler=cluster[1],
        dask_shared_dir=cluster[2],
        secrets=hdr.located_secrets(c.secrets, spell, problems) if c.secrets else (),
    )
