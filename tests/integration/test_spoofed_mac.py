"""A MAC carried in a query (dnsmasq's add-mac, EDNS option 65001) is believed only from a
forwarder the operator named in `dns.trusted_mac_sources`.

A child's device that sends the option itself must stay the child's device: its answers stay
filtered, its address never moves to the device that owns the MAC, and its lookups stay in the
child's activity. Behind a trusted router, the same option is what tells the devices apart:
each one gets its own profile and its own rate-limit window, and the router's own address never
moves between devices.
"""

from __future__ import annotations

import asyncio
import dataclasses
from ipaddress import ip_network

import dns.edns
import dns.rcode
import pytest

from policy.model import ADULTS
from tests.conftest import build_config
from tests.integration.test_household import (
    KID,
    PARENT,
    REAL,
    a_record,
    family,
    settle,
    write_lists,
    zone,
)
from tests.resolver.dnsclient import ask

ADULT_MAC = "aa:bb:cc:dd:ee:01"
KID_MAC = "aa:bb:cc:dd:ee:02"
ROUTER = "127.0.0.7"
SIGHTINGS_FLUSH = 1.5  # the sightings queue writes to the store every second


def mac_option(mac: str) -> dns.edns.GenericOption:
    return dns.edns.GenericOption(65001, bytes.fromhex(mac.replace(":", "")))


async def owner_of(hh, ip: str) -> object:  # type: ignore[no-untyped-def]
    policy = hh.live_policy.value
    device = policy.by_address.get(ip)
    return None if device is None else device.owner


@pytest.fixture
async def spoofable(household_server, fake_upstream, tmp_path):  # type: ignore[no-untyped-def]
    zone(fake_upstream)
    hh, addr = await household_server(feeds=write_lists(tmp_path / "lists"))
    ids = await family(hh)
    # the parents' laptop is known by its MAC (a DHCP lease or the neighbour table said so)
    await asyncio.to_thread(hh.store.upsert_device, ADULT_MAC, owner=ADULTS)
    await settle(hh)
    return hh, addr, ids


async def test_a_childs_device_cannot_claim_an_adults_mac(spoofable) -> None:
    hh, addr, ids = spoofable
    spoof = [mac_option(ADULT_MAC)]
    for _ in range(3):
        r = await ask(addr, "adult-site.example", "A", source=KID, options=spoof)
        assert str(r.answer[0][0]) == "0.0.0.0", "a spoofed MAC lifted the filter"
    await asyncio.sleep(SIGHTINGS_FLUSH)
    await settle(hh)
    # the address still belongs to the child, and plain queries stay filtered
    assert await owner_of(hh, KID) == ids["minh"]
    assert await a_record(addr, "adult-site.example", KID) == "0.0.0.0"
    device = await asyncio.to_thread(hh.store.device_by_identifier, KID)
    assert device is not None and device.owner == ids["minh"]
    macs = [i for i in device.identifiers if ":" in i and len(i) == 17]
    assert ADULT_MAC not in macs


async def test_behind_a_trusted_router_each_mac_is_its_own_device(
    household_server, fake_upstream, tmp_path
) -> None:
    zone(fake_upstream)
    cfg = build_config(fake_upstream)
    cfg = dataclasses.replace(
        cfg,
        dns=dataclasses.replace(
            cfg.dns,
            trusted_mac_sources=(ip_network(ROUTER),),
            rate_limit=dataclasses.replace(cfg.dns.rate_limit, queries=20, per_seconds=60.0),
        ),
    )
    hh, addr = await household_server(feeds=write_lists(tmp_path / "lists"), config=cfg)
    ids = await family(hh)
    await asyncio.to_thread(hh.store.upsert_device, ADULT_MAC, owner=ADULTS)
    await asyncio.to_thread(hh.store.upsert_device, KID_MAC, owner=ids["minh"])
    await settle(hh)

    parent = [mac_option(ADULT_MAC)]
    kid = [mac_option(KID_MAC)]
    r = await ask(addr, "adult-site.example", "A", source=ROUTER, options=parent)
    assert str(r.answer[0][0]) == REAL
    r = await ask(addr, "adult-site.example", "A", source=ROUTER, options=kid)
    assert str(r.answer[0][0]) == "0.0.0.0"

    # the router's address does not move to whichever device asked last
    await asyncio.sleep(SIGHTINGS_FLUSH)
    await settle(hh)
    router_device = await asyncio.to_thread(hh.store.device_by_identifier, ROUTER)
    assert router_device is None or router_device.owner is None

    # one device's flood is refused; the other device behind the same router is not
    refused = 0
    for i in range(30):
        r = await ask(addr, f"n{i}.school.example", "A", source=ROUTER, options=kid)
        refused += r.rcode() == dns.rcode.REFUSED
    assert refused >= 5
    r = await ask(addr, "school.example", "A", source=ROUTER, options=parent)
    assert r.rcode() == dns.rcode.NOERROR


async def test_a_mac_option_from_an_untrusted_address_is_ignored_even_when_configured(
    household_server, fake_upstream, tmp_path
) -> None:
    zone(fake_upstream)
    cfg = build_config(fake_upstream)
    cfg = dataclasses.replace(
        cfg, dns=dataclasses.replace(cfg.dns, trusted_mac_sources=(ip_network(ROUTER),))
    )
    hh, addr = await household_server(feeds=write_lists(tmp_path / "lists"), config=cfg)
    await family(hh)
    await asyncio.to_thread(hh.store.upsert_device, ADULT_MAC, owner=ADULTS)
    await settle(hh)
    r = await ask(addr, "adult-site.example", "A", source=KID, options=[mac_option(ADULT_MAC)])
    assert str(r.answer[0][0]) == "0.0.0.0"
    assert await a_record(addr, "adult-site.example", PARENT) == REAL
