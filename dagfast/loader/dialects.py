"""Dagu's two dialects in one loader: which one a file is written in, and its 2.x forms
rewritten into the ones the rest of the loader reads.

The rule (docs/dagu-differences.md): a file is read as Dagu 2.x when it says so
(`dialect: 2`, `--dialect 2`, DAGFAST_DIALECT) or uses a form only 2.x has - a step's
`action:`, `with:` or `outputs:`, a `${params.…}`, `${env.…}` or `${steps.…}`
reference, or a `run:` that is a command line (a list, or text holding white space) -
and as Dagu 1.x otherwise, where `run: NAME` calls the sub-DAG NAME. A file's local
sub-DAGs (its documents after `---`) are read in the file's dialect.

Only `run:` means two things; everything else reads the same in both (dagfast takes
camelCase and snake_case keys alike), so a file that mixes the two is refused only
where its meaning would depend on the reading.
"""

from __future__ import annotations

import re
import shlex

from dagfast.loader.problems import Problems, show
from dagfast.loader.spec import ALIASES
from dagfast.loader.tree import Path, render
from dagfast.model import step_output_ref

__all__ = ["DIALECTS", "WARNING", "Reading", "read", "rewrite_refs", "two_in"]

DIALECTS = ("1", "2")
WARNING = ('steps run in parallel (dagfast\'s default); Dagu 1.x ran them in order - add '
           '"type: chain" for that')
"""Said once when a Dagu 1.x file without `type:` or any `depends` has several steps."""

_STEP_2 = ("action", "with", "outputs")
_REFS = re.compile(r"(?<![\\$])\$\{(?:params|env|steps)\.")
_ESCAPED = re.compile(r"(\\|\$)\$\{((?:params|env|steps)\.)")
_NAMESPACED = re.compile(r"(?<![\\$])\$\{(?:params|env)\.([A-Za-z_][A-Za-z0-9_]*)\}")
_STEP_OUTPUT = re.compile(
    r"(?<![\\$])\$\{steps\.([A-Za-z][A-Za-z0-9_]*)\.outputs\.([A-Za-z][A-Za-z0-9_]*)\}"
)
_CAMEL = re.compile(r"[a-z][A-Z]")
_SUB_FILE = re.compile(r"[^\s]+\.ya?ml")
_RUN_WITH = frozenset(("shell",))
_DAG_RUN_WITH = frozenset(("dag", "params"))


class Reading:
    """How a file is read: `dialect` ("1" or "2"), `why` (one clause), and what was
    seen on the way: the first camelCase key and the first form only 2.x has."""

    __slots__ = ("dialect", "why", "camel", "two", "forced", "renamed", "warning", "matters")

    def __init__(self) -> None:
        self.dialect = "1"
        self.why = "no form only Dagu 2.x has"
        self.camel: Path | None = None
        self.two: tuple[Path, str] | None = None
        self.forced = ""
        # a step's path -> {canonical key: the user's key path} for keys rewritten
        self.renamed: dict[Path, dict[str, tuple]] = {}
        self.warning = ""
        self.matters = False  # the file has a `run:`, whose meaning the reading decides

    def said(self) -> str:
        """The reading in one line, for `validate`."""
        line = f"read as Dagu {self.dialect}.x: {self.why}"
        if self.matters:
            line += ("; there `run:` is a command" if self.dialect == "2"
                     else "; there `run: NAME` calls the sub-DAG NAME")
        return line


def two_in(tree: dict, has_refs: bool) -> str:
    """Why a document of the file (another than the one being read) is Dagu 2.x, or "":
    a file is read in one dialect, its local sub-DAGs included."""
    if tree.get("dialect") == "2":
        return "its `dialect: 2`"
    steps = tree.get("steps")
    pairs = (list(steps.items()) if type(steps) is dict else
             list(enumerate(steps)) if type(steps) is list else [])  # fmt: skip
    r = Reading()
    _scan(tree, [(("steps", k), s) for k, s in pairs], r, has_refs)
    return "" if r.two is None else f"{r.two[1]} at `{render(r.two[0])}`"


def read(tree: dict, forced: str, problems: Problems, has_refs: bool,
         elsewhere: tuple[str, str] | None = None) -> Reading:  # fmt: skip
    """Decide the dialect of `tree` (`forced`: "1", "2" or "" from the command line or
    the environment; `elsewhere`: (document, why) when another document of the file is
    2.x) and rewrite its 2.x forms in place; problems are located."""
    r = Reading()
    key = tree.pop("dialect", None)
    if key is not None:
        if key not in DIALECTS:
            problems.add(("dialect",), f"expected `1` or `2` (Dagu 1.x or 2.x), got `{show(key)}`")
        elif not forced:
            forced, r.forced = key, "the file's `dialect: " + key + "`"
    if forced and not r.forced:
        r.forced = f"--dialect {forced}"
    steps = tree.get("steps")
    if type(steps) is dict:  # steps keyed by name (dagfast's form): paths use the names
        pairs = [(("steps", k), s) for k, s in steps.items()]
    else:
        pairs = [(("steps", i), s) for i, s in enumerate(steps)] if type(steps) is list else []
    keys = _scan(tree, pairs, r, has_refs)
    r.matters = "run" in keys
    if r.forced:
        r.dialect, r.why = forced, f"{r.forced} says so"
    elif r.two is not None:
        r.dialect = "2"
        r.why = f"it uses {r.two[1]} at `{render(r.two[0])}`, which only Dagu 2.x has"
    elif elsewhere is not None:
        r.dialect = "2"
        r.why = f"the file's {elsewhere[0]} is Dagu 2.x ({elsewhere[1]})"
    elif r.camel is not None:
        r.why = f"no form only Dagu 2.x has; camelCase keys such as `{r.camel[-1]}` are 1.x's"
    if r.dialect == "2":
        _rewrite_header(tree)
    _rich_params(tree, problems)
    if r.dialect == "2" or keys & {"action", "with"}:
        for at, step in pairs:
            if type(step) is dict and (r.dialect == "2" or "action" in step or "with" in step):
                _rewrite_step(at, step, r, problems)
    hkey = "handler_on" if "handler_on" in tree else "handlerOn"
    handlers = tree.get(hkey)
    for k, step in handlers.items() if type(handlers) is dict else ():
        if type(step) is dict and (r.dialect == "2" or "action" in step or "with" in step):
            _rewrite_step((hkey, k), step, r, problems)
    r.warning = _warning(tree, pairs, keys, r)
    return r


def _scan(tree: dict, pairs: list, r: Reading, has_refs: bool) -> set:
    """Note the first camelCase key and the first form only 2.x has; the keys the steps
    use. They are gathered in one C-level pass: only a key that matters sends it looking
    for its step."""
    for k in tree:
        if _CAMEL.search(k) and k in ALIASES["dag"]:
            r.camel = (k,)
            break
    dicts = [s for _, s in pairs if type(s) is dict]
    keys = set().union(*dicts) if dicts else set()
    if r.camel is None:
        camel = sorted(k for k in keys if _CAMEL.search(k) and k in ALIASES["step"])
        if camel:
            r.camel = next(at + (k,) for at, s in pairs if type(s) is dict
                           for k in s if k in camel)
    if keys & {"run", *_STEP_2}:
        for at, step in pairs:
            if type(step) is not dict:
                continue
            for k in _STEP_2:
                if k in step:
                    r.two = (at + (k,), f"`{k}:`")
                    break
            run = step.get("run")
            if r.two is None and (type(run) is list or (type(run) is str and _is_command(run))):
                r.two = (at + ("run",), "a `run:` that is a command")
            if r.two is not None:
                break
    if r.two is None and has_refs:
        found = _first_ref(tree, ())
        if found is not None:
            r.two = found
    return keys


def _is_command(text: str) -> bool:
    return any(c.isspace() for c in text.strip()) or "\n" in text


def _first_ref(node, path: Path):
    """(path, words) of the first `${params.…}`-like reference in the tree, or None."""
    if type(node) is str:
        m = _REFS.search(node)
        return (path, f"a `{m.group()}…}}` reference") if m else None
    pairs = node.items() if type(node) is dict else enumerate(node) if type(node) is list else ()
    for k, v in pairs:
        found = _first_ref(v, path + (k,))
        if found is not None:
            return found
    return None


def rewrite_refs(node):
    """`${params.X}` and `${env.X}` as the `${X}` they are in dagfast (params and env are
    the steps' variables); `${steps.ID.outputs.NAME}` as a reference the step fills in
    when it starts; `\\${…}` and `$${…}` stay literal text (`${…}`, which the loader
    and the shell leave alone once escaped with one backslash)."""
    if type(node) is str:
        if "${" not in node:
            return node
        node = _NAMESPACED.sub(r"${\1}", node)
        node = _STEP_OUTPUT.sub(lambda m: step_output_ref(m.group(1), m.group(2)), node)
        return _ESCAPED.sub(r"\\${\2", node)
    if type(node) is dict:
        for k, v in node.items():
            node[k] = rewrite_refs(v)
    elif type(node) is list:
        for k, v in enumerate(node):
            node[k] = rewrite_refs(v)
    return node


def _rewrite_header(tree: dict) -> None:
    """2.x: a non-positive `max_active_steps` means unlimited (1.x refuses a negative)."""
    for key in ("max_active_steps", "maxActiveSteps"):
        value = tree.get(key)
        if type(value) is str and re.fullmatch(r"\s*-[0-9]+\s*", value):
            tree[key] = "0"


_RICH = frozenset(("name", "type", "default", "description", "enum", "minimum", "maximum",
                   "required"))


def _rich_params(tree: dict, problems: Problems) -> None:
    """Dagu 2.x's typed params (`- name: env`, `default: dev`, `type`, `enum`...) as the
    `NAME: default` form. An entry is one when it has `name` and another of its keys (a
    lone `- name: x` is the param `name`); its checks (type, enum, bounds) are not made."""
    params = tree.get("params")
    if type(params) is not list:
        return
    for k, item in enumerate(params):
        if type(item) is not dict or "name" not in item or len(item) < 2:
            continue
        if not set(item) <= _RICH:
            extra = sorted(set(item) - _RICH)[0]
            if set(item) & (_RICH - {"name"}):
                problems.add(("params", k, extra), f"`{extra}` is not supported in a typed "
                             "param (dagfast reads `name`, `default`, `type`, `description`, "
                             "`enum`, `minimum`, `maximum`, `required`)", True)
            continue
        name = item["name"]
        if type(name) is not str or not name:
            problems.add(("params", k, "name"), "expected the param's name (text)")
            continue
        default = item.get("default")
        params[k] = {name: "" if default is None else default}


def _rewrite_step(at: Path, step: dict, r: Reading, problems: Problems) -> None:
    """One 2.x step as dagfast's keys: `run:` is `command:`, `action: dag.run` with
    `with: {dag, params}` is `call:` and `params:`, `action: exec` a one-line command."""
    renamed = r.renamed.setdefault(at, {})
    action = step.pop("action", None)
    with_ = step.pop("with", None)
    if with_ is not None and type(with_) is not dict:
        problems.add(at + ("with",), "expected a mapping of inputs")
        with_ = {}
    with_ = with_ or {}
    run = step.get("run") if r.dialect == "2" else None
    if run is not None:
        if r.forced == "" and type(run) is str and _SUB_FILE.fullmatch(run.strip()):
            problems.add(at + ("run",), f"`run: {show(run)}` calls a sub-DAG in Dagu 1.x but "
                         f"is a command in 2.x, which this file is read as ({r.why}); write "
                         f"`call: {show(run.strip())}` for the sub-DAG, or `dialect: 1`")
        for other in ("command", "script", "call"):
            if other in step:
                problems.add(at + (other,), f"`run` is the command in Dagu 2.x: give `run` or "
                             f"`{other}`, not both", True)
        if action is not None:
            problems.add(at + ("action",), "give `run` or `action`, not both", True)
        step["command"] = step.pop("run")
        renamed["command"] = ("run",)
        for k, v in with_.items():
            if k not in _RUN_WITH:
                problems.add(at + ("with", k), f"`with.{k}` is not supported for a `run:` step "
                             "(dagfast takes `with.shell`)", True)
            elif "shell" in step:
                problems.add(at + ("with", k), "give `shell` or `with.shell`, not both", True)
            else:
                step["shell"] = v
                renamed["shell"] = ("with", "shell")
        return
    if action is None:
        if with_:
            problems.add(at + ("with",), "`with` needs an `action` or a `run`", True)
        return
    if action == "dag.run":
        for other in ("call", "command", "script"):
            if other in step:
                problems.add(at + (other,), f"give `action: dag.run` or `{other}`, not both", True)
        for k in with_:
            if k not in _DAG_RUN_WITH:
                problems.add(at + ("with", k), f"`with.{k}` is not an input of `dag.run` "
                             "(`dag`, `params`)", True)
        if "dag" not in with_:
            problems.add(at + ("action",), "`action: dag.run` needs `with.dag`: the DAG to run")
            step["call"] = ""
        else:
            step["call"] = with_["dag"]
        renamed["call"] = ("with", "dag")
        if "params" in with_:
            if "params" in step:
                problems.add(at + ("params",), "give `params` or `with.params`, not both", True)
            step["params"] = with_["params"]
            renamed["params"] = ("with", "params")
    elif action == "exec":
        command, args = with_.get("command"), with_.get("args") or []
        if type(command) is not str or not command or type(args) is not list:
            problems.add(at + ("with",), "`action: exec` needs `with.command` (text) and "
                         "`with.args` (a list), if any")
            return
        step["command"] = shlex.join([command] + [str(a) for a in args])
        renamed["command"] = ("with", "command")
    else:
        problems.add(at + ("action",), f"`action: {show(action)}` is not supported (dagfast "
                     "runs `run:` commands, `action: dag.run` and `action: exec`)", True)
        step.setdefault("command", ":")  # refused above: not "nothing to run" as well


def _warning(tree: dict, pairs: list, keys: set, r: Reading) -> str:
    """The meaning-change line, when it applies: a 1.x file (camelCase) with several
    steps, no `type:` and no `depends` anywhere."""
    if r.dialect != "1" or r.camel is None or "type" in tree or len(pairs) < 2:
        return ""
    if type(tree.get("steps")) is not list or "depends" in keys:
        return ""
    return WARNING
