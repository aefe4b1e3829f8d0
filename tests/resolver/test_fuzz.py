"""Random and mutated packets never crash or hang the listeners (bounded Hypothesis runs)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import dns.message
import dns.rcode
from dnslib import DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver import wire
from resolver.cache import Cache
from resolver.metrics import Metrics
from resolver.pipeline import Query, Reply, chain
from resolver.server import DnsServer
from tests.resolver.dnsclient import ask

SEED = bytes(DNSRecord.question("www.example", "A").pack())
SEED_EDNS = bytes.fromhex(
    "abcd01200001000000000001037777770765786d706c650000010001"
    "0000291000000080000010000a00080102030405060708fde90006aabbccddeeff"
)

mutations = st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), min_size=1, max_size=6)


def mutate(seed: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(seed)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
        else:
            data.append(value)
    return bytes(data[:cut] if cut is not None else data)


packets = st.one_of(
    st.binary(max_size=600),
    st.builds(
        mutate, st.sampled_from([SEED, SEED_EDNS]), mutations, st.none() | st.integers(0, 80)
    ),
)

FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


async def _never_called(query: Query) -> Reply:
    raise AssertionError("no upstream in this test")


def _well_formed(reply: bytes) -> None:
    assert reply[2] & 0x80  # QR
    if len(reply) == 12:  # FORMERR / SERVFAIL from the header alone
        return
    if (reply[2] >> 3) & 0xF:
        # NOTIMP to another opcode: dnspython parses e.g. UPDATE strictly (zone must be SOA)
        assert reply[3] & 0xF == dns.rcode.NOTIMP
        return
    dns.message.from_wire(reply, ignore_trailing=False)


def test_process_never_raises():
    server = DnsServer(chain([Cache()], last=_never_called), metrics=Metrics())

    @settings(FUZZ, max_examples=2000)
    @given(packets)
    def check(data: bytes) -> None:
        out = server.process(data, "127.0.0.1", "udp")
        assert out is None or isinstance(out, bytes | Query)
        if isinstance(out, bytes):
            assert out[:2] == data[:2]
            _well_formed(out)

    check()


async def test_live_listeners_survive_fuzzing(nestguard_server, fake_upstream, make_config):
    fake_upstream.add("*.example", "A", "192.0.2.1")
    running = await nestguard_server(make_config(fake_upstream, timeout=0.3))
    host, port = running.addresses[0]

    def blast() -> None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(2.0)
        udp.connect((host, port))
        probe = dns.message.make_query("probe.example", "A")

        @FUZZ
        @given(packets)
        def one(data: bytes) -> None:
            udp.send(data)
            probe.id = (probe.id + 1) & 0xFFFF
            udp.send(probe.to_wire())
            while True:  # replies to the fuzz packet (if any) must be well formed
                reply = udp.recv(65535)
                if reply[:2] == struct.pack(">H", probe.id) and len(reply) > 12:
                    msg = dns.message.from_wire(reply)
                    if msg.question and msg.question[0].name.to_text() == "probe.example.":
                        return
                _well_formed(reply)

        @settings(FUZZ, max_examples=60)
        @given(packets, st.booleans())
        def one_tcp(data: bytes, framed: bool) -> None:
            with socket.create_connection((host, port), timeout=2.0) as s:
                s.sendall((struct.pack(">H", len(data)) if framed else b"") + data)

        try:
            one()
            one_tcp()
        finally:
            udp.close()

    await asyncio.wait_for(asyncio.to_thread(blast), 120)
    r = await ask((host, port), "after.example")
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.1"
    r = await ask((host, port), "after.example", tcp=True)
    assert r.answer[0][0].address == "192.0.2.1"


async def test_one_byte_trickle_does_not_hold_tcp(nestguard_server, fake_upstream, make_config):
    """100 connections from one device trickling a byte each 2.5 s: other devices still use TCP."""
    fake_upstream.add("*.example", "A", "192.0.2.1")
    running = await nestguard_server(make_config(fake_upstream, tcp_max_clients=100))
    host, port = running.addresses[0]
    frame = struct.pack(">H", len(SEED)) + SEED
    conns = []
    for _ in range(100):
        try:
            conns.append(await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0)))
        except OSError:
            break

    async def trickle(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            for byte in frame:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(2.5)

    tricklers = [asyncio.create_task(trickle(w)) for _, w in conns]
    try:
        await asyncio.sleep(0.5)
        for i in range(3):  # other devices keep getting answers over TCP while it trickles
            source = f"127.0.0.{3 + i}"
            r = await ask((host, port), f"t{i}.example", tcp=True, source=source)
            assert r.answer[0][0].address == "192.0.2.1"
            await asyncio.sleep(1.0)
        # and the trickling connections are all closed within tcp_partial of their first byte
        deadline = asyncio.get_running_loop().time() + 8
        while running.server.tcp_clients and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
        assert running.server.tcp_clients == 0
    finally:
        for t in tricklers:
            t.cancel()
        await asyncio.gather(*tricklers, return_exceptions=True)
        for _, w in conns:
            w.close()


def test_formerr_is_header_only_with_same_id():
    assert wire.formerr(b"\x12\x34\x01\x00" + b"\x00" * 8) == bytes.fromhex(
        "123481810000000000000000"
    )
    assert wire.formerr(b"\x12\x34\x81\x00" + b"\x00" * 8) is None
    assert wire.formerr(b"\x12") is None


async def test_spoofed_mac_options_never_lift_a_childs_filter(
    nestguard_server, fake_upstream, make_config
):
    """A child's device (127.0.0.2) sends dnsmasq's MAC option (EDNS 65001) with any content:
    the parents' laptop's MAC in every spelling the option allows (raw, text, base64), random
    bytes, short and long values. No router is trusted, so every answer stays the child's."""
    import base64
    import ipaddress

    import dns.edns

    from policy.live import Live
    from policy.model import Action, Device, Policy, Profile, Verdict
    from resolver.assembly import ResolverServices

    kid, adults = Profile(None, mode="kid"), Profile(None, mode="adults")
    tablet = Device(10, "tablet", ("127.0.0.2",), owner=1)
    laptop = Device(11, "laptop", ("aa:bb:cc:dd:ee:01",), owner="adults")
    policy = Policy(revision=1, devices=(tablet, laptop), profiles={1: kid},
                    adults_profile=adults, default_profile=kid,
                    by_address={"127.0.0.2": tablet}, by_mac={"aa:bb:cc:dd:ee:01": laptop})

    def decider(profile: Profile, qname: str, qtype: int, now: object) -> Verdict:
        if profile is not adults and qname.startswith("adult"):
            return Verdict(Action.BLOCK, "category:adult:18+")
        return Verdict(Action.ALLOW)

    fake_upstream.add("*.example", "A", "192.0.2.1")
    router = ipaddress.ip_network("127.0.0.7/32")  # trusted, but never the sender here
    running = await nestguard_server(
        make_config(fake_upstream, trusted_mac_sources=(router,)),
        ResolverServices(arp_path=None, decider=decider, live_policy=Live(policy)),
    )
    addr = running.addresses[0]
    spellings = [bytes.fromhex("aabbccddee01"), b"aa:bb:cc:dd:ee:01", b"AA-BB-CC-DD-EE-01",
                 base64.b64encode(bytes.fromhex("aabbccddee01"))]
    values = st.one_of(st.sampled_from(spellings), st.binary(max_size=40))

    @settings(FUZZ, max_examples=80)
    @given(values, st.integers(0, 10**6))
    def probe(value: bytes, n: int) -> None:
        opt = dns.edns.GenericOption(65001, value)
        q = dns.message.make_query(f"adult{n}.example", "A", use_edns=0, options=[opt])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
            s.settimeout(3.0)
            s.sendto(q.to_wire(), addr)
            reply = dns.message.from_wire(s.recv(65535))
        assert reply.answer and reply.answer[0][0].address == "0.0.0.0", value

    await asyncio.wait_for(asyncio.to_thread(probe), 120)
