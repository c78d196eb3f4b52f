"""The engine in-process, its steps scripted (enginekit): ordering, limits, failures,
policies, stops, handlers and sub-DAGs, each in milliseconds and without sleeping.

The same behaviours are proved with real processes in test_engine.py and test_spec_*.py;
here the double's log says exactly what started, in which order, with what, and how
many ran at once.
"""

from __future__ import annotations

import json
import signal
import textwrap

import pytest

from enginekit import fail, hang, killed, ok, run
from outputs import printed
from spectools import (
    CALL_DAG, CALL_SUB_DAG, CONTINUE_ON_DAG, FAN_OUT_DAG, FAN_OUT_ITEM_DAG, PRECONDITIONS_DAG,
)


def steps(*lines: str) -> str:
    """`steps:` YAML from `name: command [<- dep, dep]` lines (a compact graph)."""
    out = ["steps:"]
    for line in lines:
        name, _, deps = line.partition("<-")
        out.append(f"  - name: {name.strip()}\n    command: run {name.strip()}")
        if deps.strip():
            out.append(f"    depends: [{deps.strip()}]")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------
# Ordering and limits


def test_ready_steps_start_lowest_id_first(tmp_path):
    #   x -> late        late (id 1) becomes ready after y (id 2) and z (id 3) were,
    #   y                yet it is started before them: ties break by lowest id.
    #   z
    dag = "maxActiveSteps: 1\n" + steps("x", "late <- x", "y", "z")
    res = run(tmp_path, dag)
    assert res.status == "succeeded"
    assert res.log.order == ["x", "late", "y", "z"]


def test_unlimited_steps_all_start_in_file_order_in_one_turn(tmp_path):
    res = run(tmp_path, steps(*"fedcba"), {n: ok(turns=3) for n in "fedcba"})
    assert res.log.order == list("fedcba")
    assert [s.running for s in res.log.starts] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("dag_limit,override,expected", [
    (1, None, 1), (2, None, 2), (4, None, 4), (0, None, 8), (None, None, 8),
    (1, 3, 3), (4, 0, 8),
])  # fmt: skip
def test_max_active_steps_is_the_most_running_at_once(tmp_path, dag_limit, override, expected):
    head = "" if dag_limit is None else f"maxActiveSteps: {dag_limit}\n"
    names = [f"s{i}" for i in range(8)]
    res = run(tmp_path, head + steps(*names), {n: ok(turns=4) for n in names},
              max_active_steps=override)
    assert res.status == "succeeded"
    assert res.log.max_running == expected
    assert res.log.order == names  # the limit never reorders


def test_one_at_a_time_runs_a_chain_in_order(tmp_path):
    res = run(tmp_path, "type: chain\n" + steps("a", "b", "c"), {"a": ok(turns=2)})
    assert res.log.order == ["a", "b", "c"] and res.log.max_running == 1


# ---------------------------------------------------------------------------------------
# Failures


def test_failure_aborts_dependents_but_not_independent_branches(tmp_path):
    #   bad -> after_bad -> after_after
    #   good
    dag = steps("bad", "after_bad <- bad", "after_after <- after_bad", "good")
    res = run(tmp_path, dag, {"bad": fail(3, err="oops\n"), "good": ok(turns=5)})
    assert res.status == "failed"
    assert res.statuses == {
        "bad": "failed", "after_bad": "aborted", "after_after": "aborted", "good": "succeeded",
    }  # fmt: skip
    assert (res.step("bad").exit_code, res.step("bad").error) == (3, "exit status 3")
    assert res.step("after_bad").error == "upstream failed"
    assert res.log.order == ["bad", "good"]
    assert printed(res.path, 0, "err") == "oops\n"


def test_a_step_killed_by_a_signal_fails_with_128_plus_n(tmp_path):
    res = run(tmp_path, steps("a", "b <- a"), {"a": killed(signal.SIGKILL, turns=2)})
    assert res.statuses == {"a": "failed", "b": "aborted"}
    assert (res.step("a").exit_code, res.step("a").error) == (137, "killed by SIGKILL")


# ---------------------------------------------------------------------------------------
# continueOn


def test_continue_on_exit_code_output_and_mark_success(tmp_path):
    script = {"code": fail(3), "out": fail(1, out="WARNING disk\n"), "marked": fail(1)}
    res = run(tmp_path, CONTINUE_ON_DAG, script)
    assert res.status == "partially_succeeded"
    assert res.statuses == {
        "code": "failed", "out": "failed", "marked": "succeeded", "after": "succeeded",
    }  # fmt: skip
    assert res.step("code").exit_code == 3


@pytest.mark.parametrize("step,script", [
    ("code", fail(4)),  # not one of the exit codes
    ("out", fail(1, out="  WARNING disk\n")),  # `^WARN` does not match
])  # fmt: skip
def test_continue_on_that_does_not_match_stops_dependents(tmp_path, step, script):
    res = run(tmp_path, CONTINUE_ON_DAG,
              {"code": fail(3), "out": fail(1, out="WARNING\n"), "marked": fail(1), step: script})
    assert res.status == "failed"
    assert res.statuses["after"] == "aborted"
    assert "after" not in res.log.order


@pytest.mark.parametrize("printed,covered", [
    ("disk usage (high) now\n", True), ("disk usage high now\n", False),
])  # fmt: skip
def test_continue_on_output_is_a_plain_substring_not_a_pattern(tmp_path, printed, covered):
    dag = textwrap.dedent("""\
        steps:
          - name: a
            command: x
            continueOn: {output: ["usage (high)"]}
          - name: child
            command: x
            depends: a
        """)
    res = run(tmp_path, dag, {"a": fail(1, out=printed)})
    assert res.statuses == {"a": "failed", "child": "succeeded" if covered else "aborted"}


def test_continue_on_exit_code_covers_a_signal_death_and_dependents_see_the_output(tmp_path):
    dag = textwrap.dedent("""\
        steps:
          - name: killed
            command: x
            continueOn: {exitCode: [137]}
          - name: failed
            command: x
            output: O
            continueOn: {failure: true}
          - name: after
            command: x
            depends: [killed, failed]
        """)
    res = run(tmp_path, dag, {"killed": killed(signal.SIGKILL), "failed": fail(2, out="val\n")})
    assert res.status == "partially_succeeded"
    assert res.statuses == {"killed": "failed", "failed": "failed", "after": "succeeded"}
    assert res.log.start("after").env["O"] == "val"


def test_continue_on_failure_keeps_the_run_failed_when_nothing_succeeded(tmp_path):
    dag = "steps:\n  - name: a\n    command: x\n    continueOn: {failure: true}\n"
    assert run(tmp_path, dag, {"a": fail(1)}).status == "failed"


# ---------------------------------------------------------------------------------------
# Preconditions




def test_preconditions_skip_steps_and_dependents_unless_continue_on_skipped(tmp_path):
    res = run(tmp_path, PRECONDITIONS_DAG)
    assert res.status == "succeeded"
    assert sorted(res.log.order) == ["maybe_child", "yes"]
    assert res.statuses == {
        "no": "skipped", "no_child": "skipped", "maybe": "skipped",
        "maybe_child": "succeeded", "yes": "succeeded",
    }  # fmt: skip
    assert res.step("no").error == "precondition not met"
    assert res.step("no_child").error == "upstream skipped"


def test_dag_preconditions_unmet_run_nothing_and_the_run_is_aborted(tmp_path):
    dag = "preconditions:\n  - condition: test -f nope\n" + steps("a")
    res = run(tmp_path, dag)
    assert res.status == "aborted"
    assert res.log.order == [] and res.statuses == {"a": "not_started"}


# ---------------------------------------------------------------------------------------
# retryPolicy and repeatPolicy


def test_retry_policy_retries_until_success_and_keeps_earlier_logs(tmp_path):
    dag = textwrap.dedent("""\
        steps:
          - name: flaky
            command: try
            retryPolicy: {limit: 5, intervalSec: 0, exitCode: [1]}
          - name: never_retried
            command: try
            retryPolicy: {limit: 5, intervalSec: 0, exitCode: [1]}
          - name: gives_up
            command: try
            retryPolicy: {limit: 2, intervalSec: 0}
        """)
    script = {"flaky": [fail(1, out="1\n"), fail(1, out="2\n"), ok(out="3\n")],
              "never_retried": fail(2), "gives_up": fail(9)}
    res = run(tmp_path, dag, script)
    assert (res.log.count("flaky"), res.log.count("never_retried"), res.log.count("gives_up")) \
        == (3, 1, 3)
    assert res.statuses == {"flaky": "succeeded", "never_retried": "failed", "gives_up": "failed"}
    assert res.step("gives_up").exit_code == 9
    assert [printed(res.path, 0, attempt=k) for k in (1, 2, 3)] == ["1\n", "2\n", "3\n"]
    assert printed(res.path, 0) == "3\n"  # the latest


def test_repeat_policy_limit_while_exit_code_and_until_condition(tmp_path):
    dag = textwrap.dedent("""\
        steps:
          - name: forever
            command: x
            repeatPolicy: {repeat: while, intervalSec: 0, limit: 3}
          - name: after
            command: x
            depends: forever
          - name: while
            command: x
            repeatPolicy: {repeat: while, exitCode: [7], intervalSec: 0, limit: 10}
          - name: until
            command: x
            repeatPolicy:
              repeat: until
              condition: "`wc -l < until.txt`"
              expected: "re:\\\\s*3"
              intervalSec: 0
        """)
    script = {"while": [fail(7), fail(7), ok()], "until": ok(append={"until.txt": "x\n"})}
    res = run(tmp_path, dag, script)
    assert res.status == "succeeded"
    assert [res.log.count(n) for n in ("forever", "after", "while", "until")] == [3, 1, 3, 3]
    assert res.log.order.index("after") > max(
        i for i, n in enumerate(res.log.order) if n == "forever")


# ---------------------------------------------------------------------------------------
# Outputs


def test_outputs_reach_dependents_transitively_and_no_one_else(tmp_path):
    #   a (J) -> b -> c ;  d (independent: does not see J)
    dag = textwrap.dedent("""\
        steps:
          - name: a
            command: print
            output: J
          - name: b
            command: "true"
            depends: a
          - name: c
            command: echo "${J.x.y[1]} $J"
            depends: b
          - name: d
            command: echo "[$J]"
        """)
    value = '{"x": {"y": [5, 6]}}'
    res = run(tmp_path, dag, {"a": ok(out=f"  {value}  \n")})
    assert res.step("a").output == value and res.outputs == {"J": value}
    assert res.log.start("b").env["J"] == res.log.start("c").env["J"] == value
    assert "J" not in res.log.start("d").env
    assert res.log.start("c").argv[-1] == 'echo "6 $J"'  # lookups are the engine's


def test_step_env_refers_to_upstream_outputs(tmp_path):
    dag = textwrap.dedent("""\
        env:
          - D: dag
        steps:
          - name: a
            command: print
            output: A
          - name: b
            depends: a
            env:
              - Y: "got-${A}"
              - Z: "f=${A.f} $D"
            command: x
          - name: c
            env:
              - Y: "c-${A}-$D"
            command: x
        """)
    res = run(tmp_path, dag, {"a": ok(out='{"f": "eff"}\n')})
    b, c = res.log.start("b").env, res.log.start("c").env
    assert (b["Y"], b["Z"]) == ('got-{"f": "eff"}', "f=eff dag")
    assert c["Y"] == "c--dag"


def test_output_larger_than_max_output_size_fails_the_step(tmp_path):
    dag = "maxOutputSize: 10\nsteps:\n  - name: big\n    command: x\n    output: BIG\n"
    res = run(tmp_path, dag, {"big": ok(out="0123456789abcdef\n")})
    assert res.status == "failed"
    assert res.step("big").error == \
        "failed to capture output: output exceeded maximum size limit of 10 bytes (maxOutputSize)"


# ---------------------------------------------------------------------------------------
# Stops


def test_a_stop_aborts_running_steps_and_starts_nothing_new(tmp_path):
    #   a (runs) -> after_a ;  b (runs, the stop comes once it started) ;  c (waits: limit 2)
    dag = "maxActiveSteps: 2\n" + steps("a", "after_a <- a", "b", "c")
    res = run(tmp_path, dag, {"a": hang(), "b": hang()}, stop_after="b")
    assert res.status == "aborted"
    assert res.log.order == ["a", "b"]
    assert res.log.signals == [("a", signal.SIGTERM), ("b", signal.SIGTERM)]
    assert res.statuses == {
        "a": "aborted", "after_a": "not_started", "b": "aborted", "c": "not_started",
    }  # fmt: skip
    assert res.step("a").error == "killed by SIGTERM"


def test_steps_a_stop_kept_from_starting_all_end_alike(tmp_path):
    # After a stop, the dependents of a stopped step do not end "upstream failed": the
    # upstream did not fail, the run was stopped. They end not started, as a step that
    # waited for a slot does (Dagu 1.30.2 does the same: `dagu stop` of this DAG leaves
    # after_a and c at status 0, with no error).
    dag = "maxActiveSteps: 2\n" + steps("a", "after_a <- a", "b", "c")
    res = run(tmp_path, dag, {"a": hang(), "b": hang()}, stop_after="b")
    assert res.statuses["after_a"] == res.statuses["c"] == "not_started"
    assert res.step("after_a").error == res.step("c").error == ""


def test_a_stop_gives_signal_on_stop_and_runs_the_abort_handler(tmp_path):
    dag = textwrap.dedent("""\
        handlerOn:
          cancel:
            command: x
          failure:
            command: x
        steps:
          - name: own
            signalOnStop: SIGINT
            command: x
          - name: plain
            command: x
        """)
    res = run(tmp_path, dag, {"own": hang(), "plain": hang()}, stop_after="plain")
    assert res.status == "aborted"
    assert sorted(res.log.signals) == [("own", signal.SIGINT), ("plain", signal.SIGTERM)]
    # A featured step's process starts from its coroutine, a turn after a plain one's.
    assert sorted(res.log.order[:2]) == ["own", "plain"] and res.log.order[2] == "abort"
    assert res.log.start("abort").env["DAG_RUN_STATUS"] == "aborted"
    assert res.handlers["abort"].status == "succeeded"


def test_a_step_that_ignores_sigterm_is_killed_when_the_clean_up_period_ends(tmp_path):
    dag = "maxCleanUpTimeSec: 0\n" + steps("stubborn")
    res = run(tmp_path, dag, {"stubborn": hang(ignore=(signal.SIGTERM,))},
              stop_after="stubborn")
    assert res.status == "aborted"
    assert res.log.signals[0] == ("stubborn", signal.SIGTERM)
    assert ("stubborn", signal.SIGKILL) in res.log.signals
    assert res.step("stubborn").error == "killed by SIGKILL"


# ---------------------------------------------------------------------------------------
# Handlers


HANDLERS = textwrap.dedent("""\
    handlerOn:
      init: {command: x}
      success: {command: x}
      failure: {command: x}
      exit: {command: x}
    steps:
      - name: main
        command: x
        output: V
    """)


@pytest.mark.parametrize("script,status,handler", [
    (ok(out="hello\n"), "succeeded", "success"),
    (fail(1, out="hello\n"), "failed", "failure"),
])  # fmt: skip
def test_handlers_run_in_order_and_see_status_and_outputs(tmp_path, script, status, handler):
    res = run(tmp_path, HANDLERS, {"main": script})
    assert res.status == status
    assert res.log.order == ["init", "main", handler, "exit"]
    assert res.log.start(handler).env["V"] == "hello"
    assert res.log.start("exit").env["DAG_RUN_STATUS"] == status
    assert set(res.handlers) == {"init", handler, "exit"}


def test_a_failing_init_handler_starts_no_step(tmp_path):
    res = run(tmp_path, HANDLERS, {"init": fail(3)})
    assert res.status == "failed"
    assert res.log.order == ["init", "failure", "exit"]
    assert res.statuses == {"main": "not_started"}
    assert res.handlers["init"].exit_code == 3


def test_a_failing_success_handler_fails_the_run(tmp_path):
    res = run(tmp_path, HANDLERS, {"success": fail(2)})
    assert res.status == "failed"
    assert res.statuses == {"main": "succeeded"}
    assert res.log.start("exit").env["DAG_RUN_STATUS"] == "succeeded"


# ---------------------------------------------------------------------------------------
# Sub-DAGs and fan-out


def test_call_passes_params_and_returns_outputs_as_json(tmp_path):
    (tmp_path / "sub.yaml").write_text(CALL_SUB_DAG)
    dag = CALL_DAG
    res = run(tmp_path, dag, {"sub/s": lambda start: ok(out=f"got {start.env['X']}\n")})
    assert res.status == "succeeded"
    assert json.loads(res.step("c").output) == {"SUB_OUT": "got given"}
    assert res.log.order == ["s", "show"]
    assert res.log.start("show").argv[-1] == 'echo "got given" > res.txt'


def test_a_failing_sub_dag_fails_its_step_and_its_dependents(tmp_path):
    (tmp_path / "sub.yaml").write_text("steps:\n  - name: s\n    command: x\n")
    dag = "steps:\n  - name: c\n    run: sub.yaml\n  - name: d\n    command: x\n    depends: c\n"
    res = run(tmp_path, dag, {"s": fail(4)})
    assert res.statuses == {"c": "failed", "d": "aborted"}
    assert res.step("c").error == "sub-DAG `sub` failed: step `s`: exit status 4"


def test_a_sub_dags_own_max_active_steps_limits_its_concurrency(tmp_path):
    body = "".join(f"  - name: w{i}\n    command: x\n" for i in (1, 2, 3))
    (tmp_path / "limited.yaml").write_text("maxActiveSteps: 1\nsteps:\n" + body)
    (tmp_path / "free.yaml").write_text("steps:\n" + body)
    script = {f"w{i}": ok(turns=6) for i in (1, 2, 3)}
    one = run(tmp_path, "steps:\n  - call: limited.yaml\n", script)
    assert one.log.max_running == 1 and one.log.count("w1") == 1
    both = run(tmp_path, "steps:\n  - call: limited.yaml\n  - call: limited.yaml\n", script)
    assert both.log.max_running == 2  # two limited sub-runs still run side by side
    free = run(tmp_path, "steps:\n  - call: free.yaml\n", script)
    assert free.log.max_running == 3


def test_parallel_items_fan_out_with_max_concurrent(tmp_path):
    (tmp_path / "one.yaml").write_text(FAN_OUT_ITEM_DAG)
    dag = FAN_OUT_DAG
    res = run(tmp_path, dag, {"list": ok(out="a\nb\nc\nd\n"), "work": ok(turns=5)})
    assert res.status == "succeeded"
    works = [s for s in res.log.starts if s.name == "work"]
    assert sorted(s.env["ITEM"] for s in works) == list("abcd")
    assert res.log.max_running == 2
    assert res.log.start("count").argv[-1] == 'echo "4" > n.txt'


def test_parallel_map_items_become_named_params(tmp_path):
    (tmp_path / "one.yaml").write_text("steps:\n  - name: work\n    command: work $REGION\n")
    dag = "steps:\n  - call: one.yaml\n    parallel: [{REGION: north}, {REGION: south}]\n"
    res = run(tmp_path, dag)
    assert sorted(s.env["REGION"] for s in res.log.starts) == ["north", "south"]


def test_parallel_with_no_items_fails_the_step(tmp_path):
    (tmp_path / "g.yaml").write_text("steps:\n  - command: x\n")
    dag = "steps:\n  - name: var\n    call: g.yaml\n    parallel: ${NOPE}\n"
    res = run(tmp_path, dag)
    assert res.statuses == {"var": "failed"}
    assert res.step("var").error == \
        "parallel: no items to run the sub-DAG with (`${NOPE}` expanded to nothing)"
    assert res.log.order == []


# ---------------------------------------------------------------------------------------
# Retries of a run


def test_a_retry_runs_again_only_what_did_not_succeed(tmp_path):
    #   a -> b -> c ;  d
    dag = steps("a", "b <- a", "c <- b", "d")
    first = run(tmp_path, dag, {"b": fail(1)})
    assert first.statuses == {"a": "succeeded", "b": "failed", "c": "aborted", "d": "succeeded"}
    again = run(tmp_path, dag, previous=first)
    assert again.status == "succeeded"
    assert again.log.order == ["b", "c"]
    only = run(tmp_path, dag, previous=again, rerun=("a",))
    assert only.log.order == ["a"]


def test_a_stop_reaches_the_steps_of_sub_dags(tmp_path):
    (tmp_path / "sub.yaml").write_text(steps("s1", "s2"))
    (tmp_path / "one.yaml").write_text(steps("w"))
    dag = textwrap.dedent("""\
        steps:
          - name: c
            call: sub.yaml
          - name: fan
            call: one.yaml
            parallel: {items: [a, b, c], maxConcurrent: 1}
          - name: after
            command: x
            depends: [c, fan]
        """)
    res = run(tmp_path, dag, {"s1": hang(), "s2": hang(), "w": hang()},
              stop_after=("s1", "s2", "w"))
    assert res.status == "aborted"
    assert sorted(res.log.signals) == [(n, signal.SIGTERM) for n in ("s1", "s2", "w")]
    assert res.log.count("w") == 1  # the other items never start
    assert res.statuses == {"c": "aborted", "fan": "aborted", "after": "not_started"}
    assert res.step("fan").error == "the run was stopped"


def test_a_stop_wakes_a_step_waiting_to_retry_and_it_is_not_retried(tmp_path):
    dag = textwrap.dedent("""\
        steps:
          - name: a
            command: x
            retryPolicy: {limit: 3, intervalSec: 3600}
          - name: b
            command: x
        """)
    res = run(tmp_path, dag, {"a": fail(1), "b": hang()}, stop_after="b")
    assert res.status == "aborted"
    assert res.log.count("a") == 1
    assert res.statuses == {"a": "aborted", "b": "aborted"}
