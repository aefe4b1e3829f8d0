"""LocalNames: local and private names answered here (RFC 6761, 6303, 8375), ANY answered with
HINFO (RFC 8482); LAN names go to the router when one is set; public names pass on."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from resolver.localnames import LocalNames
from tests.resolver.stages.recorder import Next, message, query, run


def reverse(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        *[(reverse(a), "PTR") for a in (
            "192.168.1.10", "10.1.2.3", "172.16.5.4", "172.31.255.1", "169.254.1.1",
            "127.0.0.1", "100.64.0.1", "fd00::1", "fe80::1", "::1",
        )],
        ("printer", "A"),
        ("wpad", "A"),
        ("nas.home.arpa", "A"),
        ("tv.local", "A"),
        ("x.test", "A"),
        ("x.invalid", "AAAA"),
    ],
)
async def test_local_and_private_names_are_nxdomain_here(name, qtype):
    nxt = Next()
    reply = await run(LocalNames(), query(name, qtype), nxt)
    assert message(reply).rcode() == dns.rcode.NXDOMAIN
    assert reply.outcome == "local"
    assert not nxt.called


@pytest.mark.parametrize(("qtype", "address"), [("A", "127.0.0.1"), ("AAAA", "::1")])
async def test_localhost_answers_loopback(qtype, address):
    nxt = Next()
    msg = message(await run(LocalNames(), query("app.localhost", qtype), nxt))
    assert [rr.address for rr in msg.answer[0]] == [address]
    assert not nxt.called


async def test_localhost_other_types_are_nodata():
    msg = message(await run(LocalNames(), query("localhost", "MX"), Next()))
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer


async def test_any_gets_the_rfc8482_hinfo():
    nxt = Next()
    msg = message(await run(LocalNames(), query("example.com", "ANY"), nxt))
    (rrset,) = msg.answer
    assert rrset.rdtype == dns.rdatatype.HINFO and rrset[0].cpu == b"RFC8482"
    assert not nxt.called


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        ("www.example", "A"),
        (reverse("8.8.8.8"), "PTR"),
        (reverse("172.32.0.1"), "PTR"),  # just outside 172.16/12
        (".", "NS"),
    ],
)
async def test_public_names_pass_on(name, qtype):
    nxt = Next()
    assert await run(LocalNames(), query(name, qtype), nxt) is nxt.reply
    assert [q.lan for q in nxt.queries] == [False]


@pytest.mark.parametrize("name", ["printer", "nas.lan", "nas.home.arpa", reverse("192.168.1.10")])
async def test_with_a_router_lan_names_pass_on_marked_for_it(name):
    nxt = Next()
    stage = LocalNames(lan_domains=("lan",), router=True)
    assert await run(stage, query(name, "PTR" if "arpa" in name else "A"), nxt) is nxt.reply
    assert [q.lan for q in nxt.queries] == [True]


async def test_a_configured_lan_domain_without_a_router_is_nxdomain():
    nxt = Next()
    reply = await run(LocalNames(lan_domains=("fritz.box",)), query("nas.fritz.box"), nxt)
    assert message(reply).rcode() == dns.rcode.NXDOMAIN and not nxt.called
