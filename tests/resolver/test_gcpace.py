"""GcPacer: long-lived objects leave the collector's scans; cycles frozen while alive are still
collected by the periodic full pass."""

from __future__ import annotations

import gc
import weakref

import pytest

from resolver.gcpace import GcPacer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _unfreeze():  # type: ignore[no-untyped-def]
    yield
    gc.unfreeze()


def test_tick_moves_new_objects_out_of_the_scanned_generations() -> None:
    now = [0.0]
    pacer = GcPacer(full_every=600, clock=lambda: now[0])
    pacer.full()
    entries = [Node() for _ in range(5000)]  # like cache entries made after start-up
    before = gc.get_freeze_count()
    now[0] = 1.0
    pacer.tick()
    assert gc.get_freeze_count() >= before + len(entries)
    assert not any(e is entries[0] for e in gc.get_objects(2))  # a gen-2 pass skips it


def test_a_cycle_frozen_while_alive_is_freed_by_the_next_full_pass() -> None:
    now = [0.0]
    pacer = GcPacer(full_every=600, clock=lambda: now[0])
    pacer.full()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    now[0] = 1.0
    pacer.tick()  # frozen while alive
    del a, b
    gc.collect()
    assert gone() is not None  # frozen: not collected yet
    now[0] = 601.0
    pacer.tick()  # the periodic full pass
    assert gone() is None
    assert pacer.full_passes == 2


async def test_serving_turns_the_automatic_full_pass_off_and_stop_restores_it() -> None:
    before = gc.get_threshold()
    pacer = GcPacer()
    pacer.start()
    try:
        gen0, gen1, gen2 = gc.get_threshold()
        assert (gen0, gen1) == before[:2] and gen2 > 10**9  # young passes stay as they were
    finally:
        pacer.stop()
    assert gc.get_threshold() == before
