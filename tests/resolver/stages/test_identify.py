"""Identify: every query passes on with its device and profile (by MAC, address or IPv6 /64;
the default profile otherwise); the MAC may come from the neighbour tables."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from datetime import date

from policy.live import Live
from policy.model import Child, Device, Policy, Profile
from resolver.identify import Identify, Neighbours, parse_arp, parse_neighbours
from tests.conftest import FakeClock
from tests.resolver.stages.recorder import Next, query, run

TABLET = Device(10, "tablet", ("192.168.1.20",), owner=1)
PHONE = Device(11, "phone", ("aa:bb:cc:dd:ee:ff",), owner=1)
LAPTOP = Device(12, "laptop", ("2001:db8:1:2::/64",), owner=1)


def household() -> tuple[Policy, Profile, Profile]:
    """Lan's tablet (by address), phone (by MAC) and laptop (by IPv6 /64); everyone else
    gets the default profile."""
    kid, default = Profile(Child(1, "Lan", date(2015, 5, 1))), Profile(None, mode="normal")
    by = {"by_address": {"192.168.1.20": TABLET}, "by_mac": {"aa:bb:cc:dd:ee:ff": PHONE},
          "by_prefix64": {"2001:db8:1:2::/64": LAPTOP}}
    return Policy(1, (TABLET, PHONE, LAPTOP), {1: kid}, Profile(None, mode="adults"), default,
                  **by), kid, default


async def identified(stage: Identify, **kw: object) -> tuple[Device | None, Profile | None]:
    nxt = Next()
    reply = await run(stage, query(**kw), nxt)
    assert reply is nxt.reply  # Identify never answers
    (q,) = nxt.queries
    return q.device, q.profile


async def test_by_address_by_mac_by_64_and_the_default():
    policy, kid, default = household()
    stage = Identify(Live(policy))
    assert await identified(stage, client="192.168.1.20") == (TABLET, kid)
    assert await identified(stage, client="192.168.1.1", mac="aa:bb:cc:dd:ee:ff",
                            forwarded=True) == (PHONE, kid)
    assert await identified(stage, client="2001:db8:1:2::77") == (LAPTOP, kid)
    assert await identified(stage, client="192.168.1.99") == (None, default)


async def test_a_policy_swap_takes_effect_at_once():
    policy, kid, default = household()
    live = Live(policy)
    stage = Identify(live)
    assert (await identified(stage, client="192.168.1.20"))[1] is kid
    live.value = Policy(2, (), {}, default, default)
    assert await identified(stage, client="192.168.1.20") == (None, default)


async def test_an_ipv6_privacy_address_is_known_by_its_mac(tmp_path):
    """The phone (known by MAC) asks from a temporary IPv6 address: still the child's phone."""
    policy, kid, _default = household()
    arp = tmp_path / "arp"
    arp.write_text("IP address HW type Flags HW address Mask Device\n")
    stage = Identify(
        Live(policy),
        neighbours=Neighbours(arp, ipv6=lambda: {"2001:db8:9::1": "aa:bb:cc:dd:ee:ff"}),
    )
    nxt = Next()
    await run(stage, query(client="2001:db8:9::1"), nxt)
    await run(stage, query(client="2001:db8:9::2"), nxt)
    first, other = nxt.queries
    assert first.mac == "aa:bb:cc:dd:ee:ff" and first.profile is kid
    assert other.mac is None and other.profile is not kid


def test_parse_arp_keeps_complete_entries():
    text = (
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "192.168.1.20     0x1         0x2         AA:BB:CC:00:11:22     *        eth0\n"
        "192.168.1.21     0x1         0x0         00:00:00:00:00:00     *        eth0\n"
        "192.168.1.22     0x1         0x2         00:00:00:00:00:00     *        eth0\n"
    )
    assert parse_arp(text) == {"192.168.1.20": "aa:bb:cc:00:11:22"}


def test_neighbours_reread_at_most_every_few_seconds(tmp_path):
    arp = tmp_path / "arp"
    head = "IP address HW type Flags HW address Mask Device\n"
    arp.write_text(head + "192.168.1.20 0x1 0x2 aa:bb:cc:00:11:22 * eth0\n")
    clock = FakeClock()
    table = Neighbours(arp, every=5.0, clock=clock, ipv6=dict)
    assert table.mac_of("192.168.1.20") == "aa:bb:cc:00:11:22"
    arp.write_text(head + "192.168.1.20 0x1 0x2 aa:bb:cc:00:11:33 * eth0\n")
    clock.advance(1)
    assert table.mac_of("192.168.1.20") == "aa:bb:cc:00:11:22"
    clock.advance(5)
    assert table.mac_of("192.168.1.20") == "aa:bb:cc:00:11:33"
    assert Neighbours(tmp_path / "missing", ipv6=dict).mac_of("192.168.1.20") is None


def _netlink_neighbour(ip: str, mac: bytes | None, state: int) -> bytes:
    """One RTM_NEWNEIGH message as the kernel sends it (attributes padded to 4 bytes)."""
    attrs = struct.pack("=HH", 20, 1) + socket.inet_pton(socket.AF_INET6, ip)
    if mac is not None:
        attrs += struct.pack("=HH", 10, 2) + mac + b"\x00\x00"
    body = struct.pack("=BBHiHBB", socket.AF_INET6, 0, 0, 2, state, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), 28, 2, 1, 0) + body


def test_ipv6_neighbours_from_a_netlink_dump():
    mac = bytes.fromhex("aabbccddeeff")
    data = (
        _netlink_neighbour("2001:db8::5", mac, 0x02)  # reachable
        + _netlink_neighbour("2001:db8::6", mac, 0x04)  # stale: still that MAC
        + _netlink_neighbour("2001:db8::7", mac, 0x20)  # failed
        + _netlink_neighbour("2001:db8::8", None, 0x02)  # no link-layer address
    )
    table: dict[str, str] = {}
    assert parse_neighbours(data, table) is False  # the dump goes on
    assert table == {"2001:db8::5": "aa:bb:cc:dd:ee:ff", "2001:db8::6": "aa:bb:cc:dd:ee:ff"}
    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + bytes(4)
    assert parse_neighbours(done, table) is True
    assert parse_neighbours(b"\x05\x00\x00\x00" + bytes(12), {}) is True  # garbage: stop


async def test_on_the_loop_the_table_is_read_again_in_a_worker_thread(tmp_path) -> None:
    """The first read is made at once; a later one does not hold the event loop: the query
    that finds the table stale keeps the old table, the new one is there a moment later."""
    arp = tmp_path / "arp"
    head = "IP address HW type Flags HW address Mask Device\n"
    arp.write_text(head + "192.168.1.20 0x1 0x2 aa:bb:cc:00:11:22 * eth0\n")
    clock = FakeClock()
    readers: list[str] = []

    def ipv6() -> dict[str, str]:
        readers.append(threading.current_thread().name)
        return {}

    table = Neighbours(arp, every=5.0, clock=clock, ipv6=ipv6)
    assert table.mac_of("192.168.1.20") == "aa:bb:cc:00:11:22"
    arp.write_text(head + "192.168.1.20 0x1 0x2 aa:bb:cc:00:11:33 * eth0\n")
    clock.advance(5.0)
    assert table.mac_of("192.168.1.20") == "aa:bb:cc:00:11:22"  # not read on the loop
    for _ in range(100):
        await asyncio.sleep(0.01)
        if table.mac_of("192.168.1.20") == "aa:bb:cc:00:11:33":
            break
    assert table.mac_of("192.168.1.20") == "aa:bb:cc:00:11:33"
    assert readers[0] == threading.current_thread().name and readers[1] != readers[0]
