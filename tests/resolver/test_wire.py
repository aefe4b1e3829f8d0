"""wire.py: the question and EDNS read from raw bytes; canonical names."""

from __future__ import annotations

import dns.edns
import dns.message
import pytest

from resolver import wire
from tests.resolver.dnsclient import header, qname


def packet(*labels: bytes, qtype: int = 1, ar: bytes = b"", arcount: int = 0) -> bytes:
    return header(ar=arcount) + qname(*labels) + qtype.to_bytes(2, "big") + b"\x00\x01" + ar


def test_question_fields():
    q = wire.parse_query(packet(b"WwW", b"Example", qtype=28))
    assert q.labels == (b"www", b"example")
    assert q.name == "www.example"
    assert (q.qtype, q.qclass, q.opcode, q.key) == (28, 1, 0, ("www.example", 28, 1, False))
    assert q.edns is None


@pytest.mark.parametrize(
    ("labels", "name"),
    [
        ((b"a.b", b"example"), "a\\046b.example"),  # a dot inside a label never looks like two
        ((b"B\xc3\xa9",), "b\\195\\169"),
        ((b"x y",), "x\\032y"),
        ((b"_dmarc", b"ex-ample"), "_dmarc.ex-ample"),
        ((), ""),
    ],
)
def test_canonical_names(labels, name):
    assert wire.parse_query(packet(*labels)).name == name
    assert wire.canonical(labels) == name
    assert wire.labels_of(name) == tuple(lab.lower() for lab in labels)


def test_edns_fields_and_mac_option():
    q = dns.message.make_query(
        "x.example",
        "A",
        use_edns=0,
        payload=4096,
        want_dnssec=True,
        options=[dns.edns.GenericOption(65001, bytes.fromhex("AABBCCDDEEFF"))],
    )
    parsed = wire.parse_query(q.to_wire())
    assert parsed.edns is not None
    assert (parsed.edns.version, parsed.edns.udp_size, parsed.edns.do) == (0, 4096, True)
    assert parsed.edns.mac == "aa:bb:cc:dd:ee:ff"
    assert wire.udp_limit(parsed) == 1232


@pytest.mark.parametrize(
    "value",
    [bytes.fromhex("aabbccddeeff"), b"AA:BB:CC:DD:EE:FF", b"qrvM3e7/"],
)
def test_mac_formats(value):
    assert wire.decode_mac(value) == "aa:bb:cc:dd:ee:ff"


def test_bad_mac_is_ignored():
    assert wire.decode_mac(b"non$ense") is None
    assert wire.decode_mac(b"\x00" * 5) is None


def test_small_udp_size_counts_as_512():
    opt = b"\x00\x00\x29\x00\x64\x00\x00\x00\x00\x00\x00"
    q = wire.parse_query(packet(b"x", ar=opt, arcount=1))
    assert wire.udp_limit(q) == 512


@pytest.mark.parametrize(
    "data",
    [
        header(qd=0),
        header() + b"\xc0\x0c\x00\x01\x00\x01",
        header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
        packet(b"x", ar=b"\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00", arcount=1),
    ],
)
def test_malformed(data):
    with pytest.raises(wire.Malformed):
        wire.parse_query(data)


def test_drop():
    with pytest.raises(wire.Drop):
        wire.parse_query(b"\x00" * 11)
    with pytest.raises(wire.Drop):
        wire.parse_query(header(flags=0x8000) + qname(b"x") + b"\x00\x01\x00\x01")


def test_reply_opt_and_ede_parse_with_dnspython():
    data = packet(b"x", b"example", ar=b"\x00\x00\x29\x10\x00\x00\x00\x80\x00\x00\x00", arcount=1)
    q = wire.parse_query(data)
    out = wire.build_reply(q, data, rcode=wire.NXDOMAIN, ede=(15, "category:ads"))
    msg = dns.message.from_wire(out)
    assert msg.rcode() == 3 and msg.edns == 0 and msg.payload == 1232
    assert msg.ednsflags & 0x8000  # DO echoed
    assert [(o.code, o.text) for o in msg.options] == [(15, "category:ads")]
    badvers = dns.message.from_wire(wire.build_reply(q, data, rcode=wire.BADVERS))
    assert badvers.rcode() == 16
