"""The answer cache: upstream answers kept as wire bytes, served by patching bytes.

Entries are keyed (lower-case name, qtype, qclass, DO) (RFC 4343) -- never the raw packet, so
EDNS cookies and 0x20 case randomisation still hit. An entry holds the sections after the question
(packed once by dnslib on the miss, compression pointers aimed at the question, which the client's
own question bytes replace with the same length) and the offset of every TTL. A hit joins: the
client's ID, flags, counts, the client's question bytes (its case), the body, TTLs counted down
(patched at most once per second per entry) and the client's OPT if it had one.

What is kept: the CNAME chain from the qname and its final RRset in ANSWER, only the SOA
(plus DNSSEC proofs for DO) in AUTHORITY for negatives, nothing from ADDITIONAL. Negative answers
are cached per RFC 2308 §5 (min(SOA TTL, MINIMUM), at most negative_max_ttl; no SOA -> not
cached). Answers with private/loopback/link-local/ULA addresses become empty NOERROR (DNS
rebinding), cached that way. TTLs are clamped (a high-bit TTL counts as large). Bounded by
entries and bytes, evicted in batches by a CLOCK (second chance) sweep: one-at-a-time eviction
collapsed throughput (STYLE.md). Expired entries are kept for `stale_window` to serve stale
(RFC 8767). All-upstreams-failed is remembered briefly with a capped back-off (RFC 9520).

Block answers are never cached: Enforce sits above the cache, so policy changes need no flush.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

from dnslib import RR, DNSLabel, DNSRecord
from dnslib.label import DNSBuffer

from resolver import wire
from resolver.config import CacheConfig, DnsConfig
from resolver.forward import UpstreamError
from resolver.guard import device_key
from resolver.pipeline import Query, Reply

log = logging.getLogger(__name__)

_COUNTS = struct.Struct(">HHHH")
_TTL = struct.Struct(">I")
MIN_SHARE = 4  # upstream queries a device may always have out, however many devices wait
_OVERHEAD = 200  # rough bytes per entry beyond the body (key, object, dict slot)

Key = tuple[str, int, int, bool]


def is_rebind_address(text: str) -> bool:
    """True for addresses a public name must not resolve to (DNS rebinding), incl. IPv4-mapped."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return is_rebind_packed(ip.packed)


def is_rebind_packed(b: bytes | bytearray | tuple[int, ...]) -> bool:
    """`is_rebind_address` on the 4 or 16 address bytes (dnslib A/AAAA rdata.data)."""
    if len(b) == 16:
        if b[0] == 0xFE and b[1] & 0xC0 == 0x80:  # fe80::/10
            return True
        if b[0] & 0xFE == 0xFC:  # fc00::/7
            return True
        if not any(b[:15]) and b[15] in (0, 1):  # :: and ::1
            return True
        if not any(b[:10]) and b[10] == 0xFF and b[11] == 0xFF:  # ::ffff:a.b.c.d
            b = b[12:16]
        elif b[0] == 0x20 and b[1] == 0x02:  # 2002:a.b.c.d::/48 (6to4)
            b = b[2:6]
        else:
            return False
    if len(b) != 4:
        return False
    first, second = b[0], b[1]
    return (
        first in (0, 10, 127)
        or (first == 100 and 64 <= second <= 127)
        or (first == 169 and second == 254)
        or (first == 172 and 16 <= second <= 31)
        or (first == 192 and second == 168)
    )


@dataclass(slots=True)
class Entry:
    body: bytes  # the sections after the question, no OPT
    ttl_offsets: tuple[int, ...]  # into body
    ttls: tuple[int, ...]  # TTL of each record when stored (clamped)
    counts: tuple[bytes, bytes]  # QD/AN/NS/AR counts without and with our OPT
    rcode: int
    ad: bool
    stored: float  # clock() when stored
    expires: float
    targets: tuple[str, ...]  # canonical CNAME / HTTPS / SVCB targets
    rebind_filtered: bool = False
    hot: bool = False
    tick: int = -1  # elapsed seconds `patched` was made for
    patched: bytes = b""
    size: int = field(default=0)
    # request bytes after the ID -> reply bytes after the ID, for the current tick; made on
    # the first hit (a name asked once never needs one: one container fewer per entry)
    memo: dict[bytes, bytes] | None = None

    def body_at(self, elapsed: int) -> bytes:
        if elapsed == self.tick:
            return self.patched
        if self.memo is not None:
            self.memo.clear()
        buf = bytearray(self.body)
        for off, ttl in zip(self.ttl_offsets, self.ttls, strict=True):
            _TTL.pack_into(buf, off, ttl - elapsed if ttl > elapsed else 0)
        self.patched = bytes(buf)
        self.tick = elapsed
        return self.patched

    def body_with_ttl(self, ttl: int) -> bytes:
        buf = bytearray(self.body)
        for off in self.ttl_offsets:
            _TTL.pack_into(buf, off, ttl)
        return bytes(buf)


_COUNTS_MEMO: dict[tuple[int, int], tuple[bytes, bytes]] = {}


def _counts(an: int, ns: int) -> tuple[bytes, bytes]:
    """An entry's QD/AN/NS/AR counts without and with our OPT, shared by every entry of the
    same shape (a few dozen in practice) rather than three new objects per entry."""
    key = (an, ns)
    hit = _COUNTS_MEMO.get(key)
    if hit is None:
        hit = (_COUNTS.pack(1, an, ns, 0), _COUNTS.pack(1, an, ns, 1))
        if len(_COUNTS_MEMO) < 4096:
            _COUNTS_MEMO[key] = hit
    return hit


_CONFIG = CacheConfig()  # the operator's defaults, stated once in resolver/config.py
_DNS = DnsConfig()


@dataclass(frozen=True, slots=True)
class CacheSettings:
    max_entries: int = _CONFIG.max_entries
    max_bytes: int = _CONFIG.max_bytes
    min_ttl: int = _CONFIG.min_ttl
    max_ttl: int = _CONFIG.max_ttl
    negative_max_ttl: int = _CONFIG.negative_max_ttl
    stale_window: float = _CONFIG.stale_window  # serve expired entries this long past expiry
    stale_ttl: int = 30
    servfail_ttl: float = 2.0  # first back-off after all upstreams failed
    servfail_max_ttl: float = 30.0
    rebind_allow: frozenset[str] = frozenset()  # names (+ subdomains) the rebinding filter spares


class Cache:
    """Stage (enter: hits; leave: store upstream answers) plus the store used by Forward."""

    def __init__(
        self,
        settings: CacheSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = s = settings or CacheSettings()
        self._clock = clock
        self._entries: dict[Key, Entry] = {}
        self._servfail: dict[Key, tuple[float, float]] = {}  # key -> (until, last back-off)
        self._bytes = 0
        self._max_entries = max(s.max_entries, 1)
        self._batch = max(self._max_entries // 16, 1)
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.stale_served = 0
        self.rebind_filtered = 0
        self.generation = 0  # bumped by clear()

    # ------------------------------------------------------------------ stage hooks

    def enter(self, query: Query) -> Reply | None:
        q = query.question
        if query.resolve_name is None:
            key = q.key
        else:
            key = (query.resolve_name, q.qtype, q.qclass, q.key[3])
        entry = self._entries.get(key)
        if entry is None:
            sf = self._servfail.get(key)
            if sf is not None and sf[0] > self._clock():
                return self.servfail(query)
            self.misses += 1
            return None
        now = self._clock()
        if now < entry.expires:
            entry.hot = True
            self.hits += 1
            elapsed = int(now - entry.stored)
            body = entry.patched if elapsed == entry.tick else entry.body_at(elapsed)
            req = query.request
            if query.resolve_labels is None:
                rest = req[2:]
                memo = entry.memo
                tail = memo.get(rest) if memo is not None else None
                if tail is None:
                    tail = self._wire(query, entry, body)[2:]
                    if memo is None:
                        entry.memo = {rest: tail}
                    elif len(memo) < 8:
                        memo[rest] = tail
                data = req[:2] + tail
            else:
                data = self._wire(query, entry, body)
            if query.resolve_labels is None:
                # Replay answers repeats until the entry expires, the TTLs patched from it
                # at each new second
                query.replay_until = entry.expires
                query.replay_entry = entry
            else:  # a rewritten question (safe search): until the TTLs tick
                query.replay_until = min(entry.expires, entry.stored + elapsed + 1)
            return Reply(data, "cache", "cached", entry.targets, None, entry.rcode)
        if now < entry.expires + self.settings.stale_window:
            sf = self._servfail.get(key)
            if sf is not None and sf[0] > now:
                return self.stale_reply(query, entry)
            query.stale = entry
            self.misses += 1
            return None
        self._remove(key)
        self.misses += 1
        return None

    def leave(self, query: Query, reply: Reply) -> Reply:
        record = reply.record
        if record is None or reply.wire is not None:
            return reply
        try:
            entry = self.store(query, record)
        except Exception as e:  # noqa: BLE001 - any upstream oddity: SERVFAIL, keep serving
            log.warning("cannot use upstream answer for %s: %r", query.question.name, e)
            return Reply(
                wire.build_reply(query.question, query.request, rcode=wire.SERVFAIL),
                "error",
                "servfail",
                rcode=wire.SERVFAIL,
            )
        now = self._clock()
        return Reply(
            self._wire(query, entry, entry.body_at(int(now - entry.stored))),
            reply.source,
            reply.outcome,
            entry.targets,
            rcode=entry.rcode,
        )

    # ------------------------------------------------------------------ replies

    def _wire(
        self, query: Query, entry: Entry, body: bytes, *, ede: tuple[int, str] | None = None
    ) -> bytes:
        q = query.question
        req = query.request
        opt = wire.opt_for(q, rcode=entry.rcode, ede=ede)
        flags3 = 0x80 | entry.rcode | (req[3] & 0x10)
        if entry.ad and (q.do or req[3] & 0x20):
            flags3 |= 0x20
        if query.resolve_labels is None:
            question = req[12 : q.end]
        else:
            question = wire.name_to_wire(query.resolve_labels) + req[q.end - 4 : q.end]
        return b"".join(
            (
                req[:2],
                bytes((0x80 | (req[2] & 0x79), flags3)),
                entry.counts[1 if opt else 0],
                question,
                body,
                opt,
            )
        )

    def stale_reply(self, query: Query, entry: Entry) -> Reply:
        """The expired entry with every TTL set to stale_ttl and EDE 3 (RFC 8767, 8914)."""
        self.stale_served += 1
        body = entry.body_with_ttl(self.settings.stale_ttl)
        return Reply(
            self._wire(query, entry, body, ede=(wire.EDE_STALE, "stale answer")),
            "cache",
            "cached",
            entry.targets,
            rcode=entry.rcode,
        )

    def servfail(self, query: Query) -> Reply:
        return Reply(
            wire.build_reply(
                query.question,
                query.request,
                rcode=wire.SERVFAIL,
                ede=(wire.EDE_NO_REACHABLE_AUTHORITY, "upstreams unreachable"),
            ),
            "error",
            "servfail",
            rcode=wire.SERVFAIL,
        )

    # ------------------------------------------------------------------ storing

    def key_of(self, query: Query) -> Key:
        q = query.question
        name = query.resolve_name if query.resolve_name is not None else q.name
        return (name, q.qtype, q.qclass, q.do)

    def note_failure(self, query: Query) -> None:
        """Every upstream failed for this key: answer SERVFAIL locally for a while (RFC 9520)."""
        key = self.key_of(query)
        now = self._clock()
        s = self.settings
        prev = self._servfail.get(key)
        if prev is not None and prev[0] + s.servfail_max_ttl * 2 > now:
            backoff = min(prev[1] * 2, s.servfail_max_ttl)
        else:
            backoff = s.servfail_ttl
        if len(self._servfail) > 10_000:
            self._servfail = {k: v for k, v in self._servfail.items() if v[0] > now}
            if len(self._servfail) > 10_000:
                self._servfail.clear()
        self._servfail[key] = (now + backoff, backoff)

    def store(self, query: Query, record: DNSRecord | wire.AddressAnswer) -> Entry:
        """Build the entry for an upstream answer; keep it when cacheable. Returns it anyway."""
        q = query.question
        labels = query.resolve_labels if query.resolve_labels is not None else q.labels
        name = query.resolve_name if query.resolve_name is not None else q.name
        built: tuple[Entry, int | None] | None = None
        private_ok = query.lan  # the router's answers for LAN names: private addresses are right
        if isinstance(record, wire.AddressAnswer):
            built = self._build_address(record, name, private_ok)
            if built is None:  # a rebinding address: dnslib's path filters it
                record = DNSRecord.parse(record.wire)
        if built is None:
            assert isinstance(record, DNSRecord)
            built = self._build(record, labels, name, q.qtype, q.qclass, q.do, private_ok)
        entry, ttl = built
        key = (name, q.qtype, q.qclass, q.do)
        self._servfail.pop(key, None)
        if ttl is not None and ttl > 0:
            entry.expires = entry.stored + ttl
            self._put(key, entry)
        return entry

    def _put(self, key: Key, entry: Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._entries[key] = entry
        self._bytes += entry.size
        if len(self._entries) > self._max_entries or self._bytes > self.settings.max_bytes:
            self._evict()

    def _remove(self, key: Key) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size

    def _evict(self) -> None:
        """Free a batch (1/16 of the entries) with a CLOCK sweep from the oldest inserted."""
        entries = self._entries
        target = self._max_entries - self._batch
        byte_target = self.settings.max_bytes * 15 // 16
        now = self._clock()
        window = self.settings.stale_window
        for _ in range(3):
            if len(entries) <= target and self._bytes <= byte_target:
                return
            for key in list(islice(entries, 2 * self._batch)):
                if len(entries) <= target and self._bytes <= byte_target:
                    return
                entry = entries[key]
                if entry.hot and entry.expires + window > now:
                    entry.hot = False
                    del entries[key]
                    entries[key] = entry  # second chance: to the young end
                    continue
                del entries[key]
                self._bytes -= entry.size
                self.evictions += 1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self.generation += 1  # answers replayed from the old contents stop at once
        self._entries.clear()
        self._servfail.clear()
        self._bytes = 0

    # ------------------------------------------------------------------ entry building

    def _clamp(self, ttl: int) -> int:
        s = self.settings
        if ttl >= 0x80000000:
            ttl = s.max_ttl
        return min(max(ttl, s.min_ttl), s.max_ttl)

    def _build_address(
        self, answer: wire.AddressAnswer, name: str, private_ok: bool = False
    ) -> tuple[Entry, int | None] | None:
        """The entry for an address answer (wire.address_answer), its bytes kept as they stand:
        what `_build` makes of the same reply, without dnslib. None when an address needs the
        rebinding filter, which `_build` applies."""
        if (
            not private_ok
            and not _allowed(name, self.settings.rebind_allow)
            and any(is_rebind_packed(a) for a in answer.rdata)
        ):
            return None
        msg = answer.wire
        qend = answer.start
        clamp = self._clamp
        ttls = tuple(clamp(t) for t in answer.ttls)
        body = bytearray(msg[qend : answer.end])
        offsets = tuple(off - qend for off in answer.ttl_offsets)
        for off, ttl in zip(offsets, ttls, strict=True):
            _TTL.pack_into(body, off, ttl)
        an = len(ttls)
        now = self._clock()
        entry = Entry(
            body=bytes(body),
            ttl_offsets=offsets,
            ttls=ttls,
            counts=_counts(an, 0),
            rcode=wire.NOERROR,
            ad=answer.ad,
            stored=now,
            expires=now,
            targets=(),
            size=len(body) + len(name) + _OVERHEAD,
        )
        return entry, min(ttls)

    def _build(
        self,
        record: DNSRecord,
        labels: tuple[bytes, ...],
        name: str,
        qtype: int,
        qclass: int,
        do: bool,
        private_ok: bool = False,
    ) -> tuple[Entry, int | None]:
        """(entry, lifetime or None when not cacheable) for an upstream reply."""
        s = self.settings
        rcode = record.header.rcode
        rrs = record.rr
        names = [_canon(rr.rname) for rr in rrs]
        answers: list[RR] = []
        targets: list[str] = []
        current = name
        chain_names = {name}
        # Keep the CNAME chain from the qname, then its final RRset (nothing else is trusted).
        for _ in range(16 if qtype != wire.T_CNAME else 0):
            step = None
            for i, rr in enumerate(rrs):
                if rr.rtype == wire.T_CNAME and names[i] == current:
                    step = rr
                    break
            if step is None:
                break
            answers.append(step)
            current = _canon(step.rdata.label)
            if current in chain_names:
                break
            chain_names.add(current)
            targets.append(current)
        final: list[RR] = []
        for i, rr in enumerate(rrs):
            if names[i] != current:
                continue
            rtype = rr.rtype
            if rtype == qtype or (do and rtype == wire.T_RRSIG):
                answers.append(rr)
                if rtype in (wire.T_A, wire.T_AAAA):
                    final.append(rr)
                elif rtype in (wire.T_HTTPS, wire.T_SVCB):
                    t = _svc_target(rr)
                    if t:
                        targets.append(t)
        if do:
            for i, rr in enumerate(rrs):
                if rr.rtype == wire.T_RRSIG and names[i] != current and names[i] in chain_names:
                    answers.append(rr)
        rebind = False
        if final and not private_ok and not _allowed(name, s.rebind_allow):
            if any(_rebind_rr(rr) for rr in final):
                rebind = True
                self.rebind_filtered += 1
                answers = []
                targets = []
        authority: list[RR] = []
        lifetime: int | None = None
        for rr in answers:  # the record is ours (UpstreamClient.query gives each caller a copy)
            rr.ttl = self._clamp(rr.ttl)
        if rebind:
            lifetime = max(min(self._clamp(rr.ttl) for rr in final), 1)
            rcode = wire.NOERROR
        elif answers and (rcode == wire.NOERROR or any(rr.rtype == qtype for rr in answers)):
            lifetime = min(rr.ttl for rr in answers)
        else:
            soa = next((rr for rr in record.auth if rr.rtype == wire.T_SOA), None)
            if soa is not None:
                minimum = soa.rdata.times[4] if soa.rdata.times else soa.ttl
                neg = min(_sane(soa.ttl), _sane(minimum), s.negative_max_ttl)
                for rr in answers:
                    neg = min(neg, rr.ttl)
                soa.ttl = neg
                authority.append(soa)
                if do:
                    for rr in record.auth:
                        if rr.rtype in (wire.T_RRSIG, 47, 50):
                            rr.ttl = min(self._clamp(rr.ttl), neg)
                            authority.append(rr)
                lifetime = neg
        # pack the kept records after a placeholder header and the question, so dnslib's name
        # compression points into the question as it will stand in every reply
        buf = DNSBuffer(bytes(12))
        buf.offset = 12
        buf.encode_name(DNSLabel(list(labels)))
        buf.pack("!HH", qtype, qclass)
        qend = buf.offset
        for rr in answers:
            rr.pack(buf)
        for rr in authority:
            rr.pack(buf)
        packed = bytes(buf.data)
        an, ns = len(answers), len(authority)
        offsets = wire.rr_ttl_offsets(packed, qend, an + ns)
        body = packed[qend:]
        ttls = tuple(_TTL.unpack_from(packed, off)[0] for off in offsets)
        now = self._clock()
        entry = Entry(
            body=body,
            ttl_offsets=tuple(off - qend for off in offsets),
            ttls=ttls,
            counts=_counts(an, ns),
            rcode=rcode,
            ad=bool(record.header.ad) and not rebind,
            stored=now,
            expires=now,
            targets=tuple(targets),
            rebind_filtered=rebind,
            size=len(body) + len(name) + _OVERHEAD,
        )
        return entry, lifetime


def _rebind_rr(rr: RR) -> bool:
    data = getattr(rr.rdata, "data", None)
    if isinstance(data, tuple | bytes | bytearray) and len(data) in (4, 16):
        return is_rebind_packed(data)
    return is_rebind_address(str(rr.rdata))


def _sane(ttl: int) -> int:
    return 0x7FFFFFFF if ttl >= 0x80000000 else ttl


def _canon(label: DNSLabel) -> str:
    return wire.canonical(label.label)


def _allowed(name: str, names: frozenset[str]) -> bool:
    return bool(names) and wire.within(name, names)


def _svc_target(rr: RR) -> str:
    """The TargetName of an HTTPS/SVCB record ("" for "." = the owner itself)."""
    rd = rr.rdata
    target = getattr(rd, "target", None)
    if target is not None:
        return wire.canonical([bytes(x) for x in target])
    data = getattr(rd, "data", b"")
    if isinstance(data, bytes | bytearray) and len(data) > 2:
        labels = []
        p = 2
        while p < len(data) and data[p] != 0:
            ln = data[p]
            if ln > 63 or p + 1 + ln > len(data):
                return ""
            labels.append(bytes(data[p + 1 : p + 1 + ln]))
            p += 1 + ln
        return wire.canonical(labels)
    return ""


class Upstream(Protocol):
    """What Forward needs (resolver.forward.UpstreamClient)."""

    async def query(
        self, labels: tuple[bytes, ...], qtype: int, qclass: int = 1, *, do: bool = False
    ) -> DNSRecord | wire.AddressAnswer: ...


class Forward:
    """The last stage: ask the upstreams; serve stale when they fail or are slow (RFC 8767).

    With an expired entry at hand (Cache set `query.stale`), the upstream gets
    `serve_stale_after` seconds (RFC 8767 / Unbound: 1.8 s); after that, or when every upstream
    failed, the stale entry is answered and the upstream answer, when it comes, refreshes the
    cache in the background.
    """

    def __init__(
        self,
        upstream: Upstream,
        cache: Cache,
        *,
        serve_stale_after: float = _CONFIG.serve_stale_after,
        max_inflight: int = _DNS.max_inflight,
        router: Upstream | None = None,
    ) -> None:
        self._upstream = upstream
        self._router = router  # LAN names (query.lan, LocalNames) go here, never upstream
        self._cache = cache
        self._stale_after = serve_stale_after
        self._max_inflight = max_inflight
        self._per_client: dict[str, int] = {}
        self._background: set[asyncio.Task[DNSRecord | wire.AddressAnswer]] = set()
        self.overloaded = 0

    async def __call__(self, query: Query) -> Reply:
        """Resolve upstream, each device within its fair share of the in-flight cap (fast
        SERVFAIL beyond it), so devices asking slow names cannot starve the others.

        With n devices waiting on the upstream (this one counted), each may have
        max_inflight // (n + 1) queries out: there is always room for one more device.
        A device is its address, or the MAC a trusted forwarder passed (guard.device_key).
        """
        client = device_key(query)
        per_client = self._per_client
        busy = per_client.get(client, 0)
        devices = len(per_client) + (busy == 0)
        if busy >= max(MIN_SHARE, self._max_inflight // (devices + 1)):
            self.overloaded += 1
            return self._cache.servfail(query)
        per_client[client] = busy + 1
        try:
            return await self._resolve(query)
        finally:
            left = per_client[client] - 1
            if left:
                per_client[client] = left
            else:
                del per_client[client]

    async def _resolve(self, query: Query) -> Reply:
        q = query.question
        labels = query.resolve_labels if query.resolve_labels is not None else q.labels
        upstream = self._router if query.lan and self._router is not None else self._upstream
        coro = upstream.query(labels, q.qtype, q.qclass, do=q.do)
        stale = query.stale
        try:
            if stale is None:
                record = await coro
            else:
                task = asyncio.ensure_future(coro)
                done, _ = await asyncio.wait((task,), timeout=self._stale_after)
                if not done:
                    self._background.add(task)
                    task.add_done_callback(lambda t: self._refreshed(query, t))
                    return self._cache.stale_reply(query, stale)
                record = task.result()
        except UpstreamError as e:
            log.debug("upstream failed for %s: %s", q.name, e)
            self._cache.note_failure(query)
            if stale is not None:
                return self._cache.stale_reply(query, stale)
            return self._cache.servfail(query)
        return Reply(None, "upstream", "answered", record=record)

    def _refreshed(self, query: Query, task: asyncio.Task[DNSRecord | wire.AddressAnswer]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if isinstance(exc, UpstreamError):
                self._cache.note_failure(query)
            else:
                log.warning("background refresh of %s failed: %r", query.question.name, exc)
            return
        try:
            self._cache.store(query, task.result())
        except Exception as e:  # noqa: BLE001 - bad upstream data: keep the stale entry
            log.warning("cannot use upstream answer for %s: %r", query.question.name, e)

    async def close(self) -> None:
        tasks = list(self._background)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
