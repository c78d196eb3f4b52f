"""The public API is exactly `dagfast.__all__`, sorted, and every name in it resolves."""

import dagfast


def test_all_is_sorted_and_resolves():
    assert dagfast.__all__ == sorted(dagfast.__all__)
    for name in dagfast.__all__:
        assert getattr(dagfast, name) is not None, name


def test_no_public_name_is_left_out():
    # Names a user can reach without an underscore are either in __all__ or submodules.
    import types

    public = {n for n in dir(dagfast) if not n.startswith("_")}
    modules = {n for n in public if isinstance(getattr(dagfast, n), types.ModuleType)}
    assert public - modules - {"annotations"} <= set(dagfast.__all__)
