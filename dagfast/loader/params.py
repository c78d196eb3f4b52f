"""Parameters: parsing the three written forms, and overriding defaults.

A parameter is `(name, value)`, or `(None, value)` for a positional one (`$1`, `$2`,
...). Written as a string (`"A=1 B=2 positional"`, split like a shell line), a list of
single-key maps and plain values, or a map.
"""

from __future__ import annotations

import re
import shlex

from dagfast.errors import ParamsError  # raised here; defined with the others
from dagfast.model import Params

__all__ = ["ParamsError", "named", "override", "parse", "positional"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse(value) -> Params:
    """Parameters in order from a string, a list or a map (None: none)."""
    if value is None:
        return ()
    if type(value) is dict:
        return tuple((str(k), _text(v)) for k, v in value.items())
    if type(value) is list:
        out: list[tuple[str | None, str]] = []
        for item in value:
            if type(item) is dict:
                out.extend((str(k), _text(v)) for k, v in item.items())
            else:
                out.append(_word(_text(item)))
        return tuple(out)
    try:
        words = shlex.split(str(value))
    except ValueError as e:
        raise ParamsError(f"cannot split `{value}` into words ({e})") from None
    return tuple(_word(w) for w in words)


def _text(value) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def _word(word: str) -> tuple[str | None, str]:
    name, sep, value = word.partition("=")
    if sep and _NAME.fullmatch(name):
        return name, value
    return None, word


def override(defaults: Params, given: Params) -> Params:
    """`defaults` with `given` applied: a named value replaces the default of that name
    (an unknown name is added), the k-th positional value replaces the k-th one."""
    out = list(defaults)
    where = {name: k for k, (name, _) in enumerate(out) if name is not None}
    slots = [k for k, (name, _) in enumerate(out) if name is None]
    used = 0
    for name, value in given:
        if name is not None:
            if name in where:
                out[where[name]] = (name, value)
            else:
                where[name] = len(out)
                out.append((name, value))
        elif used < len(slots):
            out[slots[used]] = (None, value)
            used += 1
        else:
            out.append((None, value))
    return tuple(out)


def named(params: Params) -> dict[str, str]:
    """The named parameters as a mapping (a later one of the same name wins)."""
    return {k: v for k, v in params if k is not None}


def positional(params: Params) -> tuple[str, ...]:
    """The positional values, `$1` first."""
    return tuple(v for k, v in params if k is None)
