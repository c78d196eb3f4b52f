"""The engine loop's own cost per step, with no processes: a double of the process
manager ends every step as soon as it starts. What is left is scheduling, records,
environment building and bookkeeping: the Python side of the spawn path.

Run: pytest bench/test_bench_engine.py
"""

from __future__ import annotations

import os

import pytest

from dagfast.runtime.session import run_in
from dagfast.model import Dag, Step
from dagfast.records.store import RunDir
from doubles import InstantExits


def fan_out(n: int, limit: int) -> Dag:
    sh = ("sh", "-e", "-c", "true")
    steps = [Step("root", sh, dir="/tmp")]
    steps += [Step(f"s{i}", sh, depends=(0,), dir="/tmp") for i in range(n)]
    return Dag("bench", tuple(steps), dir="/tmp", max_active_steps=limit)


@pytest.mark.parametrize("limit", [16, 0])
def test_engine_loop_100k_steps_without_processes(benchmark, tmp_path, limit):
    dag = fan_out(100_000, limit)
    counter = iter(range(10**6))

    def run():
        run_dir = RunDir.create(dag, str(tmp_path), run_id=f"r{next(counter)}")
        return run_in(dag, run_dir, factory=InstantExits)

    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert all(r.status == 4 for r in result.steps)
    per_step = benchmark.stats.stats.median / len(dag.steps)
    benchmark.extra_info["us_per_step"] = round(per_step * 1e6, 2)
    print(f"\nengine loop, maxActiveSteps {limit}: {per_step * 1e6:.1f} us per step "
          f"({1 / per_step:,.0f} steps/s) on pid {os.getpid()}")
