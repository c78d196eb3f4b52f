"""Which reporters a CLI run uses: the live view, plain lines or JSON lines, plus a
JUnit file, GitHub Actions annotations and notices on stderr."""

from __future__ import annotations

import os
import sys

from dagfast.report.base import (
    ConsoleReporter, GithubAnnotations, Notices, Reporter, Reporters, Unbreakable,
)

__all__ = ["choose"]


def choose(stream, *, quiet=False, verbose=False, json=False, junit=None, environ=None):
    """The reporters for a CLI run writing to the text stream `stream`: the live view
    when it is a terminal (and `CI` is unset and TERM is not `dumb`), else plain lines;
    or JSON lines with `json`; plus a JUnit file and GitHub Actions annotations. A
    closed reader of `stream` or stderr silences that reporter, never the run."""
    env = os.environ if environ is None else environ
    stream = Unbreakable(stream)
    reporters: list[Reporter] = []
    if json:
        from dagfast.report.jsonl import JsonReporter  # each reporter only when chosen (start-up)

        reporters.append(JsonReporter(stream.buffer if hasattr(stream, "buffer") else stream))
    elif not quiet and _live_ok(stream, env):
        from dagfast.report.progress import ProgressReporter  # rich: ~40 ms, terminals only

        reporters.append(ProgressReporter(stream, verbose=verbose, color=not env.get("NO_COLOR")))
    else:
        reporters.append(ConsoleReporter(stream, quiet=quiet, verbose=verbose))
    if junit:
        from dagfast.report.junit import JUnitReporter  # only with --junit (start-up)

        reporters.append(JUnitReporter(junit))
    stderr = Unbreakable(sys.stderr)
    reporters.append(Notices(stderr))
    if env.get("GITHUB_ACTIONS") == "true":
        # Workflow commands are read from stdout and stderr; stdout must stay JSON.
        reporters.append(GithubAnnotations(stderr if json else stream))
    return reporters[0] if len(reporters) == 1 else Reporters(reporters)


def _live_ok(stream, env) -> bool:
    if env.get("CI") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
