"""What a run's steps printed, read from its output store (records/outstore.py), for
tests that check it from outside the engine."""

from __future__ import annotations

from pathlib import Path

from dagfast.records.outstore import Output

__all__ = ["everything_printed", "printed", "started_printing", "the_run"]


def the_run(home: Path) -> Path:
    """The one run directory under `home`."""
    (run,) = [p for p in (home / "runs").glob("*/*") if p.is_dir()]
    return run


def printed(run: Path | str, step: int, stream: str = "out", attempt: int | None = None,
            encoding: str = "utf-8") -> str:
    """What step `step` (its id) of the run at `run` printed on "out" or "err", in
    execution `attempt` (default: its latest)."""
    with Output(str(run)) as out:
        return out.read(step, 0 if stream == "out" else 1, attempt).decode(encoding)


def started_printing(home: Path, step: int = 0, stream: str = "out") -> Path | None:
    """The first run under `home` whose step `step` has printed something on `stream`
    (None yet)."""
    for run in sorted((home / "runs").glob("*/*")):
        if (run / "output").exists():
            with Output(str(run)) as out:
                if out.total(step, 0 if stream == "out" else 1):
                    return run
    return None


def everything_printed(home: Path, stream: str = "out") -> list[str]:
    """What every step of every run under `home` (sub-DAG runs too) printed on `stream`
    in its latest execution, one text per step that printed anything."""
    texts = []
    for data in sorted(home.rglob("output")):
        with Output(str(data.parent)) as out:
            slots = (data.parent / "output.idx").stat().st_size // 40
            for step in range(slots):
                text = out.read(step, 0 if stream == "out" else 1).decode("utf-8", "replace")
                if text:
                    texts.append(text)
    return texts
