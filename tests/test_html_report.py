"""`dagfast report RUN -o run.html`: one self-contained page, checked as written and as
a real headless browser (Debian's chromium, installed by .ci/run) renders it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap

import pytest

from spectools import dagfast

#   a -> slow -> c (fails, `c-broke` on stderr)
#   a -> quick
DAG = """\
    steps:
      - name: a
        command: 'true'
      - name: slow
        command: sleep 1
        depends: a
      - name: quick
        command: 'true'
        depends: a
      - name: c
        command: echo c-broke >&2; exit 4
        depends: slow
    """


def test_the_html_report_renders_its_bars_in_a_browser_without_errors(tmp_path):
    dag = tmp_path / "page.yaml"
    dag.write_text(textwrap.dedent(DAG))
    home = tmp_path / "home"
    assert dagfast("run", str(dag), home=home).code == 1
    page = tmp_path / "run.html"
    res = dagfast("report", str(dag), "-o", str(page), home=home)
    assert res.code == 0, res.err
    text = page.read_text()
    # Self-contained: nothing to fetch (the SVG namespace is a name, not a request).
    assert not re.search(r"\b(src|href)=", text)
    assert re.findall(r"https?://[^\"' ]+", text) == ["http://www.w3.org/2000/svg"]
    critical = re.search(r"<table id=critical>(.*?)</table>", text).group(1)
    assert re.findall(r"<tr><td>(\w+)</td>", critical) == ["a", "slow", "c"]
    assert re.findall(r'<g class="bar critical" data-name="(\w+)"', text) == ["a", "slow", "c"]
    failures = re.search(r"<div id=failures>(.*?)</div></div>", text).group(1)
    assert "<h3>c</h3><p>exit status 4</p><pre>c-broke</pre>" in failures
    slowest = re.search(r"<table id=slowest>(.*?)</table>", text).group(1)
    assert re.findall(r"<tr><td>(\w+)</td>", slowest)[0] == "slow"

    chromium = shutil.which("chromium")
    if chromium is None:  # as test_graph.py does for Graphviz
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("Chromium is not installed (.ci/run installs it)")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
         page.as_uri()],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The page's script ran and the browser laid out every bar with a size.
    assert re.search(r'<body data-rendered="4">', proc.stdout), proc.stdout[:500]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console


def test_a_steps_cost_is_shown_when_its_record_has_one():
    """The hook for what a step cost: fields of the record named for CPU or memory."""
    import msgspec

    from dagfast.records.store import StepRecord
    from dagfast.report.trace import cost

    class Costly(msgspec.Struct):
        status: int = 4
        cpu_user: float | None = 1.5
        cpu_system: float | None = None
        max_rss: int = 2048

    assert cost(StepRecord()) == {}
    assert cost(Costly()) == {"cpu_user": 1.5, "max_rss": 2048}
