"""Cache: a miss passes on and the upstream answer is stored on the way out; a hit is answered
here without asking next; only upstream answers are stored; a recent upstream failure is
answered SERVFAIL here (RFC 9520); an expired entry within the stale window goes on to Forward
(query.stale)."""

from __future__ import annotations

import dns.message
import dns.rcode
from dnslib import QTYPE, RR, A, DNSRecord

from resolver.cache import Cache, CacheSettings
from resolver.pipeline import Query, Reply
from tests.conftest import FakeClock
from tests.resolver.stages.recorder import Next, ede, message, query, run


def upstream(address: str = "192.0.2.1", ttl: int = 300):
    """A next stage answering as Forward does: a dnslib record, no wire yet."""

    def answer(q: Query) -> Reply:
        name = q.resolve_name or q.question.name
        rec = DNSRecord.question(name).reply()
        rec.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=ttl))
        return Reply(None, "upstream", "answered", record=rec)

    return Next(answer)


async def test_a_miss_passes_on_and_the_answer_is_stored_then_served_here():
    clock = FakeClock()
    cache, nxt = Cache(clock=clock), upstream(ttl=300)
    first = await run(cache, query("site.example"), nxt)
    assert first.source == "upstream" and len(nxt.queries) == 1
    assert message(first).answer[0][0].address == "192.0.2.1"
    clock.advance(100)
    q = query("SITE.Example")  # another ID, another case: the same entry
    second = await run(cache, q, nxt)
    assert second.source == "cache" and len(nxt.queries) == 1
    msg = message(second)
    assert msg.id == dns.message.from_wire(q.request).id
    assert msg.question[0].name.to_text() == "SITE.Example."
    assert msg.answer[0].ttl == 200  # counts down
    assert (cache.hits, cache.misses) == (1, 1)


async def test_an_expired_entry_is_asked_again_and_a_stale_one_goes_on_with_it():
    clock = FakeClock()
    cache = Cache(CacheSettings(stale_window=60), clock=clock)
    nxt = upstream(ttl=10)
    await run(cache, query("site.example"), nxt)
    clock.advance(30)  # expired, within the stale window: Forward may serve it
    q = query("site.example")
    await run(cache, q, nxt)
    assert len(nxt.queries) == 2 and nxt.queries[1].stale is not None
    clock.advance(200)  # past the stale window: a plain miss
    await run(cache, query("site.example"), nxt)
    assert len(nxt.queries) == 3 and nxt.queries[2].stale is None


async def test_answers_made_elsewhere_pass_through_and_are_not_stored():
    cache = Cache(clock=FakeClock())
    nxt = Next(lambda q: Reply(b"made-by-policy", "policy", "blocked"))
    for _ in range(2):
        reply = await run(cache, query("site.example"), nxt)
        assert reply.wire == b"made-by-policy"
    assert len(nxt.queries) == 2


async def test_after_every_upstream_failed_servfail_is_answered_here_for_a_while():
    clock = FakeClock()
    cache, nxt = Cache(CacheSettings(servfail_ttl=2.0), clock=clock), upstream()
    failed = query("down.example")
    cache.note_failure(failed)  # as Forward does when no upstream answered
    msg = message(await run(cache, query("down.example"), nxt))
    assert msg.rcode() == dns.rcode.SERVFAIL and ede(msg) == [(22, "upstreams unreachable")]
    assert not nxt.called
    clock.advance(3)
    assert (await run(cache, query("down.example"), nxt)).source == "upstream"


async def test_a_rewritten_query_is_cached_under_its_target():
    cache, nxt = Cache(clock=FakeClock()), upstream("192.0.2.50")
    rewritten = query("www.google.example")
    rewritten.resolve_name = "forcesafesearch.example"  # as Enforce writes it
    rewritten.resolve_labels = (b"forcesafesearch", b"example")
    await run(cache, rewritten, nxt)
    assert nxt.queries[0].resolve_name == "forcesafesearch.example"
    direct = await run(cache, query("forcesafesearch.example"), nxt)
    assert direct.source == "cache" and len(nxt.queries) == 1
    assert message(direct).answer[0][0].address == "192.0.2.50"
