"""Replay: a repeat of a UDP packet from the same client gets the chain's answer again.

The chain's answer to a UDP query depends on the packet (without its ID), on who sent it, and
on state that changes seldom: the policy snapshot, the lists, the parents' block mode, the
cache, and the clock (TTLs count down by the second, schedules switch on whole minutes). So the
server keeps the bytes the chain answered (after the ID), keyed by (client address, packet
without ID), and answers a repeat of that packet from them, with the new ID, until the first of:

- the time the stage that answered set in ``query.replay_until``: a cache hit, its entry's
  expiry (the entry is kept with the answer, and at each new second of its age the replayed
  bytes get the entry's TTLs for that second: the same bytes the cache would build; a hit on a
  rewritten question, safe search, holds until its TTLs tick); a block answer (constant TTL),
  no limit of its own. Stages that leave it at 0 are never replayed: upstream answers, stale
  answers, SERVFAIL, refusals, rate limits, local answers;
- the next whole minute of the wall clock, when schedules may switch -- or the next second when
  the decider's inputs are not known to the replay (no `index` given: a decider of a test);
- at once, for everything: a new policy snapshot (``Live.value``: a parent's edit, a grant, a
  pause, an expiry, a new day), a new list index (a sync), a different block mode, a cleared
  cache.

A replayed query still counts against the client's rate limit (the chain answers it when the
limit is reached) and in the query metrics (same outcome and type). It writes no activity row:
the chain logged, or deliberately skipped, that same lookup less than a second ago, and the log
keeps one row per lookup per minute (resolver/observe.py), and a block is replayed a minute at
most. Only answers of 512 bytes or less are kept (no truncation question), at most
`max_entries` at once.

It pays where a client repeats itself -- retries, several apps or tabs asking the same name,
apps hammering a blocked tracker, a flood, a load generator -- and costs one dict lookup when
it misses. process() on a cache hit: 8.7 -> 1.7 us CPU (tests/bench/bench_hotpath.py
--micro-only --stages).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from policy.memo import Memo
from resolver.metrics import Metrics
from resolver.pipeline import Query, Reply


class _Admit(Protocol):
    def admit(self, ip: str) -> bool: ...


class _Generation(Protocol):
    generation: int


class Replay:
    """The chain's answers by (client, packet without ID), while they hold (module docstring)."""

    __slots__ = (
        "_clock",
        "_live",
        "_index",
        "_mode_of",
        "_cache",
        "_rate",
        "_metrics",
        "_entries",
        "_policy",
        "_lists",
        "_mode",
        "_generation",
        "hits",
    )

    def __init__(
        self,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        live: Any = None,  # Live[Policy] (its .value identity is the policy snapshot)
        index: Any = None,  # Live[Index] the decider reads (None: verdicts hold a second)
        mode: Callable[[], str] | None = None,
        cache: _Generation | None = None,
        rate: _Admit | None = None,
        max_entries: int = 20_000,
    ) -> None:
        self._clock = clock
        self._live = live
        self._index = index
        self._mode_of = mode
        self._cache = cache
        self._rate = rate
        self._metrics = metrics
        # (client, packet after the ID) -> (reply after the ID, until, metrics key, latency
        # counts, cache entry or None, the entry's age in seconds the reply was made for, where
        # the entry's records start in the reply)
        self._entries: Memo[tuple[str, bytes], tuple[Any, ...]] = Memo(max(max_entries, 1))
        self._policy: object = None
        self._lists: object = None
        self._mode: str | None = None
        self._generation = -1
        self.hits = 0

    def answer(self, data: bytes, client_ip: str) -> bytes | None:
        """The answer to a repeat of a packet the chain answered, while it holds; or None."""
        if not self._current():
            self._reset()
            return None
        found = (client_ip, data[2:])
        hit = self._entries.get(found)
        if hit is None:
            return None
        tail, until, key, counts, entry, age, start = hit
        now = self._clock()
        if now >= until:
            return None  # the chain answers; keep() replaces the entry
        if entry is not None and int(now - entry.stored) != age:
            # a new second of the cache entry's life: its TTLs, as Cache.enter would patch them
            age = int(now - entry.stored)
            body = entry.patched if age == entry.tick else entry.body_at(age)
            tail = tail[:start] + body + tail[start + len(body) :]
            entry.hot = True  # in use: the cache's eviction spares it (cache.py)
            self._entries[found] = (tail, until, key, counts, entry, age, start)
        rate = self._rate
        if rate is not None and not rate.admit(client_ip):
            return None  # the chain answers it (and counts the refusal)
        queries = self._metrics.queries
        queries[key] = queries.get(key, 0) + 1
        counts[0] += 1  # the fastest latency bucket
        self.hits += 1
        return data[:2] + tail

    def keep(self, query: Query, reply: Reply, out: bytes) -> None:
        """Remember the chain's answer `out` to `query` (UDP, <= 512 bytes)."""
        if query.forwarded:
            return  # one forwarder speaks for many devices: `answer` could not count per device
        counts = self._metrics.durations.get(reply.source)
        if counts is None:
            return
        now = self._clock()
        if self._index is None:
            cap = math.floor(now) + 1.0
        else:  # schedules switch on whole minutes (policy/schedule.py)
            cap = now + 60.0 - time.time() % 60.0
        until = min(query.replay_until, cap)
        if until <= now:
            return
        entry = query.replay_entry if reply.source == "cache" else None  # not a later block
        self._entries.put((query.client_ip, query.request[2:]), (
            out[2:],
            until,
            (reply.outcome, query.question.qtype),
            counts,
            entry,
            entry.tick if entry is not None else 0,
            query.question.end - 2,  # after flags, counts and the question
        ))

    def _current(self) -> bool:
        live = self._live
        if live is not None and live.value is not self._policy:
            return False
        index = self._index
        if index is not None and index.value is not self._lists:
            return False
        mode_of = self._mode_of
        if mode_of is not None and mode_of() != self._mode:
            return False
        cache = self._cache
        return cache is None or cache.generation == self._generation

    def _reset(self) -> None:
        self._entries.clear()
        if self._live is not None:
            self._policy = self._live.value
        if self._index is not None:
            self._lists = self._index.value
        if self._mode_of is not None:
            self._mode = self._mode_of()
        if self._cache is not None:
            self._generation = self._cache.generation
