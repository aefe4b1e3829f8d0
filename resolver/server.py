"""UDP and TCP listeners: read packets, run the pipeline, write replies. Never die.

Per packet (`DnsServer.process`): `wire.parse_query`; short datagrams and responses are dropped
(RFC 1035), malformed ones get FORMERR from the header alone, other opcodes NOTIMP, EDNS versions
above 0 BADVERS (RFC 6891). Then `Pipeline.answer_now` answers at once (cache hits, blocks, local
names) or the server awaits `Pipeline.finish` in a task (the upstream path). Unexpected
exceptions become SERVFAIL plus `log.exception`.

UDP replies are kept within 512 bytes without EDNS and min(client size, 1232) with it; larger
ones go out as TC=1 with only the question (RFC 1035, 6891). TCP (RFC 7766): 2-byte length framing,
pipelined queries answered as each is ready, idle connections closed after `tcp_idle` seconds,
half-sent messages (and connections that never sent a whole query) `tcp_partial` seconds after
their first byte (an absolute deadline: a trickle of one byte at a time does not extend it),
at most `tcp_max_clients` connections, `tcp_max_per_client` of them from one address (except the
trusted forwarders, `trusted_mac_sources`: a router speaks for the whole house), and
`tcp_max_pending` queries in flight per connection (reading pauses beyond).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resolver import wire
from resolver.config import DnsConfig
from resolver.guard import Network, Networks
from resolver.metrics import Metrics
from resolver.pipeline import Pipeline, Query, Reply
from resolver.replay import Replay

try:  # batched UDP receive/send, compiled at install (resolver/_dgram.c); optional
    from resolver import _dgram
except ImportError:  # no C compiler at install time, or not Linux: uvloop's datagram transport
    _dgram = None  # type: ignore[assignment]  # see _BatchedUdp

log = logging.getLogger(__name__)

_QUESTIONS = wire._MEMO

Send = Callable[[bytes], None]
_CONFIG = DnsConfig()  # the operator's defaults, stated once in resolver/config.py

_TRANSFERS = (wire.T_AXFR, wire.T_IXFR)


def _not_served(q: wire.Question) -> int:
    """The rcode for a question a filtering resolver does not serve (0: serve it).

    Zone transfers (AXFR, IXFR) over any transport: nestguard has no zones to hand out, and
    forwarding them would hand a child the upstream's answer; REFUSED, as RFC 1034 section
    4.3.5 allows ("the AXFR may cause an error, such as refused") and RFC 5936 section 4
    leaves AXFR over UDP undefined. Classes: only IN is filtered and answered; CHAOS
    (version.bind and the like) goes through as before. QCLASS ANY (255) and NONE (254) are
    meta values and 0 is reserved (RFC 6895 section 3.2), others (Hesiod, unassigned) are
    not served here: REFUSED rather than IN records under another class.
    """
    if q.qtype in _TRANSFERS:
        return wire.REFUSED
    if q.qclass not in (wire.C_IN, wire.C_CH):
        return wire.REFUSED
    return 0


@dataclass(frozen=True, slots=True)
class ServerSettings:
    tcp_idle: float = _CONFIG.tcp_idle
    tcp_partial: float = 3.0
    tcp_max_clients: int = _CONFIG.tcp_max_clients
    # One device must not hold every TCP slot of the house (slowloris): a share well below
    # tcp_max_clients per source address.
    tcp_max_per_client: int = _CONFIG.tcp_max_per_client
    tcp_max_pending: int = 32
    udp_rcvbuf: int = 4 * 1024 * 1024
    # The GIL switch interval while serving. Background threads (the activity log's SQLite
    # writer, asyncio.to_thread calls) otherwise keep the listener waiting up to CPython's
    # default 5 ms for the GIL whenever they run Python code (measured: mixed-load p99 at
    # 2,000 qps 17 ms with the activity log on, 3 ms with it off). None leaves it alone.
    gil_switch_interval: float | None = 0.0005
    # addresses whose EDNS MAC option (65001, dnsmasq's add-mac) is believed; see DnsConfig
    trusted_mac_sources: tuple[Network, ...] = ()
    # SO_REUSEPORT on the listeners: dns.workers processes bind the same ports and the kernel
    # spreads clients over them (resolver/workers.py)
    reuse_port: bool = False
    # dns.udp_batch: batched UDP (resolver/_dgram.c) where it was compiled
    udp_batch: bool = _CONFIG.udp_batch


def batched_udp_available() -> bool:
    """Whether the compiled batched UDP listener (resolver/_dgram.c) was built here."""
    return _dgram is not None


class DnsServer:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        metrics: Metrics,
        settings: ServerSettings | None = None,
        replay: Replay | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.replay = replay  # repeats of a UDP packet, while they hold (resolver/replay.py)
        self.answer_now = pipeline.answer_now
        self.metrics = metrics
        self.settings = settings or ServerSettings()
        self._mac_sources = Networks(self.settings.trusted_mac_sources)
        self._udp: list[asyncio.DatagramTransport | _BatchedUdp] = []
        self._tcp: list[asyncio.AbstractServer] = []
        self._connections: set[_TcpConnection] = set()
        self._per_client: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.addresses: list[tuple[str, int]] = []

    # ------------------------------------------------------------------ per packet

    def process(self, data: bytes, client_ip: str, transport: str) -> bytes | Query | None:
        """The reply to send now, a Query that needs `finish`, or None (silence)."""
        q = None
        replay = self.replay if transport == "udp" else None
        try:
            if replay is not None:
                out = replay.answer(data, client_ip)
                if out is not None:
                    return out
            q = _QUESTIONS.get(data[2:])  # wire.parse_query's memo, read inline (every query)
            if q is None:
                q = wire.parse_query(data)
            if q.opcode != 0:
                self.metrics.count("notimp", q.qtype)
                return wire.build_reply(q, data, rcode=wire.NOTIMP)
            edns = q.edns
            if edns is not None and edns.version > 0:
                self.metrics.count("formerr", q.qtype)
                return wire.build_reply(q, data, rcode=wire.BADVERS)
            if q.qclass != wire.C_IN or q.qtype in _TRANSFERS:
                if refused := _not_served(q):
                    self.metrics.count("refused", q.qtype)
                    return wire.build_reply(q, data, rcode=refused)
            mac = None
            if edns is not None and edns.mac is not None and client_ip in self._mac_sources:
                mac = edns.mac  # from anyone else the option is ignored: any device can send it
            query = Query(data, q, client_ip, transport, time.monotonic(), mac, mac is not None)
            reply = self.answer_now(query)
            if reply is None:
                return query
            out = reply.wire
            if out is not None and (len(out) <= 512 or transport != "udp"):
                if replay is not None and query.replay_until:
                    replay.keep(query, reply, out)
                return out  # _finalize's common case, inline
            return self._finalize(query, reply)
        except wire.Drop:
            self.metrics.count("malformed", 0)
            return None
        except wire.Malformed:
            self.metrics.count("formerr", 0)
            return wire.formerr(data)
        except Exception:
            log.exception("error answering a query from %s", client_ip)
            return self._servfail(data, q)

    async def finish(self, query: Query) -> bytes | None:
        try:
            reply = await self.pipeline.finish(query)
            return self._finalize(query, reply)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("error answering %s from %s", query.question.name, query.client_ip)
            return self._servfail(query.request, query.question)

    def _finalize(self, query: Query, reply: Reply) -> bytes:
        data = reply.wire
        if data is None:
            data = _from_record(query, reply)
        if query.transport == "udp" and len(data) > 512:
            q = query.question
            if len(data) > wire.udp_limit(q):
                return wire.truncated(q, query.request)
        return data

    def _servfail(self, data: bytes, q: wire.Question | None) -> bytes | None:
        self.metrics.count("servfail", q.qtype if q else 0)
        if q is not None:
            try:
                return wire.build_reply(q, data, rcode=wire.SERVFAIL)
            except Exception:  # noqa: BLE001 - last resort below
                pass
        if len(data) < 12:
            return None
        return wire.header_only(data, wire.SERVFAIL)

    def spawn(self, query: Query, send: Send) -> None:
        task = asyncio.get_running_loop().create_task(self._answer_later(query, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_later(self, query: Query, send: Send) -> None:
        data = await self.finish(query)
        if data is not None:
            send(data)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, listen: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """Bind UDP and TCP on each address (same port; port 0 picks one). Returns them."""
        loop = asyncio.get_running_loop()
        if self.settings.udp_batch and _dgram is None:
            log.info("UDP is read one datagram at a time: resolver/_dgram.c was not compiled "
                     "(install gcc and the Python headers, then `make clean setup`)")
        switch = self.settings.gil_switch_interval
        if switch is not None and sys.getswitchinterval() > switch:
            sys.setswitchinterval(switch)  # process-wide; the DNS listener is the latency path
        for host, port in listen:
            for attempt in range(10):
                reuse = self.settings.reuse_port
                udp_sock = _udp_socket(host, port, self.settings.udp_rcvbuf, reuse)
                bound_port = udp_sock.getsockname()[1]
                try:
                    tcp_sock = _tcp_socket(host, bound_port, reuse)
                except OSError:
                    udp_sock.close()
                    if port == 0 and attempt < 9:
                        continue  # the TCP side of that port is taken: pick another
                    raise
                break
            udp = "udp"
            if self.settings.udp_batch and _dgram is not None:
                self._udp.append(_BatchedUdp(self, udp_sock, loop))
                udp = "udp in batches"
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), sock=udp_sock
                )
                self._udp.append(transport)  # type: ignore[arg-type]
            server = await loop.create_server(
                lambda: _TcpConnection(self), sock=tcp_sock, backlog=256
            )
            self._tcp.append(server)
            self.addresses.append((host, bound_port))
            log.info("listening on %s port %d (%s, tcp)", host, bound_port, udp)
        return list(self.addresses)

    def stop_listening(self) -> None:
        for t in self._udp:
            t.close()
        for s in self._tcp:
            s.close()
        self._udp.clear()
        self._tcp.clear()

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait (bounded) for answers in flight, then cancel the rest and close connections."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in list(self._connections):
            conn.close()

    async def close(self) -> None:
        self.stop_listening()
        await self.drain(0.0)

    @property
    def tcp_clients(self) -> int:
        return len(self._connections)


class _BatchedUdp:
    """A UDP listener read and answered in batches by resolver/_dgram.c.

    The loop calls `_readable` when datagrams wait; `Listener.serve` reads up to 64 with one
    recvmmsg, calls `DnsServer.process` on each and sends the replies that were ready with one
    sendmmsg. An answer that needs the upstream comes back through `_later`: its task sends
    the reply on its own when it is ready. The same replies, the same silence and the same
    checks as `_UdpProtocol`; only the system calls are shared between packets.
    """

    def __init__(
        self, server: DnsServer, sock: socket.socket, loop: asyncio.AbstractEventLoop
    ) -> None:
        assert _dgram is not None
        self._server = server
        self._sock = sock
        self._loop = loop
        self._fd = sock.fileno()
        self._closed = False
        self._listener = _dgram.Listener(self._fd, server.process, self._later)
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            self._listener.serve()
        except OSError as exc:  # e.g. a queued ICMP error; the socket stays open
            log.debug("udp receive error: %s", exc)

    def _later(self, query: Query, address: bytes) -> None:
        listener = self._listener

        def send(reply: bytes) -> None:
            if not self._closed:  # after close the descriptor may belong to another socket
                listener.send(reply, address)

        self._server.spawn(query, send)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        self._sock.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        out = self._server.process(data, addr[0], "udp")  # type: ignore[arg-type]
        if out is None:
            return
        if type(out) is bytes:
            self._transport.sendto(out, addr)  # type: ignore[union-attr]
            return
        transport = self._transport

        def send(reply: bytes) -> None:
            if transport is not None and not transport.is_closing():
                transport.sendto(reply, addr)

        self._server.spawn(out, send)  # type: ignore[arg-type]

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._settings = server.settings
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._pending = 0
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._peer = ""
        self._served = False
        self._partial_since: float | None = None  # when the message now in _buf began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        server = self._server
        settings = self._settings
        if len(server._connections) >= settings.tcp_max_clients:
            log.debug("tcp client cap reached; closing a new connection")
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        ip = peer[0] if peer else ""
        per_client = server._per_client
        held = per_client.get(ip, 0)
        if held >= settings.tcp_max_per_client and ip not in server._mac_sources:
            log.debug("tcp connections from %s at their cap (%d); closing a new one", ip, held)
            transport.close()
            return
        per_client[ip] = held + 1
        server._connections.add(self)
        self._peer = ip
        self._partial_since = time.monotonic()  # the first query is due from the connect
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self._server
        if self in server._connections:
            server._connections.remove(self)
            left = server._per_client.get(self._peer, 1) - 1
            if left > 0:
                server._per_client[self._peer] = left
            else:
                server._per_client.pop(self._peer, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is None:
            return
        # A half-sent message (or a connection that has not sent a whole query yet) must be
        # complete `tcp_partial` seconds after its first byte, however it trickles in
        # (slowloris); one that has been served and sits between messages gets the idle time
        # (RFC 7766 6.2.3).
        settings = self._settings
        since = self._partial_since
        if since is not None:
            delay = max(0.0, since + settings.tcp_partial - time.monotonic())
        else:
            delay = settings.tcp_idle
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._paused or (self._pending and not self._buf):
            # answers still coming (and, if paused, it is us not reading): wait for them
            if self._partial_since is not None:
                self._partial_since = time.monotonic()
            self._arm()
            return
        self.close()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        server = self._server
        complete = False
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            msg = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            self._served = complete = True
            out = server.process(msg, self._peer, "tcp")
            if out is None:
                continue
            if type(out) is bytes:
                self.send(out)
            else:
                self._pending += 1
                server.spawn(out, self._send_pending)  # type: ignore[arg-type]
                if self._pending >= self._settings.tcp_max_pending and not self._paused:
                    self._paused = True
                    if self._transport is not None:
                        self._transport.pause_reading()
        if not buf:
            self._partial_since = None
        elif self._served and (self._partial_since is None or complete):
            self._partial_since = time.monotonic()  # a new message began in this chunk
        self._arm()

    def _send_pending(self, data: bytes) -> None:
        self._pending -= 1
        if self._paused and self._pending < self._settings.tcp_max_pending // 2:
            self._paused = False
            if self._transport is not None:
                with contextlib.suppress(RuntimeError):
                    self._transport.resume_reading()
        self.send(data)

    def send(self, data: bytes) -> None:
        t = self._transport
        if t is not None and not t.is_closing():
            t.write(len(data).to_bytes(2, "big") + data)


def _from_record(query: Query, reply: Reply) -> bytes:
    """Fallback when no Cache stage made wire bytes: pack the record for this client."""
    record = reply.record
    if record is None:
        return wire.build_reply(query.question, query.request, rcode=wire.SERVFAIL)
    if isinstance(record, wire.AddressAnswer):
        from dnslib import DNSRecord  # off the hot path: only without a Cache stage

        record = DNSRecord.parse(record.wire)
    q = query.question
    record.header.id = int.from_bytes(query.request[:2], "big")
    record.ar = [rr for rr in record.ar if rr.rtype != wire.T_OPT]
    packed = bytes(record.pack())
    opt = wire.opt_for(q)
    head = packed[:10] + (len(record.ar) + (1 if opt else 0)).to_bytes(2, "big")
    return head + query.request[12 : q.end] + packed[q.end :] + opt


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _udp_socket(host: str, port: int, rcvbuf: int, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _tcp_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
