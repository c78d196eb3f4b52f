"""The one route for integer keys, at DAG and step level alike (`maxActiveSteps`,
`timeoutSec`, `retryPolicy.limit`, ...): written as a number or as a `${VAR}`
expression, every value is checked by `integer`, which says what is wrong in one shape:

    expected an integer >= 0, got `soon`                       (as written)
    `timeoutSec` is `soon` after expansion; expected an integer >= 0   (expanded)
"""

from __future__ import annotations

import re

from dagfast.loader.problems import got, show
from dagfast.loader.tree import Path

__all__ = ["MAX_INT", "MOST", "integer"]

MAX_INT = 2**63 - 1
"""The largest integer any key takes: the engine's and the system's counters are 64-bit."""

MOST: dict[str, int] = {"maxActiveRuns": 10_000}
"""Integer keys with a tighter bound than MAX_INT (canonical key -> largest value).
`maxActiveRuns`: each run slot is a lock file that a waiting run scans."""

_UINT = re.compile(r"[0-9]+")


def integer(
    value, key: str, where: Path, problems, *, expanded: bool = False, most: int = MAX_INT,
    least: int = 0,
) -> int | None:
    """`value` (an int, or text as written or as expanded) as an integer from `least`
    to `most`; otherwise a problem at `where` and None. `key` is the user's spelling."""
    if type(value) is int and least <= value <= most:
        return value
    text = value.strip() if type(value) is str else value
    if type(text) is str and _UINT.fullmatch(text):
        digits = text.lstrip("0")
        number = int(digits or "0") if len(digits) <= 20 else most + 1  # no 4,300-digit int()
        if least <= number <= most:
            return number
        expect = f"an integer from {least} to {most:,}" if number > most else ""
    else:
        expect = ""
    expect = expect or f"an integer >= {least}"
    if expanded:
        shown = f"is `{show(text)}`" if text else "is empty"
        problems.add(where, f"`{key}` {shown} after expansion; expected {expect}")
    else:
        problems.add(where, f"expected {expect}, got {got(text)}")
    return None
