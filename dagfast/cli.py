"""The command line: the only module that prints for the user or exits.

Exit statuses:
  0    the run succeeded (or the DAG is valid, or the command did what it was asked)
  1    the run failed, or the run or step asked for does not exist (or is not running)
  2    the DAG file is invalid, or the command line is wrong
  70   an internal error: a bug in dagfast (please report it)
  130  the run was interrupted by SIGINT (Ctrl-C); 143 by SIGTERM
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import DagfastError, LoadError, RunError, SchedulerBug, UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_BUG = 70

_EPILOG = """\
exit statuses: 0 succeeded (or done), 1 failed (or no such run, step, running run),
2 invalid DAG or usage, 70 internal error, 130/143 interrupted by SIGINT/SIGTERM

examples:
  dagfast run examples/parallel.yaml
  dagfast run --max-active-steps 4 --quiet big.yaml
  dagfast validate dag.yaml
  dagfast status --json            # the latest run
  dagfast retry 20261128T162600123Z-9f3a1c
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dagfast",
        description="Run DAGs of shell steps, in parallel, as fast as processes start.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

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

    _add_record_commands(sub)
    sub.add_parser("version", help="print dagfast's version")
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
    st.add_argument("--json", action="store_true", help="print one JSON document")

    hi = add("history", "list the runs of a DAG", "List the runs of a DAG, newest first.")
    hi.add_argument("dag", metavar="DAG", help="a DAG file or name")
    hi.add_argument("-n", "--limit", type=int, default=20, metavar="N",
                    help="show the N latest runs (0: all; default 20)")

    lo = add("logs", "print a step's output",
             "Print a step's stdout (all steps' when STEP is not given), or its stderr.")
    lo.add_argument("run", metavar="RUN_ID", help="the run, or a DAG (its latest run)")
    lo.add_argument("step", nargs="?", metavar="STEP", help="the step's name or id")
    lo.add_argument("-f", "--follow", action="store_true",
                    help="keep printing what the step writes until the run ends")
    lo.add_argument("--stderr", action="store_true", help="print stderr instead of stdout")

    re_ = add("retry", "run again the steps of a run that did not succeed",
              "A new attempt of the same run: the steps that did not succeed run again (or "
              "only STEP), the others keep their records. Exits as `run` does.")
    re_.add_argument("run", metavar="RUN_ID")
    re_.add_argument("--step", metavar="NAME", help="run only this step again")
    re_.add_argument("-q", "--quiet", action="store_true", help="print only the summary")

    so = add("stop", "stop a running run",
             "Stop a run: its running steps' process groups get SIGTERM, then SIGKILL after "
             "the clean-up period; the run ends `aborted`. Waits until it has ended.")
    so.add_argument("run", metavar="RUN_ID")
    so.add_argument("--wait", type=float, default=30.0, metavar="SEC",
                    help="how long to wait for the run to end (default 30)")

    dr = add("dry", "show the order steps would start in, running nothing",
             "Show the order in which steps would start, in rounds, as if every step took "
             "the same time; runs nothing and records nothing.")
    dr.add_argument("dag", metavar="DAG", help="the DAG's YAML file")
    dr.add_argument("--max-active-steps", type=int, metavar="N",
                    help="override the DAG's maxActiveSteps (0: unlimited)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dagfast` console script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "validate":
            return _validate(args)
        if args.command in ("status", "history", "logs", "dry"):
            from . import commands

            return getattr(commands, args.command)(args)
        if args.command in ("retry", "stop"):
            from . import control

            return getattr(control, args.command)(args)
        if args.command == "version":
            from . import __version__

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
    except Exception as exc:  # anything else is a bug, and we say so
        if os.environ.get("DAGFAST_TRACEBACK"):
            raise
        print(
            f"dagfast: internal error (this is a bug): {type(exc).__name__}: {exc}; "
            "set DAGFAST_TRACEBACK=1 for the traceback",
            file=sys.stderr,
        )
        return EXIT_BUG


def _exit_status(exc: DagfastError) -> int:
    """The exit status for an error raised on purpose (LoadError is handled apart)."""
    if isinstance(exc, UsageError):
        return EXIT_INVALID
    if isinstance(exc, SchedulerBug):
        return EXIT_BUG
    return EXIT_FAILED  # RunError and any other DagfastError: the run could not go on


def _validate(args) -> int:
    from .load import load

    dag = load(args.dag)
    print(f"{args.dag}: valid ({len(dag.steps)} steps)")
    return EXIT_OK


def _run(args) -> int:
    from .load import load

    if args.max_active_steps is not None and args.max_active_steps < 0:
        raise UsageError("--max-active-steps must be 0 (unlimited) or more")
    given = None
    if args.params:
        from .params import parse

        given = parse(list(args.params))  # already split by the caller's shell
    dag = load(args.dag, params=given)

    from .engine import Engine
    from .report import ConsoleReporter
    from .status import RunStatus
    from .store import RunDir, home

    run_dir = RunDir.create(dag, home())
    reporter = ConsoleReporter(sys.stdout, quiet=args.quiet)
    result = Engine(dag, run_dir, reporter, max_active_steps=args.max_active_steps).run()
    if run_dir.failure is not None:  # the record could not be kept: the run was stopped
        raise RunError(f"the run was stopped: {run_dir.failure}")
    if result.signal:
        return 128 + int(result.signal)
    # partially_succeeded: every failure was allowed by continueOn; aborted without a
    # signal: the DAG's preconditions were not met (as Dagu, exit 0).
    ok = (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED, RunStatus.ABORTED)
    return EXIT_OK if result.status in ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
