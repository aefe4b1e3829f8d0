"""Resolver metrics, counted in plain ints on the hot path and exposed by a prometheus collector.

prometheus-client's own Counter/Histogram take a lock and a label lookup per call (~1-2 us each);
at 50k+ qps that is several percent of a core. So the hot path bumps dict entries and a bucket
list here, and `ResolverCollector` turns them into metric families at scrape time.

Families: nestguard_queries_total{outcome,qtype}, nestguard_query_duration_seconds{source}
(histogram), nestguard_cache_entries, nestguard_cache_hits_total, nestguard_cache_misses_total,
nestguard_cache_evictions_total, nestguard_activity_dropped_total, nestguard_degraded.
Never labelled by domain or IP; qtype is limited to `QTYPE_LABELS` (else OTHER).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)

OUTCOMES = (
    "answered",
    "cached",
    "blocked",
    "rewritten",
    "refused",
    "servfail",
    "formerr",
    "malformed",
    "notimp",
    "local",
    "ratelimited",
)
SOURCES = ("policy", "cache", "upstream", "error", "local")
QTYPE_LABELS: dict[int, str] = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}
BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class CacheStats(Protocol):
    hits: int
    misses: int
    evictions: int

    def __len__(self) -> int: ...


class Metrics:
    """The resolver's counters. One per process (`METRICS`); tests read deltas."""

    def __init__(self) -> None:
        self.queries: dict[tuple[str, int], int] = {}  # (outcome, qtype number) -> count
        self.durations: dict[str, list[int]] = {}  # source -> bucket counts (+Inf last)
        self.duration_sums: dict[str, float] = {}
        self.activity_dropped = 0
        self.sightings_dropped = 0
        self.cache: CacheStats | None = None
        self._degraded: set[str] = set()
        # dns.workers > 1, in the main process (resolver/workers.py): the figures above are the
        # sum over every worker; these say how many run and how the kernel spreads queries
        self.workers_running: int | None = None
        self.worker_restarts = 0
        self.worker_queries: dict[int, int] = {}

    def count(self, outcome: str, qtype: int) -> None:
        key = (outcome, qtype)
        self.queries[key] = self.queries.get(key, 0) + 1

    def by_label(self) -> dict[tuple[str, str], int]:
        """Query counts keyed (outcome, qtype label), types outside QTYPE_LABELS as OTHER."""
        out: dict[tuple[str, str], int] = {}
        for (outcome, qtype), n in list(self.queries.items()):
            key = (outcome, QTYPE_LABELS.get(qtype, "OTHER"))
            out[key] = out.get(key, 0) + n
        return out

    def observe(self, source: str, seconds: float) -> None:
        counts = self.durations.get(source)
        if counts is None:
            counts = self.durations[source] = [0] * (len(BUCKETS) + 1)
            self.duration_sums[source] = 0.0
        counts[bisect_left(BUCKETS, seconds)] += 1
        self.duration_sums[source] += seconds

    def total(self, outcome: str, qtype: str | None = None) -> int:
        """Sum of nestguard_queries_total for an outcome (and qtype label); for tests."""
        return sum(
            n for (o, t), n in self.by_label().items() if o == outcome and qtype in (None, t)
        )

    def set_degraded(self, reason: str, on: bool = True) -> None:
        """nestguard_degraded is 1 while any reason is set (policy/lists fell back to the last
        good copy or the strict default)."""
        if on:
            self._degraded.add(reason)
        else:
            self._degraded.discard(reason)

    @property
    def degraded(self) -> bool:
        return bool(self._degraded)

    @property
    def degraded_reasons(self) -> frozenset[str]:
        return frozenset(self._degraded)


METRICS = Metrics()


class ResolverCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        q = CounterMetricFamily(
            "nestguard_queries", "DNS queries by outcome and type", labels=["outcome", "qtype"]
        )
        for (outcome, qtype), n in sorted(m.by_label().items()):
            q.add_metric([outcome, qtype], n)
        yield q
        h = HistogramMetricFamily(
            "nestguard_query_duration_seconds",
            "Time from reading a query to its reply, by answer source",
            labels=["source"],
        )
        for source, counts in sorted(list(m.durations.items())):
            cumulative = []
            acc = 0
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                acc += n
                cumulative.append((_bound(bound), acc))
            h.add_metric([source], cumulative, m.duration_sums[source])
        yield h
        cache = m.cache
        yield GaugeMetricFamily(
            "nestguard_cache_entries", "Answers in the cache", value=len(cache) if cache else 0
        )
        yield CounterMetricFamily(
            "nestguard_cache_hits", "Cache hits", value=cache.hits if cache else 0
        )
        yield CounterMetricFamily(
            "nestguard_cache_misses", "Cache misses", value=cache.misses if cache else 0
        )
        yield CounterMetricFamily(
            "nestguard_cache_evictions", "Cache evictions", value=cache.evictions if cache else 0
        )
        yield CounterMetricFamily(
            "nestguard_activity_dropped",
            "Activity-log rows dropped (the queue was full, or the database could not save them)",
            value=m.activity_dropped,
        )
        yield GaugeMetricFamily(
            "nestguard_degraded",
            "1 while running on fallback policy or lists",
            value=1 if m.degraded else 0,
        )
        if m.workers_running is not None:
            yield GaugeMetricFamily(
                "nestguard_workers", "DNS worker processes serving", value=m.workers_running
            )
            yield CounterMetricFamily(
                "nestguard_worker_restarts",
                "DNS worker processes restarted after dying",
                value=m.worker_restarts,
            )
            w = CounterMetricFamily(
                "nestguard_worker_queries", "DNS queries answered, by worker", labels=["worker"]
            )
            for number, n in sorted(m.worker_queries.items()):
                w.add_metric([str(number)], n)
            yield w


def _bound(b: float) -> str:
    return "+Inf" if b == float("inf") else repr(b)


_registered = False


def register() -> None:
    """Register the collector with the default registry (once per process)."""
    global _registered
    if not _registered:
        REGISTRY.register(ResolverCollector(METRICS))
        _registered = True


register()
