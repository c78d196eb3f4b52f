"""Step output through the engine, for runs with secrets: pipes in, masked logs out.

A step of such a run writes its stdout and stderr into two pipes (Executor.start_piped);
the engine reads them on its loop, masks every secret (secrets.MaskStream, which holds
back the tail that may be the start of a secret split across two writes) and writes
the rest to the step's log files. So a secret never reaches a file under the run
directory, not even for a moment, and `logs -f` or `run --verbose` never see one.

Why not rewrite the logs once the step has exited: the raw values would sit on disk
while the step runs (visible to `logs -f` and `--verbose`), and for good if the engine
were killed before the rewrite. The price of pipes, paid only by runs with secrets:
every byte a step prints is copied once more by the engine, and a running step holds
four more of the engine's descriptors.

A step still ends when its own process exits. Everything it wrote is then in the pipe:
`drain` reads it (at most one pipe's capacity: anything past that came from a
background child) before the output is captured. A background child that keeps a pipe
open is read from until it closes it or the run ends; after the run, its writes fail
(EPIPE, or SIGPIPE, which ends it unless it ignores the signal).
"""

from __future__ import annotations

import fcntl
import os

from dagfast.errors import SpawnError

__all__ = ["Pump", "close_logs", "drain", "open_logs", "pumps"]

READ_SIZE = 65536
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


class Pump:
    """One pipe: what comes out of it is masked and written to one log file."""

    __slots__ = ("loop", "fd", "log", "stream", "pumps", "broken")

    def __init__(self, loop, fd: int, log: int, masker, pumps: set) -> None:
        self.loop = loop
        self.fd = fd
        self.log = log
        self.stream = masker.stream()
        self.pumps = pumps  # the open pumps: closed when the run ends
        self.broken = False  # the log cannot be written: what comes is dropped
        os.set_blocking(fd, False)
        pumps.add(self)
        loop.add_reader(fd, self.read)

    def read(self) -> int:
        """Read once and write what can be written; the bytes read (0 at end of file,
        when the pump closes; -1 when nothing is there now)."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return -1
        except OSError:
            data = b""
        if not data:
            self.close()
            return 0
        self._write(self.stream.feed(data))
        return len(data)

    def settle(self) -> None:
        """The step has ended: write what was held back, so that the log is whole."""
        if self.fd >= 0:
            self._write(self.stream.flush())

    def close(self) -> None:
        """Stop reading: write what was held back, close the pipe and the log."""
        if self.fd < 0:
            return
        self.loop.remove_reader(self.fd)
        self._write(self.stream.flush())
        os.close(self.fd)
        os.close(self.log)
        self.fd = self.log = -1
        self.pumps.discard(self)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view and not self.broken:
                view = view[os.write(self.log, view) :]
        except OSError:
            # A full disk: the step goes on (as it would writing the file itself), and
            # what it prints from now on is lost rather than kept in memory.
            self.broken = True


def open_logs(run_dir, token: int) -> list[int]:
    """The two log files of step `token`, opened for its pumps. Raises SpawnError."""
    logs = []
    try:
        for path in (run_dir.stdout_path(token), run_dir.stderr_path(token)):
            logs.append(os.open(path, _LOG_FLAGS, 0o600))
    except OSError as exc:
        close_logs(logs)
        raise SpawnError(f"cannot open the log `{exc.filename}`: {exc.strerror}") from None
    return logs


def close_logs(logs: list[int]) -> None:
    """Close logs that no pump took (the step could not start)."""
    for fd in logs:
        os.close(fd)


def pumps(loop, pipes: tuple[int, int], logs: list[int], masker, registry: set):
    """A pump for each of a started step's two pipes, into its two logs; each is kept
    in `registry` until it closes."""
    return (
        Pump(loop, pipes[0], logs[0], masker, registry),
        Pump(loop, pipes[1], logs[1], masker, registry),
    )


def drain(pumps: tuple[Pump, ...]) -> None:
    """The step's process has exited: read what it left in its pipes, then settle the
    logs. At most a pipe's capacity is read from each; past that, what comes is a
    background child's, and the loop reads it as it comes."""
    for pump in pumps:
        if pump.fd < 0:
            continue
        try:
            budget = fcntl.fcntl(pump.fd, fcntl.F_GETPIPE_SZ)
        except OSError:
            budget = READ_SIZE
        while budget > 0:
            n = pump.read()
            if n <= 0:
                break
            budget -= n
        pump.settle()
