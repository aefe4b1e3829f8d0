"""The commonest upstream reply read without dnslib (wire.address_answer, Cache._build_address)
must make exactly the cache entry dnslib's path makes -- or decline and leave it to dnslib."""

from __future__ import annotations

import random

import pytest
from dnslib import AAAA, CNAME, EDNS0, QTYPE, RR, SOA, A, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver import wire
from resolver.cache import Cache, CacheSettings, is_rebind_packed
from resolver.forward import UpstreamClient
from tests.conftest import FakeClock
from tests.support.upstream import FakeUpstream

LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(lambda ls: ".".join([*ls, "example"]))


def reply_for(
    name: str,
    qtype: str,
    ttls: list[int],
    *,
    edns: bool = True,
    ad: bool = False,
    seed: int = 0,
) -> tuple[bytes, bytes]:
    """(upstream reply as dnslib packs it, the question section we sent)."""
    rng = random.Random(seed)
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=1232))
    r = q.reply()
    r.header.ad = int(ad)
    for ttl in ttls:
        if qtype == "A":
            rdata = A(".".join(str(rng.randrange(1, 224)) for _ in range(4)))
        else:
            rdata = AAAA(f"2001:db8::{rng.randrange(1, 65535):x}")
        r.add_answer(RR(name, getattr(QTYPE, qtype), rdata=rdata, ttl=ttl))
    section = wire.name_to_wire(wire.labels_of(name)) + bytes((0, getattr(QTYPE, qtype), 0, 1))
    return bytes(r.pack()), section


def entries(msg: bytes, section: bytes, name: str, qtype: int, settings: CacheSettings):
    """(fast entry, dnslib entry) for one reply; fast is None when the shape declined."""
    clock = FakeClock()
    fast_answer = wire.address_answer(msg, section)
    fast = None
    if fast_answer is not None:
        fast = Cache(settings, clock=clock)._build_address(fast_answer, name)
    slow = Cache(settings, clock=clock)._build(
        DNSRecord.parse(msg), wire.labels_of(name), name, qtype, 1, False
    )
    return fast, slow


def same(fast, slow) -> None:
    (fe, fttl), (se, sttl) = fast, slow
    assert fttl == sttl
    for field in ("ttl_offsets", "ttls", "counts", "rcode", "ad", "targets", "size"):
        assert getattr(fe, field) == getattr(se, field), field
    assert fe.body_at(0) == se.body_at(0)
    assert fe.body_at(7) == se.body_at(7)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=NAME,
    qtype=st.sampled_from(["A", "AAAA"]),
    ttls=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6),
    edns=st.booleans(),
    ad=st.booleans(),
    seed=st.integers(0, 1000),
    max_ttl=st.sampled_from([86_400, 300]),
    min_ttl=st.sampled_from([0, 30]),
)
def test_the_fast_entry_is_the_dnslib_entry(name, qtype, ttls, edns, ad, seed, max_ttl, min_ttl):
    msg, section = reply_for(name, qtype, ttls, edns=edns, ad=ad, seed=seed)
    s = CacheSettings(max_ttl=max_ttl, min_ttl=min_ttl)
    answer = wire.address_answer(msg, section)
    assert answer is not None  # this is the shape it exists for
    fast, slow = entries(msg, section, name, getattr(QTYPE, qtype), s)
    if any(is_rebind_packed(a) for a in answer.rdata):
        assert fast is None and slow[0].rebind_filtered  # left to dnslib's path, which filters
    else:
        assert fast is not None
        same(fast, slow)


@settings(max_examples=500, deadline=None)
@given(
    name=NAME,
    count=st.integers(1, 4),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=3),
    cut=st.integers(0, 8),
)
def test_a_damaged_reply_is_declined_or_read_as_dnslib_reads_it(name, count, flips, cut):
    msg, section = reply_for(name, "A", [300] * count)
    data = bytearray(msg)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    damaged = bytes(data[: len(data) - cut])
    answer = wire.address_answer(damaged, section)
    if answer is None:
        return
    fast, slow = entries(damaged, section, name, QTYPE.A, CacheSettings())
    if fast is None:
        return  # a rebinding address: dnslib's path filters it
    same(fast, slow)


def test_other_shapes_are_left_to_dnslib():
    name = "www.example"
    section = wire.name_to_wire(wire.labels_of(name)) + b"\x00\x01\x00\x01"
    q = DNSRecord.question(name, "A")
    cname = q.reply()
    cname.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME("cdn.example"), ttl=60))
    cname.add_answer(RR("cdn.example", QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
    nx = q.reply()
    nx.header.rcode = 3
    nx.add_auth(RR("example", QTYPE.SOA, rdata=SOA("ns.example", "h.example", (1, 2, 3, 4, 5))))
    authority = q.reply()
    authority.add_answer(RR(name, QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
    authority.add_auth(RR("example", QTYPE.SOA, rdata=SOA("ns.example", "h.example", (1,) * 5)))
    other = DNSRecord.question("other.example", "A").reply()
    other.add_answer(RR("other.example", QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
    for record in (cname, nx, authority, other):
        assert wire.address_answer(bytes(record.pack()), section) is None


def test_a_rebinding_address_goes_through_the_filter():
    """The rebinding filter on the fast shape: the dnslib path filters it (NODATA, counted)."""
    data, section = reply_for("home.example", "A", [300], edns=False)
    data = data[:-4] + bytes((192, 168, 1, 1))
    answer = wire.address_answer(data, section)
    assert answer is not None
    cache = Cache(CacheSettings(), clock=FakeClock())
    assert cache._build_address(answer, "home.example") is None


@pytest.mark.parametrize("qtype", ["A", "AAAA"])
async def test_the_forwarder_returns_the_fast_shape_for_plain_addresses(qtype):
    async with FakeUpstream() as up:
        up.add("www.example", qtype, "192.0.2.1" if qtype == "A" else "2001:db8::1", ttl=60)
        up.add("alias.example", "CNAME", "www.example", ttl=60)
        async with UpstreamClient([up.address]) as fwd:
            plain = await fwd.query(wire.labels_of("www.example"), getattr(QTYPE, qtype))
            chained = await fwd.query(wire.labels_of("alias.example"), getattr(QTYPE, qtype))
    assert isinstance(plain, wire.AddressAnswer) and plain.ttls == (60,)
    assert isinstance(chained, DNSRecord)
