"""The files a load reads (the DAG file, a sub-DAG's, `dotenv:` files) are regular
files read with a bound: a FIFO, a device, a huge, non-UTF-8 or NUL-holding dotenv file
is one located line, never a hang, a runaway read or a crash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dagfast.errors import LoadError
from dagfast.loader import load, load_sub
from dagfast.loader.tree import MAX_BYTES

# A load that would block for ever must not block the test run: the child is killed.
_CHILD = """
import sys
from dagfast.errors import LoadError
from dagfast.loader import {fn}
try:
    {fn}(sys.argv[1], **{kwargs})
except LoadError as e:
    print(e)
else:
    print("loaded")
"""


def _load_in_child(path, fn="load", kwargs="{}") -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD.format(fn=fn, kwargs=kwargs), str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path} hangs")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _errors(path, **kwargs) -> list[str]:
    with pytest.raises(LoadError) as e:
        load(path, **kwargs)
    return [str(p) for p in e.value.problems]


def test_a_fifo_dag_file_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "dag.yaml"
    os.mkfifo(fifo)
    assert _load_in_child(fifo) == f"{fifo}: cannot read the file: not a regular file (a named pipe)"


def test_a_fifo_sub_dag_file_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "sub.yaml"
    os.mkfifo(fifo)
    kwargs = f"dict(environ={{}}, params=(), work_dir={str(tmp_path)!r}, done=frozenset())"
    assert _load_in_child(fifo, "load_sub", kwargs) == (
        f"{fifo}: cannot read the file: not a regular file (a named pipe)"
    )


def test_a_directory_or_a_device_as_the_dag_file(tmp_path):
    assert _errors(tmp_path) == [f"{tmp_path}: cannot read the file: Is a directory"]
    assert _errors("/dev/zero") == [
        "/dev/zero: cannot read the file: not a regular file (a character device)"
    ]


def test_a_fifo_dotenv_file_is_a_located_error(tmp_path):
    os.mkfifo(tmp_path / "fifo.env")
    dag = tmp_path / "dag.yaml"
    dag.write_text("dotenv: fifo.env\nsteps:\n  - echo\n")
    assert _load_in_child(dag) == (
        f"{dag}:1:9: cannot read the dotenv file `fifo.env`: not a regular file (a named pipe)"
        " - at `$.dotenv`"
    )


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_a_dotenv_file_is_a_located_error(tmp_path, device):
    dag = tmp_path / "dag.yaml"
    dag.write_text(f"dotenv: [{device}]\nsteps:\n  - echo\n")
    assert _load_in_child(dag) == (
        f"{dag}:1:10: cannot read the dotenv file `{device}`: not a regular file "
        "(a character device) - at `$.dotenv[0]`"
    )


def test_a_dotenv_file_over_the_size_limit_is_a_located_error(tmp_path):
    with open(tmp_path / "big.env", "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: no disk is used
    dag = tmp_path / "dag.yaml"
    dag.write_text("dotenv: big.env\nsteps:\n  - echo\n")
    assert _errors(dag) == [
        f"{dag}:1:9: the dotenv file `big.env` is larger than 32 MiB - at `$.dotenv`"
    ]


@pytest.mark.parametrize(("content", "why"), [
    (b"A=1\nB=caf\xe9\n", "is not UTF-8 (byte 0xe9, line 2)"),
    (b"A=1\nB=x\x00y\n", "holds a NUL character (`\\0`) on line 2"),
], ids=["not UTF-8", "NUL"])  # fmt: skip
def test_a_dotenv_file_that_no_process_could_take_is_a_located_error(tmp_path, content, why):
    (tmp_path / "bad.env").write_bytes(content)
    dag = tmp_path / "dag.yaml"
    dag.write_text("dotenv: bad.env\nsteps:\n  - echo\n")
    assert _errors(dag) == [f"{dag}:1:9: the dotenv file `bad.env` {why} - at `$.dotenv`"]


def test_a_regular_dotenv_file_still_loads(tmp_path):
    (tmp_path / "ok.env").write_text("# comment\nexport A='1'\nB=caf\u00e9\n")
    dag = tmp_path / "dag.yaml"
    dag.write_text("dotenv: ok.env\nsteps:\n  - echo\n")
    assert load(dag, environ={}).env == (("A", "1"), ("B", "caf\u00e9"))
    assert load_sub(dag, environ={}, params=(), work_dir=str(tmp_path), done=frozenset())
