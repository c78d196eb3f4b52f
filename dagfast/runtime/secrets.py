"""`secrets:`: values read when a run starts (env and file providers), then masked.

Loading only checks the entries; nothing is read until the engine starts the run
(`begin`), so `validate`, `dry` and `graph` never touch a secret. A value that cannot be
read fails the run before any step starts, with a SecretError located like a problem of
the file. Every non-empty value is then replaced by `MASK` in what dagfast writes or
shows: step logs (see logpipe.py), outputs, errors, the records of sub-DAG runs.
"""

from __future__ import annotations

import os
import re
import stat

import msgspec

from dagfast.errors import SecretError
from dagfast.model import Dag, Secret

__all__ = ["MASK", "MaskStream", "Masker", "fill", "read_all"]

MASK = "*******"  # what Dagu prints
_MASK_BYTES = MASK.encode()

# An environment variable holds at most this much (Linux's MAX_ARG_STRLEN): a larger
# file could never reach a step.
MAX_VALUE = 128 * 1024

_REF = re.compile("\ue000([A-Za-z_][A-Za-z0-9_]*)\ue001")  # model.secret_ref


def read_all(dag: Dag, env: dict) -> dict[bytes, bytes]:
    """Each secret's name -> value (bytes), read now; `env` (bytes -> bytes) is the
    run's environment, where the env provider looks. Raises SecretError."""
    values = {}
    for i, s in enumerate(dag.secrets):
        if s.provider == "env":
            value = env.get(os.fsencode(s.key))
            if value is None:
                raise SecretError(
                    s, i, f"the secret `{s.name}` comes from the environment variable "
                    f"`{s.key}`, which is not set",
                )
        else:
            value = _read_file(dag, s, i)
        values[s.name.encode()] = value
    return values


def _read_file(dag: Dag, s: Secret, i: int) -> bytes:
    """The whole file named by the key: an absolute path as is; a relative one from the
    DAG's working directory, else from the DAG file's directory (as Dagu looks)."""
    if os.path.isabs(s.key):
        tried = [s.key]
    else:
        bases = [dag.dir] + ([os.path.dirname(dag.path)] if dag.path else [])
        tried = list(dict.fromkeys(os.path.join(b, s.key) for b in bases if b))
    path = next((p for p in tried if os.path.lexists(p)), tried[0])
    try:
        # Non-blocking: a FIFO at that path must not hang the run; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        where = f" (looked for {', '.join(f'`{p}`' for p in tried)})" if len(tried) > 1 else ""
        raise SecretError(
            s, i, f"cannot read the secret `{s.name}` from `{s.key}`: {exc.strerror}{where}"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SecretError(s, i, f"the secret `{s.name}`: `{path}` is not a regular file")
        chunks, size = [], 0
        while size <= MAX_VALUE:
            chunk = os.read(fd, MAX_VALUE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SecretError(
            s, i, f"cannot read the secret `{s.name}` from `{path}`: {exc.strerror}"
        ) from None
    finally:
        os.close(fd)
    if size > MAX_VALUE:
        raise SecretError(
            s, i, f"the secret `{s.name}`: `{path}` is larger than {MAX_VALUE // 1024} KiB, "
            "more than an environment variable can hold",
        )
    return b"".join(chunks)  # as is, trailing newline included (as Dagu)


def fill(value: str, values: dict[bytes, bytes]) -> bytes:
    """A step `env` value, encoded, with its references to secrets (`model.secret_ref`)
    replaced by their values."""
    parts = _REF.split(value)  # text, name, text, name, ..., text
    return b"".join(
        values.get(p.encode(), b"") if k % 2 else p.encode() for k, p in enumerate(parts)
    )


class Masker:
    """Replaces every secret value by MASK, in bytes and in text.

    Each non-empty value is masked as is and without its surrounding white space (a
    file's value keeps its newline, which `$(cat file)` or a shell's `read` drops), and
    each of those as it appears inside a JSON string. Longer forms are tried first, so a
    value that holds another is masked whole. Empty values are not masked (as Dagu)."""

    def __init__(self, values) -> None:
        self.values = tuple(values)
        forms: set[bytes] = set()
        for v in self.values:
            for f in (v, v.strip()):
                if f:
                    forms.add(f)
                    escaped = _json_form(f)
                    if escaped:
                        forms.add(escaped)
        self.forms = sorted(forms, key=lambda f: (-len(f), f))
        self.longest = len(self.forms[0]) if self.forms else 0
        self.rx = re.compile(b"|".join(map(re.escape, self.forms))) if self.forms else None
        self._text_rx = (
            re.compile("|".join(re.escape(os.fsdecode(f)) for f in self.forms))
            if self.forms else None
        )  # fmt: skip

    def __bool__(self) -> bool:
        return bool(self.forms)

    def join(self, other: Masker | None) -> Masker:
        """A masker for the values of both."""
        if other is None:
            return self
        return Masker(self.values + other.values)

    def bytes(self, data: bytes) -> bytes:
        """`data` with every secret masked."""
        return self.rx.sub(_MASK_BYTES, data) if self.rx is not None else data

    def text(self, text: str) -> str:
        """`text` with every secret masked."""
        return self._text_rx.sub(MASK, text) if self._text_rx is not None and text else text

    def stream(self) -> MaskStream:
        """A masker for one stream of bytes that arrives in pieces."""
        return MaskStream(self)


def _json_form(value: bytes) -> bytes | None:
    """How `value` appears inside a JSON string, when that differs from the value."""
    try:
        encoded = msgspec.json.encode(value.decode("utf-8"))[1:-1]
    except (UnicodeDecodeError, msgspec.EncodeError):
        return None
    return encoded if encoded != value else None


class MaskStream:
    """Masks a byte stream fed in pieces: a secret split between two pieces is still
    masked. The last `longest - 1` bytes are held back until more comes (or `flush`),
    since they may be the start of a secret."""

    __slots__ = ("_masker", "_carry")

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        """What can be written of what came so far, masked."""
        buf = self._carry + data if self._carry else data
        # A match that starts before `cut` is final: every secret starting there ends
        # inside `buf`, and the longest one that matches wins. Later ones must wait.
        cut = len(buf) - (self._masker.longest - 1)
        out = []
        pos = 0
        for m in self._masker.rx.finditer(buf):
            if m.start() >= cut:
                break
            out.append(buf[pos : m.start()])
            out.append(_MASK_BYTES)
            pos = m.end()
        end = max(pos, cut)
        out.append(buf[pos:end])
        self._carry = buf[end:]
        return b"".join(out)

    def flush(self) -> bytes:
        """The bytes held back, masked: the stream has ended (or paused for good)."""
        buf, self._carry = self._carry, b""
        return self._masker.bytes(buf) if buf else b""
