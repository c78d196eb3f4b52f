"""Item sources of a fan-out step (`runtime.items`): real files and real commands, each
read through the one interface the runner uses (`open_source`, `take`, `close`)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import sys
import time
import tracemalloc

import pytest

from dagfast.loader.matrix import count
from dagfast.model import Fanout, Matrix
from dagfast.runtime.items import ItemError, combinations, item_key, open_source


def source(fanout: Fanout, tmp_path, **kw):
    kw.setdefault("scope", {})
    kw.setdefault("refs", {})
    return open_source(fanout, base_dir=str(tmp_path), env=dict(os.environb),
                       cwd=str(tmp_path), **kw)


async def drain(src, n: int = 3) -> list:
    """Every item, taken `n` at a time; an ItemError ends the list as ("error", text)."""
    out = []
    try:
        while batch := await src.take(n):
            assert len(batch) <= n
            out += batch
    except ItemError as e:
        out.append(("error", str(e)))
    finally:
        src.close()
    return out


def items(fanout: Fanout, tmp_path, **kw) -> list:
    return asyncio.run(drain(source(fanout, tmp_path, **kw)))


def write(tmp_path, name: str, data: str | bytes):
    path = tmp_path / name
    path.write_bytes(data if type(data) is bytes else data.encode())
    return path


# ---------------------------------------------------------------------------------------
# Each kind of source


def test_items_as_written_and_from_a_variable(tmp_path):
    assert items(Fanout(items=("a", {"k": "v"})), tmp_path) == ["a", {"k": "v"}]
    scope = {"J": '["a b", 1, {"x": 2}]', "L": "\n one \n\n two\n", "W": "x y  z"}
    assert items(Fanout(expr="${J}"), tmp_path, scope=scope) == ["a b", "1", {"x": 2}]
    assert items(Fanout(expr="${L}"), tmp_path, scope=scope) == ["one", "two"]
    assert items(Fanout(expr="${W}"), tmp_path, scope=scope) == ["x", "y", "z"]
    assert items(Fanout(expr="${OUT.list}"), tmp_path, refs={"OUT": '{"list": ["p", "q"]}'}) \
        == ["p", "q"]
    with pytest.raises(ItemError) as e:  # a variable is read at once
        source(Fanout(expr="[1,"), tmp_path)
    assert str(e.value) == "Input data was truncated"


def test_lines_keep_their_spaces_and_skip_blank_lines(tmp_path):
    write(tmp_path, "items.txt", " a \r\n\nb\n   \n\tc d\nlast")
    assert items(Fanout(file="items.txt"), tmp_path) == [" a ", "b", "\tc d", "last"]


def test_jsonl_gives_text_and_map_items(tmp_path):
    write(tmp_path, "items.ndjson",
          '{"id": 1, "name": "x", "tags": ["a"], "none": null}\n\n"text"\n3\n[1, 2]\ntrue\n')
    assert items(Fanout(file="items.ndjson"), tmp_path) == [
        {"id": "1", "name": "x", "tags": '["a"]', "none": ""}, "text", "3", "[1,2]", "true",
    ]


def test_a_json_array_is_split_as_it_streams(tmp_path):
    # Commas, brackets and escaped quotes inside strings do not split; chunks of 3
    # elements at a time through take(2).
    data = ['a,]b', {"x": [1, {"y": "]"}], "n": None}, 'q"u\\o,te', 5, True, [[]], {}]
    write(tmp_path, "items.json", "  \n" + json.dumps(data, indent=2) + "\n")
    assert asyncio.run(drain(source(Fanout(file="items.json"), tmp_path), 2)) == [
        "a,]b", {"x": '[1,{"y":"]"}]', "n": ""}, 'q"u\\o,te', "5", "true", "[[]]", {},
    ]
    write(tmp_path, "empty.json", "[ ]")
    assert items(Fanout(file="empty.json"), tmp_path) == []


def test_a_large_json_array_across_many_chunks(tmp_path):
    data = [{"id": i, "s": "x" * (i % 300) + ",]\\\""} for i in range(5000)]
    write(tmp_path, "big.json", json.dumps(data))
    got = items(Fanout(file="big.json"), tmp_path)
    assert len(got) == 5000
    assert got[4999] == {"id": "4999", "s": "x" * (4999 % 300) + ",]\\\""}


def test_the_format_overrides_the_extension(tmp_path):
    write(tmp_path, "items.txt", '["a", "b"]')
    assert items(Fanout(file="items.txt"), tmp_path) == ['["a", "b"]']
    assert items(Fanout(file="items.txt", format="json"), tmp_path) == ["a", "b"]


def test_the_file_path_is_expanded_and_relative_to_the_dag(tmp_path):
    (tmp_path / "data").mkdir()
    write(tmp_path, "data/items.txt", "a\n")
    assert items(Fanout(file="${D}/items.txt"), tmp_path, scope={"D": "data"}) == ["a"]
    assert items(Fanout(file=str(tmp_path / "data" / "items.txt")), tmp_path / "data") == ["a"]


def test_a_command_source_with_its_stderr(tmp_path):
    err = []
    code = "import sys; print('a'); print('b'); print('warn', file=sys.stderr)"
    cmd = f'{sys.executable} -c "{code}"'
    got = items(Fanout(command=cmd), tmp_path, on_stderr=err.append)
    assert got == ["a", "b"]
    assert b"".join(err) == b"warn\n"
    assert items(Fanout(command='printf \'{"n": 1}\\n{"n": 2}\\n\'', format="jsonl"),
                 tmp_path) == [{"n": "1"}, {"n": "2"}]
    assert items(Fanout(command="echo ${N}", format="lines"), tmp_path, scope={"N": "7"}) == ["7"]


def test_a_fifo_waits_for_its_writer_without_blocking_the_loop(tmp_path):
    fifo = tmp_path / "items.fifo"
    os.mkfifo(fifo)

    async def main():
        src = source(Fanout(file="items.fifo"), tmp_path)
        reading = asyncio.ensure_future(drain(src))
        await asyncio.sleep(0)  # the loop still turns while the source waits
        assert not reading.done()
        await asyncio.to_thread(fifo.write_text, "x\ny\n")
        return await reading

    assert asyncio.run(main()) == ["x", "y"]


# ---------------------------------------------------------------------------------------
# Errors, located


def test_a_missing_file_or_a_directory(tmp_path):
    with pytest.raises(ItemError) as e:
        source(Fanout(file="items.txt"), tmp_path)
    assert str(e.value) == f"no such file: {tmp_path}/items.txt"
    (tmp_path / "dir").mkdir()
    with pytest.raises(ItemError) as e:
        source(Fanout(file="dir"), tmp_path)
    assert str(e.value) == f"{tmp_path}/dir is a directory, not a file of items"
    with pytest.raises(ItemError) as e:
        source(Fanout(file="${X"), tmp_path)
    assert str(e.value) == "`file`: `${X` has no closing `}`"


def test_a_line_that_is_not_utf8_comes_after_the_lines_before_it(tmp_path):
    write(tmp_path, "items.txt", b"a\n" * 16 + b"\xff\xfe\n" + b"b\n")
    got = items(Fanout(file="items.txt"), tmp_path)
    assert got == ["a"] * 16 + [("error", "items.txt:17: not UTF-8")]
    write(tmp_path, "items.jsonl", b'"a"\n"\xff"\n')
    assert items(Fanout(file="items.jsonl"), tmp_path) == [
        "a", ("error", "items.jsonl:2: not UTF-8")]


def test_a_bad_json_line(tmp_path):
    write(tmp_path, "items.jsonl", '{"i": 1}\n' * 1041 + "{nope}\n")
    got = items(Fanout(file="items.jsonl"), tmp_path)
    assert len(got) == 1042
    assert got[-1] == ("error", "items.jsonl:1042: not valid JSON (JSON is malformed: object "
                                "keys must be strings (byte 1))")


def test_a_bad_json_array_element_names_its_line(tmp_path):
    write(tmp_path, "items.json", '[\n  1,\n  2,\n  {"a":\n   nope}\n]')
    assert items(Fanout(file="items.json"), tmp_path) == [
        "1", "2", ("error", "items.json:4: not valid JSON (JSON is malformed: invalid "
                            "character (byte 16))")]
    for text, error in [
        ('{"a": 1}', "items.json:1: not a JSON array"),
        ("[1, 2", "items.json:1: the JSON array is not closed (no `]`)"),
        ("[1,,2]", "items.json:1: an empty element"),
        ("[1] [2]", "items.json:1: more after the JSON array's closing `]`"),
        ("\n\n", "items.json: empty, not a JSON array"),
    ]:
        write(tmp_path, "items.json", text)
        assert items(Fanout(file="items.json"), tmp_path)[-1] == ("error", error), text


def test_dev_zero_stops_at_the_item_length_cap(tmp_path):
    assert items(Fanout(file="/dev/zero"), tmp_path) == [
        ("error", "/dev/zero:1: a line longer than 1,048,576 bytes")]
    assert items(Fanout(file="/dev/zero", format="json"), tmp_path) == [
        ("error", "/dev/zero:1: not a JSON array")]
    write(tmp_path, "long.json", "[" + '"' + "x" * (2 << 20) + '"]')
    assert items(Fanout(file="long.json"), tmp_path) == [
        ("error", "long.json:1: an element longer than 1,048,576 bytes")]


def test_a_command_that_fails_midway(tmp_path):
    cmd = f"{sys.executable} -c \"print('a'); print('b')\"; exit 4"
    assert items(Fanout(command=cmd), tmp_path) == [
        "a", "b", ("error", f"the item command `{cmd}` exited with status 4 after 2 items")]
    assert items(Fanout(command="echo a; kill -TERM $$"), tmp_path) == [
        "a", ("error", "the item command `echo a; kill -TERM $$` was killed by SIGTERM after "
                       "1 items")]


def test_max_items(tmp_path):
    write(tmp_path, "items.txt", "".join(f"{i}\n" for i in range(10)))
    assert items(Fanout(file="items.txt", max_items=10), tmp_path) == [str(i) for i in range(10)]
    assert items(Fanout(file="items.txt", max_items=9), tmp_path) == \
        [str(i) for i in range(9)] + [("error", "more than maxItems (9) items")]
    assert items(Fanout(items=("a", "b", "c"), max_items=2), tmp_path) == \
        ["a", "b", ("error", "more than maxItems (2) items")]
    assert items(Fanout(command="seq 5", max_items=5), tmp_path) == ["1", "2", "3", "4", "5"]


# ---------------------------------------------------------------------------------------
# Bounded memory, and processes stopped


def test_a_large_file_is_read_through_a_window(tmp_path):
    path = tmp_path / "items.txt"
    with open(path, "w") as f:
        for i in range(200_000):
            f.write(f"item-{i:08d}-{'x' * 8}\n")
    size = path.stat().st_size
    assert size > 4_000_000

    async def main():
        src = source(Fanout(file="items.txt"), tmp_path)
        n = most_items = most_bytes = 0
        tracemalloc.start()
        try:
            while batch := await src.take(64):
                n += len(batch)
                ahead, pending = src.buffered()
                most_items, most_bytes = max(most_items, ahead), max(most_bytes, pending)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            src.close()
        return n, most_items, most_bytes, peak

    n, most_items, most_bytes, peak = asyncio.run(main())
    assert n == 200_000
    assert most_items < 64 * 1024 // 22 + 64  # one chunk's worth of items, at most
    assert most_bytes < 64 * 1024
    assert peak < 2_000_000 < size, peak


def test_close_kills_a_command_that_never_ends(tmp_path):
    async def main():
        src = source(Fanout(command="yes item & yes item; wait"), tmp_path)
        assert await src.take(5) == ["item"] * 5
        pid = src.pid
        src.close()
        src.close()  # idempotent
        await src.aclose()
        return pid

    pid = asyncio.run(main())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped (a zombie would still answer)
    # The rest of its group (the background `yes`, now init's to reap): killed too.
    for _ in range(1000):  # bounded, not timed
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    else:
        pytest.fail(f"process group {pid} still has a process")


def test_close_alone_lets_the_loop_reap_the_command(tmp_path):
    async def main():
        src = source(Fanout(command="yes"), tmp_path)
        await src.take(1)
        pid = src.pid
        src.close()
        gone = False
        for _ in range(1000):  # the loop's child watcher reaps it; bounded, not timed
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                gone = True
                break
            await asyncio.sleep(0.01)
        await src.aclose()  # the pipes' transport closed before the loop is
        return gone

    assert asyncio.run(main())


# ---------------------------------------------------------------------------------------
# Keys


def test_item_keys():
    assert item_key("a", None, {}, {}) == "a"
    assert item_key({"b": "2", "a": "1"}, None, {}, {}) == '{"a":"1","b":"2"}'
    assert item_key({"id": "7", "x": "y"}, "${ITEM.id}", {}, {}) == "7"
    assert item_key({"id": "7", "x": "y"}, "${id}-${x}", {}, {}) == "7-y"
    assert item_key("a", "${P}-${ITEM}", {"P": "p"}, {}) == "p-a"
    with pytest.raises(ItemError) as e:
        item_key({"x": "y"}, "${ITEM.id}", {}, {})
    assert str(e.value) == 'the key `${ITEM.id}` is empty for the item `{"x":"y"}`'


# ---------------------------------------------------------------------------------------
# Matrix combinations


def M(axes: dict, include=(), exclude=()) -> Matrix:
    return Matrix(tuple((k, tuple(v)) for k, v in axes.items()),
                  tuple(tuple(e.items()) for e in include),
                  tuple(tuple(e.items()) for e in exclude))


def test_combinations_last_axis_fastest_with_exclude_and_include(tmp_path):
    m = M({"os": ["linux", "mac"], "arch": ["x86", "arm"]},
          exclude=[{"os": "mac", "arch": "x86"}], include=[{"os": "windows", "arch": "x86"}])
    expected = [
        {"os": "linux", "arch": "x86"},
        {"os": "linux", "arch": "arm"},
        {"os": "mac", "arch": "arm"},
        {"os": "windows", "arch": "x86"},
    ]
    assert list(combinations(m)) == expected
    assert items(Fanout(matrix=m), tmp_path) == expected
    assert count(m) == 4


def test_githubs_exclude_example():
    m = M({"os": ["macos-latest", "windows-latest"], "version": ["12", "14", "16"],
           "environment": ["staging", "production"]},
          exclude=[{"os": "macos-latest", "version": "12", "environment": "production"},
                   {"os": "windows-latest", "version": "16"}])
    got = list(combinations(m))
    assert len(got) == 9 == count(m)
    assert {"os": "macos-latest", "version": "12", "environment": "staging"} in got
    assert not any(c["os"] == "windows-latest" and c["version"] == "16" for c in got)


def test_githubs_include_example():
    # docs.github.com, "Expanding or adding matrix configurations": the result listed there.
    m = M({"fruit": ["apple", "pear"], "animal": ["cat", "dog"]}, include=[
        {"color": "green"},
        {"color": "pink", "animal": "cat"},
        {"fruit": "apple", "shape": "circle"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ])
    assert list(combinations(m)) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]
    assert count(m) == 6


def test_githubs_include_only_and_extend_examples():
    m = M({}, include=[{"site": "production", "datacenter": "site-a"},
                       {"site": "staging", "datacenter": "site-b"}])
    assert list(combinations(m)) == [{"site": "production", "datacenter": "site-a"},
                                     {"site": "staging", "datacenter": "site-b"}]
    m = M({"os": ["windows-latest", "ubuntu-latest"], "node": ["14", "16"]},
          include=[{"os": "windows-latest", "node": "16", "npm": "6"}])
    assert list(combinations(m)) == [
        {"os": "windows-latest", "node": "14"},
        {"os": "windows-latest", "node": "16", "npm": "6"},
        {"os": "ubuntu-latest", "node": "14"},
        {"os": "ubuntu-latest", "node": "16"},
    ]


def test_combinations_are_lazy():
    m = M({f"a{i}": [str(j) for j in range(10)] for i in range(9)})  # 10^9
    assert next(itertools.islice(combinations(m), 5, None)) == {
        **{f"a{i}": "0" for i in range(8)}, "a8": "5"}
    assert count(m) == 10**9


def test_the_count_agrees_with_the_listing():
    rnd = random.Random(15)
    for _ in range(300):
        axes = {f"x{i}": [str(v) for v in range(rnd.randint(1, 4))]
                for i in range(rnd.randint(0, 4))}
        names = list(axes)

        def entry(extra: bool) -> dict:
            keys = rnd.sample(names, rnd.randint(1, len(names))) if names else []
            e = {k: str(rnd.randint(0, 4)) for k in keys}
            if extra or not e:
                e["extra"] = str(rnd.randint(0, 2))
            return e

        exclude = [entry(False) for _ in range(rnd.randint(0, 4))] if names else []
        include = [entry(rnd.random() < 0.5) for _ in range(rnd.randint(0 if names else 1, 3))]
        m = M(axes, include, exclude)
        assert count(m) == len(list(combinations(m))), m
