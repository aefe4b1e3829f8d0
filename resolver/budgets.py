"""Counting daily time budgets from the queries as they come (policy/budgets.py has the rules).

`BudgetTracker` owns the day's `Meter`, loads it from the store at start (counts survive a
restart), writes changed counts every `flush_every` seconds, and at once when a budget is
spent: that write bumps the store's revision and nudges the policy reload, so the spent
budget blocks within a second of the minute that spent it.

`BudgetMeter` is the stage (between Enforce and Cache: its `leave` sees every answer the
child got, from the cache or an upstream, never a block). For a child's device with budgets
(profile.budget_keys) and a name that is a service's activity name, it reads the answer's
smallest TTL (the answer is not changed) and tells the tracker.

With `dns.workers` > 1 each worker's stage feeds a `WorkerBudgetHits` instead: the hits go to
the main process over the worker's pipe (resolver/workers.py), where the one tracker counts
every worker's queries, writes the counts and tells of spent budgets, as with one process.

The "budget spent" event: `BudgetTracker.listeners` are called on the event loop with a
`BudgetSpent(child_id, slug, day, minutes)` once per budget and limit (again after extra time
runs out). Alerts (e-mail, push) hook in there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from policy.budgets import Meter
from policy.services import activity_service
from policy.store import Store
from resolver.pipeline import Query, Reply

log = logging.getLogger(__name__)

DEFAULT_TTL = 60  # when an answer carries no record with a TTL (NODATA without SOA)


@dataclass(frozen=True, slots=True)
class BudgetSpent:
    child_id: int
    slug: str
    day: date
    minutes: int


class BudgetTracker:
    """The day's counts: fed by the stage, persisted in the store (module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        nudge: Callable[[], None],
        limits_of: Callable[[int], Mapping[str, int]] = lambda child_id: {},
        flush_every: float = 5.0,
    ) -> None:
        self.store = store
        self.meter = Meter()
        self._limits_of = limits_of
        self._clock = clock
        self._nudge = nudge
        self._flush_every = flush_every
        self._wake = asyncio.Event()
        self._spent = False
        self.listeners: list[Callable[[BudgetSpent], None]] = []

    def load(self) -> None:
        """Today's counts from the store (call in a thread at start)."""
        day = self._clock().date()
        self.meter.load(day, self.store.budget_usage(day))

    def hit(self, child_id: int, keys: tuple[str, ...], limits: Mapping[str, int],
            ttl: int) -> None:
        self._count(child_id, keys, limits, self._clock(), ttl)

    def _count(self, child_id: int, keys: tuple[str, ...], limits: Mapping[str, int],
               at: datetime, ttl: int) -> None:
        spent = self.meter.hit(child_id, keys, limits, at, ttl)
        if spent:
            self._spent_now([(child_id, slug) for slug in spent], at.date())

    def worker_hits(self, hits: list[WorkerHit]) -> None:
        """A DNS worker's hits (WorkerBudgetHits.drain), in the order it answered them, with
        the limits of the policy in force here (the workers read the same store)."""
        zone = self._clock().tzinfo
        for child_id, keys, at, ttl in hits:
            self._count(child_id, keys, self._limits_of(child_id),
                        datetime.fromtimestamp(at, zone), ttl)

    def _spent_now(self, spent: list[tuple[int, str]], day: date) -> None:
        self._spent = True
        self._wake.set()
        for child_id, slug in spent:
            event = BudgetSpent(child_id, slug, day, self.meter.minutes(child_id, slug))
            log.info("budget %s of child %d spent (%d minutes)", slug, child_id, event.minutes)
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("a budget-spent listener failed")

    async def flush(self) -> None:
        """Close the stretches that went silent (their tails count), write what changed."""
        at = self._clock()
        closed = self.meter.close(at, self._limits_of)
        if closed:
            self._spent_now(closed, at.date())
        rows = self.meter.dirty()
        spent, self._spent = self._spent, False
        if not rows and not spent:
            return
        await asyncio.to_thread(self.store.save_budget_usage, rows, spent=spent)
        if spent:
            self._nudge()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_every)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the counts stay in memory; the next flush writes them
                log.exception("cannot write budget counts")
        with contextlib.suppress(Exception):
            await self.flush()


# (child id, budget keys, when as a POSIX timestamp, the answer's TTL)
WorkerHit = tuple[int, tuple[str, ...], float, int]
MAX_WORKER_HITS = 100_000  # between two reports (0.5 s): far above any household's rate


class WorkerBudgetHits:
    """In a DNS worker: the budget hits of the queries it answers, for the main process."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._hits: list[WorkerHit] = []
        self.dropped = 0

    def hit(self, child_id: int, keys: tuple[str, ...], limits: Mapping[str, int],
            ttl: int) -> None:
        if len(self._hits) >= MAX_WORKER_HITS:
            self.dropped += 1
            return
        self._hits.append((child_id, tuple(keys), self._clock().timestamp(), ttl))

    def drain(self) -> list[WorkerHit]:
        hits, self._hits = self._hits, []
        return hits


class BudgetSink(Protocol):
    """What the stage feeds: the tracker (one process) or a worker's hits (dns.workers)."""

    def hit(self, child_id: int, keys: tuple[str, ...], limits: Mapping[str, int],
            ttl: int) -> None: ...


class BudgetMeter:
    """Stage (leave only): feeds the tracker with the child's answered activity names."""

    def __init__(self, tracker: BudgetSink) -> None:
        self._tracker = tracker

    def leave(self, query: Query, reply: Reply) -> Reply:
        profile = query.profile
        if profile is None or not profile.budget_keys or profile.child is None:
            return reply
        data = reply.wire
        if data is None or reply.rcode != 0 or reply.source == "policy":
            return reply
        slug = activity_service(query.question.name)
        if slug is None:
            return reply
        keys = profile.budget_keys.get(slug)
        if keys:
            ttl = min_answer_ttl(data)
            self._tracker.hit(
                profile.child.id, keys, profile.budget_limits,
                DEFAULT_TTL if ttl is None else ttl,
            )
        return reply


def min_answer_ttl(msg: bytes) -> int | None:
    """The smallest TTL of the answer section of a DNS message, or None (none / unreadable)."""
    try:
        qd = int.from_bytes(msg[4:6], "big")
        an = int.from_bytes(msg[6:8], "big")
        i = 12
        for _ in range(qd):
            i = _skip_name(msg, i) + 4
        best: int | None = None
        for _ in range(an):
            i = _skip_name(msg, i)
            ttl = int.from_bytes(msg[i + 4 : i + 8], "big")
            rdlen = int.from_bytes(msg[i + 8 : i + 10], "big")
            if i + 10 + rdlen > len(msg):
                return best
            best = ttl if best is None else min(best, ttl)
            i += 10 + rdlen
        return best
    except IndexError:
        return None


def _skip_name(msg: bytes, i: int) -> int:
    while True:
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += n + 1
