"""The items of a fan-out step (`parallel:`, `matrix:`), read as they are needed.

`open_source(fanout, ...)` gives a Source whatever the items come from: the list as
written, a `${VAR}` holding a JSON array or lines, a file, a command's stdout, or a
matrix's combinations. A file or a command is read in chunks of 64 KiB, at most one
chunk ahead of what was taken, so a million items cost a window, not a list.

How a source is read (`format`; by default a file's extension: `.json`, `.jsonl` or
`.ndjson`, anything else lines; a command's stdout is lines):

- lines: one item per line, the line ending (`\\n` or `\\r\\n`) removed and nothing
  else, so leading and trailing spaces are the item's; blank lines (empty or only
  white space) are skipped;
- jsonl: one JSON value per non-blank line;
- json: one top-level JSON array, split into elements as it streams in.

A JSON object becomes a map item (`dict[str, str]`: text as is, `null` as "", any other
value as its JSON text); a JSON string is a text item; any other value is its JSON text.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import stat
import threading
from collections.abc import Callable, Iterator

import msgspec

from dagfast.errors import ItemError
from dagfast.loader.expand import ExpandError, expand
from dagfast.runtime.outputs import expand_refs

__all__ = ["CHUNK", "MAX_ITEM_BYTES", "ItemError", "Source", "combinations", "item_key",
           "open_source"]

CHUNK = 64 * 1024
"""Bytes read from a file or a command's stdout at a time."""
MAX_ITEM_BYTES = 1 << 20
"""The longest item (a line, or a JSON array element): `/dev/zero` must not eat memory."""

_ENCODE = msgspec.json.Encoder(order="sorted")
_DECODE = msgspec.json.Decoder()


class Source:
    """The items of one fan-out step, read as they are needed: at most one read chunk
    ahead (never the whole file or stream in memory)."""

    # Whether `take` may read on until it has `n` items: a read that cannot wait long
    # (a list, a regular file). A pipe's next line may be far off: `take` hands out what
    # one read brought rather than hold items back.
    _eager = True

    def __init__(self, max_items: int) -> None:
        self.count = 0  # items handed out so far
        self._max = max_items
        self._ahead: list = []  # items read, not yet handed out
        self._done = False  # nothing more to read into `_ahead`
        self._error: ItemError | None = None  # raised once the items before it are out

    async def take(self, n: int) -> list:
        """Up to `n` next items; [] once there are no more. ItemError when the items
        cannot be read, or past maxItems (the items handed out before stand)."""
        while (not self._ahead or (self._eager and len(self._ahead) < n)) and not self._done:
            more = await self._read()
            if more is None:
                self._done = True
            else:
                self._ahead.extend(more)
        room = self._max - self.count
        if not self._ahead:
            if self._error is not None:
                raise self._error
            await self._finish()
            return []
        if room <= 0:
            raise ItemError(f"more than maxItems ({self._max:,}) items")
        out = self._ahead[: min(n, room)]
        del self._ahead[: len(out)]
        self.count += len(out)
        return out

    def buffered(self) -> tuple[int, int]:
        """Items read and not yet taken, and bytes read and not yet split into items
        (what the source holds: a measure for tests and benchmarks)."""
        return len(self._ahead), 0

    def close(self) -> None:
        """Idempotent: frees what the source holds (a file, a command's processes)."""
        self._done = True
        self._ahead = []

    async def aclose(self) -> None:
        """`close`, then wait until a command source's process is reaped."""
        self.close()

    # What each kind of source defines.

    async def _read(self) -> list | None:
        """The next items (possibly none yet), or None at the end."""
        return None

    async def _finish(self) -> None:
        """At the end: raise ItemError if the source failed (a command's exit status)."""


class _ListSource(Source):
    """Items already in memory (as written, or a variable's text), or a lazy iterator."""

    def __init__(self, items, max_items: int) -> None:
        super().__init__(max_items)
        self._items = iter(items)

    async def _read(self) -> list | None:
        more = list(itertools.islice(self._items, 1024))
        return more or None


class _StreamSource(Source):
    """Chunks of bytes split into items by a format's splitter."""

    def __init__(self, name: str, fmt: str, max_items: int) -> None:
        super().__init__(max_items)
        self._split = _SPLITTERS[fmt](name)
        self._eof = False

    async def _read(self) -> list | None:
        if self._eof:
            return None
        try:
            chunk = await self._chunk()
            if chunk:
                return self._split.feed(chunk)
            self._eof = True
            return self._split.end() or None
        except _Broken as e:
            # The items before the broken one are handed out first.
            self._error, self._eof = e.error, True
            return e.before or None

    def buffered(self) -> tuple[int, int]:
        return len(self._ahead), len(self._split.buf)

    async def _chunk(self) -> bytes | None:
        raise NotImplementedError


class _FileSource(_StreamSource):
    """A file read in chunks: directly when it is a regular file (a read from the page
    cache is quick), else in a daemon thread (a FIFO may wait for its writer)."""

    def __init__(self, path: str, name: str, fmt: str, max_items: int, regular: bool) -> None:
        super().__init__(name, fmt, max_items)
        self._path = path
        self._regular = regular
        self._eager = regular
        self._fd = -1
        self._closed = False
        self._busy = False  # a thread is in open() or read(): it closes the file if asked
        self._lock = threading.Lock()

    async def _chunk(self) -> bytes:
        if self._regular:
            if self._fd < 0:
                self._fd = _open(self._path)
            return os.read(self._fd, CHUNK)
        self._busy = True
        return await _in_thread(self._blocking_chunk)

    def _blocking_chunk(self) -> bytes:
        """In a thread: open the file the first time, then read one chunk; if the
        source was closed meanwhile, close the file and hand on nothing."""
        try:
            if self._fd < 0:
                self._fd = _open(self._path)
            data = os.read(self._fd, CHUNK)
        finally:
            with self._lock:
                self._busy = False
                if self._closed and self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
        return data

    def close(self) -> None:
        super().close()
        with self._lock:
            self._closed = True
            if self._fd >= 0 and not self._busy:
                os.close(self._fd)
                self._fd = -1


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ItemError(f"cannot read {path}: {e.strerror}") from None


def _in_thread(fn, *args) -> asyncio.Future:
    """`fn(*args)` in a daemon thread (one that may block for good without holding up
    the loop's or the interpreter's shutdown, as an executor's thread would)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def done(ok: bool, value) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def work() -> None:
        try:
            result, ok = fn(*args), True
        except BaseException as e:  # handed to the awaiting task
            result, ok = e, False
        try:
            loop.call_soon_threadsafe(done, ok, result)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    threading.Thread(target=work, daemon=True).start()
    return fut


class _CommandSource(_StreamSource):
    """A command's stdout, read as the items are taken (the pipe gives backpressure);
    its stderr goes to `on_stderr` as it comes."""

    def __init__(self, cmd: str, fmt: str, max_items: int, env, cwd: str, on_stderr) -> None:
        super().__init__(f"the item command `{cmd}`", fmt, max_items)
        self._eager = False
        self._cmd = cmd
        self._env = env
        self._cwd = cwd
        self._on_stderr = on_stderr
        self._proc: asyncio.subprocess.Process | None = None
        self._errors: asyncio.Task | None = None
        self._reaper: asyncio.Task | None = None
        self._closed = False

    async def _chunk(self) -> bytes | None:
        if self._proc is None:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    "/bin/sh", "-c", self._cmd, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                    env=self._env, cwd=self._cwd, start_new_session=True,
                )  # fmt: skip
            except OSError as e:
                raise ItemError(
                    f"the item command `{self._cmd}` cannot start: {e.strerror}"
                ) from None
            self._errors = asyncio.get_running_loop().create_task(self._pump_stderr())
        return await self._proc.stdout.read(CHUNK)

    async def _pump_stderr(self) -> None:
        while data := await self._proc.stderr.read(CHUNK):
            if self._on_stderr is not None:
                self._on_stderr(data)

    async def _finish(self) -> None:
        proc = self._proc
        if proc is None or self._closed:
            return
        code = await proc.wait()
        if self._errors is not None:
            await self._errors
        if code == 0:
            return
        if code < 0:
            how = f"was killed by {_signal_name(-code)}"
        else:
            how = f"exited with status {code}"
        raise ItemError(f"the item command `{self._cmd}` {how} after {self.count:,} items")

    def close(self) -> None:
        super().close()
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group: the shell and its children
            except ProcessLookupError:
                pass
        if proc is not None:
            try:
                self._reaper = asyncio.get_running_loop().create_task(self._reap())
            except RuntimeError:
                pass  # no loop runs: the killed process is the child watcher's

    async def _reap(self) -> None:
        """Read the killed command's pipes to their end, then wait for it (the loop's
        child watcher reaps it). The pipes first: Python 3.11's `wait()` returns only
        once they are closed, and a reader that stopped reading never sees their end."""
        proc = self._proc
        if self._errors is not None:
            self._errors.cancel()
        await asyncio.gather(proc.stdout.read(), proc.stderr.read())
        await proc.wait()

    async def aclose(self) -> None:
        self.close()
        if self._reaper is not None:
            await self._reaper

    @property
    def pid(self) -> int | None:
        """The command's process id (its process group's too), once started."""
        return None if self._proc is None else self._proc.pid


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


# ---------------------------------------------------------------------------------------
# Splitters: bytes in chunks -> items; each keeps only the unfinished tail.


class _Broken(Exception):
    """A splitter met a broken item: the ItemError, and the items before it."""

    def __init__(self, error: ItemError, before: list) -> None:
        self.error = error
        self.before = before


def _item(value):
    """A decoded JSON value as an item: text, or a map of text."""
    t = type(value)
    if t is str:
        return value
    if t is dict:
        return {k: v if type(v) is str else "" if v is None else _ENCODE.encode(v).decode()
                for k, v in value.items()}  # fmt: skip
    return _ENCODE.encode(value).decode()


class _Lines:
    """Lines of text: see the module's docstring."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.line = 0  # lines handed on so far
        self.buf = b""  # the last line, unfinished

    def feed(self, chunk: bytes) -> list:
        parts = (self.buf + chunk).split(b"\n") if self.buf else chunk.split(b"\n")
        self.buf = parts.pop()
        if len(self.buf) > MAX_ITEM_BYTES:
            parts.append(self.buf)  # reported at its line, after the lines before it
        return self._items(parts)

    def end(self) -> list:
        parts, self.buf = ([self.buf] if self.buf else []), b""
        return self._items(parts)

    def _items(self, parts: list[bytes]) -> list:
        out = []
        one = self._one
        try:
            for raw in parts:
                self.line += 1
                if len(raw) > MAX_ITEM_BYTES:
                    raise ItemError(f"{self.name}:{self.line}: a line longer than "
                                    f"{MAX_ITEM_BYTES:,} bytes")
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if raw.strip():
                    out.append(one(raw))
        except ItemError as e:
            raise _Broken(e, out) from None
        return out

    def _one(self, raw: bytes):
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise ItemError(f"{self.name}:{self.line}: not UTF-8") from None


class _Bad:
    """Why some bytes are not a JSON item (`not UTF-8`, `not valid JSON (...)`)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _json_item(raw: bytes):
    """The item one JSON value gives, or _Bad saying why it gives none."""
    try:
        return _item(_DECODE.decode(raw))
    except msgspec.DecodeError as e:
        try:
            raw.decode()
        except UnicodeDecodeError:
            return _Bad("not UTF-8")
        return _Bad(f"not valid JSON ({e})")


class _JsonLines(_Lines):
    """One JSON value per non-blank line."""

    def _one(self, raw: bytes):
        item = _json_item(raw)
        if type(item) is _Bad:
            raise ItemError(f"{self.name}:{self.line}: {item.why}")
        return item


# Outside a string, the characters that matter to the split; inside one, `"` and `\`.
_OUTSIDE = re.compile(rb'[\[\]{}",]')
_INSIDE = re.compile(rb'["\\]')
_SPACE = b" \t\r\n"


class _JsonArray:
    """One top-level JSON array, split into its elements as the chunks come: a scan
    from one structural character to the next (`re.search`, not a loop per byte),
    tracking strings, escapes and depth; each element is then decoded by msgspec."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buf = b""
        self.pos = 0  # where the scan resumes in `buf`
        self.start = -1  # where the current element starts in `buf` (-1: before `[`)
        self.depth = 0  # nesting inside the current element
        self.in_string = False
        self.line = 1  # the line of `buf[0]`
        self.closed = False  # `]` seen
        self.elements = 0  # elements split off so far

    def feed(self, chunk: bytes) -> list:
        self.buf += chunk
        out: list = []
        try:
            self._scan(out)
        except ItemError as e:
            raise _Broken(e, out) from None
        # Keep only the element being read: drop what is behind it.
        cut = self.start if self.start >= 0 and not self.closed else self.pos
        if cut:
            self.line += self.buf.count(b"\n", 0, cut)
            self.buf = self.buf[cut:]
            self.pos -= cut
            if self.start >= 0:
                self.start -= cut
        if len(self.buf) > MAX_ITEM_BYTES:
            raise _Broken(self._error(0, f"an element longer than {MAX_ITEM_BYTES:,} bytes"),
                          out)
        return out

    def end(self) -> list:
        if self.start < 0 and not self.closed:
            raise _Broken(ItemError(f"{self.name}: empty, not a JSON array"), [])
        if not self.closed:
            raise _Broken(self._error(len(self.buf), "the JSON array is not closed (no `]`)"),
                          [])
        return []

    def _error(self, at: int, why: str) -> ItemError:
        line = self.line + self.buf.count(b"\n", 0, at)
        return ItemError(f"{self.name}:{line}: {why}")

    def _scan(self, out: list) -> None:
        """Split off the elements that `buf` completes into `out`."""
        buf = self.buf
        n = len(buf)
        if self.closed:
            rest = buf[self.pos:].strip(_SPACE)
            if rest:
                raise self._error(self.pos, "more after the JSON array's closing `]`")
            self.pos = n
            return
        if self.start < 0:
            i = self.pos
            while i < n and buf[i] in _SPACE:
                i += 1
            if i == n:
                self.pos = n
                return
            if buf[i] != 0x5B:  # [
                raise self._error(i, "not a JSON array")
            self.start = self.pos = i + 1
        pos = self.pos
        while True:
            if self.in_string:
                m = _INSIDE.search(buf, pos)
                if m is None:
                    pos = n
                    break
                if buf[m.start()] == 0x5C:  # a backslash: skip what it escapes
                    if m.start() + 1 >= n:
                        pos = m.start()  # wait for the escaped byte
                        break
                    pos = m.start() + 2
                    continue
                self.in_string = False
                pos = m.end()
                continue
            m = _OUTSIDE.search(buf, pos)
            if m is None:
                pos = n
                break
            c = buf[m.start()]
            pos = m.end()
            if c == 0x22:  # "
                self.in_string = True
            elif c in (0x5B, 0x7B):  # [ {
                self.depth += 1
            elif c in (0x5D, 0x7D) and self.depth:  # ] } inside an element
                self.depth -= 1
            elif self.depth == 0 and c in (0x2C, 0x5D):  # , or the closing ]
                element = buf[self.start : m.start()]
                if c == 0x2C or self.elements or element.strip(_SPACE):  # `[]` has none
                    out.append(self._element(element, self.start))
                    self.elements += 1
                self.start = pos
                if c == 0x5D:
                    self.closed = True
                    self.pos = pos
                    rest = buf[pos:].strip(_SPACE)
                    if rest:
                        raise self._error(pos, "more after the JSON array's closing `]`")
                    self.pos = n
                    return
        self.pos = pos

    def _element(self, raw: bytes, at: int):
        item = _json_item(raw)
        if type(item) is _Bad:
            lead = len(raw) - len(raw.lstrip(_SPACE))
            why = "an empty element" if not raw.strip(_SPACE) else item.why
            raise self._error(at + lead, why)
        return item


_SPLITTERS: dict[str, Callable[[str], object]] = {
    "lines": _Lines, "jsonl": _JsonLines, "json": _JsonArray,
}  # fmt: skip


def _format(fanout, path: str | None) -> str:
    if fanout.format:
        return fanout.format
    if path is not None:
        ext = os.path.splitext(path)[1].lower()
        if ext == ".json":
            return "json"
        if ext in (".jsonl", ".ndjson"):
            return "jsonl"
    return "lines"


# ---------------------------------------------------------------------------------------
# The ways in


def open_source(fanout, *, scope: dict[str, str], refs: dict[str, str], base_dir: str,
                env: dict[bytes, bytes], cwd: str, on_stderr=None) -> Source:
    """`scope`: the step's environment as text, for `${VAR}` in `expr`/`file`/`command`;
    `refs`: upstream outputs by name, for `${NAME.key}`. `env`/`cwd`: the command
    source's environment and directory. `on_stderr(bytes)`: where a command's stderr
    goes (None: discarded). Raises ItemError for what is wrong at once (a missing file,
    an expression that does not expand)."""  # fmt: skip
    most = fanout.max_items
    if fanout.matrix is not None:
        return _ListSource(combinations(fanout.matrix), most)
    if fanout.file is not None:
        name = _expand(fanout.file, scope, refs, "file")
        path = os.path.join(base_dir, os.path.expanduser(name))
        path = os.path.normpath(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ItemError(f"no such file: {path}") from None
        except OSError as e:
            raise ItemError(f"cannot read {path}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise ItemError(f"{path} is a directory, not a file of items")
        return _FileSource(path, name, _format(fanout, name), most, stat.S_ISREG(st.st_mode))
    if fanout.command is not None:
        cmd = _expand(fanout.command, scope, refs, "command")
        return _CommandSource(cmd, _format(fanout, None), most, env, cwd, on_stderr)
    if fanout.expr is not None:
        return _ListSource(_variable_items(fanout.expr, scope, refs), most)
    return _ListSource(fanout.items, most)


def _expand(text: str, scope, refs, key: str) -> str:
    try:
        return expand(expand_refs(text, refs), scope)
    except ExpandError as e:
        raise ItemError(f"`{key}`: {e}") from None


def _variable_items(expr: str, scope, refs) -> list:
    """A variable's items (its text is in memory anyway): a JSON array, else lines,
    else the words of a single line."""
    try:
        text = expand(expand_refs(expr, refs), scope).strip()
    except ExpandError as e:
        raise ItemError(str(e)) from None
    if text.startswith("["):
        try:
            value = _DECODE.decode(text)
        except msgspec.DecodeError as e:
            raise ItemError(str(e)) from None
        if type(value) is not list:
            raise ItemError("the items must be a JSON array")
        return [x if type(x) in (str, dict) else _ENCODE.encode(x).decode() for x in value]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        lines = lines[0].split()
    return lines


def item_key(item, key_expr: str | None, scope: dict[str, str], refs: dict[str, str]) -> str:
    """An item's stable key: `key_expr` expanded with ITEM (and a map item's fields) in
    scope, or the item itself (text as is; a map as canonical JSON, keys sorted).
    ItemError if it expands to nothing."""
    text = item if type(item) is str else _ENCODE.encode(item).decode()
    if key_expr is None:
        return text
    local = dict(scope)
    if type(item) is dict:
        local.update(item)
    local["ITEM"] = text
    try:
        key = expand(expand_refs(key_expr, dict(refs, ITEM=text)), local)
    except ExpandError as e:
        raise ItemError(f"`key`: {e}") from None
    if not key:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ItemError(f"the key `{key_expr}` is empty for the item `{shown}`")
    return key


def combinations(matrix) -> Iterator[dict[str, str]]:
    """The matrix's combinations, lazily, in order (axes in file order, last axis
    fastest), excludes left out, includes applied as `loader.matrix` documents."""
    names = [name for name, _ in matrix.axes]
    axes = set(names)
    excludes = [tuple(e) for e in matrix.exclude]
    # Each include: the axis pairs it must match, and the pairs it adds.
    includes = [(tuple((k, v) for k, v in e if k in axes),
                 tuple((k, v) for k, v in e if k not in axes)) for e in matrix.include]
    used = [False] * len(includes)
    if names:
        for values in itertools.product(*(vs for _, vs in matrix.axes)):
            combo = dict(zip(names, values))
            if any(all(combo[k] == v for k, v in e) for e in excludes):
                continue
            for j, (match, add) in enumerate(includes):
                if all(combo[k] == v for k, v in match):
                    used[j] = True
                    combo.update(add)
            yield combo
    for j, entry in enumerate(matrix.include):
        if not used[j]:
            yield dict(entry)
