"""Variable expansion as pure functions over explicit mappings.

    $NAME  ${NAME}          the value, or "" when NAME is not defined
    ${NAME:-word}           word when NAME is undefined or empty (word is expanded too)
    ${NAME-word}            word when NAME is undefined
    `command`               the command's stdout, trailing newlines removed
    \\$  \\`                  a literal `$` or backtick

Commands are not run here: the caller passes `run`, which receives the text between
the backticks as written (the shell it starts expands any `$VAR` inside). A caller that
knows JSON lookups (`${NAME.key[0]}`, an output read at run time) passes `paths`,
which gives their text (None: not a lookup it knows, an error as without it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from dagfast.errors import ExpandError  # raised here; defined with the others

__all__ = ["ExpandError", "expand", "has_references"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSON_PATH = re.compile(r"(?:\.[A-Za-z0-9_-]+|\[\d+\])+")
_MAX_NESTING = 16


def has_references(text: str) -> bool:
    """Whether `expand` could change `text` (it holds a `$` or a backtick)."""
    return "$" in text or "`" in text


def expand(
    text: str,
    names: Mapping[str, str],
    run: Callable[[str], str] | None = None,
    paths: Callable[[str, str], str | None] | None = None,
) -> str:
    """`text` with its references replaced from `names`; backticks call `run(command)`
    (left as written when `run` is None); `${NAME.key[0]}` is `paths(NAME, ".key[0]")`."""
    if not has_references(text):
        return text
    return _expand(text, names, run, 0, paths)


def _expand(text: str, names: Mapping[str, str], run, depth: int, paths=None) -> str:
    if depth > _MAX_NESTING:
        raise ExpandError(f"`${{...}}` nested more than {_MAX_NESTING} levels deep")
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "$`":
            out.append(text[i + 1])
            i += 2
        elif c == "$":
            i = _dollar(text, i, names, run, depth, out, paths)
        elif c == "`":
            end = text.find("`", i + 1)
            if end < 0:  # an unpaired backtick is just a character (as in Dagu)
                out.append(c)
                i += 1
            else:
                command = text[i + 1 : end]
                out.append(
                    run(command).rstrip("\n") if run and command.strip() else text[i : end + 1]
                )
                i = end + 1
        else:
            j = _next_special(text, i)
            out.append(text[i:j])
            i = j
    return "".join(out)


def _next_special(text: str, i: int) -> int:
    """The index of the next `$`, backtick or backslash at or after i (or len)."""
    best = len(text)
    for ch in "$`\\":
        k = text.find(ch, i)
        if 0 <= k < best:
            best = k
    return best if best > i else i + 1


def _dollar(text: str, i: int, names, run, depth: int, out: list[str], paths=None) -> int:
    """Expand the reference starting at text[i] == "$"; return the index after it."""
    m = _NAME.match(text, i + 1)
    if m:
        out.append(names.get(m.group(), ""))
        return m.end()
    if not text.startswith("{", i + 1):
        out.append("$")  # `$5`, `$$`, a lone `$`: not ours, left for the shell
        return i + 1
    end = _closing_brace(text, i + 2)
    if end < 0:
        raise ExpandError(f"`{_clip(text[i:])}` has no closing `}}`")
    body = text[i + 2 : end]
    m = _NAME.match(body)
    if not m:
        raise ExpandError(f"`{_clip(text[i : end + 1])}` is not a variable reference")
    name, rest = m.group(), body[m.end() :]
    value = names.get(name)
    if rest == "":
        out.append(value or "")
    elif rest.startswith(":-"):
        out.append(value if value else _expand(rest[2:], names, run, depth + 1, paths))
    elif rest.startswith("-"):
        out.append(value if value is not None else _expand(rest[1:], names, run, depth + 1, paths))
    elif paths is not None and _JSON_PATH.fullmatch(rest) and (got := paths(name, rest)):
        out.append(got)
    else:
        raise ExpandError(
            f"`{_clip(text[i : end + 1])}` is not supported (only `${{NAME:-default}}` forms)"
        )
    return end + 1


def _closing_brace(text: str, i: int) -> int:
    """The index of the `}` closing a `${` whose body starts at i, or -1."""
    depth = 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
