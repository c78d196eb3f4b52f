"""One way to address anything in a run, end to end: `STEP/CHILD` and `STEP[K]/CHILD`
for sub-DAG steps, `handlerOn.EVENT` for handlers, `--attempt N` for a retried step's
executions; in `logs`, `status` (text and JSON), `trace`, and the failure's ending."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from spectools import dagfast

#   flaky (fails twice, then passes; retryPolicy)
#   fan  -> child.yaml x 3 items (item [1] fails with `boom-2` on stderr)
#   one  -> child.yaml once
#   handlerOn.failure (fails with `handler-err` on stderr)
CHILD = """\
    params: [N=0]
    steps:
      - name: work
        command: sh -c 'echo child-out $N; if [ "$N" = 2 ]; then echo boom-$N >&2; exit 3; fi'
    """
PARENT = """\
    handlerOn:
      failure:
        command: sh -c 'echo handler-err >&2; exit 5'
    steps:
      - name: flaky
        command: sh -c 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo try $n; [ $n -ge 3 ]'
        dir: {dir}
        retryPolicy: {{limit: 3}}
      - name: fan
        call: child.yaml
        parallel: {{items: ["1", "2", "3"]}}
        params: N=${{ITEM}}
      - name: one
        call: child.yaml
    """


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """(run id, home, DAG file, the run's result) of one run of PARENT."""
    tmp = tmp_path_factory.mktemp("addressing")
    (tmp / "child.yaml").write_text(textwrap.dedent(CHILD))
    dag = tmp / "parent.yaml"
    dag.write_text(textwrap.dedent(PARENT.format(dir=tmp)))
    home = tmp / "home"
    res = dagfast("run", str(dag), "--junit", str(tmp / "junit.xml"), home=home)
    assert res.code == 1, res.err
    run_id = re.search(r"run (\S+) of parent", res.out).group(1)
    return run_id, home, dag, res


def test_the_ending_shows_the_failing_child_and_commands_that_work(ran):
    run_id, home, _, res = ran
    lines = res.out.splitlines()
    at = lines.index("  failed: fan (1 of 3 sub-DAG runs failed)")
    assert lines[at + 1:at + 4] == [
        "    fan[1]/work: exit status 3",
        "    | boom-2",
        f"    whole log: dagfast logs {run_id} 'fan[1]/work' --stderr",
    ]
    at = lines.index("  failed: handlerOn.failure (exit status 5)")
    assert lines[at + 1:at + 3] == [
        "    | handler-err",
        f"    whole log: dagfast logs {run_id} handlerOn.failure --stderr",
    ]
    assert lines[-1] == f"  to finish it: dagfast retry {run_id}"
    # The commands the ending suggests print what it showed.
    got = dagfast("logs", run_id, "fan[1]/work", "--stderr", home=home)
    assert (got.code, got.out) == (0, "boom-2\n"), got.err
    got = dagfast("logs", run_id, "handlerOn.failure", "--stderr", home=home)
    assert (got.code, got.out) == (0, "handler-err\n"), got.err
    got = dagfast("logs", run_id, "onFailure", "--stderr", home=home)  # Dagu's name
    assert (got.code, got.out) == (0, "handler-err\n"), got.err


def test_logs_reach_sub_runs_handlers_and_earlier_attempts(ran):
    run_id, home, dag, _ = ran

    def logs(*args):
        got = dagfast("logs", *args, home=home)
        return got.code, got.out, got.err.strip()

    assert logs(run_id, "one/work") == (0, "child-out 0\n", "")
    assert logs(str(dag), "fan[2]/work") == (0, "child-out 3\n", "")
    # A sub-DAG step's logs are its sub-runs' steps', each under its address.
    assert logs(run_id, "fan") == (0, "==> fan[0]/work <==\nchild-out 1\n==> fan[1]/work "
                                      "<==\nchild-out 2\n==> fan[2]/work <==\nchild-out 3\n", "")
    assert logs(run_id, "fan", "--stderr") == (0, "==> fan[1]/work <==\nboom-2\n", "")
    assert logs(run_id, "--stderr") == (
        0, "==> fan[1]/work <==\nboom-2\n==> handlerOn.failure <==\nhandler-err\n", "")
    # Every execution of a retried step: the last by default.
    assert [logs(run_id, "flaky", "--attempt", str(n))[1] for n in (1, 2, 3)] == [
        "try 1\n", "try 2\n", "try 3\n"]
    assert logs(run_id, "flaky")[1] == "try 3\n"
    # Bad addresses: one line naming what is wrong, exit 1.
    assert logs(run_id, "flaky", "--attempt", "4") == (
        1, "", f"dagfast: step `flaky` of run `{run_id}` ran 3 times: no attempt 4")
    assert logs(run_id, "fan/work") == (
        1, "", "dagfast: `fan/work`: step `fan` ran 3 sub-runs; name one: `fan[0]` to `fan[2]`")
    assert logs(run_id, "fan[7]/work") == (
        1, "", "dagfast: `fan[7]/work`: step `fan` has no sub-run [7] (it has [0], [1], [2])")
    assert logs(run_id, "flaky/x") == (
        1, "", f"dagfast: `flaky/x`: step `flaky` ran no sub-DAG in run `{run_id}`")
    assert logs(run_id, "one/nope") == (
        1, "", "dagfast: `one/nope`: no step `nope` in DAG `child`")
    assert logs(run_id, "handlerOn.success") == (
        1, "", "dagfast: `handlerOn.success`: DAG `parent` has no `handlerOn.success` "
               "handler (its handlers: handlerOn.failure)")


def test_status_shows_sub_runs_under_their_caller_and_attempts(ran):
    run_id, home, _, _ = ran
    got = dagfast("status", run_id, home=home)
    assert got.code == 0, got.err
    table = got.out.split("\n\n", 1)[1].splitlines()[1:]  # the step rows, after the header
    names = [line[:19].rstrip() for line in table]
    assert names == ["flaky", "fan", "  fan[0]/work", "  fan[1]/work", "  fan[2]/work",
                     "one", "  one/work", "handlerOn.failure"], got.out
    assert "succeeded (3 attempts)" in table[0]
    doc = json.loads(dagfast("status", run_id, "--json", home=home).out)
    flaky, fan, one = doc["steps"]
    assert flaky["attempts"] == 3
    assert [(r["item"], r["status"], r["run_id"]) for r in fan["runs"]] == [
        (0, "succeeded", f"{run_id}.1.0"), (1, "failed", f"{run_id}.1.1"),
        (2, "succeeded", f"{run_id}.1.2")]
    assert fan["runs"][1]["steps"][0]["exit_code"] == 3
    # A sub-run's own id works where a run id does.
    got = dagfast("status", f"{run_id}.1.1", home=home)
    assert got.code == 0 and "status:  failed" in got.out, got.err
    got = dagfast("logs", f"{run_id}.1.1", "work", "--stderr", home=home)
    assert (got.code, got.out) == (0, "boom-2\n"), got.err
    # ... but a sub-run is retried and stopped through its caller.
    for command in ("retry", "stop"):
        got = dagfast(command, f"{run_id}.1.1", home=home)
        assert (got.code, got.err.strip()) == (
            1, f"dagfast: run `{run_id}.1.1` is a sub-run of run `{run_id}`: "
               f"`dagfast {command} {run_id}`")


def test_trace_writes_one_slice_a_step_on_concurrency_lanes(ran, tmp_path):
    run_id, home, _, _ = ran
    out = tmp_path / "run.json"
    got = dagfast("trace", run_id, "-o", str(out), home=home)
    assert got.code == 0, got.err
    doc = json.loads(out.read_text())
    slices = {e["name"]: e for e in doc["traceEvents"] if e["ph"] == "X"}
    assert sorted(slices) == ["fan", "fan[0]/work", "fan[1]/work", "fan[2]/work", "flaky",
                              "one", "one/work"]
    args = slices["fan[1]/work"]["args"]
    assert args.pop("cpu") >= 0  # what its process cost (wait4's rusage)
    assert args == {"status": "failed", "exit_code": 3, "attempts": 1, "error": "exit status 3"}
    assert slices["flaky"]["args"]["attempts"] == 3
    # Slices on one lane never overlap; the lanes are named.
    lanes: dict[int, list] = {}
    for e in slices.values():
        lanes.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in lanes.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"]
             if e["name"] == "thread_name"}
    assert names == {t: f"slot {t}" for t in lanes}
    got = dagfast("trace", run_id, "-o", str(tmp_path / "no" / "x.json"), home=home)
    assert got.code == 2
    assert got.err.startswith(f"dagfast: -o {tmp_path}/no/x.json: No such file")


def test_junit_has_a_case_for_every_sub_run_step_and_the_handlers_stderr(ran):
    import xml.etree.ElementTree as ET

    _, _, dag, _ = ran
    suite = ET.parse(dag.parent / "junit.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["flaky", "fan", "fan[0]/work", "fan[1]/work", "fan[2]/work",
                           "one", "one/work", "failure"]
    failure = cases["fan[1]/work"].find("failure")
    assert (failure.get("message"), failure.text) == ("exit status 3", "boom-2")
    assert cases["failure"].find("system-err").text == "handler-err"
    assert suite.get("tests") == "8" and suite.get("failures") == "3"


def test_json_events_name_sub_run_steps_and_handlers_by_address(tmp_path):
    (tmp_path / "child.yaml").write_text(textwrap.dedent(CHILD))
    dag = tmp_path / "parent.yaml"
    dag.write_text(textwrap.dedent(PARENT.format(dir=tmp_path)))
    res = dagfast("run", "--json", str(dag), home=tmp_path / "home")
    assert res.code == 1, res.err
    events = [json.loads(line) for line in res.out.splitlines()]
    finished = [(e["step"], e["status"], "id" in e) for e in events
                if e["event"] in ("step_finished", "handler_finished")]
    fan = finished.index(("fan", "failed", True))
    assert finished[fan - 3:fan] == [("fan[0]/work", "succeeded", False),
                                     ("fan[1]/work", "failed", False),
                                     ("fan[2]/work", "succeeded", False)]
    assert ("one/work", "succeeded", False) in finished
    assert finished[-1] == ("handlerOn.failure", "failed", False)


def test_status_of_one_step_by_its_address(ran):
    run_id, home, dag, _ = ran
    got = dagfast("status", str(dag), "fan[1]/work", home=home)
    assert got.code == 0, got.err
    lines = got.out.splitlines()
    assert re.fullmatch(r"status:   failed, exit 3, took \d+\.\d\ds", lines.pop(2))
    assert lines == [
        "step:     fan[1]/work", f"run:      {run_id}.1.1", "attempts: 1",
        "error:    exit status 3", f"logs:     dagfast logs {run_id} 'fan[1]/work' [--stderr]"]
    got = dagfast("status", run_id, "fan", home=home)
    assert [line.split("  ")[1] for line in got.out.splitlines() if line.startswith("  ")] == [
        "fan[0]/work", "fan[1]/work", "fan[2]/work"]
    doc = json.loads(dagfast("status", run_id, "flaky", "--json", home=home).out)
    assert (doc["address"], doc["attempts"], doc["status"]) == ("flaky", 3, "succeeded")
    got = dagfast("status", run_id, "handlerOn.failure", home=home)
    assert got.code == 0 and "status:   failed, exit 5, took " in got.out, got.err


def test_addresses_reach_any_depth(tmp_path):
    #   outer -> mid.yaml: inner -> child.yaml (N=2): work fails with `boom-2`
    (tmp_path / "child.yaml").write_text(textwrap.dedent(CHILD))
    (tmp_path / "mid.yaml").write_text("steps:\n  - name: inner\n    call: child.yaml\n"
                                       "    params: N=2\n")
    top = tmp_path / "top.yaml"
    top.write_text("steps:\n  - name: outer\n    call: mid.yaml\n")
    home = tmp_path / "home"
    res = dagfast("run", str(top), home=home)
    assert res.code == 1
    assert "    outer/inner/work: exit status 3" in res.out.splitlines()
    got = dagfast("status", str(top), home=home)
    assert [line[:20].rstrip() for line in got.out.splitlines()[6:]] == [
        "outer", "  outer/inner", "    outer/inner/work"]
    got = dagfast("logs", str(top), "outer/inner/work", "--stderr", home=home)
    assert (got.code, got.out) == (0, "boom-2\n"), got.err
