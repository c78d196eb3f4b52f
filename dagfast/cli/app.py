"""The command line: the only module that prints for the user or exits.

Exit statuses:
  0    the run succeeded (or the DAG is valid, or the command did what it was asked)
  1    the run failed, or the run or step asked for does not exist (or is not running)
  2    the DAG file is invalid, or the command line is wrong
  70   an internal error: a bug in dagfast (please report it)
  75   `run --no-queue`: the DAG already has maxActiveRuns runs going; nothing was run
  130  the run was interrupted by SIGINT (Ctrl-C); 143 by SIGTERM
"""

from __future__ import annotations

import argparse
import os
import sys

from dagfast import __version__
from dagfast.errors import DagfastError, LoadError, SchedulerBug, UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_BUG = 70
EXIT_BUSY = 75  # EX_TEMPFAIL: `run --no-queue` found every run slot taken
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away

_EPILOG = """\
exit statuses: 0 succeeded (or done), 1 failed (or no such run, step, running run),
2 invalid DAG or usage, 70 internal error, 75 maxActiveRuns reached (run --no-queue),
130/143 interrupted by SIGINT/SIGTERM, 141 the reader of the output went away

examples:
  dagfast run examples/parallel.yaml
  dagfast run --max-active-steps 4 --quiet big.yaml
  dagfast validate dag.yaml
  dagfast status --json            # the latest run
  dagfast retry 20261128T162600123Z-9f3a1c
"""


_COMMANDS = frozenset((
    "run", "validate", "migrate", "status", "history", "logs", "retry", "stop", "prune",
    "trace", "report", "dry", "scheduler", "graph", "completion", "version",
))  # fmt: skip
"""Every command `_parser` makes (a test keeps this list honest)."""


class _OneCommand:
    """The subparsers of `_parser`, making only the parser of the command given: the
    16 others (their help texts, 80 arguments, argparse's gettext look-ups) cost 5 to
    15 ms of start-up and are not used."""

    def __init__(self, sub, command: str) -> None:
        self.sub = sub
        self.command = command

    @property
    def choices(self) -> dict:
        return self.sub.choices

    def add_parser(self, name: str, **kwargs):
        if name == self.command:
            return self.sub.add_parser(name, **kwargs)
        return _UNUSED


class _Unused:
    """What `_OneCommand` gives for a command it does not make: takes any argument."""

    def add_argument(self, *args, **kwargs) -> None:
        pass

    def set_defaults(self, **kwargs) -> None:
        pass


_UNUSED = _Unused()


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with `command`, one that makes that command's own
    parser only (the rest of the command line is read exactly as the whole one would)."""
    p = argparse.ArgumentParser(
        prog="dagfast",
        description="Run DAGs of shell steps, in parallel, as fast as processes start.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"dagfast {__version__}",
                   help="print dagfast's version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p.set_defaults(dialect=None, dags=None)  # commands without --dialect and --dags
    if command is not None:
        sub = _OneCommand(sub, command)

    run = sub.add_parser(
        "run",
        help="run a DAG file",
        description="Run a DAG file: steps start as soon as their dependencies succeed, "
        "at most maxActiveSteps at once.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("dag", metavar="DAG", help="the DAG's YAML file")
    run.add_argument(
        "--max-active-steps", type=int, metavar="N",
        help="override the DAG's maxActiveSteps (0: unlimited)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    _add_dialect_flags(run)
    _add_executor_flags(run)
    _add_output_flags(run)
    run.add_argument(
        "--no-queue", action="store_true",
        help="when the DAG already has maxActiveRuns runs going, exit 75 at once instead "
        "of waiting in its queue",
    )
    run.add_argument(
        "params", nargs="*", metavar="-- PARAMS",
        help="parameters after `--`: NAME=VALUE overrides a named one, a bare value a positional",
    )

    val = sub.add_parser(
        "validate",
        help="check a DAG file without running it",
        description="Check a DAG file and report every problem found; runs nothing.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    val.add_argument("dag", metavar="DAG", help="the DAG's YAML file")
    val.add_argument("-q", "--quiet", action="store_true",
                     help="say nothing of how Dagu 1.x would have run the file otherwise")
    val.add_argument("-v", "--verbose", action="store_true",
                     help="also say which Dagu dialect (1.x or 2.x) the file was read as, and "
                     "why (said anyway when the file has a `run:`, whose meaning it decides)")
    _add_dialect_flags(val)
    _add_migrate_command(sub)

    _add_record_commands(sub)
    sch = sub.add_parser(
        "scheduler", help="run every DAG file of a directory on its schedule",
        description="Run every DAG file (*.yaml, *.yml) of DIR on its `schedule`, picking up "
        "new, edited and deleted files as it goes; never beyond maxActiveRuns (1 when "
        "absent). SIGINT/SIGTERM shut it down.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sch.add_argument("dir", nargs="?", default=".", metavar="DIR",
                     help="the directory of DAG files (default: the current one)")
    sch.add_argument("--on-stop", choices=("wait", "stop"), default="wait",
                     help="on shutdown, wait for running DAGs to finish (default) or stop them")
    _add_view_commands(sub)
    sub.add_parser("version", help="print dagfast's version")
    _command_examples(sub)
    return p


def _add_record_commands(sub) -> None:
    def add(name, help, description):
        return sub.add_parser(name, help=help, description=description, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    st = add("status", "show a run step by step",
             "Show a run: a header (DAG, run id, status, start, duration), then one line a "
             "step (status, duration, exit code, error). Exit 0 whatever the run's status, "
             "1 if there is no such run.")
    st.add_argument("target", nargs="?", metavar="DAG|RUN_ID",
                    help="a run id, or a DAG file or name (its latest run); default: the "
                    "latest run of any DAG")
    st.add_argument("step", nargs="?", metavar="STEP",
                    help="only this step, in detail: a name, handlerOn.EVENT, STEP/CHILD "
                    "or STEP[K]/CHILD (as `logs`)")
    st.add_argument("--json", action="store_true", help="print one JSON document")
    st.add_argument("--limit", type=_count, default=20, metavar="N",
                    help="with a fan-out STEP: list at most N of its failed items, then the "
                    "counts (0: all; default 20)")

    hi = add("history", "list the runs of a DAG", "List the runs of a DAG, newest first.")
    hi.add_argument("dag", metavar="DAG", help="a DAG file or name")
    hi.add_argument("-n", "--limit", type=_count, default=20, metavar="N",
                    help="show the N latest runs (0: all; default 20)")

    lo = add("logs", "print a step's output",
             "Print a step's stdout (all steps' when STEP is not given), or its stderr.")
    lo.add_argument("run", metavar="RUN_ID", help="the run, or a DAG (its latest run)")
    lo.add_argument("step", nargs="?", metavar="STEP",
                    help="the step's name or id; handlerOn.EVENT for a handler; STEP/CHILD "
                    "for a step of a sub-DAG step's run (any depth), STEP[K]/CHILD for its "
                    "fan-out item K")
    lo.add_argument("-f", "--follow", action="store_true",
                    help="keep printing what the step writes until the run ends")
    lo.add_argument("--stderr", action="store_true", help="print stderr instead of stdout")
    lo.add_argument("--item", metavar="K",
                    help="with a fan-out STEP (`parallel:`, `matrix:`): the output of its "
                    "item K, a key, or an index from 0 when no key is K")
    lo.add_argument("--attempt", type=_positive, metavar="N",
                    help="the step's Nth execution (retries, repeats and `dagfast retry` "
                         "each run it again; default: its latest)")

    re_ = add("retry", "run again the steps of a run that did not succeed",
              "A new attempt of the same run: the steps that did not succeed run again (or "
              "only STEP), the others keep their records. Exits as `run` does.")
    re_.add_argument("run", metavar="DAG|RUN_ID",
                     help="a run id, or a DAG file or name (its latest run)")
    re_.add_argument("--step", metavar="NAME", help="run only this step again")
    re_.add_argument("--downstream", action="store_true",
                     help="with --step: also every step that depends on it")
    re_.add_argument("--edited", action="store_true",
                     help="run the DAG as its file is now: succeeded steps whose definition "
                     "did not change keep their records, the others run again")
    re_.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    re_.add_argument("-v", "--verbose", action="store_true",
                     help="also print every step's output, each line prefixed with its name")
    re_.add_argument("--json", action="store_true",
                     help="print one JSON event a line instead of the progress view")
    re_.add_argument("--junit", metavar="FILE",
                     help="write a JUnit XML report (one test case a step) to FILE")
    _add_executor_flags(re_)

    so = add("stop", "stop a running run",
             "Stop a run: its running steps' process groups get SIGTERM, then SIGKILL after "
             "the clean-up period; the run ends `aborted`. Waits until it has ended.")
    so.add_argument("run", metavar="DAG|RUN_ID",
                    help="a run id, or a DAG file or name (its latest run)")
    so.add_argument("--wait", type=float, default=30.0, metavar="SEC",
                    help="how long to wait for the run to end (default 30)")

    pr = add("prune", "delete old runs",
             "Delete the records of old runs: those beyond the N latest (--keep N) or started "
             "before a time (--older-than 10d). Shows what it would delete unless --yes. "
             "Never deletes a running or queued run.")
    pr.add_argument("dag", nargs="?", metavar="DAG",
                    help="a DAG file or name (default: the runs of every DAG)")
    pr.add_argument("--keep", type=_count, metavar="N", help="keep the N latest runs of each DAG")
    pr.add_argument("--older-than", metavar="AGE",
                    help="delete runs started more than AGE ago: 30s, 15m, 12h, 10d or 2w")
    pr.add_argument("--yes", action="store_true", help="delete (without it: only show)")

    pictures = (
        ("trace", "JSON", "write a run as a Chrome trace (Perfetto, chrome://tracing)",
         "Write the run in Chrome's trace event format: one track a concurrency slot, "
         "a slice a step execution with its status, exit code and cost."),
        ("report", "HTML", "write a run as one HTML page (timeline, critical path, failures)",
         "Write one self-contained HTML file about a run: a Gantt timeline with the "
         "critical path highlighted, the slowest steps, and the failures with the end "
         "of their stderr. No network, no server: open it in a browser."),
    )
    for name, kind, short, long in pictures:
        pic = add(name, short, long)
        pic.add_argument("run", nargs="?", metavar="DAG|RUN_ID",
                         help="a run id, or a DAG file or name (its latest run); default: "
                         "the latest run of any DAG")
        pic.add_argument("-o", "--output", metavar="FILE", required=True,
                         help=f"the {kind} file to write (`-`: stdout)")

    dr = add("dry", "show the order steps would start in, running nothing",
             "Show the order in which steps would start, in rounds, as if every step took "
             "the same time; runs nothing and records nothing.")
    dr.add_argument("dag", metavar="DAG", help="the DAG's YAML file")
    _add_dialect_flags(dr)
    dr.add_argument("--max-active-steps", type=int, metavar="N",
                    help="override the DAG's maxActiveSteps (0: unlimited)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dagfast` console script; returns the exit status. Run as the
    process's own command (`argv` None), it ends the process once done (`_exit`)."""
    status = _main(argv)
    if argv is None:
        _exit(status)
    return status


def _exit(status: int) -> None:
    """End the process now, its output flushed, skipping the interpreter's teardown:
    freeing every module and object costs 20 to 35 ms, a fifth of a one-step run (mypy
    ends the same way). Not after the scheduler command or a Dask cluster, whose
    finalizers stop what they started, nor while a thread of ours still runs; and never
    when a flush fails (the normal exit then says why, as before)."""
    if "distributed" in sys.modules or "dagfast.cli.scheduler" in sys.modules:
        return
    threading = sys.modules.get("threading")
    if threading is not None and any(
        t.is_alive() and not t.daemon for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(status)


def _main(argv: list[str] | None) -> int:
    try:
        args = _parse(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    try:
        _apply_dialect_flags(args)
        if args.command == "run":
            return _run(args)
        if args.command == "migrate":
            from dagfast.cli.migrate import main as migrate  # start-up: only `migrate`

            return migrate(args)
        if args.command == "validate":
            return _validate(args)
        # Each command imports what it uses, when it is run (start-up of the others).
        if args.command in ("status", "history", "logs", "dry", "trace", "report"):
            from dagfast.cli import views as commands  # start-up: only these commands

            return getattr(commands, args.command)(args)
        if args.command in ("retry", "stop", "prune"):
            from dagfast.cli import control  # start-up: only retry, stop and prune

            if args.command == "retry":
                _check_output_flags(args)

            return getattr(control, args.command)(args)
        if args.command == "scheduler":
            from dagfast.cli.scheduler import main as scheduler  # start-up: only `scheduler`

            return scheduler(args)
        if args.command in ("graph", "completion"):
            return _VIEWS[args.command](args)
        if args.command == "version":
            print(f"dagfast {__version__}")
            return EXIT_OK
        raise UsageError(f"unknown command {args.command!r}")  # argparse prevents this
    except LoadError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    except DagfastError as exc:
        print(f"dagfast: {exc}", file=sys.stderr)
        return _exit_status(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`dagfast status | head`): stop quietly, as
        # a tool killed by SIGPIPE would, and keep the exit from failing on the flush.
        from dagfast.report.base import to_devnull

        to_devnull(sys.stdout)
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # anything else is a bug, and we say so
        if os.environ.get("DAGFAST_TRACEBACK"):
            raise
        print(
            f"dagfast: internal error (this is a bug): {type(exc).__name__}: {exc}; "
            "set DAGFAST_TRACEBACK=1 for the traceback",
            file=sys.stderr,
        )
        return EXIT_BUG


def _parse(argv: list[str] | None):
    """The command line as argparse reads it, except that `run`'s parameters may follow
    options given after the DAG (`run DAG -q -- A=8`, `run DAG -q A=8`), as the synopsis
    says: argparse alone takes the DAG and its (empty) parameters together, then
    rejects the rest."""
    words = sys.argv[1:] if argv is None else argv
    parser = _parser(words[0] if words and words[0] in _COMMANDS else None)
    args, extras = parser.parse_known_args(words)
    if extras and args.command == "run":
        cut = extras.index("--") if "--" in extras else len(extras)
        before = extras[:cut]
        options = [w for w in before if w.startswith("-") and w != "-"]
        if not options:
            args.params = list(args.params) + before + extras[cut + 1 :]
            extras = options
    if extras:
        parser.error("unrecognized arguments: " + " ".join(extras))
    return args


def _exit_status(exc: DagfastError) -> int:
    """The exit status for an error raised on purpose (LoadError is handled apart)."""
    if isinstance(exc, UsageError):
        return EXIT_INVALID
    if isinstance(exc, SchedulerBug):
        return EXIT_BUG
    return EXIT_FAILED  # RunError and any other DagfastError: the run could not go on


def _validate(args) -> int:
    # validate never loads the engine (start-up)
    from dagfast.loader import load
    from dagfast.loader.subdags import check_sub_dags

    readings = []
    dag = load(args.dag, evaluate=False, on_reading=readings.append)  # runs no backtick
    check_sub_dags(dag, evaluate=False)
    print(f"{args.dag}: valid ({len(dag.steps)} steps)")
    if args.verbose or readings[0].matters:  # `run:` means what the reading says
        print(f"{args.dag}: {readings[0].said()}")
    if not args.quiet:
        _say_reading(args.dag, readings[0])
    return EXIT_OK


def _run(args) -> int:
    # The engine and its reporters only for `run` (start-up of the other commands).
    from dagfast.records import runslots
    from dagfast.runtime import session

    _check_output_flags(args)
    words = _param_words(args)
    try:
        result = session.run(
            args.dag, params=words or None, max_active_steps=args.max_active_steps,
            reporter=_reporter(args), queue=not args.no_queue, executor=args.executor,
            scheduler=args.scheduler, shared_dir=args.shared_dir,
            on_reading=None if args.quiet else lambda r: _say_reading(args.dag, r),
        )
    except runslots.RunsFull as exc:
        print(f"dagfast: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except runslots.Stopped as exc:  # stopped while waiting for a run slot: said so
        print(f"dagfast: {exc}", file=sys.stderr)
        return 128 + exc.signal
    return session.exit_status(result)


# Dagu's dialects and sub-DAG names (issue 16) ---------------------------------------------


def _add_dialect_flags(parser) -> None:
    parser.add_argument(
        "--dialect", choices=("1", "2"),
        help="read the file (and its sub-DAGs) as Dagu 1.x or 2.x, whatever it looks like "
        "(env DAGFAST_DIALECT; DAG key dialect); by default its forms decide",
    )
    parser.add_argument(
        "--dags", metavar="DIR",
        help="where `call: NAME` looks for NAME(.yaml|.yml) after the calling file's own "
        "directory (env DAGFAST_DAGS; default: the directory of the DAG file given)",
    )


def _apply_dialect_flags(args) -> None:
    """--dialect and --dags reach every load (sub-DAGs too) through the environment the
    loader reads, which the steps inherit (a nested `dagfast run` reads alike)."""
    if args.dialect:
        os.environ["DAGFAST_DIALECT"] = args.dialect
    if args.dags is not None:
        if not os.path.isdir(args.dags):
            raise UsageError(f"--dags {args.dags}: no such directory")
        os.environ["DAGFAST_DAGS"] = os.path.abspath(args.dags)


def _say_reading(path: str, reading) -> None:
    """The one line a file gets when dagfast runs it otherwise than Dagu 1.x would."""
    if reading.warning:
        print(f"{path}: {reading.warning}", file=sys.stderr)


def _add_migrate_command(sub) -> None:
    mi = sub.add_parser(
        "migrate", help="rewrite a DAG file in the other Dagu dialect (1.x <-> 2.x)",
        description="Write FILE in the other Dagu dialect: 1.x (camelCase, `command:`) to "
        "2.x (snake_case, `run:`), or back; comments and layout are kept. What has no "
        "equivalent is refused with its place in the file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mi.add_argument("dag", metavar="FILE", help="the DAG's YAML file")
    mi.add_argument("--to", choices=("1", "2"),
                    help="the dialect to write (default: the one the file is not in)")
    mi.add_argument("-o", "--output", metavar="OUT",
                    help="write to OUT instead of standard output")


# Output and parameters of `run` (issue 7) ------------------------------------------------


def _add_executor_flags(parser) -> None:
    """Where steps run (issue 9); each flag beats its environment variable, which beats
    the DAG's own key (README, "Beyond one machine")."""
    parser.add_argument(
        "--executor", choices=("local", "dask"),
        help="run steps as local processes (the default) or on a Dask cluster "
        "(env DAGFAST_EXECUTOR; DAG key stepExecutor)",
    )
    parser.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="with --executor dask: the Dask scheduler, e.g. tcp://10.0.0.5:8786; without "
        "one, a local cluster is started for the run (env DAGFAST_DASK_SCHEDULER; DAG key "
        "daskScheduler)",
    )
    parser.add_argument(
        "--shared-dir", metavar="DIR",
        help="with --executor dask: a directory the workers share with this machine, at the "
        "same path; step logs are written there instead of travelling back with the "
        "result (env DAGFAST_DASK_SHARED_DIR; DAG key daskSharedDir)",
    )


def _add_output_flags(run) -> None:
    run.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE",
        help="override parameter KEY (repeatable); the same as `-- KEY=VALUE`",
    )
    run.add_argument("-v", "--verbose", action="store_true",
                     help="also print every step's output, each line prefixed with its name")
    run.add_argument("--json", action="store_true",
                     help="print one JSON event a line (run/step started and finished) "
                     "instead of the progress view")
    run.add_argument("--junit", metavar="FILE",
                     help="write a JUnit XML report (one test case a step) to FILE")


def _param_words(args) -> list[str]:
    """`-p KEY=VALUE` words then `-- PARAMS` words: one list for params.parse."""
    for word in args.param:
        name, eq, _ = word.partition("=")
        if not eq or not name:
            raise UsageError(f"-p takes KEY=VALUE, not `{word}`")
    return list(args.param) + list(args.params)


def _count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _positive(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _check_output_flags(args) -> None:
    """Output flags that cannot work are usage errors before anything runs."""
    if args.quiet and args.verbose:
        raise UsageError("--quiet and --verbose cannot be used together")
    if args.junit:
        where = os.path.dirname(os.path.abspath(args.junit))
        if os.path.isdir(args.junit):
            raise UsageError(f"--junit {args.junit}: is a directory, not a file")
        if not os.path.isdir(where):
            raise UsageError(f"--junit {args.junit}: no directory {where}")
        if not os.access(where, os.W_OK | os.X_OK):
            raise UsageError(f"--junit {args.junit}: cannot write in {where}")


def _reporter(args):
    """The reporters `run` uses: see report.choose (progress on a terminal, plain lines
    otherwise or under CI, JSON lines with --json; NO_COLOR turns colour off)."""
    from dagfast.report.choose import choose  # start-up: only commands that run

    return choose(sys.stdout, quiet=args.quiet, verbose=args.verbose, json=args.json,
                  junit=args.junit)



# `graph`, `completion`, and examples in every command's --help (issue 7) ------------------

_EXAMPLES = {
    "run": """\
  dagfast run examples/parallel.yaml
  dagfast run --max-active-steps 4 -p DATE=2026-11-28 big.yaml
  dagfast run dag.yaml -- DATE=2026-11-28 positional
  dagfast run --executor dask --scheduler tcp://10.0.0.5:8786 dag.yaml
  dagfast run --json dag.yaml | jq -c 'select(.event == "step_finished")'
  CI=1 dagfast run --junit report.xml --verbose dag.yaml""",
    "validate": "  dagfast validate dag.yaml\n  dagfast validate --verbose --dags dags/ dag.yaml",
    "migrate": "  dagfast migrate old.yaml -o new.yaml    # Dagu 1.x -> 2.x, or back",
    "dry": "  dagfast dry dag.yaml\n  dagfast dry --max-active-steps 2 dag.yaml",
    "graph": """\
  dagfast graph examples/parallel.yaml              # text, level by level
  dagfast graph --format dot dag.yaml | dot -Tsvg > dag.svg
  dagfast graph --format mermaid dag.yaml""",
    "status": "  dagfast status                   # the latest run of any DAG\n"
              "  dagfast status dag.yaml --json   # the latest run of dag.yaml",
    "history": "  dagfast history dag.yaml -n 5",
    "logs": "  dagfast logs 20261128T162600123Z-9f3a1c\n"
            "  dagfast logs 20261128T162600123Z-9f3a1c build --stderr --follow",
    "retry": "  dagfast retry 20261128T162600123Z-9f3a1c\n"
             "  dagfast retry dag.yaml --edited       # the latest run, as the file is now\n"
             "  dagfast retry 20261128T162600123Z-9f3a1c --step build --downstream",
    "stop": "  dagfast stop 20261128T162600123Z-9f3a1c --wait 60\n  dagfast stop dag.yaml",
    "prune": "  dagfast prune --keep 10            # show what would go\n"
             "  dagfast prune dag.yaml --older-than 10d --yes",
    "trace": "  dagfast trace 20261128T162600123Z-9f3a1c -o run.json   # open in ui.perfetto.dev",
    "report": "  dagfast report dag.yaml -o run.html",
    "scheduler": "  dagfast scheduler dags/\n  dagfast scheduler --on-stop stop dags/",
    "version": "  dagfast version",
    "completion": """\
  dagfast completion bash > ~/.local/share/bash-completion/completions/dagfast
  dagfast completion zsh > ~/.zfunc/_dagfast""",
}


def _add_view_commands(sub) -> None:
    gr = sub.add_parser(
        "graph", help="draw a DAG as text, Graphviz dot or Mermaid",
        description="Print a DAG's steps and dependencies: as text level by level (a step's "
        "level is one more than its deepest dependency's), as Graphviz dot, or as a Mermaid "
        "flowchart. Runs nothing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gr.add_argument("dag", metavar="DAG", help="the DAG's YAML file")
    _add_dialect_flags(gr)
    gr.add_argument("-f", "--format", choices=("text", "dot", "mermaid"), default="text",
                    help="the output format (default text)")
    co = sub.add_parser(
        "completion", help="print a shell completion script",
        description="Print a completion script for SHELL; source it, or install it where "
        "your shell looks for completions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    co.add_argument("shell", choices=("bash", "zsh", "tcsh"), metavar="SHELL",
                    help="bash, zsh or tcsh")


def _command_examples(sub) -> None:
    """Every command's --help ends with the exit statuses and its own examples."""
    statuses = _EPILOG.split("\n\nexamples:")[0]
    for name, parser in sub.choices.items():
        examples = _EXAMPLES.get(name)
        if examples:
            parser.epilog = f"{statuses}\n\nexamples:\n{examples}\n"
            parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _graph(args) -> int:
    # only `graph` (start-up)
    from dagfast.report.graph import render
    from dagfast.loader import load

    sys.stdout.write(render(load(args.dag, evaluate=False), args.format))
    return EXIT_OK


def _completion(args) -> int:
    import shtab

    sys.stdout.write(shtab.complete(_parser(), shell=args.shell))
    return EXIT_OK


_VIEWS = {"graph": _graph, "completion": _completion}


if __name__ == "__main__":
    sys.exit(main())
