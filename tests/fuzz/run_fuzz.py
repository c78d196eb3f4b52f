"""Runs the atheris harness for DAGFAST_FUZZ_SECONDS seconds: `DAGFAST_FUZZ_SECONDS=600
pytest tests/fuzz/run_fuzz.py`. Its name keeps it out of the default suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def test_atheris_finds_no_crash_in_the_loader(tmp_path):
    seconds = int(os.environ.get("DAGFAST_FUZZ_SECONDS", "0"))
    if not seconds:
        pytest.skip("set DAGFAST_FUZZ_SECONDS to fuzz")
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = [HERE / "corpus", REPO / "examples", REPO / "examples" / "spec"]
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_load.py"), str(corpus),
         *[str(s) for s in seeds if s.is_dir()],
         f"-max_total_time={seconds}", "-rss_limit_mb=1024", "-timeout=10"],
        cwd=tmp_path, capture_output=True, text=True, timeout=seconds + 120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
