"""Graph algorithms over dependency lists: step ids in, step ids out, no I/O.

`deps[i]` is the tuple of ids step i waits for. Nothing here recurses, so 100,000-step
chains and cycles are fine.
"""

from __future__ import annotations

__all__ = ["cycles", "seen_outputs", "topological"]


def seen_outputs(depends: list[tuple[int, ...]], producers: dict[int, str]):
    """For each step with an ancestor in `producers`: those ancestors, farthest first
    (so that the nearest one wins a name clash)."""
    n = len(depends)
    order = topological(depends)
    rank = {v: k for k, v in enumerate(order)}
    seen: list[frozenset[int]] = [frozenset()] * n
    empty = seen[0]
    for v in order:
        acc = empty
        for d in depends[v]:
            got = seen[d] | {d} if d in producers else seen[d]
            acc = got if not acc else (acc if got <= acc else acc | got)
        seen[v] = acc
    return {v: tuple(sorted(s, key=rank.__getitem__)) for v, s in enumerate(seen) if s}


def topological(depends: list[tuple[int, ...]]) -> list[int]:
    """Step ids with every step after its dependencies (the graph has no cycle)."""
    n = len(depends)
    pending = [len(set(d)) for d in depends]
    dependents: list[list[int]] = [[] for _ in range(n)]
    for v, ds in enumerate(depends):
        for d in set(ds):
            dependents[d].append(v)
    order = [v for v in range(n) if not pending[v]]
    for v in order:
        for w in dependents[v]:
            pending[w] -= 1
            if not pending[w]:
                order.append(w)
    return order


def cycles(deps: list[tuple[int, ...]]) -> list[list[int]]:
    """One cycle per strongly connected component that has one, each starting at its
    lowest id and following dependencies; iterative Tarjan, then a BFS per cycle."""
    n = len(deps)
    order = [0] * n  # 0: unvisited; else discovery number + 1
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    counter = 0
    components: list[list[int]] = []
    for root in range(n):
        if order[root]:
            continue
        work = [(root, 0)]
        while work:
            v, k = work[-1]
            if k == 0:
                counter += 1
                order[v] = low[v] = counter
                stack.append(v)
                on_stack[v] = True
            edges = deps[v]
            if k < len(edges):
                work[-1] = (v, k + 1)
                w = edges[k]
                if not order[w]:
                    work.append((w, 0))
                elif on_stack[w] and order[w] < low[v]:
                    low[v] = order[w]
                continue
            work.pop()
            if work:
                u = work[-1][0]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == order[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in deps[v]:
                    components.append(comp)
    cycles = []
    for comp in sorted(components, key=min):
        members = set(comp)
        start = min(comp)
        # Shortest way back to `start` through the component.
        parent = {start: -1}
        frontier = [start]
        end = -1
        while frontier and end < 0:
            nxt = []
            for v in frontier:
                for w in deps[v]:
                    if w == start:
                        end = v
                        break
                    if w in members and w not in parent:
                        parent[w] = v
                        nxt.append(w)
                if end >= 0:
                    break
            frontier = nxt
        path = []
        v = end
        while v != -1:
            path.append(v)
            v = parent[v]
        path.reverse()
        cycles.append(path)
    return cycles
