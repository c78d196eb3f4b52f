"""`--verbose`: step output streamed to the user, each line prefixed with the step's name.

Step processes write their log files directly (no pipe passes through dagfast), so the
files are tailed: `poll` (called on the reporters' timer, 10 times a second) reads the
new bytes of every running step's stdout and stderr, and `finish` reads what is left
when a step ends. Only whole lines are written until the step ends.
"""

from __future__ import annotations

import os

__all__ = ["LogTail"]

MAX_READ = 1 << 20  # per file and poll: a step that writes faster is caught up later


class LogTail:
    """Follows the log files of running steps and writes their new lines to `write`."""

    def __init__(self, run_dir, names, write) -> None:
        self.run_dir = run_dir
        self.names = names
        self.write = write
        # step -> [stdout offset, stderr offset, stdout partial line, stderr partial line]
        self.following: dict[int, list] = {}

    def follow(self, step: int) -> None:
        """Step `step` started: its logs are read from their start."""
        self.following[step] = [0, 0, b"", b""]

    def poll(self) -> None:
        """Write the whole lines the followed steps wrote since the last poll."""
        for step in tuple(self.following):
            self._read(step, final=False)

    def finish(self, step: int) -> None:
        """Step `step` ended: write the rest of its output and stop following it."""
        if step in self.following:
            self._read(step, final=True)
            del self.following[step]

    def _read(self, step: int, final: bool) -> None:
        state = self.following[step]
        paths = (self.run_dir.stdout_path(step), self.run_dir.stderr_path(step))
        prefix = f"{self.names[step]} | " if step < len(self.names) else "| "
        for k, path in enumerate(paths):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                data = b""
                while True:
                    chunk = os.pread(fd, MAX_READ, state[k])
                    state[k] += len(chunk)
                    data += chunk
                    if not final or len(chunk) < MAX_READ:
                        break
            finally:
                os.close(fd)
            data = state[k + 2] + data
            if not final:
                cut = data.rfind(b"\n") + 1
                data, state[k + 2] = data[:cut], data[cut:]
            if data:
                text = data.decode("utf-8", "replace")
                self.write("".join(prefix + line + "\n" for line in text.splitlines()))
