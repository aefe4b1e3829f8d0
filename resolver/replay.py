"""Replay: the same packet from the same client within the same second gets the same answer.

The chain's answer to a UDP query depends on the packet (without its ID), on who sent it, and
on state that changes seldom: the policy snapshot, the parents' block mode, the cache, and the
clock to the second (TTL countdown, schedules, the verdict memo in Enforce). So the server keeps
the bytes the chain answered (after the ID), keyed by (client address, packet without ID), and
answers a repeat of that packet from them, with the new ID, until the first of:

- the next second of the cache's clock (TTLs keep counting down; the chain runs again);
- the time the stage that answered set in ``query.replay_until`` (a cache hit: its entry's
  expiry; a block answer: no limit of its own). Stages that leave it at 0 are never replayed:
  upstream answers, stale answers, SERVFAIL, refusals, rate limits, local answers;
- a new policy snapshot (``Live.value`` changes: a parent's edit, a grant, a pause, an expiry),
  a different block mode, or a cleared cache: everything is forgotten at once.

A replayed query still counts against the client's rate limit (the chain answers it when the
limit is reached) and in the query metrics (same outcome and type). It writes no activity row:
the chain logged, or deliberately skipped, that same lookup less than a second ago, and the log
keeps one row per lookup per minute (resolver/observe.py). Only answers of 512 bytes or less
are kept (no truncation question), at most `max_entries` a second.

It pays where a client repeats itself within a second -- retries, several apps or tabs asking
the same name, a flood, a load generator -- and costs one dict lookup when it misses.
Measured with tests/bench/bench_hotpath.py --micro-only: see the module's figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from resolver.metrics import Metrics
from resolver.pipeline import Query, Reply


class _Admit(Protocol):
    def admit(self, ip: str) -> bool: ...


class _Generation(Protocol):
    generation: int


class Replay:
    """Per-second answers by (client, packet without ID). See the module docstring."""

    __slots__ = (
        "_clock",
        "_live",
        "_mode_of",
        "_cache",
        "_rate",
        "_metrics",
        "_max",
        "_entries",
        "_until",
        "_policy",
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
        mode: Callable[[], str] | None = None,
        cache: _Generation | None = None,
        rate: _Admit | None = None,
        max_entries: int = 20_000,
    ) -> None:
        self._clock = clock
        self._live = live
        self._mode_of = mode
        self._cache = cache
        self._rate = rate
        self._metrics = metrics
        self._max = max_entries
        self._entries: dict[tuple[str, bytes], tuple[bytes, float, tuple[str, int], list[int]]]
        self._entries = {}
        self._until = -math.inf
        self._policy: object = None
        self._mode: str | None = None
        self._generation = -1
        self.hits = 0

    def answer(self, data: bytes, client_ip: str) -> bytes | None:
        """The answer to a repeat of a packet already answered this second, or None."""
        now = self._clock()
        if now >= self._until or not self._current():
            self._reset(now)
            return None
        hit = self._entries.get((client_ip, data[2:]))
        if hit is None:
            return None
        tail, until, key, counts = hit
        if now >= until:
            return None
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
        counts = self._metrics.durations.get(reply.source)
        entries = self._entries
        if counts is None or len(entries) >= self._max:
            return
        entries[(query.client_ip, query.request[2:])] = (
            out[2:],
            query.replay_until,
            (reply.outcome, query.question.qtype),
            counts,
        )

    def _current(self) -> bool:
        live = self._live
        if live is not None and live.value is not self._policy:
            return False
        mode_of = self._mode_of
        if mode_of is not None and mode_of() != self._mode:
            return False
        cache = self._cache
        return cache is None or cache.generation == self._generation

    def _reset(self, now: float) -> None:
        self._entries.clear()
        self._until = math.floor(now) + 1.0
        if self._live is not None:
            self._policy = self._live.value
        if self._mode_of is not None:
            self._mode = self._mode_of()
        if self._cache is not None:
            self._generation = self._cache.generation
