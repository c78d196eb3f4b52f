"""The DAG-level keys (the header): shell, integer keys, schedule, handlers, secrets,
dotenv files and the cluster settings, each checked as written and built for the model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from msgspec import UNSET
from msgspec.structs import replace

import dagfast.loader.tree as yamlsrc
import dagfast.loader.files as files
from dagfast.loader.convert import Steps
from dagfast.loader.evaluate import ENV_NAME, Evaluator
from dagfast.loader.expand import has_references
from dagfast.loader.integers import MAX_INT, MOST, integer
from dagfast.loader.problems import Problems, name_problem, show
from dagfast.loader.shellcmd import shell_words_or_report
from dagfast.loader.spec import INT_KEYS, DagSpec
from dagfast.loader.tree import Path
from dagfast.model import Secret

__all__ = [
    "NAME_MAX", "check_cluster", "cluster", "dag_shell", "dotenv", "handler_steps", "integers",
    "located_secrets", "name", "schedule", "secrets",
]  # fmt: skip

SECRET_PROVIDERS = ("env", "file")
_DAGFAST_VARS = frozenset(("DAG_NAME", "DAG_RUN_ID", "DAG_RUN_STEP_NAME"))
_ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://(\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+):[0-9]{1,5}")
_ATTRS = {
    "maxActiveSteps": "max_active_steps", "maxActiveRuns": "max_active_runs",
    "timeoutSec": "timeout_sec", "delaySec": "delay_sec",
    "maxCleanUpTimeSec": "max_clean_up_time_sec", "maxOutputSize": "max_output_size",
    "histRetentionRuns": "hist_retention_runs", "histRetentionDays": "hist_retention_days",
}  # fmt: skip


NAME_MAX = 255
"""Bytes in a DAG name: its runs are kept in a directory of that name (`records`)."""


def name(header: DagSpec, spell: dict[str, str], problems: Problems) -> None:
    """The DAG's `name`, if it gives one, must fit in a directory name and one line."""
    if not header.name:
        return
    where = (spell.get("name", "name"),)
    size = len(header.name.encode("utf-8", "surrogatepass"))
    if size > NAME_MAX:
        problems.add(where, f"the name is {size:,} bytes long; a DAG name takes at most "
                            f"{NAME_MAX} (its runs are kept in a directory of that name)")
    why = name_problem(header.name)
    if why is not None:
        problems.add(where, why)


def integers(header: DagSpec, spell: dict[str, str], problems: Problems):
    """The DAG's integer keys: those written as numbers checked now (key -> int), those
    written as `${VAR}` kept to expand after the env (key -> (text, where, bound))."""
    values: dict[str, int] = {}
    exprs: dict[str, tuple[str, Path, int]] = {}
    for key in INT_KEYS["dag"]:
        value = getattr(header, _ATTRS[key])
        if type(value) is int:
            values[key] = value  # the default
            continue
        where = (spell.get(key, key),)
        most = MOST.get(key, MAX_INT)
        if type(value) is str and has_references(value):
            exprs[key] = (value, where, most)
        else:
            values[key] = integer(value, where[0], where, problems, most=most) or 0
    return values, exprs


def dag_shell(
    header: DagSpec, spell: dict[str, str], environ: Mapping[str, str], problems: Problems
):
    """The shell words steps use unless they set their own."""
    if header.shell is not None:
        words = shell_words_or_report(header.shell, (spell.get("shell", "shell"),), problems)
        return words or ("sh",)
    # $SHELL when it names a program we can run (not a login shell set to a path that no
    # longer exists), else sh.
    default = environ.get("SHELL")
    if (default and os.path.isabs(default) and os.access(default, os.X_OK)
            and not os.path.isdir(default)):
        return (default,)
    return ("sh",)


def schedule(header: DagSpec, spell: dict[str, str], problems: Problems) -> tuple[str, ...]:
    """`schedule`: one expression, a list, or a map whose `start` holds one or a list;
    each is parsed alone, so that an error names its entry (`$.schedule.start[1]`).
    Only DAGs that have one import the cron library. The model keeps them, flat."""
    at = spell.get("schedule", "schedule")
    entries: list[tuple[Path, str]] = []
    if type(header.schedule) is str:
        entries.append(((at,), header.schedule))
    elif type(header.schedule) is list:
        entries.extend(((at, i), e) for i, e in enumerate(header.schedule))
    elif type(header.schedule) is dict:
        for key, value in header.schedule.items():
            if key in ("stop", "restart"):
                problems.add((at, key), f"`{at}.{key}` is not supported yet", True)
            elif key != "start":
                problems.add((at, key), f"`{show(key)}` is not a key of `{at}` (start, "
                             "stop or restart)", True)
            elif type(value) is str:
                entries.append(((at, key), value))
            else:
                entries.extend(((at, key, i), e) for i, e in enumerate(value))
    if entries:
        from dagfast.loader.cron import ScheduleError, parse  # start-up speed: croniter

        for where, expr in entries:
            try:
                parse(expr)
            except ScheduleError as e:
                problems.add(where, f"{e.why}: `{show(e.expr)}`")
    return tuple(expr for _, expr in entries)


def handler_steps(header: DagSpec, spell: dict[str, str], problems: Problems):
    """The `handlerOn` steps as Steps keyed by event (`cancel` is `abort`)."""
    h = header.handler_on
    if h is None:
        return None
    key = spell.get("handlerOn", "handlerOn")
    if h.abort is not None and h.cancel is not None:
        problems.add((key, "cancel"), "`cancel` is the same handler as `abort`; give it once")
    kinds, specs = [], []
    for kind in ("init", "success", "failure", "abort", "exit"):
        s = getattr(h, kind)
        if kind == "abort" and s is None:
            s = h.cancel
        if s is None:
            continue
        if s.depends is not UNSET:
            problems.add((key, kind, "depends"), "a handler runs on its own; it has no `depends`")
        kinds.append(kind)
        specs.append(replace(s, name=None, depends=UNSET))
    steps = Steps(key, kinds)
    steps.specs = specs
    return steps


def secrets(header: DagSpec, spell: dict[str, str], problems: Problems) -> list:
    """The `secrets:` entries, checked (names, providers, keys), as (index, entry);
    nothing is read."""
    key = spell.get("secrets", "secrets")
    first: dict[str, int] = {}
    out = []
    for i, s in enumerate(header.secrets):
        if s is None:
            continue  # it did not convert: already reported
        out.append((i, s))
        if not ENV_NAME.fullmatch(s.name):
            problems.add(
                (key, i, "name"), f"`{show(s.name)}` is not a valid environment variable name"
            )
        elif s.name in _DAGFAST_VARS:
            problems.add((key, i, "name"), f"`{s.name}` is set by dagfast for every step")
        elif s.name in first:
            problems.add(
                (key, i, "name"),
                f"duplicate secret name `{s.name}` (first at `$.{key}[{first[s.name]}]`)",
            )
        else:
            first[s.name] = i
        if s.provider not in SECRET_PROVIDERS:
            problems.add(
                (key, i, "provider"),
                f"secret provider `{show(s.provider)}` is not supported yet "
                "(dagfast has `env` and `file`)",
            )
        if not s.key:
            problems.add((key, i, "key"), "`key` is empty")
        elif s.provider == "env" and "=" in s.key:
            problems.add((key, i, "key"), f"`{show(s.key)}` is not an environment variable name")
    return out


def located_secrets(specs, spell: dict[str, str], problems: Problems) -> tuple[Secret, ...]:
    """The model's Secrets, each with where its `key` is (`file:line:col`), so that a
    secret that cannot be read when the run starts is reported as a load error is."""
    key = spell.get("secrets", "secrets")
    places = problems.places([(key, i, "key") for i, _ in specs])
    return tuple(Secret(s.name, s.provider, s.key, where) for (_, s), where in zip(specs, places))


def cluster(header: DagSpec, spell, scope, cwd: str, ev: Evaluator) -> tuple[str, str, str]:
    """`stepExecutor`, `daskScheduler` (variables expanded) and `daskSharedDir` (an
    absolute directory; a relative one is the DAG's directory's)."""
    kind = header.step_executor or ""
    address = shared = ""
    if header.dask_scheduler is not None:
        where = (spell.get("daskScheduler", "daskScheduler"),)
        text = ev.text(header.dask_scheduler, scope, cwd, where)
        if text is not None:
            address = text.strip()
            if kind == "dask" and ev.known(address):  # else check_cluster says so
                _check_address(address, where, ev.problems)
    if header.dask_shared_dir is not None:
        where = (spell.get("daskSharedDir", "daskSharedDir"),)
        shared = ev.directory(cwd, header.dask_shared_dir, scope, where)
        if kind == "dask" and ev.known(shared) and not os.path.isdir(shared):  # logs go there
            why = "not a directory" if os.path.exists(shared) else "no such directory"
            ev.problems.add(where, f"`{show(header.dask_shared_dir)}`: {why}")
    return kind, address, shared


def _check_address(address: str, where: Path, problems: Problems) -> None:
    if address == "":  # an unset variable must not mean "a LocalCluster here"
        problems.add(where, f"`{where[0]}` is empty after expansion; expected an "
                            "address such as tcp://10.0.0.5:8786")
    elif not _ADDRESS.fullmatch(address):
        problems.add(where, f"`{show(address)}` is not a Dask scheduler address: "
                            "expected scheme://host:port, such as tcp://10.0.0.5:8786")


def check_cluster(header: DagSpec, spell, problems: Problems) -> None:
    """`daskScheduler` and `daskSharedDir` are only for `stepExecutor: dask`."""
    if header.step_executor == "dask":
        return
    needs = f"`{spell.get('stepExecutor', 'stepExecutor')}: dask`"
    for key, value in (("daskScheduler", header.dask_scheduler),
                       ("daskSharedDir", header.dask_shared_dir)):
        if value is not None:
            where = (spell.get(key, key),)
            problems.add(where, f"`{where[0]}` is for {needs}")


def dotenv(value, cwd: str, where: Path, problems: Problems) -> list:
    """The entries of the dotenv file(s), `NAME=value` lines, as env entries. Each is
    read as a DAG file is: a regular file, within `tree.MAX_BYTES`, in UTF-8."""
    names = [value] if type(value) is str else value
    out = []
    for k, name in enumerate(names):
        at = where if type(value) is str else where + (k,)
        text = _dotenv_text(name, os.path.join(cwd, os.path.expanduser(name)), at, problems)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[7:].lstrip()
            key, sep, val = line.partition("=")
            key, val = key.strip(), val.strip()
            if not sep or not ENV_NAME.fullmatch(key):
                problems.add(at, f"`{show(line)}` in `{name}` is not `NAME=value`")
                continue
            if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
                val = val[1:-1]
            out.append((key, val, at))
    return out


def _dotenv_text(name: str, path: str, at: Path, problems: Problems) -> str:
    """The text of one dotenv file, or "" with the reason it cannot be used reported."""
    try:
        data = files.read(path, yamlsrc.MAX_BYTES)
    except OSError as e:
        problems.add(at, f"cannot read the dotenv file `{name}`: {e.strerror}")
        return ""
    if len(data) > yamlsrc.MAX_BYTES:
        problems.add(at, f"the dotenv file `{name}` is larger than "
                         f"{yamlsrc.MAX_BYTES // (1024 * 1024)} MiB")
        return ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        problems.add(at, f"the dotenv file `{name}` is not UTF-8 "
                         f"(byte 0x{data[e.start]:02x}, line {line})")
        return ""
    nul = text.find("\0")
    if nul >= 0:  # no process can receive it
        line = text.count("\n", 0, nul) + 1
        problems.add(at, f"the dotenv file `{name}` holds a NUL character (`\\0`) on line {line}")
        return ""
    return text
