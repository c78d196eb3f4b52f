"""The steps: converted specs -> the model's Steps.

`build` resolves and checks what the text as written can answer (names, ids, argv,
depends, cycles, env entries, the extra keys); `finish`, once nothing failed, evaluates
what needs the DAG's variables (env, directories, extras) and binds `$1`, `$2`...

Both work column by column: a field no step sets costs one C-level count, and only the
steps that are not a plain one-line command go through the slower paths.
"""

from __future__ import annotations

import re
import shlex
from functools import partial
from operator import attrgetter

from msgspec import UNSET
from msgspec.structs import replace

from dagfast.loader.convert import Steps
from dagfast.loader.evaluate import Evaluator, env_entries
from dagfast.loader.problems import CONTROL, Problems, did_you_mean, name_problem, show
from dagfast.loader.shellcmd import Shell, sets_errexit, shell_words_or_report, text_argv
from dagfast.loader.spec import StepSpec
from dagfast.loader.stepopts import build_extra, check_extra, featured
from dagfast.loader.tree import typed_text
from dagfast.model import Params, Step, StepExtra
from dagfast.topo import cycles, seen_outputs

__all__ = ["Built", "build", "check_extras", "finish"]

RESERVED_IDS = frozenset(("env", "params", "args", "stdout", "stderr", "output", "outputs"))

_ID = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]*")
_HINT_BUDGET = 20_000  # names difflib may compare in all (0.3 s; 1.4 s per 100,000-name lookup)
_COLUMNS = [
    attrgetter(field)
    for field in ("name", "command", "script", "shell", "working_dir", "env", "id",
                  "description", "depends")
]  # fmt: skip


class Built:
    """The per-step columns of the model, in file order, before evaluation."""

    __slots__ = (
        "names", "argv", "depends", "ids", "descriptions", "working_dirs", "scripts",
        "env_entries",
    )  # fmt: skip


class _Columns:
    """The fields of every step as columns (one list per field, in file order)."""

    __slots__ = ("written", "cmds", "scripts", "shells", "wds", "envs", "ids", "descs", "deps")

    def __init__(self, specs: list[StepSpec]) -> None:
        (self.written, self.cmds, self.scripts, self.shells, self.wds, self.envs, self.ids,
         self.descs, self.deps) = [list(map(g, specs)) for g in _COLUMNS]  # fmt: skip


def build(
    steps: Steps,
    chain: bool,
    dag_shell: tuple[str, ...],
    problems: Problems,
    outer: frozenset[str] = frozenset(),
) -> Built:
    """Names, ids, argv and depends of every step, checking as it goes. A name in
    `outer` (a caller's finished step, for a sub-DAG) is a satisfied dependency."""
    specs = steps.specs
    n = len(specs)
    if n and set(map(type, specs)) != {StepSpec}:
        _check_shorthands(steps, problems)
        specs = steps.specs = [s if type(s) is StepSpec else _shorthand(s) for s in specs]
    cols = _Columns(specs)
    built = Built()
    built.names = names = _names(steps, cols, problems)
    index = _index(steps, names, cols.written, problems)
    built.argv, built.scripts = _argvs(steps, cols, Shell(dag_shell, True), problems)
    built.working_dirs = (
        [] if cols.wds.count(None) == n else [(i, wd) for i, wd in enumerate(cols.wds) if wd]
    )
    built.descriptions = [""] * n if cols.descs.count(None) == n else [d or "" for d in cols.descs]
    built.env_entries = _env_entries(steps, cols.envs, problems)
    built.ids = cols.ids
    id_index = _id_index(steps, cols.ids, index, problems)
    depends = _Depends(steps, index, id_index, chain, problems, outer)
    built.depends = depends.resolve(cols.deps, names)
    return built


def _check_shorthands(steps: Steps, problems: Problems) -> None:
    """A step written as a bare number (`- 42`) is no command anyone means; `- true`
    is (the shell's `true`)."""
    for i, item in enumerate(steps.specs):
        if type(item) is str and typed_text(item) == "number":
            if problems.plain_type(steps.path(i)) == "number":
                problems.add(steps.path(i), f"expected a step (a command or a mapping), got the "
                                            f"number `{item}` (quote it to mean the command)")


def _shorthand(item: str | None) -> StepSpec:
    """A bare string in the steps list is its command; an empty item is an empty step."""
    return StepSpec() if item is None else StepSpec(command=item)


def _names(steps: Steps, cols: _Columns, problems: Problems) -> list[str]:
    """Each step's name: its key (steps as a mapping), as written, or made up."""
    written, keys = cols.written, steps.keys
    _check_names(steps, written, problems)
    if keys is not None:
        for i, name in enumerate(written):
            if name and name != keys[i]:
                problems.add(
                    steps.path(i, "name"),
                    f"the name `{name}` differs from the step's key `{keys[i]}`",
                )
        return list(keys)
    if None in written or "" in written:
        # A step with an `id` and no name is called by its id (Dagu 2.x names it so).
        return [
            w or cols.ids[i]
            or (f"script_{i + 1}" if cols.scripts[i] is not None else f"cmd_{i + 1}")
            for i, w in enumerate(written)
        ]
    return written


def _check_names(steps: Steps, written: list, problems: Problems) -> None:
    """Names holding a control character (one C-level pass over all names when none do)."""
    if steps.keys is not None and CONTROL.search("".join(steps.keys)):
        for i, key in enumerate(steps.keys):
            if (why := name_problem(key)) is not None:
                problems.add(steps.path(i), why, True)
    text = "".join(written) if None not in written else "".join(filter(None, written))
    if CONTROL.search(text):
        for i, name in enumerate(written):
            if name and (why := name_problem(name)) is not None:
                problems.add(steps.path(i, "name"), why)


def _index(steps: Steps, names: list[str], written: list, problems: Problems) -> dict[str, int]:
    """Name -> step, which depends and ids resolve through; duplicates reported."""
    index = dict(zip(names, range(len(names))))
    if len(index) == len(names):
        return index
    index = {}
    for i, name in enumerate(names):
        if name in index:
            where = steps.path(i, "name") if written[i] else steps.path(i)
            problems.add(where, f"duplicate step name `{name}`")
        else:
            index[name] = i
    return index


def _argvs(steps: Steps, cols: _Columns, default: Shell, problems: Problems):
    """argv and script of every step: plain one-line commands with the DAG's shell at
    C speed, the rest one by one."""
    n = len(cols.cmds)
    single = default.c
    argvs = [
        single + (c,) if c.__class__ is str and c and "\n" not in c else None for c in cols.cmds
    ]
    scripts: list[str | None] = [None] * n
    odd = set()
    if None in argvs:
        odd.update(i for i, a in enumerate(argvs) if a is None)
    for column in (cols.shells, cols.scripts):
        if column.count(None) != n:
            odd.update(i for i, x in enumerate(column) if x is not None)
    for i in sorted(odd):
        s = steps.specs[i]
        if not s.command and not s.script:
            argvs[i] = ()
            if i in steps.incomplete or s.run is not None or s.call is not None:
                pass
            elif s.command is not None and s.script is None:
                at = steps.path(i, "command")  # (a 2.x file's `run:`, as the user wrote it)
                problems.add(at, f"`{at[-1]}` is empty")
            elif s.parallel is not None or s.matrix is not None:
                key = "parallel" if s.parallel is not None else "matrix"
                problems.add(steps.path(i, key), f"`{key}` runs something per item: give the "
                             "step a `command` (or `script`), or `call` a DAG", True)
            else:
                problems.add(
                    steps.path(i), "the step has nothing to run (no `command` or `script`)"
                )
        else:
            argvs[i], scripts[i] = _command(s, steps.path(i), default, problems)
    return argvs, scripts


def _command(s: StepSpec, where: tuple, default: Shell, problems: Problems):
    """argv and script of a step that is not a plain one-line command."""
    shell = default
    if s.shell is not None:
        words = shell_words_or_report(s.shell, where + ("shell",), problems)
        if words is None:
            return (), None
        shell = Shell(words, False)  # a step's own shell gets no -e
    cmd, script = s.command, s.script
    if script is not None:
        if cmd:
            return _interpreter(cmd, where + ("command",), problems), script
        return text_argv(script, shell)
    if type(cmd) is list:
        # One sh-like script with -e: it stops at the first failing line.
        sh = shell if shell.sh_like else Shell(("sh",), True)
        errexit = () if sets_errexit(sh.words) else ("-e",)
        return sh.words + errexit + ("-c", "\n".join(cmd)), None
    if "\n" in cmd.rstrip("\n"):
        return text_argv(cmd, shell)
    return shell.c + (cmd,), None


def _interpreter(cmd, where: tuple, problems: Problems) -> tuple[str, ...]:
    """The argv a `script` is given to, from the step's `command` (one line)."""
    if type(cmd) is not str or "\n" in cmd.rstrip("\n"):
        problems.add(where, "`command` must be one line when `script` is given")
        return ()
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        problems.add(where, f"cannot split `{show(cmd)}` into words ({e})")
        return ()
    if not argv:
        problems.add(where, "`command` is blank")
    return tuple(argv)


def _env_entries(steps: Steps, envs: list, problems: Problems) -> list[list]:
    """Each step's `env` as entries (name, unevaluated value, path)."""
    out: list[list] = [[]] * len(envs)
    if envs.count(None) != len(envs):
        for i, env in enumerate(envs):
            if env is not None:
                out[i] = env_entries(env, steps.path(i, "env"), problems)
    return out


def _id_index(steps: Steps, ids: list, index: dict[str, int], problems: Problems):
    """Id -> step, each id checked (form, reserved words, duplicates, other names)."""
    id_index: dict[str, int] = {}
    if ids.count(None) == len(ids):
        return id_index
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
    return id_index


class _Depends:
    """Resolves `depends` (names or ids) to step ids, adds chain edges, finds cycles."""

    def __init__(self, steps: Steps, index, id_index, chain: bool, problems, outer) -> None:
        self.steps = steps
        self.index = index
        self.id_index = id_index
        self.chain = chain and steps.keys is None
        self.problems = problems
        self.outer = outer
        self.hint_budget = _HINT_BUDGET
        self.forward = False  # an edge to a later step (or itself): only then a cycle

    def resolve(self, deps: list, names: list[str]) -> list[tuple[int, ...]]:
        """Each step's dependencies as ids, then a check for cycles."""
        out: list[tuple[int, ...]] = [()] * len(deps)
        chain, index = self.chain, self.index  # locals: this loop runs once per step
        for i, dep in enumerate(deps):
            if dep is UNSET or dep is None:
                if chain and i:
                    out[i] = (i - 1,)
            elif dep.__class__ is str:
                j = index.get(dep)
                if j is None or (chain and i and j != i - 1) or j >= i:
                    out[i] = self._one(i, dep)
                else:
                    out[i] = (j,)
            elif dep:  # `depends: []`: explicitly nothing, even in a chain
                out[i] = self._many(i, [(d, self.steps.path(i, "depends", k))
                                        for k, d in enumerate(dep)])  # fmt: skip
        if self.forward:
            for cycle in cycles(out):
                first = cycle[0]
                text = " -> ".join(names[k] for k in cycle + [first])
                self.problems.add(self.steps.path(first, "depends"), f"dependency cycle: {text}")
        return out

    def _find(self, name: str) -> int | None:
        j = self.index.get(name)
        return self.id_index.get(name) if j is None else j

    def _one(self, i: int, dep: str) -> tuple[int, ...]:
        """`depends: name` that is not simply an earlier step's name."""
        j = self._find(dep)
        if j is None:
            return self._many(i, [(dep, self.steps.path(i, "depends"))])
        if j >= i:
            self.forward = True
        if self.chain and i and j != i - 1:
            return (j, i - 1)
        return (j,)

    def _many(self, i: int, entries: list) -> tuple[int, ...]:
        resolved: list[int] = []
        seen: set[int] = set()  # a list scan would make 10,000 dependencies quadratic
        for name, where in entries:
            j = self._find(name)
            if j is None:
                if name not in self.outer:
                    self._unknown(name, where)
            elif j not in seen:
                seen.add(j)
                resolved.append(j)
                if j >= i:
                    self.forward = True
        if self.chain and i and i - 1 not in resolved:
            resolved.append(i - 1)
        return tuple(resolved)

    def _unknown(self, name: str, where: tuple) -> None:
        hint = ""
        if self.hint_budget >= len(self.index):
            self.hint_budget -= len(self.index)
            hint = did_you_mean(name, self.index)
        self.problems.add(where, f"depends on unknown step `{name}`{hint}")


def check_extras(steps: Steps, problems: Problems) -> None:
    """The extra keys of each step as written (`stepopts.check_extra`), before anything
    is evaluated; notes which steps have any. A plain step costs one C-level pass."""
    steps.featured = featured(steps.specs)
    for i in steps.featured:
        if i not in steps.incomplete:  # its keys did not convert: already reported
            check_extra(steps.specs[i], partial(steps.path, i), problems)


def finish(
    built: Built, steps: Steps, dag_dir: str, scope, params: Params, ev: Evaluator
) -> tuple[Step, ...]:
    """The model's Steps: env and directories evaluated, extras built, `$1`... bound."""
    outputs = _output_names(steps.specs) if any(built.env_entries) else frozenset()
    step_envs = [
        ev.env(entries, scope, dag_dir, outputs) if entries else ()
        for entries in built.env_entries
    ]
    dirs = _dirs(built, steps, dag_dir, scope, step_envs, ev)
    extras = _extras(built, steps, scope, step_envs, dirs, ev)
    argvs = built.argv
    positional = tuple(v for k, v in params if k is None)
    if positional:
        # `$1`, `$2`... are the shell's own positional parameters: `sh -c TEXT $0 $1...`.
        argvs = [a + (a[0],) + positional if len(a) > 2 and a[-2] == "-c" else a for a in argvs]
    return tuple(
        map(Step, built.names, argvs, built.depends, built.ids, built.descriptions,
            dirs, step_envs, built.scripts, extras)
    )  # fmt: skip


def _output_names(specs) -> frozenset[str]:
    """The names the steps' `output:` keys give (checked by stepopts.check_extra)."""
    found = set()
    for s in specs:
        out = s.output
        if out is not None and type(out) is not str:
            out = out.name
        if type(out) is str:
            found.add(out.lstrip("$"))
    return frozenset(found)


def _dirs(built: Built, steps: Steps, dag_dir: str, scope, step_envs, ev: Evaluator) -> list[str]:
    """Each step's directory: its own `dir`, evaluated with its env, else the DAG's."""
    dirs = [dag_dir] * len(built.names)
    done: dict[tuple[str, tuple], str] = {}
    for i, wd in built.working_dirs:
        key = (wd, step_envs[i])
        d = done.get(key)
        if d is None:
            step_scope = scope.new_child(dict(step_envs[i])) if step_envs[i] else scope
            d = done[key] = ev.directory(dag_dir, wd, step_scope, steps.path(i, "workingDir"))
        dirs[i] = d
    return dirs


def _extras(built: Built, steps: Steps, scope, step_envs, dirs, ev: Evaluator):
    """Each step's StepExtra (None for a plain step), and who sees which outputs."""
    extras: list = [None] * len(built.names)
    for i in steps.featured:
        step_scope = scope.new_child(dict(step_envs[i])) if step_envs[i] else scope
        extras[i] = build_extra(
            steps.specs[i], partial(steps.path, i), step_scope, dirs[i], ev.problems, ev.known
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
    if steps.step_refs:
        _step_output_reads(built, step_envs, extras)
    return extras


_STEP_OUTPUT_REF = re.compile("\ue004([A-Za-z][A-Za-z0-9_]*)\\.[A-Za-z][A-Za-z0-9_]*\ue005")


def _step_output_reads(built: Built, step_envs, extras: list) -> None:
    """Steps whose command or env reads `${steps.ID.outputs.NAME}`: the ancestors that
    declare outputs and whose ids they name (`StepExtra.reads`; () when none does, and
    the reference stays as written, as in Dagu)."""
    producers = {i: e.outputs for i, e in enumerate(extras) if e is not None and e.outputs}
    seen = seen_outputs(built.depends, producers) if producers else {}
    for i, argv in enumerate(built.argv):
        texts = [*argv, built.scripts[i] or "", *(v for _, v in step_envs[i])]
        if extras[i] is not None:
            texts.extend(v for _, v in extras[i].params)
        ids = {m.group(1) for t in texts if "\ue004" in t for m in _STEP_OUTPUT_REF.finditer(t)}
        if ids:
            reads = tuple(p for p in seen.get(i, ()) if built.ids[p] in ids)
            extras[i] = replace(extras[i] or StepExtra(), reads=reads)
