"""Fan-out items against a static fan-out of the same command, in the same minutes.

    python bench/fanout_items.py                 # 10,000 items, 3 rounds interleaved
    python bench/fanout_items.py --n 2000 --rounds 1
    python bench/fanout_items.py --million       # also 1,000,000 items from a lines file
                                                 # at maxConcurrent 64 (minutes; on demand)

Each round times, one after the other:
- `static`: N steps of `true`, no dependencies, maxActiveSteps 16 (the plain fast path);
- `items`: one step, `parallel:` over N items of a one-step sub-DAG running `true`,
  maxConcurrent 16 (issue 15's target: <= 1.25 x `static`);
- `command`: one command step, `parallel:` over the lines of a file, `true` per item.

It prints the wall times, the ratios to `static` (medians over the rounds), the files
each run left under its run directory, the bytes of record per item (journal and the
output store's index) and the engine's peak RSS, with the load average. Runs go to a
temporary DAGFAST_HOME; dagfast is started through this interpreter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_dags(tmp: Path, n: int, concurrency: int = 16) -> dict[str, Path]:
    steps = "".join(f"  - name: s{k}\n    command: 'true'\n" for k in range(n))
    (tmp / "static.yaml").write_text(f"maxActiveSteps: 16\nsteps:\n{steps}")
    (tmp / "child.yaml").write_text("params: [ITEM=x]\nsteps:\n  - name: work\n"
                                    "    command: 'true'\n")
    (tmp / "items.txt").write_text("".join(f"{k}\n" for k in range(n)))
    listed = ", ".join(f'"{k}"' for k in range(n))
    (tmp / "items.yaml").write_text(
        "steps:\n  - name: fan\n    call: child.yaml\n    parallel:\n"
        f"      items: [{listed}]\n      maxConcurrent: {concurrency}\n")
    (tmp / "command.yaml").write_text(
        "steps:\n  - name: fan\n    command: 'true'\n    parallel:\n"
        f"      file: items.txt\n      maxConcurrent: {concurrency}\n")
    return {name: tmp / f"{name}.yaml" for name in ("static", "items", "command")}


def timed(dag: Path, home: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one `dagfast run -q`."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", "-q", str(dag)],
                            env=dict(os.environ, DAGFAST_HOME=str(home)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this run's own peak, not the children's max
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{dag.name} failed: exit {proc.returncode}")
    return took, usage.ru_maxrss


def last_run(home: Path, name: str) -> Path:
    runs = sorted((home / "runs" / name).iterdir())
    return runs[-1]


def footprint(run: Path, items: int) -> tuple[int, float]:
    files = [p for p in run.rglob("*") if p.is_file()]
    record = sum(p.stat().st_blocks * 512 for p in files if p.name in ("journal", "output.idx"))
    return len(files), record / items


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--million", action="store_true",
                    help="also run 1,000,000 items of `true` from a lines file at "
                    "maxConcurrent 64 and report its peak RSS (target < 300 MB)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dagfast-items-") as d:
        tmp = Path(d)
        dags = write_dags(tmp, args.n)
        home = tmp / "home"
        print(f"N={args.n:,}, {args.rounds} round(s), load average {os.getloadavg()[0]:.2f}")
        times: dict[str, list[float]] = {k: [] for k in dags}
        peaks: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, dag in dags.items():
                took, peak = timed(dag, home)
                times[name].append(took)
                peaks[name] = max(peaks.get(name, 0), peak)
        base = statistics.median(times["static"])
        for name in dags:
            med = statistics.median(times[name])
            files, per_item = footprint(last_run(home, name), args.n)
            print(f"{name:8} median {med:6.2f} s  ({med / base:4.2f} x static)  "
                  f"files {files:3}  record {per_item:6.1f} B/item  "
                  f"peak RSS {peaks[name] / 1024:6.1f} MB  "
                  f"(runs: {', '.join(f'{t:.2f}' for t in times[name])})")
        if args.million:
            (tmp / "million.txt").write_text("".join(f"{k}\n" for k in range(1_000_000)))
            (tmp / "million.yaml").write_text(
                "steps:\n  - name: fan\n    command: 'true'\n    parallel:\n"
                "      file: million.txt\n      maxConcurrent: 64\n")
            took, peak = timed(tmp / "million.yaml", home)
            files, per_item = footprint(last_run(home, "million"), 1_000_000)
            print(f"million  {took:6.1f} s ({1_000_000 / took:,.0f} items/s)  files {files}  "
                  f"record {per_item:.1f} B/item  peak RSS {peak / 1024:.1f} MB "
                  f"(target < 300)  load average {os.getloadavg()[0]:.2f}")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
