"""What the reporters add to the engine loop's cost per step (issue 7): the same 100,000
step fan-out as test_bench_engine.py, with no reporter, the live progress view (drawing
into a buffer as if it were a terminal), JSON lines, and plain lines.

Run: pytest bench/test_bench_report.py -s
"""

from __future__ import annotations

import io

import pytest

from dagfast.runtime.session import run_in
from dagfast.records.store import RunDir
from doubles import InstantExits
from test_bench_engine import fan_out


def _none():
    return None


def _progress():
    from dagfast.report.progress import ProgressReporter

    return ProgressReporter(io.StringIO(), width=120)


def _json():
    from dagfast.report.jsonl import JsonReporter

    return JsonReporter(io.BytesIO())


def _plain():
    from dagfast.report.base import ConsoleReporter

    return ConsoleReporter(io.StringIO())


@pytest.mark.parametrize("make", [_none, _progress, _json, _plain],
                         ids=["none", "progress", "json", "plain"])
def test_reporter_cost_per_step(benchmark, tmp_path, make):
    dag = fan_out(100_000, 16)
    counter = iter(range(10**6))

    def run():
        run_dir = RunDir.create(dag, str(tmp_path), run_id=f"r{next(counter)}")
        return run_in(dag, run_dir, make(), factory=InstantExits)

    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert all(r.status == 4 for r in result.steps)
    per_step = benchmark.stats.stats.median / len(dag.steps)
    benchmark.extra_info["us_per_step"] = round(per_step * 1e6, 2)
    print(f"\nreporter {make.__name__[1:]}: {per_step * 1e6:.2f} us per step")
