"""UpstreamClient against the scripted FakeUpstream on loopback (RELIABILITY.md section 2)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, generate_latest

from resolver import forward
from resolver.forward import UpstreamClient, UpstreamError
from resolver.wire import AddressAnswer
from tests.support.tools import needs, require
from tests.support.upstream import SPOOF_ADDRESS, FakeUpstream, Mode


def labels(name: str) -> tuple[bytes, ...]:
    return tuple(part.encode() for part in name.rstrip(".").split("."))


async def ask(fwd: UpstreamClient, name: tuple[bytes, ...], qtype: int, **kw: Any) -> DNSRecord:
    """The forwarder's answer as dnslib reads it (the commonest shape comes back unparsed)."""
    answer = await fwd.query(name, qtype, **kw)
    if isinstance(answer, AddressAnswer):
        return DNSRecord.parse(answer.wire)
    return answer


def addresses(record: DNSRecord | AddressAnswer) -> list[str]:
    if isinstance(record, AddressAnswer):
        record = DNSRecord.parse(record.wire)
    return [str(rr.rdata) for rr in record.rr if rr.rtype in (QTYPE.A, QTYPE.AAAA)]


def errors(upstream: FakeUpstream, kind: str, index: int = 0) -> float:
    """The error count of the upstream at `index` in the UpstreamClient's list (metrics label
    upstreams by index, not by address)."""
    value = REGISTRY.get_sample_value(
        "nestguard_upstream_errors_total", {"upstream": f"upstream{index}", "kind": kind}
    )
    return value or 0.0


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as server:
        server.add("www.example", "A", "192.0.2.1", ttl=60)
        server.add_zone("*.wild.example. 60 IN A 192.0.2.2")
        yield server


@pytest.fixture
async def up2() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as server:
        server.add("www.example", "A", "192.0.2.99", ttl=60)
        yield server


async def test_answers_from_the_upstream(up: FakeUpstream) -> None:
    async with UpstreamClient([up.address]) as fwd:
        reply = await ask(fwd, labels("www.example"), QTYPE.A)
    assert reply.header.rcode == RCODE.NOERROR
    assert addresses(reply) == ["192.0.2.1"]
    assert reply.rr[0].ttl == 60


async def test_nxdomain_comes_back_with_its_soa(up: FakeUpstream) -> None:
    up.soa_ttl, up.soa_minimum = 300, 60
    async with UpstreamClient([up.address]) as fwd:
        reply = await ask(fwd, labels("missing.example"), QTYPE.A)
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]
    assert reply.auth[0].rdata.times[-1] == 60


async def test_builds_its_own_query_with_rd_edns_and_do(up: FakeUpstream) -> None:
    async with UpstreamClient([up.address]) as fwd:
        await ask(fwd, labels("www.example"), QTYPE.A)
        await ask(fwd, labels("www.example"), QTYPE.AAAA, do=True)
    plain, secure = up.requests
    for request in (plain, secure):
        assert request.header.rd == 1
        assert request.header.id != 0
        opt = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
        assert len(opt) == 1 and opt[0].rclass == 1232
    assert not [rr for rr in plain.ar if rr.rtype == QTYPE.OPT][0].ttl & 0x8000
    assert [rr for rr in secure.ar if rr.rtype == QTYPE.OPT][0].ttl & 0x8000  # DO bit


async def test_random_ids_and_source_ports(up: FakeUpstream) -> None:
    """Random ports and IDs: 1000 queries -> >= 950 source ports, IDs spread, never 0.

    Uniform 16-bit IDs collide by the birthday rule: 1000 draws give ~992 distinct IDs on
    average (sd ~2.7), so >= 990 would fail about one run in six; >= 980 is > 4 sd away.
    """
    async with UpstreamClient([up.address], max_inflight=100) as fwd:
        sem = asyncio.Semaphore(20)

        async def one(i: int) -> None:
            async with sem:
                await ask(fwd, labels(f"n{i}.wild.example"), QTYPE.A)

        async with asyncio.timeout(30):
            await asyncio.gather(*(one(i) for i in range(1000)))
    udp = [q for q in up.queries if q.transport == "udp"]
    assert len(udp) == 1000
    ports = {q.port for q in udp}
    ids = [q.id for q in udp]
    assert len(ports) >= 950
    assert len(set(ids)) >= 980
    assert 0 not in ids
    steps = sum(1 for a, b in zip(ids, ids[1:], strict=False) if (b - a) & 0xFFFF == 1)
    assert steps < 10  # not sequential


async def test_spoofed_replies_are_dropped_and_the_real_one_accepted(up: FakeUpstream) -> None:
    """Spoofing: another socket, wrong ID, wrong qname, QR=0, wrong qtype -> ignored, counted."""
    up.add("bank.example", "A", "192.0.2.10")
    up.set_mode(Mode.SPOOF, name="bank.example")
    before = errors(up, "spoof")
    async with UpstreamClient([up.address]) as fwd:
        reply = await ask(fwd, labels("bank.example"), QTYPE.A)
    assert addresses(reply) == ["192.0.2.10"]
    assert SPOOF_ADDRESS not in addresses(reply)
    # The one from another address never reaches the connected socket; the 4 others are counted.
    assert errors(up, "spoof") - before >= 4
    assert up.count("bank.example") == 1


async def test_spoofed_frames_over_tcp_are_skipped(up: FakeUpstream) -> None:
    up.add("bank.example", "A", "192.0.2.10")
    up.set_mode(Mode.TRUNCATE, name="bank.example", transport="udp")
    up.set_mode(Mode.SPOOF, name="bank.example", transport="tcp")
    async with UpstreamClient([up.address]) as fwd:
        reply = await ask(fwd, labels("bank.example"), QTYPE.A)
    assert addresses(reply) == ["192.0.2.10"]


async def test_truncated_answer_is_retried_over_tcp(up: FakeUpstream) -> None:
    up.big_txt("big.example")
    async with UpstreamClient([up.address]) as fwd:
        reply = await ask(fwd, labels("big.example"), QTYPE.TXT)
    assert len(reply.rr) == 40
    assert [q.transport for q in up.queries] == ["udp", "tcp"]


async def test_case_of_the_question_does_not_matter(up: FakeUpstream) -> None:
    async with UpstreamClient([up.address]) as fwd:
        reply = await ask(fwd, labels("WwW.ExAmPlE"), QTYPE.A)
    assert addresses(reply) == ["192.0.2.1"]


async def test_silent_first_upstream_fails_over_fast(up: FakeUpstream, up2: FakeUpstream) -> None:
    """Timing: A silent, B fine -> answer well under 1.5 s; then A is tried last."""
    up.set_mode(Mode.SILENT)
    async with UpstreamClient([up.address, up2.address]) as fwd:
        started = time.monotonic()
        reply = await ask(fwd, labels("www.example"), QTYPE.A)
        first = time.monotonic() - started
        assert addresses(reply) == ["192.0.2.99"]
        assert first < 1.2
        started = time.monotonic()
        reply = await ask(fwd, labels("www.example"), QTYPE.AAAA)
        second = time.monotonic() - started
    assert second < 0.3  # the dead upstream no longer costs its timeout
    assert up.count() == 1
    assert errors(up, "timeout") >= 1


@pytest.mark.parametrize("mode", [Mode.SERVFAIL, Mode.REFUSED, Mode.GARBAGE])
async def test_next_upstream_on_bad_answers(
    up: FakeUpstream, up2: FakeUpstream, mode: Mode
) -> None:
    """SERVFAIL, REFUSED and garbage move on at once."""
    up.set_mode(mode)
    kind = {"servfail": "servfail", "refused": "refused", "garbage": "garbage"}[mode.value]
    before = errors(up, kind)
    async with UpstreamClient([up.address, up2.address]) as fwd:
        started = time.monotonic()
        reply = await ask(fwd, labels("www.example"), QTYPE.A)
    assert time.monotonic() - started < 0.5
    assert addresses(reply) == ["192.0.2.99"]
    assert errors(up, kind) == before + 1


async def test_closed_port_fails_over_fast(up2: FakeUpstream) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    closed = probe.getsockname()
    probe.close()
    async with UpstreamClient([closed, up2.address]) as fwd:
        started = time.monotonic()
        reply = await ask(fwd, labels("www.example"), QTYPE.A)
    assert time.monotonic() - started < 0.5
    assert addresses(reply) == ["192.0.2.99"]


async def test_all_silent_raises_within_the_budget(up: FakeUpstream, up2: FakeUpstream) -> None:
    up.set_mode(Mode.SILENT)
    up2.set_mode(Mode.SILENT)
    async with UpstreamClient([up.address, up2.address]) as fwd:
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="no upstream answered"):
            await ask(fwd, labels("www.example"), QTYPE.A)
        elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 2.4
    # Each was retried with a fresh ID and port in the time left after the first pass.
    assert up.count() == 2 and up2.count() == 2
    assert len({q.port for q in up.queries}) == 2


async def test_all_servfail_raises_at_once(up: FakeUpstream, up2: FakeUpstream) -> None:
    up.set_mode(Mode.SERVFAIL)
    up2.set_mode(Mode.SERVFAIL)
    async with UpstreamClient([up.address, up2.address]) as fwd:
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="servfail"):
            await ask(fwd, labels("www.example"), QTYPE.A)
    assert time.monotonic() - started < 0.5


async def test_dead_upstream_is_reprobed_in_the_background(
    up: FakeUpstream, up2: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forward, "DEAD_MIN", 0.2)
    up.set_mode(Mode.SILENT)
    async with UpstreamClient([up.address, up2.address], attempt_timeout=0.3) as fwd:
        assert addresses(await ask(fwd, labels("www.example"), QTYPE.A)) == ["192.0.2.99"]
        up.set_mode(Mode.NORMAL)
        await asyncio.sleep(0.3)
        # Served by B without waiting; A gets a background probe which succeeds...
        started = time.monotonic()
        assert addresses(await ask(fwd, labels("a.wild.example"), QTYPE.A)) == []
        assert time.monotonic() - started < 0.2
        for _ in range(50):
            if up.count("a.wild.example"):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        # ...so A is first again.
        assert addresses(await ask(fwd, labels("www.example"), QTYPE.A)) == ["192.0.2.1"]


async def test_identical_inflight_queries_are_coalesced(up: FakeUpstream) -> None:
    """Identical questions: 50 at once -> 1 upstream query, each caller gets its own record."""
    up.set_mode(Mode.DELAY, delay=0.2)
    async with UpstreamClient([up.address]) as fwd:
        replies = await asyncio.gather(
            *(
                fwd.query(labels("WWW.example" if i % 2 else "www.EXAMPLE"), QTYPE.A)
                for i in range(50)
            )
        )
    assert up.count() == 1
    assert all(addresses(r) == ["192.0.2.1"] for r in replies)
    # dnslib records are mutable (the cache clamps their TTLs): one each; the address shape
    # (wire.AddressAnswer) is immutable and shared
    mutable = [r for r in replies if isinstance(r, DNSRecord)]
    assert len({id(r) for r in mutable}) == len(mutable)


async def test_different_do_bit_is_not_coalesced(up: FakeUpstream) -> None:
    up.set_mode(Mode.DELAY, delay=0.1)
    async with UpstreamClient([up.address]) as fwd:
        await asyncio.gather(
            fwd.query(labels("www.example"), QTYPE.A),
            fwd.query(labels("www.example"), QTYPE.A, do=True),
        )
    assert up.count() == 2


async def test_inflight_cap_fails_fast(up: FakeUpstream) -> None:
    """Beyond max_inflight, raise at once instead of queueing."""
    up.set_mode(Mode.SILENT)
    async with UpstreamClient([up.address], max_inflight=5) as fwd:
        pending = [
            asyncio.create_task(fwd.query(labels(f"n{i}.wild.example"), QTYPE.A)) for i in range(5)
        ]
        await asyncio.sleep(0.05)
        assert fwd.inflight == 5
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="in flight"):
            await ask(fwd, labels("other.wild.example"), QTYPE.A)
        assert time.monotonic() - started < 0.05
        # Joining an identical in-flight question is still allowed.
        joiner = asyncio.create_task(fwd.query(labels("n0.wild.example"), QTYPE.A))
        await asyncio.sleep(0.01)
        assert not joiner.done()
        for task in [*pending, joiner]:
            task.cancel()
        await asyncio.gather(*pending, joiner, return_exceptions=True)


async def test_cancelled_caller_does_not_cancel_the_shared_query(up: FakeUpstream) -> None:
    up.set_mode(Mode.DELAY, delay=0.1)
    async with UpstreamClient([up.address]) as fwd:
        first = asyncio.create_task(fwd.query(labels("www.example"), QTYPE.A))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(fwd.query(labels("www.example"), QTYPE.A))
        await asyncio.sleep(0.01)
        first.cancel()
        reply = await second
    assert addresses(reply) == ["192.0.2.1"]


async def test_unpackable_name_raises_upstream_error(up: FakeUpstream) -> None:
    async with UpstreamClient([up.address]) as fwd:
        with pytest.raises(UpstreamError, match="cannot build"):
            await ask(fwd, (b"a" * 64, b"example"), QTYPE.A)
    assert up.count() == 0


async def test_query_after_close_raises(up: FakeUpstream) -> None:
    fwd = UpstreamClient([up.address])
    await fwd.start()
    await fwd.close()
    with pytest.raises(UpstreamError):
        await ask(fwd, labels("www.example"), QTYPE.A)


async def test_ipv6_upstream() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = FakeUpstream("::1")
        await server.start()
    except OSError:
        pytest.skip("::1 not available")
    try:
        server.add("v6.example", "AAAA", "2001:db8::1")
        async with UpstreamClient([server.address]) as fwd:
            reply = await ask(fwd, labels("v6.example"), QTYPE.AAAA)
        assert addresses(reply) == ["2001:db8::1"]
    finally:
        await server.close()


async def test_fake_upstream_logs_and_nodata(up: FakeUpstream) -> None:
    """The test double itself: NODATA for an existing name, the log records transport and port."""
    async with UpstreamClient([up.address]) as fwd:
        reply = await ask(fwd, labels("www.example"), QTYPE.MX)
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr
    assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]
    (received,) = up.queries
    assert received.transport == "udp" and received.qtype == QTYPE.MX and received.port > 0


def crafted_reply(qname: bytes, payload: bytes, ancount: int = 1) -> bytes:
    """ID placeholder, QR=1 RD RA, the question for qname/A/IN, then ``payload`` as answers."""
    header = b"\x00\x00\x81\x80\x00\x01" + ancount.to_bytes(2, "big") + b"\x00\x00\x00\x00"
    name = b"".join(bytes([len(p)]) + p for p in qname.split(b".")) + b"\x00"
    return header + name + b"\x00\x01\x00\x01" + payload


async def test_reply_with_an_unpackable_name_counts_as_garbage(
    up: FakeUpstream, up2: FakeUpstream
) -> None:
    """Malformed upstream replies: a 64-octet label parses in dnslib but would fail later."""
    cname = b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x42" + b"\x40" + b"a" * 64 + b"\x00"
    up.garbage_bytes = crafted_reply(b"www.example", cname)
    up.set_mode(Mode.GARBAGE)
    before = errors(up, "garbage")
    async with UpstreamClient([up.address, up2.address]) as fwd:
        reply = await ask(fwd, labels("www.example"), QTYPE.A)
    assert addresses(reply) == ["192.0.2.99"]
    assert errors(up, "garbage") == before + 1


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), ancount=st.integers(0, 3), framed=st.booleans())
def test_any_reply_bytes_are_accepted_dropped_or_garbage(
    body: bytes, ancount: int, framed: bool
) -> None:
    """Whatever an upstream sends, validation ends in one of three outcomes, never a crash."""
    question = forward._Question((b"www", b"example"), QTYPE.A, 1)
    if framed:  # a right header and question, then random records
        data = b"\x12\x34" + crafted_reply(b"www.example", body, ancount)[2:]
    else:
        data = b"\x12\x34\x81\x80" + body
    try:
        record = forward._validate(data, 0x1234, question)
    except (forward._Spoof, forward._TryFailed):
        return
    assert forward._names_fit(record)
    record.pack()


# -- through the whole resolver (tests/conftest.py fixtures), with real clients ----------------


async def dig(port: int, *args: str) -> tuple[str, float]:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        require("dig"), "-p", str(port), "@127.0.0.1", "+tries=1", "+time=3", *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode(), time.monotonic() - started


needs_dig = needs("dig")


@needs_dig
async def test_e2e_silent_first_upstream_answers_within_patience(
    up: FakeUpstream, up2: FakeUpstream, nestguard_server: Any, make_config: Any
) -> None:
    """Timing with dig: A silent, B fine -> answer < 1.5 s; all silent -> SERVFAIL by ~2 s."""
    up.set_mode(Mode.SILENT)
    running = await nestguard_server(make_config([up, up2], timeout=2.0))
    port = running.addresses[0][1]
    out, elapsed = await dig(port, "www.example")
    assert "status: NOERROR" in out and "192.0.2.99" in out
    assert elapsed < 1.5
    up2.set_mode(Mode.SILENT)
    out, elapsed = await dig(port, "other.example")
    assert "status: SERVFAIL" in out
    assert elapsed < 2.6


@needs_dig
async def test_e2e_spoofs_are_neither_served_nor_cached(
    up: FakeUpstream, nestguard_server: Any, make_config: Any
) -> None:
    """Spoofing with dig: forged replies first, then the real one; the cache holds the real one."""
    up.add("bank.example", "A", "192.0.2.10")
    up.set_mode(Mode.SPOOF, name="bank.example")
    running = await nestguard_server(make_config(up))
    port = running.addresses[0][1]
    for _ in range(2):
        out, _elapsed = await dig(port, "bank.example")
        assert "192.0.2.10" in out and SPOOF_ADDRESS not in out
    assert up.count("bank.example") == 1


async def test_e2e_fifty_clients_one_upstream_query(
    up: FakeUpstream, nestguard_server: Any, make_config: Any
) -> None:
    """Identical questions with dnspython: 50 clients ask at once -> 1 upstream query."""
    up.set_mode(Mode.DELAY, delay=0.3)
    running = await nestguard_server(make_config(up))
    host, port = running.addresses[0]
    replies = await asyncio.gather(
        *(
            dns.asyncquery.udp(
                dns.message.make_query("www.example", "A"), host, port=port, timeout=3
            )
            for _ in range(50)
        )
    )
    assert all(r.rcode() == 0 and r.answer for r in replies)
    assert up.count("www.example") == 1


async def test_upstream_without_edns_is_asked_again_without_it(up: FakeUpstream) -> None:
    """RFC 6891 section 7: FORMERR to an OPT -> the same question without EDNS, then remembered."""
    up.set_mode(Mode.FORMERR_EDNS)
    async with UpstreamClient([up.address]) as fwd:
        first = await ask(fwd, labels("www.example"), QTYPE.A)
        second = await ask(fwd, labels("www.example"), QTYPE.AAAA)
    assert addresses(first) == ["192.0.2.1"]
    assert second.header.rcode == RCODE.NOERROR
    with_opt = [any(rr.rtype == QTYPE.OPT for rr in r.ar) for r in up.requests]
    assert with_opt == [True, False, False]


async def test_formerr_either_way_moves_on(up: FakeUpstream, up2: FakeUpstream) -> None:
    up.set_mode(Mode.FORMERR)
    async with UpstreamClient([up.address, up2.address]) as fwd:
        reply = await ask(fwd, labels("www.example"), QTYPE.A)
    assert addresses(reply) == ["192.0.2.99"]


async def test_e2e_inflight_cap_keeps_cached_answers_fast(
    up: FakeUpstream, nestguard_server: Any, make_config: Any
) -> None:
    """A silent upstream and 300 new names -> fast SERVFAIL beyond the cap; hits stay fast."""
    running = await nestguard_server(make_config(up, timeout=2.0, max_inflight=150))
    host, port = running.addresses[0]
    cached = await dns.asyncquery.udp(dns.message.make_query("www.example", "A"), host, port=port)
    assert cached.answer
    up.set_mode(Mode.SILENT)
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood.setblocking(False)
    try:
        flood.connect((host, port))
        for i in range(300):
            flood.send(dns.message.make_query(f"n{i}.flood.example", "A").to_wire())
        servfails = 0
        deadline = time.monotonic() + 1.0  # well before the 2 s upstream timeout
        while servfails < 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            while True:
                try:
                    reply = dns.message.from_wire(flood.recv(4096))
                except BlockingIOError:
                    break
                servfails += reply.rcode() == dns.rcode.SERVFAIL
        assert servfails >= 100  # the ones beyond the cap, answered at once
        timings = []
        for _ in range(20):
            started = time.monotonic()
            reply = await dns.asyncquery.udp(
                dns.message.make_query("www.example", "A"), host, port=port, timeout=1
            )
            timings.append(time.monotonic() - started)
            assert reply.answer
        assert max(timings) < 0.05
    finally:
        flood.close()
    assert up.count() <= 151 + 1  # the cap held (plus the first, cached query)


async def test_metrics_label_upstreams_by_index_not_address(up: FakeUpstream) -> None:
    async with UpstreamClient([up.address]) as fwd:
        await ask(fwd, labels("www.example"), QTYPE.A)
    text = generate_latest(REGISTRY).decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("nestguard_upstream_queries_total")]
    assert any('upstream="upstream0"' in ln for ln in lines)
    assert f"{up.address[0]}:{up.address[1]}" not in text  # never the upstream's address


async def test_a_flapping_upstream_logs_its_state_once(
    up: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that times out on some names and answers others: one warning, not one per
    query (the old log said "trying it last for 5 s" for each failing query)."""
    up.add("ok.example", "A", "192.0.2.5")
    up.set_mode(Mode.SILENT, name="stuck.example")
    caplog.set_level(logging.INFO, logger="resolver.forward")
    async with UpstreamClient([up.address], timeout=0.3, attempt_timeout=0.1) as fwd:
        for _ in range(6):
            with contextlib.suppress(UpstreamError):
                await fwd.query(labels("stuck.example"), QTYPE.A)
            assert addresses(await fwd.query(labels("ok.example"), QTYPE.A)) == ["192.0.2.5"]
    said = [r.getMessage() for r in caplog.records if r.name == "resolver.forward"
            and r.levelno >= logging.INFO and "forwarding to" not in r.getMessage()]
    assert len([m for m in said if "failed" in m]) == 1, said
    assert not [m for m in said if "answers again" in m], said  # not yet QUIET seconds good
