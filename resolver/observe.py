"""Observe: the first stage. Times each query, counts it, queues its activity-log row.

The activity log holds *lookups*, not packets: a (client, device, owner, qname, qtype, action,
reason) is written at most once per `log_every` seconds (default 60). Devices repeat the same
lookups many times a minute (apps polling, TTL-0 answers, several tabs); logging each repeat
cost about a third of the CPU of a cached answer (the row, its conversion and the SQLite write)
and told the parent nothing new. Metrics still count every query. A repeat within the window is
dropped before anything else is built (one dict lookup); counts in the activity log and the
UI's summaries are therefore counts of distinct lookups per minute, not of packets.

The hot path only appends a small tuple to a bounded in-memory queue; a background task
converts the rows to `policy.model.QueryEvent`s in a worker thread, off the query path, and
hands them in batches to an injected async sink (the store). When the queue is full, rows are
dropped and counted (never block DNS). Device sightings (ip, mac) go the same way to a second
sink, at most once a minute per address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

from policy.model import PolicyError, QueryEvent
from resolver.metrics import BUCKETS, Metrics
from resolver.pipeline import Query, Reply
from resolver.wire import qtype_text

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

ActivitySink = Callable[[list[QueryEvent]], Awaitable[None]]


class Sighting(NamedTuple):
    """A device seen on the network: its address and (when known) MAC.

    A tuple (ip, mac, at), as `policy.store.Store.seen` takes them.
    """

    ip: str  # "" when only the MAC is known (a query a trusted forwarder passed on)
    mac: str | None
    at: datetime


SightingSink = Callable[[list[Sighting]], Awaitable[None]]

_ACTIONS = {
    "answered": "allow",
    "cached": "allow",
    "local": "allow",
    "blocked": "block",
    "rewritten": "rewrite",
}
# outcomes not written to the activity log (floods and strangers)
_UNLOGGED = frozenset({"ratelimited", "refused"})
# Lookups remembered for the once-per-minute activity check. A home makes a few hundred distinct
# lookups a minute; past 20,000 a minute (a flood of new names) a repeat may be logged twice.
# Was 100,000: 37 MB more heap under floods, and the heap's growth was where the p99 went
# (README, Performance: bench_resolver.py distinct, p99 at 2,000 qps 5.3/4.2 -> 4.1/3.2 ms)
_MAX_LOGGED = 20_000


class BatchQueue(Generic[T, R]):
    """A bounded queue of raw rows, flushed in batches to an async sink by a background task."""

    def __init__(
        self,
        sink: Callable[[list[R]], Awaitable[None]],
        convert: Callable[[T], R],
        *,
        max_items: int = 20_000,
        batch: int = 500,
        interval: float = 1.0,
        name: str = "queue",
    ) -> None:
        self._sink = sink
        self._convert = convert
        self._items: list[T] = []
        self._max = max_items
        self._batch = batch
        self._interval = interval
        self._name = name
        self._wake = asyncio.Event()
        self.dropped = 0
        self.on_drop: Callable[[], None] | None = None
        # rows the sink failed to take (disk full, ...): counted, and told once per episode
        self.lost = 0
        self.on_lost: Callable[[int], None] | None = None
        self.on_recovered: Callable[[], None] | None = None
        self.failing = False

    def put(self, item: T) -> None:
        items = self._items
        if len(items) >= self._max:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()
            return
        items.append(item)
        if len(items) == self._batch:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._items)

    async def flush(self) -> None:
        while self._items:
            items, self._items = self._items, []
            try:
                # converted in a worker thread: ~7 us a row, 2-3 ms for a second's batch at
                # 2,000 qps of new names, which in one go on the loop stalled every query
                # behind it (the server lowers the GIL switch interval so the loop gets the
                # GIL back from this thread within 0.5 ms)
                rows = await asyncio.to_thread(self._convert_all, items)
                await self._sink(rows)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._lose(len(items), e)
            else:
                if self.failing:
                    self.failing = False
                    log.warning("%s: saving again (%d rows were lost)", self._name, self.lost)
                    if self.on_recovered is not None:
                        self.on_recovered()

    def _lose(self, n: int, e: Exception) -> None:
        """A failing sink (a full disk fails every batch): one warning when it starts, a count
        of what is lost, no traceback per batch."""
        self.lost += n
        if not self.failing:
            self.failing = True
            if isinstance(e, OSError | PolicyError):
                log.warning("%s: cannot save (%s); rows are dropped until it works", self._name, e)
            else:
                log.exception("%s: sink failed; rows are dropped until it works", self._name)
        else:
            log.debug("%s: sink still failing, %d more rows lost", self._name, n)
        if self.on_lost is not None:
            self.on_lost(n)

    def _convert_all(self, items: list[T]) -> list[R]:
        convert = self._convert
        return [convert(item) for item in items]

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    @contextlib.asynccontextmanager
    async def running(self, *, final_flush_timeout: float = 5.0) -> AsyncIterator[BatchQueue[T, R]]:
        """Run the flusher; on exit stop it and flush what is left (bounded in time)."""
        task = asyncio.get_running_loop().create_task(self.run(), name=f"{self._name}-flusher")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await asyncio.wait_for(self.flush(), final_flush_timeout)
            except TimeoutError:
                log.warning("%s: final flush timed out, %d rows lost", self._name, len(self))


ActivityRow = tuple[float, str, Any, Any, str, int, Any, str]


def event_of(row: ActivityRow) -> QueryEvent:
    at, client, device, profile, qname, qtype, verdict, outcome = row
    child = profile.child if profile is not None else None
    if child is not None and (device is None or device.owner != child.id):
        # an unassigned device filtered under a child's profile (the strictest, or the one
        # the household chose): its lookups are the device's, not that child's
        child = None
    return QueryEvent(
        at=datetime.fromtimestamp(at, UTC),
        client=client,
        device_id=device.id if device is not None else None,
        child_id=child.id if child is not None else None,
        qname=qname,
        qtype=qtype_text(qtype),
        action=str(verdict.action) if verdict is not None else _ACTIONS.get(outcome, outcome),
        reason=verdict.reason if verdict is not None else ("" if outcome in _ACTIONS else outcome),
        source=verdict.source if verdict is not None else "",
    )


def sighting_of(row: tuple[str, str | None, float]) -> Sighting:
    return Sighting(row[0], row[1], datetime.fromtimestamp(row[2], UTC))


class Sightings:
    """Queue (ip, mac) at most once per `every` seconds per address, or when the MAC changes."""

    def __init__(
        self, queue: BatchQueue[tuple[str, str | None, float], Sighting], *, every: float = 60.0
    ) -> None:
        self.queue = queue
        self._every = every
        self._seen: dict[str, tuple[str | None, float]] = {}

    def saw(self, ip: str, mac: str | None, now: float, *, key: str | None = None) -> None:
        """Queue (ip, mac) unless the same was queued for `key` (default: the address)
        within `every` seconds."""
        if key is None:
            key = ip
        last = self._seen.get(key)
        if last is not None and last[0] == mac and now - last[1] < self._every:
            return
        if len(self._seen) > 50_000:
            self._seen.clear()
        self._seen[key] = (mac, now)
        self.queue.put((ip, mac, time.time()))

    def saw_forwarded(self, mac: str, now: float) -> None:
        """A device known only by the MAC a trusted forwarder passed: the address the query
        came from is the forwarder's, so it is never paired with the MAC (it would move the
        router's address from device to device). "" is no address; keyed by the MAC."""
        self.saw("", mac, now, key="mac " + mac)


class Observe:
    """Stage (leave only): metrics, activity row, sighting. Never blocks, never raises.

    Activity: a (client, qname, qtype, action, reason) is queued at most once per `log_every`
    seconds (see the module docstring: the log holds lookups, not every repeated packet).
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        activity: BatchQueue[ActivityRow, QueryEvent] | None = None,
        sightings: Sightings | None = None,
        log_queries: bool = True,
        log_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._queries = metrics.queries
        self._durations = metrics.durations
        self._sums = metrics.duration_sums
        self._activity = activity if log_queries else None
        self._sightings = sightings
        self._clock = clock
        self._log_every = log_every
        # (client, device, owner, qname, qtype, action[, reason]) -> monotonic time it was
        # last queued, oldest first (a re-queued lookup moves to the end)
        self._logged: OrderedDict[tuple[object, ...], float] = OrderedDict()

    def leave(self, query: Query, reply: Reply) -> Reply:
        now = time.monotonic()
        q = query.question
        outcome = reply.outcome
        # Metrics.count and Metrics.observe, inlined (this runs for every query)
        queries = self._queries
        key = (outcome, q.qtype)
        queries[key] = queries.get(key, 0) + 1
        source = reply.source
        counts = self._durations.get(source)
        elapsed = now - query.received_at
        if counts is None:
            self._metrics.observe(source, elapsed)
        else:
            counts[bisect_left(BUCKETS, elapsed)] += 1
            self._sums[source] += elapsed
        if outcome in _UNLOGGED:
            return reply
        activity = self._activity
        if activity is not None:
            profile = query.profile
            verdict = query.verdict
            # security blocks reach the sink whatever the profile logs: parents are alerted
            # about them on any device (the household's sink keeps them out of the log)
            if profile is None or profile.log_queries or (
                verdict is not None and verdict.reason.startswith("security:")
            ):
                # keyed on the device and its owner too: a device assigned (or moved to
                # another child) within the minute logs its next lookup at once, under
                # the device and child it now belongs to
                device = query.device
                did, owner = (device.id, device.owner) if device is not None else (None, None)
                seen: tuple[object, ...]
                if verdict is None:
                    seen = (query.client_ip, did, owner, q.name, q.qtype,
                            _ACTIONS.get(outcome, outcome))
                else:
                    # the action's plain str (_value_): hashing the enum member runs Python code
                    action = verdict.action._value_
                    seen = (query.client_ip, did, owner, q.name, q.qtype, action,
                            verdict.reason)
                logged = self._logged
                last = logged.get(seen)
                if last is None or now - last >= self._log_every:
                    if last is not None:
                        logged.move_to_end(seen)  # the oldest stay at the front
                    elif logged:
                        self._expire(logged, now)
                    logged[seen] = now
                    activity.put(
                        (
                            time.time(),
                            query.client_ip,
                            query.device,
                            profile,
                            q.name,
                            q.qtype,
                            verdict,
                            outcome,
                        )
                    )
        sightings = self._sightings
        if sightings is not None:
            if query.forwarded and query.mac is not None:
                sightings.saw_forwarded(query.mac, now)
            else:
                sightings.saw(query.client_ip, query.mac, now)
        return reply

    def _expire(self, logged: OrderedDict[tuple[object, ...], float], now: float) -> None:
        """Forget at most two lookups from the front (the oldest): those whose window is
        over, and the oldest one while the memo is full. A constant amount of work per new
        lookup, so the memo never needs a rebuild on the loop (a 100k-entry rebuild stalled
        every query behind it)."""
        every = self._log_every
        for _ in range(2):
            if now - next(iter(logged.values())) >= every or len(logged) >= _MAX_LOGGED:
                logged.popitem(last=False)
                if not logged:
                    return
            else:
                return
