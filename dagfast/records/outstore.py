"""Reading a run's output store: what its steps printed, per step, stream and execution.

The store is written by the engine's pump (dagfast/exec/outstore.h, where the format is
drawn): `output` holds records (a 24-byte header and the bytes), each pointing back at
the previous record of the same step and stream; `output.idx` holds a 40-byte slot per
step with the newest record of each stream, the bytes appended so far and the step's
execution count. Reading a step walks its own chain: time in its own size, not the
run's. Nothing here imports the engine (read-only commands use it).

Runs recorded before the store existed kept `steps/<id>.out|.err` files: they are read
the same way (`attempt` then means the latest only).
"""

from __future__ import annotations

import os
import struct

__all__ = ["DATA", "INDEX", "Output", "SLOT", "STDERR", "STDOUT", "cut_torn_tail", "create"]

DATA, INDEX = "output", "output.idx"
STDOUT, STDERR = 0, 1
MAGIC = 0xD7
_HEADER = struct.Struct("<BBHIIIQ")  # magic, stream, check, token, exec, len, prev
_SLOT = struct.Struct("<QQQQII")  # head[2], total[2], exec, flags
SLOT = _SLOT.size  # bytes of index per token
_MASK32 = 0xFFFFFFFF


def _check(token: int, execution: int, length: int, stream: int) -> int:
    x = ((token * 2654435761) ^ (execution * 40503) ^ (length * 2246822519) ^ stream) & _MASK32
    return (x ^ (x >> 16)) & 0xFFFF


def create(run_path: str) -> None:
    """Make a run's empty store (private files). Raises OSError."""
    for name in (DATA, INDEX):
        fd = os.open(os.path.join(run_path, name),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)


def cut_torn_tail(run_path: str) -> int:
    """Before a retry appends to a store: cut the data back to the end of the last
    record the index points at (what a kill left half-written is not part of any log);
    the new end. Raises OSError."""
    out = Output(run_path)
    try:
        end = out.indexed_end()
    finally:
        out.close()
    with open(os.path.join(run_path, DATA), "r+b") as f:
        if f.seek(0, os.SEEK_END) > end:
            f.truncate(end)
    return end


class Output:
    """A run's output store, for reading (the run may be running: what is indexed is
    whole)."""

    def __init__(self, run_path: str) -> None:
        self.path = run_path
        self._data = self._idx = -1
        try:
            self._data = os.open(os.path.join(run_path, DATA), os.O_RDONLY | os.O_CLOEXEC)
            self._idx = os.open(os.path.join(run_path, INDEX), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.close()
            self.legacy = True  # a run recorded before the store: steps/<id>.out|.err
        else:
            self.legacy = False

    def close(self) -> None:
        for fd in (self._data, self._idx):
            if fd >= 0:
                os.close(fd)
        self._data = self._idx = -1

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # What the index says -------------------------------------------------------------

    def _slot(self, token: int) -> tuple[int, int, int, int, int, int]:
        raw = os.pread(self._idx, _SLOT.size, token * _SLOT.size)
        if len(raw) < _SLOT.size:
            return (0, 0, 0, 0, 0, 0)
        return _SLOT.unpack(raw)

    def executions(self, token: int) -> int:
        """How many executions of step `token` began (1 for a legacy run's step with
        logs, 0 without)."""
        if self.legacy:
            return 1 if os.path.exists(self._legacy(token, STDOUT)) else 0
        return self._slot(token)[4]

    def total(self, token: int, stream: int) -> int:
        """Bytes stored so far for `token`'s stream (all executions): grows as it prints."""
        if self.legacy:
            try:
                return os.stat(self._legacy(token, stream)).st_size
            except OSError:
                return 0
        return self._slot(token)[2 + stream]

    def indexed_end(self) -> int:
        """The end of the newest record any slot points at."""
        size = os.fstat(self._idx).st_size // _SLOT.size
        end = 0
        raw = os.pread(self._idx, size * _SLOT.size, 0)
        for k in range(size):
            heads = _SLOT.unpack_from(raw, k * _SLOT.size)[:2]
            for head in heads:
                if head and head - 1 >= end:
                    h = self._header(head - 1)
                    if h is not None:
                        end = max(end, head - 1 + _HEADER.size + h[5])
        return end

    # The chain of records ----------------------------------------------------------------

    def _header(self, off: int):
        raw = os.pread(self._data, _HEADER.size, off)
        if len(raw) < _HEADER.size:
            return None
        h = _HEADER.unpack(raw)
        if h[0] != MAGIC or h[2] != _check(h[3], h[4], h[5], h[1]):
            return None
        return h

    def _chain(self, token: int, stream: int, attempt: int | None, after: int = -1,
               since: int = 0):
        """(offset of payload, length) of the records of `token`'s `stream` in execution
        `attempt` (None: any from execution `since` on), newest first, stopping at
        offset `after`."""
        off = self._slot(token)[stream] - 1
        while off > after:
            h = self._header(off)
            if h is None or h[3] != token or h[1] != stream:
                return  # not a record of this chain: never read past a damaged one
            if h[4] == attempt if attempt is not None else h[4] >= since:
                yield off, h[5]
            off = h[6] - 1

    def read(self, token: int, stream: int, attempt: int | None = None,
             limit: int | None = None) -> bytes:
        """What step `token` printed on `stream` in execution `attempt` (default: its
        latest); with `limit`, at most that many bytes from the start."""
        if self.legacy:
            return self._read_legacy(token, stream, limit)
        if attempt is None:
            attempt = self._slot(token)[4]
        recs = list(self._chain(token, stream, attempt))
        recs.reverse()
        parts, n = [], 0
        for off, length in recs:
            if limit is not None and n + length > limit:
                length = limit - n
            parts.append(os.pread(self._data, length, off + _HEADER.size))
            n += length
            if limit is not None and n >= limit:
                break
        return b"".join(parts)

    def tail(self, token: int, stream: int, max_bytes: int) -> bytes:
        """The last `max_bytes` (or fewer) of what the latest execution printed."""
        if self.legacy:
            data = self._read_legacy(token, stream, None)
            return data[-max_bytes:]
        attempt = self._slot(token)[4]
        parts, n = [], 0
        for off, length in self._chain(token, stream, attempt):
            take = min(length, max_bytes - n)
            parts.append(os.pread(self._data, take, off + _HEADER.size + length - take))
            n += take
            if n >= max_bytes:
                break
        parts.reverse()
        return b"".join(parts)

    def since(self, token: int, stream: int, after: int, attempt: int | None = None,
              first: int = 0):
        """(the bytes of records newer than offset `after` of execution `attempt` (None:
        of every execution from `first` on), the newest record's offset): for following
        a running step (start with after=-1)."""
        if self.legacy:
            data = self._read_legacy(token, stream, None)
            return data[max(after, 0):], max(after, 0) + len(data[max(after, 0):])
        recs = list(self._chain(token, stream, attempt, after, first))
        if not recs:
            return b"", after
        newest = recs[0][0]
        recs.reverse()
        return b"".join(os.pread(self._data, n, off + _HEADER.size) for off, n in recs), newest

    # Runs recorded before the store -------------------------------------------------------

    def _legacy(self, token: int, stream: int) -> str:
        return os.path.join(self.path, "steps", f"{token}{'.err' if stream else '.out'}")

    def _read_legacy(self, token: int, stream: int, limit: int | None) -> bytes:
        try:
            with open(self._legacy(token, stream), "rb") as f:
                return f.read() if limit is None else f.read(limit)
        except OSError:
            return b""
