"""The hot-path DNS wire reader and the small reply builders (no dnslib per query).

`parse_query(data)` reads a query straight from the packet bytes: header, the one question (qname
labels as bytes for forwarding and its canonical name for policy, see `policy.model`), and the
EDNS OPT record. It raises `Drop` for packets that get silence (< 12 bytes, QR=1) and `Malformed`
for ones that get FORMERR built from the header alone (`formerr`).

`build_reply` makes every locally made answer: the client's ID, question bytes (same case), RD
and CD echoed, RA=1, AA=0, an OPT iff the query had one (advertising 1232, unknown options never
echoed, optionally an Extended DNS Error, RFC 8914). dnslib stays in use off the hot path: on
cache misses, to build cache entries, for rewrites.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from policy.memo import Memo

# RCODEs
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16

# Types and classes used here
T_A = 1
T_NS = 2
T_CNAME = 5
T_SOA = 6
T_HINFO = 13
T_AAAA = 28
T_OPT = 41
T_RRSIG = 46
T_SVCB = 64
T_HTTPS = 65
T_IXFR = 251
T_AXFR = 252
T_ANY = 255
C_IN = 1
C_CH = 3

# EDE info codes (RFC 8914)
EDE_STALE = 3
EDE_BLOCKED = 15
EDE_CENSORED = 16
EDE_FILTERED = 17
EDE_PROHIBITED = 18
EDE_NO_REACHABLE_AUTHORITY = 22

EDNS_SIZE = 1232  # advertised and the cap for UDP replies (as Unbound, dnsmasq 2.90)
MAC_OPTION = 65001  # dnsmasq --add-mac

_HEADER = struct.Struct(">HHHHHH")
_FLAGS_COUNTS = struct.Struct(">HHHHH")
_U16 = struct.Struct(">H")
_RR_FIXED = struct.Struct(">HHIH")  # type, class, ttl, rdlength

# bytes allowed unescaped in a canonical label (after lower-casing)
_SAFE = b"abcdefghijklmnopqrstuvwxyz0123456789_-"


class Drop(Exception):
    """The packet gets no answer at all (too short to hold a header, or a response)."""


class Malformed(Exception):
    """The packet gets FORMERR (built from its header alone)."""


@dataclass(slots=True)
class Edns:
    version: int
    udp_size: int  # as sent by the client (already raised to 512 when smaller)
    do: bool
    options: tuple[tuple[int, bytes], ...] = ()
    mac: str | None = None  # from option 65001, lower-case colon form


@dataclass(slots=True)
class Question:
    """What the hot path needs from a query, read from the packet without dnslib.

    Treat as immutable: `parse_query` memoises it by the packet bytes after the ID, so several
    queries may share one. The ID is always taken from the request bytes (`request[:2]`).
    """

    flags: int
    opcode: int
    labels: tuple[bytes, ...]  # lower-cased wire labels (for forwarding)
    name: str  # canonical name (policy.model docstring), "" for the root
    qtype: int
    qclass: int
    end: int  # offset just after the question (qname + qtype + qclass)
    edns: Edns | None = None
    edns_count: int = 0
    key: tuple[str, int, int, bool] = ("", 0, 0, False)  # the cache key (lower-case name: RFC 4343)

    @property
    def do(self) -> bool:
        return self.edns is not None and self.edns.do


def canonical(labels: tuple[bytes, ...] | list[bytes]) -> str:
    """Canonical text of wire labels: lower-case, '.'-joined, other bytes as \\DDD."""
    low = [lab.lower() for lab in labels]
    joined = b"".join(low)
    if not joined.translate(None, _SAFE):
        return b".".join(low).decode("ascii")
    return ".".join(_escape(lab) for lab in low)


def _escape(label: bytes) -> str:
    out = []
    for b in label:
        if b in _SAFE:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def within(name: str, domains: frozenset[str]) -> bool:
    """Whether a canonical name is one of `domains` or below one of them."""
    while True:
        if name in domains:
            return True
        dot = name.find(".")
        if dot < 0:
            return False
        name = name[dot + 1 :]


def name_to_wire(labels: tuple[bytes, ...] | list[bytes]) -> bytes:
    return b"".join(bytes((len(lab),)) + lab for lab in labels) + b"\x00"


def labels_of(name: str) -> tuple[bytes, ...]:
    """Wire labels of a canonical name (inverse of `canonical`, \\DDD unescaped)."""
    if not name or name == ".":
        return ()
    out: list[bytes] = []
    cur = bytearray()
    i = 0
    text = name.rstrip(".")
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
            cur.append(int(text[i + 1 : i + 4]))
            i += 4
            continue
        if ch == ".":
            out.append(bytes(cur))
            cur = bytearray()
        else:
            cur += ch.encode("ascii")
        i += 1
    out.append(bytes(cur))
    return tuple(out)


_MEMO: Memo[bytes, Question] = Memo(8192)


def parse_query(data: bytes) -> Question:
    """Read a query's header, question and EDNS. Raises Drop or Malformed.

    Memoised by the bytes after the ID (clients repeat queries byte for byte); bounded.
    """
    q = _MEMO.get(data[2:])
    if q is not None:
        return q
    q = _parse(data)
    if len(data) <= 512:
        _MEMO.put(data[2:], q)
    return q


def _parse(data: bytes) -> Question:
    n = len(data)
    if n < 12:
        raise Drop("short")
    _qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data, 0)
    if flags & 0x8000:
        raise Drop("response")
    if qdcount != 1:
        raise Malformed("qdcount")
    # qname: no compression allowed in the question (nothing before it to point to)
    p = 12
    labels = []
    while True:
        if p >= n:
            raise Malformed("truncated qname")
        ln = data[p]
        if ln == 0:
            p += 1
            break
        if ln > 63:
            raise Malformed("pointer or bad label in question")
        end = p + 1 + ln
        if end > n:
            raise Malformed("truncated label")
        labels.append(data[p + 1 : end])
        p = end
        if p - 12 > 254:
            raise Malformed("name too long")
    if p + 4 > n:
        raise Malformed("truncated question")
    qtype = (data[p] << 8) | data[p + 1]
    qclass = (data[p + 2] << 8) | data[p + 3]
    qend = p + 4
    if labels:
        labels_t = tuple([lab.lower() for lab in labels])
        joined = b"".join(labels_t)
        if not joined.translate(None, _SAFE):
            name = b".".join(labels_t).decode("ascii")
        else:
            name = ".".join([_escape(lab) for lab in labels_t])
    else:
        labels_t = ()
        name = ""
    q = Question(
        flags=flags,
        opcode=(flags >> 11) & 0xF,
        labels=labels_t,
        name=name,
        qtype=qtype,
        qclass=qclass,
        end=qend,
    )
    rest = ancount + nscount + arcount
    if rest:
        _read_records(data, qend, ancount + nscount, arcount, q)
    q.key = (name, qtype, qclass, q.edns is not None and q.edns.do)
    return q


def _skip_name(data: bytes, p: int) -> int:
    """Offset just after a (possibly compressed) name starting at p."""
    n = len(data)
    total = 0
    while True:
        if p >= n:
            raise Malformed("truncated name")
        ln = data[p]
        if ln == 0:
            return p + 1
        top = ln & 0xC0
        if top == 0xC0:
            if p + 2 > n:
                raise Malformed("truncated pointer")
            target = ((ln & 0x3F) << 8) | data[p + 1]
            if target >= p or target < 12:
                raise Malformed("bad pointer")
            return p + 2
        if top:
            raise Malformed("bad label type")
        total += ln + 1
        if total > 255:
            raise Malformed("name too long")
        p += 1 + ln


def _read_records(data: bytes, p: int, skip: int, arcount: int, q: Question) -> None:
    n = len(data)
    for i in range(skip + arcount):
        start = p
        p = _skip_name(data, p)
        if p + 10 > n:
            raise Malformed("truncated record")
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, p)
        p += 10
        rd_end = p + rdlen
        if rd_end > n:
            raise Malformed("truncated rdata")
        if rtype == T_OPT and i >= skip:
            q.edns_count += 1
            if q.edns_count > 1:
                raise Malformed("two OPT records")
            if data[start] != 0:
                raise Malformed("OPT owner not root")
            q.edns = _read_opt(data, p, rd_end, rclass, ttl)
        p = rd_end


def _read_opt(data: bytes, p: int, end: int, rclass: int, ttl: int) -> Edns:
    options = []
    mac = None
    while p < end:
        if p + 4 > end:
            raise Malformed("truncated EDNS option")
        code, ln = struct.unpack_from(">HH", data, p)
        p += 4
        if p + ln > end:
            raise Malformed("truncated EDNS option")
        value = data[p : p + ln]
        p += ln
        options.append((code, value))
        if code == MAC_OPTION:
            mac = decode_mac(value)
    return Edns(
        version=(ttl >> 16) & 0xFF,
        udp_size=max(rclass, 512),
        do=bool(ttl & 0x8000),
        options=tuple(options),
        mac=mac,
    )


def decode_mac(value: bytes) -> str | None:
    """MAC from dnsmasq's add-mac option: 6 raw bytes, text 'aa:bb:..', or base64."""
    raw: bytes | None = None
    if len(value) == 6:
        raw = value
    elif len(value) == 17:
        try:
            raw = bytes.fromhex(value.decode("ascii").replace(":", "").replace("-", ""))
        except (UnicodeDecodeError, ValueError):
            raw = None
    elif len(value) == 8:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 6:
        return None
    return ":".join(f"{b:02x}" for b in raw)


# ---------------------------------------------------------------- building replies


def opt_record(*, do: bool, ext_rcode: int = 0, ede: tuple[int, str] | None = None) -> bytes:
    """Our OPT RR: version 0, size 1232, DO echoed, optionally one EDE option."""
    rdata = b""
    if ede is not None:
        text = ede[1].encode("utf-8")[:200]
        rdata = struct.pack(">HHH", 15, 2 + len(text), ede[0]) + text
    return (
        b"\x00\x00\x29"
        + struct.pack(">HBBH", EDNS_SIZE, ext_rcode, 0, 0x8000 if do else 0)
        + _U16.pack(len(rdata))
        + rdata
    )


OPT_PLAIN = opt_record(do=False)
OPT_DO = opt_record(do=True)
_OPT_CACHE: dict[tuple[bool, int, int, str], bytes] = {}


def opt_for(q: Question, *, rcode: int = 0, ede: tuple[int, str] | None = None) -> bytes:
    """The OPT to append to a reply to q ("" without EDNS), memoised for small sets."""
    edns = q.edns
    if edns is None:
        return b""
    if ede is None and rcode < 16:
        return OPT_DO if edns.do else OPT_PLAIN
    key = (edns.do, rcode >> 4, ede[0] if ede else -1, ede[1] if ede else "")
    opt = _OPT_CACHE.get(key)
    if opt is None:
        opt = opt_record(do=edns.do, ext_rcode=rcode >> 4, ede=ede)
        if len(_OPT_CACHE) > 4096:
            _OPT_CACHE.clear()
        _OPT_CACHE[key] = opt
    return opt


def reply_flags(q: Question, rcode: int, *, tc: bool = False, aa: bool = False) -> int:
    return (
        0x8000
        | (q.flags & 0x7800)  # opcode
        | (0x0400 if aa else 0)
        | (0x0200 if tc else 0)
        | (q.flags & 0x0100)  # RD
        | 0x0080  # RA
        | (q.flags & 0x0010)  # CD
        | (rcode & 0xF)
    )


def build_reply(
    q: Question,
    request: bytes,
    *,
    rcode: int = NOERROR,
    answer: bytes = b"",
    ancount: int = 0,
    authority: bytes = b"",
    nscount: int = 0,
    ede: tuple[int, str] | None = None,
    tc: bool = False,
) -> bytes:
    """A locally made reply: header, the client's question bytes, given sections, OPT iff EDNS."""
    opt = opt_for(q, rcode=rcode, ede=ede)
    return b"".join(
        (
            request[:2],
            _FLAGS_COUNTS.pack(reply_flags(q, rcode, tc=tc), 1, ancount, nscount, 1 if opt else 0),
            request[12 : q.end],
            answer,
            authority,
            opt,
        )
    )


def formerr(data: bytes) -> bytes | None:
    """FORMERR from the header alone (no question, no OPT); None if no header."""
    if len(data) < 12:
        return None
    flags = (data[2] << 8) | data[3]
    if flags & 0x8000:
        return None
    out = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | FORMERR
    return data[:2] + _U16.pack(out) + b"\x00" * 8


def header_only(data: bytes, rcode: int) -> bytes:
    flags = (data[2] << 8) | data[3]
    out = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | (rcode & 0xF)
    return data[:2] + _U16.pack(out) + b"\x00" * 8


def udp_limit(q: Question) -> int:
    """The largest UDP reply this client may get (RFC 6891 §6.2.5, capped at 1232)."""
    edns = q.edns
    if edns is None:
        return 512
    return min(edns.udp_size, EDNS_SIZE)


def truncated(q: Question, request: bytes) -> bytes:
    """TC=1 reply holding only the question (and OPT iff EDNS)."""
    return build_reply(q, request, tc=True)


def rr_ttl_offsets(msg: bytes, start: int, count: int) -> list[int]:
    """Offsets of the TTLs of `count` records from `start` (names may be compressed)."""
    out = []
    p = start
    n = len(msg)
    for _ in range(count):
        while True:
            if p >= n:
                raise Malformed("truncated record")
            ln = msg[p]
            if ln == 0:
                p += 1
                break
            if ln & 0xC0 == 0xC0:
                p += 2
                break
            p += 1 + ln
        if p + 10 > n:
            raise Malformed("truncated record")
        out.append(p + 4)
        rdlen = (msg[p + 8] << 8) | msg[p + 9]
        p += 10 + rdlen
    return out


@dataclass(frozen=True, slots=True)
class AddressAnswer:
    """An upstream reply of the commonest shape, read without dnslib (`address_answer`)."""

    wire: bytes  # the whole reply, as received
    start: int  # where its answer records start (just after the question)
    end: int  # where they end
    ttl_offsets: tuple[int, ...]  # of each answer record's TTL, into `wire`
    ttls: tuple[int, ...]
    rdata: tuple[bytes, ...]  # the 4 or 16 address bytes of each record
    ad: bool
    rcode: int = NOERROR


def address_answer(msg: bytes, question: bytes) -> AddressAnswer | None:
    """`msg` read as the commonest upstream reply, or None for any other shape.

    The shape: NOERROR; one question, equal (ASCII case aside) to `question`, the question
    section we sent; one or more A records (or AAAA) for the question's own type, each owned by
    a pointer to the question name (0xC00C) with 4 (16) bytes of data; no authority records;
    nothing after the answers but, optionally, one OPT record that ends the message. Such a
    reply has no name anywhere but the question, so its answer bytes can be cached as they
    stand. Everything else -- CNAME chains, NXDOMAIN and NODATA with their SOA, DNSSEC records,
    odd compression -- is left to dnslib (forward.py, cache.py), as are header checks (ID, QR,
    opcode, TC), which the caller makes first.
    """
    n = len(msg)
    qend = 12 + len(question)
    if n < qend + 16 or msg[3] & 0x0F or msg[4:6] != b"\x00\x01" or msg[8:10] != b"\x00\x00":
        return None
    an = (msg[6] << 8) | msg[7]
    ar = (msg[10] << 8) | msg[11]
    if an == 0 or ar > 1 or msg[12:qend].lower() != question:
        return None
    qtype = (question[-4] << 8) | question[-3]
    if qtype == T_A:
        size = 4
    elif qtype == T_AAAA:
        size = 16
    else:
        return None
    if question[-2:] != b"\x00\x01":  # class IN
        return None
    p = qend
    offsets = []
    ttls = []
    rdata = []
    fixed = _RR_FIXED
    for _ in range(an):
        if p + 12 + size > n or msg[p] != 0xC0 or msg[p + 1] != 12:
            return None
        rtype, rclass, ttl, rdlen = fixed.unpack_from(msg, p + 2)
        if rtype != qtype or rclass != C_IN or rdlen != size:
            return None
        offsets.append(p + 6)
        ttls.append(ttl)
        rdata.append(msg[p + 12 : p + 12 + size])
        p += 12 + size
    end = p
    if ar:
        if p + 11 > n or msg[p] != 0 or (msg[p + 1] << 8) | msg[p + 2] != T_OPT:
            return None
        p += 11 + ((msg[p + 9] << 8) | msg[p + 10])
    if p != n:
        return None
    return AddressAnswer(
        msg, qend, end, tuple(offsets), tuple(ttls), tuple(rdata), bool(msg[3] & 0x20)
    )


def rr(rtype: int, ttl: int, rdata: bytes, *, owner: bytes = b"\xc0\x0c") -> bytes:
    """One resource record, owner defaulting to a pointer at the question name."""
    return owner + _RR_FIXED.pack(rtype, C_IN, ttl, len(rdata)) + rdata


QTYPE_NAMES: dict[int, str] = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    43: "DS",
    48: "DNSKEY",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}


def qtype_text(qtype: int) -> str:
    return QTYPE_NAMES.get(qtype) or f"TYPE{qtype}"
