"""`dns.workers`: several processes serving DNS on the same ports, so every core answers.

One CPython process answers on one core. With `dns.workers` N > 1, `nestguard serve` keeps
the store, the policy reload, the list sync and the web UI in the main process, and starts N
worker processes (multiprocessing "spawn") that each:

- bind every `dns.listen` address, UDP and TCP, with SO_REUSEPORT: the kernel spreads clients
  over the workers by address and port, and a worker that dies leaves the others listening;
- run the whole query chain with their own cache, replay and memos;
- read the policy from the store with the same reload loop as the main process (a change made
  in the web UI or the CLI is in force in every worker within RELOAD_EVERY, 0.5 s, plus the
  rebuild);
- map the list index file the main process's sync writes (`mmap`: its pages are shared by
  every worker) and follow its replacements (root._follow_index);
- write their own activity and sightings to the store (SQLite takes writers from several
  processes; each batch is one transaction);
- send the daily-time-budget hits and the alert events (security blocks, bypass attempts) of
  the queries they answered to the main process with each report: its one BudgetTracker counts
  the minutes of every worker and its Alerts tell the parents, as with one process;
- send their counters to the main process twice a second over a pipe. The main process adds
  them up for /metrics (and keeps the last figures of a worker that died, so counters never go
  back). prometheus-client's multiprocess mode would need the same copying, because the hot
  path counts in plain ints, plus an environment variable set before any import and files to
  clean for dead pids; a pipe is simpler.

The main process restarts a worker that dies (after 1 s, doubling to 30 s while it keeps
dying within 10 s of starting). SIGTERM (or SIGINT) stops the web UI, then sends SIGTERM to
every worker, each of which stops listening, answers what is in flight and flushes its
activity (open_resolver's exit), and waits for them. A worker whose main process is gone
(its pipe closes) stops too. Workers ignore SIGINT: a Ctrl-C in a terminal reaches the whole
process group, and the main process orders the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from aiohttp import web

from resolver.assembly import open_resolver, start_web
from resolver.config import Config
from resolver.gcpace import GcPacer
from resolver.metrics import METRICS, Metrics
from resolver.process import run_loop, setup_logging
from resolver.root import Household, open_household

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 0.5  # seconds between a worker's counter reports
READY_TIMEOUT = 120.0  # a worker maps the index and opens the store: seconds, not minutes
STOP_TIMEOUT = 10.0  # per worker, after SIGTERM, before SIGKILL
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
QUICK_DEATH = 10.0  # a worker dying this soon after starting doubles the restart delay

Snapshot = dict[str, Any]


def snapshot(metrics: Metrics) -> Snapshot:
    """A worker's counters, as plain data for the pipe."""
    cache = metrics.cache
    return {
        "queries": dict(metrics.queries),
        "durations": {k: list(v) for k, v in metrics.durations.items()},
        "sums": dict(metrics.duration_sums),
        "activity_dropped": metrics.activity_dropped,
        "sightings_dropped": metrics.sightings_dropped,
        "cache": (
            (len(cache), cache.hits, cache.misses, cache.evictions) if cache else (0, 0, 0, 0)
        ),
        "degraded": sorted(metrics._degraded),
    }


@dataclasses.dataclass
class CacheTotals:
    """The workers' caches, added up (Metrics.cache for the collector)."""

    entries: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    def __len__(self) -> int:
        return self.entries


def add_up(snapshots: list[Snapshot], into: Metrics) -> None:
    """Set `into`'s counters to the sum of the workers' snapshots."""
    queries: dict[tuple[str, int], int] = {}
    durations: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    cache = CacheTotals()
    activity = sightings = 0
    for snap in snapshots:
        for key, n in snap["queries"].items():
            queries[key] = queries.get(key, 0) + n
        for source, counts in snap["durations"].items():
            total = durations.setdefault(source, [0] * len(counts))
            for i, n in enumerate(counts):
                total[i] += n
            sums[source] = sums.get(source, 0.0) + snap["sums"].get(source, 0.0)
        entries, hits, misses, evictions = snap["cache"]
        cache.entries += entries
        cache.hits += hits
        cache.misses += misses
        cache.evictions += evictions
        activity += snap["activity_dropped"]
        sightings += snap["sightings_dropped"]
    into.queries = queries
    into.durations = durations
    into.duration_sums = sums
    into.cache = cache
    into.activity_dropped = activity
    into.sightings_dropped = sightings


# ---------------------------------------------------------------------- in a worker process


def worker_main(config: Config, number: int, conn: Connection) -> None:
    """The worker process's entry point (multiprocessing target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(config, prefix=f"[dns-{number}] ")
    run_loop(_worker(config, number, conn))


async def _worker(config: Config, number: int, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def parent_gone() -> None:
        try:
            while conn.poll():
                conn.recv()  # nothing is sent this way today
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            stop.set()

    loop.add_reader(conn.fileno(), parent_gone)
    async with (
        open_household(config, worker=True) as hh,
        open_resolver(config, hh.resolver_services()) as running,
    ):
        conn.send(("ready", number, os.getpid(), running.addresses))
        pacer = GcPacer()
        pacer.start()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SNAPSHOT_EVERY)
                _report(conn, number, hh)
        finally:
            pacer.stop()
    # stopped listening, answered what was in flight, flushed the activity log
    with contextlib.suppress(OSError):
        _report(conn, number, hh)
    with contextlib.suppress(OSError, ValueError):
        loop.remove_reader(conn.fileno())


def _report(conn: Connection, number: int, hh: Household) -> None:
    """Counters, then the budget hits and alert events since the last report."""
    conn.send(("metrics", number, snapshot(METRICS)))
    if hh.worker_budgets is not None and (hits := hh.worker_budgets.drain()):
        conn.send(("budgets", number, hits))
    if hh.worker_alerts:
        events, hh.worker_alerts = hh.worker_alerts, []
        conn.send(("alerts", number, events))


# ---------------------------------------------------------------------- in the main process


@dataclasses.dataclass
class Worker:
    number: int
    process: BaseProcess
    conn: Connection
    started: float
    ready: asyncio.Future[int]
    snapshot: Snapshot | None = None
    pid: int = 0


class Supervisor:
    """Starts `config.dns.workers` workers, restarts any that dies, adds up their counters,
    and hands their budget hits and alert events to the main process's household."""

    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics = METRICS,
        household: Household | None = None,
    ) -> None:
        self.config = config
        self.household = household
        self.count = config.dns.workers
        self.metrics = metrics
        self.workers: dict[int, Worker] = {}
        self._ctx = multiprocessing.get_context("spawn")
        self._retired: list[Snapshot] = []  # last figures of workers that died
        self._stopping = False
        self._delays: dict[int, float] = {}
        self._restarts: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._own_degraded: set[str] = set()

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers.values() if w.pid]

    async def start(self) -> None:
        """Bind-check every listen address (port 0 picks one for all workers), start the
        workers, and return when each answers."""
        probes, listen = _reserve(self.config.dns.listen)
        dns = dataclasses.replace(self.config.dns, listen=tuple(listen))
        self.config = dataclasses.replace(self.config, dns=dns)
        self.metrics.workers_running = 0
        try:
            # the first worker holds the ports before the probes let go of them
            first = self._spawn(1)
            await self._ready(first)
        finally:
            for s in probes:
                s.close()
        others = [self._spawn(n) for n in range(2, self.count + 1)]
        for w in others:
            await self._ready(w)
        for host, port in listen:
            log.info("listening on %s port %d (udp, tcp) with %d workers", host, port, self.count)
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop())

    async def _ready(self, w: Worker) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not w.ready.done():
            if w.process.exitcode is not None:
                raise RuntimeError(
                    f"DNS worker {w.number} exited with {w.process.exitcode} while starting"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"DNS worker {w.number} did not start within {READY_TIMEOUT:.0f} s"
                )
            await asyncio.wait([w.ready], timeout=0.2)

    def _spawn(self, number: int) -> Worker:
        loop = asyncio.get_running_loop()
        mine, theirs = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main, args=(self.config, number, theirs), name=f"nestguard-dns-{number}"
        )
        process.start()
        theirs.close()
        w = Worker(number, process, mine, time.monotonic(), loop.create_future())
        self.workers[number] = w
        loop.add_reader(mine.fileno(), self._receive, w)
        return w

    def _receive(self, w: Worker) -> None:
        try:
            while w.conn.poll():
                message = w.conn.recv()
                kind = message[0]
                if kind == "metrics":
                    w.snapshot = message[2]
                    self._add_up()
                elif kind == "budgets":
                    hh = self.household
                    if hh is not None and hh.budgets is not None:
                        hh.budgets.worker_hits(message[2])
                elif kind == "alerts":
                    hh = self.household
                    if hh is not None and hh.alerts is not None:
                        for event in message[2]:
                            hh.alerts.emit(event)
                elif kind == "ready":
                    w.pid = message[2]
                    if not w.ready.done():
                        w.ready.set_result(w.pid)
                    self._add_up()
        except (EOFError, OSError):
            self._close_pipe(w)  # the worker is gone; the watch loop restarts it

    def _close_pipe(self, w: Worker) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(w.conn.fileno())
        w.conn.close()

    def _add_up(self) -> None:
        live = [w for w in self.workers.values() if w.ready.done() and w.process.is_alive()]
        snaps = [w.snapshot for w in self.workers.values() if w.snapshot is not None]
        add_up(self._retired + snaps, self.metrics)
        self.metrics.workers_running = len(live)
        per_worker: dict[int, int] = {}
        for w in self.workers.values():
            if w.snapshot is not None:
                per_worker[w.number] = sum(w.snapshot["queries"].values())
        self.metrics.worker_queries = per_worker
        degraded = {r for s in snaps for r in s["degraded"]}
        for reason in self._own_degraded - degraded:
            self.metrics.set_degraded(f"worker: {reason}", False)
        for reason in degraded:
            self.metrics.set_degraded(f"worker: {reason}")
        self._own_degraded = degraded

    async def _watch_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.2)
            for w in list(self.workers.values()):
                if w.process.exitcode is not None and not self._stopping:
                    self._died(w)

    def _died(self, w: Worker) -> None:
        lived = time.monotonic() - w.started
        log.warning(
            "DNS worker %d (pid %s) exited with %s after %.0f s; restarting it",
            w.number, w.pid, w.process.exitcode, lived,
        )  # fmt: skip
        if not w.conn.closed:
            self._receive(w)  # its last counters, if any
        if not w.conn.closed:
            self._close_pipe(w)
        if w.snapshot is not None:
            self._retired.append(w.snapshot)
            w.snapshot = None
        del self.workers[w.number]
        self.metrics.worker_restarts += 1
        delay = self._delays.get(w.number, RESTART_DELAY)
        self._delays[w.number] = (
            min(delay * 2, RESTART_DELAY_MAX) if lived < QUICK_DEATH else RESTART_DELAY
        )
        task = asyncio.get_running_loop().create_task(self._restart(w.number, delay))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)
        self._add_up()

    async def _restart(self, number: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._stopping:
            return
        w = self._spawn(number)
        try:
            await self._ready(w)
            log.info("DNS worker %d is back (pid %d)", number, w.pid)
        except RuntimeError as e:
            log.error("%s", e)  # the watch loop sees it die (or it answers late)

    async def stop(self) -> None:
        """SIGTERM every worker, wait for them to drain (bounded), then SIGKILL the rest."""
        self._stopping = True
        for task in [*self._restarts, *([self._watch] if self._watch else [])]:
            task.cancel()
        for w in self.workers.values():
            if w.process.is_alive():
                with contextlib.suppress(OSError):
                    w.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for w in self.workers.values():
            left = max(0.0, deadline - time.monotonic())
            await asyncio.to_thread(w.process.join, left)
            if w.process.exitcode is None:
                log.warning("DNS worker %d did not stop in time; killing it", w.number)
                w.process.kill()
                await asyncio.to_thread(w.process.join, 5)
            if not w.conn.closed:
                self._receive(w)  # the final counters
            if not w.conn.closed:
                self._close_pipe(w)
        self._add_up()
        self.metrics.workers_running = 0


def _reserve(listen: tuple[tuple[str, int], ...]) -> tuple[list[socket.socket], list[Any]]:
    """Bind each listen address once (SO_REUSEPORT, UDP and TCP) to fail early on a port in
    use and to turn port 0 into one port every worker shares."""
    from resolver.server import _tcp_socket, _udp_socket

    probes: list[socket.socket] = []
    resolved = []
    try:
        for host, port in listen:
            udp = _udp_socket(host, port, 0, reuse_port=True)
            probes.append(udp)
            bound = udp.getsockname()[1]
            probes.append(_tcp_socket(host, bound, reuse_port=True))
            resolved.append((host, bound))
    except BaseException:
        for s in probes:
            s.close()
        raise
    return probes, resolved


async def supervise(
    config: Config,
    web_app: Callable[[], web.Application] | None,
    household: Household | None = None,
) -> None:
    """`nestguard serve` with dns.workers > 1: the workers and the web UI, until SIGTERM.
    `household`: the main process's, which counts the workers' budget hits and sends their
    alerts."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(config, household=household)
    try:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(supervisor.stop)
            await supervisor.start()
            await start_web(stack, config, web_app)
            pacer = GcPacer()
            pacer.start()
            stack.callback(pacer.stop)
            await stop.wait()
            log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
