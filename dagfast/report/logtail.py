"""`--verbose`: step output streamed to the user, each line prefixed with the step's name.

What steps print goes into the run's output store (records/outstore.py), so it is read
from there: `poll` (called on the reporters' timer, 10 times a second) reads the
records each running step's stdout and stderr gained since the last poll (walking back
from the newest: time in what is new, not in the run), and `finish` reads what is left
when a step ends (its output up to its exit is stored by then). Only whole lines are
written until the step ends.
"""

from __future__ import annotations

from dagfast.records.outstore import Output

__all__ = ["LogTail"]


class LogTail:
    """Follows the output of running steps and writes their new lines to `write`."""

    def __init__(self, run_dir, names, write) -> None:
        self.run_dir = run_dir
        self.names = names
        self.write = write
        self._out: Output | None = None
        # step -> [stdout's last record read, stderr's, their partial lines, the
        # execution it started in (earlier ones' output, from before a retry, is old)]
        self.following: dict[int, list] = {}
        self.item_names: dict[int, str] = {}  # fan-out items' tokens -> their addresses

    def follow(self, step: int, name: str | None = None) -> None:
        """Step `step` started: its output is read from its start. `name`: a fan-out
        item's address (`step` is then its token)."""
        if name is not None:
            self.item_names[step] = name
        out = self._reader()
        if out is not None:
            # Its execution was begun before its process started: earlier executions'
            # output (from before a `dagfast retry`) is not this run's news.
            self.following[step] = [-1, -1, b"", b"", out.executions(step)]

    def _reader(self) -> Output | None:
        if self._out is None:
            out = Output(self.run_dir.path)
            if not out.legacy:  # made with the run: absent only in a dry run
                self._out = out
        return self._out

    def poll(self) -> None:
        """Write the whole lines the followed steps wrote since the last poll."""
        for step in tuple(self.following):
            self._read(step, final=False)

    def finish(self, step: int) -> None:
        """Step `step` ended: write the rest of its output and stop following it."""
        if step in self.following:
            self._read(step, final=True)
            del self.following[step]
            self.item_names.pop(step, None)

    def _read(self, step: int, final: bool) -> None:
        state = self.following[step]
        out = self._out
        name = self.names[step] if step < len(self.names) else self.item_names.get(step)
        prefix = f"{name} | " if name is not None else "| "
        for k in (0, 1):
            data, state[k] = out.since(step, k, state[k], None, state[4])
            data = state[k + 2] + data
            if not final:
                cut = data.rfind(b"\n") + 1
                data, state[k + 2] = data[:cut], data[cut:]
            if data:
                text = data.decode("utf-8", "replace")
                self.write("".join(prefix + line + "\n" for line in text.splitlines()))
