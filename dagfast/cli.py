"""The command line: the only module that prints for the user or exits.

Exit statuses:
  0    the run succeeded (or the DAG is valid)
  1    the run failed
  2    the DAG file is invalid, or the command line is wrong
  70   an internal error: a bug in dagfast (please report it)
  130  the run was interrupted by SIGINT (Ctrl-C); 143 by SIGTERM
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import DagfastError, LoadError, SchedulerBug, UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_BUG = 70

_EPILOG = """\
exit statuses: 0 succeeded, 1 failed, 2 invalid DAG or usage, 70 internal error,
130/143 interrupted by SIGINT/SIGTERM

examples:
  dagfast run examples/parallel.yaml
  dagfast run --max-active-steps 4 --quiet big.yaml
  dagfast validate dag.yaml
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

    sub.add_parser("version", help="print dagfast's version")
    return p


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
    if args.params:
        raise UsageError("parameters (`-- NAME=VALUE`) are not supported yet")
    dag = load(args.dag)

    from .engine import Engine
    from .report import ConsoleReporter
    from .status import RunStatus
    from .store import RunDir, home

    run_dir = RunDir.create(dag, home())
    reporter = ConsoleReporter(sys.stdout, quiet=args.quiet)
    result = Engine(dag, run_dir, reporter, max_active_steps=args.max_active_steps).run()
    if result.signal:
        return 128 + int(result.signal)
    return EXIT_OK if result.status == RunStatus.SUCCEEDED else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
