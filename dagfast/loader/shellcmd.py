"""Shell words and argv prefixes: how a step's command text becomes what is exec'd."""

from __future__ import annotations

import os
import shlex

__all__ = [
    "SH_LIKE", "Shell", "sets_errexit", "shell_words", "shell_words_or_report", "text_argv",
]

SH_LIKE = frozenset(("sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"))


def shell_words(value: str | list[str]) -> tuple[str, ...]:
    """A `shell:` value as words; ValueError (with the reason) when it cannot be used."""
    if type(value) is str:
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split `{value}` into words ({e})") from None
    else:
        words = list(value)
    if not words or not words[0]:
        raise ValueError("the shell is empty")
    return tuple(words)


def shell_words_or_report(value, path: tuple, problems) -> tuple[str, ...] | None:
    """`shell_words`, or None with the reason reported at `path` in `problems`."""
    try:
        return shell_words(value)
    except ValueError as e:
        problems.add(path, str(e))
        return None


def is_sh_like(words: tuple[str, ...]) -> bool:
    """Whether the shell is one of the sh family (takes -e and -c the same way)."""
    return os.path.basename(words[0]) in SH_LIKE


def sets_errexit(words: tuple[str, ...]) -> bool:
    """Whether the shell's own flags already say -e, +e or -o/+o errexit."""
    for i, w in enumerate(words[1:], 1):
        if w in ("-o", "+o"):
            if i + 1 < len(words) and words[i + 1] == "errexit":
                return True
        elif len(w) > 1 and w[0] in "-+" and w[1] != w[0] and "e" in w[1:]:
            return True
    return False


class Shell:
    """One shell's argv prefixes, computed once for all the steps that use it."""

    __slots__ = ("words", "sh_like", "c")

    def __init__(self, words: tuple[str, ...], errexit: bool) -> None:
        self.words = words
        self.sh_like = is_sh_like(words)
        e = ("-e",) if errexit and self.sh_like and not sets_errexit(words) else ()
        self.c = words + e + ("-c",)  # followed by the command text


def text_argv(text: str, shell: Shell):
    """argv and script for a multi-line command or a `script:`."""
    if text.startswith("#!"):
        return (), text  # the engine runs the file itself
    if shell.sh_like:
        return shell.c + (text,), None
    return shell.words, text  # the engine appends the script file's path
