"""The package's shape, kept honest (STYLE.md rules 9 and 13): no module over 700 lines,
no import circle among dagfast's modules, a function-local import of a dagfast module
only where a comment says why (start-up speed), and no reaching into another object's
`_private` attributes."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dagfast"
MAX_LINES = 700

# Where a module may touch another object's `_name` (file: attribute), and why; at most 10.
PRIVATE_ALLOWED: dict[str, str] = {
    # RunDir's own constructors (create, reopen) on the instance they are making.
    "dagfast/records/store.py: ._lock": "RunDir.create and reopen lock the run they take",
    "dagfast/records/store.py: ._open_journal": "RunDir.create opens the new run's journal",
    "dagfast/records/store.py: ._make_reserve": "RunDir.create sets space aside for it",
    "dagfast/records/store.py: ._release": "RunDir.create releases a run it could not make",
    # Not private: the os module's documented exit without the interpreter's teardown.
    "dagfast/cli/app.py: ._exit": "main ends the process once a command is done",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        found[name] = path
    return found


@functools.cache
def parsed(path: Path) -> ast.Module:
    """`path`'s syntax tree, parsed once for all the tests of this module."""
    return ast.parse(path.read_text())


def imports(path: Path, known: dict[str, Path]):
    """(target module, line, is it inside a function, the line's text) of each import of
    a dagfast module in `path`."""
    tree = parsed(path)
    lines = path.read_text().splitlines()
    local_nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    local_nodes.add(id(inner))
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dagfast"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                targets.append(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("dagfast")]
        for target in targets:
            if target in known:
                yield target, node.lineno, id(node) in local_nodes, lines[node.lineno - 1]


def test_no_module_is_over_700_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_import_circle_among_dagfast_modules():
    known = modules()
    graph = {name: {t for t, *_ in imports(path, known) if t != name}
             for name, path in known.items()}
    # Tarjan's strongly connected components: any with more than one module is a circle.
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_every_function_local_import_of_dagfast_says_why():
    known = modules()
    bare = []
    for name, path in known.items():
        lines = path.read_text().splitlines()
        for target, line, local, text in imports(path, known):
            if local and not _says_why(lines, line - 1):
                bare.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text.strip()}")
    assert bare == []


def _says_why(lines: list[str], k: int) -> bool:
    """Whether import line `k`, or another line of its block of imports, or a comment
    just above the block, gives the reason."""
    while k >= 0:
        text = lines[k].strip()
        if "#" in text:
            return True
        if not text.startswith(("from ", "import ")):
            return False
        k -= 1
    return False


def test_no_module_touches_another_objects_private_attributes():
    reached = []
    for name, path in modules().items():
        for node in ast.walk(parsed(path)):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Name) and owner.id.startswith("_"):
                continue  # a private module alias (`_sched.PASS`)
            where = f"{path.relative_to(PACKAGE.parent)}: .{attr}"
            if where not in PRIVATE_ALLOWED:
                reached.append(f"{where} (line {node.lineno})")
    assert len(PRIVATE_ALLOWED) <= 10
    assert reached == []
