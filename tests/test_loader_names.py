"""Names that would forge rows where they are printed (`status`, `history`): a step or
DAG name holding a newline or another control character is a located load error."""

from __future__ import annotations

import pytest

from dagfast.errors import LoadError
from dagfast.loader import load


def _errors(tmp_path, text: str) -> list[str]:
    dag = tmp_path / "dag.yaml"
    dag.write_text(text)
    with pytest.raises(LoadError) as e:
        load(dag, environ={})
    return [str(p).removeprefix(f"{dag}:") for p in e.value.problems]


@pytest.mark.parametrize(("written", "shown"), [
    ('"a\\nb  succeeded"', "a\\x0ab  succeeded"),
    ('"tab\\there"', "tab\\x09here"),
    ('"esc\\e[31m"', "esc\\x1b[31m"),
    ('"del\\x7f"', "del\\x7f"),
    ('"nel\\N"', "nel\\x85"),
    ('"line\\Lsep"', "line\\u2028sep"),
], ids=["newline", "tab", "escape", "DEL", "NEL", "line separator"])  # fmt: skip
def test_a_step_name_with_a_control_character_is_a_located_error(tmp_path, written, shown):
    assert _errors(tmp_path, f"steps:\n  - name: {written}\n    command: echo\n") == [
        f"2:11: a name cannot hold a control character: `{shown}` - at `$.steps[0].name`"
    ]


def test_a_step_key_or_a_dag_name_with_a_control_character_is_a_located_error(tmp_path):
    assert _errors(tmp_path, 'name: "x\\ry"\nsteps:\n  "a\\nb": {command: echo}\n') == [
        "1:7: a name cannot hold a control character: `x\\x0dy` - at `$.name`",
        '3:3: a name cannot hold a control character: `a\\x0ab` - at `$.steps["a\\nb"]`',
    ]


def test_names_with_spaces_quotes_and_unicode_still_load(tmp_path):
    dag = tmp_path / "dag.yaml"
    dag.write_text("steps:\n  - name: \"caf\u00e9 'x' $y; z\"\n    command: echo\n")
    assert load(dag).steps[0].name == "caf\u00e9 'x' $y; z"
