"""The spec page's examples, run as written, with stub tools that log when they run.

Each test copies one example from `examples/spec/` (a verbatim copy of the page's YAML,
but for a first line saying why an example that does not validate is there, kept honest
by `test_examples_match_the_spec_page`) into a temporary directory and runs
it with `dagfast run`; the stubs on PATH record each tool's start and end time, from
which the tests read how many steps ran at once and in what order.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from spectools import EXAMPLES, REPO, Stubs, before, dagfast, max_overlap

SPEC_PAGE = REPO.parent / "shared" / "spec" / "parallel-execution.md"


def spec_blocks(text: str) -> dict[str, str]:
    """The page's YAML blocks, keyed by the slug of the heading above each."""
    blocks: dict[str, str] = {}
    heading = ""
    for m in re.finditer(r"^#{2,4} ([^\n]+)$|^```yaml\n(.*?)^```", text, re.M | re.S):
        if m.group(1):
            heading = re.sub(r"^\d+\.\s*", "", m.group(1))
        else:
            slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
            blocks[slug] = m.group(2)
    return blocks


@pytest.mark.skipif(not SPEC_PAGE.exists(), reason="the shared spec page is not beside this clone")
def test_examples_match_the_spec_page():
    blocks = spec_blocks(SPEC_PAGE.read_text())
    # An example that does not validate opens with a line of ours saying why (issue 17).
    ours = {p.stem: re.sub(r"\A# There to fail[^\n]*\n", "", p.read_text())
            for p in (EXAMPLES / "spec").glob("*.yaml")}
    assert ours == blocks


def run_example(tmp_path: Path, slug: str, stubs: list[str], sleep: float = 0.4,
                peers: tuple[str, ...] = (), gather: int = 0):
    """Run an example with `stubs`; `gather` of the `peers` hold until all have started."""
    dag = tmp_path / "dag.yaml"
    shutil.copy(EXAMPLES / "spec" / f"{slug}.yaml", dag)
    s = Stubs(tmp_path, stubs, sleep=sleep, peers=peers, gather=gather)
    res = dagfast("run", str(dag), env=s.env(), home=tmp_path / "home")
    return res, s


def test_basic_parallel_runs_all_three_at_once(tmp_path):
    names = ["process1.sh", "process2.sh", "process3.sh"]
    res, s = run_example(tmp_path, "basic-parallel-execution", names, peers=names, gather=3)
    assert res.code == 0, res.err
    calls = s.calls()
    assert s.labels() == ["process1.sh", "process2.sh", "process3.sh"]
    assert max_overlap(calls) == 3


def test_max_active_steps_caps_downloads_at_three(tmp_path):
    res, s = run_example(tmp_path, "max-active-steps", ["wget"], peers=("wget",), gather=3)
    assert res.code == 0, res.err
    calls = s.calls()
    assert s.labels() == [f"wget file{i}.zip" for i in range(1, 5)]
    assert max_overlap(calls) == 3
    # Ties break by file order: the fourth download starts last.
    assert calls[-1].label == "wget file4.zip"


def test_dependencies_setup_then_both_then_combine(tmp_path):
    #   setup -> process_a -\
    #         -> process_b --> combine
    stubs = ["prepare.sh", "process_a.sh", "process_b.sh", "combine.sh"]
    res, s = run_example(tmp_path, "dependencies", stubs, peers=stubs[1:3], gather=2)
    assert res.code == 0, res.err
    calls = s.calls()
    assert s.labels() == sorted(stubs)
    assert before(calls, "prepare.sh", "process_a.sh")
    assert before(calls, "prepare.sh", "process_b.sh")
    assert before(calls, "process_a.sh", "combine.sh")
    assert before(calls, "process_b.sh", "combine.sh")
    middle = [c for c in calls if c.name in ("process_a.sh", "process_b.sh")]
    assert max_overlap(middle) == 2


def test_map_reduce_maps_in_parallel_then_reduce(tmp_path):
    res, s = run_example(tmp_path, "map-reduce-pattern", ["map.py", "reduce.py"],
                         peers=("map.py",), gather=3)
    assert res.code == 0, res.err
    calls = s.calls()
    maps = [c for c in calls if c.name == "map.py"]
    assert len(maps) == 3 and max_overlap(maps) == 3
    assert before(calls, "map.py", "reduce.py")
    assert [c.name for c in calls].count("reduce.py") == 1


def test_cpu_bound_runs_two_at_a_time(tmp_path):
    res, s = run_example(tmp_path, "cpu-bound-tasks", ["ffmpeg"], peers=("ffmpeg",), gather=2)
    assert res.code == 0, res.err
    assert s.labels() == [f"ffmpeg -i input{i}.mp4 output{i}.mp4" for i in (1, 2, 3)]
    assert max_overlap(s.calls()) == 2


def test_io_bound_runs_downloads_together(tmp_path):
    res, s = run_example(tmp_path, "io-bound-tasks", ["curl"], peers=("curl",), gather=2)
    assert res.code == 0, res.err
    assert s.labels() == [f"curl -O https://example.com/file{i}" for i in (1, 2)]
    assert max_overlap(s.calls()) == 2


def test_mixed_workloads_order(tmp_path):
    #   download_data -> process_data -\
    #   download_models ----------------> apply_models
    stubs = ["download_all.sh", "download_models.sh", "heavy_processing.py", "apply_models.py"]
    res, s = run_example(tmp_path, "mixed-workloads", stubs, peers=stubs[:2], gather=2)
    assert res.code == 0, res.err
    calls = s.calls()
    downloads = [c for c in calls if c.name.startswith("download")]
    assert max_overlap(downloads) == 2
    assert before(calls, "download_all.sh", "heavy_processing.py")
    assert before(calls, "heavy_processing.py", "apply_models.py")
    assert before(calls, "download_models.sh", "apply_models.py")


def test_load_balancing_splits_then_processes_four_chunks(tmp_path):
    (tmp_path / "input.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    res, s = run_example(tmp_path, "load-balancing", ["process.py"],
                         peers=("process.py",), gather=4)
    assert res.code == 0, res.err
    # `split` is the real tool: the chunks exist in the DAG's directory.
    assert sorted(p.name for p in tmp_path.glob("chunk_*")) == [
        "chunk_aa", "chunk_ab", "chunk_ac", "chunk_ad"]
    assert s.labels() == [f"process.py chunk_a{c}" for c in "abcd"]
    assert max_overlap(s.calls()) == 4


def test_batch_operations_one_step_runs_files_in_background(tmp_path):
    for name in ("a.csv", "b.csv", "c.csv"):
        (tmp_path / name).write_text("x\n")
    res, s = run_example(tmp_path, "batch-operations", ["process.py"],
                         peers=("process.py",), gather=3)
    assert res.code == 0, res.err
    assert s.labels() == ["process.py a.csv", "process.py b.csv", "process.py c.csv"]
    assert max_overlap(s.calls()) == 3


def test_resource_pools_workers_after_pool(tmp_path):
    res, s = run_example(tmp_path, "resource-pools", ["create_pool.py", "worker.py"],
                         peers=("worker.py",), gather=2)
    assert res.code == 0, res.err
    calls = s.calls()
    assert before(calls, "create_pool.py", "worker.py")
    workers = [c for c in calls if c.name == "worker.py"]
    assert len(workers) == 2 and max_overlap(workers) == 2


def test_minimize_dependencies_block_is_rejected_for_its_repeated_key(tmp_path):
    # The page's block repeats `steps:`; YAML forbids that, and so do we (exit 2).
    res, _ = run_example(tmp_path, "minimize-dependencies", [])
    assert res.code == 2
    assert "steps" in res.err and "dag.yaml:" in res.err
    assert not (tmp_path / "home").exists()


def test_minimize_dependencies_each_half_behaves_as_the_page_says(tmp_path):
    # The two DAGs the block shows, split apart: the first runs one step at a time,
    # the second runs cmd1 and cmd2 together and cmd3 after both.
    text = (EXAMPLES / "spec" / "minimize-dependencies.yaml").read_text()
    first, second = text.split("# More optimal")
    second = "# More optimal" + second
    for i, part in enumerate((first, second)):
        d = tmp_path / f"half{i}"
        d.mkdir()
        (d / "dag.yaml").write_text(part)
        together = ("cmd1", "cmd2") if i else ()  # the second half runs them at once
        s = Stubs(d, ["cmd1", "cmd2", "cmd3"], sleep=0.3, peers=together, gather=2)
        res = dagfast("run", str(d / "dag.yaml"), env=s.env(), home=tmp_path / "home")
        assert res.code == 0, res.err
        calls = s.calls()
        assert [c.name for c in calls][-1] == "cmd3"
        if i == 0:
            assert max_overlap(calls) == 1
            assert [c.name for c in calls] == ["cmd1", "cmd2", "cmd3"]
        else:
            assert max_overlap(calls[:2]) == 2
            assert before(calls, "cmd1", "cmd3") and before(calls, "cmd2", "cmd3")
