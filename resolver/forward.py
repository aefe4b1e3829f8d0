"""Forward cache misses to the upstream resolvers, safely (against spoofing: RFC 5452).

Every upstream query is built here, from the question alone (RD=1, EDNS0 with a 1232-byte UDP
size, DO if asked); the client's bytes are never forwarded and ``DNSRecord.send()`` is never used.

- Each try gets a ``secrets`` ID (1..65535) and a fresh connected UDP socket, so the kernel
  picks a random source port (and drops datagrams from any other address).
- A reply is accepted only from the queried IP:port on that socket with the same ID, QR=1,
  opcode QUERY and the same question (name case-insensitively, type, class). Anything else is
  dropped, counted as ``spoof`` and the try keeps waiting until its timeout.
- TC=1 retries the same upstream over TCP. FORMERR to our OPT record asks the same upstream again
  without EDNS (RFC 6891 section 7) and remembers that it needs this (old routers' DNS proxies).
- Identical in-flight questions (lower-cased name, type, class, DO) share one upstream query.
- At most ``max_inflight`` upstream resolutions at once; beyond that ``query`` fails fast.
- Timing (as Unbound, which answers or gives up within ``discard-timeout`` 1.9 s):
  ``timeout`` (default 2 s) bounds the whole resolution, not a single try. The first pass gives
  each upstream one try of at most ``attempt_timeout`` (default min(timeout, 0.7 s)), so with A
  silent and B fine the answer arrives after ~0.7 s, well inside a client's 1.5 s patience. Time
  left after the first pass is shared among upstreams that timed out (a retransmission with a new
  ID and port). SERVFAIL, REFUSED, garbage or a socket error move on to the next upstream at once.
  When every upstream failed, :class:`UpstreamError` is raised by ``timeout`` at the latest.
- Dead upstreams: one that timed out, refused, sent garbage or errored is put last in the order
  for 5 s, doubling up to 60 s while it keeps failing. When its time is up it is re-probed in the
  background with a copy of a real query (at most one probe per upstream at a time), so no
  client waits on a dead first upstream; a good answer puts it back in its configured place.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import secrets
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeAlias

from dnslib import EDNS0, DNSError, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from dnslib.bimap import BimapError
from dnslib.buffer import BufferError
from dnslib.label import DNSLabelError
from prometheus_client import Counter, Histogram

from resolver.config import DnsConfig
from resolver.wire import AddressAnswer, address_answer, name_to_wire

log = logging.getLogger(__name__)
_DNS = DnsConfig()  # the operator's defaults, stated once in resolver/config.py

EDNS_UDP_SIZE = 1232
ATTEMPT_TIMEOUT = 0.7
DEAD_MIN = 5.0
DEAD_MAX = 60.0
QUIET = 60.0  # good answers for this long before "answers again" is logged

# What dnslib raises on bad bytes (it is lenient and not all of these derive from DNSError).
_DNSLIB_ERRORS: tuple[type[Exception], ...] = (
    DNSError,
    DNSLabelError,
    BufferError,
    BimapError,
    ValueError,
    IndexError,
    KeyError,
    struct.error,
    UnicodeError,
)

_NAME_ATTRS = ("label", "mname", "rname", "target", "mbox", "txt", "replacement")
_RCODE_FORMERR = 1
_RCODE_SERVFAIL = 2
_RCODE_REFUSED = 5
_OK_RCODES = (0, 3)  # NOERROR, NXDOMAIN

UPSTREAM_QUERIES = Counter(
    "nestguard_upstream_queries_total", "Queries sent to an upstream (each try)", ["upstream"]
)
UPSTREAM_ERRORS = Counter(
    "nestguard_upstream_errors_total",
    "Upstream failures and dropped replies by kind "
    "(timeout, servfail, refused, garbage, spoof, network)",
    ["upstream", "kind"],
)
UPSTREAM_DURATION = Histogram(
    "nestguard_upstream_duration_seconds",
    "Time from sending a try to its accepted reply (timeouts are counted as errors instead)",
    ["upstream"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
)
UPSTREAM_OVERLOAD = Counter(
    "nestguard_upstream_overload_total",
    "Queries refused because max_inflight upstream resolutions were already running",
)


_Key = tuple[tuple[bytes, ...], int, int, bool]  # lower-cased labels, qtype, qclass, DO
# what an upstream answered: dnslib's parse, or the commonest shape read without it
Answer: TypeAlias = DNSRecord | AddressAnswer
_Reply = tuple[bytes, Answer]  # the validated wire bytes and their reading


_IDS: list[int] = []


def _new_id() -> int:
    """A query ID from `secrets` (1..65535, never 0, uniform: 0 is skipped, not mapped).

    Drawn from a pool refilled 1024 bytes at a time: `secrets.randbelow` per query cost a
    getrandom() call each (~4% of a miss's CPU); the bytes come from the same CSPRNG.
    """
    if not _IDS:
        raw = secrets.token_bytes(1024)
        _IDS.extend(i for i in struct.unpack(">512H", raw) if i)
        if not _IDS:  # pragma: no cover - 512 zero IDs in a row
            return secrets.randbelow(0xFFFF) + 1
    return _IDS.pop()


class UpstreamError(Exception):
    """No upstream gave a usable answer (or too many queries are in flight)."""


class _TryFailed(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}{': ' + detail if detail else ''}")
        self.kind = kind


class _Spoof(Exception):
    """A datagram that is not the reply to our query: drop it and keep waiting."""


@dataclass(slots=True)
class _Upstream:
    host: str
    port: int
    label: str
    rank: int
    family: socket.AddressFamily
    edns: bool = True  # False once it answered FORMERR to EDNS and fine without
    dead_until: float = 0.0  # loop time; 0 = healthy
    backoff: float = 0.0
    probing: bool = False
    # the state parents/operators see in the log: "down" is told once, "answers again" once
    # it has answered for QUIET seconds (an upstream failing every other query must not log
    # a warning per query)
    reported_down: bool = False
    failures: int = 0  # tries failed since reported down
    up_since: float = 0.0  # loop time of the first good answer after failing
    metric: str = ""  # its label on the metrics: "upstream0" (never its address)
    queries: Any = None  # the labelled prometheus children (labels() per try cost ~2 us)
    duration: Any = None

    def __post_init__(self) -> None:
        self.metric = self.metric or f"upstream{self.rank}"
        self.queries = UPSTREAM_QUERIES.labels(self.metric)
        self.duration = UPSTREAM_DURATION.labels(self.metric)


@dataclass(frozen=True, slots=True)
class _Question:
    labels: tuple[bytes, ...]  # lower-cased
    qtype: int
    qclass: int
    section: bytes = b""  # as sent: the lower-cased name, type, class (b"": not known)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_DGRAM_NONBLOCK = socket.SOCK_DGRAM | socket.SOCK_NONBLOCK


def _expire(result: asyncio.Future[Any]) -> None:
    """The try's time is up (a timer per try, lighter than asyncio.timeout())."""
    if not result.done():
        result.set_exception(TimeoutError())


def _rcode(answer: Answer) -> int:
    return answer.rcode if isinstance(answer, AddressAnswer) else answer.header.rcode


def _validate(data: bytes, qid: int, question: _Question) -> DNSRecord:
    """The reply if ``data`` answers our query; _Spoof if it is not ours; _TryFailed if garbage."""
    if len(data) < 12:
        raise _Spoof("short")
    rid, flags = struct.unpack_from("!HH", data)
    if rid != qid:
        raise _Spoof("id")
    if not flags & 0x8000:
        raise _Spoof("qr=0")
    if (flags >> 11) & 0xF != 0:
        raise _Spoof("opcode")
    try:
        record = DNSRecord.parse(data)
    except _DNSLIB_ERRORS as e:
        raise _TryFailed("garbage", f"unparsable reply ({e})") from e
    if not _names_fit(record):
        raise _TryFailed("garbage", "a name in the reply is too long")
    if len(record.questions) != 1:
        raise _Spoof("qdcount")
    q = record.questions[0]
    if (
        tuple(label.lower() for label in q.qname.label) != question.labels
        or q.qtype != question.qtype
        or q.qclass != question.qclass
    ):
        raise _Spoof("question")
    return record


@functools.lru_cache(maxsize=128)
def _template(qtype: int, qclass: int, do: bool) -> tuple[bytes, bytes]:
    """(header, bytes after the qname) of a query for the root name, built by dnslib."""
    record = DNSRecord(DNSHeader(id=0, rd=1), q=DNSQuestion(DNSLabel(()), qtype, qclass))
    record.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE, flags="do" if do else ""))
    packed = bytes(record.pack())
    return packed[:12], packed[13:]  # the root name is the single byte at offset 12


def _without_edns(wire: bytes) -> bytes:
    """The query without its OPT record (the last 11 bytes: root name, type, class, TTL, 0)."""
    if wire[10:12] != b"\x00\x01":
        return wire
    return wire[:10] + b"\x00\x00" + wire[12:-11]


def _names_fit(record: DNSRecord) -> bool:
    """Whether every name in the record packs again (labels <= 63, names <= 255 octets).

    dnslib parses over-long labels from the wire and fails only when packing; this walks the
    names instead of packing the whole record (which cost as much as parsing it)."""
    names: list[DNSLabel] = [q.qname for q in record.questions]
    for rr in itertools.chain(record.rr, record.auth, record.ar):
        names.append(rr.rname)
        for attr in _NAME_ATTRS:
            value = getattr(rr.rdata, attr, None)
            if isinstance(value, DNSLabel):
                names.append(value)
    for name in names:
        labels = name.label
        if sum(len(label) + 1 for label in labels) + 1 > 255:
            return False
        if any(len(label) > 63 for label in labels):
            return False
    return True


def _same_peer(addr: tuple[str | int, ...], peer: tuple[str, int]) -> bool:
    # IPv6 addresses may come back in another spelling or with a scope; compare packed forms.
    try:
        family = socket.AF_INET6 if ":" in str(addr[0]) else socket.AF_INET
        return (
            socket.inet_pton(family, str(addr[0]).split("%")[0])
            == socket.inet_pton(family, peer[0].split("%")[0])
            and addr[1] == peer[1]
        )
    except OSError:
        return False


class UpstreamClient:
    """Resolves questions through the configured upstreams; see the module docstring."""

    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        *,
        timeout: float = _DNS.timeout,
        max_inflight: int = _DNS.max_inflight,
        attempt_timeout: float | None = None,
        metric_name: str = "upstream",
    ) -> None:
        """metric_name: the upstreams' label on the metrics is it plus their index
        ("upstream0", "router0"), never their address."""
        if not upstreams:
            raise ValueError("UpstreamClient needs at least one upstream")
        if timeout <= 0 or max_inflight < 1:
            raise ValueError("timeout must be > 0 and max_inflight >= 1")
        self._upstreams = [
            _Upstream(
                host, port, _label(host, port), rank, _family(host), metric=f"{metric_name}{rank}"
            )
            for rank, (host, port) in enumerate(upstreams)
        ]
        self._timeout = timeout
        self._attempt = min(timeout, attempt_timeout or ATTEMPT_TIMEOUT)
        self._max_inflight = max_inflight
        self._inflight: dict[_Key, asyncio.Task[_Reply]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True
        self._closed = False
        log.info("forwarding to %s", ", ".join(u.label for u in self._upstreams))

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._inflight.values()) + list(self._background)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._background.clear()

    async def __aenter__(self) -> UpstreamClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def inflight(self) -> int:
        """Upstream resolutions running now (coalesced queries count once)."""
        return len(self._inflight)

    # -- the query ---------------------------------------------------------------------------

    async def query(
        self, labels: tuple[bytes, ...], qtype: int, qclass: int = 1, *, do: bool = False
    ) -> Answer:
        """The upstream's answer (rcode NOERROR or NXDOMAIN) to this question: dnslib's parse,
        or for the commonest shape (addresses for the name asked) an `AddressAnswer`.

        Raises UpstreamError when every upstream failed within ``timeout`` or when
        ``max_inflight`` resolutions are already running. Coalesced callers each get their own
        dnslib record (the cache changes it); an AddressAnswer is immutable and shared.
        """
        if self._closed:
            raise UpstreamError("forwarder is closed")
        lowered = tuple(label.lower() for label in labels)
        key = (lowered, qtype, qclass, do)
        task = self._inflight.get(key)
        if task is not None:
            data, shared = await asyncio.shield(task)
            if isinstance(shared, AddressAnswer):
                return shared  # immutable
            try:
                return DNSRecord.parse(data)  # a private copy for each joiner
            except _DNSLIB_ERRORS as e:  # pragma: no cover - parsed once already
                raise UpstreamError(f"cannot parse the shared reply: {e}") from e
        if len(self._inflight) >= self._max_inflight:
            UPSTREAM_OVERLOAD.inc()
            raise UpstreamError(f"{self._max_inflight} upstream queries already in flight")
        wire = self._build(labels, qtype, qclass, do)
        question = _Question(
            lowered, qtype, qclass, name_to_wire(lowered) + struct.pack("!HH", qtype, qclass)
        )
        task = asyncio.get_running_loop().create_task(self._resolve(wire, question))
        self._inflight[key] = task
        task.add_done_callback(lambda _t: self._forget(key, task))
        _data, record = await asyncio.shield(task)
        return record

    def _forget(self, key: _Key, task: object) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if isinstance(task, asyncio.Task) and not task.cancelled():
            task.exception()  # retrieved here so joiners that went away cause no warning

    @staticmethod
    def _build(labels: tuple[bytes, ...], qtype: int, qclass: int, do: bool) -> bytes:
        """The query with ID 0: the name's wire form (labels of 1-63 bytes, 255 in all), then
        the header, question tail and OPT from a template dnslib built once per (qtype, qclass,
        DO) -- a full DNSRecord.pack() per miss cost ~10x more."""
        name = name_to_wire(labels)
        if len(name) > 255 or not all(0 < len(label) <= 63 for label in labels):
            raise UpstreamError(f"cannot build a query for {labels!r}: not a valid name")
        header, tail = _template(qtype, qclass, do)
        return header + name + tail

    def _order(self) -> list[_Upstream]:
        """Healthy upstreams in configured order, then failed ones, the longest-dead last."""
        healthy = [u for u in self._upstreams if not u.backoff]
        failed = sorted((u for u in self._upstreams if u.backoff), key=lambda u: u.dead_until)
        return healthy + failed

    async def _resolve(self, wire: bytes, question: _Question) -> _Reply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        self._probe_due(wire, question, loop.time())
        failures: list[str] = []
        timed_out: list[_Upstream] = []
        for upstream in self._order():
            remaining = deadline - loop.time()
            if remaining <= 0.005:
                break
            try:
                return await self._try(upstream, wire, question, min(self._attempt, remaining))
            except _TryFailed as e:
                failures.append(f"{upstream.label} {e}")
                if e.kind == "timeout":
                    timed_out.append(upstream)
        while timed_out:
            remaining = deadline - loop.time()
            if remaining <= 0.05:
                break
            upstream = timed_out.pop(0)
            try:
                return await self._try(upstream, wire, question, remaining / (len(timed_out) + 1))
            except _TryFailed as e:
                failures.append(f"{upstream.label} {e}")
        raise UpstreamError("no upstream answered: " + "; ".join(failures))

    def _probe_due(self, wire: bytes, question: _Question, now: float) -> None:
        """Re-probe dead upstreams whose back-off is over, in the background."""
        for upstream in self._upstreams:
            if upstream.backoff and upstream.dead_until <= now and not upstream.probing:
                if all(u.backoff for u in self._upstreams):
                    return  # everyone is dead: the query itself tries them all
                upstream.probing = True
                task = asyncio.get_running_loop().create_task(self._probe(upstream, wire, question))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _probe(self, upstream: _Upstream, wire: bytes, question: _Question) -> None:
        try:
            await self._try(upstream, wire, question, self._attempt)
        except _TryFailed as e:
            log.debug("re-probe of %s failed: %s", upstream.label, e)
        finally:
            upstream.probing = False

    async def _try(
        self, upstream: _Upstream, wire: bytes, question: _Question, timeout: float
    ) -> _Reply:
        """One try against one upstream (UDP, then TCP on TC=1). Raises _TryFailed."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            if not upstream.edns:
                wire = _without_edns(wire)
            reply = await self._exchange(upstream, wire, question, timeout)
            if _rcode(reply[1]) == _RCODE_FORMERR and upstream.edns:
                # RFC 6891 section 7: a server that does not know OPT answers FORMERR; ask
                # again without it, and keep asking that upstream without it.
                remaining = timeout - (loop.time() - started)
                if remaining > 0.05:
                    plain = await self._exchange(upstream, _without_edns(wire), question, remaining)
                    if _rcode(plain[1]) != _RCODE_FORMERR:
                        upstream.edns = False
                        log.warning("upstream %s rejects EDNS; asking it without", upstream.label)
                        reply = plain
        except _TryFailed as e:
            self._count_error(upstream, e.kind)
            if e.kind != "servfail":
                self._mark_dead(upstream, loop.time())
            raise
        rcode = _rcode(reply[1])
        if rcode not in _OK_RCODES:
            kind = "refused" if rcode == _RCODE_REFUSED else "servfail"
            self._count_error(upstream, kind)
            if kind == "refused":
                self._mark_dead(upstream, loop.time())
            raise _TryFailed(kind, f"rcode {rcode}")
        now = loop.time()
        upstream.duration.observe(now - started)
        if upstream.reported_down:
            if not upstream.up_since:
                upstream.up_since = now
            elif now - upstream.up_since >= QUIET:
                log.info("upstream %s answers again (%d failed tries meanwhile)",
                         upstream.label, upstream.failures)
                upstream.reported_down, upstream.failures, upstream.up_since = False, 0, 0.0
        upstream.dead_until = 0.0
        upstream.backoff = 0.0
        return reply

    async def _exchange(
        self, upstream: _Upstream, wire: bytes, question: _Question, timeout: float
    ) -> _Reply:
        """UDP, then TCP if the UDP reply was truncated."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await self._udp(upstream, wire, question, timeout)
        if reply is None:
            remaining = max(timeout - (loop.time() - started), self._attempt / 2)
            reply = await self._tcp(upstream, wire, question, remaining)
        return reply

    def _mark_dead(self, upstream: _Upstream, now: float) -> None:
        upstream.backoff = min(DEAD_MAX, upstream.backoff * 2) if upstream.backoff else DEAD_MIN
        upstream.dead_until = now + upstream.backoff
        upstream.up_since = 0.0
        if upstream.reported_down:
            upstream.failures += 1
            log.debug("upstream %s failed again", upstream.label)
            return
        upstream.reported_down, upstream.failures = True, 1
        log.warning(
            "upstream %s failed; trying it last for %.0f s, and after other upstreams "
            "while it keeps failing", upstream.label, upstream.backoff
        )

    def _count_error(self, upstream: _Upstream, kind: str) -> None:
        UPSTREAM_ERRORS.labels(upstream.metric, kind).inc()

    @staticmethod
    def _with_id(wire: bytes) -> tuple[int, bytes]:
        qid = _new_id()
        return qid, qid.to_bytes(2, "big") + wire[2:]

    async def _udp(
        self, upstream: _Upstream, wire: bytes, question: _Question, timeout: float
    ) -> _Reply | None:
        """The validated reply, or None when it was truncated.

        A plain non-blocking socket with add_reader: a fresh socket (new port) per try is the point,
        and an asyncio datagram transport per try cost 3-5x more CPU than this.
        """
        loop = asyncio.get_running_loop()
        qid, packet = self._with_id(wire)
        upstream.queries.inc()
        result: asyncio.Future[tuple[bytes, Answer | None]] = loop.create_future()
        fd = -1
        try:
            # the C socket type, non-blocking from the start: socket.socket's Python wrapper
            # and a setblocking() call cost a few us per miss
            sock = socket.SocketType(upstream.family, _DGRAM_NONBLOCK)
        except OSError as e:
            raise _TryFailed("network", str(e)) from e
        expiry = None
        try:
            sock.connect((upstream.host, upstream.port))  # the kernel picks a random port
            sock.send(packet)
            fd = sock.fileno()
            loop.add_reader(fd, self._readable, sock, result, upstream, qid, question)
            expiry = loop.call_later(timeout, _expire, result)
            try:
                data, record = await result
            except TimeoutError as e:
                raise _TryFailed("timeout", f"no reply in {timeout:.2f} s") from e
            return None if record is None else (data, record)
        except OSError as e:
            raise _TryFailed("network", str(e)) from e
        finally:
            if expiry is not None:
                expiry.cancel()
            if fd >= 0:
                loop.remove_reader(fd)
            sock.close()

    def _readable(
        self,
        sock: socket.SocketType,
        result: asyncio.Future[tuple[bytes, Answer | None]],
        upstream: _Upstream,
        qid: int,
        question: _Question,
    ) -> None:
        """Read every queued datagram; settle ``result`` on the first that answers (same
        address, ID and question)."""
        while not result.done():
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. ECONNREFUSED from an ICMP port unreachable
                result.set_exception(_TryFailed("network", str(e)))
                return
            peer = (upstream.host, upstream.port)
            if (addr[0], addr[1]) != peer and not _same_peer(addr, peer):
                self._count_error(upstream, "spoof")  # the connected socket should prevent it
                continue
            if len(data) >= 12 and struct.unpack_from("!H", data)[0] == qid:
                flags = struct.unpack_from("!H", data, 2)[0]
                if flags & 0x8000 and (flags >> 11) & 0xF == 0:
                    if flags & 0x0200:
                        result.set_result((data, None))  # TC=1: the caller retries over TCP
                        return
                    # the commonest reply (addresses for the name asked): no dnslib, ~0.1 ms
                    # less per miss; anything else is parsed and checked below
                    fast = address_answer(data, question.section) if question.section else None
                    if fast is not None:
                        result.set_result((data, fast))
                        return
            try:
                record = _validate(data, qid, question)
            except _Spoof:
                self._count_error(upstream, "spoof")
                continue
            except _TryFailed as e:
                result.set_exception(e)
                return
            result.set_result((data, record))

    async def _tcp(
        self, upstream: _Upstream, wire: bytes, question: _Question, timeout: float
    ) -> _Reply:
        qid, packet = self._with_id(wire)
        upstream.queries.inc()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
                writer.write(struct.pack("!H", len(packet)) + packet)
                await writer.drain()
                while True:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    data = await reader.readexactly(size)
                    try:
                        return data, _validate(data, qid, question)
                    except _Spoof:
                        self._count_error(upstream, "spoof")
        except TimeoutError as e:
            raise _TryFailed("timeout", f"no TCP reply in {timeout:.2f} s") from e
        except asyncio.IncompleteReadError as e:
            raise _TryFailed("garbage", "TCP stream ended early") from e
        except OSError as e:
            raise _TryFailed("network", f"TCP: {e}") from e
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
