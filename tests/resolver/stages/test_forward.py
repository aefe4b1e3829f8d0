"""Forward, the last stage: its "next" is the upstream client. It asks for the question (or the
safe-search target), sends LAN names to the router, answers SERVFAIL when every upstream
failed, serves a stale entry when they fail or are slow (RFC 8767), and holds each device to a
share of the in-flight cap."""

from __future__ import annotations

import asyncio

import dns.rcode
from dnslib import QTYPE, RR, A, DNSRecord

from resolver.cache import Cache, CacheSettings, Forward
from resolver.forward import UpstreamError
from resolver.pipeline import chain
from tests.conftest import FakeClock
from tests.resolver.stages.recorder import ede, message, query


class Client:
    """A fake upstream client: records what it is asked; answers, fails, or waits."""

    def __init__(self, address: str = "192.0.2.1", *, fail: bool = False) -> None:
        self.asked: list[tuple[tuple[bytes, ...], int, int, bool]] = []
        self.address = address
        self.fail = fail
        self.gate: asyncio.Event | None = None  # set: answers wait for it

    async def query(
        self, labels: tuple[bytes, ...], qtype: int, qclass: int = 1, *, do: bool = False
    ) -> DNSRecord:
        self.asked.append((labels, qtype, qclass, do))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise UpstreamError("every upstream failed")
        name = ".".join(x.decode() for x in labels)
        rec = DNSRecord.question(name).reply()
        rec.add_answer(RR(name, QTYPE.A, rdata=A(self.address), ttl=10))
        return rec


async def test_asks_the_upstream_for_the_question():
    client = Client()
    reply = await Forward(client, Cache())(query("Site.Example", "AAAA"))
    assert client.asked == [((b"site", b"example"), 28, 1, False)]  # the canonical name
    assert reply.source == "upstream" and reply.record is not None
    assert str(reply.record.rr[0].rdata) == "192.0.2.1"


async def test_a_rewritten_query_asks_for_the_target():
    client = Client()
    q = query("www.google.example")
    q.resolve_name, q.resolve_labels = "forcesafesearch.example", (b"forcesafesearch", b"example")
    await Forward(client, Cache())(q)
    assert [labels for labels, *_ in client.asked] == [(b"forcesafesearch", b"example")]


async def test_lan_names_go_to_the_router_only():
    client, router = Client(), Client("192.168.1.5")
    q = query("nas.lan")
    q.lan = True  # LocalNames marks it
    reply = await Forward(client, Cache(), router=router)(q)
    assert not client.asked and len(router.asked) == 1
    assert reply.record is not None and str(reply.record.rr[0].rdata) == "192.168.1.5"


async def test_when_every_upstream_fails_servfail_and_the_cache_remembers_it():
    cache = Cache(clock=FakeClock())
    client = Client(fail=True)
    msg = message(await Forward(client, cache)(query("down.example")))
    assert msg.rcode() == dns.rcode.SERVFAIL and ede(msg) == [(22, "upstreams unreachable")]
    assert cache.enter(query("down.example")) is not None  # answered there for a while
    assert len(client.asked) == 1


async def test_a_stale_entry_is_served_when_the_upstream_fails():
    clock = FakeClock()
    cache = Cache(CacheSettings(stale_window=600, stale_ttl=30), clock=clock)
    good, bad = Client(), Client(fail=True)
    await chain([cache], last=Forward(good, cache))(query("site.example"))
    clock.advance(20)  # expired (TTL 10), within the stale window
    reply = await chain([cache], last=Forward(bad, cache))(query("site.example"))
    msg = message(reply)
    assert msg.answer[0][0].address == "192.0.2.1" and msg.answer[0].ttl == 30
    assert ede(msg) == [(3, "stale answer")]
    assert len(bad.asked) == 1


async def test_a_slow_upstream_gets_serve_stale_after_then_refreshes_in_the_background():
    clock = FakeClock()
    cache = Cache(CacheSettings(stale_window=600), clock=clock)
    await chain([cache], last=Forward(Client(), cache))(query("site.example"))
    clock.advance(20)
    slow = Client("192.0.2.9")
    slow.gate = asyncio.Event()
    forward = Forward(slow, cache, serve_stale_after=0.05)
    reply = await chain([cache], last=forward)(query("site.example"))
    assert ede(message(reply)) == [(3, "stale answer")]
    slow.gate.set()
    for _ in range(100):  # the refresh lands in the cache
        hit = cache.enter(query("site.example"))
        if hit is not None and hit.source == "cache" and message(hit).answer[0][0].address \
                == "192.0.2.9":
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the background refresh never reached the cache")
    await forward.close()


async def test_a_device_beyond_its_share_gets_servfail_at_once_and_others_still_ask():
    client = Client()
    client.gate = asyncio.Event()
    forward = Forward(client, Cache(), max_inflight=8)
    greedy = [asyncio.create_task(forward(query(f"n{i}.example", client="192.168.1.20")))
              for i in range(10)]
    await asyncio.sleep(0)  # each takes its slot or is turned away
    done = [t for t in greedy if t.done()]
    assert len(done) == 6 and all(t.result().outcome == "servfail" for t in done)
    assert forward.overloaded == 6 and len(client.asked) == 4  # its share: max(4, 8 // 2)
    other = asyncio.create_task(forward(query("x.example", client="192.168.1.21")))
    await asyncio.sleep(0)
    assert len(client.asked) == 5 and not other.done()
    client.gate.set()
    replies = await asyncio.gather(*greedy, other)
    assert sum(r.source == "upstream" for r in replies) == 5
