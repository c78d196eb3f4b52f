"""Fan-out items end to end (real processes, real files): items of a one-step sub-DAG
run in the caller's engine (no sub-run directory), each recorded once in the journal;
per-item status, logs and retry (after failures and after kill -9); retryPolicy per
item; the fan-in summary and its JSON-lines file past INLINE items; `--json` events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from spectools import alive, dagfast

CHILD = """\
    params: [ITEM=none]
    steps:
      - name: work
        command: sh -c 'echo "$1" >> {log}; echo "out $1"; echo "err $1" >&2; test ! -e {dir}/fail-"$1"' sh ${{ITEM}}
        output: OUT
    """


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def setup(tmp: Path, items, extra: str = "") -> Path:
    write(tmp / "child.yaml", CHILD.format(log=tmp / "log", dir=tmp))
    listed = ", ".join(json.dumps(i) for i in items)
    (tmp / "fan.yaml").write_text(
        "steps:\n  - name: fan\n    call: child.yaml\n    parallel:\n"
        f"      items: [{listed}]\n      maxConcurrent: 4\n    output: ALL\n"
        + extra)
    return tmp / "fan.yaml"


def run_failing(tmp: Path, count: int, failing: tuple[int, ...]) -> tuple[Path, str]:
    """Run a fan-out of items k0..k<count-1> of which `failing` fail; (home, run id)."""
    dag = setup(tmp, [f"k{n}" for n in range(count)])
    for n in failing:
        (tmp / f"fail-k{n}").touch()
    home = tmp / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 1
    return home, run_id_of(res)


def run_id_of(res) -> str:
    for line in res.out.splitlines():
        if line.startswith("dagfast: run "):
            return line.split()[2]
    raise AssertionError(res.out + res.err)


def ran(tmp: Path) -> list[str]:
    return (tmp / "log").read_text().split()


def run_dir(home: Path, run_id: str) -> Path:
    return next(p for p in (home / "runs").glob(f"*/{run_id}"))


def test_items_of_a_one_step_sub_dag_run_in_the_engine_and_record_one_entry_each(tmp_path):
    items = [f"i{k}" for k in range(300)]
    dag = setup(tmp_path, items, """\
  - name: total
    command: echo "${ALL.summary.total} ${ALL.summary.succeeded} ${ALL.outputs[7].OUT}"
    depends: fan
""")
    home = tmp_path / "home"
    res = dagfast("run", "-v", str(dag), home=home)
    assert res.code == 0, res.out + res.err
    assert "total | 300 300 out i7" in res.out
    assert sorted(ran(tmp_path)) == sorted(items)
    path = run_dir(home, run_id_of(res))
    files = [p for p in path.rglob("*") if p.is_file()]
    assert not (path / "children").exists()
    assert len(files) < 20, files
    # The record of an item: its journal entry and its slot of the output store's index.
    size = sum(p.stat().st_size for p in files if p.name in ("journal", "output.idx"))
    assert size / len(items) <= 300, size


def test_status_and_logs_name_items_by_index_and_key(tmp_path):
    dag = setup(tmp_path, ["a", "b", "c"])
    (tmp_path / "fail-b").touch()
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 1
    run_id = run_id_of(res)
    assert "  failed: fan (1 of 3 sub-DAG runs failed)" in res.out
    assert "    fan[1]/work: exit status 1" in res.out
    got = dagfast("status", run_id, "fan", home=home)
    assert got.code == 0, got.err
    assert "items:    3 (2 succeeded, 1 failed)" in got.out
    got = dagfast("status", run_id, "fan", "--limit", "1", home=home)
    assert "  fan[1]  failed  exit 1  key b  exit status 1" in got.out
    doc = json.loads(dagfast("status", run_id, "fan", "--json", home=home).out)
    assert doc["items"]["counts"] == {"succeeded": 2, "failed": 1}
    assert [(f["index"], f["key"]) for f in doc["items"]["failed"]] == [(1, "b")]
    for which in ("b", "1"):
        got = dagfast("logs", run_id, "fan", "--item", which, home=home)
        assert (got.code, got.out) == (0, "out b\n"), got.err
    got = dagfast("logs", run_id, "fan", "--item", "c", "--stderr", home=home)
    assert (got.code, got.out) == (0, "err c\n"), got.err
    got = dagfast("logs", f"{run_id}.0.1", "work", "--stderr", home=home)  # its own id
    assert (got.code, got.out) == (0, "err b\n"), got.err
    got = dagfast("logs", run_id, "fan", "--item", "zz", home=home)
    assert got.code == 1
    assert got.err.startswith("dagfast: step `fan` has no item `zz` (it has 3 items")


def test_retry_runs_only_the_items_that_failed(tmp_path):
    home, run_id = run_failing(tmp_path, 10, (2, 7))
    for n in (2, 7):
        (tmp_path / f"fail-k{n}").unlink()
    again = dagfast("retry", run_id, home=home)
    assert again.code == 0, again.out + again.err
    assert "(keeping 8 items that succeeded)" in again.out
    counts = {k: ran(tmp_path).count(k) for k in set(ran(tmp_path))}
    assert counts == {f"k{n}": 2 if n in (2, 7) else 1 for n in range(10)}
    doc = json.loads(dagfast("status", run_id, "fan", "--json", home=home).out)
    assert doc["status"] == "succeeded" and doc["items"]["counts"] == {"succeeded": 10}
    # The retried item's two executions are both kept.
    got = dagfast("logs", run_id, "fan", "--item", "k2", "--attempt", "1", home=home)
    assert (got.code, got.out) == (0, "out k2\n"), got.err


def test_retry_policy_applies_to_each_item(tmp_path):
    write(tmp_path / "child.yaml", f"""\
        params: [ITEM=none]
        steps:
          - name: work
            command: sh -c 'echo "$1" >> {tmp_path}/log; test -e {tmp_path}/seen-"$1" || {{ touch {tmp_path}/seen-"$1"; exit 3; }}' sh ${{ITEM}}
        """)
    dag = write(tmp_path / "fan.yaml", """\
        steps:
          - name: fan
            call: child.yaml
            parallel: {items: [a, b, c]}
            retryPolicy: {limit: 1}
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    assert sorted(ran(tmp_path)) == ["a", "a", "b", "b", "c", "c"]  # each item, not the step


def test_the_fan_in_goes_to_a_json_lines_file_past_inline_items(tmp_path):
    from dagfast.runtime.fanout import INLINE

    dag = setup(tmp_path, [str(n) for n in range(INLINE + 1)], """\
  - name: after
    command: sh -c 'echo "$0"; wc -l < "$1"' "${ALL.summary.total}" "${ALL.file}"
    depends: fan
""")
    res = dagfast("run", "-v", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    assert f"after | {INLINE + 1}" in res.out
    lines = [line for line in res.out.splitlines() if line.startswith("after | ")]
    assert lines[-1].split()[-1] == str(INLINE + 1)
    path = next((tmp_path / "home").rglob("items/0.jsonl"))
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"index", "key", "status", "name", "outputs"}


def test_json_events_name_each_item(tmp_path):
    dag = setup(tmp_path, ["x", "y"])
    res = dagfast("run", "--json", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.err
    events = [json.loads(line) for line in res.out.splitlines()]
    items = sorted((e["item"], e["key"], e["status"]) for e in events
                   if e["event"] == "item_finished")
    assert items == [(0, "x", "succeeded"), (1, "y", "succeeded")]


def test_a_duplicate_key_fails_the_step_and_keeps_what_ran(tmp_path):
    dag = setup(tmp_path, ["a", "b", "a"])
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 1
    assert "item 2 has the same key as an earlier item: `a`" in res.out
    assert sorted(ran(tmp_path)) == ["a", "b"]


def test_kill_9_in_the_middle_then_retry_runs_each_item_once(tmp_path):
    """Items that ended before the kill are kept; only those running at the kill (at
    most maxConcurrent of them) may run twice."""
    n = 120
    write(tmp_path / "child.yaml", f"""\
        params: [ITEM=none]
        steps:
          - name: work
            command: sh -c 'echo "$1" >> {tmp_path}/log; test -e {tmp_path}/go || sleep 0.05' sh ${{ITEM}}
        """)
    dag = write(tmp_path / "fan.yaml", f"""\
        steps:
          - name: fan
            call: child.yaml
            parallel:
              items: [{", ".join(f"i{k}" for k in range(n))}]
              maxConcurrent: 4
        """)
    home = tmp_path / "home"
    env = dict(os.environ, DAGFAST_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", "-q", str(dag)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "log").exists() or len(ran(tmp_path)) < 30:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    (tmp_path / "go").touch()
    before = ran(tmp_path)
    assert len(before) < n
    run_id = json.loads(dagfast("status", str(dag), "--json", home=home).out)["run_id"]
    again = dagfast("retry", run_id, home=home)
    assert again.code == 0, again.out + again.err
    after = ran(tmp_path)
    assert sorted(set(after)) == sorted(f"i{k}" for k in range(n))
    twice = [k for k in set(after) if after.count(k) > 1]
    assert len(twice) <= 4 + 4, twice  # running at the kill, or ended in its last turn
    assert all(after.count(k) == 2 for k in twice)


def test_a_command_step_runs_per_line_of_a_file_and_per_line_of_a_command(tmp_path):
    (tmp_path / "items.txt").write_text("".join(f"line {k}\n" for k in range(25)))
    dag = write(tmp_path / "dag.yaml", f"""\
        steps:
          - name: lines
            command: sh -c 'echo "$ITEM" >> {tmp_path}/log'
            parallel: {{file: items.txt, maxConcurrent: 3}}
          - name: numbers
            command: sh -c 'echo "n$ITEM" >> {tmp_path}/log'
            parallel:
              command: {sys.executable} -c "print(*range(5), sep=chr(10))"
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    got = (tmp_path / "log").read_text().splitlines()
    assert sorted(got) == sorted([f"line {k}" for k in range(25)] + [f"n{k}" for k in range(5)])


def test_a_matrix_runs_each_combination_with_its_values_as_variables(tmp_path):
    dag = write(tmp_path / "dag.yaml", f"""\
        steps:
          - name: build
            command: sh -c 'echo "$os-$arch" >> {tmp_path}/log'
            matrix:
              os: [linux, mac]
              arch: [x86, arm]
              exclude: [{{os: mac, arch: x86}}]
              include: [{{os: win, arch: x86}}]
            output: B
          - name: after
            command: echo "${{B.summary.total}} ${{B.summary.succeeded}}"
            depends: build
        """)
    res = dagfast("run", "-v", str(dag), home=tmp_path / "home")
    assert res.code == 0, res.out + res.err
    assert sorted((tmp_path / "log").read_text().split()) == [
        "linux-arm", "linux-x86", "mac-arm", "win-x86"]
    assert "after | 4 4" in res.out


def test_a_source_that_breaks_midway_fails_the_step_keeps_what_ran_and_retry_resumes(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a"}\n{"id": "b"}\nnot json\n{"id": "c"}\n')
    dag = write(tmp_path / "dag.yaml", f"""\
        steps:
          - name: fan
            command: sh -c 'echo "$id" >> {tmp_path}/log'
            parallel: {{file: items.jsonl, key: "${{ITEM.id}}", maxConcurrent: 1}}
        """)
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 1
    assert "failed: fan (items.jsonl:3: not valid JSON" in res.out, res.out
    assert sorted(ran(tmp_path)) == ["a", "b"]
    items.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "z"}\n{"id": "c"}\n')
    again = dagfast("retry", run_id_of(res), home=home)
    assert again.code == 0, again.out + again.err
    assert sorted(ran(tmp_path)) == ["a", "b", "c", "z"]  # a and b kept, by key


def test_an_item_command_that_fails_midway_fails_the_step_after_its_items(tmp_path):
    dag = write(tmp_path / "dag.yaml", f"""\
        steps:
          - name: fan
            command: sh -c 'echo "$ITEM" >> {tmp_path}/log'
            parallel:
              command: "echo one; echo two; exit 3"
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 1
    assert "the item command `echo one; echo two; exit 3` exited with status 3 after 2 items" \
        in res.out, res.out
    assert sorted(ran(tmp_path)) == ["one", "two"]


def test_status_pages_a_large_fan_out_by_its_failed_items(tmp_path):
    home, run_id = run_failing(tmp_path, 25, (3, 17))
    got = dagfast("status", run_id, home=home)
    names = [line.split()[0] for line in got.out.split("\n\n", 1)[1].splitlines()[1:]]
    assert names == ["fan", "fan[3]/work", "fan[17]/work", "fan[...]"], got.out
    assert "23 more" in got.out
    got = dagfast("status", run_id, "fan", home=home)
    listed = [line.split()[0] for line in got.out.splitlines() if line.startswith("  ")]
    assert listed == ["fan[3]", "fan[17]"], got.out
    assert "items:    25 (23 succeeded, 2 failed)" in got.out
    got = dagfast("status", run_id, "fan", "--limit", "1", home=home)
    assert "  ... and 1 more (--limit 0 lists them all)" in got.out


def test_timeout_sec_applies_to_each_item_and_kills_its_group(tmp_path):
    dag = write(tmp_path / "dag.yaml", f"""\
        steps:
          - name: fan
            command: sh -c 'if [ "$ITEM" = slow ]; then (sleep 60; echo late >> {tmp_path}/log) & wait; fi; echo "$ITEM" >> {tmp_path}/log'
            parallel: {{items: [a, slow, b]}}
            timeoutSec: 1
        """)
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 1
    assert "failed: fan (1 of 3 items failed)" in res.out, res.out
    assert "    fan[1]: step timed out after 1s" in res.out, res.out
    assert sorted(ran(tmp_path)) == ["a", "b"]
    # Its group was killed: nothing of it is left to write `late` (no process of the
    # run carries its run id any more).
    tag = f"DAG_RUN_ID={run_id_of(res)}".encode()
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if any(v.startswith(tag) for v in f.read().split(b"\0")):
                    left.append(pid)
        except OSError:
            pass  # gone, or not ours to read
    assert left == []


def test_a_fan_out_that_calls_its_own_dag_at_run_time_is_stopped_and_named(tmp_path):
    """The sub-DAG is known only once `a` ran: the loop is caught when the item's
    sub-run would start (in the one place every sub-run starts), not by the loader."""
    dag = write(tmp_path / "dyn.yaml", """\
        steps:
          - name: a
            command: echo dyn.yaml
            output: D
          - name: fan
            call: ${D}
            depends: a
            parallel: {items: [x]}
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home")
    assert res.code == 1
    assert "    fan[0]: the sub-DAG calls itself: dyn.yaml -> dyn.yaml" in res.out, res.out
    assert "    its items: dagfast status " in res.out


def test_a_timed_out_item_takes_the_processes_that_left_its_group_and_no_other_items(tmp_path):
    # Each item starts a child in a session of its own (`setsid`), which leaves the
    # item's process group; the slow item then waits past its timeout. Its child dies
    # with it (found by the item's identity in its environment); the quick item's child
    # is a background child of an item that ended normally, and is left alone (as a
    # step's is).
    dag = write(tmp_path / "dag.yaml", f"""\
        steps:
          - name: fan
            command: sh -c 'setsid sh -c "echo \\$\\$ > {tmp_path}/pid.$ITEM; exec sleep 120" > /dev/null 2>&1 & while [ ! -s {tmp_path}/pid.$ITEM ]; do sleep 0.01; done; if [ "$ITEM" = slow ]; then sleep 120; fi'
            parallel: {{items: [quick, slow]}}
            timeoutSec: 2
        """)
    home = tmp_path / "home"
    try:
        res = dagfast("run", str(dag), home=home)
        assert res.code == 1, res.out + res.err
        assert "    fan[1]: step timed out after 2s" in res.out, res.out
        slow = int((tmp_path / "pid.slow").read_text())
        quick = int((tmp_path / "pid.quick").read_text())
        deadline = time.monotonic() + 30
        while alive(slow) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(slow)  # SIGKILL was sent before the run ended: this is reaping
        assert alive(quick)
    finally:
        for name in ("pid.slow", "pid.quick"):
            try:
                os.kill(int((tmp_path / name).read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
