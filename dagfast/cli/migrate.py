"""`dagfast migrate FILE`: the file in the other Dagu dialect, edited as text so that its
comments, quoting and layout stay as they were.

1.x -> 2.x: camelCase keys become snake_case, `command:`/`script:` become `run:`, a
1.x `run: child` becomes `call: child`, a step's `shell:` moves under `with:`.
2.x -> 1.x: the reverse, and `action: dag.run` with `with: {dag, params}` becomes
`call:` and `params:`, `${params.x}`/`${env.X}` become `${x}`/`${X}`. Only DAG, step
and option keys are renamed (never the names in `env:` or `params:`). What has no
equivalent (2.x `outputs:`, `${steps.…}`, other actions; a 1.x step with both
`command:` and `script:`) is a located error, and nothing is written.
"""

from __future__ import annotations

import os
import re
import sys

import yaml
from yaml._yaml import CParser
from yaml.events import (
    AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
    SequenceEndEvent, SequenceStartEvent, StreamEndEvent,
)

from dagfast.errors import LoadError, Problem, UsageError
from dagfast.loader import load
from dagfast.loader import tree as yamlsrc
from dagfast.loader.dialects import read
from dagfast.loader.problems import Problems
from dagfast.loader.spec import ALIASES, NESTED
from dagfast.loader.tree import render

__all__ = ["main", "migrate"]

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_NAMESPACED = re.compile(r"(?<![\\$])\$\{(?:params|env)\.([A-Za-z_][A-Za-z0-9_]*)\}")
_STEP_REF = re.compile(r"(?<![\\$])\$\{steps\.")


class _Node:
    """A mapping key found in the text, with its value's place and kind."""

    __slots__ = ("doc", "path", "key", "kind", "start", "end", "value", "vstart", "vend",
                 "vtype", "flow")  # fmt: skip

    def __init__(self, doc, path, key, kind, start, end) -> None:
        self.doc, self.path, self.key, self.kind = doc, path, key, kind
        self.start, self.end = start, end  # (line, col) of the key, 0-based
        self.value = None  # the scalar value's text, if it is one
        self.vstart = self.vend = (0, 0)
        self.vtype = ""  # "scalar", "map" or "seq"
        self.flow = False


def _child_kind(kind: str, key: str, canon: str | None) -> str:
    """The kind of mapping found under `key` of a mapping of `kind` ("" for data)."""
    if canon is None:
        return ""
    if kind == "dag" and canon == "steps":
        return "steps"
    if kind == "handlerOn":
        return "step"
    if canon in NESTED:
        return NESTED[canon]
    if kind == "step" and key == "with":
        return "with"
    return ""


def _keys(text: str) -> list[_Node]:
    """Every mapping key of every document whose kind is known (dag, step, options)."""
    parser = CParser(text)
    found: list[_Node] = []
    # stack frames: [is_map, path, kind, pending key node, index]
    stack: list[list] = []
    doc = -1
    while True:
        ev = parser.get_event()
        cls = ev.__class__
        if cls is DocumentStartEvent:
            doc += 1
            continue
        if cls in (MappingEndEvent, SequenceEndEvent):
            stack.pop()
            if stack:
                _value_end(stack[-1], ev)
            continue
        if cls is StreamEndEvent:
            return found
        if cls not in (ScalarEvent, AliasEvent, MappingStartEvent, SequenceStartEvent):
            continue
        top = stack[-1] if stack else None
        if top is not None and top[0] and top[3] is None:
            # A key: noted with its mapping's kind (renamed only if the kind has keys).
            key = ev.value if cls is ScalarEvent else ""
            kind = top[2]
            node = _Node(doc, top[1], key, kind, (ev.start_mark.line, ev.start_mark.column),
                         (ev.end_mark.line, ev.end_mark.column))
            top[3] = node
            if kind and cls is ScalarEvent and not ev.style:
                found.append(node)
            if cls in (MappingStartEvent, SequenceStartEvent):
                stack.append([cls is MappingStartEvent, (), "", None, 0])
            continue
        # A value (of the pending key), a sequence item, or a document's root.
        if top is None:
            path, kind = (), "dag"
        elif top[0]:
            node = top[3]
            path = top[1] + (node.key,)
            canon = ALIASES.get(node.kind, {}).get(node.key) if node.kind else None
            kind = "step" if node.kind == "stepsMap" else _child_kind(node.kind, node.key, canon)
            node.vstart = (ev.start_mark.line, ev.start_mark.column)
            node.vtype = {ScalarEvent: "scalar", MappingStartEvent: "map"}.get(cls, "seq")
            node.flow = getattr(ev, "flow_style", False) or False
            if cls is ScalarEvent:
                node.value = ev.value
        else:
            path = top[1] + (top[4],)
            top[4] += 1
            kind = {"steps": "step", "condition": "condition", "outputItem": "outputItem"}.get(
                top[2], "")
        if cls in (MappingStartEvent, SequenceStartEvent):
            if cls is SequenceStartEvent and top is not None and top[0]:
                kind = kind if kind in ("steps", "condition", "outputItem") else ""
            elif cls is MappingStartEvent and kind == "steps":
                kind = "stepsMap"
            stack.append([cls is MappingStartEvent, path, kind, None, 0])
        elif top is not None and top[0]:
            top[3].vend = (ev.end_mark.line, ev.end_mark.column)
            top[3] = None


def _value_end(parent: list, ev) -> None:
    """A collection ended: it was the value of `parent`'s pending key (or an item)."""
    if parent[0] and parent[3] is not None:
        parent[3].vend = (ev.end_mark.line, ev.end_mark.column)
        parent[3] = None


class _Edits:
    """Text edits by position, applied from the end so that earlier ones stay valid."""

    def __init__(self, text: str, file: str) -> None:
        self.lines = text.split("\n")
        self.file = file
        self.spans: list[tuple[tuple[int, int], tuple[int, int], str]] = []
        self.problems: list[Problem] = []

    def replace(self, start, end, new: str) -> None:
        self.spans.append((start, end, new))

    def refuse(self, node: _Node, what: str) -> None:
        where = render(node.path + (node.key,))
        self.problems.append(Problem(what, where, self.file, node.start[0] + 1,
                                     node.start[1] + 1))

    def text(self) -> str:
        if self.problems:
            self.problems.sort(key=lambda p: (p.line or 0, p.column or 0))
            raise LoadError(self.problems)
        lines = self.lines
        last = max((end[0] for _, end, _ in self.spans), default=0)
        lines.extend([""] * (last + 1 - len(lines)))
        for start, end, new in sorted(self.spans, reverse=True):
            (l0, c0), (l1, c1) = start, end
            head, tail = lines[l0][:c0], lines[l1][c1:]
            lines[l0:l1 + 1] = (head + new + tail).split("\n")
        return "\n".join(lines)


def _rename(edits: _Edits, node: _Node, new: str) -> None:
    if new != node.key:
        edits.replace(node.start, node.end, new)


def _steps(nodes: list[_Node]) -> dict[tuple, dict[str, _Node]]:
    """Each step's keys, by the step's path."""
    out: dict[tuple, dict[str, _Node]] = {}
    for n in nodes:
        if n.kind == "step":
            out.setdefault((n.doc,) + n.path, {})[n.key] = n
    return out


def _to_2(text: str, file: str) -> str:
    nodes = _keys(text)
    edits = _Edits(text, file)
    for n in nodes:
        canon = ALIASES.get(n.kind, {}).get(n.key)
        if canon is None or (n.kind == "step" and canon in ("command", "script", "run", "shell")):
            continue  # data (env names...), or a step key moved below
        _rename(edits, n, _CAMEL.sub(r"_\1", canon).lower())
    for keys in _steps(nodes).values():
        command, script, run = keys.get("command"), keys.get("script"), keys.get("run")
        if command is not None and script is not None:
            edits.refuse(script, "a step with both `command:` (the interpreter) and `script:` "
                         "has no Dagu 2.x form: give the script a `#!` line and drop `command:`")
            continue
        if run is not None:
            _rename(edits, run, "call")
        for n in (command, script):
            if n is not None:
                _rename(edits, n, "run")
        shell = keys.get("shell")
        if shell is not None:
            if shell.vtype != "scalar" or shell.vstart[0] != shell.vend[0] or run is not None:
                edits.refuse(shell, "move `shell:` under `with:` by hand (its value is not one line)")
            else:
                value = edits.lines[shell.vstart[0]][shell.vstart[1]:shell.vend[1]]
                pad = " " * (shell.start[1] + 2)
                edits.replace(shell.start, shell.vend, f"with:\n{pad}shell: {value}")
    return edits.text()


def _to_1(text: str, file: str) -> str:
    nodes = _keys(text)
    edits = _Edits(text, file)
    steps = _steps(nodes)
    withs = {id(n) for keys in steps.values() for k, n in keys.items() if k == "with"}
    for n in nodes:
        if n.kind == "with" or id(n) in withs:
            continue
        canon = ALIASES.get(n.kind, {}).get(n.key)
        if n.kind == "dag" and n.key == "dialect" and not n.path:
            edits.replace((n.start[0], 0), (n.vend[0] + 1, 0), "")
            continue
        if n.kind == "step" and n.key in ("action", "outputs"):
            continue
        if canon is not None and canon != "run":
            _rename(edits, n, canon)
        if n.kind == "dag" and canon == "maxActiveSteps" and (n.value or "").startswith("-"):
            edits.replace(n.vstart, n.vend, "0")  # 2.x: unlimited, which 1.x writes 0
    for keys in steps.values():
        _step_to_1(keys, edits)
    for m in _STEP_REF.finditer(text):
        line = text.count("\n", 0, m.start())
        col = m.start() - (text.rfind("\n", 0, m.start()) + 1)
        edits.problems.append(Problem("`${steps.…}` reads a Dagu 2.x output; Dagu 1.x has none "
                                      "(use `output:`)", None, file, line + 1, col + 1))
    out = edits.text()
    return _NAMESPACED.sub(r"${\1}", out)


def _step_to_1(keys: dict[str, _Node], edits: _Edits) -> None:
    run, action, with_ = keys.get("run"), keys.get("action"), keys.get("with")
    if "outputs" in keys:
        edits.refuse(keys["outputs"], "`outputs:` ($DAGU_OUTPUT_FILE) has no Dagu 1.x form "
                     "(1.x has `output:`, a step's stdout)")
    if run is not None:
        _rename(edits, run, "command")
    if action is not None and action.value != "dag.run":
        edits.refuse(action, f"`action: {action.value}` has no Dagu 1.x form that dagfast writes")
        return
    if with_ is None:
        if action is not None:
            edits.refuse(action, "`action: dag.run` needs `with.dag`")
        return
    if with_.vtype != "map" or with_.flow or with_.vstart[0] == with_.start[0]:
        edits.refuse(with_, "write `with:` as an indented block to migrate it")
        return
    # Drop the `action:` and `with:` lines; the keys under `with:` become the step's own
    # (`dag:` is `call:`), moved left to the step's indentation.
    for n in (action, with_):
        if n is not None:
            edits.replace((n.start[0], 0), (n.start[0] + 1, 0), "")
    shift = with_.vstart[1] - with_.start[1]
    for k in range(with_.vstart[0], min(with_.vend[0] + 1, len(edits.lines))):
        line = edits.lines[k]
        indent = len(line) - len(line.lstrip(" "))
        if line.strip() and indent >= with_.vstart[1]:  # not the next key, after the block
            edits.replace((k, 0), (k, shift), "")
    renames = {"dag": "call"} if action is not None else {}
    for n in _children(with_, edits):
        if n.key in renames:
            edits.replace(n.start, n.end, renames[n.key])
        elif n.key not in ("params", "shell"):
            edits.refuse(n, f"`with.{n.key}` has no Dagu 1.x form")


def _children(with_: _Node, edits: _Edits) -> list[_Node]:
    """The keys directly under a block `with:` (found by their indentation)."""
    out = []
    indent = with_.vstart[1]
    for k in range(with_.vstart[0], min(with_.vend[0] + 1, len(edits.lines))):
        line = edits.lines[k]
        m = re.match(r"( *)([A-Za-z_][A-Za-z0-9_]*)\s*:", line)
        if m and len(m.group(1)) == indent:
            out.append(_Node(with_.doc, with_.path + ("with",), m.group(2), "with",
                             (k, indent), (k, indent + len(m.group(2)))))
    return out


def migrate(path: str, to: str | None = None) -> tuple[str, str, str]:
    """(the text of `path` in the other dialect, or in `to`; from; to). LoadError,
    located, for a file that does not load or what has no equivalent."""
    readings = []
    load(path, evaluate=False, on_reading=readings.append)
    source = readings[0].dialect
    target = to or ("2" if source == "1" else "1")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if target == source and to is not None and readings[0].forced == "":
        return text, source, target
    try:
        out = _to_2(text, path) if target == "2" else _to_1(text, path)
    except yaml.YAMLError as e:  # pragma: no cover - the file loaded above
        raise LoadError([Problem(f"YAML error: {e}", file=path)]) from None
    if target == "2" and _reads_as(out, path) != "2":
        out = _say_dialect_2(out)
    return out, source, target


def _reads_as(text: str, file: str) -> str:
    """The dialect dagfast reads `text` (its first document) as."""
    data = yamlsrc.documents(text.encode("utf-8"))[0]
    tree = yamlsrc.parse(data, file)
    return read(tree, "", Problems(data, file), b"${" in data).dialect


def _say_dialect_2(text: str) -> str:
    """`dialect: 2` at the top of the first document (after its comments and `---`):
    without another 2.x form, a one-word `run: make` would read as 1.x's sub-DAG."""
    lines = text.split("\n")
    k = 0
    while k < len(lines) and re.fullmatch(r"\s*(#.*|---\s*|%.*)?", lines[k]):
        k += 1
    lines.insert(k, "dialect: 2  # dagfast: `run:` is a command (a 1.x file's `run:` calls a DAG)")
    return "\n".join(lines)


def main(args) -> int:
    """The `migrate` command: the new text to stdout or `--output`."""
    text, source, target = migrate(args.dag, args.to)
    if args.output:
        if os.path.isdir(args.output):
            raise UsageError(f"--output {args.output}: is a directory, not a file")
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{args.dag}: Dagu {source}.x -> {target}.x, written to {args.output}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
