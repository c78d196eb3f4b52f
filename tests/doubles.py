"""Test doubles that implement the real interfaces (used by tests/ and bench/)."""

from __future__ import annotations

from dagfast.exec.dry import DryRun as InstantExits

__all__ = ["InstantExits"]
