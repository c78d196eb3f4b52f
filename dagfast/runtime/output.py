"""The run's output store, opened for the engine (the format: records/outstore.py and
exec/outstore.h).

One writer per run: the store's pump stores what the steps' pipes carry, and the engine
appends what it has itself (a sub-DAG's gathered output, a Dask worker's logs) through
the same store (`put`), so records never interleave half-written.
"""

from __future__ import annotations

import os

from dagfast.errors import RunError
from dagfast.exec import _spawn
from dagfast.records import outstore

__all__ = [
    "RUN_LOG", "carry_over", "open_step_files", "open_store", "step_files", "used_tokens",
]


def open_store(run_dir, masker, steps: int) -> _spawn.Store:
    """The store of `run_dir` for this attempt (a retry appends, past a torn tail cut
    back), masking `masker`'s secrets (a Masker or None), with an index slot for each
    of `steps` (handlers included). Raises RunError."""
    path = run_dir.path
    fds = []
    try:
        end = outstore.cut_torn_tail(path)
        for name, flags in ((outstore.DATA, os.O_WRONLY), (outstore.INDEX, os.O_RDWR)):
            fds.append(os.open(os.path.join(path, name), flags | os.O_CLOEXEC))
        store = _spawn.Store(fds[0], end, fds[1], steps, masker.forms if masker else ())
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise RunError(f"cannot open the output store of `{path}`: {exc.strerror}") from None
    return store


def used_tokens(run_dir) -> int:
    """How many tokens the store's index has room for: none past it was ever used."""
    try:
        return os.path.getsize(os.path.join(run_dir.path, outstore.INDEX)) // outstore.SLOT
    except OSError:
        return 0


def carry_over(run_dir, moved: dict[int, int], steps: int) -> None:
    """`retry --edited`: the kept steps' latest output under their new ids (new id ->
    old id), as a new execution of each (all read first: ids may swap). Raises
    RunError."""
    with outstore.Output(run_dir.path) as out:
        texts = {new: (out.read(old, outstore.STDOUT), out.read(old, outstore.STDERR))
                 for new, old in moved.items() if new != old}
    if not texts:
        return
    store = open_store(run_dir, None, steps)
    try:
        for new, (text, err) in texts.items():
            store.begin(new)
            for stream, data in ((outstore.STDOUT, text), (outstore.STDERR, err)):
                failed = store.put(new, stream, data) if data else 0
                if failed:
                    raise RunError(f"cannot carry the kept steps' output over: "
                                   f"{os.strerror(failed)}")
    except OSError as exc:
        raise RunError(f"cannot carry the kept steps' output over: {exc.strerror}") from None
    finally:
        store.close()


# Dagu's per-step variables: the files behind them are made only for the steps (and the
# runs) whose command, script or env names one of them.
_RUN_LOG, _STEP_OUT, _STEP_ERR = "DAG_RUN_LOG_FILE", "DAG_RUN_STEP_STDOUT_FILE", "DAG_RUN_STEP_STDERR_FILE"
RUN_LOG = "run.log"


def step_files(dag, run_path: str) -> tuple[dict[int, dict[bytes, bytes]], str | None]:
    """({token: the variables to add to its environment}, the run log's path or None)
    for the steps and handlers (tokens after the steps) that name Dagu's variables.

    DAG_RUN_STEP_STDOUT_FILE / _STDERR_FILE are `steps/<token>.out|.err`, which get a
    copy of what the step prints (masked as the store is) while it runs;
    DAG_RUN_LOG_FILE is `run.log`, the run's console lines so far (a handler attaches
    it to a mail)."""
    wants: dict[int, dict[bytes, bytes]] = {}
    log = None
    steps = list(dag.steps) + [h.step for h in dag.handlers]
    for token, step in enumerate(steps):
        text = " ".join(step.argv) + (step.script or "") + " ".join(v for _, v in step.env)
        if "DAG_RUN_" not in text:
            continue
        env = {}
        if _RUN_LOG in text:
            log = os.path.join(run_path, RUN_LOG)
            env[_RUN_LOG.encode()] = os.fsencode(log)
        if _STEP_OUT in text or _STEP_ERR in text:
            base = os.path.join(run_path, "steps", str(token))
            env[_STEP_OUT.encode()] = os.fsencode(base + ".out")
            env[_STEP_ERR.encode()] = os.fsencode(base + ".err")
        if env:
            wants[token] = env
    return wants, log


def open_step_files(store, token: int, env: dict[bytes, bytes]) -> None:
    """Make (empty) the files of `token`'s DAG_RUN_STEP_* variables, for its next
    process's output to be copied into. Raises OSError."""
    out = env.get(_STEP_OUT.encode())
    if out is None:
        return
    err = env[_STEP_ERR.encode()]
    os.makedirs(os.path.dirname(out), mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    fo = os.open(out, flags, 0o600)
    try:
        fe = os.open(err, flags, 0o600)
    except OSError:
        os.close(fo)
        raise
    store.tee(token, fo, fe)
