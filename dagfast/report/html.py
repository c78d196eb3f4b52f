"""`dagfast report RUN -o run.html`: one self-contained HTML page about a recorded run,
for a browser with no network and no server: a Gantt timeline (SVG, one row a
concurrency lane, as report.trace places them) with the critical path highlighted, the
slowest steps, and the failures with the end of their stderr.

The bars are drawn here, in SVG; the page's small script only adds hovering and marks
the page `data-rendered` with the number of bars the browser laid out (what the test in
a headless browser reads)."""

from __future__ import annotations

import html
import time

from dagfast.records.read import RunState, step_log
from dagfast.report.trace import Bar

__all__ = ["cost_text", "critical_path", "render"]

ROW = 22  # pixels a lane
WIDTH = 1000  # pixels of the time axis
LABEL = 70  # pixels left of the axis for the lane names
SLOWEST = 10
EXCERPT_BYTES = 4096
_COLOURS = {
    "succeeded": "#4caf50", "failed": "#e53935", "aborted": "#9e9e9e",
    "skipped": "#bdbdbd", "running": "#1e88e5", "interrupted": "#fb8c00",
    "partially_succeeded": "#c0ca33",
}


def critical_path(bars: list[Bar]) -> list[Bar]:
    """The chain that decided when the run ended: from the last bar to end, back
    through the dependency of each that ended last, first step first."""
    if not bars:
        return []
    by_name = {b.name: b for b in bars}
    tops = [b for b in bars if b.depth == 0] or bars
    chain = [max(tops, key=lambda b: b.end)]
    while True:
        deps = [by_name[d] for d in chain[-1].depends if d in by_name]
        if not deps:
            break
        chain.append(max(deps, key=lambda b: b.end))
    return chain[::-1]


def render(state: RunState, bars: list[Bar]) -> str:
    """The whole page for the run `state` drawn as `bars` (report.trace.timeline)."""
    t0 = min([state.started_at or 0.0] + [b.start for b in bars])
    t1 = max([state.finished_at or state.last_recorded_at or t0] + [b.end for b in bars])
    span = max(t1 - t0, 1e-6)
    chain = critical_path(bars)
    critical = {id(b) for b in chain}
    lanes = max([b.lane for b in bars] + [-1]) + 1
    title = f"{state.dag_name} {state.run_id}"
    parts = [_HEAD.format(title=html.escape(title), style=_STYLE)]
    took = f"{t1 - t0:.2f} s" if bars else "-"
    parts.append(
        f"<h1>{html.escape(state.dag_name)}</h1><p class=meta>run "
        f"<code>{html.escape(state.run_id)}</code> &middot; <b class=\"st-{state.label}\">"
        f"{html.escape(state.label)}</b> &middot; started {html.escape(_when(t0))} &middot; "
        f"took {took} &middot; {len(bars)} step executions on {lanes} "
        f"lane{'s' if lanes != 1 else ''}</p>"
    )
    parts.append(_gantt(bars, t0, span, lanes, critical))
    parts.append(_critical_table(chain, t0))
    parts.append(_slowest(bars))
    parts.append(_failures(bars))
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "".join(parts)


def _gantt(bars: list[Bar], t0: float, span: float, lanes: int, critical: set) -> str:
    height = lanes * ROW + 30
    out = [f'<h2>Timeline</h2><svg id=gantt xmlns="http://www.w3.org/2000/svg" '
           f'width="{LABEL + WIDTH + 10}" height="{height}" '
           f'viewBox="0 0 {LABEL + WIDTH + 10} {height}">']
    for k in range(6):  # the time axis, in fifths
        x = LABEL + WIDTH * k / 5
        out.append(f'<line class=grid x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{lanes * ROW}"/>'
                   f'<text class=tick x="{x:.1f}" y="{lanes * ROW + 16}">'
                   f'{span * k / 5:.2f}s</text>')
    for lane in range(lanes):
        out.append(f'<text class=lane x="4" y="{lane * ROW + 15}">slot {lane + 1}</text>')
    for b in bars:
        x = LABEL + WIDTH * (b.start - t0) / span
        w = max(1.0, WIDTH * (b.end - b.start) / span)
        y = b.lane * ROW + 2
        colour = _COLOURS.get(b.status, "#757575")
        crit = " critical" if id(b) in critical else ""
        tip = f"{b.name}: {b.status}, {b.end - b.start:.3f} s"
        if b.exit_code is not None:
            tip += f", exit {b.exit_code}"
        if b.attempts > 1:
            tip += f", {b.attempts} attempts"
        if b.cost:
            tip += ", " + cost_text(b)
        out.append(
            f'<g class="bar{crit}" data-name="{html.escape(b.name)}">'
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{ROW - 4}" fill="{colour}"/>'
            f'<title>{html.escape(tip)}</title>'
            + (f'<text class=name x="{x + 3:.2f}" y="{y + 13}">{html.escape(b.name)}</text>'
               if w > 8 * len(b.name) else "")
            + "</g>"
        )
    out.append("</svg><p class=legend>Bars outlined in black are the critical path. "
               "Hover a bar for its details.</p>")
    return "".join(out)


def _critical_table(chain: list[Bar], t0: float) -> str:
    if not chain:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(b.name)}</td><td>{b.start - t0:.3f}</td>"
        f"<td>{b.end - b.start:.3f}</td><td>{html.escape(b.status)}</td></tr>" for b in chain
    )
    return ("<h2>Critical path</h2><table id=critical><tr><th>step</th><th>start (s)</th>"
            f"<th>duration (s)</th><th>status</th></tr>{rows}</table>")


def _slowest(bars: list[Bar]) -> str:
    top = sorted(bars, key=lambda b: b.end - b.start, reverse=True)[:SLOWEST]
    rows = "".join(
        f"<tr><td>{html.escape(b.name)}</td><td>{b.end - b.start:.3f}</td>"
        f"<td>{html.escape(b.status)}</td><td>{b.attempts}</td>"
        f"<td>{html.escape(cost_text(b))}</td></tr>" for b in top
    )
    return ("<h2>Slowest steps</h2><table id=slowest><tr><th>step</th><th>duration (s)</th>"
            f"<th>status</th><th>attempts</th><th>cost</th></tr>{rows}</table>")


def cost_text(b: Bar) -> str:
    """A step's cost as its record gives it ("" when the record has none)."""
    return ", ".join(f"{k} {v}" for k, v in b.cost.items())


def _failures(bars: list[Bar]) -> str:
    failed = [b for b in bars if b.status == "failed"]
    if not failed:
        return "<h2>Failures</h2><p id=failures>No step failed.</p>"
    out = ["<h2>Failures</h2><div id=failures>"]
    for b in failed:
        err = step_log(b.run_path, b.step, "err", last=EXCERPT_BYTES)
        text = err.decode("utf-8", "replace").rstrip("\n")
        out.append(
            f"<div class=failure><h3>{html.escape(b.name)}</h3><p>{html.escape(b.error)}</p>"
            f"<pre>{html.escape(text) if text else '(no stderr)'}</pre></div>"
        )
    out.append("</div>")
    return "".join(out)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t))


_HEAD = ('<!DOCTYPE html><html lang=en><head><meta charset="utf-8">'
         '<meta name="viewport" content="width=device-width, initial-scale=1">'
         "<title>{title}</title><style>{style}</style></head><body>")

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin: 0 0 .2em; } h2 { margin-top: 1.5em; }
.meta code { background: #f2f2f2; padding: 0 .3em; }
.st-failed, .st-aborted, .st-interrupted { color: #c62828; } .st-succeeded { color: #2e7d32; }
svg { border: 1px solid #ddd; background: #fff; max-width: 100%; height: auto; }
.grid { stroke: #eee; } .tick, .lane { font-size: 11px; fill: #666; }
.name { font-size: 11px; fill: #fff; pointer-events: none; }
.bar rect { stroke: none; } .bar.critical rect { stroke: #000; stroke-width: 2; }
.bar.hover rect { opacity: .7; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; border-bottom: 1px solid #eee;
  text-align: left; }
pre { background: #fafafa; border-left: 3px solid #e53935; padding: .5em; overflow: auto; }
.legend { color: #666; font-size: 12px; }
"""

_SCRIPT = """
(function () {
  var bars = document.querySelectorAll('#gantt .bar');
  var shown = 0;
  bars.forEach(function (g) {
    var box = g.querySelector('rect').getBBox();
    if (box.width > 0 && box.height > 0) shown++;
    g.addEventListener('mouseenter', function () { g.classList.add('hover'); });
    g.addEventListener('mouseleave', function () { g.classList.remove('hover'); });
  });
  document.body.setAttribute('data-rendered', String(shown));
})();
"""
