"""Preconditions and repeat conditions, evaluated by running a shell.

A condition with `expected` is expanded by `sh` (variables, `$(...)` and backticks, in
the step's environment) and compared to `expected` (literally, or `re:` a pattern
that must match the whole value); one without is a command whose exit 0 means met.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal

from dagfast.model import Condition

__all__ = ["is_met"]


def _quoted(text: str) -> str:
    """`text` inside double quotes for sh: `$` and backticks still expand."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _sh(script: str, env: dict, cwd: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", script, env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        # The run was stopped or timed out: the check's whole session goes with it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        raise
    return proc.returncode, out.decode("utf-8", "replace")


async def is_met(cond: Condition, env: dict, cwd: str) -> bool:
    """Whether `cond` holds (after `negate`). Cancelled, it kills the shell's session."""
    if cond.expected is None:
        code, _ = await _sh(cond.condition, env, cwd)
        met = code == 0
    else:
        code, value = await _sh("printf '%s' " + _quoted(cond.condition), env, cwd)
        value = value.strip()
        expected = cond.expected
        if expected.startswith("re:"):
            met = re.fullmatch(expected[3:], value) is not None
        else:
            met = value == expected
    return met != cond.negate
