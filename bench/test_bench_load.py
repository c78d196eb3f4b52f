"""How long `load` takes on big generated DAG files (pytest-benchmark; not collected by
default: run `pytest bench/test_bench_load.py`, or `python bench/test_bench_load.py`
for a quick table without pytest).

The floor is libyaml's event stream itself, read in C with no Python object
(`libyaml`): the loader's own work is what `load` adds on top of it. `pyyaml events` is
the same stream as PyYAML's `CParser` gives it, one Python object an event (what
`events.compose`, the reference, pays); `parse` is the tree by the compiled fast path.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from yaml._yaml import CParser
from yaml.events import StreamEndEvent

from dagfast.loader import _tree, events, load, tree
from dagfast.loader.tree import parse

N = 100_000


def fan_out(n: int) -> str:
    """One root, n steps that each depend on it (the shape the engine is tuned for)."""
    out = ["type: graph", "steps:", "  - name: root", "    command: true"]
    for i in range(n):
        out.append(f"  - name: step_{i}\n    command: true\n    depends: root")
    return "\n".join(out) + "\n"


def chain(n: int) -> str:
    """n steps in one chain, written as `type: chain` with no depends at all."""
    out = ["type: chain", "steps:"]
    out += [f"  - name: s{i}\n    command: echo {i}" for i in range(n)]
    return "\n".join(out) + "\n"


def pyyaml_events(data: bytes) -> None:
    parser = CParser(data)
    while parser.get_event().__class__ is not StreamEndEvent:
        pass


@pytest.fixture(scope="module")
def fan_out_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "fanout.yaml"
    path.write_text(fan_out(N))
    return path


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "chain.yaml"
    path.write_text(chain(N))
    return path


def test_libyaml_floor(benchmark, fan_out_file):
    data = fan_out_file.read_bytes()
    benchmark.pedantic(_tree.events, args=(data,), rounds=5)


def test_pyyaml_events(benchmark, fan_out_file):
    data = fan_out_file.read_bytes()
    benchmark.pedantic(pyyaml_events, args=(data,), rounds=5)


def test_parse_reference(benchmark, fan_out_file):
    data = fan_out_file.read_bytes()
    tree_ = benchmark.pedantic(events.compose, args=(data, False, tree.MAX_DEPTH, tree.MAX_VALUES),
                               rounds=5)
    assert len(tree_["steps"]) == N + 1


def test_parse_fan_out(benchmark, fan_out_file):
    data = fan_out_file.read_bytes()
    tree = benchmark.pedantic(parse, args=(data,), rounds=5)
    assert len(tree["steps"]) == N + 1


def test_load_fan_out(benchmark, fan_out_file):
    dag = benchmark.pedantic(load, args=(fan_out_file,), rounds=5)
    assert len(dag.steps) == N + 1


def test_load_chain(benchmark, chain_file):
    dag = benchmark.pedantic(load, args=(chain_file,), rounds=5)
    assert dag.steps[-1].depends == (N - 2,)


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fan, ch = Path(tmp, "fanout.yaml"), Path(tmp, "chain.yaml")
        fan.write_text(fan_out(N))
        ch.write_text(chain(N))
        data = fan.read_bytes()
        cases = {
            "libyaml (floor)": lambda: _tree.events(data),
            "pyyaml events": lambda: pyyaml_events(data),
            "parse reference": lambda: events.compose(data, False, tree.MAX_DEPTH, tree.MAX_VALUES),
            "parse": lambda: parse(data),
            "load fan-out": lambda: load(fan),
            "load chain": lambda: load(ch),
        }
        rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(rounds):  # interleaved, so a busy moment hurts every case alike
            for name, fn in cases.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
        load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{N:,} steps, {len(data) / 1e6:.1f} MB, best of {rounds}, load average "
              f"{load_avg}:")
        for name, seconds in best.items():
            print(f"  {name:<16} {seconds:.3f} s")


if __name__ == "__main__":
    main()
