"""One route for integer keys: every one, at DAG and step level, written as a number or
as `${VAR}`, is refused in the same words, with its file:line:col and `$.path`."""

from __future__ import annotations

import pytest

from dagfast.errors import LoadError
from dagfast.loader import load

# (level, path to the key); the YAML around each is built by `_dag`.
KEYS = [
    ("dag", ("maxActiveSteps",)),
    ("dag", ("maxActiveRuns",)),
    ("dag", ("timeoutSec",)),
    ("dag", ("delaySec",)),
    ("dag", ("maxCleanUpTimeSec",)),
    ("dag", ("maxOutputSize",)),
    ("step", ("timeoutSec",)),
    ("step", ("delaySec",)),
    ("step", ("retryPolicy", "limit")),
    ("step", ("retryPolicy", "intervalSec")),
    ("step", ("retryPolicy", "maxIntervalSec")),
    ("step", ("repeatPolicy", "limit")),
    ("step", ("repeatPolicy", "intervalSec")),
    ("step", ("repeatPolicy", "maxIntervalSec")),
    ("step", ("parallel", "maxConcurrent")),
]
WRITTEN = {
    # how it is written -> the message, `{key}` the key as the user spelled it
    "soon": "expected an integer >= 0, got `soon`",
    "-1": "expected an integer >= 0, got `-1`",
    "${T:-soon}": "`{key}` is `soon` after expansion; expected an integer >= 0",
    "${T:--1}": "`{key}` is `-1` after expansion; expected an integer >= 0",
}


def _dag(level: str, path: tuple[str, ...], value: str) -> tuple[str, int, int, str]:
    """The YAML text, the line and column of `value`, and the key's `$.path`."""
    if level == "dag":
        key = path[0]
        return f"{key}: {value}\nsteps:\n  - command: echo\n", 1, len(key) + 3, f"$.{key}"
    lines = ["steps:"]
    if path[0] == "parallel":
        lines += ["  - call: sub.yaml", "    parallel:", "      items: [a]"]
    else:
        lines += ["  - command: echo"]
    if len(path) == 1:
        lines.append(f"    {path[0]}: {value}")
        col = 4 + len(path[0]) + 3
    else:
        if path[0] != "parallel":
            lines.append(f"    {path[0]}:")
            if path[0] == "retryPolicy" and path[1] != "limit":
                lines.append("      limit: 1")
        lines.append(f"      {path[1]}: {value}")
        col = 6 + len(path[1]) + 3
    return "\n".join(lines) + "\n", len(lines), col, "$.steps[0]." + ".".join(path)


@pytest.mark.parametrize("written", list(WRITTEN))
@pytest.mark.parametrize(("level", "path"), KEYS, ids=lambda k: ".".join(k) if type(k) is tuple else k)
def test_every_integer_key_is_refused_in_one_shape(tmp_path, level, path, written):
    text, line, col, at = _dag(level, path, written)
    dag = tmp_path / "dag.yaml"
    dag.write_text(text)
    with pytest.raises(LoadError) as e:
        load(dag, environ={})
    message = WRITTEN[written].format(key=path[-1])
    assert [str(p) for p in e.value.problems] == [f"{dag}:{line}:{col}: {message} - at `{at}`"]


@pytest.mark.parametrize(("level", "path"), KEYS, ids=lambda k: ".".join(k) if type(k) is tuple else k)
def test_every_integer_key_takes_a_number_or_a_variable(tmp_path, level, path):
    for written in ("7", "${T}"):
        text, _, _, _ = _dag(level, path, written)
        dag = tmp_path / "dag.yaml"
        dag.write_text(text)
        load(dag, environ={"T": "7"})
