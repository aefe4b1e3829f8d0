"""The cache through the running server: keys, TTLs, negatives, stale, failures, what is kept,
rebinding (and unit checks of its parts)."""

from __future__ import annotations

import asyncio
import time

import dns.edns
import dns.rcode
import dns.rdatatype
import pytest
from dnslib import RR, DNSRecord

from resolver import wire
from resolver.assembly import ResolverServices
from resolver.cache import Cache, CacheSettings, is_rebind_address
from resolver.pipeline import Query
from tests.conftest import FakeClock
from tests.resolver.dnsclient import ask
from tests.support.upstream import FakeUpstream, Mode


@pytest.fixture
async def setup(nestguard_server, fake_upstream: FakeUpstream, make_config, fake_clock):
    async def start(**cfg):
        running = await nestguard_server(
            make_config(fake_upstream, **cfg), ResolverServices(arp_path=None, clock=fake_clock)
        )
        return running.addresses[0], running

    return start


async def test_ttl_counts_down(setup, fake_upstream, fake_clock):
    fake_upstream.add("site.example", "A", "192.0.2.1", ttl=5)
    addr, _ = await setup()
    first = await ask(addr, "site.example")
    assert first.answer[0].ttl == 5
    fake_clock.advance(3)
    again = await ask(addr, "site.example")
    assert again.answer[0].ttl <= 2
    assert fake_upstream.count("site.example") == 1
    fake_clock.advance(3)
    await ask(addr, "site.example")
    assert fake_upstream.count("site.example") == 2  # expired -> asked again


async def test_high_bit_ttl_clamped(setup, fake_upstream):
    fake_upstream.add("far.example", "A", "192.0.2.1", ttl=0xFFFFFFFF)
    addr, _ = await setup()
    for _ in range(2):
        r = await ask(addr, "far.example")
        assert 0 < r.answer[0].ttl <= 86400


async def test_min_ttl_clamp(setup, fake_upstream):
    fake_upstream.add("short.example", "A", "192.0.2.1", ttl=1)
    addr, _ = await setup(cache={"min_ttl": 30})
    r = await ask(addr, "short.example")
    assert r.answer[0].ttl == 30


async def test_negative_caching_uses_soa_minimum(setup, fake_upstream, fake_clock):
    fake_upstream.soa_ttl, fake_upstream.soa_minimum = 300, 60
    addr, _ = await setup()
    r = await ask(addr, "nx.example")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    assert r.authority[0].ttl <= 60
    fake_clock.advance(30)
    r = await ask(addr, "nx.example")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].ttl <= 30
    assert fake_upstream.count("nx.example") == 1
    fake_clock.advance(31)
    await ask(addr, "nx.example")
    assert fake_upstream.count("nx.example") == 2


async def test_nodata_cached(setup, fake_upstream):
    fake_upstream.add("v4only.example", "A", "192.0.2.1")
    addr, _ = await setup()
    for _ in range(2):
        r = await ask(addr, "v4only.example", "AAAA")
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert fake_upstream.count("v4only.example", "AAAA") == 1


async def test_negative_ttl_capped(setup, fake_upstream):
    fake_upstream.soa_ttl, fake_upstream.soa_minimum = 86400, 86400
    addr, _ = await setup(cache={"negative_max_ttl": 600})
    r = await ask(addr, "nx.example")
    assert r.authority[0].ttl <= 600


def _query(name: str, qtype: int = 1) -> Query:
    data = bytes(DNSRecord.question(name, "A" if qtype == 1 else str(qtype)).pack())
    return Query(data, wire.parse_query(data), "127.0.0.1", "udp", 0.0)


def test_negative_without_soa_not_cached():
    cache = Cache(CacheSettings(), clock=FakeClock())
    query = _query("nx.example")
    reply = DNSRecord.parse(query.request).reply()
    reply.header.rcode = 3
    cache.store(query, reply)
    assert len(cache) == 0
    cache.store(query, DNSRecord.parse(query.request).reply())  # NODATA, no SOA
    assert len(cache) == 0


async def test_key_ignores_case_and_cookies(setup, fake_upstream):
    fake_upstream.add("site.example", "A", "192.0.2.1")
    addr, _ = await setup()
    await ask(addr, "Site.EXAMPLE")
    r = await ask(addr, "site.example", options=[dns.edns.GenericOption(10, b"12345678")])
    await ask(addr, "SITE.example", edns=None)
    assert r.answer[0][0].address == "192.0.2.1"
    assert fake_upstream.count("site.example") == 1


async def test_do_bit_is_part_of_the_key(setup, fake_upstream):
    fake_upstream.add("site.example", "A", "192.0.2.1")
    addr, _ = await setup()
    await ask(addr, "site.example")
    await ask(addr, "site.example", want_dnssec=True)
    assert fake_upstream.count("site.example") == 2


async def test_additional_section_never_cached_or_served(setup, fake_upstream):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    fake_upstream.add_extra("www.example", "bank.example. 300 IN A 6.6.6.6")
    addr, _ = await setup()
    r = await ask(addr, "www.example")
    assert not r.additional
    r = await ask(addr, "bank.example")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert fake_upstream.count("bank.example") == 1


async def test_cname_chain_kept(setup, fake_upstream):
    fake_upstream.add("c.example", "CNAME", "d.example.")
    fake_upstream.add("d.example", "A", "192.0.2.9")
    addr, _ = await setup()
    for _ in range(2):
        r = await ask(addr, "c.example")
        kinds = [rrset.rdtype for rrset in r.answer]
        assert kinds == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert fake_upstream.count("c.example") == 1


@pytest.mark.parametrize(
    ("name", "qtype", "rdata"),
    [
        ("lan.example", "A", "192.168.1.100"),
        ("ten.example", "A", "10.0.0.1"),
        ("loop.example", "A", "127.0.0.1"),
        ("ula.example", "AAAA", "fd00::1"),
        ("mapped.example", "AAAA", "::ffff:c0a8:101"),
    ],
)
async def test_rebinding_answers_emptied_and_cached(setup, fake_upstream, name, qtype, rdata):
    fake_upstream.add(name, qtype, rdata)
    addr, _ = await setup()
    for _ in range(2):
        r = await ask(addr, name, qtype)
        assert r.rcode() == dns.rcode.NOERROR
        assert not r.answer
    assert fake_upstream.count(name) == 1


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("0.1.2.3", True),
        ("10.0.0.1", True),
        ("100.64.0.1", True),
        ("100.128.0.1", False),
        ("127.0.0.1", True),
        ("169.254.3.4", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("172.32.0.1", False),
        ("192.168.0.1", True),
        ("192.169.0.1", False),
        ("8.8.8.8", False),
        ("::", True),
        ("::1", True),
        ("::2", False),
        ("fc00::1", True),
        ("fdff::1", True),
        ("fe80::1", True),
        ("febf::1", True),
        ("fec0::1", False),
        ("::ffff:10.0.0.1", True),
        ("::ffff:8.8.8.8", False),
        ("2002:c0a8:101::1", True),  # 6to4 of 192.168.1.1
        ("2001:4860::8888", False),
    ],
)
def test_rebind_address_ranges(address, private):
    assert is_rebind_address(address) is private


async def test_serve_stale_when_upstream_silent(setup, fake_upstream, fake_clock):
    fake_upstream.add("site.example", "A", "192.0.2.1", ttl=2)
    addr, running = await setup()
    await ask(addr, "site.example")
    fake_upstream.set_mode(Mode.SILENT)
    fake_clock.advance(3)
    start = time.monotonic()
    r = await ask(addr, "site.example", timeout=5)
    took = time.monotonic() - start
    assert r.answer[0].ttl == 30
    assert r.answer[0][0].address == "192.0.2.1"
    assert took < 2.0
    assert any(o.otype == 15 for o in r.options)  # EDE 3 "stale answer"
    fake_clock.advance(86400 + 10)
    r = await ask(addr, "site.example", timeout=5)
    assert r.rcode() == dns.rcode.SERVFAIL


async def test_stale_served_at_once_when_upstreams_fail_and_refreshed(
    setup, fake_upstream, fake_clock
):
    fake_upstream.add("site.example", "A", "192.0.2.1", ttl=2)
    addr, _ = await setup()
    await ask(addr, "site.example")
    fake_upstream.set_mode(Mode.SERVFAIL)
    fake_clock.advance(3)
    r = await ask(addr, "site.example")
    assert r.answer[0].ttl == 30
    fake_upstream.reset_modes()
    fake_upstream.remove("site.example")
    fake_upstream.add("site.example", "A", "192.0.2.2", ttl=100)
    fake_clock.advance(60)  # past the SERVFAIL back-off
    r = await ask(addr, "site.example")
    assert r.answer[0][0].address == "192.0.2.2"


async def test_stale_refreshed_in_background_after_slow_upstream(setup, fake_upstream, fake_clock):
    fake_upstream.add("site.example", "A", "192.0.2.1", ttl=2)
    addr, _ = await setup(cache={"serve_stale_after": 0.2})
    await ask(addr, "site.example")
    fake_upstream.remove("site.example")
    fake_upstream.add("site.example", "A", "192.0.2.3", ttl=100)
    fake_upstream.set_mode(Mode.DELAY, delay=0.5)
    fake_clock.advance(3)
    r = await ask(addr, "site.example")
    assert r.answer[0][0].address == "192.0.2.1" and r.answer[0].ttl == 30
    await asyncio.sleep(0.8)  # the upstream answer lands in the cache
    r = await ask(addr, "site.example")
    assert r.answer[0][0].address == "192.0.2.3"
    assert fake_upstream.count("site.example") == 2


async def test_all_upstreams_failing_is_cached_briefly(setup, fake_upstream, fake_clock):
    fake_upstream.set_mode(Mode.SERVFAIL)
    addr, _ = await setup()
    for _ in range(3):
        r = await ask(addr, "down.example")
        assert r.rcode() == dns.rcode.SERVFAIL
    asked = fake_upstream.count("down.example")
    assert asked >= 1
    fake_clock.advance(0.5)
    await ask(addr, "down.example")
    assert fake_upstream.count("down.example") == asked  # stays local within the back-off
    fake_clock.advance(5)
    await ask(addr, "down.example")
    assert fake_upstream.count("down.example") > asked


async def test_entries_bounded_and_hot_names_survive(setup, fake_upstream):
    fake_upstream.add("*.flood.example", "A", "192.0.2.1")
    fake_upstream.add("hot.example", "A", "192.0.2.2")
    addr, running = await setup(cache={"max_entries": 64})
    for i in range(400):
        await ask(addr, f"r{i}.flood.example")
        if i % 8 == 0:
            await ask(addr, "hot.example")
    assert len(running.cache) <= 64
    assert running.cache.evictions > 300
    assert fake_upstream.count("hot.example") == 1


def test_entry_size_counted_and_byte_bound():
    clock = FakeClock()
    cache = Cache(CacheSettings(max_bytes=20_000), clock=clock)
    for i in range(500):
        query = _query(f"n{i}.example")
        reply = DNSRecord.parse(query.request).reply()
        reply.add_answer(*RR.fromZone(f"n{i}.example. 300 IN A 192.0.2.1"))
        cache.store(query, reply)
    assert cache.size_bytes <= 20_000
    assert len(cache) < 500


async def test_in_flight_cap_per_client_fails_fast_and_hits_stay_fast(
    nestguard_server, fake_upstream, make_config
):
    from resolver.cache import Forward

    fake_upstream.add("*.slow.example", "A", "192.0.2.1")
    fake_upstream.add("cached.example", "A", "192.0.2.2")
    running = await nestguard_server(make_config(fake_upstream, timeout=1.5))
    addr = running.addresses[0]
    await ask(addr, "cached.example")
    fake_upstream.set_mode(Mode.DELAY, delay=0.4)
    forward = running.pipeline._last
    assert isinstance(forward, Forward)
    start = time.monotonic()
    slow = [asyncio.create_task(ask(addr, f"n{i}.slow.example", timeout=4)) for i in range(130)]
    await asyncio.sleep(0.1)
    t = time.monotonic()
    hit = await ask(addr, "cached.example")
    assert time.monotonic() - t < 0.05 + 0.2  # a hit does not queue behind the slow ones
    assert hit.answer[0][0].address == "192.0.2.2"
    replies = await asyncio.gather(*slow)
    codes = [r.rcode() for r in replies]
    assert codes.count(dns.rcode.SERVFAIL) >= 20  # beyond 100 in flight for this client
    assert codes.count(dns.rcode.NOERROR) >= 1
    assert forward.overloaded >= 20
    assert time.monotonic() - start < 4


async def test_devices_asking_slow_names_leave_a_share_for_a_third(
    nestguard_server, fake_upstream, make_config
):
    """Two devices with 100 slow names each must not starve a third device's new names."""
    fake_upstream.add("*.slow.example", "A", "192.0.2.1")
    running = await nestguard_server(make_config(fake_upstream, timeout=1.8))
    addr = running.addresses[0]
    fake_upstream.set_mode(Mode.DELAY, delay=0.8)
    greedy = [
        asyncio.create_task(ask(addr, f"{who}-{i}.slow.example", source=ip, timeout=4))
        for who, ip in (("a", "127.0.0.2"), ("b", "127.0.0.3"))
        for i in range(100)
    ]
    await asyncio.sleep(0.15)
    third = await asyncio.gather(
        *(ask(addr, f"c-{i}.slow.example", source="127.0.0.4", timeout=4) for i in range(20))
    )
    assert [r.rcode() for r in third] == [dns.rcode.NOERROR] * 20
    codes = [r.rcode() for r in await asyncio.gather(*greedy)]
    assert codes.count(dns.rcode.SERVFAIL) >= 50  # the greedy two were held to their shares
