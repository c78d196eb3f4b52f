"""Conversion: the plain YAML tree -> the spec Structs (`spec.py`), with msgspec's
errors turned into problems at the user's own paths and key spellings.

A valid file converts in one msgspec call. Only when that fails are the keys checked
mapping by mapping (unknown keys, aliases, keys not supported yet) and the fields
converted one by one, so that every problem is reported at once.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec.structs import replace

from dagfast.loader.problems import Problems, did_you_mean, got, type_words
from dagfast.loader.spec import (
    ALIASES, DAG_TYPES, NESTED, STEP_EXECUTORS, SUPPORTED, DagSpec, SecretSpec, StepSpec,
)
from dagfast.loader.tree import Path

__all__ = ["Steps", "convert", "explain", "normalize"]

_MSGSPEC_PATH = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_STEPS_TYPE = list[StepSpec | str | None]
_CHOICES = {
    "type": " or ".join(f"`{t}`" for t in DAG_TYPES),
    "stepExecutor": " or ".join(f"`{t}`" for t in STEP_EXECUTORS),
    "continueOn": "`failure`, `skipped` or a mapping",
    "repeat": "`true`, `false`, `while` or `until`",
}
"""What a key written with a wrong word takes (msgspec says only "Invalid enum value")."""
_MISSING = re.compile(r"Object missing required field `([^`]*)`")
_EXPECTED = re.compile(r"Expected `([^`]*)`([^,]*)(?:, got `[^`]*`)?")


class Steps:
    """The steps after conversion, and how to name their paths in messages."""

    __slots__ = ("key", "keys", "specs", "spell", "incomplete", "featured", "step_refs")

    def __init__(self, key: str, keys: list[str] | None) -> None:
        self.key = key  # the user's spelling of `steps`
        self.keys = keys  # the mapping keys, when steps were written as a mapping
        self.specs: list[StepSpec] = []
        self.spell: list[dict[str, str] | None] | None = None
        self.incomplete: set[int] = set()  # steps whose problems are already reported
        self.featured: list[int] = []  # steps with extra keys (`stepopts.featured`)
        self.step_refs = False  # the text holds `${steps.…}` (Dagu 2.x output references)

    def path(self, i: int, *rest: str | int) -> Path:
        """The path of step `i` (and of `rest` in it), with the user's key spellings."""
        head = self.keys[i] if self.keys is not None else i
        if rest and self.spell is not None and self.spell[i] is not None:
            said = self.spell[i].get(rest[0], rest[0])
            rest = (said if type(said) is tuple else (said,)) + rest[1:]
        return (self.key, head) + rest

    def respell(self, renamed: dict) -> None:
        """Keys the loader rewrote (a 2.x `run:` read as `command`, `with.dag` as `call`)
        are named in messages as the user wrote them: `renamed[("steps", i)]` maps a
        canonical key to the user's key path."""
        n = len(self.specs)
        index = {k: i for i, k in enumerate(self.keys)} if self.keys is not None else {}
        for at, keys in renamed.items():
            i = index.get(at[1]) if type(at[1]) is str else at[1]
            if at[0] != "steps" or i is None or i >= n or not keys:
                continue
            if self.spell is None:
                self.spell = [None] * n
            spelled = dict(self.spell[i] or {})
            spelled.update(keys)
            self.spell[i] = spelled


def convert(tree: dict, problems: Problems) -> tuple[DagSpec, dict[str, str], Steps]:
    """The header as a DagSpec (its `steps` taken apart), the user's key spellings
    (empty when every key is canonical), and the converted steps."""
    try:
        spec = msgspec.convert(tree, DagSpec, strict=False)
    except msgspec.ValidationError:
        return _convert_slowly(tree, problems)
    raw = spec.steps
    steps = Steps("steps", list(raw) if type(raw) is dict else None)
    steps.specs = list(raw.values()) if type(raw) is dict else (raw or [])
    return spec, {}, steps


def _convert_slowly(tree: dict, problems: Problems):
    """Check the keys of every mapping, then convert field by field: every problem."""
    norm, dag_spell, _ = normalize(tree, "dag", (), problems)
    raw_steps = norm.pop("steps", None)
    raw_secrets = norm.pop("secrets") if type(norm.get("secrets")) is list else None
    header = _convert_fields(norm, DagSpec, (), dag_spell, problems)
    if raw_secrets is not None:
        key = dag_spell.get("secrets", "secrets")
        header = replace(header, secrets=_convert_secrets(raw_secrets, key, problems))
    steps, items = _step_items(raw_steps, dag_spell.get("steps", "steps"), problems)
    steps.specs = _convert_steps(steps, items, problems)
    return header, dag_spell, steps


def _step_items(raw, key: str, problems: Problems) -> tuple[Steps, list]:
    """The steps as written (a list, or a mapping keyed by name), as a list."""
    if type(raw) is dict:
        return Steps(key, list(raw)), list(raw.values())
    if type(raw) is list:
        return Steps(key, None), raw
    if raw is not None:
        problems.add((key,), f"expected a list or a mapping, got {got(raw)}")
    return Steps(key, None), []


def _convert_steps(steps: Steps, items: list, problems: Problems) -> list:
    """Each step's keys normalised, then all converted at once, or one by one when
    that fails; a step with a problem is noted in `steps.incomplete`."""
    steps.spell = spell_list = [None] * len(items)
    norm_items: list[Any] = []
    for i, item in enumerate(items):
        if type(item) is dict:
            item, spell, left_out = normalize(item, "step", steps.path(i), problems)
            spell_list[i] = spell
            if left_out:
                steps.incomplete.add(i)
        elif type(item) is list:
            problems.add(
                steps.path(i), "a nested list of steps (a parallel group) is not supported yet"
            )
            steps.incomplete.add(i)
            item = None
        norm_items.append(item)
    try:
        return msgspec.convert(norm_items, _STEPS_TYPE, strict=False)
    except msgspec.ValidationError:
        pass
    specs = []
    for i, item in enumerate(norm_items):
        if type(item) is dict:
            before = len(problems)
            specs.append(_convert_fields(item, StepSpec, steps.path(i), spell_list[i], problems))
            if len(problems) > before:
                steps.incomplete.add(i)
        else:
            specs.append(item)
    return specs


def _convert_secrets(raw: list, key: str, problems: Problems) -> list[SecretSpec | None]:
    """Each `secrets:` entry alone, so that every broken one is reported (None in its
    place); those that convert are checked further by `header.secrets`."""
    out: list[SecretSpec | None] = []
    for i, item in enumerate(raw):
        if type(item) is dict:
            item = normalize(item, "secret", (key, i), problems)[0]
        try:
            out.append(msgspec.convert(item, SecretSpec, strict=False))
        except msgspec.ValidationError as e:
            rel, message = explain(str(e), item)
            problems.add((key, i) + rel, message)
            out.append(None)
    return out


def normalize(mapping: dict, kind: str, path: Path, problems: Problems):
    """The mapping with canonical keys (unknown and unsupported ones reported and left
    out), the user's spelling of each key, and whether any key was left out (then a
    step's "nothing to run" would only repeat the problem: `run:`, `comand:`)."""
    aliases = ALIASES[kind]
    supported = SUPPORTED[kind]
    norm: dict[str, Any] = {}
    spell: dict[str, str] = {}
    left_out = False
    for key, value in mapping.items():
        canon = aliases.get(key)
        if canon is None:
            left_out = True
            hint = did_you_mean(key, aliases)
            problems.add(path + (key,), f"unknown key `{key}`{hint}", True)
        elif canon in spell:
            problems.add(
                path + (key,), f"`{key}` is the same key as `{spell[canon]}`; give it once", True
            )
        elif canon not in supported:
            spell[canon] = key
            problems.add(path + (key,), f"`{key}` is not supported yet", True)
            left_out = True
        else:
            spell[canon] = key
            if canon in NESTED and type(value) in (list, dict):
                value, nested_left_out = _normalize_nested(canon, value, path + (key,), problems)
                left_out = left_out or nested_left_out
            norm[canon] = value
    return norm, spell, left_out


def _normalize_nested(canon: str, value, path: Path, problems: Problems):
    """A nested mapping (or, for `preconditions`, each mapping of its list) with its
    own keys normalised: they have snake_case spellings too (`continue_on: {exit_code}`)."""
    kind = NESTED[canon]
    if type(value) is list:
        items = []
        left_out = False
        for i, item in enumerate(value):
            if type(item) is dict:
                item, _, item_left_out = normalize(item, kind, path + (i,), problems)
                left_out = left_out or item_left_out
            items.append(item)
        return items, left_out
    value, _, left_out = normalize(value, kind, path, problems)
    if canon == "handlerOn":
        value = {
            k: normalize(v, "step", path + (k,), problems)[0] if type(v) is dict else v
            for k, v in value.items()
        }
    return value, left_out


def _convert_fields(
    norm: dict, cls: type, path: Path, spell: dict[str, str] | None, problems: Problems
):
    """`cls` from `norm`; on failure each field alone, reporting each one that fails."""
    try:
        return msgspec.convert(norm, cls, strict=False)
    except msgspec.ValidationError:
        pass
    good = {}
    for key, value in norm.items():
        try:
            msgspec.convert({key: value}, cls, strict=False)
        except msgspec.ValidationError as e:
            rel, message = explain(str(e), norm)
            if rel and spell:
                rel = (spell.get(rel[0], rel[0]),) + rel[1:]
            problems.add(path + rel, message)
        else:
            good[key] = value
    return msgspec.convert(good, cls, strict=False)


def explain(text: str, raw: Any) -> tuple[Path, str]:
    """A msgspec message as a path and a message that shows the value as written."""
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        return (), _in_words(text, [], raw)
    rel: list[str | int] = []
    for m in _MSGSPEC_PATH.finditer(where.rstrip("`"), 1):
        if m.group(1) is not None:
            rel.append(m.group(1))
        elif m.group(2) is not None:
            rel.append(int(m.group(2)))
        else:
            break  # `[...]`: a mapping value whose key msgspec does not say
    value = raw
    for part in rel:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            value = None
            break
    return tuple(rel), _in_words(message, rel, value)


def _in_words(message: str, rel: list, value: Any) -> str:
    """msgspec's "Expected `str | null`, got `array`" as "expected text, got a list"."""
    if message.startswith("Invalid enum value") and rel and rel[-1] in _CHOICES:
        return f"expected {_CHOICES[rel[-1]]}, got {got(value)}"
    m = _EXPECTED.fullmatch(message)
    if m is None:
        missing = _MISSING.fullmatch(message)
        return f"`{missing.group(1)}` is missing" if missing else message
    if rel and rel[-1] == "depends":
        expect = "a step name or a list of them"
    elif len(rel) > 1 and rel[-2] == "depends":
        expect = "a step name"
    else:
        expect = type_words(m.group(1)) + m.group(2)
    return f"expected {expect}, got {got(value)}"
