"""`dagfast graph`: text levels, Mermaid, and dot that Graphviz renders."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from dagfast.report.graph import levels, render
from dagfast.model import Dag, Step
from spectools import EXAMPLES, dagfast

PARALLEL = str(EXAMPLES / "parallel.yaml")


def dag(*steps: tuple[str, tuple[int, ...]], name: str = "g") -> Dag:
    return Dag(name, tuple(Step(n, ("true",), depends=d) for n, d in steps))


def test_text_lists_levels_with_what_each_step_waits_for():
    res = dagfast("graph", PARALLEL)
    assert res.code == 0, res.err
    assert res.out == (
        "wordcount: 5 steps, 6 dependencies, 3 levels\n"
        "level 0\n"
        "  prepare\n"
        "level 1\n"
        "  count doc1  <- prepare\n"
        "  count doc2  <- prepare\n"
        "  count doc3  <- prepare\n"
        "level 2\n"
        "  total  <- count doc1, count doc2, count doc3\n"
    )


def test_levels_follow_the_longest_path_whatever_the_file_order():
    #   c -> b -> a        d (alone);  a also waits for c directly
    g = dag(("a", (1, 2)), ("b", (2,)), ("c", ()), ("d", ()))
    assert levels(g) == [2, 1, 0, 0]


def test_mermaid_quotes_names():
    g = dag(('say "hi" & go', ()), ("b", (0,)))
    assert render(g, "mermaid") == (
        "flowchart LR\n"
        '  s0["say #quot;hi#quot; #amp; go"]\n'
        '  s1["b"]\n'
        "  s0 --> s1\n"
    )


def test_dot_renders_with_graphviz(tmp_path):
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz `dot` is missing: .ci/run installs it")
        pytest.skip("Graphviz `dot` is not installed")
    res = dagfast("graph", "--format", "dot", PARALLEL)
    assert res.code == 0, res.err
    svg = subprocess.run(["dot", "-Tsvg"], input=res.out, capture_output=True, text=True,
                         check=True).stdout
    for name in ("prepare", "count doc1", "total"):
        assert f">{name}</text>" in svg
    assert svg.count('class="edge"') == 6
    odd = render(dag(('a "quoted" \\ name', ()), ("b", (0,))), "dot")
    subprocess.run(["dot", "-Tsvg"], input=odd, capture_output=True, text=True, check=True)


def test_a_hundred_thousand_steps_render_in_every_format():
    n = 100_000
    big = Dag("big", (Step("root", ("true",)),)
              + tuple(Step(f"s{i}", ("true",), depends=(0,)) for i in range(1, n)))
    assert render(big, "dot").count(" -> ") == n - 1
    assert render(big, "mermaid").count(" --> ") == n - 1
    assert render(big, "text").startswith(f"big: {n} steps, {n - 1} dependencies, 2 levels\n")


def test_unknown_format_is_a_usage_error():
    res = dagfast("graph", "--format", "png", PARALLEL)
    assert res.code == 2 and "invalid choice" in res.err
