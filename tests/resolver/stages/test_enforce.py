"""Enforce: blocks answered here (per type, with EDE), allowed names pass on, rewrites pass on
for the safe-search target and come back as a CNAME; CNAME cloaking is caught on the way out."""

from __future__ import annotations

from datetime import UTC, datetime

import dns.rcode
import dns.rdatatype
import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from policy.model import ALLOW, Action, BlockStyle, Child, Profile, Verdict
from resolver import wire
from resolver.enforce import BlockSettings, Enforce
from resolver.pipeline import Query, Reply
from tests.resolver.stages.recorder import Next, ede, message, query, run

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
KID = Profile(Child(1, "Lan", datetime(2015, 5, 1).date()))
RULES = {
    "blocked.example": Verdict(Action.BLOCK, "category:ads:18+"),
    "bed.example": Verdict(Action.BLOCK, "schedule:bedtime"),
    "use-application-dns.net": Verdict(Action.BLOCK, "bypass:canary", style=BlockStyle.NXDOMAIN),
    "_dns.resolver.arpa": Verdict(Action.BLOCK, "bypass:ddr", style=BlockStyle.NODATA),
    "www.google.example": Verdict(Action.REWRITE, "safe-search", "forcesafesearch.example"),
}


def decider(profile: Profile, qname: str, qtype: int, now: datetime) -> Verdict:
    """Suffix rules -> verdicts."""
    labels = qname.split(".")
    for i in range(len(labels)):
        if (v := RULES.get(".".join(labels[i:]))) is not None:
            return v
    return ALLOW


def enforce(**kw: object) -> Enforce:
    return Enforce(decider, now=lambda: NOW, **kw)


def kid_query(name: str, qtype: str = "A", **kw: object) -> Query:
    q = query(name, qtype, **kw)
    q.profile = KID
    return q


@pytest.mark.parametrize(
    ("qtype", "expected"), [("A", "0.0.0.0"), ("AAAA", "::"), ("HTTPS", None), ("TXT", None)]
)
async def test_a_block_is_answered_here_per_type_with_ede(qtype, expected):
    nxt = Next()
    reply = await run(enforce(), kid_query("www.blocked.example", qtype), nxt)
    msg = message(reply)
    assert msg.rcode() == dns.rcode.NOERROR and reply.outcome == "blocked"
    if expected is None:
        assert not msg.answer
    else:
        assert [rr.address for rr in msg.answer[0]] == [expected] and msg.answer[0].ttl == 10
    assert ede(msg) == [(15, "category:ads:18+")]
    assert not nxt.called


async def test_a_parent_or_schedule_block_is_ede_filtered():
    msg = message(await run(enforce(), kid_query("bed.example"), Next()))
    assert ede(msg) == [(17, "schedule:bedtime")]


async def test_a_block_without_edns_has_no_opt():
    msg = message(await run(enforce(), kid_query("blocked.example", edns=None), Next()))
    assert msg.edns == -1 and msg.answer[0][0].address == "0.0.0.0"


@pytest.mark.parametrize("qtype", ["A", "AAAA", "HTTPS"])
async def test_the_doh_canary_is_nxdomain_and_ddr_is_nodata(qtype):
    nxt = Next()
    msg = message(await run(enforce(), kid_query("use-application-dns.net", qtype), nxt))
    assert msg.rcode() == dns.rcode.NXDOMAIN
    msg = message(await run(enforce(), kid_query("_dns.resolver.arpa", "SVCB"), nxt))
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer
    assert not nxt.called


async def test_block_modes_nxdomain_and_blockpage_and_the_parents_choice():
    msg = message(await run(enforce(block=BlockSettings(answer="nxdomain")),
                            kid_query("blocked.example"), Next()))
    assert msg.rcode() == dns.rcode.NXDOMAIN and ede(msg) == [(15, "category:ads:18+")]
    page = BlockSettings(answer="blockpage", blockpage_ipv4="192.0.2.80")
    msg = message(await run(enforce(block=page), kid_query("blocked.example"), Next()))
    assert msg.answer[0][0].address == "192.0.2.80"
    msg = message(await run(enforce(block=page), kid_query("blocked.example", "AAAA"), Next()))
    assert not msg.answer and msg.rcode() == dns.rcode.NOERROR
    mode = ["null"]
    stage = enforce(block=page, mode=lambda: mode[0])
    assert message(await run(stage, kid_query("blocked.example"), Next())).answer[0][0].address \
        == "0.0.0.0"
    mode[0] = "nxdomain"  # changed in the web UI: the next block follows it
    assert message(await run(stage, kid_query("blocked.example"), Next())).rcode() \
        == dns.rcode.NXDOMAIN


async def test_allowed_names_and_unidentified_queries_pass_on():
    nxt = Next()
    assert await run(enforce(), kid_query("site.example"), nxt) is nxt.reply
    assert nxt.queries[0].verdict == ALLOW
    no_profile = query("blocked.example")  # Identify did not run: nothing to decide on
    assert await run(enforce(), no_profile, nxt) is nxt.reply
    assert no_profile.verdict is None


def upstream_answer(q: Query) -> Reply:
    """What Cache's leave hands back for an upstream A answer of the name asked."""
    name = q.resolve_name or q.question.name
    rec = DNSRecord.question(name).reply()
    rec.add_answer(RR(name, QTYPE.A, rdata=A("192.0.2.50"), ttl=300))
    data = bytearray(rec.pack())
    data[:2] = q.request[:2]
    return Reply(bytes(data), "upstream", "answered")


async def test_safe_search_passes_on_for_the_target_and_answers_a_cname():
    nxt = Next(upstream_answer)
    q = kid_query("WWW.google.example")
    msg = message(await run(enforce(), q, nxt))
    (asked,) = nxt.queries
    assert asked.resolve_name == "forcesafesearch.example"
    assert asked.resolve_labels == wire.labels_of("forcesafesearch.example")
    assert msg.question[0].name.to_text() == "WWW.google.example."
    cname, a = msg.answer
    assert cname.rdtype == dns.rdatatype.CNAME and cname[0].target.to_text() \
        == "forcesafesearch.example."
    assert a[0].address == "192.0.2.50"


async def test_a_cname_to_a_blocked_name_is_blocked_on_the_way_out():
    def cloaked(q: Query) -> Reply:
        return Reply(b"cloaked", "upstream", "answered", targets=("ads.blocked.example",))

    nxt = Next(cloaked)
    q = kid_query("t.ok.example")
    msg = message(await run(enforce(), q, nxt))
    assert nxt.called  # the name itself was allowed
    assert msg.answer[0][0].address == "0.0.0.0"
    assert ede(msg) == [(15, "category:ads:18+")]
    assert q.verdict is not None and q.verdict.reason == "category:ads:18+"


def test_verdict_memo_follows_the_clock_and_the_snapshot():
    calls: list[str] = []

    def counting(profile: Profile, qname: str, qtype: int, now: datetime) -> Verdict:
        calls.append(qname)
        return ALLOW

    instant = [datetime(2026, 1, 1, tzinfo=UTC)]
    stage = Enforce(counting, now=lambda: instant[0])
    profile = Profile(None)
    stage.verdict(profile, "a.example", 1)
    stage.verdict(profile, "a.example", 1)
    assert calls == ["a.example"]
    stage.verdict(profile, "a.example", 28)
    assert len(calls) == 2
    instant[0] = datetime(2026, 1, 1, 0, 0, 0, 999_000, tzinfo=UTC)  # same second
    stage.verdict(profile, "a.example", 1)
    assert len(calls) == 2
    instant[0] = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    stage.verdict(profile, "a.example", 1)
    assert len(calls) == 3
    stage.verdict(Profile(None), "a.example", 1)  # a new policy snapshot
    assert len(calls) == 4
