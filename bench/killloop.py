"""Kill -9 loop: the engine dies at random moments, some just after a step started.

Each round starts `dagfast run` on a DAG whose steps leave background children, one of
them `setsid` out of the step's group; SIGKILLs the engine
(after a random delay, or the moment a chosen step process appears); then polls /proc,
with a deadline of 10 s, until no process of the run is alive, and times it; then
`dagfast retry` must finish the run without finding anything left to end.

    python bench/killloop.py [--rounds 30] [--seed N]

Prints one line per round and a summary; exits 1 if any round left a step alive one
second after the engine died, left a guardian behind, or could not be retried.
tests/test_crash_guardian.py runs a few rounds of the same loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DEADLINE_S = 10.0  # how long to wait for the run's processes to go
PROMISE_S = 1.0  # what dagfast promises: none alive one second after the engine died

def write_dag(folder: Path) -> Path:
    """The DAG each round runs: 12 steps of ~1.6 s, 6 at a time, a sub-DAG step whose own
    step leaves children the same way, then a join."""
    lines = ["maxActiveSteps: 6", "steps:"]
    for i in range(12):
        # Each outlives the promise: a step left running would still be there at 1 s.
        d = f"1.{5 + i % 4}"
        lines += [f"  - name: w{i}",
                  f"    command: sh -c 'sleep {d} & setsid sleep {d} & sleep {d}; wait'"]
    lines += ["  - name: sub", "    call: sub.yaml"]
    (folder / "sub.yaml").write_text(
        "steps:\n  - name: inner\n"
        "    command: sh -c 'sleep 1.5 & setsid sleep 1.5 & sleep 1.5; wait'\n")
    lines += ["  - name: join", "    depends: [" + ", ".join(f"w{i}" for i in range(12))
              + ", sub]", "    command: sleep 0.1"]
    dag = folder / "loop.yaml"
    dag.write_text("\n".join(lines) + "\n")
    return dag


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def run_processes(token: str, guardians: bool = False) -> list[int]:
    """Live (not zombie) processes started under `token`: the run's steps and their
    children (they carry a DAG_RUN_ID), or, with `guardians`, the run's guardians."""
    mark = b"\0KILLLOOP_TOKEN=" + token.encode() + b"\0"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        env = b"\0" + _read(f"/proc/{name}/environ")  # a zombie's reads empty
        if mark not in env:
            continue
        comm = _read(f"/proc/{name}/comm").strip()
        if guardians:
            hit = comm == b"dagfast-guard"
        else:
            hit = b"\0DAG_RUN_ID=" in env and comm != b"dagfast-guard"
        if hit:
            found.append(int(name))
    return found


def _wait_gone(token: str, guardians: bool, since: float) -> float | None:
    """Seconds from `since` until none of those processes is alive, None at the deadline."""
    while True:
        now = time.monotonic()
        if not run_processes(token, guardians):
            return now - since
        if now - since > DEADLINE_S:
            return None
        time.sleep(0.002)


@dataclasses.dataclass
class Round:
    moment: str  # when the engine was killed
    alive_at_kill: int  # the run's processes alive when it was
    clean_s: float | None  # until none was alive; None: some outlived the deadline
    guardian_gone: bool
    retried: str  # "ok", "no record" or what went wrong


def one_round(dag: Path, home: Path, rng: random.Random, python: str = sys.executable) -> Round:
    """Start the run, kill the engine at a random moment, time the clean-up, retry."""
    token = uuid.uuid4().hex
    env = dict(os.environ, DAGFAST_HOME=str(home), KILLLOOP_TOKEN=token)
    before = set(os.listdir(home / "runs" / dag.stem)) if (home / "runs" / dag.stem).exists() else set()
    engine = subprocess.Popen([python, "-m", "dagfast", "run", "--quiet", str(dag)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if rng.random() < 0.5:
        delay = rng.uniform(0.0, 3.5)
        moment = f"after {delay:.2f} s"
        time.sleep(delay)
    else:
        # The moment the k-th step process appears (a step just started).
        k = rng.randint(1, 12)
        moment = f"as step process {k} appeared"
        seen: set[int] = set()
        deadline = time.monotonic() + DEADLINE_S
        while len(seen) < k and engine.poll() is None and time.monotonic() < deadline:
            seen.update(run_processes(token))
    alive = len(run_processes(token))
    engine.send_signal(signal.SIGKILL)
    died = time.monotonic()
    engine.wait()
    clean = _wait_gone(token, False, died)
    guardian_gone = _wait_gone(token, True, died) is not None
    runs = set(os.listdir(home / "runs" / dag.stem)) - before if (home / "runs" / dag.stem).exists() else set()
    if not runs:
        return Round(moment, alive, clean, guardian_gone, "no record")
    (run_id,) = runs
    res = subprocess.run([python, "-m", "dagfast", "retry", run_id], env=env,
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        retried = f"retry exited {res.returncode}: {res.stderr.strip()[-200:]}"
    elif "left by the interrupted attempt" in res.stdout + res.stderr:
        retried = "retry found processes left by the dead engine"
    else:
        retried = "ok"
    return Round(moment, alive, clean, guardian_gone, retried)


def failures(r: Round) -> list[str]:
    """What is wrong with a round, in words (empty: nothing)."""
    bad = []
    if r.clean_s is None:
        bad.append(f"step processes still alive {DEADLINE_S:.0f} s after the engine died")
    elif r.clean_s > PROMISE_S:
        bad.append(f"step processes alive {r.clean_s:.3f} s after the engine died")
    if not r.guardian_gone:
        bad.append("a guardian outlived the deadline")
    if r.retried not in ("ok", "no record"):
        bad.append(r.retried)
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill loop: {args.rounds} rounds, seed {seed}")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="killloop-") as tmp:
        dag = write_dag(Path(tmp))
        for n in range(args.rounds):
            r = one_round(dag, Path(tmp) / "home", rng)
            rounds.append(r)
            clean = "never" if r.clean_s is None else f"{r.clean_s * 1000:.0f} ms"
            bad = failures(r)
            print(f"{n + 1:3d}  killed {r.moment:<28} alive {r.alive_at_kill:2d}  "
                  f"clean in {clean:>7}  retry {r.retried}" + (f"  FAIL: {bad}" if bad else ""),
                  flush=True)
    times = [r.clean_s for r in rounds if r.clean_s is not None]
    failed = [r for r in rounds if failures(r)]
    late = sum(1 for r in rounds if r.clean_s is None or r.clean_s > PROMISE_S)
    if times:
        print(f"clean-up after death: median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms over {len(times)} rounds")
    print(f"rounds with a step alive {PROMISE_S:.0f} s after the death: {late}; "
          f"rounds failed: {len(failed)} of {len(rounds)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
