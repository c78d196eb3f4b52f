"""What record keeping (store.Recorder: journal + coalesced snapshots) costs a run of
100,000 no-op steps: the same run with the real Recorder and with one that does nothing.

Two settings: real processes (`/bin/true`, 16 at a time: the issue's target, record
keeping under 5% of wall time), and the in-memory process double of
test_bench_engine.py (the engine's own loop: the worst case, in microseconds a step).

Run: pytest bench/test_bench_records.py -s   (DAGFAST_BENCH_STEPS=N for a smaller run)
"""

from __future__ import annotations

import os
import time

import pytest

import dagfast.runtime.engine as engine_mod
from dagfast.model import Dag, Step
from dagfast.report.base import Reporter
from dagfast.records.store import RunDir
from dagfast.runtime.session import run_in

from doubles import InstantExits

STEPS = int(os.environ.get("DAGFAST_BENCH_STEPS", "100000"))


class NoRecord(Reporter):
    """A Recorder that keeps nothing (but releases the run directory at the end)."""

    def __init__(self, run_dir, on_failure=None) -> None:
        self.run_dir = run_dir

    def run_finished(self, result) -> None:
        self.run_dir.close()


def no_op_dag(n: int) -> Dag:
    steps = [Step("root", ("/bin/true",), dir="/tmp")]
    steps += [Step(f"s{i}", ("/bin/true",), depends=(0,), dir="/tmp") for i in range(n - 1)]
    return Dag("bench", tuple(steps), dir="/tmp", max_active_steps=16)


def _time(dag, home, run_id, executor, monkeypatch, record: bool) -> float:
    if not record:
        monkeypatch.setattr(engine_mod, "Recorder", NoRecord)
    else:
        monkeypatch.undo()
    run_dir = RunDir.create(dag, home, run_id=run_id)
    t0, c0 = time.perf_counter(), time.process_time()
    kwargs = {} if executor is None else {"factory": executor}
    result = run_in(dag, run_dir, **kwargs)
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert all(r.status == 4 for r in result.steps)
    return took, cpu


@pytest.mark.parametrize("executor", ["processes", "double"])
def test_record_keeping_overhead_100k_no_op_steps(tmp_path, monkeypatch, executor):
    dag = no_op_dag(STEPS)
    ex = None if executor == "processes" else InstantExits
    rounds = int(os.environ.get("DAGFAST_BENCH_ROUNDS", "1" if executor == "processes" else "3"))
    with_rec, without = [], []
    for k in range(rounds):  # interleaved, so that drift hits both alike
        without.append(_time(dag, str(tmp_path), f"n{k}", ex, monkeypatch, record=False))
        with_rec.append(_time(dag, str(tmp_path), f"r{k}", ex, monkeypatch, record=True))
    (a, ac), (b, bc) = min(with_rec), min(without)
    # The engine's own CPU time is what record keeping adds to; on a busy machine the
    # wall times also carry other processes' noise.
    share = (ac - bc) / a
    journal = os.path.getsize(tmp_path / "runs" / "bench" / "r0" / "journal")
    print(f"\nrecord keeping, {STEPS:,} no-op steps, {executor}: wall {a:.2f}s with, "
          f"{b:.2f}s without; engine CPU {ac:.2f}s with, {bc:.2f}s without: "
          f"{(ac - bc) / STEPS * 1e6:.2f} us a step = {share:.1%} of the wall time "
          f"(wall difference {(a - b) / a:.1%}; journal {journal / 1e6:.1f} MB)")
    if executor == "processes":
        assert share < 0.05
