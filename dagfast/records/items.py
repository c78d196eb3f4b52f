"""Fan-out items as a run's journal tells them (`store.Item` entries, one per item that
ended): for `status RUN STEP`, `logs RUN STEP --item K` and a retry that keeps the items
that succeeded. The last entry of a key wins (a retry's run of an item replaces the
earlier one). Reading costs one pass over the journal: about a second for a million
items.
"""

from __future__ import annotations

import os

import msgspec

from dagfast.errors import RunError
from dagfast.records.journal import frames
from dagfast.records.store import Entry, Fan, Item
from dagfast.status import StepStatus

__all__ = ["find", "item_dags", "read_items", "summary"]

_entries = msgspec.msgpack.Decoder(list[Entry])


def read_items(run_path: str, steps=None) -> dict[int, dict[str, Item]]:
    """step id -> key -> its latest Item, for the fan-out steps `steps` (None: all)."""
    return _read(run_path, steps)[0]


def item_dags(run_path: str, steps=None) -> tuple[dict[int, dict[str, Item]], dict[int, Fan]]:
    """`read_items`, and the steps whose items ran a one-step sub-DAG in this engine
    (step id -> its Fan entry: the sub-DAG's name and its step's)."""
    return _read(run_path, steps)


def _read(run_path: str, steps):
    path = os.path.join(run_path, "journal")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}, {}
    except OSError as exc:
        raise RunError(f"cannot read `{path}`: {exc.strerror}") from None
    wanted = None if steps is None else frozenset(steps)
    out: dict[int, dict[str, Item]] = {}
    fans: dict[int, Fan] = {}
    payloads, _, _ = frames(data)
    for payload in payloads:
        try:
            entries = _entries.decode(payload)
        except msgspec.DecodeError:
            break  # a newer entry kind: read_run says so; the items so far stand
        for e in entries:
            if type(e) is Fan and (wanted is None or e.step in wanted):
                fans[e.step] = e
            elif type(e) is Item and (wanted is None or e.step in wanted):
                by_key = out.get(e.step)
                if by_key is None:
                    by_key = out[e.step] = {}
                by_key.pop(e.key, None)  # re-inserted: dict order is the order of ends
                by_key[e.key] = e
    return out, fans


def find(items: dict[str, Item], which: str) -> Item | None:
    """The item `which` names: a key, else an index (from 0) when no key is `which`."""
    hit = items.get(which)
    if hit is not None:
        return hit
    if which.isdigit():
        k = int(which)
        for item in items.values():
            if item.index == k:
                return item
    return None


def summary(items: dict[str, Item]) -> dict[str, int]:
    """status label -> how many items."""
    counts: dict[str, int] = {}
    for item in items.values():
        label = StepStatus(item.status).label
        counts[label] = counts.get(label, 0) + 1
    return counts
