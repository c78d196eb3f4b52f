"""Typed stubs of the compiled fast path of `dagfast.loader.tree.parse`."""

def compose(
    data: bytes, steps_list: bool, max_depth: int, max_values: int
) -> dict | None:
    """The tree `tree._compose(data, steps_list)` builds, or None where this path does
    not go (the reference then builds it, or says what is wrong, and where)."""

def events(data: bytes) -> int:
    """How many events libyaml reads from `data`, making no Python object; -1 on a
    YAML error."""
