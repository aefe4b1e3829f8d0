"""The stages end to end, through the running server and real DNS clients: what only the whole
chain shows (the server's EDNS and ID handling, the config reaching the stages, Cache and
Enforce together, the sinks). Each stage's own cases, driven with a fake next stage, are in
tests/resolver/stages/ (one file per stage)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from datetime import date, datetime

import dns.edns
import dns.rcode
import dns.rdatatype
import pytest

from policy.live import Live
from policy.model import (
    ALLOW,
    Action,
    BlockStyle,
    Child,
    Device,
    Policy,
    Profile,
    QueryEvent,
    Verdict,
)
from resolver.assembly import ResolverServices, default_policy
from resolver.observe import Sighting
from tests.resolver.dnsclient import ask, dig
from tests.support.upstream import FakeUpstream


def ede_of(msg: dns.message.Message) -> list[tuple[int, str]]:
    return [(o.code, o.text or "") for o in msg.options if o.otype == 15]


# ---------------------------------------------------------------- ACL


async def test_acl_refuses_outside_allow_networks(nestguard_server, fake_upstream, make_config):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    config = make_config(fake_upstream, allow_networks=(ipaddress.ip_network("127.0.0.2/32"),))
    addr = (await nestguard_server(config)).addresses[0]
    out = await dig(addr, "-b", "127.0.0.1", "www.example", "+tries=1")
    assert "status: REFUSED" in out
    assert fake_upstream.count() == 0
    out = await dig(addr, "-b", "127.0.0.2", "www.example", "+tries=1")
    assert "192.0.2.1" in out
    r = await ask(addr, "www.example", source="127.0.0.1", edns=None)
    assert r.rcode() == dns.rcode.REFUSED and r.edns == -1  # no OPT in, none out, on REFUSED too


# ---------------------------------------------------------------- local names


@pytest.fixture
async def plain(nestguard_server, fake_upstream: FakeUpstream, make_config):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    return (await nestguard_server(make_config(fake_upstream))).addresses[0]


@pytest.mark.parametrize(
    "args",
    [["-x", "192.168.1.10"], ["printer"], ["tv.local"], ["x.invalid", "AAAA"]],
)
async def test_local_names_answered_here(plain, fake_upstream, args):
    out = await dig(plain, *args, "+tries=1", "+time=2")
    assert "status: NXDOMAIN" in out
    assert fake_upstream.count() == 0


# ---------------------------------------------------------------- Enforce


class TableDecider:
    """A test decider: suffix rules -> verdicts (mutable, to change policy at run time)."""

    def __init__(self, rules: dict[str, Verdict]) -> None:
        self.rules = rules
        self.calls: list[tuple[Profile, str, int]] = []
        self.live: Live[Policy] | None = None

    def __call__(self, profile: Profile, qname: str, qtype: int, now: datetime) -> Verdict:
        self.calls.append((profile, qname, qtype))
        assert now.tzinfo is not None
        name = qname
        while True:
            if name in self.rules:
                return self.rules[name]
            if "." not in name:
                return ALLOW
            name = name.split(".", 1)[1]


RULES = {
    "blocked.example": Verdict(Action.BLOCK, "category:ads:18+", source="test-list:1"),
    "bed.example": Verdict(Action.BLOCK, "schedule:bedtime"),
    "use-application-dns.net": Verdict(Action.BLOCK, "bypass:canary", style=BlockStyle.NXDOMAIN),
    "_dns.resolver.arpa": Verdict(Action.BLOCK, "bypass:ddr", style=BlockStyle.NODATA),
    "www.google.example": Verdict(Action.REWRITE, "safe-search", "forcesafesearch.example"),
}


@pytest.fixture
async def enforced(nestguard_server, fake_upstream: FakeUpstream, make_config):
    fake_upstream.add("blocked.example", "A", "192.0.2.66")
    fake_upstream.add("site.example", "A", "192.0.2.1")
    fake_upstream.add("forcesafesearch.example", "A", "192.0.2.50")
    fake_upstream.add("forcesafesearch.example", "AAAA", "2001:db8::50")
    fake_upstream.add("t.ok.example", "CNAME", "ads.blocked.example.")
    fake_upstream.add("ads.blocked.example", "A", "192.0.2.5")
    fake_upstream.add_zone("svc.example. 300 IN HTTPS 1 tgt.blocked.example. alpn=h2")
    decider = TableDecider(dict(RULES))

    async def start(**policy: object) -> tuple[tuple[str, int], TableDecider]:
        running = await nestguard_server(
            make_config(fake_upstream, policy=policy or None),
            ResolverServices(arp_path=None, decider=decider),
        )
        decider.live = running.live_policy
        return running.addresses[0], decider

    return start


async def test_block_badvers(enforced, fake_upstream):
    addr, _ = await enforced()
    out = await dig(addr, "+edns=1", "+noednsneg", "blocked.example", "+tries=1")
    assert "status: BADVERS" in out


async def test_block_echoes_id_and_case(enforced):
    addr, _ = await enforced()
    out = await dig(addr, "+qid=7", "BlOcKeD.ExAmPle", "+tries=1")
    assert "id: 7\n" in out and ";BlOcKeD.ExAmPle.\t" in out and "0.0.0.0" in out


async def test_block_mode_blockpage(enforced):
    addr, _ = await enforced(
        block_answer="blockpage", blockpage_ipv4=ipaddress.IPv4Address("192.0.2.80")
    )
    r = await ask(addr, "blocked.example")
    assert r.answer[0][0].address == "192.0.2.80"
    r = await ask(addr, "blocked.example", "AAAA")
    assert not r.answer and r.rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("round_", [1, 2])  # upstream answer, then from the cache
async def test_cname_cloaking_blocked(enforced, round_):
    addr, _ = await enforced()
    for _ in range(round_):
        r = await ask(addr, "t.ok.example")
    assert r.answer[0][0].address == "0.0.0.0"
    assert ede_of(r) == [(15, "category:ads:18+")]


async def test_https_target_name_checked(enforced):
    addr, _ = await enforced()
    r = await ask(addr, "svc.example", "HTTPS")
    assert not r.answer
    assert ede_of(r) == [(15, "category:ads:18+")]


async def test_policy_applies_after_cache(enforced, fake_upstream):
    addr, decider = await enforced()
    assert (await ask(addr, "site.example")).answer[0][0].address == "192.0.2.1"
    decider.rules["site.example"] = Verdict(Action.BLOCK, "parent:deny")
    assert decider.live is not None
    decider.live.value = default_policy()  # as policy/reload.py swaps in a new snapshot
    r = await ask(addr, "site.example")
    assert r.answer[0][0].address == "0.0.0.0"
    assert ede_of(r) == [(17, "parent:deny")]
    assert fake_upstream.count("site.example") == 1


@pytest.mark.parametrize(("qtype", "address"), [("A", "192.0.2.50"), ("AAAA", "2001:db8::50")])
async def test_safe_search_rewrite(enforced, fake_upstream, qtype, address):
    addr, _ = await enforced()
    for _ in range(2):  # upstream, then cache
        out = await dig(addr, "WWW.google.example", qtype, "+tries=1")
        assert "status: NOERROR" in out
        assert ";WWW.google.example.\t" in out
        assert "CNAME\tforcesafesearch.example." in out
        assert address in out
    assert fake_upstream.count("www.google.example") == 0
    assert fake_upstream.count("forcesafesearch.example") == 1


# ---------------------------------------------------------------- Identify and Observe


KID = Child(1, "Lan", date(2015, 5, 1))


def household() -> tuple[Policy, Profile, Profile]:
    kid = Profile(KID)
    default = Profile(None, mode="normal")
    tablet = Device(10, "tablet", ("127.0.0.2",), owner=1)
    phone = Device(11, "phone", ("aa:bb:cc:dd:ee:ff",), owner=1)
    policy = Policy(
        revision=1,
        devices=(tablet, phone),
        profiles={1: kid},
        adults_profile=Profile(None, mode="adults"),
        default_profile=default,
        by_address={"127.0.0.2": tablet},
        by_mac={"aa:bb:cc:dd:ee:ff": phone},
    )
    return policy, kid, default


async def test_identify_by_address_and_mac(nestguard_server, fake_upstream, make_config):
    fake_upstream.add("games.example", "A", "192.0.2.1")
    policy, kid, default = household()

    def decider(profile: Profile, qname: str, qtype: int, now: datetime) -> Verdict:
        if profile is kid and qname == "games.example":
            return Verdict(Action.BLOCK, "category:games:16+")
        return ALLOW

    # 127.0.0.3 is the router, which passes each device's MAC (dnsmasq add-mac)
    router = ipaddress.ip_network("127.0.0.3/32")
    running = await nestguard_server(
        make_config(fake_upstream, trusted_mac_sources=(router,)),
        ResolverServices(arp_path=None, decider=decider, live_policy=Live(policy)),
    )
    addr = running.addresses[0]
    r = await ask(addr, "games.example", source="127.0.0.2")
    assert r.answer[0][0].address == "0.0.0.0"
    r = await ask(addr, "games.example", source="127.0.0.3")
    assert r.answer[0][0].address == "192.0.2.1"
    mac = dns.edns.GenericOption(65001, bytes.fromhex("aabbccddeeff"))
    r = await ask(addr, "games.example", source="127.0.0.3", options=[mac])
    assert r.answer[0][0].address == "0.0.0.0"
    # from an address that is not a trusted forwarder, the option is ignored
    r = await ask(addr, "games.example", source="127.0.0.4", options=[mac])
    assert r.answer[0][0].address == "192.0.2.1"
    # a policy swap takes effect at once
    running.live_policy.value = Policy(1, (), {}, default, default)
    r = await ask(addr, "games.example", source="127.0.0.2")
    assert r.answer[0][0].address == "192.0.2.1"


async def test_activity_and_sightings_reach_their_sinks(
    nestguard_server, fake_upstream, make_config
):
    fake_upstream.add("site.example", "A", "192.0.2.1")
    policy, _, _ = household()
    events: list[QueryEvent] = []
    sightings: list[Sighting] = []

    async def activity_sink(batch: list[QueryEvent]) -> None:
        events.extend(batch)

    async def sightings_sink(batch: list[Sighting]) -> None:
        sightings.extend(batch)

    decider = TableDecider(dict(RULES))
    running = await nestguard_server(
        make_config(fake_upstream),
        ResolverServices(
            arp_path=None,
            decider=decider,
            live_policy=Live(policy),
            activity_sink=activity_sink,
            sightings_sink=sightings_sink,
        ),
    )
    addr = running.addresses[0]
    await ask(addr, "Site.Example", source="127.0.0.2")
    await ask(addr, "blocked.example", "AAAA", source="127.0.0.2")
    await ask(addr, "printer", source="127.0.0.3")
    for _ in range(30):  # flushed in batches about once a second
        if len(events) >= 3 and len(sightings) >= 2:
            break
        await asyncio.sleep(0.1)
    by_name = {e.qname: e for e in events}
    assert set(by_name) == {"site.example", "blocked.example", "printer"}
    site = by_name["site.example"]
    assert (site.client, site.device_id, site.child_id, site.qtype, site.action) == (
        "127.0.0.2",
        10,
        1,
        "A",
        "allow",
    )
    blocked = by_name["blocked.example"]
    assert (blocked.action, blocked.reason, blocked.source, blocked.qtype) == (
        "block",
        "category:ads:18+",
        "test-list:1",
        "AAAA",
    )
    assert blocked.at.tzinfo is not None
    assert by_name["printer"].device_id is None
    assert {(s.ip, s.mac) for s in sightings} == {("127.0.0.2", None), ("127.0.0.3", None)}


async def test_ipv6_clients_identified_by_their_64(nestguard_server, fake_upstream, make_config):
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    fake_upstream.add("games.example", "A", "192.0.2.1")
    policy, kid, default = household()
    laptop = Device(12, "laptop", ("::/64",), owner=1)
    policy = Policy(
        revision=2,
        devices=(*policy.devices, laptop),
        profiles={1: kid},
        adults_profile=policy.adults_profile,
        default_profile=default,
        by_prefix64={"::/64": laptop},
    )

    def decider(profile: Profile, qname: str, qtype: int, now: datetime) -> Verdict:
        return Verdict(Action.BLOCK, "category:games:16+") if profile is kid else ALLOW

    running = await nestguard_server(
        make_config(fake_upstream, listen=(("::1", 0),)),
        ResolverServices(arp_path=None, decider=decider, live_policy=Live(policy)),
    )
    addr = running.addresses[0]
    for _ in range(2):  # computed, then from Identify's memo
        r = await ask(addr, "games.example")
        assert r.answer[0][0].address == "0.0.0.0"
    running.live_policy.value = Policy(3, (), {}, default, default)
    r = await ask(addr, "games.example")
    assert r.answer[0][0].address == "192.0.2.1"


async def test_an_unassigned_device_is_not_credited_to_a_child_and_shows_once_assigned(
    nestguard_server, fake_upstream, make_config
):
    """First run: a phone nobody has claimed is filtered under the strictest child's profile,
    but its lookups are the phone's, not that child's. Assigned within the minute, its next
    lookup of the same name is logged at once under the phone and its owner (the
    once-a-minute de-duplication keys on the device and owner too)."""
    fake_upstream.add("site.example", "A", "192.0.2.1")
    policy, kid, _ = household()
    strictest = dataclasses.replace(policy, default_profile=kid)  # as reload builds it
    live = Live(strictest)
    events: list[QueryEvent] = []

    async def activity_sink(batch: list[QueryEvent]) -> None:
        events.extend(batch)

    running = await nestguard_server(
        make_config(fake_upstream),
        ResolverServices(arp_path=None, decider=TableDecider(dict(RULES)), live_policy=live,
                 activity_sink=activity_sink),
    )
    addr = running.addresses[0]

    async def logged(n: int) -> None:
        for _ in range(50):  # flushed in batches about once a second
            if len(events) >= n:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{len(events)} rows, not {n}")

    await ask(addr, "site.example", source="127.0.0.5")
    await logged(1)
    assert (events[0].client, events[0].device_id, events[0].child_id) == (
        "127.0.0.5", None, None)
    phone = Device(12, "phone", ("127.0.0.5",), owner=1)
    live.value = dataclasses.replace(
        strictest, devices=(*strictest.devices, phone),
        by_address={**strictest.by_address, "127.0.0.5": phone})
    await ask(addr, "site.example", source="127.0.0.5")
    await logged(2)
    assert (events[1].device_id, events[1].child_id) == (12, 1)
