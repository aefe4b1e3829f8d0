"""A scriptable fake upstream DNS server for tests (UDP and TCP, loopback only).

Usage::

    async with FakeUpstream() as up:                 # 127.0.0.1, port 0 (FakeUpstream("::1") too)
        up.add("www.example", "A", "192.0.2.1", ttl=60)
        up.add_zone('t.example. 300 IN TXT "hello"')
        up.big_txt("big.example")                     # 40 x 200-byte TXT strings
        up.set_mode(Mode.SILENT, name="dead.example") # per name; name=None -> every name
        up.set_mode(Mode.DELAY, delay=0.5)            # global
        host, port = up.address
        ...
        assert up.count("www.example") == 1
        up.queries  # [Received(transport, qname, qtype, port, id), ...]

Modes (:class:`Mode`): ``normal``; ``silent`` (drop); ``delay`` (answer after ``delay`` s);
``servfail``; ``refused``; ``formerr``; ``formerr-edns`` (FORMERR to queries with EDNS, as an
old EDNS-unaware server); ``truncate`` (TC=1 and empty sections over UDP, the full answer over
TCP); ``garbage`` (``garbage_bytes``; by default a header with the right ID and QR=1 followed by a
compression loop, so it fails to parse); ``spoof`` (first forged replies carrying
:data:`SPOOF_ADDRESS` -- from another socket on 127.0.0.2 / another port, with a wrong ID, a wrong
qname, QR=0, a wrong qtype -- then, ``spoof_gap`` seconds later, the real one).
A mode may be limited to one transport (``transport="udp"`` / ``"tcp"``). Lookup order:
(name, transport), (name, any), (any name, transport), (any name, any).

Names not in the zone get NXDOMAIN with a SOA in AUTHORITY (``soa_ttl`` and ``soa_minimum``
configurable, owner ``soa_zone``); existing names without the asked type get NODATA with the SOA.
``*.parent`` entries act as wildcards. CNAMEs in the zone are followed within it. UDP replies
larger than the client's EDNS size (512 without EDNS) are truncated like a real server unless
``auto_truncate`` is False. Replies carry OPT(1232) iff the query had one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, NamedTuple

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, A, DNSError, DNSLabel, DNSRecord

log = logging.getLogger(__name__)

SPOOF_ADDRESS = "6.6.6.6"
DEFAULT_GARBAGE = b"\x00\x00\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"


class Mode(StrEnum):
    NORMAL = "normal"
    SILENT = "silent"
    DELAY = "delay"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TRUNCATE = "truncate"
    GARBAGE = "garbage"
    SPOOF = "spoof"
    FORMERR = "formerr"
    FORMERR_EDNS = "formerr-edns"  # FORMERR (no OPT) to queries with EDNS, else normal


class Received(NamedTuple):
    """One query the fake upstream received."""

    transport: str  # "udp" | "tcp"
    qname: str  # as received (case kept), with the trailing dot
    qtype: int
    port: int  # the sender's source port
    id: int


@dataclass(frozen=True, slots=True)
class Behaviour:
    mode: Mode = Mode.NORMAL
    delay: float = 0.0


def _key(name: str | DNSLabel) -> str:
    text = str(name).lower()
    return text if text.endswith(".") else text + "."


def _qtype(qtype: str | int) -> int:
    return qtype if isinstance(qtype, int) else int(getattr(QTYPE, qtype.upper()))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: FakeUpstream) -> None:
        self._owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._owner._spawn(self._owner._handle_udp(data, addr))

    def error_received(self, exc: Exception) -> None:  # pragma: no cover - loopback noise
        log.debug("fake upstream udp error: %s", exc)


class FakeUpstream:
    """A scripted DNS server on loopback; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", *, soa_zone: str = "example.") -> None:
        if host not in ("127.0.0.1", "::1") and not host.startswith("127."):
            raise ValueError(f"FakeUpstream binds loopback only, not {host!r}")
        self.host = host
        self.soa_zone = _key(soa_zone)
        self.soa_ttl = 300
        self.soa_minimum = 60
        self.auto_truncate = True
        self.spoof_gap = 0.05
        self.garbage_bytes = DEFAULT_GARBAGE
        self.garbage_patch_id = True
        self.queries: list[Received] = []
        self.requests: list[DNSRecord] = []
        self.spoofs_sent = 0
        self._zone: dict[str, list[RR]] = {}
        self._extra: dict[str, list[RR]] = {}
        self._modes: dict[tuple[str | None, str | None], Behaviour] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._spoof_sock: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if not self._port:
            raise RuntimeError("FakeUpstream not started")
        return (self.host, self._port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # Bind UDP first, then TCP on the same port (retry if the TCP port is taken).
        for _ in range(20):
            udp, _proto = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, 0), family=family
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(
                    self._handle_tcp, self.host, port, family=family, reuse_address=True
                )
            except OSError:
                udp.close()
                continue
            self._udp, self._tcp, self._port = udp, tcp, port
            break
        else:  # pragma: no cover
            raise RuntimeError("could not bind a UDP+TCP port pair on loopback")
        spoof_host = "127.0.0.2" if family == socket.AF_INET else self.host
        try:
            spoof, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(spoof_host, 0), family=family
            )
        except OSError:
            spoof, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(self.host, 0), family=family
            )
        self._spoof_sock = spoof

    async def close(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)
        for t in (self._udp, self._spoof_sock):
            if t is not None:
                t.close()
        self._udp = self._spoof_sock = None
        self._tcp = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- scripting ---------------------------------------------------------------------------

    def add(self, name: str, qtype: str, *rdata: str, ttl: int = 300) -> None:
        """Add one RR per rdata string, e.g. ``add("a.example", "A", "192.0.2.1", ttl=60)``."""
        for item in rdata:
            self.add_zone(f"{_key(name)} {ttl} IN {qtype.upper()} {item}")

    def add_zone(self, text: str) -> None:
        """Add records in zone-file syntax (absolute names)."""
        for rr in RR.fromZone(text):
            self._zone.setdefault(_key(rr.rname), []).append(rr)

    def add_extra(self, name: str, text: str) -> None:
        """Append these records (zone syntax) to the ADDITIONAL section of answers for ``name``."""
        self._extra.setdefault(_key(name), []).extend(RR.fromZone(text))

    def big_txt(self, name: str, *, count: int = 40, size: int = 200, ttl: int = 300) -> None:
        for i in range(count):
            body = (f"{i:03d}" + "x" * size)[:size]
            self.add(name, "TXT", f'"{body}"', ttl=ttl)

    def remove(self, name: str) -> None:
        self._zone.pop(_key(name), None)

    def set_mode(
        self,
        mode: Mode | str,
        *,
        name: str | None = None,
        delay: float = 0.0,
        transport: str | None = None,
    ) -> None:
        """Set how to answer ``name`` (or every name); ``delay`` applies before any reply."""
        if transport not in (None, "udp", "tcp"):
            raise ValueError(f"transport must be udp, tcp or None, not {transport!r}")
        key = (_key(name) if name is not None else None, transport)
        self._modes[key] = Behaviour(Mode(mode), delay)

    def reset_modes(self) -> None:
        self._modes.clear()

    def count(self, qname: str | None = None, qtype: str | int | None = None) -> int:
        """How many queries arrived (for ``qname`` case-insensitively, and ``qtype``)."""
        want_name = _key(qname) if qname is not None else None
        want_type = _qtype(qtype) if qtype is not None else None
        return sum(
            1
            for q in self.queries
            if (want_name is None or _key(q.qname) == want_name)
            and (want_type is None or q.qtype == want_type)
        )

    def clear_log(self) -> None:
        self.queries.clear()
        self.requests.clear()

    # -- answering ---------------------------------------------------------------------------

    def _behaviour(self, name: str, transport: str) -> Behaviour:
        for key in ((name, transport), (name, None), (None, transport), (None, None)):
            if key in self._modes:
                return self._modes[key]
        return Behaviour()

    def _lookup(self, name: str) -> list[RR] | None:
        if name in self._zone:
            return self._zone[name]
        labels = name.split(".")
        for i in range(1, len(labels) - 1):
            wild = "*." + ".".join(labels[i:])
            if wild in self._zone:
                return [
                    RR(DNSLabel(name), rr.rtype, rr.rclass, rr.ttl, rr.rdata)
                    for rr in self._zone[wild]
                ]
        return None

    def _soa(self) -> RR:
        zone = self.soa_zone
        return RR.fromZone(
            f"{zone} {self.soa_ttl} IN SOA ns.{zone} hostmaster.{zone} "
            f"1 3600 600 86400 {self.soa_minimum}"
        )[0]

    def answer(self, request: DNSRecord) -> DNSRecord:
        """The normal answer for ``request`` from the zone."""
        reply = request.reply(ra=1, aa=1)
        reply.header.ad = 0
        reply.ar = []
        q = request.q
        qtype = int(q.qtype)
        name = _key(q.qname)
        found = False
        for _ in range(8):  # follow CNAMEs inside the zone
            rrs = self._lookup(name)
            if rrs is None:
                break
            found = True
            matches = [rr for rr in rrs if qtype in (rr.rtype, QTYPE.ANY)]
            if matches:
                for rr in matches:
                    reply.add_answer(rr)
                break
            cnames = [rr for rr in rrs if rr.rtype == QTYPE.CNAME]
            if not cnames:
                break
            reply.add_answer(cnames[0])
            name = _key(cnames[0].rdata.label)
            found = False
        if not reply.rr:
            if not found and not self._zone_has(name):
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
        for rr in self._extra.get(_key(q.qname), []):
            reply.add_ar(rr)
        if _edns(request) is not None:
            reply.add_ar(EDNS0(udp_len=1232))
        return reply

    def _zone_has(self, name: str) -> bool:
        return self._lookup(name) is not None

    def _build(self, request: DNSRecord, behaviour: Behaviour, transport: str) -> bytes | None:
        mode = behaviour.mode
        if mode is Mode.SILENT:
            return None
        if mode is Mode.GARBAGE:
            raw = self.garbage_bytes
            if self.garbage_patch_id and len(raw) >= 2:
                raw = struct.pack("!H", request.header.id) + raw[2:]
            return raw
        if mode is Mode.FORMERR or (mode is Mode.FORMERR_EDNS and _edns(request) is not None):
            reply = request.reply(ra=1)
            reply.ar = []
            reply.header.rcode = RCODE.FORMERR
            return bytes(reply.pack())
        if mode in (Mode.SERVFAIL, Mode.REFUSED):
            reply = request.reply(ra=1)
            reply.ar = []
            reply.header.rcode = RCODE.SERVFAIL if mode is Mode.SERVFAIL else RCODE.REFUSED
            if _edns(request) is not None:
                reply.add_ar(EDNS0(udp_len=1232))
            return bytes(reply.pack())
        reply = self.answer(request)
        if transport == "udp":
            limit = 512
            edns = _edns(request)
            if edns is not None:
                limit = max(512, int(edns.rclass))
            packed = bytes(reply.pack())
            if mode is Mode.TRUNCATE or (self.auto_truncate and len(packed) > limit):
                reply.rr, reply.auth = [], []
                reply.ar = [a for a in reply.ar if a.rtype == QTYPE.OPT]
                reply.header.tc = 1
                return bytes(reply.pack())
            return packed
        return bytes(reply.pack())

    def _forgeries(self, request: DNSRecord) -> list[bytes]:
        """Replies a resolver must reject: wrong ID, wrong qname, QR=0, wrong qtype."""
        out: list[bytes] = []

        def forged() -> DNSRecord:
            # A deep copy: reply() shares the question object with the request.
            r = DNSRecord.parse(request.pack()).reply(ra=1, aa=1)
            r.ar = []
            r.add_answer(RR(request.q.qname, QTYPE.A, CLASS.IN, 300, A(SPOOF_ADDRESS)))
            return r

        r = forged()
        r.header.id = (request.header.id + 1) & 0xFFFF or 1
        out.append(bytes(r.pack()))
        r = forged()
        r.q.qname = DNSLabel("spoofed." + str(request.q.qname))
        out.append(bytes(r.pack()))
        r = forged()
        r.header.qr = 0
        out.append(bytes(r.pack()))
        r = forged()
        r.q.qtype = QTYPE.TXT if request.q.qtype != QTYPE.TXT else QTYPE.A
        out.append(bytes(r.pack()))
        return out

    def _spoof_right(self, request: DNSRecord) -> bytes:
        """Right ID and question, forged answer: only acceptable if it came from our socket."""
        r = request.reply(ra=1, aa=1)
        r.ar = []
        r.add_answer(RR(request.q.qname, QTYPE.A, CLASS.IN, 300, A(SPOOF_ADDRESS)))
        return bytes(r.pack())

    def _record(self, data: bytes, transport: str, port: int) -> DNSRecord | None:
        try:
            request = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, struct.error, UnicodeError):
            self.queries.append(Received(transport, "", 0, port, _id(data)))
            return None
        if not request.questions:
            self.queries.append(Received(transport, "", 0, port, request.header.id))
            return None
        self.queries.append(
            Received(transport, str(request.q.qname), int(request.q.qtype), port, request.header.id)
        )
        self.requests.append(request)
        return request

    async def _handle_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        request = self._record(data, "udp", addr[1])
        if request is None:
            return
        behaviour = self._behaviour(_key(request.q.qname), "udp")
        if behaviour.delay or behaviour.mode is Mode.DELAY:
            await asyncio.sleep(behaviour.delay)
        if behaviour.mode is Mode.SPOOF:
            if self._spoof_sock is not None:
                self._spoof_sock.sendto(self._spoof_right(request), addr)
            udp = self._udp
            for forged in self._forgeries(request):
                if udp is not None:
                    udp.sendto(forged, addr)
            self.spoofs_sent += 5
            await asyncio.sleep(self.spoof_gap)
            behaviour = Behaviour()
        raw = self._build(request, behaviour, "udp")
        if raw is not None and self._udp is not None:
            self._udp.sendto(raw, addr)

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        port = writer.get_extra_info("peername")[1]
        try:
            while True:
                try:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    data = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self._spawn(self._answer_tcp(data, port, writer))
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer_tcp(self, data: bytes, port: int, writer: asyncio.StreamWriter) -> None:
        request = self._record(data, "tcp", port)
        if request is None:
            return
        behaviour = self._behaviour(_key(request.q.qname), "tcp")
        if behaviour.delay or behaviour.mode is Mode.DELAY:
            await asyncio.sleep(behaviour.delay)
        frames: list[bytes] = []
        if behaviour.mode is Mode.SPOOF:
            frames.extend(self._forgeries(request))
            self.spoofs_sent += 4
            behaviour = Behaviour()
        raw = self._build(request, behaviour, "tcp")
        if raw is not None:
            frames.append(raw)
        if frames and not writer.is_closing():
            writer.write(b"".join(struct.pack("!H", len(f)) + f for f in frames))
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _edns(request: DNSRecord) -> RR | None:
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return rr
    return None


def _id(data: bytes) -> int:
    return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0


def zone_names(queries: Iterable[Received]) -> list[str]:
    """The lower-cased qnames of ``queries``, in order (handy in assertions)."""
    return [_key(q.qname) for q in queries]
