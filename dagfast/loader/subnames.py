"""Where a `call:` (or 1.x `run:`) finds its sub-DAG, as Dagu does.

A reference is a local sub-DAG's name (a document after `---` in the calling file), or
a file: `child`, `child.yaml`, `child.yml`, a relative or an absolute path. A relative
one is looked for beside the calling file first, then in the DAGs directory (`--dags`,
DAGFAST_DAGS; by default the directory of the DAG file the run started from); a name
without `.yaml`/`.yml` is tried as written, then with each.
"""

from __future__ import annotations

import os

from dagfast.loader.problems import did_you_mean

__all__ = ["DAGS_ENV", "Target", "looked_in", "resolve"]

DAGS_ENV = "DAGFAST_DAGS"
_EXTENSIONS = (".yaml", ".yml")


class Target:
    """A resolved sub-DAG: the file, and the local document's name ("": the file's
    first document, the DAG itself)."""

    __slots__ = ("path", "document")

    def __init__(self, path: str, document: str = "") -> None:
        self.path = path
        self.document = document

    def __repr__(self) -> str:
        return f"Target({self.path!r}, {self.document!r})"


def _names(ref: str) -> list[str]:
    if ref.endswith(_EXTENSIONS):
        return [ref]
    return [ref] + [ref + ext for ext in _EXTENSIONS]


def _dirs(ref: str, caller_dir: str, dags_dir: str) -> list[str]:
    if os.path.isabs(ref):
        return [""]
    dirs = [caller_dir]
    if dags_dir and os.path.abspath(dags_dir) != os.path.abspath(caller_dir):
        dirs.append(dags_dir)
    return dirs


def resolve(ref: str, caller: str, caller_dir: str, dags_dir: str,
            local: tuple[str, ...] = ()) -> Target | None:  # fmt: skip
    """The sub-DAG `ref` names: a local document of `caller` (the calling file), or the
    first regular file found; None when nothing matches."""
    if ref in local and caller:
        return Target(caller, ref)
    ref = os.path.expanduser(ref)
    for d in _dirs(ref, caller_dir, dags_dir):
        for name in _names(ref):
            path = os.path.join(d, name) if d else name
            if os.path.isfile(path):
                return Target(os.path.normpath(path))
    return None


def looked_in(ref: str, caller_dir: str, dags_dir: str, local: tuple[str, ...] = ()) -> str:
    """Why `ref` matched nothing, in one clause: where it looked, and the nearest name."""
    ref = os.path.expanduser(ref)
    names = _names(ref)
    dirs = _dirs(ref, caller_dir, dags_dir)
    if len(names) * len(dirs) == 1:
        looked = f"no file `{os.path.join(dirs[0], ref) if dirs[0] else ref}`"
    else:
        shown = ", ".join(f"`{os.path.basename(n)}`" for n in names)
        where = (" and ".join(f"`{os.path.normpath(os.path.join(d, os.path.dirname(ref)))}`"
                              for d in dirs)
                 if dirs != [""] else f"`{os.path.dirname(ref)}`")  # fmt: skip
        looked = f"looked for {shown} in {where}"
    known = set(local)
    for d in dirs:
        d = os.path.join(d, os.path.dirname(ref)) if d else os.path.dirname(ref)
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        known.update(os.path.splitext(e)[0] for e in entries if e.endswith(_EXTENSIONS))
    stem = os.path.splitext(os.path.basename(ref))[0]
    hint = did_you_mean(stem, sorted(known - {stem}))  # " (did you mean `x`?)"
    return looked + (f"; {hint.strip()[1:-1]}" if hint else "")
