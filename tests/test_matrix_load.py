"""`parallel:` sources and `matrix:` through the real loader: what each becomes in the
model (`Fanout`, `Matrix`), and each mistake as one located line."""

from __future__ import annotations

import textwrap

import pytest

from dagfast.errors import LoadError
from dagfast.loader import load_text
from dagfast.loader.matrix import count
from dagfast.model import Fanout, Matrix


def fanout(yaml: str, **kw) -> Fanout:
    """The Fanout of the only step of `yaml` (a `steps:` list, dedented)."""
    dag = load_text(textwrap.dedent(yaml), file="dag.yaml", **kw)
    return dag.steps[0].extra.parallel


def problems(yaml: str, **kw) -> list[str]:
    with pytest.raises(LoadError) as e:
        load_text(textwrap.dedent(yaml), file="dag.yaml", **kw)
    return [str(p) for p in e.value.problems]


# ---------------------------------------------------------------------------------------
# What the loader makes of each form


def test_the_current_forms_load_as_before():
    assert fanout("""\
        steps:
          - call: sub.yaml
            parallel: ${ITEMS}
        """) == Fanout(expr="${ITEMS}")
    assert fanout("""\
        steps:
          - call: sub.yaml
            parallel: [a, 1, {REGION: north, N: 2, X: ~}]
        """) == Fanout(items=("a", "1", {"REGION": "north", "N": "2", "X": ""}))
    assert fanout("""\
        steps:
          - call: sub.yaml
            parallel: {items: [a, b], maxConcurrent: 3}
        """) == Fanout(items=("a", "b"), max_concurrent=3)


def test_a_command_step_fans_out_without_call():
    dag = load_text("steps:\n  - name: fan\n    command: echo $ITEM\n    parallel: [a, b]\n")
    step = dag.steps[0]
    assert step.argv[-1] == "echo $ITEM"
    assert step.extra.call is None
    assert step.extra.parallel == Fanout(items=("a", "b"))


def test_file_and_command_sources_keep_their_text_as_written():
    assert fanout("""\
        steps:
          - command: work $ITEM
            parallel:
              file: ${DATA}/items.jsonl
              format: jsonl
              key: ${ITEM.id}
              maxItems: 500
              maxConcurrent: 8
        """) == Fanout(file="${DATA}/items.jsonl", format="jsonl", key="${ITEM.id}",
                       max_items=500, max_concurrent=8)
    assert fanout("""\
        steps:
          - command: work $ITEM
            parallel: {command: "seq ${N:-3}"}
        """) == Fanout(command="seq ${N:-3}")


def test_max_items_may_be_a_variable():
    yaml = """\
        env:
          - N: 7
        steps:
          - command: work
            parallel: {file: items.txt, maxItems: "${N}"}
        """
    assert fanout(yaml).max_items == 7
    assert Fanout().max_items == 1_000_000


def test_a_matrix_keeps_its_axes_in_file_order_and_values_as_written():
    f = fanout("""\
        steps:
          - name: build
            command: make OS=${os} ARCH=${arch}
            matrix:
              os: [linux, mac]
              arch: [x86, arm]
              n: [1, 2.50, true, yes, ~]
              exclude:
                - {os: mac, arch: x86}
              include:
                - {os: windows, arch: x86}
            parallel: {maxConcurrent: 4, key: "${os}-${arch}"}
        """)
    assert f == Fanout(
        max_concurrent=4,
        key="${os}-${arch}",
        matrix=Matrix(
            axes=(("os", ("linux", "mac")), ("arch", ("x86", "arm")),
                  ("n", ("1", "2.50", "true", "yes", ""))),
            include=((("os", "windows"), ("arch", "x86")),),
            exclude=((("os", "mac"), ("arch", "x86")),),
        ),
    )


def test_a_matrix_of_includes_only_loads():
    f = fanout("""\
        steps:
          - call: deploy.yaml
            matrix:
              include:
                - {site: production, datacenter: site-a}
                - {site: staging, datacenter: site-b}
        """)
    assert f.matrix == Matrix((), ((("site", "production"), ("datacenter", "site-a")),
                                   (("site", "staging"), ("datacenter", "site-b"))))


# ---------------------------------------------------------------------------------------
# Located errors


def test_a_fan_out_step_with_nothing_to_run():
    assert problems("""\
        steps:
          - name: m
            matrix: {os: [linux]}
        """) == [
        "dag.yaml:3:5: `matrix` runs something per item: give the step a `command` (or "
        "`script`), or `call` a DAG - at `$.steps[0].matrix`"
    ]


def test_sources_none_or_two():
    assert problems("""\
        steps:
          - command: work
            parallel: {maxConcurrent: 2}
          - command: work
            parallel: {items: [a], file: items.txt, command: seq 3}
        """) == [
        "dag.yaml:3:15: `parallel` has no items: give `items`, `file` or `command` (or a "
        "`matrix` on the step) - at `$.steps[0].parallel`",
        "dag.yaml:5:28: give one item source, not both `items` and `file` - at "
        "`$.steps[1].parallel.file`",
        "dag.yaml:5:45: give one item source, not both `items` and `command` - at "
        "`$.steps[1].parallel.command`",
    ]


def test_format_is_checked_and_only_for_files_and_commands():
    assert problems("""\
        steps:
          - command: work
            parallel: {file: items.xml, format: xml}
          - command: work
            parallel: {items: [a], format: json}
          - command: work
            parallel: {file: " "}
        """) == [
        "dag.yaml:3:41: expected `lines`, `json` or `jsonl`, got `xml` - at "
        "`$.steps[0].parallel.format`",
        "dag.yaml:5:28: `format` is only for `file` or `command` items - at "
        "`$.steps[1].parallel.format`",
        "dag.yaml:7:22: `file` is empty - at `$.steps[2].parallel.file`",
    ]


def test_max_items_is_an_integer_of_at_least_one():
    assert problems("""\
        steps:
          - command: work
            parallel: {file: a.txt, maxItems: 0}
          - command: work
            parallel: {file: a.txt, maxItems: many}
          - command: work
            parallel: {file: a.txt, maxItems: "${NONE:-0}"}
        """) == [
        "dag.yaml:3:39: expected an integer >= 1, got `0` - at `$.steps[0].parallel.maxItems`",
        "dag.yaml:5:39: expected an integer >= 1, got `many` - at `$.steps[1].parallel.maxItems`",
    ]
    assert problems("""\
        steps:
          - command: work
            parallel: {file: a.txt, maxItems: "${NONE:-0}"}
        """) == [
        "dag.yaml:3:39: `maxItems` is `0` after expansion; expected an integer >= 1 - at "
        "`$.steps[0].parallel.maxItems`",
    ]


def test_more_items_written_than_max_items():
    assert problems("""\
        env:
          - N: 2
        steps:
          - command: work
            parallel: {items: [a, b, c], maxItems: 2}
          - command: work
            parallel: {items: [a, b, c], maxItems: "${N}"}
        """) == [
        "dag.yaml:5:23: 3 items, over maxItems (2) - at `$.steps[0].parallel.items`",
    ]


def test_an_empty_axis_and_an_axis_that_is_not_a_list_of_values():
    assert problems("""\
        steps:
          - command: work
            matrix:
              os: []
              arch: x86
              cpu: [a, [b]]
              gpu: [{a: 1}]
              n: [1, 1]
        """) == [
        "dag.yaml:4:11: the axis `os` is empty: give it at least one value - at "
        "`$.steps[0].matrix.os`",
        "dag.yaml:5:13: the axis `arch` must be a list of values, got `x86` - at "
        "`$.steps[0].matrix.arch`",
        "dag.yaml:6:16: expected a value (text or a number), got a list - at "
        "`$.steps[0].matrix.cpu[1]`",
        "dag.yaml:7:12: the axis `gpu` must be a list of values, not of mappings - at "
        "`$.steps[0].matrix.gpu`",
        "dag.yaml:8:14: `1` is already a value of `n` (its combinations would run twice) - at "
        "`$.steps[0].matrix.n[1]`",
    ]


def test_a_misspelt_include_or_exclude_is_named():
    assert problems("""\
        steps:
          - command: work
            matrix:
              os: [linux]
              exlude: [{os: linux}]
        """) == [
        "dag.yaml:5:15: the axis `exlude` must be a list of values, not of mappings (did you "
        "mean `exclude`?) - at `$.steps[0].matrix.exlude`",
    ]


def test_exclude_naming_an_unknown_axis():
    assert problems("""\
        steps:
          - command: work
            matrix:
              os: [linux, mac]
              arch: [x86]
              exclude:
                - {os: mac, archs: x86}
        """) == [
        "dag.yaml:7:21: `exclude` names `archs`, which is not an axis (the axes: `os`, "
        "`arch`) (did you mean `arch`?) - at `$.steps[0].matrix.exclude[0].archs`",
    ]


def test_include_and_exclude_entries_are_mappings_of_values():
    assert problems("""\
        steps:
          - command: work
            matrix:
              os: [linux, mac]
              exclude: [mac, {}, {os: [mac]}]
              include: {os: bsd}
          - command: work
            matrix:
              os: [linux]
              include: [{os: bsd, extra: {a: 1}}, {}]
        """) == [
        "dag.yaml:5:17: expected a mapping of axis names to values, got `mac` - at "
        "`$.steps[0].matrix.exclude[0]`",
        "dag.yaml:5:22: an empty `exclude` entry would leave out every combination - at "
        "`$.steps[0].matrix.exclude[1]`",
        "dag.yaml:5:31: expected a value (text or a number), got a list - at "
        "`$.steps[0].matrix.exclude[2].os`",
        "dag.yaml:6:16: expected a list of mappings, got a mapping - at "
        "`$.steps[0].matrix.include`",
        "dag.yaml:10:34: expected a value (text or a number), got a mapping - at "
        "`$.steps[1].matrix.include[0].extra`",
        "dag.yaml:10:43: an empty `include` entry adds nothing - at "
        "`$.steps[1].matrix.include[1]`",
    ]


def test_a_matrix_with_no_axis_and_no_include():
    assert problems("""\
        steps:
          - command: work
            matrix: {exclude: [{os: mac}]}
          - command: work
            matrix: {}
          - command: work
            matrix: [os]
        """) == [
        "dag.yaml:3:25: `exclude` names `os`, which is not an axis (the axes: none) - at "
        "`$.steps[0].matrix.exclude[0].os`",
        "dag.yaml:5:13: the matrix has no axis and no `include`: give at least one axis, such "
        "as `os: [linux, mac]` - at `$.steps[1].matrix`",
        "dag.yaml:7:13: expected a mapping, got a list - at `$.steps[2].matrix`",
    ]


def test_too_many_combinations_says_the_count():
    # 1,200 x 1,000 = 1,200,000 combinations, counted, never listed.
    axes = f"a: [{', '.join(map(str, range(1200)))}]\n      b: [{', '.join(map(str, range(1000)))}]"
    text = f"steps:\n  - command: work\n    matrix:\n      {axes}\n"
    assert problems(text) == [
        "dag.yaml:3:5: 1,200,000 combinations, over maxItems (1,000,000) - at "
        "`$.steps[0].matrix`"
    ]


def test_the_count_takes_excludes_and_includes_and_a_variable_max_items():
    yaml = """\
        env:
          - N: 5
        steps:
          - command: work
            matrix:
              os: [linux, mac, windows]
              arch: [x86, arm]
              exclude:
                - {os: mac, arch: x86}
              include:
                - {os: linux, extra: 1}
                - {os: bsd}
            parallel: {maxItems: "${N}"}
        """
    # 6 - 1 excluded + 1 new (bsd); the linux include only extends.
    assert problems(yaml) == [
        "dag.yaml:5:5: 6 combinations, over maxItems (5) - at `$.steps[0].matrix`"
    ]
    assert fanout(yaml.replace('"${N}"', "6")).max_items == 6


def test_matrix_with_parallel_items():
    assert problems("""\
        steps:
          - command: work
            matrix: {os: [linux]}
            parallel: [a, b]
          - command: work
            matrix: {os: [linux]}
            parallel: {file: items.txt, maxConcurrent: 2}
        """) == [
        "dag.yaml:3:5: `matrix` gives the items, and so does `parallel`: beside `matrix`, "
        "`parallel` takes only `maxConcurrent`, `maxItems` and `key` - at `$.steps[0].matrix`",
        "dag.yaml:6:5: `matrix` gives the items, and so does `parallel`: beside `matrix`, "
        "`parallel` takes only `maxConcurrent`, `maxItems` and `key` - at `$.steps[1].matrix`",
    ]


def test_new_keys_get_did_you_mean():
    assert problems("""\
        steps:
          - command: work
            matrx: {os: [linux]}
          - command: work
            parallel: {file: a.txt, maxItem: 3, fromat: lines}
        """) == [
        "dag.yaml:3:5: unknown key `matrx` (did you mean `matrix`?) - at `$.steps[0].matrx`",
        "dag.yaml:5:29: unknown key `maxItem` (did you mean `maxItems`?) - at "
        "`$.steps[1].parallel.maxItem`",
        "dag.yaml:5:41: unknown key `fromat` (did you mean `format`?) - at "
        "`$.steps[1].parallel.fromat`",
    ]


# ---------------------------------------------------------------------------------------
# The count, against GitHub's documented examples (the listing is in test_items_source)


def test_count_of_githubs_examples():
    # "Excluding matrix configurations": 2 x 3 x 2 = 12, less 1 and 2.
    m = Matrix(
        (("os", ("macos-latest", "windows-latest")), ("version", ("12", "14", "16")),
         ("environment", ("staging", "production"))),
        exclude=((("os", "macos-latest"), ("version", "12"), ("environment", "production")),
                 (("os", "windows-latest"), ("version", "16"))),
    )
    assert count(m) == 9
    # "Expanding or adding matrix configurations": 4 + 2 new (banana, banana-cat).
    m = Matrix(
        (("fruit", ("apple", "pear")), ("animal", ("cat", "dog"))),
        include=((("color", "green"),), (("color", "pink"), ("animal", "cat")),
                 (("fruit", "apple"), ("shape", "circle")), (("fruit", "banana"),),
                 (("fruit", "banana"), ("animal", "cat"))),
    )
    assert count(m) == 6


def test_overlapping_excludes_are_counted_once():
    m = Matrix((("a", ("1", "2")), ("b", ("1", "2")), ("c", ("1", "2"))),
               exclude=((("a", "1"),), (("b", "1"),), (("a", "1"), ("b", "1")), (("c", "9"),)))
    assert count(m) == 2  # a=2, b=2, c in 1, 2
    # An include that matches only an excluded combination is a combination of its own.
    m = Matrix((("a", ("1", "2")),), include=((("a", "1"), ("x", "y")),),
               exclude=((("a", "1"),),))
    assert count(m) == 2
