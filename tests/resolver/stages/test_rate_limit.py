"""RateLimit: at most `queries` per window per device; beyond it REFUSED here, next not called."""

from __future__ import annotations

import dns.rcode

from resolver.guard import RateLimit
from tests.conftest import FakeClock
from tests.resolver.stages.recorder import Next, ede, message, query, run


async def test_over_the_limit_is_refused_without_asking_next():
    limit, nxt = RateLimit(queries=3, per_seconds=60, clock=FakeClock()), Next()
    replies = [await run(limit, query(client="192.168.1.20"), nxt) for _ in range(5)]
    assert replies[:3] == [nxt.reply] * 3
    for reply in replies[3:]:
        assert reply.outcome == "ratelimited"
        msg = message(reply)
        assert msg.rcode() == dns.rcode.REFUSED and ede(msg) == [(18, "rate limit")]
    assert len(nxt.queries) == 3
    assert limit.limited == 2


async def test_one_client_over_the_limit_leaves_the_others_alone():
    limit, nxt = RateLimit(queries=2, per_seconds=60, clock=FakeClock()), Next()
    for _ in range(4):
        await run(limit, query(client="192.168.1.20"), nxt)
    assert await run(limit, query(client="192.168.1.21"), nxt) is nxt.reply


def test_one_window_per_ipv6_64_and_a_new_window_later():
    clock = FakeClock()
    limit = RateLimit(queries=3, per_seconds=60, clock=clock)
    results = [limit.enter(query(client=f"2001:db8:1:2::{i}")) for i in range(1, 6)]
    assert results[:3] == [None] * 3
    assert all(r is not None and r.outcome == "ratelimited" for r in results[3:])
    assert limit.enter(query(client="2001:db8:1:3::1")) is None  # another /64
    assert limit.enter(query(client="192.0.2.1")) is None
    clock.advance(61)
    assert limit.enter(query(client="2001:db8:1:2::9")) is None  # a new window


async def test_devices_behind_a_mac_passing_router_have_a_window_each():
    limit, nxt = RateLimit(queries=2, per_seconds=60, clock=FakeClock()), Next()

    def via_router(mac: str):
        return query(client="192.168.1.1", mac=mac, forwarded=True)

    for _ in range(2):
        assert await run(limit, via_router("aa:bb:cc:dd:ee:01"), nxt) is nxt.reply
    assert (await run(limit, via_router("aa:bb:cc:dd:ee:01"), nxt)).outcome == "ratelimited"
    assert await run(limit, via_router("aa:bb:cc:dd:ee:02"), nxt) is nxt.reply


async def test_zero_disables_the_limit():
    limit, nxt = RateLimit(queries=0, per_seconds=60, clock=FakeClock()), Next()
    for _ in range(50):
        await run(limit, query(), nxt)
    assert len(nxt.queries) == 50
