"""The scheduler contract, run against the compiled scheduler and its pure-Python twin.

Every contract test takes the `Scheduler` fixture, so it runs once per implementation:
any difference between the two is a bug. The property tests at the end drive both side
by side through random DAGs and random completion orders and compare every answer.
Graphs are drawn top-down: a step sits below the steps it depends on.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from array import array
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagfast import _sched, _sched_ref
from dagfast._sched_ref import (
    ABORT,
    CANCELLED,
    DONE,
    PASS,
    PASS_SKIPPED,
    READY,
    RUNNING,
    SKIP,
    WAITING,
)
from dagfast.errors import RunError, UsageError

IMPLEMENTATIONS = {"compiled": _sched.Scheduler, "ref": _sched_ref.Scheduler}
STATE_NAMES = {WAITING: "waiting", READY: "ready", RUNNING: "running", DONE: "done",
               CANCELLED: "cancelled"}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def Scheduler(request):
    """Each scheduler class in turn: the compiled one, then the twin."""
    return IMPLEMENTATIONS[request.param]


# --- builders ---------------------------------------------------------------------------


class Step(NamedTuple):
    """A named step of a test DAG; `step()` builds one."""

    name: str
    depends: tuple[str, ...]
    pass_skipped: bool


def step(name: str, depends: list[str] | tuple[str, ...] = (), pass_skipped: bool = False) -> Step:
    """One step of a test DAG, named, with the names it depends on."""
    return Step(name, tuple(depends), pass_skipped)


def arrays(deps: list[list[int]]) -> tuple[array, array]:
    """The CSR arrays for `deps[i]` = the ids step i waits for."""
    ptr, idx = array("i", [0]), array("i")
    for step_deps in deps:
        idx.extend(step_deps)
        ptr.append(len(idx))
    return ptr, idx


class Plan:
    """A scheduler over named steps, so tests speak in names; every call is the real API."""

    def __init__(self, Scheduler, *steps: Step) -> None:
        self.names = [s.name for s in steps]
        ids = {name: i for i, name in enumerate(self.names)}
        ptr, idx = arrays([[ids[d] for d in s.depends] for s in steps])
        flags = array("B", [PASS_SKIPPED if s.pass_skipped else 0 for s in steps])
        self.sched = Scheduler(len(steps), ptr, idx, flags)
        self.ids = ids

    def pop(self, limit: int = -1) -> list[str]:
        """Names of the popped steps."""
        return [self.names[i] for i in self.sched.pop(limit)]

    def finish(self, name: str, outcome: int = PASS) -> list[str]:
        """Names of the steps this cancelled."""
        return [self.names[i] for i in self.sched.finish(self.ids[name], outcome)]

    def run(self, name: str, outcome: int = PASS) -> list[str]:
        """Pops until `name` runs (it must become READY), then finishes it."""
        while self.sched.state(self.ids[name]) != RUNNING:
            assert self.pop(1), f"{name} never became ready"
        return self.finish(name, outcome)

    def states(self) -> dict[str, str]:
        """Every step's state, by name."""
        return {name: STATE_NAMES[self.sched.state(i)] for i, name in enumerate(self.names)}

    def counts(self) -> tuple[int, int, int]:
        """(ready, running, done)."""
        return self.sched.ready_count, self.sched.running_count, self.sched.done_count


def diamond(Scheduler, **pass_skipped: bool) -> Plan:
    """The diamond below; keyword `b=True` flags b PASS_SKIPPED (likewise c)."""
    #     a
    #    / \
    #   b   c
    #    \ /
    #     d
    return Plan(
        Scheduler,
        step("a"),
        step("b", depends=["a"], pass_skipped=pass_skipped.get("b", False)),
        step("c", depends=["a"], pass_skipped=pass_skipped.get("c", False)),
        step("d", depends=["b", "c"]),
    )


# --- readiness --------------------------------------------------------------------------


def test_steps_without_deps_start_ready(Scheduler):
    #     a     e
    #    / \
    #   b   c
    #    \ /
    #     d
    plan = Plan(Scheduler, step("a"), step("b", ["a"]), step("c", ["a"]), step("d", ["b", "c"]),
                step("e"))
    assert plan.states() == {"a": "ready", "b": "waiting", "c": "waiting", "d": "waiting",
                             "e": "ready"}
    assert plan.counts() == (2, 0, 0)
    assert plan.sched.n == 5
    assert not plan.sched.finished()


def test_a_step_becomes_ready_only_when_every_dep_passed(Scheduler):
    plan = diamond(Scheduler)
    assert plan.run("a") == []
    assert plan.states() == {"a": "done", "b": "ready", "c": "ready", "d": "waiting"}
    plan.run("b")
    assert plan.states()["d"] == "waiting"
    plan.run("c")
    assert plan.states()["d"] == "ready"
    plan.run("d")
    assert plan.sched.finished()
    assert plan.counts() == (0, 0, 4)


def test_duplicated_deps_count_once(Scheduler):
    #   a
    #   ||   (b lists a twice)
    #   b
    plan = Plan(Scheduler, step("a"), step("b", ["a", "a"]))
    plan.run("a")
    assert plan.states()["b"] == "ready"


def test_deps_may_point_later_in_the_file(Scheduler):
    #   c
    #   |
    #   a     (file order: a, b, c; a waits for c)
    #   |
    #   b
    plan = Plan(Scheduler, step("a", ["c"]), step("b", ["a"]), step("c"))
    assert plan.pop() == ["c"]
    plan.finish("c")
    assert plan.pop() == ["a"]


# --- pop --------------------------------------------------------------------------------


def test_pop_hands_out_the_lowest_ids_first_and_marks_them_running(Scheduler):
    #   a  b  c  d  e
    plan = Plan(Scheduler, *(step(name) for name in "abcde"))
    assert plan.pop(2) == ["a", "b"]
    assert plan.states() == {"a": "running", "b": "running", "c": "ready", "d": "ready",
                             "e": "ready"}
    assert plan.counts() == (3, 2, 0)
    assert plan.pop(-1) == ["c", "d", "e"]
    assert plan.pop(-1) == []


def test_pop_orders_by_id_not_by_when_a_step_became_ready(Scheduler):
    #   z       a
    #   |       |
    #   b       c     (file order: b, c, z, a)
    plan = Plan(Scheduler, step("b", ["z"]), step("c", ["a"]), step("z"), step("a"))
    assert plan.pop() == ["z", "a"]
    plan.finish("a")  # c becomes ready first...
    plan.finish("z")  # ...then b, which still comes out first
    assert plan.pop(1) == ["b"]
    assert plan.pop(1) == ["c"]


def test_pop_order_holds_across_thousands_of_ready_steps(Scheduler):
    #   0  1  2  ...  4999     (finish every third early, then pop the rest)
    n = 5000
    sched = Scheduler(n, *arrays([[] for _ in range(n)]))
    for i in range(0, n, 3):
        sched.finish(i, PASS)
    rest = [i for i in range(n) if i % 3]
    assert sched.pop(1000) == rest[:1000]
    assert sched.pop(-1) == rest[1000:]
    assert sched.ready_count == 0


@pytest.mark.parametrize(
    ("limit", "popped"),
    [(0, []), (1, ["a"]), (3, ["a", "b", "c"]), (99, ["a", "b", "c"]), (-1, ["a", "b", "c"]),
     (-7, ["a", "b", "c"]), (2**80, ["a", "b", "c"]), (True, ["a"])],
)
def test_pop_limit(Scheduler, limit, popped):
    #   a  b  c
    plan = Plan(Scheduler, step("a"), step("b"), step("c"))
    assert plan.pop(limit) == popped


# --- finish: PASS, ABORT, SKIP ----------------------------------------------------------


def test_abort_cancels_every_transitive_dependent(Scheduler):
    #     a     e
    #    / \    |
    #   b   c   f
    #    \ /
    #     d
    plan = Plan(Scheduler, step("a"), step("b", ["a"]), step("c", ["a"]), step("d", ["b", "c"]),
                step("e"), step("f", ["e"]))
    assert plan.pop() == ["a", "e"]
    assert plan.finish("a", ABORT) == ["b", "c", "d"]
    assert plan.states() == {"a": "done", "b": "cancelled", "c": "cancelled", "d": "cancelled",
                             "e": "running", "f": "waiting"}
    assert plan.counts() == (0, 1, 4)
    plan.finish("e")
    plan.run("f")
    assert plan.sched.finished()


def test_cancelled_ids_come_back_ascending_whatever_order_the_cascade_found_them(Scheduler):
    #   a
    #   |
    #   c
    #   |
    #   b     (file order: a, b, c; the cascade meets c before b)
    plan = Plan(Scheduler, step("a"), step("b", ["c"]), step("c", ["a"]))
    assert plan.run("a", ABORT) == ["b", "c"]


def test_the_cascade_stops_at_steps_already_done(Scheduler):
    #   a
    #   |
    #   b    (pre-marked done, as a retry does for steps that already succeeded)
    #   |
    #   c
    plan = Plan(Scheduler, step("a"), step("b", ["a"]), step("c", ["b"]))
    plan.finish("b")
    assert plan.states() == {"a": "ready", "b": "done", "c": "ready"}
    assert plan.run("a", ABORT) == []
    assert plan.states()["c"] == "ready"


def test_skip_without_the_flag_cancels_like_abort(Scheduler):
    plan = diamond(Scheduler)
    assert plan.run("a", SKIP) == ["b", "c", "d"]


def test_skip_passes_through_a_dependent_flagged_pass_skipped(Scheduler):
    #   a
    #   |
    #   b   pass_skipped
    #   |
    #   c
    plan = Plan(Scheduler, step("a"), step("b", ["a"], pass_skipped=True), step("c", ["b"]))
    assert plan.run("a", SKIP) == ["b"]
    assert plan.states() == {"a": "done", "b": "cancelled", "c": "ready"}


def test_abort_ignores_pass_skipped(Scheduler):
    #   a
    #   |
    #   b   pass_skipped
    #   |
    #   c
    plan = Plan(Scheduler, step("a"), step("b", ["a"], pass_skipped=True), step("c", ["b"]))
    assert plan.run("a", ABORT) == ["b", "c"]


def test_a_flagged_step_that_itself_ends_skip_counts_as_passed(Scheduler):
    #   a   pass_skipped
    #   |
    #   b
    plan = Plan(Scheduler, step("a", pass_skipped=True), step("b", ["a"]))
    assert plan.run("a", SKIP) == []
    assert plan.states() == {"a": "done", "b": "ready"}


def test_skip_honours_the_flag_further_down_a_chain(Scheduler):
    #   a
    #   |
    #   b
    #   |
    #   c   pass_skipped
    #   |
    #   d
    plan = Plan(Scheduler, step("a"), step("b", ["a"]), step("c", ["b"], pass_skipped=True),
                step("d", ["c"]))
    assert plan.run("a", SKIP) == ["b", "c"]
    assert plan.states()["d"] == "ready"


def test_a_join_below_one_cancelled_branch_is_cancelled(Scheduler):
    #        a
    #       / \
    #  (ps) b   c      (ps: pass_skipped)
    #       \ /
    #        d
    plan = diamond(Scheduler, b=True)
    assert plan.run("a", SKIP) == ["b", "c", "d"]


def test_a_join_below_two_pass_skipped_branches_runs(Scheduler):
    #        a
    #       / \
    #  (ps) b   c (ps)
    #       \ /
    #        d
    plan = diamond(Scheduler, b=True, c=True)
    assert plan.run("a", SKIP) == ["b", "c"]
    assert plan.states()["d"] == "ready"


# --- finish: early finishes and bad calls -----------------------------------------------


def test_a_waiting_step_may_be_finished_early(Scheduler):
    #   a
    #   |
    #   b    finished before a, as a retry pre-marks steps that already succeeded
    #   |
    #   c
    plan = Plan(Scheduler, step("a"), step("b", ["a"]), step("c", ["b"]))
    assert plan.finish("b") == []
    assert plan.states() == {"a": "ready", "b": "done", "c": "ready"}
    assert plan.counts() == (2, 0, 1)
    plan.run("a")
    assert plan.states()["b"] == "done"  # not made ready a second time
    plan.run("c")
    assert plan.sched.finished()


def test_a_ready_step_finished_early_is_never_popped(Scheduler):
    #   a  b  c
    plan = Plan(Scheduler, step("a"), step("b"), step("c"))
    plan.finish("a")
    assert plan.counts() == (2, 0, 1)
    assert plan.pop(1) == ["b"]
    assert plan.pop() == ["c"]


@pytest.mark.parametrize(
    ("step_id", "outcome", "error", "message"),
    [
        (0, PASS, ValueError, "step 0 is already done"),
        (1, PASS, ValueError, "step 1 was cancelled, so it cannot finish"),
        (3, PASS, ValueError, "step 3 is not a step id (0..2)"),
        (-1, PASS, ValueError, "step -1 is not a step id (0..2)"),
        (2**80, PASS, ValueError, f"step {2**80} is not a step id (0..2)"),
        (2, 3, ValueError, "outcome must be PASS (0), ABORT (1) or SKIP (2), not 3"),
        (2, -1, ValueError, "outcome must be PASS (0), ABORT (1) or SKIP (2), not -1"),
        (2.0, PASS, TypeError, "'float' object cannot be interpreted as an integer"),
        (2, None, TypeError, "'NoneType' object cannot be interpreted as an integer"),
    ],
)
def test_finish_rejects(Scheduler, step_id, outcome, error, message):
    #   a
    #   |
    #   b     c
    sched = Scheduler(3, *arrays([[], [0], []]))
    sched.finish(0, ABORT)
    with pytest.raises(error) as caught:
        sched.finish(step_id, outcome)
    assert str(caught.value) == message
    assert [sched.state(i) for i in range(3)] == [DONE, CANCELLED, READY]  # unchanged


def test_state_rejects_ids_out_of_range(Scheduler):
    #   a  b        and the empty DAG
    with pytest.raises(ValueError, match=r"^step 2 is not a step id \(0\.\.1\)$"):
        Scheduler(2, *arrays([[], []])).state(2)
    with pytest.raises(ValueError, match=r"^step 0 is not a step id \(there are no steps\)$"):
        Scheduler(0, *arrays([])).state(0)


def test_queries_never_change_state(Scheduler):
    plan = diamond(Scheduler)
    plan.pop(1)

    def look():
        s = plan.sched
        return (s.n, s.ready_count, s.running_count, s.done_count, s.finished(),
                [s.state(i) for i in range(s.n)], repr(s))

    first = look()
    assert look() == look() == first
    assert first[-1] == "<Scheduler n=4 ready=0 running=1 done=0>"


# --- shapes: empty, cycles, long chains -------------------------------------------------


def test_an_empty_dag_is_finished_from_the_start(Scheduler):
    sched = Scheduler(0, *arrays([]))
    assert sched.finished()
    assert sched.pop(-1) == []


def test_steps_in_a_cycle_never_become_ready(Scheduler):
    #   a
    #   |
    #   b <-+
    #   |   |     (the loader rejects cycles; the scheduler must merely not hang)
    #   c --+
    plan = Plan(Scheduler, step("a"), step("b", ["a", "c"]), step("c", ["b"]))
    plan.run("a")
    assert plan.pop() == []
    assert plan.states() == {"a": "done", "b": "waiting", "c": "waiting"}
    assert not plan.sched.finished()


def test_an_abort_into_a_cycle_cancels_it_and_ends(Scheduler):
    #   a
    #   |
    #   b <-+
    #   |   |
    #   c --+
    plan = Plan(Scheduler, step("a"), step("b", ["a", "c"]), step("c", ["b"]))
    assert plan.run("a", ABORT) == ["b", "c"]
    assert plan.sched.finished()


def test_a_100000_step_chain_cancels_without_recursing(Scheduler):
    #   0 -> 1 -> 2 -> ... -> 99999
    n = 100_000
    sched = Scheduler(n, *arrays([[]] + [[i - 1] for i in range(1, n)]))
    assert sched.finish(0, ABORT) == list(range(1, n))
    assert sched.finished()


def test_a_100000_step_chain_runs_to_the_end(Scheduler):
    #   0 -> 1 -> 2 -> ... -> 99999
    n = 100_000
    sched = Scheduler(n, *arrays([[]] + [[i - 1] for i in range(1, n)]))
    order = []
    while batch := sched.pop(-1):
        order += batch
        for i in batch:
            sched.finish(i, PASS)
    assert order == list(range(n))
    assert sched.finished()


# --- construction -----------------------------------------------------------------------


def test_flags_may_be_none_or_any_byte_buffer(Scheduler):
    #   a   pass_skipped (or not)
    #   |
    #   b
    ptr, idx = arrays([[], [0]])
    for flags, b_after_skip in [(None, CANCELLED), (bytes(2), CANCELLED), (b"\x01\x00", READY),
                                (bytearray(b"\x01\x00"), READY)]:
        sched = Scheduler(2, ptr, idx, flags)
        sched.finish(0, SKIP)
        assert sched.state(1) == b_after_skip


def test_constructor_takes_keywords(Scheduler):
    #   a
    #   |
    #   b
    ptr, idx = arrays([[], [0]])
    sched = Scheduler(n=2, dep_ptr=ptr, dep_idx=idx, flags=None)
    assert sched.n == 2


# (n, dep_ptr, dep_idx, flags, error, message)
BAD_GRAPHS = {
    "negative n": (-1, [0], [], None, ValueError, "n must be >= 0, not -1"),
    "n beyond C int": (2**31, [0], [], None, ValueError,
                       "n = 2147483648 is more steps than supported (2147483647)"),
    "n not an int": (1.5, [0, 0], [], None, TypeError,
                     "'float' object cannot be interpreted as an integer"),
    "dep_ptr a list": (1, "list", [], None, TypeError,
                       "dep_ptr must be a buffer of C ints such as array('i'), not list"),
    "dep_idx of longs": (1, [0, 0], "long", None, TypeError,
                         "dep_idx must be a buffer of C ints such as array('i'),"
                         " not a buffer of format 'l'"),
    "flags of ints": (1, [0, 0], [], array("i", [0]), TypeError,
                      "flags must be a buffer of unsigned bytes such as array('B'),"
                      " not a buffer of format 'i'"),
    "dep_ptr too short": (2, [0, 0], [], None, ValueError,
                          "dep_ptr must hold n + 1 = 3 offsets, not 2"),
    "flags too short": (2, [0, 0, 0], [], bytes(1), ValueError,
                        "flags must hold n = 2 bytes, not 1"),
    "dep_ptr not from 0": (1, [1, 1], [0], None, ValueError, "dep_ptr[0] must be 0, not 1"),
    "dep_ptr decreasing": (3, [0, 2, 1, 2], [1, 2], None, ValueError,
                           "dep_ptr must not decrease, but dep_ptr[2] = 1 < dep_ptr[1] = 2"),
    "dep_ptr[n] short of dep_idx": (2, [0, 0, 1], [0, 0], None, ValueError,
                                    "dep_ptr[2] = 1 must equal len(dep_idx) = 2"),
    "dep out of range": (2, [0, 0, 1], [2], None, ValueError,
                         "step 1 depends on 2, which is not a step id (0..1)"),
    "negative dep": (2, [0, 1, 1], [-1], None, ValueError,
                     "step 0 depends on -1, which is not a step id (0..1)"),
    "self dep": (2, [0, 0, 2], [0, 1], None, ValueError, "step 1 depends on itself"),
    "unknown flag bit": (2, [0, 0, 0], [], bytes([1, 6]), ValueError,
                         "flags[1] = 6 sets unknown bits (only PASS_SKIPPED = 1 is defined)"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRAPHS))
def test_constructor_rejects(Scheduler, case):
    n, ptr, idx, flags, error, message = BAD_GRAPHS[case]
    ptr = [0, 0] if ptr == "list" else array("i", ptr)
    idx = array("l", [0]) if idx == "long" else array("i", idx)
    with pytest.raises(error) as caught:
        Scheduler(n, ptr, idx, flags)
    assert str(caught.value) == message


# --- the module surface -----------------------------------------------------------------


@pytest.mark.parametrize("module", [_sched, _sched_ref], ids=["compiled", "ref"])
def test_codes_have_fixed_numbers(module):
    codes = {name: getattr(module, name) for name in
             ["PASS", "ABORT", "SKIP", "PASS_SKIPPED", "WAITING", "READY", "RUNNING", "DONE",
              "CANCELLED"]}
    assert codes == {"PASS": 0, "ABORT": 1, "SKIP": 2, "PASS_SKIPPED": 1, "WAITING": 0,
                     "READY": 1, "RUNNING": 2, "DONE": 3, "CANCELLED": 4}
    assert all(type(code) is int for code in codes.values())


def test_both_schedulers_have_the_same_public_members():
    def public(cls):
        return {name for name in dir(cls) if not name.startswith("_")} - {"debug_counters"}

    assert public(_sched.Scheduler) == public(_sched_ref.Scheduler) == {
        "n", "ready_count", "running_count", "done_count", "state", "finished", "pop",
        "finish"}


def test_debug_counters_exist_only_in_debug_builds():
    assert hasattr(_sched.Scheduler, "debug_counters") is _sched.DEBUG
    assert hasattr(_sched.Scheduler(0, *arrays([])), "debug_counters") is _sched.DEBUG


@pytest.mark.skipif(not _sched.DEBUG, reason="debug counters exist only in DAGFAST_DEBUG=1 builds")
def test_debug_counters_count_ready_set_work():
    #   e     a
    #        / \
    #       b   c
    #        \ /
    #         d
    plan = Plan(_sched.Scheduler, step("e"), step("a"), step("b", ["a"]), step("c", ["a"]),
                step("d", ["b", "c"]))
    plan.finish("e")  # leaves the ready set without a pop
    plan.run("a")
    plan.run("b", ABORT)
    plan.pop()
    assert plan.sched.debug_counters() == {
        "ready_adds": 4,  # e and a, then b and c
        "ready_pops": 3,  # a, b, c
        "ready_removes": 1,  # e
        "released_edges": 2,  # a -> b, a -> c
        "cancel_edges": 1,  # b -> d; d has no dependents
    }


# --- the selector: dagfast.sched --------------------------------------------------------


def load_selector(monkeypatch, value):
    """A fresh copy of dagfast.sched, imported with DAGFAST_SCHED=value (None: unset)."""
    if value is None:
        monkeypatch.delenv("DAGFAST_SCHED", raising=False)
    else:
        monkeypatch.setenv("DAGFAST_SCHED", value)
    spec = importlib.util.find_spec("dagfast.sched")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("value", [None, "", "compiled"])
def test_the_compiled_scheduler_is_the_default(monkeypatch, value):
    sched = load_selector(monkeypatch, value)
    assert sched.IMPLEMENTATION == "compiled"
    assert sched.Scheduler is _sched.Scheduler


def test_the_twin_runs_only_when_asked_for(monkeypatch):
    sched = load_selector(monkeypatch, "ref")
    assert sched.IMPLEMENTATION == "ref"
    assert sched.Scheduler is _sched_ref.Scheduler


def test_an_unknown_choice_is_a_usage_error(monkeypatch):
    with pytest.raises(UsageError) as caught:
        load_selector(monkeypatch, "fast")
    assert str(caught.value) == "DAGFAST_SCHED must be `compiled` (the default) or `ref`, not 'fast'"


def test_a_missing_compiled_scheduler_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setitem(sys.modules, "dagfast._sched", None)  # makes the import fail
    with pytest.raises(RunError) as caught:
        load_selector(monkeypatch, None)
    assert str(caught.value) == (
        "dagfast's compiled scheduler is missing (dagfast._sched): reinstall with `pip install .`"
    )


def test_the_selector_exports_a_sorted_all(monkeypatch):
    sched = load_selector(monkeypatch, None)
    assert sched.__all__ == sorted(sched.__all__)
    for name in sched.__all__:
        assert getattr(sched, name) is not None
    assert sched.PASS_SKIPPED == PASS_SKIPPED and sched.CANCELLED == CANCELLED


# --- property: the twins agree at every step --------------------------------------------


class Twins:
    """Both schedulers over one DAG, fed the same calls; every answer must match."""

    def __init__(self, deps: list[list[int]], flags: list[int]) -> None:
        ptr, idx = arrays(deps)
        self.deps = [set(d) for d in deps]
        self.pair = [cls(len(deps), ptr, idx, array("B", flags))
                     for cls in IMPLEMENTATIONS.values()]
        self.n = len(deps)

    def call(self, method: str, *args):
        answers = []
        for sched in self.pair:
            try:
                answers.append(("ok", getattr(sched, method)(*args)))
            except ValueError as exc:
                answers.append(("ValueError", str(exc)))
        assert answers[0] == answers[1], (method, args)
        return answers[0]

    def look(self) -> list[int]:
        """The full observable state of both, checked equal and self-consistent."""
        views = [(s.n, s.ready_count, s.running_count, s.done_count, s.finished(),
                  [s.state(i) for i in range(s.n)]) for s in self.pair]
        assert views[0] == views[1]
        _, ready, running, done, finished, states = views[0]
        assert ready == states.count(READY)
        assert running == states.count(RUNNING)
        assert done == states.count(DONE) + states.count(CANCELLED)
        assert finished == (done == self.n)
        for i, state in enumerate(states):
            if state in (READY, RUNNING):  # every dep is over
                assert all(states[d] >= DONE for d in self.deps[i])
            if state == CANCELLED:  # something upstream ended it
                assert any(states[d] >= DONE for d in self.deps[i])
        return states


@st.composite
def dags(draw):
    """Step deps (with duplicates, in any file order, sometimes with cycles) and flags."""
    n = draw(st.integers(0, 16))
    rank = draw(st.permutations(range(n)))  # a topological order hidden behind file order
    cyclic = draw(st.integers(0, 5)) == 0
    deps = []
    for i in range(n):
        allowed = [j for j in range(n) if j != i and (cyclic or rank[j] < rank[i])]
        deps.append(draw(st.lists(st.sampled_from(allowed), max_size=4)) if allowed else [])
    flags = draw(st.lists(st.sampled_from([0, PASS_SKIPPED]), min_size=n, max_size=n))
    return deps, flags


@settings(max_examples=200, deadline=None)
@given(dag=dags(), data=st.data())
def test_the_twins_agree_on_random_runs(dag, data):
    twins = Twins(*dag)
    states = twins.look()
    for _ in range(3 * twins.n + 3):
        if all(s >= DONE for s in states):
            break
        action = data.draw(st.sampled_from(["pop", "finish running", "finish early",
                                            "finish again"]))
        if action == "pop":
            limit = data.draw(st.integers(-1, 3))
            kind, popped = twins.call("pop", limit)
            ready = [i for i, s in enumerate(states) if s == READY]
            assert popped == ready[:len(ready) if limit < 0 else limit]
        else:
            if action == "finish running":
                pool = [i for i, s in enumerate(states) if s == RUNNING]
            elif action == "finish early":
                pool = [i for i, s in enumerate(states) if s < RUNNING]
            else:
                pool = [i for i, s in enumerate(states) if s >= DONE]
            if not pool:
                continue
            chosen = data.draw(st.sampled_from(pool))
            outcome = data.draw(st.sampled_from([PASS, ABORT, SKIP]))
            kind, cancelled = twins.call("finish", chosen, outcome)
            after = twins.look()
            if action == "finish again":
                assert kind == "ValueError" and after == states
            else:
                assert cancelled == sorted(cancelled)
                assert cancelled == [i for i in range(twins.n)
                                     if after[i] == CANCELLED and states[i] != CANCELLED]
                assert after[chosen] == DONE
        new = twins.look()
        assert all(a >= b for a, b in zip(new, states))  # states only move forward
        states = new


def test_the_twins_agree_on_a_large_random_run():
    # Hypothesis keeps graphs small; 5000 steps make the compiled ready set three levels deep.
    rng = random.Random(7)
    n = 5000
    deps = [rng.sample(range(i), min(i, rng.randrange(4))) for i in range(n)]
    order = list(range(n))
    rng.shuffle(order)  # hide the topological order behind file order
    where = {old: new for new, old in enumerate(order)}
    deps = [[where[d] for d in deps[old]] for old in order]
    flags = [rng.choice([0, PASS_SKIPPED]) for _ in range(n)]
    twins = Twins(deps, flags)
    running: list[int] = []
    while not twins.pair[0].finished():
        _, popped = twins.call("pop", rng.randrange(-1, 40))
        running += popped
        rng.shuffle(running)
        for _ in range(rng.randrange(1, 30)):
            if running:
                twins.call("finish", running.pop(), rng.choice([PASS] * 8 + [ABORT, SKIP]))
        if not popped and not running:
            break
    twins.look()
    assert twins.pair[0].finished()
