"""LAN names with a home router: "nas.lan", the printer and private reverse lookups go to the
router (dns.router), never to the public upstreams; without a router they stay NXDOMAIN here."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from resolver.config import ConfigError, load_config
from tests.resolver.dnsclient import ask, dig
from tests.support.upstream import FakeUpstream


@pytest.fixture
async def router() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream("127.0.0.5", soa_zone="lan.") as up:
        up.add("nas.lan", "A", "192.168.1.10", ttl=60)
        up.add("printer", "A", "192.168.1.20", ttl=60)
        up.add("tv.fritz.box", "AAAA", "fd00::20", ttl=60)
        up.add_zone("10.1.168.192.in-addr.arpa. 60 IN PTR nas.lan.")
        yield up


@pytest.fixture
async def home(nestguard_server, make_config, fake_upstream, router):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    config = make_config(fake_upstream)
    config = dataclasses.replace(config, dns=dataclasses.replace(config.dns, router=router.address))
    running = await nestguard_server(config)
    return running.addresses[0]


async def test_lan_names_are_asked_of_the_router_only(home, router, fake_upstream):
    nas = await ask(home, "nas.lan")
    assert [rr.address for rr in nas.answer[0]] == ["192.168.1.10"]  # private: not filtered
    printer = await ask(home, "printer")
    assert [rr.address for rr in printer.answer[0]] == ["192.168.1.20"]
    tv = await ask(home, "tv.fritz.box", "AAAA")
    assert [rr.address for rr in tv.answer[0]] == ["fd00::20"]
    out = await dig(home, "-x", "192.168.1.10", "+short", "+tries=1", "+time=2")
    assert out.strip() == "nas.lan."
    assert fake_upstream.count() == 0  # no LAN name left the house
    await ask(home, "www.example")
    assert fake_upstream.count("www.example") == 1 and router.count("www.example") == 0


async def test_a_public_name_with_a_private_address_is_still_filtered(home, fake_upstream):
    """The rebinding filter stays on for public names: only the router's answers may be private."""
    fake_upstream.add("evil.example", "A", "192.168.1.1")
    r = await ask(home, "evil.example")
    assert not r.answer


async def test_without_a_router_lan_names_stay_home(nestguard_server, make_config, fake_upstream):
    running = await nestguard_server(make_config(fake_upstream))
    addr = running.addresses[0]
    for name in ("nas.lan", "printer", "x.internal", "tv.fritz.box"):
        out = await dig(addr, name, "+tries=1", "+time=2")
        assert "status: NXDOMAIN" in out, name
    assert fake_upstream.count() == 0


def test_router_config_errors_name_the_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text('dns:\n  upstreams: ["192.0.2.53"]\n  router: "not-an-address"\n')
    with pytest.raises(ConfigError, match=r"dns\.router"):
        load_config(path)
    path.write_text(
        'dns:\n  listen: ["127.0.0.1:1053"]\n  upstreams: ["192.0.2.53"]\n'
        '  router: "127.0.0.1:1053"\n'
    )
    with pytest.raises(ConfigError, match=r"dns\.router.*own listen address"):
        load_config(path)
    path.write_text('dns:\n  upstreams: ["192.0.2.53"]\n  local_domains: ["lan", "a b"]\n')
    with pytest.raises(ConfigError, match=r"dns\.local_domains\[1\]"):
        load_config(path)
    path.write_text(
        'dns:\n  upstreams: ["192.0.2.53"]\n  router: "192.168.1.1"\n'
        '  local_domains: ["Home.", "fritz.box"]\n'
    )
    dns = load_config(path).dns
    assert dns.router == ("192.168.1.1", 53)
    assert dns.local_domains == ("home", "fritz.box")
