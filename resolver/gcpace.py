"""Keep CPython's cyclic collector off the resolver's long-lived data.

The collector's oldest generation is scanned whole: every cache entry, parsed-question memo,
verdict memo and the rater's tries. With a filling cache that took 30-110 ms of CPU every
1.5-9 s under a few thousand new names a second (measured with a gc callback: gen-2 passes over
50-95k tracked objects), and every query that arrived during one waited for it: the 35-73 ms
p99 of the new-name workloads at only 2,000 qps.

`GcPacer` moves every object that exists into the permanent generation (`gc.freeze()`, an O(1)
list splice) after start-up and then every `freeze_every` seconds, and turns the automatic
gen-2 pass off (its threshold set out of reach): gen-0 and gen-1 passes still collect the
short-lived cycles (an exception and its traceback), within milliseconds. With the pass left
on, freezing alone still left a second of promotions to scan: 35k objects, 14 ms of CPU at
8,000 new names a second. Frozen objects are still freed by reference counting, which is how
cache entries, memo rows and old policy and index snapshots die (none of them form cycles).
What could leak is a cycle that outlived gen 1; every `full_every` seconds (default 10 min)
the pacer unfreezes and runs one full collection, then freezes again: one pause (tens of ms
with a full cache) every ten minutes instead of one every few seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

NEVER = 2**31 - 1  # gen-1 passes before an automatic gen-2 pass: never, in practice


class GcPacer:
    def __init__(
        self,
        *,
        freeze_every: float = 1.0,
        full_every: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.freeze_every = freeze_every
        self.full_every = full_every
        self._clock = clock
        self._last_full = clock()
        self._timer: asyncio.TimerHandle | None = None
        self._thresholds: tuple[int, int, int] | None = None
        self.full_passes = 0

    def start(self) -> None:
        """After start-up: one full collection, freeze the survivors, then tick."""
        self._thresholds = gc.get_threshold()
        gen0, gen1, _gen2 = self._thresholds
        gc.set_threshold(gen0, gen1, NEVER)
        self.full()
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def full(self) -> None:
        gc.unfreeze()
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        self._last_full = self._clock()
        self.full_passes += 1
        log.debug("full gc pass: %.1f ms", (time.perf_counter() - started) * 1000)

    def tick(self) -> None:
        if self._clock() - self._last_full >= self.full_every:
            self.full()
        else:
            gc.freeze()

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.freeze_every, self._run)

    def _run(self) -> None:
        self._timer = None
        try:
            self.tick()
        finally:
            self._schedule()
