"""`schedule:` expressions, on top of croniter: when a DAG's next and previous ticks are.

An expression is five cron fields (`"*/5 * * * *"`), or six whose last is seconds
(`"* * * * * */2"`: every two seconds), or a croniter nickname (`@hourly`), optionally
after `CRON_TZ=Zone ` (or `TZ=Zone `); without one, the local time zone applies. One that
never matches (`0 0 30 2 *`) is refused. The list and map forms of `schedule` are walked
by the loader, which parses each expression alone (so an error names its entry).
croniter is imported only here, and this module only by the loader and the scheduler.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, tzinfo

from dagfast.errors import ScheduleError  # raised here; defined with the others

__all__ = ["Cron", "ScheduleError", "parse", "parse_all"]


class Cron:
    """One parsed expression; times are unix seconds."""

    __slots__ = ("expr", "fields", "tz")

    def __init__(self, expr: str, fields: str, tz: tzinfo | None) -> None:
        self.expr = expr
        self.fields = fields
        self.tz = tz

    def next(self, after: float) -> float:
        """The first tick strictly after `after`; ScheduleError if there is none."""
        try:
            return self._iter(after).get_next(float)
        except (ValueError, OverflowError):  # CroniterBadDateError is a ValueError
            raise ScheduleError(self.expr, f"no date after {_iso(after)}") from None

    def prev(self, before: float) -> float:
        """The last tick strictly before `before`; ScheduleError if there is none."""
        try:
            return self._iter(before).get_prev(float)
        except (ValueError, OverflowError):
            raise ScheduleError(self.expr, f"no date before {_iso(before)}") from None

    def _iter(self, at: float):
        from croniter import croniter  # start-up speed: only scheduled DAGs pay for it

        return croniter(self.fields, datetime.fromtimestamp(at, self.tz or _local_zone()))

    def __repr__(self) -> str:
        return f"Cron({self.expr!r})"


def parse(expr: str) -> Cron:
    """One `schedule` expression, parsed; ScheduleError when it is not one we can run
    (not 5 or 6 fields nor a nickname, invalid, an unknown zone, or never matching)."""
    from croniter import croniter  # start-up speed: only scheduled DAGs pay for it

    text = expr.strip()
    tz = None
    if text.startswith(("CRON_TZ=", "TZ=")):
        zone, _, text = text.partition("=")[2].partition(" ")
        tz = _zone(expr, zone)
        text = text.strip()
    if not croniter.is_valid(text):
        raise ScheduleError(expr, "not a cron expression")
    n = len(text.split())
    if n not in (5, 6) and not (n == 1 and text.startswith("@")):
        # croniter reads a 7th field as a year
        raise ScheduleError(expr, f"not a cron expression ({n} fields, not 5 or 6)")
    cron = Cron(expr, text, tz)
    try:
        cron.next(time.time())
    except ScheduleError:  # `0 0 30 2 *` is valid for croniter, yet never comes
        raise ScheduleError(expr, "never matches a date") from None
    return cron


def parse_all(exprs: tuple[str, ...]) -> list[Cron]:
    """Every expression of a DAG's `schedule`, parsed; the first invalid one raises."""
    return [parse(e) for e in exprs]


def _iso(t: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))
    except (ValueError, OverflowError):
        return repr(t)


def _zone(expr: str, name: str) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # start-up speed: zones on use

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(expr, f"unknown time zone `{name}`") from None


def _local_zone() -> tzinfo:
    """The local zone as an IANA zone when it can be found (so that daylight saving
    moves ticks right), else the current fixed offset."""
    from zoneinfo import ZoneInfo  # start-up speed: zones on use

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
