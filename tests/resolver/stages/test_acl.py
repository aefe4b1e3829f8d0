"""Acl: clients inside the allowed networks pass on; others get REFUSED here (RFC 5358)."""

from __future__ import annotations

import ipaddress

import dns.rcode
import pytest

from resolver.guard import Acl
from tests.resolver.stages.recorder import Next, ede, message, query, run

HOME = (ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("2001:db8:1::/48"))


@pytest.mark.parametrize(
    "client", ["192.168.1.20", "2001:db8:1::5", "::ffff:192.168.1.20", "2001:db8:1::5%eth0"]
)
async def test_a_client_inside_passes_on(client):
    nxt = Next()
    reply = await run(Acl(HOME), query(client=client), nxt)
    assert reply is nxt.reply
    assert [q.client_ip for q in nxt.queries] == [client]


@pytest.mark.parametrize("client", ["192.168.2.20", "2001:db8:2::5", "10.0.0.1", "not-an-ip"])
async def test_a_client_outside_is_refused_here(client):
    nxt = Next()
    msg = message(await run(Acl(HOME), query(client=client), nxt))
    assert msg.rcode() == dns.rcode.REFUSED
    assert ede(msg) == [(18, "client not allowed")]
    assert not nxt.called


async def test_refused_without_edns_carries_no_opt():
    msg = message(await run(Acl(HOME), query(client="10.0.0.1", edns=None), Next()))
    assert msg.rcode() == dns.rcode.REFUSED and msg.edns == -1


async def test_the_memo_keeps_the_answer_per_address():
    acl, nxt = Acl(HOME), Next()
    for _ in range(3):
        await run(acl, query(client="192.168.1.20"), nxt)
        await run(acl, query(client="10.0.0.1"), nxt)
    assert len(nxt.queries) == 3
