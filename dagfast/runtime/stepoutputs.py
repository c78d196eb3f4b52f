"""Dagu 2.x step outputs: the `$DAGU_OUTPUT_FILE` of a step that declares `outputs:`,
read after the step succeeds, and `${steps.ID.outputs.NAME}` filled in when a later
step starts.

Only steps that declare `outputs:` get a file, under the run's directory
(`step-outputs/<step id>`, 0600), emptied before each attempt. Records are `name=value`
lines or `name<<DELIM` ... `DELIM` blocks; every declared name must be written once,
and nothing else. A reference whose value is not published (no such step among the
step's ancestors, or it wrote none) stays as written, as in Dagu.
"""

from __future__ import annotations

import os
import re

import msgspec

from dagfast.errors import RunError
from dagfast.model import Step
from dagfast.status import StepStatus

__all__ = ["StepOutputError", "fill", "fill_env", "parse", "prepare", "reset", "restore"]

ENV = b"DAGU_OUTPUT_FILE"
_REF = re.compile("\ue004([A-Za-z][A-Za-z0-9_]*)\\.([A-Za-z][A-Za-z0-9_]*)\ue005")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DELIM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class StepOutputError(RunError):
    """A step's `$DAGU_OUTPUT_FILE` that does not hold what its `outputs:` declare."""


def prepare(run_path: str, i: int, env: dict) -> None:
    """Make step `i`'s empty output file under the run's directory and name it in the
    step's environment as DAGU_OUTPUT_FILE."""
    folder = os.path.join(run_path, "step-outputs")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, str(i))
    env[ENV] = os.fsencode(path)
    reset(env)


def restore(run, run_path: str, kept) -> None:
    """A retry: the steps it keeps publish again what their file holds (the run's
    directory keeps it), for the steps that run again to read."""
    steps = run.dag.steps
    for i in kept:
        ex = steps[i].extra
        if ex is not None and ex.outputs and run.records[i].status == StepStatus.SUCCEEDED:
            env = {ENV: os.fsencode(os.path.join(run_path, "step-outputs", str(i)))}
            try:
                run.step_outputs[i] = parse(env, ex.outputs, run.dag.max_output_size)
            except StepOutputError:
                pass  # as if it wrote none: its references stay as written


def reset(env: dict) -> None:
    """Empty the output file (before each attempt: a failed one publishes nothing)."""
    fd = os.open(os.fsdecode(env[ENV]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)


def parse(env: dict, declared: tuple[tuple[str, str], ...], limit: int) -> dict[str, str]:
    """The values the step wrote, by name; StepOutputError saying what is wrong."""
    path = os.fsdecode(env[ENV])
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1 if limit > 0 else -1)
    except OSError as e:
        raise StepOutputError(f"cannot read $DAGU_OUTPUT_FILE: {e.strerror}") from None
    if limit > 0 and len(data) > limit:
        raise StepOutputError(f"$DAGU_OUTPUT_FILE is larger than maxOutputSize ({limit} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StepOutputError("$DAGU_OUTPUT_FILE is not UTF-8") from None
    values = _records(text.replace("\r\n", "\n").replace("\r", "\n"))
    types = dict(declared)
    for name, value in values.items():
        if name not in types:
            raise StepOutputError(f"$DAGU_OUTPUT_FILE sets `{name}`, which `outputs:` does "
                                  "not declare")
        if types[name] == "json":
            try:
                msgspec.json.decode(value)
            except msgspec.DecodeError:
                raise StepOutputError(f"output `{name}` is not JSON: {value[:60]!r}") from None
    missing = [n for n, _ in declared if n not in values]
    if missing:
        raise StepOutputError("$DAGU_OUTPUT_FILE does not set " +
                              ", ".join(f"`{n}`" for n in missing))
    return values


def _records(text: str) -> dict[str, str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: dict[str, str] = {}
    k = 0
    while k < len(lines):
        line, k = lines[k], k + 1
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, _, delim = line.partition("<<")
            if not _DELIM.fullmatch(delim):
                raise StepOutputError(f"line {k} of $DAGU_OUTPUT_FILE: `{delim}` is not a "
                                      "delimiter (letters, digits, `_`)")
            try:
                end = lines.index(delim, k)
            except ValueError:
                raise StepOutputError(f"line {k} of $DAGU_OUTPUT_FILE: `{name}<<{delim}` is "
                                      f"never closed by a `{delim}` line") from None
            value = "\n".join(lines[k:end])
            k = end + 1
        else:
            name, eq, value = line.partition("=")
            if not eq:
                raise StepOutputError(f"line {k} of $DAGU_OUTPUT_FILE is not `name=value` or "
                                      "`name<<DELIMITER`")
        if not _NAME.fullmatch(name):
            raise StepOutputError(f"line {k} of $DAGU_OUTPUT_FILE: `{name}` is not an output name")
        if name in out:
            raise StepOutputError(f"$DAGU_OUTPUT_FILE sets `{name}` twice")
        out[name] = value
    return out


def _values(run, reads) -> dict[tuple[str, str], str]:
    steps = run.dag.steps
    return {(steps[p].id, name): value
            for p in reads for name, value in run.step_outputs.get(p, {}).items()}


def fill(run, reads, text: str) -> str:
    """`text` with each `${steps.ID.outputs.NAME}` the step can read filled in; the
    others as written."""
    if "\ue004" not in text:
        return text
    values = _values(run, reads or ())

    def sub(m: re.Match) -> str:
        got = values.get((m.group(1), m.group(2)))
        return got if got is not None else "${steps.%s.outputs.%s}" % (m.group(1), m.group(2))

    return _REF.sub(sub, text)


def fill_env(run, step: Step, env: dict) -> None:
    """The step's own `env` values that read step outputs, filled in."""
    for k, v in step.env:
        if "\ue004" in v:
            env[k.encode()] = fill(run, step.extra.reads, v).encode("utf-8", "surrogateescape")
