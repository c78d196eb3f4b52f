"""`schedule:` expressions, on top of croniter: when a DAG's next and previous ticks are.

An expression is five cron fields (`"*/5 * * * *"`), or six whose last is seconds
(`"* * * * * */2"`: every two seconds), or a croniter nickname (`@hourly`), optionally
after `CRON_TZ=Zone ` (or `TZ=Zone `); without one, the local time zone applies.
croniter is imported only here, and this module only by the scheduler.
"""

from __future__ import annotations

import ast
import os
from datetime import datetime, tzinfo

from .errors import DagfastError

__all__ = ["Cron", "ScheduleError", "parse", "parse_all"]


class ScheduleError(DagfastError):
    """A `schedule` entry that is not a cron expression we can run."""

    def __init__(self, expr: str, why: str) -> None:
        super().__init__(expr, why)
        self.expr = expr
        self.why = why

    def __str__(self) -> str:
        return f"{self.why}: `{self.expr}` - at `$.schedule`"


class Cron:
    """One parsed expression; times are unix seconds."""

    __slots__ = ("expr", "fields", "tz")

    def __init__(self, expr: str, fields: str, tz: tzinfo | None) -> None:
        self.expr = expr
        self.fields = fields
        self.tz = tz

    def next(self, after: float) -> float:
        """The first tick strictly after `after`."""
        return self._iter(after).get_next(float)

    def prev(self, before: float) -> float:
        """The last tick strictly before `before`."""
        return self._iter(before).get_prev(float)

    def _iter(self, at: float):
        from croniter import croniter

        return croniter(self.fields, datetime.fromtimestamp(at, self.tz or _local_zone()))

    def __repr__(self) -> str:
        return f"Cron({self.expr!r})"


def parse(expr: str) -> list[Cron]:
    """The expressions in one `schedule` entry (a `start:` entry of the map form may
    hold a list); ScheduleError when one is not valid."""
    from croniter import croniter

    text = expr.strip()
    key, sep, rest = text.partition(":")
    if sep and key.strip() in ("start", "stop", "restart") and not key.strip().startswith("@"):
        if key.strip() != "start":
            raise ScheduleError(expr, f"`schedule.{key.strip()}` is not supported yet")
        rest = rest.strip()
        items = ast.literal_eval(rest) if rest.startswith("[") else [rest]
        return [c for item in items for c in parse(str(item))]
    tz = None
    if text.startswith(("CRON_TZ=", "TZ=")):
        zone, _, text = text.partition("=")[2].partition(" ")
        tz = _zone(expr, zone)
        text = text.strip()
    if not croniter.is_valid(text):
        raise ScheduleError(expr, "not a cron expression")
    return [Cron(expr, text, tz)]


def parse_all(exprs: tuple[str, ...]) -> list[Cron]:
    """Every expression of a DAG's `schedule`, parsed; the first invalid one raises."""
    return [c for e in exprs for c in parse(e)]


def _zone(expr: str, name: str) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(expr, f"unknown time zone `{name}`") from None


def _local_zone() -> tzinfo:
    """The local zone as an IANA zone when it can be found (so that daylight saving
    moves ticks right), else the current fixed offset."""
    from zoneinfo import ZoneInfo

    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            target = os.path.realpath("/etc/localtime")
            name = target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else ""
        except OSError:
            name = ""
    if name:
        try:
            return ZoneInfo(name)
        except Exception:  # an unknown or malformed TZ: fall back to the offset
            pass
    return datetime.now().astimezone().tzinfo
