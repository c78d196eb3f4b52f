"""Output variables: capture from a step's log, and `${NAME.key[0]}` lookups.

Capture reads the step's stdout from the output store once its process has exited
(what it printed is stored by then), so a background child that holds the pipe open
never delays the step; only steps with `output:` are read.
"""

from __future__ import annotations

import re

from dagfast.errors import OutputTooLarge
from dagfast.model import output_ref  # the marker lives with `secret_ref`; re-exported

__all__ = ["capture", "expand_refs", "fill_params", "fill_refs", "lookup", "output_ref"]

_PATH = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")
_REF = re.compile("\ue002([A-Za-z_][A-Za-z0-9_]*)([^\ue003]*)\ue003")




def capture(read, limit: int) -> str:
    """The text `read(n)` gives (at most n bytes; None: all), trimmed of surrounding
    white space; OutputTooLarge past `limit`."""
    data = read(limit + 1 if limit > 0 else None)
    if limit > 0 and len(data) > limit:
        raise OutputTooLarge(limit)
    return data.decode("utf-8", "replace").strip()


def lookup(value: str, path: str) -> str | None:
    """`path` (`.a.b[0]`) read from `value` parsed as JSON; None when absent."""
    import json

    try:
        node = json.loads(value)
    except ValueError:
        return None
    for m in _PATH.finditer(path):
        key, index = m.group(1), m.group(2)
        if key is not None and type(node) is dict and key in node:
            node = node[key]
        elif index is not None and type(node) is list and int(index) < len(node):
            node = node[int(index)]
        else:
            return None
    if type(node) is str:
        return node
    return json.dumps(node, separators=(",", ":"))


def expand_refs(text: str, values: dict[str, str]) -> str:
    """`text` with each `${NAME.path}` (NAME an output in `values`) read from its JSON;
    everything else is left to the shell."""
    names = "|".join(re.escape(n) for n in values)
    if not names:
        return text
    pattern = re.compile(r"\$\{(" + names + r")((?:\.[A-Za-z0-9_-]+|\[\d+\])+)\}")

    def sub(m: re.Match) -> str:
        found = lookup(values[m.group(1)], m.group(2))
        return "" if found is None else found

    return pattern.sub(sub, text)


def fill_refs(value: str, env: dict[bytes, bytes]) -> str:
    """A step `env` value with its `output_ref`s replaced from the step's environment so
    far (the outputs it sees over the DAG's env and params): "" for an unset name or a
    path that is absent."""

    def sub(m: re.Match) -> str:
        raw = env.get(m.group(1).encode())
        text = "" if raw is None else raw.decode("utf-8", "surrogateescape")
        if m.group(2):
            found = lookup(text, m.group(2))
            return "" if found is None else found
        return text

    return _REF.sub(sub, value)


def fill_params(params, scope: dict, refs: dict):
    """A `call` step's params with `${NAME.key}` (outputs in `refs`) and `${VAR}` (in
    `scope`) filled in; a value that does not expand is passed as written."""
    from dagfast.loader.expand import ExpandError, expand  # only calls (start-up)

    out = []
    for name, value in params:
        try:
            value = expand(expand_refs(value, refs), scope)
        except ExpandError:
            pass
        out.append((name, value))
    return tuple(out)
