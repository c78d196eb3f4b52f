"""`dagfast graph`: a DAG drawn as Graphviz dot, Mermaid, or text in levels.

Each renderer is one pass over the steps and their dependencies (linear time; 100,000
steps render in well under a second) and returns the whole text. Nodes are named by id
(`s0`, `s1`, ...) and labelled with the step's name, so that no name needs quoting twice.
"""

from __future__ import annotations

from dagfast.model import Dag

__all__ = ["FORMATS", "levels", "render"]

FORMATS = ("dot", "mermaid", "text")


def render(dag: Dag, fmt: str) -> str:
    """The DAG in format `fmt` (one of FORMATS), ending with a newline."""
    if fmt == "dot":
        return _dot(dag)
    if fmt == "mermaid":
        return _mermaid(dag)
    if fmt == "text":
        return _text(dag)
    raise ValueError(f"unknown graph format {fmt!r}; expected one of {', '.join(FORMATS)}")


def levels(dag: Dag) -> list[int]:
    """Each step's level: 0 without dependencies, else 1 + the highest of its
    dependencies' (the loader has rejected cycles)."""
    steps = dag.steps
    n = len(steps)
    dependents: list[list[int]] = [[] for _ in range(n)]
    waiting = [0] * n
    for i, s in enumerate(steps):
        waiting[i] = len(s.depends)
        for d in s.depends:
            dependents[d].append(i)
    level = [0] * n
    ready = [i for i in range(n) if not waiting[i]]
    for i in ready:  # grows while we walk it: Kahn's algorithm
        nxt = level[i] + 1
        for j in dependents[i]:
            if level[j] < nxt:
                level[j] = nxt
            waiting[j] -= 1
            if not waiting[j]:
                ready.append(j)
    return level


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(dag: Dag) -> str:
    out = [
        f"digraph {_dot_str(dag.name)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded", fontname="Helvetica"];',
    ]
    out += [f"  s{i} [label={_dot_str(s.name)}];" for i, s in enumerate(dag.steps)]
    out += [f"  s{d} -> s{i};" for i, s in enumerate(dag.steps) for d in s.depends]
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid_str(text: str) -> str:
    # Inside "..." Mermaid takes HTML entities; a quote would end the label.
    return '"' + text.replace("&", "#amp;").replace('"', "#quot;").replace("\n", " ") + '"'


def _mermaid(dag: Dag) -> str:
    out = ["flowchart LR"]
    out += [f"  s{i}[{_mermaid_str(s.name)}]" for i, s in enumerate(dag.steps)]
    out += [f"  s{d} --> s{i}" for i, s in enumerate(dag.steps) for d in s.depends]
    return "\n".join(out) + "\n"


def _text(dag: Dag) -> str:
    """Levels in order; each step with what it waits for:

        level 1
          process_a  <- setup
    """
    steps = dag.steps
    level = levels(dag)
    by_level: list[list[int]] = [[] for _ in range(max(level, default=-1) + 1)]
    for i, lv in enumerate(level):
        by_level[lv].append(i)
    edges = sum(len(s.depends) for s in steps)
    out = [f"{dag.name}: {len(steps)} steps, {edges} dependencies, {len(by_level)} levels"]
    for lv, ids in enumerate(by_level):
        out.append(f"level {lv}")
        width = min(32, max(len(steps[i].name) for i in ids))
        for i in ids:
            s = steps[i]
            if s.depends:
                waits = ", ".join(steps[d].name for d in s.depends)
                out.append(f"  {s.name:<{width}}  <- {waits}")
            else:
                out.append(f"  {s.name}")
    return "\n".join(out) + "\n"
