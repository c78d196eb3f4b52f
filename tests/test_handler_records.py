"""Handlers are in the record: `status` shows a row for each handler that ran (named as
the console names it), `status RUN handlerOn.EVENT` shows one, `--json` lists them."""

from __future__ import annotations

import json

from spectools import dagfast


def test_status_shows_the_handlers_that_ran(tmp_path):
    dag = tmp_path / "hd.yaml"
    dag.write_text("steps:\n  - name: bad\n    command: sh -c 'exit 3'\n"
                   "handlerOn:\n"
                   "  failure:\n    command: sh -c 'echo handling; exit 5'\n"
                   "  success:\n    command: echo never\n"
                   "  exit:\n    command: echo bye\n")
    home = tmp_path / "home"
    assert dagfast("run", "-q", str(dag), home=home).code == 1
    text = dagfast("status", "hd", home=home).out
    table = text.split("\n\n", 1)[1].splitlines()[1:]  # the rows, after the header
    rows = {line.split()[0]: line.split()[1] for line in table}
    assert rows == {"bad": "failed", "handlerOn.failure": "failed", "handlerOn.exit": "succeeded"}
    one = dagfast("status", "hd", "handlerOn.failure", home=home)
    assert one.code == 0 and "status:   failed, exit 5" in one.out, one.out + one.err
    res = dagfast("status", "hd", "handlerOn.success", home=home)
    assert res.code != 0 and "did not run" in res.err
    doc = json.loads(dagfast("status", "hd", "--json", home=home).out)
    assert {on: h["status"] for on, h in doc["handlers"].items()} == {
        "failure": "failed", "exit": "succeeded"}
    assert doc["handlers"]["failure"]["exit_code"] == 5
