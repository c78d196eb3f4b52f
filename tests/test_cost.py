"""What each step cost, from wait4's rusage: CPU seconds and peak memory in the record,
`status` (columns and a total), `--json` and `--junit`."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET

from spectools import dagfast

BURN = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"


def test_each_steps_cpu_time_and_peak_memory_reach_status_json_and_junit(tmp_path):
    dag = tmp_path / "cost.yaml"
    dag.write_text(
        "steps:\n"
        f"  - name: burn\n    command: sh -c '{BURN}'\n"
        f"  - name: big\n    command: {sys.executable} -c \"b = bytearray(200 << 20)\"\n"
        "  - name: never\n    command: 'true'\n    preconditions: test -e nothing-here\n"
    )
    home = tmp_path / "home"
    res = dagfast("run", "-q", str(dag), "--junit", str(tmp_path / "j.xml"), home=home)
    assert res.code == 0, res.out + res.err
    doc = json.loads(dagfast("status", "cost", "--json", home=home).out)
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["burn"]["cpu_seconds"] > 0
    assert (steps["big"]["peak_rss_kib"] or 0) >= 200 * 1024, steps  # the zeroed bytearray
    assert steps["never"]["cpu_seconds"] is None  # skipped: no process was reaped
    parts = steps["burn"]["cpu_seconds"] + steps["big"]["cpu_seconds"]
    assert doc["cpu_seconds"] >= parts - 1e-5  # each rounded to the microsecond
    text = dagfast("status", "cost", home=home).out
    assert "cpu" in text and "peak mem" in text and "s CPU in all steps" in text
    big_row = next(line for line in text.splitlines() if line.startswith("big "))
    assert "M" in big_row.split()[-1]
    root = ET.parse(tmp_path / "j.xml").getroot()
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert float(props["cost.big.cpu_seconds"]) > 0
    assert int(props["cost.big.peak_rss_kib"]) >= 200 * 1024
    events = [json.loads(line) for line in dagfast("run", "--json", str(dag), home=home).out.splitlines()]
    ended = {e["step"]: e for e in events if e["event"] == "step_finished"}
    assert ended["burn"]["cpu_seconds"] > 0


def test_a_small_step_reports_no_peak_memory_of_the_engine_before_or_after_a_big_one(tmp_path):
    # Until exec, a vfork'd child runs in the engine's memory, and the kernel counts
    # that in the child's peak: a step whose peak is no more than the engine's own gets
    # none. The engine's peak is read again only when a step's exceeds the last reading.
    dag = tmp_path / "order.yaml"
    dag.write_text(
        "type: chain\nsteps:\n"
        "  - name: small1\n    command: sh -c ':'\n"
        f"  - name: big\n    command: {sys.executable} -c \"b = bytearray(200 << 20)\"\n"
        "  - name: small2\n    command: sh -c ':'\n"
    )
    home = tmp_path / "home"
    assert dagfast("run", "-q", str(dag), home=home).code == 0
    steps = {s["name"]: s for s in json.loads(dagfast("status", "order", "--json",
                                                      home=home).out)["steps"]}
    assert steps["small1"]["peak_rss_kib"] is None, steps
    assert steps["big"]["peak_rss_kib"] >= 200 * 1024
    assert steps["small2"]["peak_rss_kib"] is None, steps
