"""How fast each scheduler runs a 1,000,000-step layered DAG (see `layered_dag`).

Both implementations run the same graph, so completions/s and the ratio compare like
with like; the twin gets fewer rounds to keep the run bearable. Building the scheduler
is timed separately and is not part of the completion rate.
Run with `pytest bench/test_bench_sched.py`; the default `pytest` never collects bench/.
"""

from __future__ import annotations

import pytest

from dagfast import _sched, _sched_ref

IMPLEMENTATIONS = {"compiled": _sched.Scheduler, "ref": _sched_ref.Scheduler}
ROUNDS = {"compiled": 10, "ref": 3}
PASS = _sched.PASS


def drive(sched) -> int:
    """Runs every step to PASS the way the engine does: pop what is ready, finish it."""
    pop, finish = sched.pop, sched.finish
    while ready := pop(-1):
        for step in ready:
            finish(step, PASS)
    return sched.done_count


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_drive(benchmark, record, layered_dag, implementation):
    Scheduler = IMPLEMENTATIONS[implementation]
    n, dep_ptr, dep_idx = layered_dag
    benchmark.group = "drive: pop/finish(PASS) until done, 1,000,000 steps"

    def fresh():
        return (Scheduler(n, dep_ptr, dep_idx),), {}

    done = benchmark.pedantic(drive, setup=fresh, rounds=ROUNDS[implementation], iterations=1)
    assert done == n
    record("drive", implementation, n)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_build(benchmark, record, layered_dag, implementation):
    Scheduler = IMPLEMENTATIONS[implementation]
    n, dep_ptr, dep_idx = layered_dag
    benchmark.group = "build: Scheduler(n, dep_ptr, dep_idx), 1,000,000 steps"
    sched = benchmark.pedantic(
        Scheduler, args=(n, dep_ptr, dep_idx), rounds=ROUNDS[implementation] // 2 + 1,
        iterations=1,
    )
    assert sched.ready_count == 100_000
    record("build", implementation, n)
