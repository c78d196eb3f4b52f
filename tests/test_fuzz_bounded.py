"""Coverage-guided fuzzing of the loader (atheris) for a bounded time, in every test run.

Seeded with the stored corpus and the examples, the harness (tests/fuzz/fuzz_load.py)
must find no crash: an exception that is not a LoadError, a LoadError problem with no
place, an input that takes more than 10 s (`-timeout`) or a process past 1 GiB
(`-rss_limit_mb`). Longer on demand: `DAGFAST_FUZZ_SECONDS=600 pytest tests/fuzz/run_fuzz.py`.
New inputs, crash files and logs go to the test's temporary directory, never the repo.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FUZZ = HERE / "fuzz"
REPO = HERE.parent
SECONDS = 5


def test_atheris_finds_no_crash_in_the_loader_in_5_seconds(tmp_path):
    found = tmp_path / "corpus"  # the first corpus directory receives new inputs
    found.mkdir()
    seeds = [FUZZ / "corpus", REPO / "examples", REPO / "examples" / "spec"]
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_load.py"), str(found), *map(str, seeds),
         f"-max_total_time={SECONDS}", "-rss_limit_mb=1024", "-timeout=10",
         f"-artifact_prefix={tmp_path}/"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 120,
    )  # fmt: skip
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name != "corpus")
    assert proc.returncode == 0 and not crashes, (crashes, proc.stderr[-4000:])
    assert "Done " in proc.stderr, proc.stderr[-2000:]  # it ran to its time, not less
