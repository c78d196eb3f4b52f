"""Side-by-side performance driver: dagfast against the physical limit and other engines.

Every engine runs the same DAG of shell steps, generated in its own input language:

    dagfast   `dagfast run [--quiet] dag.yaml`        (Dagu-style YAML, type: graph)
    dask      `dagfast run --executor dask dag.yaml`   (steps on a LocalCluster of 2 worker
              processes started for the run; N <= 1,000 unless --dask-large)
    c         bench/spawn.c, posix_spawn + waitpid     (the reference: ratio 1.00)
    xargs     `xargs -0 -P J -n 1 sh -c`               (only shapes made of whole phases)
    ninja     `ninja -j J` on a generated build.ninja
    make      `make -j J` on a generated Makefile      (.PHONY targets)
    dagu      `dagu start -q dag.yaml`                 (when its binary is found)

Before an engine is timed on a (shape, N, J) it must pass a verification run in which
every step appends its id to one file: each id exactly once, each after all its deps.

Run `python bench/compare.py --help` for the options; bench/README.md explains the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

SHAPES = ("fanout", "mapreduce", "chain", "layered")
# `echo` prints one line per step (`echo <step id>`): what storing output costs.
COMMANDS = {"true": "true", "sleep": "sleep 0.01", "echo": "echo $i"}
SLEEP_S = 0.01
ENGINES = (
    "dagfast", "dagfast-sh", "dagfast-base", "dask", "c", "c-direct", "c-logs", "xargs",
    "ninja", "make", "dagu",
)
LAYERS = 10
LAYER_SEED = 1234
CHAIN_MAX = 1_000
DAGU_MAX = 10_000  # Dagu runs ~30 ms a step here, so larger DAGs are opt-in
DASK_MAX = 1_000  # the Dask executor runs a few hundred steps a second: larger is opt-in
BIG = 100_000  # cells this large are timed once unless --repeat is given

# A preset is a list of blocks; each block is a product of its four dimensions. A
# selector option (--shapes, --sizes, --jobs, --commands) replaces that dimension in
# every block, so `--sizes 100000` keeps the preset's shapes, jobs and commands.
FULL = [
    dict(shapes=SHAPES, sizes=(1_000, 10_000, 100_000), jobs=(2, 16), commands=("true", "sleep"))
]
PRESETS = {
    "default": [
        dict(shapes=SHAPES, sizes=(1_000, 10_000), jobs=(2, 16), commands=("true",)),
        dict(shapes=("fanout", "mapreduce"), sizes=(1_000,), jobs=(16,), commands=("sleep",)),
    ],
    "quick": [dict(shapes=SHAPES, sizes=(1_000,), jobs=(16,), commands=("true",))],
    "full": FULL,
    # The cells the README's table and the targets need, and nothing more.
    "readme": [
        dict(shapes=("fanout", "mapreduce", "layered"), sizes=(10_000,), jobs=(16,),
             commands=("true",)),
        dict(shapes=("chain",), sizes=(1_000,), jobs=(16,), commands=("true",)),
        dict(shapes=("fanout",), sizes=(1_000,), jobs=(16,), commands=("sleep",)),
        dict(shapes=("fanout",), sizes=(10_000,), jobs=(16,), commands=("echo",)),
    ],
}


# --------------------------------------------------------------------------- shapes


@dataclasses.dataclass(frozen=True)
class Dag:
    """A generated DAG: step i waits for `deps[i]`; `phases`, when set, says the DAG is
    exactly a sequence of groups where each group waits for the whole previous one."""

    shape: str
    n: int
    deps: tuple[tuple[int, ...], ...]
    phases: tuple[tuple[int, ...], ...] | None = None

    @property
    def size(self) -> int:
        """How many steps run (N + 1 for fan-out and map-reduce)."""
        return len(self.deps)


def make_dag(shape: str, n: int) -> Dag:
    """Builds one of the four benchmark shapes with N as the issue defines it."""
    if shape == "fanout":
        deps = ((),) + ((0,),) * n
        return Dag(shape, n, deps, phases=((0,), tuple(range(1, n + 1))))
    if shape == "mapreduce":
        deps = ((),) * n + (tuple(range(n)),)
        return Dag(shape, n, deps, phases=(tuple(range(n)), (n,)))
    if shape == "chain":
        return Dag(shape, n, ((),) + tuple((i - 1,) for i in range(1, n)))
    if shape == "layered":
        width = n // LAYERS
        rng = random.Random(LAYER_SEED)
        deps: list[tuple[int, ...]] = [()] * width
        for layer in range(1, LAYERS):
            above = range((layer - 1) * width, layer * width)
            deps += [tuple(rng.sample(above, 2)) for _ in range(width)]
        return Dag(shape, n, tuple(deps))
    raise ValueError(shape)


def step_commands(command: str, size: int) -> list[str]:
    """Each step's command for a timed run: `echo $i` names the step's id."""
    if command == "echo":
        return [f"echo {i}" for i in range(size)]
    return [COMMANDS[command]] * size


def verify_commands(dag: Dag, path: Path) -> list[str]:
    """Each step appends its id: one short write with O_APPEND, so lines never mix."""
    target = shlex.quote(str(path))
    return [f"echo {i} >> {target}" for i in range(dag.size)]


def check_order(dag: Dag, path: Path) -> str | None:
    """None when every step ran exactly once and after all its deps; else what broke."""
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return "no step ran (the id file was never written)"
    position: dict[int, int] = {}
    for pos, text in enumerate(lines):
        if not text.isdigit() or int(text) >= dag.size:
            return f"line {pos + 1} of the id file is not a step id: {text[:40]!r}"
        step = int(text)
        if step in position:
            return f"step {step} ran more than once"
        position[step] = pos
    missing = [i for i in range(dag.size) if i not in position]
    if missing:
        return f"{len(missing)} of {dag.size} steps never ran (first: {missing[0]})"
    for step, deps in enumerate(dag.deps):
        for dep in deps:
            if position[dep] > position[step]:
                return f"step {step} ran before its dependency {dep}"
    return None


# ------------------------------------------------------------------------ processes


@dataclasses.dataclass
class Run:
    """One finished engine process: wall seconds, peak RSS (KiB), exit code, and the CPU
    seconds (user + system) of the engine and every step it waited for."""

    wall: float
    rss_kib: int
    code: int
    timed_out: bool = False
    cpu: float = 0.0


class Runner:
    """Starts each engine in its own process group behind the `spawn -m` launcher and
    reaps the launcher with os.wait4; the launcher reports the engine's own wall time
    and ru_maxrss (a direct child of this driver would inherit the driver's RSS)."""

    def __init__(self, timeout: float, launcher: Path):
        self.timeout = timeout
        self.launcher = launcher
        self.current: int | None = None

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], stderr: Path) -> Run:
        """Runs argv to completion (or until the timeout kills its group)."""
        expired = threading.Event()
        report = cwd / "usage.txt"
        report.unlink(missing_ok=True)

        def expire(pid: int) -> None:
            expired.set()
            self._kill_group(pid)

        with open(stderr, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [str(self.launcher), "-m", str(report), "--", *argv],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            self.current = proc.pid
            timer = threading.Timer(self.timeout, expire, (proc.pid,))
            timer.start()
            try:
                _, status, _ = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            outer_wall = time.perf_counter() - start
        # Popen must not try to reap the child again; and a step the engine left
        # behind must not run into the next measurement.
        proc.returncode = os.waitstatus_to_exitcode(status)
        self._kill_group(proc.pid)
        self.current = None
        try:
            wall, rss_kib, _, cpu = report.read_text().split()
            return Run(float(wall), int(rss_kib), proc.returncode, expired.is_set(),
                       float(cpu))
        except (FileNotFoundError, ValueError):  # the launcher itself was killed
            return Run(outer_wall, 0, proc.returncode or -1, expired.is_set())

    def kill_current(self) -> None:
        """Ends the running engine and everything it started (after Ctrl-C)."""
        pid, self.current = self.current, None
        if pid is not None:
            self._kill_group(pid)
            try:
                os.wait4(pid, 0)
            except ChildProcessError:
                pass

    @staticmethod
    def _kill_group(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def first_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    """The first non-empty output line of a version command ('' when it fails)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if out.returncode != 0:
        return ""
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        if line.strip():
            return line.strip()
    return ""


def last_line(done: subprocess.CompletedProcess) -> str:
    """The last line a probe wrote to stderr, for a note."""
    return (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]


def tail(path: Path, limit: int = 200) -> str:
    """The last line of an engine's stderr, for a FAILED note."""
    lines = [s for s in path.read_text(errors="replace").splitlines() if s.strip()]
    return lines[-1][:limit] if lines else "(no stderr)"


# -------------------------------------------------------------------------- engines


@dataclasses.dataclass
class Invocation:
    """How to start one engine on one generated DAG; `reset` runs before each start."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    reset: Callable[[], None] | None = None


class Engine:
    """One engine: finds itself, says which shapes it can express, writes its input."""

    name = ""
    version = ""
    missing = ""  # the table's word when the engine cannot run at all, else ""
    why_missing = ""

    def find(self, args: argparse.Namespace, tmp: Path) -> None:
        """Sets `version`, or `missing` and `why_missing`."""

    def unusable(self, word: str, why: str) -> None:
        """Marks the engine as unable to run anything, with the reason."""
        self.missing, self.why_missing = word, why

    def not_applicable(self, dag: Dag) -> str | None:
        """Why this engine cannot express `dag` honestly, or None when it can."""
        return None

    def write(self, dag: Dag, cmds: list[str], jobs: int, where: Path) -> Invocation:
        """Writes the engine's input for `dag` under `where` and says how to run it."""
        raise NotImplementedError


def write_yaml(dag: Dag, cmds: list[str], jobs: int, path: Path, shell: bool) -> None:
    """Dagu-style YAML; commands are JSON strings, which YAML reads as double-quoted."""
    out = [f"type: graph\nmaxActiveSteps: {jobs}\n", "shell: sh\n" if shell else "", "steps:\n"]
    for i, (cmd, deps) in enumerate(zip(cmds, dag.deps, strict=True)):
        out.append(f"  - name: s{i}\n    command: {json.dumps(cmd)}\n")
        if deps:
            out.append("    depends: [" + ", ".join(f"s{d}" for d in deps) + "]\n")
    path.write_text("".join(out))


class Dagfast(Engine):
    """The engine under test, via its console script or `python -m dagfast.cli`; its
    run records go to a DAGFAST_HOME in the temp dir, emptied before every run."""

    name = "dagfast"
    run_flags: list[str] = []  # between `run` and the DAG

    def _script(self) -> str | None:
        return shutil.which("dagfast")

    def find(self, args, tmp):
        self.home = tmp / f"{self.name}-home"
        env = {**os.environ, "DAGFAST_HOME": str(self.home)}
        script = self._script()
        if script:
            self.base = [script]
            self.python = self._shebang(script) or sys.executable
        else:
            # Not pip-installed: run the working tree, as `python -m dagfast.cli` would
            # from the repo root.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
            self.base = [sys.executable, "-m", "dagfast.cli"]
            self.python = sys.executable
        self.env = env
        probe = self._call([self.python, "-c", "import dagfast.cli.app"])
        if probe.returncode != 0:
            self.unusable("not installed", f"import dagfast.cli.app failed: {last_line(probe)}")
            return
        # Time dagfast as an installed copy runs: from bytecode. An editable install
        # (or PYTHONDONTWRITEBYTECODE=1) would otherwise compile every module from
        # source at every start, about 35 ms of a one-step run.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self._call([self.python, "-m", "compileall", "-q", str(self._package_dir())])
        self.quiet = (
            ["--quiet"] if "--quiet" in self._call(self.base + ["run", "--help"]).stdout else []
        )
        if not self._probe_shell(tmp):
            return
        compiled = self._call([self.python, "-c", "import dagfast._sched"]).returncode == 0
        version = first_line(self.base + ["version"], env) or first_line(
            self.base + ["--version"], env
        )
        self.version = ", ".join(
            [
                version,
                f"via {self.base[0]}" if len(self.base) == 1 else "via python -m dagfast.cli",
                "compiled _sched" if compiled else "no compiled _sched",
                "run --quiet" if self.quiet else "run > /dev/null",
                "shell: sh" if self.shell_key else "SHELL=/bin/sh",
            ]
        )

    def _package_dir(self) -> str:
        """Where the dagfast package being timed lives."""
        return self._call(
            [self.python, "-c", "import dagfast, os; print(os.path.dirname(dagfast.__file__))"]
        ).stdout.strip()

    def _call(self, argv: list[str], env: dict[str, str] | None = None):
        """A probe: runs argv to completion with output captured."""
        return subprocess.run(
            argv, env=env or self.env, capture_output=True, text=True, timeout=120
        )

    def _probe_shell(self, tmp: Path) -> bool:
        """Sets `shell_key`: True when dagfast takes `shell: sh`, False when it only runs
        with SHELL=/bin/sh; marks the engine FAILED when a one-step DAG runs neither way."""
        one = Dag("probe", 1, ((),))
        for shell_key in (True, False):
            path = tmp / f"probe-shell-{shell_key}.yaml"
            write_yaml(one, ["true"], 1, path, shell=shell_key)
            self.shell_key = shell_key
            out = self._call(
                self.base + ["run"] + self.run_flags + self.quiet + [str(path)], self._run_env()
            )
            if out.returncode == 0:
                return True
        self.unusable("FAILED", f"cannot run a one-step DAG: {last_line(out)}")
        return False

    def _run_env(self) -> dict[str, str]:
        """The environment of a run: SHELL=/bin/sh only when `shell: sh` is refused."""
        return self.env if self.shell_key else {**self.env, "SHELL": "/bin/sh"}

    @staticmethod
    def _shebang(script: str) -> str | None:
        """The interpreter named by a console script's first line."""
        with open(script, "rb") as f:
            line = f.readline().decode(errors="replace")
        return line[2:].strip().split()[0] if line.startswith("#!") else None

    def write(self, dag, cmds, jobs, where):
        path = where / "dag.yaml"
        write_yaml(dag, cmds, jobs, path, shell=self.shell_key)

        def reset() -> None:
            shutil.rmtree(self.home, ignore_errors=True)

        argv = self.base + ["run"] + self.run_flags + self.quiet + [str(path)]
        return Invocation(argv, where, self._run_env(), reset)


class CSpawn(Engine):
    """bench/spawn.c compiled with gcc -O2: the cost of the spawns and nothing else."""

    name = "c"

    flags: tuple[str, ...] = ()  # a variant's options of spawn.c
    note = ""  # and what they do, for the report's engine line

    def find(self, args, tmp):
        self.binary = tmp / "spawn"  # built by build_spawn before any engine is found
        self.version = f"spawn.c, gcc {first_line(['gcc', '-dumpfullversion'])} -O2"
        if self.note:
            self.version += f", {' '.join(self.flags)} ({self.note})"

    def write(self, dag, cmds, jobs, where):
        path = where / "jobs.txt"
        lines = [str(dag.size)]
        lines += [" ".join(map(str, d)) + "\t" + c for d, c in zip(dag.deps, cmds, strict=True)]
        path.write_text("\n".join(lines) + "\n")
        argv = [str(self.binary), "-j", str(jobs), *self.flags, str(path)]
        return Invocation(argv, where, dict(os.environ))


class CSpawnDirect(CSpawn):
    """spawn.c -d: the same loop, a command of plain words started without sh, as make
    and dagfast start them: the limit for an engine that skips the shell so."""

    name = "c-direct"
    flags = ("-d",)
    note = "plain words without sh"


class CSpawnLogs(CSpawn):
    """spawn.c -l: the same loop, each step's stdout and stderr in a log file of its own
    as dagfast keeps them: the limit for an engine that records every step's output."""

    name = "c-logs"
    flags = ("-l",)
    note = "two log files a step"

    def write(self, dag, cmds, jobs, where):
        inv = super().write(dag, cmds, jobs, where)  # ends `-l JOBFILE`: the dir goes between
        logs = where / "logs"

        def reset() -> None:  # new files each run, as each dagfast run creates its own
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir()

        reset()
        return Invocation(inv.argv[:-1] + [str(logs), inv.argv[-1]], where, inv.env, reset)


def build_spawn(tmp: Path) -> Path:
    """Compiles bench/spawn.c (the C engine and the launcher of every engine)."""
    binary = tmp / "spawn"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(BENCH / "spawn.c")], check=True)
    return binary


class Xargs(Engine):
    """`xargs -P J` per phase; only DAGs that are whole phases can be said this way."""

    name = "xargs"

    def find(self, args, tmp):
        if not shutil.which("xargs"):
            self.unusable("not found", f"no {self.name} on PATH")
            return
        self.version = first_line(["xargs", "--version"])

    def not_applicable(self, dag):
        return None if dag.phases else f"{dag.shape} is not a sequence of whole phases"

    def write(self, dag, cmds, jobs, where):
        # One `sh -e` script: a one-step phase is `sh -c CMD`, a wider one is xargs fed
        # NUL-separated commands, so every step is still its own `sh -c`.
        lines = []
        for k, phase in enumerate(dag.phases):
            if len(phase) == 1:
                lines.append("sh -c " + shlex.quote(cmds[phase[0]]))
            else:
                listing = where / f"phase{k}.txt"
                listing.write_text("".join(cmds[i] + "\0" for i in phase))
                lines.append(f"xargs -0 -P {jobs} -n 1 sh -c < {shlex.quote(str(listing))}")
        lines[-1] = "exec " + lines[-1]
        script = where / "run.sh"
        script.write_text("\n".join(lines) + "\n")
        return Invocation(["sh", "-e", str(script)], where, dict(os.environ))


class Ninja(Engine):
    """ninja with one edge per step; outputs are never created, so every edge runs."""

    name = "ninja"

    def find(self, args, tmp):
        self.binary = shutil.which("ninja") or "/usr/bin/ninja"
        if not os.access(self.binary, os.X_OK):
            self.unusable("not found", f"no {self.name} on PATH")
            return
        self.version = "ninja " + first_line([self.binary, "--version"])

    def write(self, dag, cmds, jobs, where):
        out = ["rule sh\n  command = $cmd\n"]
        for i, (cmd, deps) in enumerate(zip(cmds, dag.deps, strict=True)):
            order_only = (" || " + " ".join(f"s{d}" for d in deps)) if deps else ""
            out.append(f"build s{i}: sh{order_only}\n  cmd = {cmd.replace('$', '$$')}\n")
        (where / "build.ninja").write_text("".join(out))

        def reset() -> None:
            # A log from the previous run would make ninja do extra bookkeeping.
            for name in (".ninja_log", ".ninja_deps"):
                (where / name).unlink(missing_ok=True)

        return Invocation([self.binary, "-j", str(jobs)], where, dict(os.environ), reset)


class Make(Engine):
    """GNU make on .PHONY targets; `all` asks for every step nothing depends on."""

    name = "make"

    def find(self, args, tmp):
        if not shutil.which("make"):
            self.unusable("not found", f"no {self.name} on PATH")
            return
        self.version = first_line(["make", "--version"]).replace("GNU Make", "make")

    def write(self, dag, cmds, jobs, where):
        has_dependents = {d for deps in dag.deps for d in deps}
        sinks = [f"s{i}" for i in range(dag.size) if i not in has_dependents]
        names = " ".join(f"s{i}" for i in range(dag.size))
        out = [f".PHONY: all {names}\nall: {' '.join(sinks)}\n"]
        for i, (cmd, deps) in enumerate(zip(cmds, dag.deps, strict=True)):
            prereqs = " ".join(f"s{d}" for d in deps)
            out.append(f"s{i}: {prereqs}\n\t@{cmd.replace('$', '$$')}\n")
        (where / "Makefile").write_text("".join(out))
        # -r: no built-in rules to search, as any generated Makefile would ask.
        return Invocation(["make", "-r", "-s", "-j", str(jobs)], where, dict(os.environ))


class Dagu(Engine):
    """Dagu 1.30.2 with `type: graph`; its DAGU_HOME is a fresh temp dir for every run."""

    name = "dagu"
    PACKAGE_BIN = "node_modules/@dagu-org/dagu-linux-x64/bin/dagu"

    def find(self, args, tmp):
        candidates = [
            args.dagu,
            shutil.which("dagu"),
            REPO / self.PACKAGE_BIN,
            Path("/tmp/dagu") / self.PACKAGE_BIN,
        ]
        found = [str(c) for c in candidates if c and os.access(c, os.X_OK)]
        if not found:
            self.unusable(
                "not found",
                "pass --dagu PATH, or: cd /tmp/dagu && npm install @dagu-org/dagu-linux-x64@1.30.2",
            )
            return
        self.binary = found[0]
        self.home = tmp / "dagu-home"
        self.version = "dagu " + first_line([self.binary, "version"])

    def write(self, dag, cmds, jobs, where):
        path = where / "dag.yaml"
        write_yaml(dag, cmds, jobs, path, shell=True)

        def reset() -> None:
            shutil.rmtree(self.home, ignore_errors=True)

        env = {**os.environ, "DAGU_HOME": str(self.home)}
        return Invocation([self.binary, "start", "-q", str(path)], where, env, reset)


class DaskEngine(Dagfast):
    """dagfast with `--executor dask` and no scheduler address: every run starts its own
    LocalCluster (2 worker processes on 127.0.0.1), so the wall time includes the
    cluster's start (~0.5 s) and each step is a Dask task that runs `sh -c` on a worker."""

    name = "dask"
    run_flags = ["--executor", "dask"]

    def _probe_shell(self, tmp: Path) -> bool:
        probe = self._call([self.python, "-c", "import distributed"])
        if probe.returncode != 0:
            self.unusable("not installed", "pip install 'dagfast[dask]' (import distributed "
                          f"failed: {last_line(probe)})")
            return False
        return super()._probe_shell(tmp)

    def find(self, args, tmp):
        super().find(args, tmp)
        if self.version:
            self.version += ", --executor dask (a LocalCluster per run)"


class DagfastBase(Dagfast):
    """Another build of dagfast, timed beside this one in the same minutes (before and
    after a change): the `dagfast` console script named by DAGFAST_BASE, e.g. a venv's
    `bin/dagfast` with the base commit installed (`pip install` from a `git worktree`)."""

    name = "dagfast-base"

    def _script(self) -> str | None:
        return os.environ.get("DAGFAST_BASE")

    def find(self, args, tmp):
        if not os.environ.get("DAGFAST_BASE"):
            self.unusable("not asked for", "set DAGFAST_BASE to another dagfast script")
            return
        super().find(args, tmp)


class DagfastShell(Dagfast):
    """This dagfast with DAGFAST_DIRECT_EXEC=0: every step through `sh -c`, as the C
    loop starts them, so its ratio to C is the engine's own cost."""

    name = "dagfast-sh"

    def find(self, args, tmp):
        super().find(args, tmp)
        self.env["DAGFAST_DIRECT_EXEC"] = "0"
        if self.version:
            self.version += ", DAGFAST_DIRECT_EXEC=0"


ENGINE_CLASSES = {
    cls.name: cls for cls in (Dagfast, DagfastShell, DagfastBase, DaskEngine, CSpawn,
                              CSpawnDirect, CSpawnLogs, Xargs, Ninja, Make, Dagu)
}


# ----------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True, order=True)
class Cell:
    """One measured situation: a shape of N steps at concurrency J with one command."""

    shape: str
    n: int
    jobs: int
    command: str

    def label(self) -> str:
        """How progress lines and notes name the cell."""
        return f"{self.shape} N={self.n:,} J={self.jobs} {COMMANDS[self.command]}"


def plan_cells(args: argparse.Namespace) -> tuple[list[Cell], list[str]]:
    """The cells to run, in a stable order, and a note for each one left out."""
    cells: set[Cell] = set()
    skipped: list[str] = []
    for block in PRESETS[args.preset]:
        dims = [getattr(args, key) or block[key] for key in ("shapes", "sizes", "jobs", "commands")]
        for cell in itertools.starmap(Cell, itertools.product(*dims)):
            if cell.shape == "chain" and cell.n > CHAIN_MAX:
                skipped.append(f"{cell.label()}: chain is measured at N <= {CHAIN_MAX:,} only")
            else:
                cells.add(cell)
    order = {s: k for k, s in enumerate(SHAPES)}
    ordered = sorted(
        cells, key=lambda c: (order[c.shape], c.n, list(COMMANDS).index(c.command), c.jobs)
    )
    return ordered, sorted(set(skipped))


def engine_skip(engine: Engine, cell: Cell, args: argparse.Namespace) -> str | None:
    """Why `engine` is left out of `cell` by policy (not by inability), or None."""
    if engine.name == "dagu" and args.preset == "quick" and not args.dagu_large:
        return "Dagu takes ~30 s per 1,000 steps here; --quick leaves it out"
    if engine.name == "dagu" and cell.n >= DAGU_MAX and not args.dagu_large:
        return f"Dagu is slow; N >= {DAGU_MAX:,} only with --dagu-large"
    if engine.name == "dask" and cell.n > DASK_MAX and not args.dask_large:
        return f"the Dask executor is slow; N > {DASK_MAX:,} only with --dask-large"
    return None


# -------------------------------------------------------------------------- measure


@dataclasses.dataclass
class Result:
    """One engine in one cell: a status, and the runs when it was timed."""

    engine: str
    cell: Cell
    status: str  # ok, FAILED, TIMEOUT, n/a, skipped, not installed, not found
    note: str = ""
    about_cell: bool = False  # the note is about this cell, not the engine as a whole
    walls: list[float] = dataclasses.field(default_factory=list)
    rss_kib: list[int] = dataclasses.field(default_factory=list)
    cpus: list[float] = dataclasses.field(default_factory=list)  # see Run.cpu

    @property
    def wall(self) -> float:
        """The median wall time of the timed runs."""
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        """The median CPU seconds of the timed runs (engine and steps)."""
        return statistics.median(self.cpus)

    @property
    def steps_per_s(self) -> float:
        """N over the median wall time."""
        return self.cell.n / self.wall

    def fail(self, status: str, note: str) -> None:
        """Marks this cell as failed for this engine, with what went wrong."""
        self.status, self.note, self.about_cell = status, note, True


class Bench:
    """Holds the temp dir, the engines and the runner for one invocation."""

    def __init__(self, args: argparse.Namespace, tmp: Path, engines: list[Engine], launcher: Path):
        self.args = args
        self.tmp = tmp
        self.engines = engines
        self.runner = Runner(args.timeout, launcher)
        self.verified: dict[tuple[str, str, int, int], str | None] = {}
        self.spawn_cost: dict[Cell, float] = {}

    def launch(self, inv: Invocation) -> Run:
        """One start of an engine, after its reset hook."""
        if inv.reset:
            inv.reset()
        return self.runner.run(inv.argv, inv.cwd, inv.env, inv.cwd / "stderr.txt")

    def verify(self, engine: Engine, dag: Dag, jobs: int, where: Path) -> str | None:
        """Runs the id-appending twin of `dag` once; None when the order checks out."""
        key = (engine.name, dag.shape, dag.n, jobs)
        if key not in self.verified:
            where.mkdir(parents=True)
            ids = where / "ids.txt"
            run = self.launch(engine.write(dag, verify_commands(dag, ids), jobs, where))
            if run.timed_out:
                problem = f"verification timed out after {self.args.timeout:g} s"
            elif run.code != 0:
                problem = f"run exited {run.code}: {tail(where / 'stderr.txt')}"
            else:
                problem = check_order(dag, ids)
            self.verified[key] = problem
            shutil.rmtree(where, ignore_errors=True)
        return self.verified[key]

    def repeats(self, engine: Engine, cell: Cell) -> int:
        """--repeat when given; else one run for Dagu, 100,000-step cells and --quick."""
        if self.args.repeat:
            return self.args.repeat
        return 1 if engine.name == "dagu" or cell.n >= BIG or self.args.preset == "quick" else 3

    def measure(self, cell: Cell) -> list[Result]:
        """Verifies then times every engine on `cell`, interleaving their runs."""
        dag = make_dag(cell.shape, cell.n)
        cmds = step_commands(cell.command, dag.size)
        base = self.tmp / f"{cell.shape}-{cell.n}-{cell.jobs}-{cell.command}"
        results, timed = [], []
        for engine in self.engines:
            result = self.screen(engine, dag, cell, base / f"verify-{engine.name}")
            results.append(result)
            progress(
                f"  {engine.name}: {'verified' if result.status == 'ok' else result.status}"
                + (f" - {result.note}" if result.about_cell else "")
            )
            if result.status == "ok":
                where = base / engine.name
                where.mkdir(parents=True)
                timed.append((engine, result, engine.write(dag, cmds, cell.jobs, where)))

        # Round-robin over engines so that drift in the machine's speed spreads evenly,
        # each round starting one engine further on: none always runs first (or right
        # after the same heavy neighbour).
        rounds = max((self.repeats(e, cell) for e, _, _ in timed), default=0)
        for k in range(rounds):
            turn = k % len(timed)
            for engine, result, inv in timed[turn:] + timed[:turn]:
                if k >= self.repeats(engine, cell) or result.status != "ok":
                    continue
                run = self.launch(inv)
                if run.timed_out:
                    result.fail("TIMEOUT", f"killed after {self.args.timeout:g} s")
                elif run.code != 0:
                    result.fail("FAILED", f"exit {run.code}: {tail(inv.cwd / 'stderr.txt')}")
                else:
                    result.walls.append(run.wall)
                    result.rss_kib.append(run.rss_kib)
                    result.cpus.append(run.cpu)
        if cell.command == "sleep":
            self.spawn_cost[cell] = self.c_spawn_cost(dag, cell, base / "c-true")
        shutil.rmtree(base, ignore_errors=True)
        return results

    def screen(self, engine: Engine, dag: Dag, cell: Cell, where: Path) -> Result:
        """Decides whether `engine` is timed on `cell`: status ok only once it is
        available, able to express the shape, not skipped by policy, and verified."""
        result = Result(engine.name, cell, "ok")
        if engine.missing:
            result.status, result.note = engine.missing, engine.why_missing
        elif why := engine.not_applicable(dag):
            result.status, result.note = "n/a", why
        elif why := engine_skip(engine, cell, self.args):
            result.status, result.note = "skipped", why
        elif problem := self.verify(engine, dag, cell.jobs, where):
            result.fail("FAILED", f"verification: {problem}")
        return result

    def c_spawn_cost(self, dag: Dag, cell: Cell, where: Path) -> float:
        """The C program's wall time for the same DAG with `true`: its spawn cost."""
        c = next(e for e in self.engines if e.name == "c")
        where.mkdir(parents=True)
        inv = c.write(dag, ["true"] * dag.size, cell.jobs, where)
        runs = [self.launch(inv) for _ in range(self.args.repeat or 3)]
        return (
            statistics.median(r.wall for r in runs if r.code == 0)
            if all(r.code == 0 for r in runs)
            else float("nan")
        )

    def startup(self, engine: Dagfast, runs: int) -> dict:
        """A one-step DAG under dagfast against importing its three dependencies."""
        where = self.tmp / "startup"
        where.mkdir()
        inv = engine.write(Dag("one", 1, ((),)), ["true"], 1, where)
        imports = Invocation(
            [engine.python, "-c", "import uvloop, msgspec, yaml"], where, engine.env
        )
        walls: dict[str, list[float]] = {"dagfast": [], "imports": []}
        for _ in range(runs):
            for key, job in (("dagfast", inv), ("imports", imports)):
                run = self.launch(job)
                if run.code != 0:
                    return {"error": f"{key} exited {run.code}: {tail(where / 'stderr.txt')}"}
                walls[key].append(run.wall)
        dagfast, imports_s = (statistics.median(walls[k]) for k in ("dagfast", "imports"))
        return {
            "runs": runs,
            "dagfast_s": dagfast,
            "imports_s": imports_s,
            "ratio": dagfast / imports_s,
        }


def progress(text: str) -> None:
    """Progress goes to stderr so that stdout holds only the report."""
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def header(engines: list[Engine]) -> str:
    """Date, machine and the version of each engine found."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()[0]
    found = "; ".join(f"{e.name}: {e.version or e.missing + ' (see notes)'}" for e in engines)
    return (
        f"{now} - {os.cpu_count()} CPUs ({cpu}) - {platform.system()} {platform.release()}"
        f" - Python {platform.python_version()} - load average {load:.2f} at start"
        f"\nengines: {found}"
    )


def table(results: list[Result]) -> str:
    """The Markdown table; a row whose engine did not run shows why in the wall column."""
    c_wall = {r.cell: r.wall for r in results if r.engine == "c" and r.status == "ok"}
    c_cpu = {r.cell: r.cpu for r in results if r.engine == "c" and r.status == "ok"}
    rows = [
        "| engine | shape | N | J | command | wall s | steps/s | ratio to C | CPU s | "
        "CPU over C's, ms a step | peak RSS MB |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cell = r.cell
        lead = (
            f"| {r.engine} | {cell.shape} | {cell.n:,} | {cell.jobs} | {COMMANDS[cell.command]} |"
        )
        if r.status != "ok":
            rows.append(f"{lead} {r.status} | - | - | - | - | - |")
            continue
        ratio = f"{c_wall[cell] / r.wall:.2f}" if cell in c_wall else "-"
        # What the engine costs beyond the C loop (whose own cost is next to nothing),
        # a step: the steps cost the same under every engine that starts the same
        # programs. (On a VM the steps' cost moves with the host's load: see README.)
        over = f"{(r.cpu - c_cpu[cell]) / cell.n * 1e3:.3f}" if cell in c_cpu else "-"
        rows.append(
            f"{lead} {r.wall:.3f} | {r.steps_per_s:,.0f} | {ratio} | {r.cpu:.2f} | {over} | "
            f"{max(r.rss_kib) / 1024:.1f} |"
        )
    return "\n".join(rows)


def target_checks(
    results: list[Result], spawn_cost: dict[Cell, float], startup: dict | None
) -> list[str]:
    """One line per target of the issue that the cells run can judge."""
    ok = {(r.engine, r.cell): r for r in results if r.status == "ok"}
    status = {(r.engine, r.cell): r.status for r in results}
    run_cells = {r.cell for r in results}
    lines = []

    def verdict(passed: bool) -> str:
        return "PASS" if passed else "FAIL"

    def unjudged(name: str, cell: Cell) -> str:
        seen = ", ".join(f"{e} {status.get((e, cell), 'not run')}" for e in ("dagfast", "c"))
        return f"{name}: not judged ({seen})"

    # fan-out, map-reduce and layered 10,000 `true` at J=16: >= 0.9 x C, ahead of make and
    # ninja; the fan-out of `echo $i`: >= 0.8 x C and no slower than make.
    bars = [(Cell(shape, 10_000, 16, "true"), 0.9, ("make", "ninja"), True)
            for shape in ("fanout", "mapreduce", "layered")]
    bars.append((Cell("fanout", 10_000, 16, "echo"), 0.8, ("make",), False))
    for cell, floor, rivals_of, strictly in bars:
        name = f"{cell.shape} 10,000 {COMMANDS[cell.command]} J=16"
        d, c = ok.get(("dagfast", cell)), ok.get(("c", cell))
        if cell not in run_cells:
            continue
        if not d or not c:
            lines.append(unjudged(name, cell))
            continue
        ratio = c.wall / d.wall
        passed = ratio >= floor
        rivals = []
        for rival in rivals_of:
            other = ok.get((rival, cell))
            passed &= other is not None and (
                d.wall < other.wall if strictly else d.wall <= other.wall)
            if other is None:
                rivals.append(f"{rival} not run")
                continue
            # Round k of every engine ran in the same minute: a paired count shows how
            # often dagfast was ahead, which a median of a few noisy runs hides.
            ahead = sum(dw < ow for dw, ow in zip(d.walls, other.walls))
            rivals.append(f"{rival} {other.wall:.2f} s (dagfast ahead in {ahead} of "
                          f"{min(len(d.walls), len(other.walls))} rounds)")
        beside = "".join(
            f" [{about}: {c.wall / o.wall:.2f} x C]"
            for other, about in (("dagfast-sh", "dagfast through sh"),
                                 ("c-direct", "C without sh for plain words"))
            if (o := ok.get((other, cell))) is not None
        )
        logs = ok.get(("c-logs", cell))
        limit = (
            f" [C with two log files a step: {c.wall / logs.wall:.2f} x C; dagfast "
            f"{logs.wall / d.wall:.2f} x that]" if logs else ""
        )
        must = "must be faster" if strictly else "must be no slower"
        cpus = ", ".join(f"{e} {o.cpu:.2f}" for e in ("dagfast", "c") + rivals_of
                         if (o := ok.get((e, cell))) is not None)
        lines.append(
            f"{name}: dagfast {ratio:.2f} x C (>= {floor:.2f}); {d.wall:.2f} s vs "
            f"{', '.join(rivals)} ({must}) -> {verdict(passed)}{beside}{limit} "
            f"[CPU s, engine and steps: {cpus}]"
        )

    # chain of 1,000 `true`: per-step latency <= 1.3 x C's (judged at every J run).
    for cell in sorted(run_cells):
        if (cell.shape, cell.n, cell.command) != ("chain", 1_000, "true"):
            continue
        name = f"chain 1,000 true J={cell.jobs}"
        d, c = ok.get(("dagfast", cell)), ok.get(("c", cell))
        if not d or not c:
            lines.append(unjudged(name, cell))
            continue
        per_d, per_c = d.wall / cell.n * 1e3, c.wall / cell.n * 1e3
        # wall / N holds the interpreter's start-up once (about 0.1 ms a step at N=1,000),
        # which the one-step target judges on its own: say the latency without it too.
        marginal = ""
        if startup and "dagfast_s" in startup:
            per_m = (d.wall - startup["dagfast_s"]) / (cell.n - 1) * 1e3
            marginal = (f" [less dagfast's one-step run ({startup['dagfast_s'] * 1e3:.0f} ms"
                        f"): {per_m:.3f} ms/step = {per_m / per_c:.2f} x]")
        shell = ok.get(("dagfast-sh", cell))
        if shell:
            marginal += f" [dagfast-sh {shell.wall / cell.n * 1e3 / per_c:.2f} x]"
        lines.append(
            f"{name}: dagfast {per_d:.3f} ms/step vs C {per_c:.3f} ms/step = "
            f"{per_d / per_c:.2f} x (<= 1.30) -> {verdict(per_d <= 1.3 * per_c)}{marginal}"
        )

    # fan-out of 1,000 `sleep 0.01` at J=16: within 15% of N x 0.01 / J + C's spawn cost.
    cell = Cell("fanout", 1_000, 16, "sleep")
    if cell in spawn_cost:
        name = "fanout 1,000 sleep 0.01 J=16"
        sleeping = cell.n * SLEEP_S / cell.jobs
        ideal = sleeping + spawn_cost[cell]
        d = ok.get(("dagfast", cell))
        formula = (
            f"ideal {sleeping:.3f} + {spawn_cost[cell]:.3f} (C spawn cost: its wall with true)"
            f" = {ideal:.3f} s"
        )
        if not d:
            lines.append(f"{unjudged(name, cell)}; {formula}")
        else:
            lines.append(
                f"{name}: dagfast {d.wall:.3f} s vs {formula} -> {d.wall / ideal:.2f} x "
                f"(<= 1.15) -> {verdict(d.wall <= 1.15 * ideal)}"
            )

    # A one-step DAG costs at most 1.2 x importing dagfast's three dependencies (issue 13).
    if startup and "ratio" in startup:
        lines.append(
            f"one-step DAG: dagfast {startup['dagfast_s'] * 1e3:.1f} ms vs "
            f"`import uvloop, msgspec, yaml` {startup['imports_s'] * 1e3:.1f} ms = "
            f"{startup['ratio']:.2f} x (<= 1.20, medians of {startup['runs']}) -> "
            f"{verdict(startup['ratio'] <= 1.2)}"
        )
    elif startup:
        lines.append(f"one-step DAG: not judged ({startup['error']})")
    return lines or ["no target applies to the cells run"]


def render(
    head: str, results: list[Result], targets: list[str], skipped: list[str], elapsed: float
) -> str:
    """The whole Markdown report: header, table, target check, notes and skips."""
    by_policy: dict[str, int] = {}
    for r in results:
        if r.status == "skipped":
            key = f"{r.engine}: {r.note}"
            by_policy[key] = by_policy.get(key, 0) + 1
    skipped = skipped + [f"{key} ({count} cells)" for key, count in by_policy.items()]
    notes = sorted(
        {f"{r.engine}: {r.note}" for r in results if r.note and r.status not in ("ok", "skipped")}
        - {f"{r.engine}: {r.note}" for r in results if r.about_cell}
    )
    notes += [f"{r.engine} {r.cell.label()}: {r.note}" for r in results if r.about_cell]
    if any(r.engine == "make" and r.status == "ok" for r in results):
        notes.append(
            "make runs a command with no shell syntax (true, sleep) without sh, as dagfast "
            "(for true and false too, builtins that do what the programs do) and c-direct "
            "do; c, ninja, xargs and dagfast-sh start `sh -c` per step"
        )
    lines = [f"# dagfast bench\n\n{head}\n", table(results), "", "target check:"]
    lines += [f"- {t}" for t in targets]
    lines += ["", "notes:"] + [f"- {n}" for n in notes]
    lines += ["", "skipped:"] + [f"- {s}" for s in skipped] if skipped else []
    load = os.getloadavg()[0]
    lines += ["", f"total time {elapsed:.0f} s; load average {load:.2f} at the end"]
    return "\n".join(lines)


def to_json(
    head: str,
    results: list[Result],
    spawn_cost: dict,
    startup: dict | None,
    targets: list[str],
    skipped: list[str],
) -> dict:
    """Raw results: every wall time and RSS, not only the medians."""
    return {
        "header": head,
        "results": [{**dataclasses.asdict(r), "cell": dataclasses.asdict(r.cell)} for r in results],
        "spawn_cost_c_true_s": [
            {**dataclasses.asdict(c), "seconds": s} for c, s in spawn_cost.items()
        ],
        "startup": startup,
        "targets": targets,
        "skipped": skipped,
    }


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; selectors replace that dimension of the preset."""

    def csv(kind, allowed=()):
        """An argparse type for a comma-separated list, e.g. `fanout,chain` or `1000,10_000`."""

        def parse(text: str) -> tuple:
            try:
                items = tuple(kind(x) for x in text.replace(" ", "").split(",") if x)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"not a list of {kind.__name__}: {text!r}"
                ) from None
            bad = [x for x in items if allowed and x not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {', '.join(bad)}; choose from {', '.join(allowed)}"
                )
            return items

        return parse

    p = argparse.ArgumentParser(
        description="Time dagfast (local and Dask executors) against spawn.c, xargs, ninja, "
        "make and Dagu on the same DAGs.",
        epilog="Presets: default = all shapes at 1,000 and 10,000 with true at J=2,16, plus "
        "sleep 0.01 for fanout/mapreduce 1,000 at J=16; --quick = all shapes 1,000 "
        "true J=16, one run, no Dagu; --full = every shape x 1,000/10,000/100,000 x "
        "J=2,16 x true/sleep. Chain runs at N <= 1,000 only.",
    )
    p.add_argument(
        "--quick",
        dest="preset",
        action="store_const",
        const="quick",
        default="default",
        help="smoke run, under a minute",
    )
    p.add_argument(
        "--full",
        dest="preset",
        action="store_const",
        const="full",
        help="the whole matrix (hours, because of sleep 0.01 at 100,000 steps)",
    )
    p.add_argument(
        "--readme",
        dest="preset",
        action="store_const",
        const="readme",
        help="the cells of the README's table and the performance targets (~10 min)",
    )
    p.add_argument("--shapes", type=csv(str, SHAPES), help=f"subset of {','.join(SHAPES)}")
    p.add_argument("--sizes", type=csv(int), help="N values, e.g. 1000,10000")
    p.add_argument("--jobs", type=csv(int), help="J values, e.g. 2,16")
    p.add_argument(
        "--commands", type=csv(str, tuple(COMMANDS)),
        help="true, sleep (sleep 0.01) and/or echo (echo <step id>)",
    )
    p.add_argument(
        "--engines",
        type=csv(str, ENGINES),
        default=ENGINES,
        help="subset of " + ",".join(ENGINES) + " (c always runs: it is the reference)",
    )
    p.add_argument(
        "--repeat", type=int, help="timed runs per cell (default 3; 1 for Dagu and N >= 100,000)"
    )
    p.add_argument("--dagu", help="path of the dagu binary")
    p.add_argument(
        "--dagu-large", action="store_true", help="also run Dagu at N >= 10,000 (and in --quick)"
    )
    p.add_argument(
        "--dask-large", action="store_true",
        help=f"also run the Dask executor at N > {DASK_MAX:,}",
    )
    p.add_argument(
        "--startup-runs",
        type=int,
        help="runs of the one-step DAG comparison (default 20; 10 with --quick; 0 skips it)",
    )
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds before one engine run is killed"
    )
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    p.add_argument("--json", type=Path, help="write the raw results as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir of generated files")
    args = p.parse_args(argv)
    for n in args.sizes or ():
        if n < LAYERS * 2 or (("layered" in (args.shapes or SHAPES)) and n % LAYERS):
            p.error(f"N={n}: sizes must be >= {LAYERS * 2}, and multiples of {LAYERS} for layered")
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.startup_runs is None:
        args.startup_runs = 10 if args.preset == "quick" else 20
    return args


def main(argv: list[str] | None = None) -> int:
    """Plans, verifies, times and reports; always removes what it started and wrote."""
    args = parse_args(argv)
    if not shutil.which("gcc"):
        print(
            "error: gcc not found; the C reference bench/spawn.c cannot be built "
            "(apt-get install gcc)",
            file=sys.stderr,
        )
        return 2
    # Ctrl-C and a plain `kill` both take the KeyboardInterrupt cleanup path, even when
    # started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cells, skipped = plan_cells(args)
    tmp = Path(tempfile.mkdtemp(prefix="dagfast-bench-"))
    names = [n for n in ENGINES if n in args.engines or n == "c"]
    engines = [ENGINE_CLASSES[n]() for n in names]
    bench = None
    started = time.monotonic()
    try:
        try:
            launcher = build_spawn(tmp)
        except subprocess.CalledProcessError:
            print("error: gcc could not build bench/spawn.c", file=sys.stderr)
            return 2
        for engine in engines:
            engine.find(args, tmp)
        head = header(engines)
        progress(head)
        bench = Bench(args, tmp, engines, launcher)
        results: list[Result] = []
        for k, cell in enumerate(cells, 1):
            progress(f"[{k}/{len(cells)}] {cell.label()}")
            results += bench.measure(cell)
        startup = None
        dagfast = next((e for e in engines if e.name == "dagfast"), None)
        if dagfast and args.startup_runs > 0:
            if dagfast.missing:
                startup = {"error": f"dagfast {dagfast.missing}: {dagfast.why_missing}"}
            else:
                progress(f"one-step DAG x {args.startup_runs}")
                startup = bench.startup(dagfast, args.startup_runs)
    except KeyboardInterrupt:
        if bench:
            bench.runner.kill_current()
        print("interrupted: engine processes ended, temp files removed", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            progress(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    targets = target_checks(results, bench.spawn_cost, startup)
    report = render(head, results, targets, skipped, time.monotonic() - started)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    if args.json:
        args.json.write_text(
            json.dumps(
                to_json(head, results, bench.spawn_cost, startup, targets, skipped), indent=1
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
