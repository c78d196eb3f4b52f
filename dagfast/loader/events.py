"""YAML read through PyYAML's event objects: the reference tree builder, and the second
reading, with marks, that places problems.

`compose` is the reference the compiled `_tree.compose` twins: every tree the loader
accepts, built in one iterative loop (no recursion: deep nesting cannot reach Python's
or C's stack limits), and for every file it refuses the reason and the place (`parse`).
`locate`, `plain_scalar` and `is_list` read the file again, with marks, only when a
problem must be placed (reading marks costs a third of the parse). `tree` imports this
module only then: PyYAML costs about 10 ms of start-up that a valid file never pays.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml
from yaml._yaml import CParser
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

from dagfast.errors import LoadError, Problem

__all__ = ["Span", "byte_position", "compose", "is_list", "locate", "parse", "plain_scalar"]

Path = tuple[str | int, ...]
"""A position in the tree (as `tree.Path`, which imports this module, not the reverse)."""

_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_SPECIAL = _NULLS | {"<<"}
_YAML_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(["!"] + [_YAML_TAG + t for t in ("str", "int", "float", "bool", "null")])
_MAP_TAGS = frozenset(("!", _YAML_TAG + "map"))
_SEQ_TAGS = frozenset(("!", _YAML_TAG + "seq"))
_MERGE_TAGS = frozenset((None, _YAML_TAG + "merge"))


class _Merge:
    """The `<<` merge key while its mapping is still open."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<<"


_MERGE = _Merge()


class _Fail(Exception):
    """A problem found while composing, with the event where it was found."""

    def __init__(self, message: str, mark=None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def parse(data: bytes, file: str, steps_list: bool, max_depth: int, max_values: int) -> dict:
    """`compose`, or LoadError with the one Problem that stops the tree being built
    (YAML syntax, a repeated key, a limit, a non-mapping top level), located."""
    try:
        return compose(data, steps_list, max_depth, max_values)
    except _Fail as f:
        mark = f.mark
        problem = Problem(
            f.message, file=file, line=mark and mark.line + 1, column=mark and mark.column + 1
        )
    except _Duplicate:
        problem = _duplicate_problem(data, file)
    except yaml.MarkedYAMLError as e:
        problem = _syntax_problem(e, file)
    except yaml.reader.ReaderError as e:
        line, col = byte_position(data, e.position)
        what = e.reason + (f" (0x{e.character:02x})" if isinstance(e.character, int) else "")
        problem = Problem(f"YAML error: {what}", file=file, line=line, column=col)
    except yaml.YAMLError as e:  # pragma: no cover - libyaml reports everything above
        problem = Problem(f"YAML error: {e}", file=file)
    except MemoryError:
        problem = Problem("YAML error: out of memory", file=file)
    raise LoadError([problem])


class _Duplicate(Exception):
    """A mapping repeats a key; `locate` finds where, with marks."""


def compose(data: bytes, steps_list: bool, max_depth: int, max_values: int) -> dict:
    """The tree of `data`'s first document (see `tree.parse`), built from PyYAML's
    event objects; `_Fail` or `_Duplicate` (or PyYAML's own errors) when it is refused."""
    parser = CParser(data)
    get = parser.get_event
    Scalar, Alias = ScalarEvent, AliasEvent
    MapStart, MapEnd, SeqStart, SeqEnd = (
        MappingStartEvent,
        MappingEndEvent,
        SequenceStartEvent,
        SequenceEndEvent,
    )
    special = _SPECIAL
    anchors: dict[str, tuple[object, int]] = {}
    open_anchors: dict[str, int] = {}  # anchor -> how many open collections carry it
    stack: list = []  # (collection, in_map, anchor, count at start)
    push, pop = stack.append, stack.pop
    top: list = []  # a pseudo sequence holding the document's root
    cur, in_map = top, False
    add = cur.append
    merged = False  # some `<<` key was seen: mappings look for it when they close
    count = 0
    limit = max_values
    documents = 0

    while True:
        ev = get()
        cls = ev.__class__
        if cls is Scalar:
            v = ev.value
            if ev.style == "" and v in special:
                if in_map and not len(cur) & 1:
                    if v == "<<" and ev.tag in _MERGE_TAGS:
                        v = _MERGE
                        merged = True
                elif v != "<<" and ev.tag is None:
                    v = None
            if ev.anchor is not None or ev.tag is not None:
                v = _scalar_extras(ev, v, anchors, in_map and not len(cur) & 1)
            add(v)
            count += 1
            if count > limit:
                raise _Fail(_too_many(limit), ev.start_mark)
        elif cls is MapStart or cls is SeqStart:
            if in_map and not len(cur) & 1:
                raise _Fail("a mapping key must be a string", ev.start_mark)
            if ev.tag is not None and ev.tag not in (_MAP_TAGS if cls is MapStart else _SEQ_TAGS):
                raise _Fail(f"tag `{_show_tag(ev.tag)}` is not supported", ev.start_mark)
            if len(stack) >= max_depth:
                raise _Fail(f"nesting is deeper than {max_depth} levels", ev.start_mark)
            anchor = ev.anchor
            if anchor is not None:
                open_anchors[anchor] = open_anchors.get(anchor, 0) + 1
            push((cur, in_map, anchor, count))
            cur = []
            add = cur.append
            in_map = cls is MapStart
            count += 1
            if count > limit:
                raise _Fail(_too_many(limit), ev.start_mark)
        elif cls is MapEnd:
            it = iter(cur)
            node = dict(zip(it, it))
            if len(node) * 2 != len(cur):
                raise _Duplicate
            if merged and _MERGE in node:
                node = _merge(node, ev)
            cur, in_map, anchor, start = pop()
            add = cur.append
            if anchor is not None:
                _close_anchor(anchor, node, count - start, anchors, open_anchors)
            add(node)
        elif cls is SeqEnd:
            node = cur
            cur, in_map, anchor, start = pop()
            add = cur.append
            if anchor is not None:
                _close_anchor(anchor, node, count - start, anchors, open_anchors)
            add(node)
        elif cls is Alias:
            name = ev.anchor
            found = anchors.get(name)
            if found is None:
                if name in open_anchors:
                    raise _Fail(
                        f"alias `*{name}` refers to a collection that contains it", ev.start_mark
                    )
                raise _Fail(f"alias `*{name}` refers to no anchor", ev.start_mark)
            node, size = found
            if in_map and not len(cur) & 1 and type(node) is not str:
                raise _Fail("a mapping key must be a string", ev.start_mark)
            add(node)
            count += size
            if count > limit:
                raise _Fail(_too_many(limit), ev.start_mark)
        elif cls is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _Fail("a second YAML document (a local sub-DAG) needs the DAG to be "
                            "loaded from its file", ev.start_mark)
        elif cls is StreamEndEvent:
            break
        elif cls is DocumentEndEvent or cls is StreamStartEvent:
            pass
        else:  # pragma: no cover - libyaml has no other events
            raise _Fail(f"unexpected YAML event {cls.__name__}", ev.start_mark)

    if top and type(top[0]) is dict:
        return top[0]
    if steps_list and top and type(top[0]) is list:
        return {"steps": top[0]}
    root_event = _first_node(data)
    if root_event is None or (
        root_event.__class__ is ScalarEvent
        and root_event.value == ""
        and root_event.style == ""
        and not root_event.tag
    ):
        raise _Fail("file is empty")
    what = "a list" if root_event.__class__ is SequenceStartEvent else "a single value"
    raise _Fail(f"the top level must be a mapping of DAG keys, not {what}", root_event.start_mark)


def _first_node(data: bytes):
    """The event that starts the first document's root node, if there is one."""
    parser = CParser(data)
    while True:
        ev = parser.get_event()
        if ev.__class__ is StreamEndEvent:
            return None
        if ev.__class__ in (ScalarEvent, SequenceStartEvent, MappingStartEvent):
            return ev


def _scalar_extras(ev, v, anchors, is_key: bool):
    """Tags and anchors on a scalar: rare, so kept off the main loop."""
    tag = ev.tag
    if tag is not None and v is not _MERGE:
        if tag not in _SCALAR_TAGS:
            raise _Fail(f"tag `{_show_tag(tag)}` is not supported", ev.start_mark)
        # An explicit tag keeps the text (`!!str ~` is "~"); a key is always text.
        v = None if tag == _YAML_TAG + "null" and not is_key else ev.value
    if ev.anchor is not None:
        anchors[ev.anchor] = ("<<" if v is _MERGE else v, 1)
    return v


def _close_anchor(anchor, node, size, anchors, open_anchors) -> None:
    """A collection with an anchor is complete: aliases may now refer to it."""
    anchors[anchor] = (node, size)
    left = open_anchors[anchor] - 1
    if left:
        open_anchors[anchor] = left
    else:
        del open_anchors[anchor]


def _merge(node: dict, ev) -> dict:
    """Apply a `<<` key: explicit keys win, then earlier merged mappings."""
    src = node.pop(_MERGE)
    sources = src if type(src) is list else [src]
    if not all(type(s) is dict for s in sources):
        raise _Fail("`<<` must merge a mapping or a list of mappings", ev.start_mark)
    out: dict = {}
    for s in reversed(sources):
        out.update(s)
    out.update(node)
    return out


def _too_many(limit: int) -> str:
    return f"more than {limit:,} values (an alias counts as all it repeats)"


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML_TAG) :] if tag.startswith(_YAML_TAG) else tag


def byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of a byte offset."""
    offset = max(0, min(offset, len(data)))
    line_start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, col


def _syntax_problem(e: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = e.problem_mark or e.context_mark
    text = e.problem or e.context or "invalid YAML"
    if e.problem and e.context:
        where = f" started at line {e.context_mark.line + 1}" if e.context_mark else ""
        text += f" ({e.context}{where})"
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    return Problem(f"YAML syntax error: {text}", file=file, line=line, column=col)


# ---------------------------------------------------------------------------------------
# The slow pass, with marks: only when something must be reported.


class _Frame:
    __slots__ = ("path", "is_map", "index", "key", "key_mark", "seen")

    def __init__(self, path: Path, is_map: bool) -> None:
        self.path = path
        self.is_map = is_map
        self.index = 0
        self.key = None  # text of the pending key, when a value is due
        self.key_mark = None
        self.seen: dict[str, int] = {}


def _walk(data: bytes, want: set[Path] | None):
    """Yield (path, key_mark, value_mark, event) for every node in `want`, or ("dup",
    key, mark, first line) for the first repeated key, walking the first document."""
    parser = CParser(data)
    stack: list[_Frame] = []
    scalar_anchors: dict[str, str] = {}
    while True:
        ev = parser.get_event()
        cls = ev.__class__
        if cls is StreamEndEvent or cls is DocumentEndEvent:
            return
        if cls not in (ScalarEvent, AliasEvent, MappingStartEvent, SequenceStartEvent):
            if (cls is MappingEndEvent or cls is SequenceEndEvent) and stack:
                stack.pop()
            continue
        mark = ev.start_mark
        if not stack:
            path: Path = ()
            key_mark = mark
        else:
            frame = stack[-1]
            if frame.is_map:
                if frame.key is None:
                    # This node is a key.
                    if cls is ScalarEvent:
                        text = ev.value
                        if ev.anchor is not None:
                            scalar_anchors[ev.anchor] = text
                    elif cls is AliasEvent:
                        text = scalar_anchors.get(ev.anchor, "")
                    else:
                        text = ""
                        stack.append(_Frame((), cls is MappingStartEvent))
                    if text in frame.seen and want is None:
                        yield ("dup", text, mark, frame.seen[text])
                        return
                    frame.seen.setdefault(text, mark.line + 1)
                    frame.key, frame.key_mark = text, mark
                    continue
                path = frame.path + (frame.key,)
                key_mark = frame.key_mark
                frame.key = None
            else:
                path = frame.path + (frame.index,)
                frame.index += 1
                key_mark = mark
        if cls is ScalarEvent and ev.anchor is not None:
            scalar_anchors[ev.anchor] = ev.value
        if want is not None and path in want:
            yield (path, key_mark, mark, ev)
        if cls is MappingStartEvent or cls is SequenceStartEvent:
            stack.append(_Frame(path, cls is MappingStartEvent))


def _duplicate_problem(data: bytes, file: str) -> Problem:
    for found in _walk(data, None):
        _, key, mark, first = found
        return Problem(
            f"duplicate key `{key}` (first given at line {first})",
            file=file,
            line=mark.line + 1,
            column=mark.column + 1,
        )
    return Problem("duplicate key", file=file)  # pragma: no cover - the walk finds it


Span = tuple[int, int, int, int]
"""(key line, key column, value line, value column), all 1-based."""


def locate(data: bytes, paths: Iterable[Path]) -> dict[Path, Span]:
    """Where each path is in the source; a path that is not there literally (it came
    through an alias or a merge) gets the span of its nearest ancestor that is.
    In a bare list of steps, `("steps", i, ...)` is the list's item i (see `parse`)."""
    want: set[Path] = set()
    paths = list(paths)
    bare = _bare_list(data, paths)
    if bare:
        paths = [_in_bare(p) for p in paths]
    for p in paths:
        for i in range(len(p) + 1):
            want.add(p[:i])
    found: dict[Path, Span] = {}
    try:
        for path, key_mark, mark, _ in _walk(data, want):
            found.setdefault(
                path, (key_mark.line + 1, key_mark.column + 1, mark.line + 1, mark.column + 1)
            )
            if len(found) == len(want):
                break
    except yaml.YAMLError:  # pragma: no cover - the same text parsed a moment ago
        pass
    out: dict[Path, Span] = {}
    for p, given in zip(paths, bare or paths):
        for i in range(len(p), -1, -1):
            span = found.get(p[:i])
            if span is not None:
                out[given] = span if i == len(p) else (span[2], span[3], span[2], span[3])
                break
    return out


def plain_scalar(data: bytes, path: Path) -> str | None:
    """The text of the node at `path` when it is a plain (unquoted, untagged) scalar,
    else None: the tree keeps every scalar's text, so only the source tells `stdout: 5`
    from `stdout: "5"`."""
    if _bare_list(data, [path]):
        path = _in_bare(path)
    try:
        for _, _, _, ev in _walk(data, {path}):
            if ev.__class__ is ScalarEvent and ev.style == "" and ev.tag is None:
                return ev.value
            return None
    except yaml.YAMLError:  # pragma: no cover - the same text parsed a moment ago
        pass
    return None


def is_list(data: bytes) -> bool:
    """Whether the first document is a list (a bare list of steps, for `parse`)."""
    try:
        return _first_node(data).__class__ is SequenceStartEvent
    except yaml.YAMLError:
        return False


def _bare_list(data: bytes, paths: list[Path]) -> list[Path] | None:
    """`paths` when they name steps of a bare list of steps, else None."""
    if any(p[:1] == ("steps",) for p in paths) and is_list(data):
        return paths
    return None


def _in_bare(path: Path) -> Path:
    return path[1:] if path[:1] == ("steps",) else path
