"""The command line: the only package that prints for the user or exits."""

from dagfast.cli.app import main

__all__ = ["main"]
