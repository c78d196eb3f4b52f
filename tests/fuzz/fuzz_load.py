"""Coverage-guided fuzzing of the loader with atheris; never collected by pytest.

Any input must give a Dag or a LoadError whose problems all say where; anything else
(another exception, a hang, a runaway allocation) is a crash atheris reports with the
input that caused it.

    pip install -e '.[fuzz]'
    python tests/fuzz/fuzz_load.py -max_total_time=600 -rss_limit_mb=1024 -timeout=10
    DAGFAST_FUZZ_SECONDS=600 pytest tests/fuzz/run_fuzz.py   # the same via pytest

tests/test_fuzz_bounded.py runs it for 25 s in every test run (so in CI).

`tests/fuzz/corpus/` seeds it (the examples are added at start); new finds are written
to the first corpus directory given on the command line, if any.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["dagfast"]):
    from dagfast.errors import LoadError
    from dagfast.loader import load_text

_WHOLE_FILE = ("file is empty", "file is larger than")
_TMP = tempfile.mkdtemp(prefix="dagfast-fuzz-")


def check(data: bytes) -> None:
    """One input: a Dag, or a LoadError whose problems are all located."""
    if b"`" in data:
        return  # backticks run commands while loading; not what this fuzzes
    try:
        load_text(data, file="fuzz.yaml", base_dir=_TMP, environ={"PATH": _TMP})
    except LoadError as exc:
        assert exc.problems
        for p in exc.problems:
            located = p.line is not None or p.path is not None
            assert located or p.message.startswith(_WHOLE_FILE), str(p)


def main(argv: list[str]) -> None:
    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
