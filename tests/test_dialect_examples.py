"""Every example in examples/dagu2/ (our own equivalents of Dagu 2.x's documented `call`,
`parallel`, `outputs` and `type` examples) validates as 2.x or as the same in both, and
runs: checked from its printed lines and the sub-runs' logs."""

from __future__ import annotations

import re

import pytest

from spectools import EXAMPLES, dagfast

DAGU2 = EXAMPLES / "dagu2"

EXPECTED = {
    "chain.yaml": ["cmd_1 | download", "cmd_2 | process", "cmd_3 | upload"],
    "graph.yaml": ["setup | setting up", "task_a | task A", "task_b | task B", "task_c | task C",
                   "merge | all three done"],
    "nested.yaml": ["prepare | preparing work for the child",
                    "done | the child finished; all done"],
    "outputs.yaml": ["announce | releasing v{year}.1 ({{arch:{arch}}})",
                     "package | packaging v{year}.1", "package | first line",
                     "package | second line"],
    "fan-out.yaml": ["list | regions for 2026-12-07", "report | all regions processed"],
}
SUB_RUNS = {
    "nested.yaml": ["child working on task 123"],
    "fan-out.yaml": ["processing ap for 2026-12-07", "processing eu for 2026-12-07",
                     "processing us for 2026-12-07"],
}


def test_the_examples_are_the_ones_listed():
    assert sorted(p.name for p in DAGU2.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_dagu2_example_runs(tmp_path, name):
    import platform
    import time

    home = tmp_path / "home"
    res = dagfast("run", "-v", str(DAGU2 / name), home=home)
    assert res.code == 0, res
    lines = [x for x in res.out.splitlines() if re.match(r"\S+ \| ", x)]
    year = time.strftime("%Y")
    expected = [e.format(year=year, arch=platform.machine()) for e in EXPECTED[name]]
    # (steps that run at once print in any order: compared sorted; `-v` shows a sub-run's
    # steps by address, `regions[1]/cmd_1 | ...`)
    own = [x for x in lines if "/" not in x.split(" | ")[0]]
    assert sorted(x for x in own if not x.startswith(("regions |", "run_child |"))) == sorted(
        expected)
    subs = sorted(x.split(" | ", 1)[1] for x in lines if "/" in x.split(" | ")[0])
    assert subs == sorted(SUB_RUNS.get(name, []) + (["child done"] if name == "nested.yaml"
                                                     else []))
