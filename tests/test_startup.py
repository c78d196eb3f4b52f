"""What each command loads at start-up: read-only commands (status, logs, history,
version, --help) load neither the event loop nor PyYAML, so that they start in about the
time `import msgspec` takes (the timing itself is bench/'s)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = {"asyncio", "uvloop", "yaml", "dagfast.loader", "dagfast.runtime.engine"}


def imported(*args: str, home) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "dagfast", *args],
                          env=dict(os.environ, DAGFAST_HOME=str(home)),
                          capture_output=True, text=True, timeout=120)
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.fixture
def a_run(tmp_path):
    dag = tmp_path / "one.yaml"
    dag.write_text("steps:\n  - name: hi\n    command: echo hi\n")
    home = tmp_path / "home"
    assert subprocess.run([sys.executable, "-m", "dagfast", "run", "-q", str(dag)],
                          env=dict(os.environ, DAGFAST_HOME=str(home)),
                          capture_output=True).returncode == 0
    return home


@pytest.mark.parametrize("args", [("version",), ("--help",), ("status", "one"),
                                  ("logs", "one", "hi"), ("history", "one")])
def test_read_only_commands_load_neither_the_event_loop_nor_yaml(a_run, args):
    loaded = imported(*args, home=a_run)
    assert "dagfast" in loaded or "dagfast.cli.app" in loaded  # it did run
    assert loaded & HEAVY == set()


def test_a_plain_run_loads_neither_dask_nor_the_live_view(a_run, tmp_path):
    loaded = imported("run", "-q", str(tmp_path / "one.yaml"), home=a_run)
    assert "uvloop" in loaded
    assert loaded & {"distributed", "dask", "rich"} == set()
