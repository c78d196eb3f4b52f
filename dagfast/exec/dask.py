"""The Dask executor: steps run as processes on the workers of a Dask cluster.

dagfast stays the brain (loading, dependencies, maxActiveSteps, retries, records); the
cluster only runs processes. Each started step is one Dask task (`daskworker.run_step`,
a unique key, `pure=False`) whose result is the process's wait status and its logs;
the logs are written into the run record before the end is reported, so `output:` and
`dagfast logs` work as they do locally. Signals travel by the step's key to whichever
worker runs it (`Client.run`). Imported only when a run asks for Dask.

A lost worker is an error, never a silent second run: a LocalCluster started here has
`distributed.scheduler.allowed-failures` 0, so the task fails with KilledWorker and the
step fails (or is retried by its retryPolicy) with an error naming the worker. A
remote scheduler keeps its own setting; when it would run a task again (or cannot
say), every step is guarded (daskworker.run_step's `guard`): a second start of its
task runs nothing and ends the step as one whose worker was lost.

distributed's own log lines are silenced in this process while a run is connected:
the run reports what they say as step errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import math
import os
import re
import signal
import uuid

import dask
import distributed

from dagfast.exec import daskworker
from dagfast.errors import RunError
from dagfast.errors import SpawnError
from dagfast.exec.base import UNLIMITED, Executor, Outcome, identity

__all__ = ["DaskExecutor", "DaskExecutors"]

LOCAL_WORKERS = 2
"""Worker processes of the LocalCluster started when no scheduler address is given:
two, so that steps really are spread over processes, and cheap to start (~0.5 s)."""

LOOPBACK_HTTP = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
"""A LocalCluster's scheduler serves HTTP (health, metrics) even without a dashboard, by
default on port 8787 of every interface: here on a free loopback port instead."""

SIGNAL_WAIT_SEC = 10.0  # how long closing waits for signals still on their way


class DaskExecutors:
    """The executor factory a Dask run gives its Engine: one DaskExecutor per engine (the
    run's and each sub-DAG's), all on one client, opened by the first and closed by
    the last. Without an address, the client's LocalCluster lives as long as the run."""

    def __init__(self, address: str | None, shared_dir: str | None) -> None:
        self.address = address
        self.shared_dir = shared_dir
        self.client = None
        self.cluster = None
        self.workers: dict[str, dict[str, float]] = {}  # address -> resources offered
        self.guard = False  # the scheduler may start a task again: guard each start
        self._log_levels: dict[str, int] = {}  # distributed's loggers, as they were
        self._users = 0
        self._numbers = itertools.count(1)

    def __call__(self, loop, limit: int, on_exits) -> DaskExecutor:
        return DaskExecutor(self, loop, limit, on_exits)

    def room(self, piped: bool = False) -> tuple[int, str]:
        """No local cap: the steps run on the workers, which Dask itself fills."""
        return UNLIMITED, ""

    def guard_run(self, run_id: str):
        """None: a worker ends its steps when it loses the scheduler (daskworker.py)."""
        return None

    def __repr__(self) -> str:
        return f"DaskExecutors({self.address or 'LocalCluster'!r})"

    async def acquire(self, dag, limit: int) -> str:
        """Connect (or start the LocalCluster) on first use; a notice for the user or ""."""
        self._users += 1
        notice = ""
        try:
            if self.client is None:
                notice = await self._connect(dag, limit)
            info = await self.client.scheduler.identity(n_workers=-1)
        except BaseException:
            await self.release()
            raise
        self.workers = {a: dict(w.get("resources") or {}) for a, w in info["workers"].items()}
        return notice

    async def release(self) -> None:
        """One user fewer; the last one closes the client (and the LocalCluster)."""
        self._users -= 1
        if self._users > 0:
            return
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            await client.close()
        if cluster is not None:
            await cluster.close()
        levels, self._log_levels = self._log_levels, {}
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

    def next_key(self, env: dict, token: int) -> str:
        """A key no other task has: the run's id, the step, and a counter."""
        run_id = env.get(b"DAG_RUN_ID", b"run").decode(errors="replace")
        return f"dagfast-{run_id}-{token}-{next(self._numbers)}"

    def misfit(self, resources: dict[str, float]) -> str:
        """"" when a worker offers all of `resources` (or none is connected yet: the
        scheduler waits for one), else why the step cannot run."""
        if not self.workers:
            return ""
        for offered in self.workers.values():
            if all(offered.get(k, 0) >= v for k, v in resources.items()):
                return ""
        asked = ", ".join(f"{k}={_amount(v)}" for k, v in resources.items())
        best = sorted({", ".join(f"{k}={_amount(v)}" for k, v in sorted(o.items())) or "none"
                       for o in self.workers.values()})
        return (f"no Dask worker offers the resources this step needs ({asked}); "
                f"the workers offer: {'; '.join(best)}")

    def _silence_logs(self) -> None:
        """No raw `distributed` log line reaches the user's terminal during the run
        (a child logger with its own level would pass its lines to the handlers)."""
        names = ["distributed"] + [n for n in logging.root.manager.loggerDict
                                   if n.startswith("distributed.")]
        for name in names:
            logger = logging.getLogger(name)
            self._log_levels.setdefault(name, logger.level)
            logger.setLevel(logging.CRITICAL + 1)

    async def _connect(self, dag, limit: int) -> str:
        self._silence_logs()
        if self.address is None:
            # Room for every step dagfast lets run at once (it enforces maxActiveSteps
            # itself); threads only wait on processes, and start when first needed.
            wanted = limit or max(len(dag.steps), 1)
            threads = max(8, math.ceil(min(wanted, 512) / LOCAL_WORKERS))
            try:
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    self.cluster = await distributed.LocalCluster(
                        n_workers=LOCAL_WORKERS, threads_per_worker=threads, processes=True,
                        host="127.0.0.1", dashboard_address=None, asynchronous=True,
                        resources=_machine_resources(), memory_limit=0,
                        silence_logs=logging.CRITICAL, scheduler_kwargs=LOOPBACK_HTTP,
                        preload=["dagfast.exec.daskworker"],  # its dask_setup: SIGINT ignored
                    )
            except (OSError, RuntimeError) as exc:
                raise RunError(f"cannot start a local Dask cluster: {exc}") from None
            self.client = await distributed.Client(
                self.cluster, asynchronous=True, set_as_default=False
            )
            return ""
        try:
            # Dask's own connect timeout applies (distributed.comm.timeouts.connect, 30 s;
            # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s says otherwise).
            self.client = await distributed.Client(
                self.address, asynchronous=True, set_as_default=False
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise RunError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from None
        try:
            allowed = await self.client.run_on_scheduler(_allowed_failures)
        except Exception:  # a scheduler that refuses to run functions: cannot tell
            allowed = None
        self.guard = allowed != 0
        return ""


class DaskExecutor(Executor):
    """One engine's executor on a Dask cluster, with steps started as Dask tasks and
    signalled by key."""

    def __init__(self, session: DaskExecutors, loop, limit: int, on_exits) -> None:
        super().__init__(loop, limit, on_exits)
        self._session = session
        self._ns = uuid.uuid4().hex  # this executor's groups on the workers
        self._running: dict[int, tuple[str, object]] = {}  # token -> (key, future)
        self._cancelled: dict[int, int] = {}  # token -> signal, for tasks stopped unstarted
        self._resources: dict[int, dict[str, float]] = {}  # token -> what it needs
        self._tasks: set[asyncio.Task] = set()  # watchers and signals on their way
        self._signals: set[asyncio.Task] = set()
        self._env: dict = {}
        self._live: int | None = None  # live groups on the workers, as last counted
        self._poll: asyncio.Task | None = None
        self._opened = False
        self._closed = False
        self._number = 0

    # Queries -------------------------------------------------------------------------

    @property
    def running_count(self) -> int:
        """Steps started and not yet reported ended."""
        return len(self._running)

    def live_groups(self) -> int:
        """Truthy while a step's group (or a process that left it) lives on a worker:
        counted in the background, so the first answer after a stop is "yes"."""
        poll = self._poll
        if poll is None or poll.done():
            if poll is not None:
                failed = poll.cancelled() or poll.exception() is not None
                self._live = 0 if failed else poll.result()
            self._poll = self.loop.create_task(self._count_live())
        return len(self._running) + (1 if self._live is None else self._live)

    # Events --------------------------------------------------------------------------

    async def open(self, dag) -> str:
        """Connect (the first executor of the run does); note what each step needs."""
        notice = await self._session.acquire(dag, self.limit)
        self._opened = True
        n = len(dag.steps)
        steps = list(enumerate(dag.steps)) + [(n + k, h.step) for k, h in enumerate(dag.handlers)]
        for token, step in steps:
            extra = step.extra
            if extra is not None and extra.resources:
                self._resources[token] = dict(extra.resources)
        return notice

    def start(self, token: int, argv, env: dict, cwd: str) -> int:
        """Submit step `token` as a Dask task; return a number that names it (no pid:
        the process lives on a worker). Raises SpawnError."""
        session = self._session
        client = session.client
        if client is None or self._closed:
            raise SpawnError("the Dask executor is not connected")
        resources = self._resources.get(token)
        if resources:
            why = session.misfit(resources)
            if why:
                raise SpawnError(why)
        files = _shipped(argv)
        key = session.next_key(env, token)
        guard = {"guard": True} if session.guard else {}
        future = client.submit(
            daskworker.run_step, self._ns, argv, env, cwd, files, session.shared_dir,
            key=key, pure=False, resources=resources or None, **guard,
        )
        self._running[token] = (key, future)
        self._env = env
        self._spawn(self._watch(token, key, future), self._tasks)
        self._number += 1
        return self._number

    def signal(self, token: int, sig: int) -> None:
        """Send `sig` to the process group of running step `token`, on its worker."""
        entry = self._running.get(token)
        if entry is not None:
            self._spawn(self._signal_steps([(token, entry)], sig), self._signals)

    def signal_running(self, sig: int) -> None:
        """Send `sig` to the process group of every running step."""
        if self._running:
            self._spawn(self._signal_steps(list(self._running.items()), sig), self._signals)

    def signal_all_groups(self, sig: int) -> None:
        """Send `sig` to every group started for this executor on any worker (background
        children of ended steps too), and to the processes of this run that left them."""
        self._spawn(self._broadcast(daskworker.signal_groups, self._ns, self._tags(), sig),
                    self._signals)

    def signal_escaped(self, sig: int, env: dict | None = None) -> int:
        """Send `sig` to this run's processes that left their group (with `env`, to
        those that carry that process's identity), on every worker; returns 0: the
        count comes back later (see live_groups)."""
        tags = identity(env) if env is not None else self._tags()
        if tags and sig:
            self._spawn(self._broadcast(daskworker.signal_escaped, self._ns, tags, sig),
                        self._signals)
        return 0

    def close(self) -> None:
        """No more steps start; `aclose` gives the client back."""
        self._closed = True

    async def aclose(self) -> None:
        """First, let the signals already sent reach the workers; second, kill what
        still runs (only an engine that failed leaves any); last, release the client."""
        if self._signals:
            await asyncio.wait(set(self._signals), timeout=SIGNAL_WAIT_SEC)
        if self._running and self._session.client is not None:
            await self._signal_steps(list(self._running.items()), signal.SIGKILL)
        for task in list(self._tasks):
            task.cancel()
        for _key, future in self._running.values():
            future.release()
        self._running.clear()
        if self._poll is not None:
            self._poll.cancel()
        if self._opened:
            self._opened = False
            try:
                await self._broadcast(daskworker.forget, self._ns)
            finally:
                await self._session.release()

    # Internals -----------------------------------------------------------------------

    def _spawn(self, coro, tasks: set) -> None:
        task = self.loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _tags(self) -> list[bytes]:
        run_id = self._env.get(b"DAG_RUN_ID")
        return [] if run_id is None else [b"DAG_RUN_ID=" + run_id]

    async def _broadcast(self, function, *args):
        """`function(*args)` on every worker: {worker: result}; workers that fail (one
        that is dying) are left out."""
        client = self._session.client
        if client is None:
            return {}
        try:
            return await client.run(function, *args, on_error="ignore")
        except (OSError, distributed.comm.CommClosedError):
            return {}

    async def _signal_steps(self, entries, sig: int) -> None:
        found = set()
        for keys in (await self._broadcast(
            daskworker.signal_steps, [key for _, (key, _) in entries], sig
        )).values():
            found.update(keys)
        unstarted = []
        for token, (key, future) in entries:
            if key not in found and not future.done():
                # On no worker: still queued (waiting for resources) or on its way, where
                # the worker was told to end it at once. It must not start later.
                self._cancelled.setdefault(token, sig)
                unstarted.append(future)
        if unstarted and self._session.client is not None:
            await self._session.client.cancel(unstarted)

    async def _count_live(self) -> int:
        counts = await self._broadcast(daskworker.signal_groups, self._ns, self._tags(), 0)
        return sum(c for c in counts.values() if type(c) is int)

    async def _watch(self, token: int, key: str, future):
        """Wait for the task; put its logs into the run's output store; report its end."""
        put = self.output.put
        try:
            status, out, err, error = await future
        except concurrent.futures.CancelledError as exc:  # distributed's, not asyncio's
            sig = self._cancelled.pop(token, None)
            if sig is not None:
                end = sig  # stopped before it started: as if killed by that signal
                note = ""
            else:
                end = Outcome(None, f"the Dask scheduler dropped the step ({_reason(exc)}); "
                                    "a worker that loses its scheduler kills its steps")
                note = f"dagfast: {end.error}\n"
            self._logs(token, key, note.encode())
        except distributed.KilledWorker as exc:
            worker = getattr(exc.last_worker, "address", exc.last_worker)
            end = Outcome(None, f"its Dask worker {worker} was lost")
            self._logs(token, key, f"dagfast: the Dask worker {worker} running "
                       "this step was lost; the step's processes there were killed\n".encode())
        except Exception as exc:  # the task itself failed on the worker
            end = Outcome(None, f"the Dask task failed: {type(exc).__name__}: {exc}")
            self._logs(token, key, f"dagfast: {end.error}\n".encode())
        else:
            if out is None:  # written to the shared directory
                self._logs(token, key, b"")
            else:
                put(token, 0, out)
                put(token, 1, err)
            if status is None:  # a second start of the task (guard): its worker was lost
                end = Outcome(None, error)
                put(token, 1, f"dagfast: {error}\n".encode())
            else:
                end = Outcome(127, error) if error else status
        finally:
            future.release()
        self._cancelled.pop(token, None)
        if self._running.pop(token, None) is not None:
            self.on_exits([(token, end)])
        if self._session.guard and self._session.client is not None:
            try:  # the scheduler forgets the started marker
                await self._session.client.scheduler.event_clear(
                    name=daskworker.started_marker(key))
            except Exception:  # a scheduler gone: it forgot the marker with the rest
                pass

    def _logs(self, token: int, key: str, note: bytes) -> None:
        """The logs a task left in the shared directory (if there is one) into the
        run's output store, then `note` on stderr. (The store appends: a task started
        twice keeps both starts' output, in order.)"""
        shared = self._session.shared_dir
        if shared:
            for stream, suffix in ((0, ".out"), (1, ".err")):
                src = os.path.join(shared, key + suffix)
                try:
                    with open(src, "rb") as f:
                        self.output.put(token, stream, f.read())
                    os.unlink(src)
                except FileNotFoundError:
                    pass
        if note:
            self.output.put(token, 1, note)


def _allowed_failures(dask_scheduler) -> int:
    """Run on the scheduler: how often it runs a task again after losing its worker."""
    return dask_scheduler.allowed_failures


def _machine_resources() -> dict[str, float]:
    """What each LocalCluster worker offers to `resources:`: the whole machine (its
    CPUs, its memory in bytes), so a step fits unless it asks for more than there is."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": float(os.cpu_count() or 1), "memory": float(memory)}


_SCRIPT = re.compile(r"\d+\.script")


def _shipped(argv) -> tuple:
    """The files of the run record that argv names (a step's script file, written as
    `<run>/steps/<id>.script` by store.RunDir.write_script): (argv index, name, bytes)
    each, since a worker may not see the record."""
    out = []
    for i, word in enumerate(argv):
        head, name = os.path.split(word)
        if _SCRIPT.fullmatch(name) and os.path.basename(head) == "steps" and os.path.isfile(word):
            with open(word, "rb") as f:
                out.append((i, name, f.read()))
    return tuple(out)


def _reason(exc) -> str:
    return getattr(exc, "reason", "") or str(exc) or type(exc).__name__


def _amount(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"
