"""The engine loop's own cost per step, with no processes: a double of the process
manager ends every step as soon as it starts. What is left is scheduling, records,
environment building and bookkeeping: the Python side of the spawn path.

Run: pytest bench/test_bench_engine.py
"""

from __future__ import annotations

import os

import pytest

from dagfast.engine import Engine
from dagfast.model import Dag, Step
from dagfast.store import RunDir


class InstantExits:
    """A ProcessManager double: every started step exits 0 on the next loop turn."""

    def __init__(self, loop, limit, on_exits):
        self._loop = loop
        self._limit = limit or (1 << 30)
        self._on_exits = on_exits
        self._pending: list = []
        self.running_count = 0
        self._held = 0

    def free_slots(self) -> int:
        return self._limit - self.running_count - self._held

    def hold(self) -> None:
        self._held += 1

    def release(self) -> None:
        self._held -= 1

    def start(self, token, argv, env, cwd, stdout, stderr) -> int:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append((token, 0))
        self.running_count += 1
        return 0

    def _flush(self) -> None:
        exits, self._pending = self._pending, []
        self.running_count -= len(exits)
        self._on_exits(exits)

    def signal_running(self, sig) -> None: ...
    def signal_all_groups(self, sig) -> None: ...
    def live_groups(self) -> int: return 0
    def close(self) -> None: ...


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
        return Engine(dag, run_dir, executor=InstantExits).run()

    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert all(r.status == 4 for r in result.steps)
    per_step = benchmark.stats.stats.median / len(dag.steps)
    benchmark.extra_info["us_per_step"] = round(per_step * 1e6, 2)
    print(f"\nengine loop, maxActiveSteps {limit}: {per_step * 1e6:.1f} us per step "
          f"({1 / per_step:,.0f} steps/s) on pid {os.getpid()}")
