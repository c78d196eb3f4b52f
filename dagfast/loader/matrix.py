"""`matrix:` as written -> the model's Matrix, every problem located; and how many
combinations it makes, counted without listing them.

The combinations themselves are listed at run time (`runtime.items.combinations`); the
rules, as GitHub Actions has them:

- every combination of one value per axis (axes in file order, the last one fastest);
- less each combination that has all the pairs of one `exclude` entry;
- then each `include` entry, in order: it extends every remaining combination whose
  values for the original axes equal its own (adding its other keys, which may
  overwrite what an earlier include added, never an axis value); an entry that
  extends none is a combination of its own, after the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from dagfast.loader.problems import did_you_mean, got, show
from dagfast.model import Matrix

__all__ = ["LISTS", "build", "count"]

LISTS = ("include", "exclude")
"""The matrix keys that are not axes."""

_BUDGET = 200_000
"""Steps of the counting walk before `count` gives up (the run still stops at maxItems)."""

Where = Callable[..., tuple]


def build(value: dict, where: Where, problems) -> Matrix | None:
    """The Matrix of a step's `matrix:` mapping (`where(...)`: a path in the step), or
    None after reporting each problem. Values are text as written (the YAML tree keeps
    `3` as "3" and `true` as "true", as for `parallel` items); null is ""."""
    before = len(problems)
    axes = []
    for name, values in value.items():
        if name in LISTS:
            continue
        at = where("matrix", name)
        if type(values) is not list:
            problems.add(at, f"the axis `{name}` must be a list of values, got {got(values)}")
            continue
        if not values:
            problems.add(at, f"the axis `{name}` is empty: give it at least one value")
            continue
        if all(type(v) is dict for v in values):
            hint = did_you_mean(name, LISTS)
            problems.add(at, f"the axis `{name}` must be a list of values, not of mappings"
                             f"{hint}")
            continue
        texts: list[str] = []
        seen: set[str] = set()
        for k, v in enumerate(values):
            if type(v) in (list, dict):
                problems.add(where("matrix", name, k), f"expected a value (text or a number), "
                                                       f"got {got(v)}")
                continue
            text = "" if v is None else v
            if text in seen:
                problems.add(where("matrix", name, k),
                             f"`{show(text)}` is already a value of `{name}` (its "
                             "combinations would run twice)")
            seen.add(text)
            texts.append(text)
        axes.append((name, tuple(texts)))
    names = [n for n in value if n not in LISTS]
    exclude = _entries(value.get("exclude"), "exclude", names, where, problems)
    include = _entries(value.get("include"), "include", names, where, problems)
    if not names and not include and len(problems) == before:
        problems.add(where("matrix"), "the matrix has no axis and no `include`: give at "
                                      "least one axis, such as `os: [linux, mac]`")
    if len(problems) > before:
        return None
    return Matrix(tuple(axes), include, exclude)


def _entries(raw, key: str, axes: list[str], where: Where, problems) -> tuple:
    """`include` / `exclude` as tuples of (name, text) pairs; exclude names axes only."""
    if raw is None:
        return ()
    if type(raw) is not list:
        problems.add(where("matrix", key), f"expected a list of mappings, got {got(raw)}")
        return ()
    out = []
    for k, entry in enumerate(raw):
        at = where("matrix", key, k)
        if type(entry) is not dict:
            problems.add(at, f"expected a mapping of axis names to values, got {got(entry)}")
            continue
        if not entry:
            what = "would leave out every combination" if key == "exclude" else "adds nothing"
            problems.add(at, f"an empty `{key}` entry {what}")
            continue
        pairs = []
        for name, v in entry.items():
            if key == "exclude" and name not in axes:
                known = ", ".join(f"`{a}`" for a in axes) or "none"
                problems.add(where("matrix", key, k, name),
                             f"`exclude` names `{name}`, which is not an axis (the axes: "
                             f"{known}){did_you_mean(name, axes)}", True)
            elif type(v) in (list, dict):
                problems.add(where("matrix", key, k, name),
                             f"expected a value (text or a number), got {got(v)}")
            else:
                pairs.append((name, "" if v is None else v))
        out.append(tuple(pairs))
    return tuple(out)


def count(m: Matrix, budget: int = _BUDGET) -> int | None:
    """How many combinations `m` makes (the rules above), exactly; None when working it
    out would take more than `budget` steps (many overlapping excludes)."""
    walk = _Walk(m, budget)
    try:
        total = walk.remaining({}) if m.axes else 0
        names = {name for name, _ in m.axes}
        for entry in m.include:
            fixed = {k: v for k, v in entry if k in names}
            if not m.axes or walk.remaining(fixed) == 0:
                total += 1
    except _TooBig:
        return None
    return total


class _TooBig(Exception):
    """The counting walk ran out of budget."""


class _Walk:
    """Counts the combinations that agree with some fixed values and have no exclude
    entry's pairs: a walk over the axes that branches only on the values some
    still-possible exclude entry names (the other values all count alike)."""

    def __init__(self, m: Matrix, budget: int) -> None:
        self.names = [name for name, _ in m.axes]
        self.values = [Counter(vs) for _, vs in m.axes]
        self.sizes = [len(vs) for _, vs in m.axes]
        index = {name: k for k, name in enumerate(self.names)}
        # An entry naming a value that no axis has leaves nothing out.
        self.excludes = [
            dict(e) for e in m.exclude if all(v in self.values[index[a]] for a, v in e)
        ]
        self.last = [max(index[a] for a in e) for e in self.excludes]
        self.budget = budget

    def remaining(self, fixed: dict[str, str]) -> int:
        return self._walk(0, tuple(range(len(self.excludes))), fixed)

    def _walk(self, k: int, alive: tuple[int, ...], fixed: dict[str, str]) -> int:
        self.budget -= 1
        if self.budget < 0:
            raise _TooBig
        if any(self.last[e] < k for e in alive):
            return 0  # every pair of some exclude entry is matched: all left out
        if not alive:
            total = 1
            for j in range(k, len(self.names)):
                name = self.names[j]
                total *= self.values[j][fixed[name]] if name in fixed else self.sizes[j]
            return total
        if k == len(self.names):
            return 1  # pragma: no cover - an alive entry names an axis, so last[e] < k
        name, counts = self.names[k], self.values[k]
        if name in fixed:
            branches = [(fixed[name], counts[fixed[name]])]
            other = 0
        else:
            named = {self.excludes[e][name] for e in alive if name in self.excludes[e]}
            branches = [(v, counts[v]) for v in named]
            other = self.sizes[k] - sum(n for _, n in branches)
        total = 0
        for v, n in branches:
            if n:
                keep = tuple(e for e in alive if self.excludes[e].get(name, v) == v)
                total += n * self._walk(k + 1, keep, fixed)
        if other:
            keep = tuple(e for e in alive if name not in self.excludes[e])
            total += other * self._walk(k + 1, keep, fixed)
        return total
