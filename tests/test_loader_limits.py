"""Numbers past what the machine (or a sane run) can hold are located load errors,
never an overflow later: integer keys stop at 2^63-1, `maxActiveRuns` at 10,000, a
DAG `name` at the 255 bytes a directory name can take."""

from __future__ import annotations

import pytest

from dagfast.errors import LoadError
from dagfast.loader import load

TOO_BIG = str(2**63)
INT_MAX = "9,223,372,036,854,775,807"


def _errors(tmp_path, text: str, environ=None) -> list[str]:
    dag = tmp_path / "dag.yaml"
    dag.write_text(text)
    with pytest.raises(LoadError) as e:
        load(dag, environ=environ or {})
    return [str(p).removeprefix(f"{dag}:") for p in e.value.problems]


@pytest.mark.parametrize("text", [
    f"maxOutputSize: {TOO_BIG}\nsteps: [echo]\n",
    f"timeoutSec: {TOO_BIG}\nsteps: [echo]\n",
    f"steps:\n  - command: echo\n    retryPolicy: {{limit: {TOO_BIG}}}\n",
    f"steps:\n  - command: echo\n    delaySec: {'9' * 5000}\n",
], ids=["maxOutputSize", "timeoutSec", "retryPolicy.limit", "5000 digits"])  # fmt: skip
def test_an_integer_past_2_to_the_63_is_a_located_error(tmp_path, text):
    (problem,) = _errors(tmp_path, text)
    assert f": expected an integer from 0 to {INT_MAX}, got `" in problem
    assert problem.split(":")[0].isdigit() and " - at `$." in problem


def test_max_active_runs_is_at_most_10_000(tmp_path):
    assert _errors(tmp_path, "maxActiveRuns: 10001\nsteps: [echo]\n") == [
        "1:16: expected an integer from 0 to 10,000, got `10001` - at `$.maxActiveRuns`"
    ]
    assert _errors(tmp_path, "maxActiveRuns: ${N}\nsteps: [echo]\n", {"N": "1" + "0" * 30}) == [
        f"1:16: `maxActiveRuns` is `1{'0' * 30}` after expansion; expected an integer from 0"
        " to 10,000 - at `$.maxActiveRuns`"
    ]
    dag = tmp_path / "ok.yaml"
    dag.write_text("maxActiveRuns: 10000\nsteps: [echo]\n")
    assert load(dag).max_active_runs == 10_000


def test_a_dag_name_longer_than_a_directory_name_can_be_is_a_located_error(tmp_path):
    assert _errors(tmp_path, f"name: {'é' * 128}\nsteps: [echo]\n") == [
        "1:7: the name is 256 bytes long; a DAG name takes at most 255 (its runs are kept"
        " in a directory of that name) - at `$.name`"
    ]
    dag = tmp_path / "ok.yaml"
    dag.write_text(f"name: {'n' * 255}\nsteps: [echo]\n")
    assert load(dag).name == "n" * 255
