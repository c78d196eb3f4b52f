"""The step and DAG keys beyond "run this command": spec values -> model values.

Used by the loader's `steps` only, for the few steps that set any of these keys; a step that sets
none keeps `extra=None` and runs on the engine's fast path. `check_extra` runs before
anything is evaluated (every check the text as written can answer); `build_extra`,
after, checks only what needed the DAG's variables.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Mapping
from functools import partial
from operator import attrgetter

import dagfast.loader.matrix as matrices
import dagfast.loader.tree as yamlsrc
from dagfast.loader.expand import ExpandError, expand, has_references
from dagfast.loader.integers import integer as check_integer
from dagfast.model import Condition, ContinueOn, Fanout, Repeat, Retry, StepExtra
from dagfast.loader.params import ParamsError, parse
from dagfast.loader.problems import got
from dagfast.loader.spec import ConditionSpec, ContinueOnSpec, OutputSpec, ParallelSpec, StepSpec

__all__ = ["EXTRA_FIELDS", "build_extra", "check_extra", "conditions", "featured", "integer"]

EXTRA_FIELDS = (
    "output", "continue_on", "retry_policy", "repeat_policy", "preconditions",
    "timeout_sec", "delay_sec", "signal_on_stop", "run", "call", "params", "parallel",
    "stdout", "stderr", "resources", "outputs", "matrix",
)  # fmt: skip
_EXTRA = attrgetter(*EXTRA_FIELDS)
_NONE = (None,) * len(EXTRA_FIELDS)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESOURCE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")
# Byte units as Dask's own `parse_bytes` reads them: kB, MB... powers of 1000, KiB,
# MiB... powers of 1024; case does not matter, the B may be left out.
_UNITS = {
    "": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50,
}

# What a `call`/`run` step does not do (it runs no process of its own): each is an
# error beside it, never ignored. Attribute, key.
_NOT_WITH_CALL = (
    ("command", "command"), ("script", "script"), ("shell", "shell"),
    ("working_dir", "workingDir"), ("retry_policy", "retryPolicy"),
    ("repeat_policy", "repeatPolicy"), ("timeout_sec", "timeoutSec"),
    ("signal_on_stop", "signalOnStop"), ("resources", "resources"), ("outputs", "outputs"),
)  # fmt: skip
_OUTPUT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# A fan-out's item sources (`parallel:` keys; a step's `matrix:` is the fourth), the
# formats of a `file` or `command` source, and the default `maxItems`.
_SOURCES = ("items", "file", "command")
FORMATS = ("lines", "json", "jsonl")
_MAX_ITEMS = Fanout().max_items

Where = Callable[..., tuple]


def featured(specs: list[StepSpec]) -> list[int]:
    """The indexes of the steps that set any key beyond the command (one C-level pass)."""
    return [i for i, t in enumerate(map(_EXTRA, specs)) if t != _NONE]


def integer(
    value, key: str, where: tuple, scope: Mapping[str, str], problems, known=None, least=0
) -> int:
    """A step's integer key once the DAG's variables are known: `${VAR}` expanded over
    `scope` (backticks left as written), then checked by `integers.integer` (from
    `least`). A value that `known` says is not what a run would see
    (`load(evaluate=False)`), or one refused, is 0."""
    if value is None:
        return 0
    expanded = type(value) is str and has_references(value)
    if expanded:
        try:
            value = expand(value, scope)
        except ExpandError as e:
            problems.add(where, str(e))
            return 0
        if known is not None and not known(value):
            return 0
    n = check_integer(value, key, where, problems, expanded=expanded, least=least)
    return 0 if n is None else n


def _literal_integer(value, key: str, where: tuple, problems, least: int = 0) -> None:
    """An integer key as written, checked before anything is evaluated; one written
    with references waits for its variables (`integer`)."""
    if value is not None and not (type(value) is str and has_references(value)):
        check_integer(value, key, where, problems, least=least)


def conditions(value) -> tuple[Condition, ...]:
    """Preconditions as written (a string, a map, or a list of them) -> Conditions."""
    if value is None:
        return ()
    items = value if type(value) is list else [value]
    out = []
    for c in items:
        if type(c) is ConditionSpec:
            out.append(Condition(c.condition, c.expected, c.negate))
        else:
            out.append(Condition(c))
    return tuple(out)


def _codes(value) -> tuple[int, ...]:
    if value is None:
        return ()
    return (value,) if type(value) is int else tuple(value)


def _backoff(value, where: tuple, problems) -> float:
    if value is True:
        return 2.0
    if value is False:
        return 1.0
    if value <= 1:
        problems.add(where, f"`backoff` must be `true` or a number > 1, got `{value}`")
        return 1.0
    return float(value)


def _signal(name: str, where: tuple, problems) -> int:
    text = name.strip().upper()
    if text.isdigit():
        number = int(text)
        if number and number in signal.valid_signals():
            return number
        problems.add(where, f"`{name}` is not a signal on this system (give a name such as "
                            "`SIGTERM`, or its number)")
        return 0
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        problems.add(where, f"`{name}` is not a signal name (such as `SIGINT`)")
        return 0


def _typed(value, at: tuple, expected: str, problems) -> None:
    """Report `value` when the file wrote it as a plain YAML number or boolean where
    text is expected (`stdout: 5`); the tree keeps the text, so the source decides."""
    if type(value) is not str or yamlsrc.typed_text(value) is None:
        return
    kind = problems.plain_type(at)
    if kind is not None:
        problems.add(at, f"expected {expected}, got the {kind} `{value}` (quote it to mean "
                         "the text)")


def check_condition_types(pre, where: Where, problems) -> None:
    """`preconditions` (a DAG's or a step's) written as a number or a boolean."""
    if type(pre) is list:
        for k, c in enumerate(pre):
            _typed(c, where("preconditions", k), "text or a mapping", problems)
    else:
        _typed(pre, where("preconditions"), "text, a mapping or a list", problems)


def _check_types(s: StepSpec, where: Where, problems) -> None:
    """Fields whose text must not have been written as a number or a boolean."""
    check_condition_types(s.preconditions, where, problems)
    for key in ("stdout", "stderr"):
        _typed(getattr(s, key), where(key), "a file name", problems)
    if type(s.continue_on) is ContinueOnSpec:
        out = s.continue_on.output
        if type(out) is list:
            for k, x in enumerate(out):
                _typed(x, where("continueOn", "output", k), "text", problems)
        else:
            _typed(out, where("continueOn", "output"), "text or a list", problems)
    p = s.parallel
    if type(p) is ParallelSpec:
        _typed(p.items, where("parallel", "items"), "text or a list", problems)
        _typed(p.file, where("parallel", "file"), "a file name", problems)
        _typed(p.command, where("parallel", "command"), "a command", problems)
        _typed(p.key, where("parallel", "key"), "an expression such as `${ITEM.id}`", problems)
    else:
        _typed(p, where("parallel"), "text, a list or a mapping", problems)


def _check_policies(s: StepSpec, where: Where, problems) -> None:
    """`retryPolicy` and `repeatPolicy` as written."""
    r = s.retry_policy
    if r is not None:
        w = lambda k: where("retryPolicy", k)  # noqa: E731
        _literal_integer(r.limit, "limit", w("limit"), problems)
        _literal_integer(r.interval_sec, "intervalSec", w("intervalSec"), problems)
        _literal_integer(r.max_interval_sec, "maxIntervalSec", w("maxIntervalSec"), problems)
        _backoff(r.backoff, w("backoff"), problems)
    r = s.repeat_policy
    if r is not None:
        w = lambda k: where("repeatPolicy", k)  # noqa: E731
        if r.condition is None and r.expected is not None:
            problems.add(w("expected"), "`expected` needs a `condition`")
        if r.repeat == "until" and r.condition is None and r.exit_code is None:
            problems.add(w("repeat"), "`repeat: until` needs a `condition` or an `exitCode`")
        if r.repeat is not False:
            _literal_integer(r.interval_sec, "intervalSec", w("intervalSec"), problems)
            _literal_integer(r.limit, "limit", w("limit"), problems)
            _literal_integer(r.max_interval_sec, "maxIntervalSec", w("maxIntervalSec"), problems)
            _backoff(r.backoff, w("backoff"), problems)


def _check_call(s: StepSpec, where: Where, problems):
    """`run`/`call` and the keys that cannot go with it; the sub-DAG called, or None."""
    call = s.call
    if s.run is not None:
        if call is not None:
            problems.add(where("run"), "give `run` or `call`, not both")
        call = s.run
    if call is not None:
        by = where("call" if s.run is None else "run")[-1]
        fanout = s.parallel is not None or s.matrix is not None
        for attr, key in _NOT_WITH_CALL:
            if attr == "retry_policy" and fanout:
                continue  # a fan-out step's retryPolicy applies to each of its items
            if getattr(s, attr) is not None:
                at = where(key)
                problems.add(at, f"`{at[-1]}` cannot be used with `{by}`: the step runs the "
                                 "sub-DAG, no process of its own", True)
    return call


def check_extra(s: StepSpec, where: Where, problems) -> None:
    """Every check of one step's extra keys that needs no variable: run before any
    `env` value is evaluated, so that a file refused runs none of its backticks."""
    output = s.output
    if type(output) is OutputSpec:
        output = output.name
    if output is not None and not _NAME.fullmatch(output.lstrip("$")):
        problems.add(where("output"), f"`{output.lstrip('$')}` is not a valid variable name")

    _check_policies(s, where, problems)
    _literal_integer(s.timeout_sec, "timeoutSec", where("timeoutSec"), problems)
    _literal_integer(s.delay_sec, "delaySec", where("delaySec"), problems)
    if s.signal_on_stop:
        _signal(s.signal_on_stop, where("signalOnStop"), problems)
    call = _check_call(s, where, problems)
    _check_types(s, where, problems)
    if s.parallel is not None or s.matrix is not None:
        _check_fanout(s, where, problems)
    if s.params is not None:
        if call is None:
            problems.add(where("params"), "`params` is only for `call`/`run` steps")
        try:
            parse(s.params)
        except ParamsError as e:
            problems.add(where("params"), str(e))
    out, err = s.stdout, s.stderr
    if out is not None and out == err and not has_references(out):
        problems.add(where("stderr"), "`stdout` and `stderr` name the same file")
    if s.resources:
        _resources(s.resources, where, problems)
    if s.outputs is not None:
        _check_outputs(s, where, problems)


def _check_fanout(s: StepSpec, where: Where, problems) -> None:
    """`parallel:` and `matrix:` as written: exactly one item source, a known format,
    the limits. (A fan-out step with nothing to run per item is `steps`' problem: it
    has no command.)"""
    p = s.parallel
    sources = []
    if type(p) is ParallelSpec:
        w = lambda k: where("parallel", k)  # noqa: E731
        _literal_integer(p.max_concurrent, "maxConcurrent", w("maxConcurrent"), problems)
        _literal_integer(p.max_items, "maxItems", w("maxItems"), problems, least=1)
        sources = [k for k in _SOURCES if getattr(p, k) is not None]
        for k in sources[1:]:
            problems.add(w(k), f"give one item source, not both `{sources[0]}` and `{k}`", True)
        for k in ("file", "command"):
            if getattr(p, k) is not None and not getattr(p, k).strip():
                problems.add(w(k), f"`{w(k)[-1]}` is empty")
        if p.format is not None:
            if p.file is None and p.command is None:
                problems.add(w("format"), "`format` is only for `file` or `command` items", True)
            elif p.format not in FORMATS:
                choices = ", ".join(f"`{f}`" for f in FORMATS[:-1]) + f" or `{FORMATS[-1]}`"
                problems.add(w("format"), f"expected {choices}, got {got(p.format)}")
    elif p is not None:
        sources = ["items"]  # `parallel: ${VAR}` or `parallel: [...]`
    # A literal maxItems is checked here, so that a file refused runs none of its
    # backticks; one written as `${VAR}` waits for `_fanout`.
    most = _literal_max_items(p)
    if s.matrix is None:
        if not sources:
            problems.add(where("parallel"), "`parallel` has no items: give `items`, `file` or "
                                            "`command` (or a `matrix` on the step)")
        elif most:
            _check_count(s, None, most, where, problems)
        return
    if sources:
        problems.add(where("matrix"), "`matrix` gives the items, and so does `parallel`: "
                                      "beside `matrix`, `parallel` takes only "
                                      "`maxConcurrent`, `maxItems` and `key`", True)
    m = matrices.build(s.matrix, where, problems)
    if m is not None and most:
        _check_count(s, m, most, where, problems)


def _literal_max_items(p) -> int:
    """`maxItems` when it is written as a valid number (or left out), else 0."""
    value = p.max_items if type(p) is ParallelSpec else _MAX_ITEMS
    if type(value) is str and has_references(value):
        return 0
    n = check_integer(value, "maxItems", (), _Ignored(), least=1)
    return n or 0


class _Ignored:
    """A problems sink for a check already reported elsewhere."""

    def add(self, *_) -> None:
        pass


def _check_count(s: StepSpec, m, most: int, where: Where, problems) -> None:
    """More items written (a list, or the matrix's combinations) than `maxItems`."""
    if m is not None:
        n = matrices.count(m)
        if n is not None and n > most:
            problems.add(where("matrix"), f"{n:,} combinations, over maxItems ({most:,})", True)
        return
    p = s.parallel
    items = p.items if type(p) is ParallelSpec else p
    if type(items) is list and len(items) > most:
        at = where("parallel", "items") if type(p) is ParallelSpec else where("parallel")
        problems.add(at, f"{len(items):,} items, over maxItems ({most:,})")


def _check_outputs(s: StepSpec, where: Where, problems) -> None:
    """Dagu 2.x `outputs:`: a non-empty list of names, each once, on a step with an id."""
    if not s.outputs:
        problems.add(where("outputs"), "`outputs` is empty: list the names the step writes")
    if s.id is None:
        problems.add(where("outputs"), "a step with `outputs` needs an `id` (later steps read "
                                       "`${steps.ID.outputs.NAME}`)", True)
    seen: set[str] = set()
    for k, item in enumerate(s.outputs):
        at = where("outputs", k, "name")
        if not _OUTPUT_NAME.fullmatch(item.name):
            problems.add(at, f"`{item.name}` is not an output name (a letter, then letters, "
                             "digits or `_`)")
        elif item.name in seen:
            problems.add(at, f"duplicate output name `{item.name}`")
        seen.add(item.name)


def build_extra(
    s: StepSpec, where: Where, scope: Mapping[str, str], step_dir: str, problems, known=None
) -> StepExtra:
    """The StepExtra of one step, once `check_extra` passed for the whole file; it
    reports only what needed `scope` (integers and file names written with variables).
    `known(text)`: whether an expanded value is what a run would see (see `integer`)."""
    num = partial(integer, scope=scope, problems=problems, known=known)
    output = s.output
    if type(output) is OutputSpec:
        output = output.name
    if output is not None:
        output = output.lstrip("$")

    call = s.run if s.run is not None else s.call
    params = parse(s.params) if s.params is not None else ()
    files = []
    for key in ("stdout", "stderr"):
        value = getattr(s, key)
        if value is not None:
            try:
                value = expand(value, scope) if has_references(value) else value
            except ExpandError as e:
                problems.add(where(key), str(e))
            value = os.path.normpath(os.path.join(step_dir, os.path.expanduser(value)))
        files.append(value)
    if files[0] is not None and files[0] == files[1]:
        problems.add(where("stderr"), "`stdout` and `stderr` name the same file")

    return StepExtra(
        output=output,
        continue_on=_continue_on(s.continue_on),
        retry=_retry(s.retry_policy, where, num, problems) if s.retry_policy is not None else None,
        repeat=_repeat(s.repeat_policy, where, num, problems) if s.repeat_policy is not None else None,
        preconditions=conditions(s.preconditions),
        timeout_sec=num(s.timeout_sec, "timeoutSec", where("timeoutSec")),
        delay_sec=num(s.delay_sec, "delaySec", where("delaySec")),
        signal_on_stop=(
            _signal(s.signal_on_stop, where("signalOnStop"), problems) if s.signal_on_stop else 0
        ),
        call=call,
        params=params,
        parallel=_fanout(s, where, num, problems) if _fans_out(s) else None,
        stdout=files[0],
        stderr=files[1],
        resources=_resources(s.resources, where, problems) if s.resources else (),
        outputs=tuple((o.name, o.type) for o in s.outputs) if s.outputs else (),
    )


def _continue_on(cont) -> ContinueOn | None:
    if type(cont) is str:
        return ContinueOn(skipped=True) if cont == "skipped" else ContinueOn(failure=True)
    if type(cont) is ContinueOnSpec:
        out = cont.output
        return ContinueOn(
            cont.failure, cont.skipped, _codes(cont.exit_code),
            () if out is None else ((out,) if type(out) is str else tuple(out)),
            cont.mark_success,
        )  # fmt: skip
    return None


def _retry(r, where: Where, num, problems) -> Retry:
    w = lambda k: where("retryPolicy", k)  # noqa: E731
    return Retry(
        num(r.limit, "limit", w("limit")),
        num(r.interval_sec, "intervalSec", w("intervalSec")),
        _codes(r.exit_code),
        _backoff(r.backoff, w("backoff"), problems),
        num(r.max_interval_sec, "maxIntervalSec", w("maxIntervalSec")),
    )


def _repeat(r, where: Where, num, problems) -> Repeat | None:
    w = lambda k: where("repeatPolicy", k)  # noqa: E731
    mode = r.repeat
    if mode is True:
        mode = "while"
    elif mode is False:
        return None
    cond = None if r.condition is None else Condition(r.condition, r.expected)
    return Repeat(
        mode, cond, _codes(r.exit_code),
        num(r.interval_sec, "intervalSec", w("intervalSec")),
        num(r.limit, "limit", w("limit")),
        _backoff(r.backoff, w("backoff"), problems),
        num(r.max_interval_sec, "maxIntervalSec", w("maxIntervalSec")),
    )  # fmt: skip


def _fans_out(s: StepSpec) -> bool:
    """Whether the step fans out (`parallel:` or `matrix:`)."""
    return s.parallel is not None or s.matrix is not None


def _fanout(s: StepSpec, where: Where, num, problems) -> Fanout:
    """The Fanout of a step that `_check_fanout` passed. `file` and `command` stay as
    written (`${VAR}` and all): the run expands them when the step starts."""
    p = s.parallel
    opts = {}
    m = matrices.build(s.matrix, where, problems) if s.matrix is not None else None
    if type(p) is ParallelSpec:
        w = lambda k: where("parallel", k)  # noqa: E731
        opts["max_concurrent"] = num(p.max_concurrent, "maxConcurrent", w("maxConcurrent")) or 10
        most = num(p.max_items, "maxItems", w("maxItems"), least=1)
        if most and not _literal_max_items(p):  # written as `${VAR}`: checked only now
            _check_count(s, m, most, where, problems)
        opts.update(max_items=most or _MAX_ITEMS, file=p.file, command=p.command,
                    format=p.format or "", key=p.key)
        p = p.items
    if m is not None:
        return Fanout(matrix=m, **opts)
    if p is None:
        return Fanout(**opts)
    if type(p) is str:
        return Fanout(expr=p, **opts)
    items = tuple(
        {k: "" if v is None else str(v) for k, v in x.items()} if type(x) is dict else x
        for x in p
    )
    return Fanout(items, **opts)


def _resources(value: dict, where: Where, problems) -> tuple[tuple[str, float], ...]:
    """`resources:` as (name, amount) pairs: numbers as written (`4e9` too), sizes such
    as `4GB` (for `memory`, in bytes) read as Dask reads them."""
    out = []
    for name, amount in value.items():
        at = where("resources", name)
        if not _RESOURCE.fullmatch(name):
            problems.add(at, f"`{name}` is not a resource name (letters, digits, `_`, `.`, `-`)",
                         True)
            continue
        if type(amount) is str and re.fullmatch(r"\s*[0-9]+(\.[0-9]*)?[eE][+-]?[0-9]+\s*", amount):
            amount = float(amount)  # `4e9`: YAML reads it as a string, Dask as a number
        if type(amount) is str:
            m = _SIZE.fullmatch(amount)
            unit = m.group(2).lower() if m else ""
            unit = unit[:-1] if unit.endswith("b") else unit
            if m is None or unit not in _UNITS:
                problems.add(at, f"`{amount}` is not an amount: expected a number >= 0 or a "
                                 "size such as `4GB` or `512MiB`")
                continue
            amount = float(m.group(1)) * _UNITS[unit]
        if amount < 0:
            problems.add(at, f"`{amount:g}` is not an amount: expected a number >= 0")
            continue
        out.append((name, float(amount)))
    return tuple(out)
