"""Replay (resolver/replay.py): a repeat of a UDP packet from the same client within the second
gets the chain's answer again -- and never one the chain would no longer give."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

import pytest
from dnslib import DNSRecord

from policy.live import Live
from policy.model import ALLOW, Action, Verdict
from resolver import wire
from resolver.assembly import ResolverServices, default_policy
from tests.conftest import FakeClock
from tests.support.upstream import FakeUpstream


def packet(name: str, qid: int, qtype: str = "A") -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    return bytes(q.pack())


def _exchange(addr: tuple[str, int], data: bytes, source: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(3)
        s.sendto(data, addr)
        return s.recv(4096)


async def exchange(addr: tuple[str, int], data: bytes, source: str = "127.0.0.1") -> bytes:
    return await asyncio.to_thread(_exchange, addr, data, source)


def rcode(reply: bytes) -> int:
    return reply[3] & 0xF


def addresses(reply: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(reply).rr]


class Switch:
    """A decider that blocks the names in `.blocked` (a parent's deny list, in short)."""

    def __init__(self) -> None:
        self.blocked: set[str] = set()

    def __call__(self, profile: object, qname: str, qtype: int, now: object) -> Verdict:
        if qname in self.blocked:
            return Verdict(Action.BLOCK, "parent:deny", source="parent")
        return ALLOW


@pytest.fixture
async def start(nestguard_server, make_config, fake_upstream: FakeUpstream):
    fake_upstream.add("site.example", "A", "192.0.2.1", ttl=300)

    async def go(services: ResolverServices | None = None, **cfg):
        running = await nestguard_server(
            make_config(fake_upstream, **cfg), services or ResolverServices(arp_path=None)
        )
        return running.addresses[0], running

    return go


async def test_a_repeat_is_answered_again_with_its_own_id(start, fake_upstream):
    addr, running = await start()
    first = await exchange(addr, packet("site.example", 1))  # upstream
    second = await exchange(addr, packet("site.example", 2))  # cache, kept for replay
    cached_before = running.metrics.total("cached")
    third = await exchange(addr, packet("site.example", 3))  # replayed
    assert running.server.replay.hits >= 1
    assert third[:2] == b"\x00\x03" and second[:2] == b"\x00\x02"
    assert third[2:] == second[2:]
    assert addresses(first) == addresses(third) == ["192.0.2.1"]
    assert fake_upstream.count("site.example") == 1
    assert running.metrics.total("cached") == cached_before + 1  # still counted as a hit


async def test_a_policy_change_is_seen_at_once(start):
    decider = Switch()
    services = ResolverServices(arp_path=None, decider=decider)
    addr, running = await start(services)
    for qid in (1, 2, 3):
        assert addresses(await exchange(addr, packet("site.example", qid))) == ["192.0.2.1"]
    decider.blocked.add("site.example")
    running.live_policy.value = default_policy()  # a parent's edit: a new policy snapshot
    blocked = await exchange(addr, packet("site.example", 4))
    assert addresses(blocked) == ["0.0.0.0"]


async def test_a_block_mode_change_is_seen_at_once(start):
    decider = Switch()
    decider.blocked.add("site.example")
    mode = ["null"]
    services = ResolverServices(arp_path=None, decider=decider, block_mode=lambda: mode[0])
    addr, running = await start(services)
    for qid in (1, 2, 3):
        reply = await exchange(addr, packet("site.example", qid))
        assert rcode(reply) == wire.NOERROR and addresses(reply) == ["0.0.0.0"]
    assert running.server.replay.hits >= 1  # block answers are replayed too
    mode[0] = "nxdomain"
    assert rcode(await exchange(addr, packet("site.example", 4))) == wire.NXDOMAIN


async def test_repeats_count_against_the_rate_limit(start):
    addr, running = await start(rate_limit={"queries": 5, "per_seconds": 60})
    codes = [rcode(await exchange(addr, packet("site.example", qid))) for qid in range(1, 9)]
    assert codes == [wire.NOERROR] * 5 + [wire.REFUSED] * 3


async def test_clients_do_not_share_answers(start, make_config, fake_upstream):
    addr, running = await start(allow_networks=(ipaddress.ip_network("127.0.0.2/32"),))
    for qid in (1, 2, 3):
        reply = await exchange(addr, packet("site.example", qid), "127.0.0.2")
        assert addresses(reply) == ["192.0.2.1"]
    # the very same bytes from a client outside allow_networks
    assert rcode(await exchange(addr, packet("site.example", 3), "127.0.0.3")) == wire.REFUSED


async def test_a_cleared_cache_is_seen_at_once(start, fake_upstream):
    addr, running = await start()
    for qid in (1, 2, 3):
        await exchange(addr, packet("site.example", qid))
    running.cache.clear()
    await exchange(addr, packet("site.example", 4))
    assert fake_upstream.count("site.example") == 2


async def test_an_entry_that_expires_mid_second_is_not_replayed(
    nestguard_server, make_config, fake_upstream
):
    clock = FakeClock(1000.2)
    fake_upstream.add("short.example", "A", "192.0.2.7", ttl=1)
    running = await nestguard_server(
        make_config(fake_upstream), ResolverServices(arp_path=None, clock=clock)
    )
    addr = running.addresses[0]
    await exchange(addr, packet("short.example", 1))  # stored at 1000.2, expires 1001.2
    clock.advance(0.9)  # 1001.1: a new second
    await exchange(addr, packet("short.example", 2))  # a hit, kept until 1001.2
    await exchange(addr, packet("short.example", 3))  # replayed
    assert running.server.replay.hits == 1
    clock.advance(0.15)  # 1001.25: same second, but the entry has expired
    await exchange(addr, packet("short.example", 4))
    assert fake_upstream.count("short.example") == 2


async def test_ttls_count_down_across_seconds(nestguard_server, make_config, fake_upstream):
    clock = FakeClock()
    fake_upstream.add("site.example", "A", "192.0.2.1", ttl=300)
    running = await nestguard_server(
        make_config(fake_upstream), ResolverServices(arp_path=None, clock=clock)
    )
    addr = running.addresses[0]
    ttls = []
    for qid in range(1, 7):
        reply = DNSRecord.parse(await exchange(addr, packet("site.example", qid)))
        ttls.append(reply.rr[0].ttl)
        if qid % 2 == 0:
            clock.advance(1.0)
    assert ttls == [300, 300, 299, 299, 298, 298]


async def test_tcp_is_never_replayed(start):
    addr, running = await start()
    for qid in (1, 2, 3):
        data = packet("site.example", qid)
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(len(data).to_bytes(2, "big") + data)
        size = int.from_bytes(await reader.readexactly(2), "big")
        assert addresses(await reader.readexactly(size)) == ["192.0.2.1"]
        writer.close()
    assert running.server.replay.hits == 0


async def test_with_known_lists_a_block_is_replayed_past_the_second(
    nestguard_server, make_config, fake_upstream
):
    """Household mode (the decider reads the policy and the lists): a block answer holds until
    the next whole minute, and a list sync (a new index) ends it at once."""
    if (left := 60 - time.time() % 60) < 3:
        await asyncio.sleep(left + 0.1)  # not across a wall-clock minute
    clock = FakeClock()
    decider = Switch()
    decider.blocked.add("ads.example")
    lists = Live(object())
    services = ResolverServices(arp_path=None, clock=clock, decider=decider, live_index=lists)
    running = await nestguard_server(make_config(fake_upstream), services)
    addr = running.addresses[0]
    assert addresses(await exchange(addr, packet("ads.example", 1))) == ["0.0.0.0"]
    clock.advance(1.5)  # a cache hit would have ticked
    assert addresses(await exchange(addr, packet("ads.example", 2))) == ["0.0.0.0"]
    assert running.server.replay.hits == 1
    decider.blocked.clear()
    lists.value = object()  # a sync swapped the index: the chain decides again, at once
    fake_upstream.add("ads.example", "A", "192.0.2.9")
    assert addresses(await exchange(addr, packet("ads.example", 3))) == ["192.0.2.9"]
    assert addresses(await exchange(addr, packet("ads.example", 4))) == ["192.0.2.9"]
    assert running.server.replay.hits == 1


async def test_without_known_lists_a_block_holds_a_second(
    nestguard_server, make_config, fake_upstream
):
    clock = FakeClock()
    decider = Switch()
    decider.blocked.add("ads.example")
    services = ResolverServices(arp_path=None, clock=clock, decider=decider)
    running = await nestguard_server(make_config(fake_upstream), services)
    addr = running.addresses[0]
    await exchange(addr, packet("ads.example", 1))
    await exchange(addr, packet("ads.example", 2))
    assert running.server.replay.hits == 1
    clock.advance(1.0)
    await exchange(addr, packet("ads.example", 3))
    assert running.server.replay.hits == 1  # the chain decided again


async def test_a_replayed_hit_counts_its_ttls_down_like_the_cache(
    nestguard_server, make_config, fake_upstream
):
    """A repeat is replayed past the second (until the entry expires or the minute ends), and
    each new second gets the TTLs the cache itself gives a client it has not seen."""
    if (left := 60 - time.time() % 60) < 6:
        await asyncio.sleep(left + 0.1)  # not across a wall-clock minute
    clock = FakeClock()
    fake_upstream.add_zone("two.example. 300 IN A 192.0.2.1")
    fake_upstream.add_zone("two.example. 300 IN A 192.0.2.2")
    fake_upstream.add_zone("two.example. 120 IN AAAA 2001:db8::1")
    lists = Live(object())  # household mode: replays may hold until the minute
    services = ResolverServices(arp_path=None, clock=clock, live_index=lists)
    running = await nestguard_server(make_config(fake_upstream), services)
    addr = running.addresses[0]
    await exchange(addr, packet("two.example", 1))  # upstream
    await exchange(addr, packet("two.example", 2))  # cache hit, kept for replay
    for step in range(1, 5):
        clock.advance(1.0 if step != 3 else 2.5)
        replayed = await exchange(addr, packet("two.example", 10 + step))
        fresh = await exchange(addr, packet("two.example", 20 + step), f"127.0.0.{step + 1}")
        assert replayed[2:] == fresh[2:]  # byte for byte what the chain answers now
        assert [rr.ttl for rr in DNSRecord.parse(replayed).rr] == [300 - int(clock.t - 1000)] * 2
    assert running.server.replay.hits == 4
    assert fake_upstream.count("two.example") == 1
    clock.advance(300)  # expired: the chain asks the upstream again
    await exchange(addr, packet("two.example", 30))
    assert fake_upstream.count("two.example") == 2
