"""Type errors speak the user's words, in one shape for every key: `expected X, got Y`
(`` expected a mapping, got `5` ``), `` `key` is missing ``, `` `command` is empty ``."""

from __future__ import annotations

import pytest

from dagfast.errors import LoadError
from dagfast.loader import load


def test_type_errors_speak_the_users_words_in_one_shape(tmp_path):
    dag = tmp_path / "dag.yaml"
    dag.write_text("""\
env: 5
secrets: [just text, {name: A, provider: env}]
steps:
  - 42
  - true
  - name: b
    command: ""
  - name: c
    command: echo
    depends: [{a: 1}]
    retryPolicy: {limit: 1, exitCode: three}
    continueOn: maybe
""")
    with pytest.raises(LoadError) as e:
        load(dag, environ={})
    assert [str(p).removeprefix(f"{dag}:") for p in e.value.problems] == [
        "1:6: expected a mapping or a list, got `5` - at `$.env`",
        "2:11: expected a mapping, got `just text` - at `$.secrets[0]`",
        "2:22: `key` is missing - at `$.secrets[1]`",
        "4:5: expected a step (a command or a mapping), got the number `42` (quote it to mean"
        " the command) - at `$.steps[0]`",
        "7:14: `command` is empty - at `$.steps[2].command`",
        "10:15: expected a step name, got a mapping - at `$.steps[3].depends[0]`",
        "11:39: expected an integer or a list, got `three` - at `$.steps[3].retryPolicy.exitCode`",
        "12:17: expected `failure`, `skipped` or a mapping, got `maybe` - at"
        " `$.steps[3].continueOn`",
    ]
    dag.write_text("steps: 5\n")
    with pytest.raises(LoadError) as e:
        load(dag, environ={})
    assert str(e.value.problems[0]) == f"{dag}:1:8: expected a list or a mapping, got `5` - at `$.steps`"
