"""YAML bytes -> plain Python values (dict, list, str, None), fast and bounded.

Every plain scalar keeps its source text (`3` stays "3", `true` stays "true"; the schema
converts later), except the null spellings, which become None. Mapping keys are always
their text. No position is kept: `locate` reads the file again, with marks, only when
something must be reported.

The common shapes take the compiled fast path, `_tree.compose` (libyaml's events read in
C, no Python object an event). Anything else (anchors, tags, `<<`, a second document)
and every file with a problem goes through `events.compose`, the reference, which the
fast path twins: it only ever gives the tree the reference would give. PyYAML (and
`events`) is imported only then.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from dagfast.errors import LoadError, Problem

try:
    from dagfast.loader._tree import compose as _fast_compose
except ImportError:  # not built (no libyaml headers): the same trees, more slowly
    _fast_compose = None

__all__ = [
    "MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "Path", "documents", "is_list", "locate",
    "nul_paths", "parse", "plain_type", "render", "typed_text",
]  # fmt: skip

MAX_BYTES = 32 * 1024 * 1024
"""Larger files are refused before parsing."""
MAX_DEPTH = 100
"""Deepest nesting of mappings and sequences."""
MAX_VALUES = 2_000_000
"""Most values (scalars and collections, keys not counted) in the tree, counting each
alias as the size of what it refers to: an alias bomb stops here, before any copy."""

Path = tuple[str | int, ...]
"""A position in the tree: mapping keys and sequence indexes from the top."""

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Plain scalars that YAML (1.1 and 1.2, as Dagu's parser) reads as a number or a boolean.
_TYPED = (
    ("number", re.compile(
        r"[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+"
        r"|(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|\.(?:inf|Inf|INF))|\.(?:nan|NaN|NAN)"
    )),
    ("boolean", re.compile(r"true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO"
                           r"|on|On|ON|off|Off|OFF")),
)  # fmt: skip


_DOC_START = re.compile(rb"^---(?=[ \t\r\n]|$)", re.M)
_NO_CONTENT = re.compile(rb"(?:[ \t]*(?:#[^\n]*|%[^\n]*|---|\.\.\.)?[ \t]*\r?(?:\n|$))*")


def documents(data: bytes) -> list[bytes]:
    """The YAML documents of `data` (a `---` line starts one), each as bytes parsed
    alone but with the lines before it blanked, so that positions stay the file's.
    A file of one document is returned as it is."""
    if not (data.startswith(b"---") or b"\n---" in data):
        return [data]
    cuts = [m.start() for m in _DOC_START.finditer(data)]
    if not cuts or cuts[0] != 0:
        cuts.insert(0, 0)
    cuts.append(len(data))
    out = []
    for a, b in zip(cuts, cuts[1:]):
        chunk = data[a:b]
        if _NO_CONTENT.fullmatch(chunk):
            continue  # directives or comments before the first `---`
        out.append(b"\n" * data.count(b"\n", 0, a) + chunk)
    return out or [data]


def render(path: Path) -> str:
    """`("steps", 3, "depends")` -> "$.steps[3].depends" (odd keys in brackets)."""
    out = ["$"]
    for part in path:
        if type(part) is int:
            out.append(f"[{part}]")
        elif _IDENT.fullmatch(part):
            out.append("." + part)
        else:
            out.append("[" + msgspec.json.encode(part).decode() + "]")
    return "".join(out)


def parse(data: bytes, file: str = "<string>", steps_list: bool = False) -> dict:
    """The first YAML document of `data`, which must be a mapping (or, with
    `steps_list`, a bare list of steps, returned as `{"steps": [...]}`).

    Raises LoadError with one Problem for anything that stops the tree being built:
    bad UTF-8, YAML syntax, duplicate keys, limits, a non-mapping top level.
    """
    if len(data) > MAX_BYTES:
        raise LoadError(
            [Problem(f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB", file=file)]
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _events().byte_position(data, e.start)
        raise LoadError(
            [
                Problem(
                    f"file is not UTF-8 (byte 0x{data[e.start]:02x})",
                    file=file,
                    line=line,
                    column=col,
                )
            ]
        ) from None
    if _fast_compose is not None:
        tree = _fast_compose(data, steps_list, MAX_DEPTH, MAX_VALUES)
        if tree is not None:
            return tree
    return _events().parse(data, file, steps_list, MAX_DEPTH, MAX_VALUES)


def _events():
    """The PyYAML side (`events`), imported when first needed."""
    from dagfast.loader import events  # start-up: PyYAML only for the files that need it

    return events


def locate(data: bytes, paths: Iterable[Path]) -> dict[Path, tuple[int, int, int, int]]:
    """Where each path is in the source: (key line, key column, value line, value
    column), 1-based; see `events.locate`."""
    return _events().locate(data, paths)


def plain_type(data: bytes, path: Path) -> str | None:
    """"number" or "boolean" when the node at `path` is a plain (unquoted) scalar that
    YAML reads as one (`5`, `1.5`, `true`), else None. The tree keeps every scalar's
    text, so only the source tells `stdout: 5` from `stdout: "5"`."""
    text = _events().plain_scalar(data, path)
    return None if text is None else typed_text(text)


def typed_text(text: str) -> str | None:
    """"number" or "boolean" when `text`, written unquoted, is one in YAML, else None."""
    for kind, pattern in _TYPED:
        if pattern.fullmatch(text):
            return kind
    return None


def is_list(data: bytes) -> bool:
    """Whether the first document is a list (a bare list of steps, for `parse`)."""
    return _events().is_list(data)


def nul_paths(tree: dict) -> list[tuple[Path, bool]]:
    """Where the tree holds a NUL character (no process can receive one): each path,
    and whether it is in the key there rather than the value."""
    found: list[tuple[Path, bool]] = []
    work: list[tuple[Path, object]] = [((), tree)]
    while work:
        path, node = work.pop()
        if type(node) is dict:
            for key, value in node.items():
                if "\0" in key:
                    found.append((path + (key,), True))
                work.append((path + (key,), value))
        elif type(node) is list:
            work.extend((path + (i,), v) for i, v in enumerate(node))
        elif type(node) is str and "\0" in node:
            found.append((path, False))
    return found
