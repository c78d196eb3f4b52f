"""The problems a load finds: collected at tree paths, located in the source (file,
line, column) only when raised, plus the helpers every message uses (`show` for a
value inside backticks, `did_you_mean` for the nearest known name)."""

from __future__ import annotations

import re
from typing import Any

from dagfast.errors import LoadError, Problem
import dagfast.loader.tree as yamlsrc
from dagfast.loader.tree import Path

__all__ = [
    "CONTROL", "MAX_PROBLEMS", "Problems", "did_you_mean", "got", "name_problem", "show",
    "type_words",
]

CONTROL = re.compile("[\x01-\x1f\x7f-\x9f\u2028\u2029]")
"""Characters a terminal acts on (C0, DEL, C1, Unicode line and paragraph separators);
NUL is not among them: no process can receive it, and `tree.nul_paths` says so."""

MAX_PROBLEMS = 1000
"""Problems listed in one LoadError; the rest are counted."""


class Problems:
    """Problems found so far, each at a path; located in the source only when raised.

    Past MAX_PROBLEMS only a count is kept: a file with a million broken steps must
    still fail fast, and nobody reads the millionth line."""

    def __init__(self, data: bytes, file: str) -> None:
        self.data = data
        self.file = file
        self.found: list[tuple[Path, str, bool]] = []
        self.more = 0

    def add(self, path: Path, message: str, at_key: bool = False) -> None:
        """Note `message` at `path` (at its key rather than its value when `at_key`)."""
        if len(self.found) < MAX_PROBLEMS:
            self.found.append((path, message, at_key))
        else:
            self.more += 1

    def __len__(self) -> int:
        return len(self.found) + self.more

    def raise_if_any(self) -> None:
        """Raise one LoadError with every problem so far, in source order."""
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

    def places(self, paths: list[Path]) -> list[str]:
        """`file:line:col` of the value at each path (`file` alone when not found)."""
        spans = yamlsrc.locate(self.data, paths)
        out = []
        for path in paths:
            span = spans.get(path)
            out.append(self.file + (f":{span[2]}:{span[3]}" if span is not None else ""))
        return out

    def plain_type(self, path: Path) -> str | None:
        """"number" or "boolean" when the value at `path` was written as one, unquoted."""
        return yamlsrc.plain_type(self.data, path)


def show(value: Any, width: int = 60) -> str:
    """A value as it may appear inside backticks in a one-line message."""
    if value is None:
        return "null"
    if type(value) is list:
        return "a list"
    if type(value) is dict:
        return "a mapping"
    text = value.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def did_you_mean(word: str, candidates) -> str:
    """` (did you mean `x`?)` for the nearest candidate to `word`, or ""."""
    import difflib  # start-up speed: only a file with a problem pays for it

    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a step or a DAG (printed in rows by `status`, `history`:
    a newline or an escape would forge or hide rows), or None."""
    if CONTROL.search(name) is None:
        return None
    shown = CONTROL.sub(lambda m: _escape(m.group()), name)
    return f"a name cannot hold a control character: `{show(shown)}`"


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


_TYPE_WORDS = {
    "int": "an integer", "float": "a number", "str": "text", "bool": "`true` or `false`",
    "array": "a list", "object": "a mapping",
}  # fmt: skip


def type_words(types: str) -> str:
    """msgspec's `str | array | null` in the user's words: "text or a list"."""
    words = [_TYPE_WORDS.get(t, f"`{t}`") for t in map(str.strip, types.split("|"))
             if t != "null"]  # fmt: skip
    if len(words) <= 1:
        return words[0] if words else "nothing"
    return ", ".join(words[:-1]) + " or " + words[-1]


def got(value: Any) -> str:
    """What the file gave, for "expected X, got ...": `5`, a list, a mapping, `null`."""
    if type(value) in (list, dict):
        return show(value)
    if value == "":
        return "an empty value"
    return f"`{show(value if type(value) is str or value is None else str(value))}`"
