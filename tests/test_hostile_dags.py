"""Bad DAG files: whatever the bytes, the loader gives a DAG or a LoadError whose every
Problem says where; never another exception, a hang or a runaway allocation.

Hypothesis drives the loader with YAML-ish text and raw bytes (a few hundred examples
here; `tests/fuzz/fuzz_load.py` runs atheris for as long as asked). The hostile files the
issue lists follow, then names that must run as written, then sub-DAGs that call
themselves.
"""

from __future__ import annotations

import json
import os
import textwrap
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagfast import LoadError
from dagfast.runtime.session import run_in
from dagfast.loader import load, load_text
from dagfast.records.store import RunDir
from dagfast.loader.tree import MAX_BYTES
from doubles import InstantExits
from spectools import dagfast
from outputs import everything_printed, printed

# Problems about the file as a whole: the file is their location.
WHOLE_FILE = ("file is empty", "file is larger than", "cannot read the file")


def load_or_problems(data: bytes, tmp: Path):
    """The loaded Dag, or the LoadError's problems after checking each has a location.
    Backtick commands that fuzzed text may form run with an empty PATH."""
    try:
        return load_text(data, file="fuzz.yaml", base_dir=tmp, environ={"PATH": str(tmp)})
    except LoadError as exc:
        assert exc.problems, "a LoadError with no problem"
        for p in exc.problems:
            assert p.file == "fuzz.yaml", p
            located = p.line is not None or p.path is not None
            assert located or p.message.startswith(WHOLE_FILE), f"no location: {p}"
            str(p)
        return exc.problems


# -- Fuzzing ------------------------------------------------------------------------------

KEYS = [
    "name", "steps", "command", "depends", "env", "params", "type", "maxActiveSteps",
    "timeoutSec", "output", "dir", "workingDir", "script", "shell", "continueOn",
    "retryPolicy", "repeatPolicy", "preconditions", "handlerOn", "call", "run",
    "parallel", "items", "limit", "dotenv", "schedule", "secrets", "provider", "key", "<<",
    "max_active_steps",
]  # fmt: skip
TOKENS = [
    "&a", "*a", "&b", "*b", "[", "]", "{", "}", "- ", ": ", ",", "|", ">", "!!str",
    "!!int", "!!binary", "!!python/object:os.system", "~", "null", "true", "3", "-1",
    "1e400", "0x1F", "${X}", "$(echo)", "'", '"', "\\", "#", "%YAML 1.1", "---", "...",
    "? ", "\t", "\x00", "\ufeff", "\U0001f389", "a b", "s0", "s1", "chain", "graph",
]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(st.characters(blacklist_characters="`", blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["s0", "s1", "s2", "chain", "graph", "${A}", "echo hi", "0"]),
)  # fmt: skip
trees = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=5),
        st.dictionaries(st.sampled_from(KEYS), kids, max_size=5),
    ),
    max_leaves=30,
)
dags = st.dictionaries(st.sampled_from(KEYS), trees, max_size=6)


@st.composite
def yamlish(draw) -> bytes:
    """Lines of keys, tokens and indentation: text that is nearly YAML."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        indent = " " * draw(st.integers(0, 8))
        parts = draw(st.lists(st.sampled_from(KEYS + TOKENS), max_size=5))
        lines.append(indent + "".join(parts))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


FUZZ = settings(
    max_examples=150, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


@FUZZ
@given(tree=dags)
def test_any_tree_of_dag_keys_loads_or_says_where_it_is_wrong(tmp_path, tree):
    load_or_problems(yaml.safe_dump(tree, allow_unicode=True).encode(), tmp_path)


@FUZZ
@given(data=yamlish())
def test_any_yamlish_text_loads_or_says_where_it_is_wrong(tmp_path, data):
    load_or_problems(data, tmp_path)


@FUZZ
@given(data=st.binary(max_size=512))
def test_any_bytes_load_or_say_where_they_are_wrong(tmp_path, data):
    load_or_problems(data, tmp_path)


VALID = b"""\
name: fuzz
env:
  - A: 1
steps:
  - name: s0
    command: echo ${A}
    output: OUT
  - name: s1
    depends: [s0]
    command: [echo a, echo b]
    retryPolicy: {limit: 2, intervalSec: 0}
"""


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_a_valid_file_with_bytes_changed_loads_or_says_where(tmp_path, edits):
    data = bytearray(VALID)
    for at, byte in edits:
        if byte != 0x60:  # no backticks: they would run commands
            data[at] = byte
    load_or_problems(bytes(data), tmp_path)


# -- Hostile files ------------------------------------------------------------------------


def messages(problems) -> list[str]:
    assert isinstance(problems, list), "expected a LoadError"
    return [p.message for p in problems]


def test_billion_laughs_stops_at_the_value_limit_without_copying(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    data = ("\n".join(lines) + "\nsteps: [echo]\n").encode()
    tracemalloc.start()
    try:
        problems = load_or_problems(data, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "an alias counts as all it repeats" in messages(problems)[0]
    assert peak < 50 * 1024 * 1024


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_a_located_error(tmp_path, opener, closer):
    data = ("steps: " + opener * 100_000 + closer * 100_000).encode()
    problems = load_or_problems(data, tmp_path)
    (problem,) = problems
    assert problem.line == 1 and problem.column is not None
    # Our limit is 100 levels; LibYAML 0.2.5 as bundled by PyYAML 6.0.4 scans flow
    # collections ahead and stops at its own limit of 1,000 first. Both fail fast, located.
    assert messages(problems)[0] in (
        "nesting is deeper than 100 levels",
        "YAML syntax error: exceeded maximum nesting depth "
        "(while increasing flow level started at line 1)",
    )


def test_a_10_mb_file_loads_and_a_larger_than_the_limit_one_is_refused(tmp_path):
    ten = b"steps:\n  - name: big\n    command: echo " + b"x" * (10 * 1024 * 1024) + b"\n"
    assert len(load_or_problems(ten, tmp_path).steps) == 1
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(LoadError, match="file is larger than 32 MiB"):
        load(huge)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"steps:\n  - echo \xff\xfe\n", "file is not UTF-8 (byte 0xff)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "file is not UTF-8 (byte 0x89)"),
        (b"", "file is empty"),
        (b"42\n", "the top level must be a mapping of DAG keys, not a single value"),
        (b"- echo\n", "the top level must be a mapping of DAG keys, not a list"),
        (b"steps: !!python/object/apply:os.system [touch pwned]\n",
         "tag `!!python/object/apply:os.system` is not supported"),
    ],
)  # fmt: skip
def test_files_that_are_not_dags_are_located_errors(tmp_path, data, message):
    assert messages(load_or_problems(data, tmp_path)) == [message]
    assert not (tmp_path / "pwned").exists()


def test_a_10_000_step_cycle_is_named(tmp_path):
    n = 10_000
    text = "steps:\n" + "".join(
        f"  - name: s{i}\n    command: 'true'\n    depends: s{(i + 1) % n}\n" for i in range(n)
    )
    (msg,) = messages(load_or_problems(text.encode(), tmp_path))
    assert msg.startswith("dependency cycle: s0 -> s1 -> s2")
    assert msg.endswith("-> s9999 -> s0")


def test_a_100_000_step_chain_loads_and_runs_in_order_without_recursion(tmp_path):
    #   s0 -> s1 -> ... -> s99999
    n = 100_000
    text = "type: chain\nsteps:\n" + "".join(f"  - name: s{i}\n    command: 'true'\n" for i in range(n))
    dag = load_or_problems(text.encode(), tmp_path)
    assert dag.steps[-1].depends == (n - 2,)
    run_dir = RunDir.create(dag, str(tmp_path / "home"), run_id="chain")
    result = run_in(dag, run_dir, factory=InstantExits)
    assert result.status == 4
    starts = [r.started_at for r in result.steps]
    assert starts == sorted(starts)


def test_a_step_with_10_000_dependencies(tmp_path):
    #   s0 s1 ... s9999
    #    \  |      /
    #       last
    n = 10_000
    text = "steps:\n" + "".join(f"  - name: s{i}\n    command: 'true'\n" for i in range(n))
    text += "  - name: last\n    command: 'true'\n    depends: [" + ", ".join(
        f"s{i}" for i in range(n)) + ", s0]\n"  # fmt: skip
    dag = load_or_problems(text.encode(), tmp_path)
    assert dag.steps[-1].depends == tuple(range(n))
    run_dir = RunDir.create(dag, str(tmp_path / "home"), run_id="wide")
    result = run_in(dag, run_dir, factory=InstantExits)
    assert result.step("last").started_at >= max(r.finished_at for r in result.steps[:-1])


# -- Names that must run as written ----------------------------------------------------

ODD_NAMES = [
    "with spaces", "it's \"quoted\"", "ünïcödé 漢字 🎉", "$(touch pwned)`touch pwned2`",
    "a;b|c&d>e<f*?[x]", "--dash", "back\\slash", "new${HOME}",
]  # fmt: skip


def test_names_with_spaces_quotes_unicode_and_metacharacters_run_as_written(tmp_path):
    steps = [
        {"name": name, "command": 'printf %s "$DAG_RUN_STEP_NAME"',
         **({"depends": [ODD_NAMES[k - 1]]} if k else {})}
        for k, name in enumerate(ODD_NAMES)
    ]  # fmt: skip
    dag = tmp_path / "odd names.yaml"
    dag.write_text(yaml.safe_dump({"steps": steps}, allow_unicode=True), encoding="utf-8")
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home, cwd=tmp_path)
    assert res.code == 0, res.err
    assert not list(tmp_path.glob("pwned*"))
    (run,) = (home / "runs").glob("*/*")
    for k, name in enumerate(ODD_NAMES):
        assert printed(run, k, encoding="utf-8") == name
    status = json.loads(dagfast("status", run.name, "--json", home=home).out)
    assert [s["name"] for s in status["steps"]] == ODD_NAMES
    for name in ODD_NAMES:
        shown = dagfast("logs", run.name, "--", name, home=home)  # `--dash` is a name
        assert shown.code == 0 and shown.out == name, (name, shown)


# -- Sub-DAGs that call themselves -----------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_sub_dag_that_calls_itself_fails_its_step_with_the_loop(tmp_path):
    # The path comes from an upstream step's output, so only running finds the loop (a
    # path written out is refused before anything runs: test_subdag_errors.py).
    write(tmp_path / "self.yaml", """\
        steps:
          - name: which
            command: echo self.yaml
            output: SUB
          - name: again
            call: ${SUB}
            depends: which
        """)
    res = dagfast("run", str(tmp_path / "self.yaml"), home=tmp_path / "home")
    assert res.code == 1
    assert "the sub-DAG calls itself: self.yaml -> self.yaml" in res.out
    assert not list((tmp_path / "home").rglob("children/*/*/*/children"))


def test_sub_dags_that_call_each_other_fail_with_the_loop(tmp_path):
    #   a.yaml -> b.yaml -> a.yaml   (a.yaml names b.yaml through an output: found running)
    write(tmp_path / "a.yaml", "steps:\n  - name: which\n    command: echo b.yaml\n"
                               "    output: SUB\n  - name: to_b\n    call: ${SUB}\n"
                               "    depends: which\n")
    write(tmp_path / "b.yaml", "steps:\n  - name: to_a\n    call: a.yaml\n")
    home = tmp_path / "home"
    res = dagfast("run", str(tmp_path / "a.yaml"), home=home)
    assert res.code == 1
    errs = everything_printed(home, "err")
    assert "the sub-DAG calls itself: a.yaml -> b.yaml -> a.yaml\n" in errs


# Each refused file: (what it adds to a valid one, line:col and message of its one problem).
# The valid file is `env` (whose backticks would touch `ran`) then the step `a` at line 3.
REFUSED_BEFORE_BACKTICKS = {
    "unknown key": (
        "    depend: b\n", "6:5: unknown key `depend` (did you mean `depends`?)",
    ),
    "bad cron": (
        'schedule: "61 * * * *"\n', "6:11: not a cron expression: `61 * * * *`",
    ),
    "schedule stop": (
        'schedule: {stop: "0 * * * *"}\n', "6:12: `schedule.stop` is not supported yet",
    ),
    "unknown signal": (
        "    signalOnStop: 99\n", "6:19: `99` is not a signal on this system",
    ),
    "call with command": (
        "  - name: c\n    call: sub.yaml\n    command: echo\n",
        "8:5: `command` cannot be used with `call`",
    ),
    "negative retry limit": (
        "    retryPolicy: {limit: -5}\n",
        "6:26: expected an integer >= 0, got `-5`",
    ),
    "output name": (
        '    output: "bad name"\n', "6:13: `bad name` is not a valid variable name",
    ),
    "negative maxConcurrent": (
        "  - name: c\n    call: sub.yaml\n    parallel: {items: [1], maxConcurrent: -1}\n",
        "8:43: expected an integer >= 0, got `-1`",
    ),
    "handler signal": (
        "handlerOn:\n  exit:\n    command: echo\n    signalOnStop: 99\n",
        "9:19: `99` is not a signal on this system",
    ),
    "dask key without dask": (
        "daskScheduler: tcp://127.0.0.1:1\n",
        "6:16: `daskScheduler` is for `stepExecutor: dask`",
    ),
    "missing dotenv": (
        "dotenv: missing.env\n", "6:9: cannot read the dotenv file `missing.env`",
    ),
}
BACKTICKS_DAG = 'env:\n  - X: "`touch ran`"\nsteps:\n  - name: a\n    command: echo\n'


@pytest.mark.parametrize("case", list(REFUSED_BEFORE_BACKTICKS))
def test_nothing_the_file_says_runs_unless_its_structure_is_valid(tmp_path, case):
    added, problem = REFUSED_BEFORE_BACKTICKS[case]
    write(tmp_path / "sub.yaml", "steps:\n  - echo sub\n")
    dag = write(tmp_path / "dag.yaml", BACKTICKS_DAG + added)
    for command in ("validate", "run"):
        res = dagfast(command, str(dag), home=tmp_path / "home", cwd=tmp_path)
        assert res.code == 2, res
        [line] = res.err.splitlines()
        assert line.startswith(f"{dag}:{problem}"), line
        assert not (tmp_path / "ran").exists(), f"`{command}` ran the backticks"
    with pytest.raises(LoadError):
        load(dag, environ=os.environ)
    assert not (tmp_path / "ran").exists()


def test_the_backticks_of_a_valid_file_run_only_when_it_runs(tmp_path):
    # The control for the test above: the same backticks, in the file without its fault.
    # `validate`, `dry` and `graph` are lint steps: they run no backtick command.
    dag = write(tmp_path / "dag.yaml", BACKTICKS_DAG)
    for command in ("validate", "dry", "graph"):
        res = dagfast(command, str(dag), home=tmp_path / "home", cwd=tmp_path)
        assert res.code == 0, (command, res)
        assert not (tmp_path / "ran").exists(), command
    res = dagfast("run", str(dag), home=tmp_path / "home", cwd=tmp_path)
    assert res.code == 0, res
    assert (tmp_path / "ran").exists()


# -- Keys that would be ignored, values of the wrong kind ------------------------------


def test_a_call_step_that_also_has_a_command_is_refused_before_anything_runs(tmp_path):
    write(tmp_path / "one.yaml", "steps:\n  - touch SUB_RAN\n")
    dag = write(tmp_path / "dag.yaml", """\
        steps:
          - name: first
            command: touch FIRST_RAN
          - name: x
            call: one.yaml
            command: touch CMD_RAN
            dir: /tmp
            retryPolicy: {limit: 2}
          - name: y
            run: one.yaml
            script: touch SCRIPT_RAN
            shell: bash
            timeoutSec: 5
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", cwd=tmp_path)
    assert res.code == 2, res
    why = "cannot be used with `{}`: the step runs the sub-DAG, no process of its own"
    assert res.err.splitlines() == [
        f"{dag}:6:5: `command` {why.format('call')} - at `$.steps[1].command`",
        f"{dag}:7:5: `dir` {why.format('call')} - at `$.steps[1].dir`",
        f"{dag}:8:5: `retryPolicy` {why.format('call')} - at `$.steps[1].retryPolicy`",
        f"{dag}:11:5: `script` {why.format('run')} - at `$.steps[2].script`",
        f"{dag}:12:5: `shell` {why.format('run')} - at `$.steps[2].shell`",
        f"{dag}:13:5: `timeoutSec` {why.format('run')} - at `$.steps[2].timeoutSec`",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dag.yaml", "one.yaml"]


def test_signal_on_stop_must_be_a_signal_of_this_system(tmp_path):
    dag = write(tmp_path / "dag.yaml", """\
        steps:
          - {name: a, command: "true", signalOnStop: 99}
          - {name: b, command: "true", signalOnStop: "0"}
          - {name: c, command: "true", signalOnStop: "15"}
          - {name: d, command: "true", signalOnStop: TERM}
        """)
    res = dagfast("validate", str(dag), home=tmp_path / "home")
    assert res.code == 2
    why = "is not a signal on this system (give a name such as `SIGTERM`, or its number)"
    assert res.err.splitlines() == [
        f"{dag}:2:46: `99` {why} - at `$.steps[0].signalOnStop`",
        f"{dag}:3:46: `0` {why} - at `$.steps[1].signalOnStop`",
    ]
    (_, _, c, d) = load(write(dag, "steps:\n  - {command: x, signalOnStop: '15'}\n"
                                   "  - {command: x, signalOnStop: TERM}\n"
                                   "  - {command: x, signalOnStop: 2}\n"
                                   "  - {command: x, signalOnStop: sigint}\n")).steps
    assert (c.extra.signal_on_stop, d.extra.signal_on_stop) == (2, 2)


def test_text_fields_written_as_numbers_or_booleans_are_refused(tmp_path):
    dag = write(tmp_path / "dag.yaml", """\
        steps:
          - name: a
            command: "true"
            preconditions: 5
            stdout: 5
            continueOn: {output: 5}
          - name: b
            call: one.yaml
            parallel: {items: 5}
            preconditions: [true, {condition: "5", expected: 5}]
          - name: c
            call: one.yaml
            parallel: 1.5
            stderr: off
            continueOn: {output: ["x", 7]}
        """)
    res = dagfast("run", str(dag), home=tmp_path / "home", cwd=tmp_path)
    assert res.code == 2, res
    q = "(quote it to mean the text)"
    assert res.err.splitlines() == [
        f"{dag}:4:20: expected text, a mapping or a list, got the number `5` {q} - at `$.steps[0].preconditions`",
        f"{dag}:5:13: expected a file name, got the number `5` {q} - at `$.steps[0].stdout`",
        f"{dag}:6:26: expected text or a list, got the number `5` {q} - at `$.steps[0].continueOn.output`",
        f"{dag}:9:23: expected text or a list, got the number `5` {q} - at `$.steps[1].parallel.items`",
        f"{dag}:10:21: expected text or a mapping, got the boolean `true` {q} - at `$.steps[1].preconditions[0]`",
        f"{dag}:13:15: expected text, a list or a mapping, got the number `1.5` {q} - at `$.steps[2].parallel`",
        f"{dag}:14:13: expected a file name, got the boolean `off` {q} - at `$.steps[2].stderr`",
        f"{dag}:15:32: expected text, got the number `7` {q} - at `$.steps[2].continueOn.output[1]`",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dag.yaml"]
    # Quoted, the same values are text, as written.
    quoted = write(tmp_path / "dag.yaml", """\
        steps:
          - name: a
            command: "true"
            preconditions: "true"
            stdout: "5"
            continueOn: {output: "5"}
        """)
    (a,) = load(quoted).steps
    assert (a.extra.stdout, a.extra.continue_on.output) == (str(tmp_path / "5"), ("5",))


def test_a_bare_list_sub_dag_reports_its_own_lines_and_paths(tmp_path):
    # The spec's dynamic fan-out writes such a file: a list of steps, no `steps:` key.
    write(tmp_path / "gen.yaml", """\
        - name: g1
          comand: echo
        - name: g2
          command: echo
          depends: nope
        """)
    # Named through an output (as a generated file is), so it is loaded when it runs.
    dag = write(tmp_path / "dag.yaml", "steps:\n  - name: which\n    command: echo gen.yaml\n"
                                      "    output: GEN\n  - name: fan\n    call: ${GEN}\n"
                                      "    depends: which\n")
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home)
    assert res.code == 1, res
    (err,) = everything_printed(home, "err")
    gen = tmp_path / "gen.yaml"
    assert err == (
        f"cannot load the sub-DAG: {gen}:2:3: unknown key `comand` (did you mean `command`?)"
        f" - at `$[0].comand`; {gen}:5:12: depends on unknown step `nope` - at `$[1].depends`\n"
    )


# -- Command lines the synopsis allows: options before or after the DAG, then params ---

PARAMS_DAG = 'params: "A=1 B=2"\nsteps:\n  - echo "A=$A B=$B" > params.out\n'


@pytest.mark.parametrize(
    "words, got",
    [
        (["DAG", "--", "A=8"], "A=8 B=2"),
        (["DAG", "-q", "--", "A=8"], "A=8 B=2"),
        (["DAG", "-p", "A=9", "--", "A=8"], "A=8 B=2"),
        (["DAG", "-p", "B=9", "--quiet", "--", "A=8"], "A=8 B=9"),
        (["-q", "DAG", "--", "A=8"], "A=8 B=2"),
        (["-q", "DAG", "A=8"], "A=8 B=2"),
        (["DAG", "-q", "A=8"], "A=8 B=2"),
        (["DAG", "A=8", "-q", "B=7"], "A=8 B=7"),
        (["--max-active-steps", "2", "DAG", "--no-queue", "-p", "A=5", "--", "B=6"], "A=5 B=6"),
    ],
)
def test_run_takes_params_after_options_on_either_side_of_the_dag(tmp_path, words, got):
    dag = write(tmp_path / "p.yaml", PARAMS_DAG)
    args = [str(dag) if w == "DAG" else w for w in words]
    res = dagfast("run", *args, home=tmp_path / "home", cwd=tmp_path)
    assert res.code == 0, res
    assert (tmp_path / "params.out").read_text() == got + "\n"


def test_run_still_refuses_an_unknown_option_before_the_params(tmp_path):
    dag = write(tmp_path / "p.yaml", PARAMS_DAG)
    res = dagfast("run", str(dag), "-q", "--bogus", "--", "A=8", home=tmp_path / "home")
    assert res.code == 2
    assert res.err.splitlines()[-1] == "dagfast: error: unrecognized arguments: --bogus -- A=8"
    assert not list(tmp_path.glob("*.out"))


def test_unknown_keys_inside_conditions_and_outputs_are_located_with_a_suggestion(tmp_path):
    dag = write(tmp_path / "dag.yaml", """\
        preconditions: 5
        steps:
          - name: a
            command: echo hi
            preconditions:
              - condition: "x"
                expectd: "x"
            output:
              name: A
              omitt: true
        """)
    res = dagfast("validate", str(dag), home=tmp_path / "home")
    assert res.code == 2, res
    assert res.err.splitlines() == [
        f"{dag}:1:16: expected text, a mapping or a list, got the number `5` (quote it to mean "
        "the text) - at `$.preconditions`",
        f"{dag}:7:9: unknown key `expectd` (did you mean `expected`?) - at "
        "`$.steps[0].preconditions[0].expectd`",
        f"{dag}:10:7: unknown key `omitt` (did you mean `omit`?) - at `$.steps[0].output.omitt`",
    ]
