"""The loader's compiled fast path (`loader/_tree.pyx`) against its reference
(`events.compose`), in the uvloop style: the same inputs through both, and any difference
is a bug.

The fast path may decline a file (None: anchors, tags, a second document, anything
wrong); what it returns must be exactly the reference's tree, key order and value types
included, and the reference must not have refused that file. Through `parse` and `load`
the two give the same trees, the same models and the same errors, located alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagfast import LoadError
from dagfast.loader import events, load, load_text, tree
from dagfast.loader._tree import compose

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def reference(data: bytes, steps_list: bool = False):
    """The reference tree, or the message of the problem it raises."""
    try:
        return events.compose(data, steps_list, tree.MAX_DEPTH, tree.MAX_VALUES)
    except events._Fail as f:
        return ("refused", f.message)
    except events._Duplicate:
        return ("refused", "duplicate key")
    except Exception as e:  # noqa: BLE001 - yaml errors: the reference refuses the file
        return ("refused", type(e).__name__)


def same(a, b) -> bool:
    """Equal, with the same types at every node and keys in the same order."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


def agree(data: bytes, steps_list: bool = False):
    """The fast tree (or None); fails when it differs from the reference."""
    fast = compose(data, steps_list, tree.MAX_DEPTH, tree.MAX_VALUES)
    if fast is not None:
        ref = reference(data, steps_list)
        assert same(fast, ref), (data, fast, ref)
    return fast


@pytest.fixture(params=["compiled", "ref"])
def impl(request, monkeypatch):
    """`tree.parse` with the fast path, then without it (the reference alone)."""
    if request.param == "ref":
        monkeypatch.setattr(tree, "_fast_compose", None)
    return request.param


def outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except LoadError as e:
        return [str(p) for p in e.problems]


# -- The fast path is the one taken -------------------------------------------------------


def test_the_fast_path_is_built():
    """A missing build would only be slower, so a test says it."""
    assert tree._fast_compose is compose


def test_a_valid_file_loads_without_pyyaml(tmp_path):
    """PyYAML (about 10 ms of start-up) is imported only for a file the fast path
    declines, or to place a problem."""
    import subprocess
    import sys

    dag = tmp_path / "one.yaml"
    dag.write_text("steps:\n  - name: a\n    command: echo hi\n")
    code = ("import sys; from dagfast.loader import load; load(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m == 'yaml' or m.endswith('.events')))")
    out = subprocess.run([sys.executable, "-c", code, str(dag)], capture_output=True,
                         text=True, check=True).stdout
    assert out == "[]\n"
    dag.write_text("steps:\n  - name: a\n    comand: echo hi\n")
    code = code.replace("load(sys.argv[1])",
                        "exec('try: load(sys.argv[1])\\nexcept Exception: pass')")
    out = subprocess.run([sys.executable, "-c", code, str(dag)], capture_output=True,
                         text=True, check=True).stdout
    assert out == "['dagfast.loader.events', 'yaml', 'yaml.events']\n"


def fan_out(n: int) -> str:
    return "type: graph\nsteps:\n  - name: root\n    command: true\n" + "".join(
        f"  - name: step_{i}\n    command: true\n    depends: root\n" for i in range(n)
    )


@pytest.mark.parametrize(
    "text",
    [
        fan_out(50),
        "type: chain\nsteps:\n" + "".join(f"  - name: s{i}\n    command: echo {i}\n"
                                          for i in range(50)),
        "steps:\n  a: {command: x}\n  b: {command: y, depends: [a]}\n",
        "env:\n  - A: 1\n  - B: ''\nsteps:\n  - command: |\n      echo \"$A\"\n",
    ],
)  # fmt: skip
def test_the_common_shapes_take_the_fast_path(text):
    assert agree(text.encode()) is not None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_file_gives_the_same_tree_and_model(path, impl):
    data = path.read_bytes()
    for doc in tree.documents(data):
        agree(doc)
    assert outcome(load, path, evaluate=False) == outcome_of_ref(load, path, evaluate=False)


def outcome_of_ref(fn, *args, **kwargs):
    """`outcome` with the fast path off, whatever `impl` chose."""
    saved = tree._fast_compose
    tree._fast_compose = None
    try:
        return outcome(fn, *args, **kwargs)
    finally:
        tree._fast_compose = saved


# -- The edges: declined, or the same tree ------------------------------------------------

EDGES = {
    "nulls": b"a: ~\nb: null\nc: Null\nd: NULL\ne:\nf: ''\ng: 'null'\nh: nULL\n~: 1\nnull: 2\n",
    "empty key": b": 1\nb: 2\n",
    "merge value": b"a: <<\nb: '<<'\n",
    "quoted merge key": b"'<<': 1\n",
    "merge key": b"base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n",
    "merge list": b"a: &a {x: 1}\nb: &b {y: 2}\nc: {<<: [*a, *b], x: 3}\n",
    "anchor and alias": b"x: &v hello\ny: *v\nsteps: [*v]\n",
    "alias as key": b"x: &k name\n*k : 1\n",
    "scalar tags": b"a: !!str 3\nb: !!int 4\nc: !!null ~\nd: !!str ~\n~: !!null x\n",
    "bad tag": b"a: !!python/object:os.system x\n",
    "local tag": b"a: !x 1\n",
    "collection tags": b"a: !!map {b: 1}\nc: !!seq [1]\nd: !!set {e}\n",
    "duplicate": b"a: 1\nb: 2\na: 3\n",
    "duplicate nested": b"s:\n  - {x: 1, x: 2}\n",
    "collection key": b"? [a, b]\n: 1\n",
    "mapping key": b"? {a: 1}\n: 1\n",
    "two documents": b"a: 1\n---\nb: 2\n",
    "explicit end": b"a: 1\n...\n",
    "directive": b"%YAML 1.1\n---\na: 1\n",
    "top list": b"- a\n- b: 1\n",
    "top scalar": b"hello\n",
    "empty": b"",
    "comments only": b"# nothing\n",
    "huge numbers": b"a: 1e400\nb: 123456789012345678901234567890\nc: 0x_FF\nd: .inf\n",
    "booleans": b"a: yes\nb: No\nc: on\nd: OFF\ne: y\nf: true\n",
    "escapes": b'a: "\\0\\x00 nul"\nb: "\\u00e9\\U0001F389"\nc: "\\N\\_\\L\\P"\n',
    "bad escape": b'a: "\\ud800"\n',
    "block scalars": b"a: |\n  x\n  y\nb: >-\n  p\n  q\nc: |+\n  k\n\n",
    "flow": b"{a: [1, {b: c}], d: {}, e: []}\n",
    "unicode": "naïve: \U0001f389 ü\n\u00e9: ok\n".encode(),
    "bom": b"\xef\xbb\xbfa: 1\n",
    "syntax error": b"a: [1, 2\n",
    "tab indent": b"a:\n\tb: 1\n",
    "long key": b"k" * 100 + b": 1\n" + b"k" * 100 + b": 2\n",
    "many keys": b"".join(b"key%d: %d\n" % (i, i) for i in range(100)),
    "many keys repeated": b"".join(b"key%d: %d\n" % (i % 70, i) for i in range(71)),
    "deep 100": b"[" * 100 + b"]" * 100,
    "deep 101": b"[" * 101 + b"]" * 101,
    "not utf-8": b"a: \xff\n",
    "utf-16": "a: 1\n".encode("utf-16"),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_edges_are_declined_or_built_alike(name):
    agree(EDGES[name])
    agree(EDGES[name], steps_list=True)


@pytest.mark.parametrize("name", list(EDGES))
def test_edges_parse_to_the_same_tree_or_the_same_located_error(name, impl):
    data = EDGES[name]
    assert outcome(tree.parse, data, "x.yaml") == outcome_of_ref(tree.parse, data, "x.yaml")


def test_the_limits_are_the_reference_ones():
    """Keys count as values there too: a file just under the limit is built, one more
    value and the reference is asked (and refuses); so with depth."""
    data = b"a: 1\nb: [2, 3]\n"  # the mapping, 2 keys, 1 value, 1 list, 2 items: 7
    assert compose(data, False, 100, 7) == events.compose(data, False, 100, 7) == {
        "a": "1", "b": ["2", "3"]}  # fmt: skip
    assert compose(data, False, 100, 6) is None
    with pytest.raises(events._Fail, match="more than 6 values"):
        events.compose(data, False, 100, 6)
    assert compose(data, False, 2, 7) == events.compose(data, False, 2, 7)
    assert compose(data, False, 1, 7) is None
    with pytest.raises(events._Fail, match="deeper than 1 levels"):
        events.compose(data, False, 1, 7)


FRAGMENTS = [
    "name", "steps", "command", "depends", "env", "<<", "'<<'", "~", "null", "NULL", "''",
    '""', "&a", "*a", "!!str", "!x", "[", "]", "{", "}", "- ", ": ", ", ", "? ", "|", ">",
    "#", "---", "...", "\\0", '"\\0"', "3", "1e400", "true", "yes", "a b", "\t", "\U0001f389",
]  # fmt: skip


@st.composite
def yamlish(draw) -> bytes:
    """Lines of fragments at random indents: text near YAML, on both sides of the fast
    path's edge."""
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        indent = " " * draw(st.integers(0, 6))
        lines.append(indent + "".join(draw(st.lists(st.sampled_from(FRAGMENTS), max_size=5))))
    return "\n".join(lines).encode()


TWINS = settings(
    max_examples=150, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip


@TWINS
@given(data=yamlish(), steps_list=st.booleans())
def test_any_yamlish_text_is_declined_or_built_alike(data, steps_list):
    agree(data, steps_list)


WORDS = ["", "~", "null", "Null", "NULL", "<<", "yes", "3", "a b", "x: y", "- z", "#", "\0",
         "é", "\U0001f389", "line\nbreak", " lead", "name", "command", "depends"]  # fmt: skip
texts = st.one_of(st.sampled_from(WORDS), st.text(max_size=8))
docs = st.recursive(
    st.one_of(st.none(), texts),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(texts, kids, max_size=4)),
    max_leaves=20,
)


@st.composite
def dumped(draw) -> bytes:
    """A tree written out by PyYAML in a random style: valid YAML, mostly on the fast
    path (its nulls, quoting and block scalars are the edges)."""
    doc = draw(st.dictionaries(texts, docs, min_size=1, max_size=5))
    return yaml.safe_dump(
        doc, default_flow_style=draw(st.sampled_from([False, True, None])),
        default_style=draw(st.sampled_from([None, '"', "'", "|"])),
        allow_unicode=draw(st.booleans()), width=draw(st.sampled_from([8, 80])),
    ).encode()  # fmt: skip


@TWINS
@given(data=dumped())
def test_any_dumped_tree_is_built_alike(data):
    agree(data)


@TWINS
@given(data=st.binary(max_size=200))
def test_any_bytes_are_declined_or_built_alike(data):
    agree(data)


def test_a_bare_list_of_steps_loads_alike(tmp_path):
    """A sub-DAG may be a bare list of steps (`steps_list`)."""
    data = b"- {name: a, command: x}\n- {name: b, command: y, depends: a}\n"
    assert agree(data, steps_list=True) == {"steps": [
        {"name": "a", "command": "x"}, {"name": "b", "command": "y", "depends": "a"},
    ]}  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "steps:\n  - name: a\n    command: x\n    depend: b\n",
        "steps:\n  - name: a\n    command: x\n  - name: a\n    command: y\n",
        "maxActiveSteps: -1\nsteps:\n  - {name: a, command: x, depends: [zz]}\n",
        "timeoutSec: soon\nsteps:\n  - name: a\n    command: {x: 1}\n",
        "steps:\n  - name: a\n    command: x\n    name: b\n",
    ],
)  # fmt: skip
def test_problems_are_located_alike(tmp_path, text, impl):
    """A file with problems parses on the fast path; the problems are found in the
    tree and located by the reference's second reading, the same either way."""
    got = outcome(load_text, text, file="x.yaml", base_dir=tmp_path)
    assert type(got) is list and got
    assert got == outcome_of_ref(load_text, text, file="x.yaml", base_dir=tmp_path)


@pytest.mark.parametrize("enabled", [True, False])
def test_a_load_leaves_the_garbage_collector_as_it_found_it(tmp_path, enabled):
    """The collector is paused during a load (see `loader._load`), never left off."""
    import gc

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        load_text("steps:\n  - command: x\n", base_dir=tmp_path)
        assert gc.isenabled() is enabled
        with pytest.raises(LoadError):
            load_text("steps:\n  - comand: x\n", base_dir=tmp_path)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
