"""The listeners with real clients (dig, kdig, dnspython, raw sockets)."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.resolver.dnsclient import ask, dig, header, qname, raw_udp, rcode_of, timed_udp
from tests.support.upstream import FakeUpstream, Mode


@pytest.fixture
async def addr(nestguard_server, fake_upstream: FakeUpstream, make_config):
    fake_upstream.add("www.example", "A", "192.0.2.1", ttl=60)
    fake_upstream.add("mixed.example", "A", "192.0.2.7", ttl=60)
    fake_upstream.add("b.example", "A", "192.0.2.2", ttl=60)
    running = await nestguard_server(make_config(fake_upstream))
    return running.addresses[0]


async def test_answers_from_upstream_with_resolver_flags(addr, fake_upstream):
    out = await dig(addr, "www.example", "+tries=1", "+time=2")
    assert "status: NOERROR" in out
    assert re.search(r"www\.example\.\s+60\s+IN\s+A\s+192\.0\.2\.1", out)
    flags = re.search(r"flags: ([a-z ]+);", out).group(1).split()  # type: ignore[union-attr]
    assert set(flags) == {"qr", "rd", "ra"}  # AA=0, RA=1, RD echoed (RFC 1035)
    assert fake_upstream.count("www.example") == 1


@pytest.mark.parametrize("round_", ["upstream", "cache"])
async def test_id_and_question_case_echoed(addr, round_):
    if round_ == "cache":
        await dig(addr, "mixed.example", "+tries=1")
    out = await dig(addr, "+qid=1", "MiXeD.ExAmPlE", "+tries=1", "+time=2")
    assert "id: 1\n" in out
    assert ";MiXeD.ExAmPlE.\t" in out
    assert "192.0.2.7" in out


async def test_rd_clear_is_echoed(addr):
    reply = await ask(addr, "www.example")  # warm
    q = dns.message.make_query("www.example", "A")
    q.flags &= ~dns.flags.RD
    host, port = addr
    reply = await dns.asyncquery.udp(q, host, port=port, timeout=2)
    assert not reply.flags & dns.flags.RD
    assert reply.flags & dns.flags.RA


FORMERR_PACKETS = {
    "compression loop": header() + b"\xc0\x0c\x00\x01\x00\x01",
    "64-octet label": header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
    "qdcount 0": header(qd=0),
    "qdcount 2": header(qd=2) + (qname(b"a", b"example") + b"\x00\x01\x00\x01") * 2,
    "name over 255": header() + qname(*([b"a" * 63] * 4)) + b"\x00\x01\x00\x01",
    "truncated question": header() + qname(b"www", b"example")[:-2],
    "missing type": header() + qname(b"www", b"example") + b"\x00",
    "bad pointer in additional": header(ar=1)
    + qname(b"a", b"example")
    + b"\x00\x01\x00\x01"
    + b"\xc0\xff\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",
    "truncated rdata": header(ar=1)
    + qname(b"a", b"example")
    + b"\x00\x01\x00\x01"
    + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x10",
    "two OPTs": header(ar=2)
    + qname(b"a", b"example")
    + b"\x00\x01\x00\x01"
    + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" * 2,
}


@pytest.mark.parametrize("packet", FORMERR_PACKETS.values(), ids=FORMERR_PACKETS.keys())
async def test_formerr_fast_with_same_id(addr, fake_upstream, packet):
    best = 1.0
    for _ in range(3):
        got, took = await timed_udp(addr, packet)
        assert got is not None
        assert got[:2] == packet[:2]
        assert rcode_of(got) == dns.rcode.FORMERR
        assert got[2] & 0x80  # QR
        best = min(best, took)
    assert best < 0.05
    assert fake_upstream.count() == 0


async def test_short_datagrams_get_silence(addr, fake_upstream):
    packet = header() + qname(b"www", b"example") + b"\x00\x01\x00\x01"
    replies = await asyncio.gather(*(raw_udp(addr, packet[:n], timeout=0.3) for n in range(12)))
    assert replies == [None] * 12
    assert await raw_udp(addr, packet) is not None  # still serving


async def test_responses_are_dropped(addr, fake_upstream):
    packet = header(flags=0x8180) + qname(b"www", b"example") + b"\x00\x01\x00\x01"
    assert await raw_udp(addr, packet, timeout=0.3) is None
    assert fake_upstream.count() == 0


async def test_update_opcode_gets_notimp(addr, fake_upstream):
    out = await dig(addr, "+opcode=update", "www.example", "+tries=1", "+time=2")
    assert "status: NOTIMP" in out
    assert fake_upstream.count() == 0


async def test_unknown_opcode_raw_gets_notimp_same_id(addr):
    packet = (
        header(qid=0xBEEF, flags=(5 << 11) | 0x0100) + qname(b"x", b"example") + b"\x00\x01\x00\x01"
    )
    got = await raw_udp(addr, packet)
    assert got is not None and got[:2] == b"\xbe\xef" and rcode_of(got) == dns.rcode.NOTIMP


@pytest.mark.parametrize("name", ["www.example", "printer"])  # forwarded, local
async def test_edns_version_1_gets_badvers_with_opt_v0(addr, fake_upstream, name):
    out = await dig(addr, "+edns=1", "+noednsneg", name, "+tries=1", "+time=2")
    assert "status: BADVERS" in out
    assert "EDNS: version: 0" in out
    assert "ANSWER: 0" in out
    assert fake_upstream.count() == 0


@pytest.mark.parametrize("name", ["www.example", "printer"])
async def test_unknown_options_and_flags_not_echoed(addr, name):
    reply = await ask(addr, name, options=[dns.edns.GenericOption(100, b"\xab\xcd")])
    reply2 = await ask(addr, name)  # cached / local path too
    for r in (reply, reply2):
        assert r.edns == 0
        assert r.payload == 1232
        assert [o.otype for o in r.options] == []
    out = await dig(addr, "+ednsflags=0x80", name, "+tries=1")
    assert re.search(r"EDNS: version: 0, flags:;", out)  # unknown flag cleared


@pytest.mark.parametrize("name", ["www.example", "printer", "nx.example"])
async def test_opt_iff_query_had_one(addr, name):
    for _ in range(2):  # upstream then cache
        without = await ask(addr, name, edns=None)
        with_ = await ask(addr, name, edns=0)
        assert without.edns == -1
        assert with_.edns == 0


async def test_do_bit_echoed(addr):
    r = await ask(addr, "www.example", want_dnssec=True)
    assert r.ednsflags & dns.flags.DO


@pytest.fixture
async def big(nestguard_server, fake_upstream: FakeUpstream, make_config):
    fake_upstream.big_txt("big.example")
    running = await nestguard_server(make_config(fake_upstream))
    return running.addresses[0]


def _size(out: str) -> int:
    return int(re.search(r"MSG SIZE\s+rcvd: (\d+)", out).group(1))  # type: ignore[union-attr]


async def test_udp_without_edns_truncated_to_512(big):
    out = await dig(big, "+noedns", "+ignore", "big.example", "TXT", "+tries=1", "+time=3")
    assert re.search(r"flags: [a-z ]*\btc\b", out)
    assert _size(out) <= 512


async def test_udp_with_big_bufsize_capped_at_1232(big):
    out = await dig(big, "+bufsize=4096", "+ignore", "big.example", "TXT", "+tries=1", "+time=3")
    assert re.search(r"flags: [a-z ]*\btc\b", out)
    assert _size(out) <= 1232
    assert "udp: 1232" in out


async def test_small_bufsize_counts_as_512(big):
    r = await ask(big, "big.example", "TXT", payload=100)
    assert r.flags & dns.flags.TC


async def test_tcp_gets_the_whole_big_answer(big):
    r = await ask(big, "big.example", "TXT", tcp=True)
    assert len(r.answer[0]) == 40
    assert not r.flags & dns.flags.TC


async def test_dig_retries_over_tcp_after_tc(big):
    out = await dig(big, "big.example", "TXT", "+tries=1", "+time=3")
    assert "ANSWER: 40" in out


async def test_tcp_pipelining_on_one_socket(addr):
    host, port = addr
    reader, writer = await asyncio.open_connection(host, port)
    try:
        names = ["www.example", "b.example", "printer", "mixed.example"] * 3
        ids = []
        for i, name in enumerate(names):
            q = dns.message.make_query(name, "A")
            q.id = 1000 + i
            ids.append(q.id)
            data = q.to_wire()
            writer.write(struct.pack(">H", len(data)) + data)
        await writer.drain()
        got = {}
        for _ in names:
            size = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 3))[0]
            msg = dns.message.from_wire(await reader.readexactly(size))
            got[msg.id] = msg
        assert sorted(got) == ids
        assert got[1000].answer[0][0].address == "192.0.2.1"
        assert got[1001].answer[0][0].address == "192.0.2.2"
        assert got[1002].rcode() == dns.rcode.NXDOMAIN
    finally:
        writer.close()


async def test_kdig_keepopen_pipelines(addr):
    out = await dig(addr, "+tcp", "+keepopen", "www.example", "b.example", tool="kdig")
    assert "192.0.2.1" in out and "192.0.2.2" in out


async def test_idle_tcp_connection_closed(nestguard_server, fake_upstream, make_config):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    running = await nestguard_server(make_config(fake_upstream, tcp_idle=0.5))
    host, port = running.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        q = dns.message.make_query("www.example", "A").to_wire()
        writer.write(struct.pack(">H", len(q)) + q)
        size = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 3))[0]
        await reader.readexactly(size)
        start = time.monotonic()
        assert await asyncio.wait_for(reader.read(10), 3) == b""
        assert 0.3 < time.monotonic() - start < 2.5
    finally:
        writer.close()


async def test_half_sent_prefixes_closed(addr):
    host, port = addr
    conns = [await asyncio.open_connection(host, port) for _ in range(50)]
    for _, w in conns:
        w.write(b"\x00")
    start = time.monotonic()
    results = await asyncio.gather(
        *(asyncio.wait_for(r.read(10), 6) for r, _ in conns), return_exceptions=True
    )
    assert results == [b""] * 50
    assert time.monotonic() - start < 5
    for _, w in conns:
        w.close()
    assert (await ask(addr, "www.example")).answer  # still serving


async def test_tcp_client_cap(nestguard_server, fake_upstream, make_config):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    running = await nestguard_server(make_config(fake_upstream, tcp_max_clients=3))
    host, port = running.addresses[0]
    conns = [await asyncio.open_connection(host, port) for _ in range(3)]
    await asyncio.sleep(0.05)
    r, w = await asyncio.open_connection(host, port)
    assert await asyncio.wait_for(r.read(10), 2) == b""  # the 4th is closed at once
    w.close()
    for _, w in conns:
        w.close()
    await asyncio.sleep(0.05)
    assert (await ask((host, port), "www.example", tcp=True)).answer


async def test_ipv6_listener(nestguard_server, fake_upstream, make_config):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    fake_upstream.add("www.example", "A", "192.0.2.1")
    running = await nestguard_server(
        make_config(fake_upstream, listen=(("127.0.0.1", 0), ("::1", 0)))
    )
    v6 = running.addresses[1]
    assert v6[0] == "::1"
    out = await dig(v6, "www.example", "+tries=1", "+time=2")
    assert "192.0.2.1" in out
    out = await dig(v6, "www.example", "+tcp", "+tries=1", "+time=2")
    assert "192.0.2.1" in out


async def test_unknown_type_passes_through(nestguard_server, fake_upstream, make_config):
    fake_upstream.add_zone(r"t.example. 300 IN TYPE65534 \# 4 deadbeef")
    running = await nestguard_server(make_config(fake_upstream))
    addr = running.addresses[0]
    for _ in range(2):
        out = await dig(addr, "t.example", "TYPE65534", "+tries=1")
        assert re.search(r"TYPE65534\s+\\# 4 DEADBEEF", out)
    assert fake_upstream.count("t.example") == 1


async def test_any_gets_rfc8482_hinfo_without_upstream(big, fake_upstream):
    out = await dig(big, "big.example", "ANY", "+tries=1")
    assert '"RFC8482" ""' in out
    assert not re.search(r"flags: [a-z ]*\btc\b", out)
    assert fake_upstream.count() == 0


async def test_tcp_answers_each_query_as_it_is_ready(nestguard_server, fake_upstream, make_config):
    fake_upstream.add("slow.example", "A", "192.0.2.9")
    fake_upstream.add("fast.example", "A", "192.0.2.8")
    running = await nestguard_server(make_config(fake_upstream))
    host, port = running.addresses[0]
    await ask((host, port), "fast.example")  # cached now
    fake_upstream.set_mode(Mode.DELAY, name="slow.example", delay=0.4)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for qid, name in ((1, "slow.example"), (2, "fast.example")):
            q = dns.message.make_query(name, "A")
            q.id = qid
            data = q.to_wire()
            writer.write(struct.pack(">H", len(data)) + data)
        await writer.drain()
        order = []
        for _ in range(2):
            size = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 3))[0]
            order.append(dns.message.from_wire(await reader.readexactly(size)).id)
        assert order == [2, 1]
    finally:
        writer.close()


async def test_cname_loop_from_upstream_is_answered(nestguard_server, fake_upstream, make_config):
    fake_upstream.add("a.example", "CNAME", "b.example.")
    fake_upstream.add("b.example", "CNAME", "a.example.")
    running = await nestguard_server(make_config(fake_upstream))
    addr = running.addresses[0]
    for _ in range(2):
        r = await ask(addr, "a.example")
        assert r.rcode() == dns.rcode.NOERROR
        assert {rrset.rdtype for rrset in r.answer} == {dns.rdatatype.CNAME}


async def test_silent_tcp_connections_closed_early_served_ones_kept(addr):
    host, port = addr
    silent = [
        await asyncio.open_connection(host, port, local_addr=(f"127.0.0.{3 + i % 2}", 0))
        for i in range(20)
    ]
    served_r, served_w = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
    q = dns.message.make_query("www.example", "A").to_wire()
    served_w.write(struct.pack(">H", len(q)) + q)
    size = struct.unpack(">H", await asyncio.wait_for(served_r.readexactly(2), 3))[0]
    await served_r.readexactly(size)
    start = time.monotonic()
    results = await asyncio.gather(*(asyncio.wait_for(r.read(10), 6) for r, _ in silent))
    assert results == [b""] * 20  # no query within the short timeout: closed
    assert time.monotonic() - start < 5
    served_w.write(struct.pack(">H", len(q)) + q)  # the served one is still open (idle 30 s)
    size = struct.unpack(">H", await asyncio.wait_for(served_r.readexactly(2), 3))[0]
    assert dns.message.from_wire(await served_r.readexactly(size)).answer
    for _, w in [*silent, (served_r, served_w)]:
        w.close()


async def _open_from(source: str, addr: tuple[str, int]):
    return await asyncio.open_connection(*addr, local_addr=(source, 0))


async def _query_tcp(reader, writer, name: str) -> dns.message.Message:
    q = dns.message.make_query(name, "A").to_wire()
    writer.write(struct.pack(">H", len(q)) + q)
    size = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
    return dns.message.from_wire(await asyncio.wait_for(reader.readexactly(size), 5))


async def test_trickled_message_closed_at_its_deadline(addr):
    """Slowloris: a byte every 0.5 s does not keep a half-sent message alive past tcp_partial."""
    reader, writer = await _open_from("127.0.0.2", addr)
    q = dns.message.make_query("www.example", "A").to_wire()
    framed = struct.pack(">H", len(q)) + q
    start = time.monotonic()
    closed_after = None
    try:
        for byte in framed:
            writer.write(bytes([byte]))
            try:
                if await asyncio.wait_for(reader.read(10), 0.5) == b"":
                    closed_after = time.monotonic() - start
                    break
            except TimeoutError:
                continue
    finally:
        writer.close()
    # tcp_partial is 3 s from the first byte; the whole trickle would take ~15 s
    assert closed_after is not None and closed_after < 6
    assert (await ask(addr, "www.example", tcp=True)).answer


async def test_tcp_connections_capped_per_address(nestguard_server, fake_upstream, make_config):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    running = await nestguard_server(
        make_config(fake_upstream, tcp_max_clients=50, tcp_max_per_client=4)
    )
    addr = running.addresses[0]
    held = [await _open_from("127.0.0.2", addr) for _ in range(4)]
    try:
        await asyncio.sleep(0.05)
        r, w = await _open_from("127.0.0.2", addr)
        assert await asyncio.wait_for(r.read(10), 2) == b""  # the 5th from .2: closed at once
        w.close()
        r, w = await _open_from("127.0.0.3", addr)  # another device is still served
        try:
            assert (await _query_tcp(r, w, "www.example")).answer
        finally:
            w.close()
        held[0][1].close()  # one of .2's slots frees up: .2 may connect again
        await asyncio.sleep(0.1)
        r, w = await _open_from("127.0.0.2", addr)
        try:
            assert (await _query_tcp(r, w, "www.example")).answer
        finally:
            w.close()
    finally:
        for _, w in held:
            w.close()


def _udp_query(addr, name: str, rdtype: str, rdclass: str = "IN") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, rdclass=rdclass)
    host, port = addr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(q.to_wire(), (host, port))
        return dns.message.from_wire(s.recv(65535))


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
async def test_zone_transfers_are_refused_not_forwarded(addr, fake_upstream, rdtype):
    reply = await asyncio.to_thread(_udp_query, addr, "example", rdtype)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
    q = dns.message.make_query("example", rdtype)
    reply = await dns.asyncquery.tcp(q, addr[0], port=addr[1], timeout=3)
    assert reply.rcode() == dns.rcode.REFUSED
    assert fake_upstream.count() == 0


@pytest.mark.parametrize("rdclass", ["ANY", "NONE", "HS", "CLASS0", "CLASS42"])
async def test_other_classes_get_no_in_records(addr, fake_upstream, rdclass):
    reply = await asyncio.to_thread(_udp_query, addr, "www.example", "A", rdclass)
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer
    assert reply.question[0].rdclass == dns.rdataclass.from_text(rdclass)
    assert fake_upstream.count() == 0
    assert (await ask(addr, "www.example")).answer  # class IN as before


async def test_chaos_class_is_left_as_it_was(addr, fake_upstream):
    reply = await asyncio.to_thread(_udp_query, addr, "version.bind", "TXT", "CH")
    assert reply.rcode() != dns.rcode.REFUSED
