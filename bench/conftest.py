"""Shared fixtures of the scheduler benchmarks, and a summary of their throughput.

The summary prints after the run: completions per second for each scheduler, the ratio
between them, and whether the targets hold (compiled >= 2,000,000/s and >= 10x the twin).
"""

from __future__ import annotations

import random
import sys
from array import array
from pathlib import Path

import pytest

# The test doubles live with the tests (tests/doubles.py); the benchmarks use them too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

LAYERS = 10
WIDTH = 100_000
TARGET_RATE = 2_000_000
TARGET_RATIO = 10

# (what, implementation) -> (steps, median seconds), filled in by the benchmarks
RESULTS: dict[tuple[str, str], tuple[int, float]] = {}


@pytest.fixture(scope="session")
def layered_dag() -> tuple[int, array, array]:
    """10 layers of 100,000 steps; each step below the first waits for 2 distinct random
    steps of the layer above, drawn from random.Random(1234). Returns (n, dep_ptr, dep_idx)."""
    rng = random.Random(1234)
    n = LAYERS * WIDTH
    dep_idx = array("i")
    for layer in range(1, LAYERS):
        above = (layer - 1) * WIDTH
        for _ in range(WIDTH):
            # Two distinct picks in two draws: the second skips over the first.
            first = rng.randrange(WIDTH)
            second = rng.randrange(WIDTH - 1)
            second += second >= first
            dep_idx.append(above + first)
            dep_idx.append(above + second)
    dep_ptr = array("i", (2 * max(0, i - WIDTH) for i in range(n + 1)))
    return n, dep_ptr, dep_idx


@pytest.fixture
def record(benchmark):
    """Call as record(what, implementation, steps) after a benchmark ran, for the summary."""

    def record(what: str, implementation: str, steps: int) -> None:
        if benchmark.stats is None:  # --benchmark-disable: nothing was timed
            return
        median = benchmark.stats.stats.median
        RESULTS[what, implementation] = (steps, median)
        benchmark.extra_info["steps_per_s"] = round(steps / median)

    return record


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("dagfast scheduler throughput (median round)")
    units = {"drive": "completions/s", "build": "steps built/s"}
    for (what, implementation), (steps, median) in sorted(RESULTS.items(), reverse=True):
        write(f"{what:<6} {implementation:<9} {steps / median:>13,.0f} {units[what]:<14}"
              f" ({steps:,} steps in {median * 1e3:,.1f} ms)")
    if ("drive", "compiled") in RESULTS:
        rate = RESULTS["drive", "compiled"][0] / RESULTS["drive", "compiled"][1]
        verdict = "met" if rate >= TARGET_RATE else "MISSED"
        write(f"target: compiled >= {TARGET_RATE:,} completions/s: {verdict}")
    for what in ("drive", "build"):
        if (what, "compiled") in RESULTS and (what, "ref") in RESULTS:
            ratio = RESULTS[what, "ref"][1] / RESULTS[what, "compiled"][1]
            line = f"{what}: compiled is {ratio:.1f}x the twin"
            if what == "drive":
                line += f" (target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'})"
            write(line)
