"""The batched UDP listener (resolver/_dgram.c: recvmmsg/sendmmsg) against the one-datagram
path (uvloop's transport, `dns.udp_batch: false`): the same replies to the same packets, from
several devices at once, with cache hits, upstream misses and malformed packets in one batch."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import sysconfig
import time
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from resolver.server import batched_udp_available
from tests.conftest import replace_dns
from tests.resolver.dnsclient import header
from tests.support.upstream import FakeUpstream, Mode

DEVICES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def test_the_batched_listener_is_built_where_a_compiler_is() -> None:
    """`make setup` compiles resolver/_dgram.c; a machine with a C compiler that ends up
    without it serves at half the speed without saying so (README, Performance)."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here (Debian package gcc): the listener falls back")
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        pytest.skip("no Python headers here (Debian package python3-dev): the listener falls back")
    assert batched_udp_available(), "resolver/_dgram.c did not build: run `make setup` and read why"


def _query(name: str, qid: int) -> bytes:
    q = dns.message.make_query(name, "A")
    q.id = qid
    return q.to_wire()


def _burst(addr: tuple[str, int], packets: list[tuple[str, bytes]], timeout: float = 3.0):
    """Send every (source address, packet) at once, from one socket per source; return the
    replies each socket got, by source."""
    socks = {}
    for src in DEVICES:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.setblocking(False)
        socks[src] = s
    got: dict[str, list[bytes]] = {src: [] for src in DEVICES}
    try:
        for src, data in packets:
            socks[src].sendto(data, addr)
        want = sum(1 for _, d in packets if len(d) >= 12)
        deadline = time.monotonic() + timeout
        while sum(len(v) for v in got.values()) < want and time.monotonic() < deadline:
            idle = True
            for src, s in socks.items():
                try:
                    data, peer = s.recvfrom(4096)
                except BlockingIOError:
                    continue
                assert peer == addr
                got[src].append(data)
                idle = False
            if idle:
                time.sleep(0.002)
    finally:
        for s in socks.values():
            s.close()
    return got


@pytest.fixture(params=["batched", "one-at-a-time"])
async def server(request, nestguard_server, fake_upstream: FakeUpstream, make_config):
    batched = request.param == "batched"
    if batched and not batched_udp_available():
        pytest.skip("resolver/_dgram.c was not compiled here")
    for i in range(40):
        fake_upstream.add(f"n{i}.example", "A", f"192.0.2.{i + 1}", ttl=300)
    config = replace_dns(make_config(fake_upstream), udp_batch=batched)
    running = await nestguard_server(config)
    return running, fake_upstream


async def test_a_burst_from_several_devices_gets_every_reply_at_its_sender(server):
    running, upstream = server
    addr = running.addresses[0]
    # warm half the names: the burst mixes cache hits (answered in the batch) and misses
    # (answered later by their own task)
    warm = [(DEVICES[0], _query(f"n{i}.example", 1000 + i)) for i in range(0, 40, 2)]
    await asyncio.to_thread(_burst, addr, warm)
    packets = []
    for k in range(150):
        src = DEVICES[k % 3]
        packets.append((src, _query(f"n{k % 40}.example", (k * 7919) % 65536)))
    got = await asyncio.to_thread(_burst, addr, packets)
    for src in DEVICES:
        sent = {struct.unpack("!H", d[:2])[0]: d for s, d in packets if s == src}
        replies = {struct.unpack("!H", r[:2])[0]: dns.message.from_wire(r) for r in got[src]}
        assert set(replies) == set(sent), f"{src}: missing or foreign replies"
        for qid, reply in replies.items():
            name = dns.message.from_wire(sent[qid]).question[0].name.to_text()
            i = int(name.split(".")[0][1:])
            assert reply.rcode() == dns.rcode.NOERROR
            assert reply.question[0].name.to_text() == name
            assert [r.to_text() for r in reply.answer[0]] == [f"192.0.2.{i + 1}"]
    # the cold names were asked 75 times: coalesced and cached, the upstream saw each about once
    cold = sum(upstream.count(f"n{i}.example") for i in range(1, 40, 2))
    assert 20 <= cold <= 30


async def test_malformed_packets_in_a_batch_get_formerr_and_the_rest_are_answered(server):
    running, _ = server
    addr = running.addresses[0]
    broken = header(qid=4242) + b"\xc0\x0c\x00\x01\x00\x01"  # a compression loop
    packets = [(DEVICES[0], _query(f"n{i}.example", 100 + i)) for i in range(10)]
    packets.insert(5, (DEVICES[0], broken))
    packets.insert(2, (DEVICES[1], b"\x01\x02\x03"))  # too short for a header: silence
    got = await asyncio.to_thread(_burst, addr, packets)
    by_id = {struct.unpack("!H", r[:2])[0]: r for r in got[DEVICES[0]]}
    assert set(by_id) == {4242, *range(100, 110)}
    assert dns.message.from_wire(by_id[105]).rcode() == dns.rcode.NOERROR
    assert by_id[4242][3] & 0x0F == dns.rcode.FORMERR
    assert got[DEVICES[1]] == []
    # and the listener still answers afterwards
    again = await asyncio.to_thread(_burst, addr, [(DEVICES[1], _query("n3.example", 7))])
    assert dns.message.from_wire(again[DEVICES[1]][0]).answer


async def test_a_stopped_listener_answers_nothing_and_late_answers_are_not_sent(
    server,
):
    running, upstream = server
    addr = running.addresses[0]
    upstream.set_mode(Mode.DELAY, delay=0.3)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((DEVICES[2], 0))
    sock.settimeout(1.0)
    try:
        sock.sendto(_query("n30.example", 9), addr)  # needs the (slow) upstream
        await asyncio.sleep(0.05)
        running.server.stop_listening()
        await asyncio.sleep(0.5)  # the upstream answered meanwhile
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(sock.recvfrom, 4096)
    finally:
        sock.close()
