"""What every test gets: a home of its own, and (under pytest-xdist) a worker count.

The suite runs in parallel by default (pyproject.toml: `-n auto --dist loadfile`):
most tests wait on real processes, so even 2 cores keep 4 workers busy. A test that
forgets `DAGFAST_HOME` still writes under its own temporary directory, never under ~.
"""

from __future__ import annotations

import os

import pytest

# `-n auto`: at least 4 workers (the tests mostly wait on processes, not on a CPU), at
# most 8 (each Dask test module starts a cluster; the machine's other users need room).
MIN_WORKERS, MAX_WORKERS = 4, 8


def pytest_xdist_auto_num_workers(config) -> int:
    return max(MIN_WORKERS, min(os.cpu_count() or 1, MAX_WORKERS))


@pytest.fixture(autouse=True)
def _own_home(tmp_path_factory, monkeypatch):
    """DAGFAST_HOME and XDG_DATA_HOME point into this test's temporary directories."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DAGFAST_HOME", str(base / "dagfast"))
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "xdg"))
