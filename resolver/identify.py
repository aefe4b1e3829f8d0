"""Identify: attach the device and profile to a query.

The MAC comes from dnsmasq's EDNS add-mac option (the server reads it) or, for clients on this
LAN, from the kernel's neighbour tables, re-read at most every few seconds: /proc/net/arp for
IPv4, and for IPv6 a netlink dump (RTM_GETNEIGH; Linux has no /proc file for it). So a phone or
laptop that asks over IPv6 from a temporary "privacy" address is still known by its MAC.
Unknown clients get the policy's default profile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from policy.live import Live
from policy.memo import Memo
from policy.model import Device, Policy, Profile
from resolver.pipeline import Query, Reply

log = logging.getLogger(__name__)

ARP_PATH = Path("/proc/net/arp")


class Neighbours:
    """IP -> MAC from /proc/net/arp and the IPv6 neighbour table, refreshed lazily at most
    every `every` seconds. `ipv6`: where the IPv6 table comes from (default: netlink).

    The first read is made at once; later ones, on the resolver's event loop, in a worker
    thread while queries keep the table they have: reading both tables took 1-3 ms, a stall
    every few seconds for every query behind it. Outside a loop every read is made at once."""

    def __init__(
        self,
        path: Path = ARP_PATH,
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        ipv6: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self._path = path
        self._every = every
        self._clock = clock
        self._ipv6 = ipv6 if ipv6 is not None else ipv6_neighbours
        self._table: dict[str, str] = {}
        self._loaded = float("-inf")
        self._reading = False

    def mac_of(self, ip: str) -> str | None:
        now = self._clock()
        if now - self._loaded >= self._every:
            first = self._loaded == float("-inf")
            self._loaded = now
            self._refresh(first=first)
        if "%" in ip:  # a link-local address with its zone ("fe80::1%eth0")
            ip = ip.split("%", 1)[0]
        return self._table.get(ip)

    def _refresh(self, *, first: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or first:
            self._table = self._read()
            return
        if self._reading:
            return
        self._reading = True

        def done(future: asyncio.Future[dict[str, str]]) -> None:
            self._reading = False
            if not future.cancelled() and future.exception() is None:
                self._table = future.result()

        loop.run_in_executor(None, self._read).add_done_callback(done)

    def _read(self) -> dict[str, str]:
        table: dict[str, str] = {}
        try:
            text = self._path.read_text(encoding="ascii", errors="replace")
        except OSError as e:
            log.debug("cannot read %s: %s", self._path, e)
        else:
            table.update(parse_arp(text))
        table.update(self._ipv6())
        return table


# netlink (linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h)
_NLMSG_HDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_NDMSG = struct.Struct("=BBHiHBB")  # family, pad, pad, ifindex, state, flags, type
_RTATTR = struct.Struct("=HH")  # length, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWNEIGH, _RTM_GETNEIGH = 28, 30
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NDA_DST, _NDA_LLADDR = 1, 2
_NUD_INCOMPLETE, _NUD_FAILED, _NUD_NOARP = 0x01, 0x20, 0x40


def ipv6_neighbours(timeout: float = 0.05) -> dict[str, str]:
    """IPv6 -> MAC from the kernel's neighbour table (a netlink dump); {} when unavailable."""
    if not hasattr(socket, "AF_NETLINK"):
        return {}
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
            s.settimeout(timeout)
            request = _NDMSG.pack(socket.AF_INET6, 0, 0, 0, 0, 0, 0)
            header = _NLMSG_HDR.pack(
                _NLMSG_HDR.size + len(request), _RTM_GETNEIGH, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
            )
            s.send(header + request)
            table: dict[str, str] = {}
            for _ in range(1000):  # bounded: a dump is a few datagrams
                data = s.recv(65536)
                if not data or parse_neighbours(data, table):
                    break
            return table
    except OSError as e:
        log.debug("cannot read the IPv6 neighbour table: %s", e)
        return {}


def parse_neighbours(data: bytes, table: dict[str, str]) -> bool:
    """Add the usable IPv6 entries of one netlink datagram to `table`; True at the dump's end."""
    p = 0
    while p + _NLMSG_HDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, p)
        if length < _NLMSG_HDR.size or p + length > len(data):
            return True  # malformed: stop reading
        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
            return True
        body = p + _NLMSG_HDR.size
        if kind == _RTM_NEWNEIGH and length >= _NLMSG_HDR.size + _NDMSG.size:
            family, _, _, _, state, _, _ = _NDMSG.unpack_from(data, body)
            ip = mac = None
            a = body + _NDMSG.size
            end = p + length
            while a + _RTATTR.size <= end:
                alen, atype = _RTATTR.unpack_from(data, a)
                if alen < _RTATTR.size or a + alen > end:
                    break
                value = data[a + _RTATTR.size : a + alen]
                if atype == _NDA_DST and len(value) == 16:
                    ip = socket.inet_ntop(socket.AF_INET6, value)
                elif atype == _NDA_LLADDR and len(value) == 6:
                    mac = ":".join(f"{b:02x}" for b in value)
                a += (alen + 3) & ~3
            usable = not state & (_NUD_INCOMPLETE | _NUD_FAILED | _NUD_NOARP)
            if family == socket.AF_INET6 and ip and mac and usable and mac != "00:00:00:00:00:00":
                table[ip] = mac
        p += (length + 3) & ~3
    return False


def parse_arp(text: str) -> dict[str, str]:
    """Complete entries of /proc/net/arp: 'IP  HWtype  Flags  HWaddress  Mask  Device'."""
    table: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        ip, flags, mac = parts[0], parts[2], parts[3].lower()
        try:
            complete = int(flags, 16) & 0x2
        except ValueError:
            continue
        if complete and mac != "00:00:00:00:00:00" and len(mac) == 17:
            table[ip] = mac
    return table


class Identify:
    """Stage: query.device, query.profile from the live policy (and query.mac if unknown)."""

    def __init__(self, policy: Live[Policy], *, neighbours: Neighbours | None = None) -> None:
        self._policy = policy
        self._neighbours = neighbours
        # (ip, mac) -> (device, profile) for the current snapshot (IPv6 lookups parse the /64)
        self._memo: Memo[tuple[str, str | None], tuple[Device | None, Profile]] = Memo(10_000)
        self._memo_policy: Policy | None = None

    def enter(self, query: Query) -> Reply | None:
        ip = query.client_ip
        mac = query.mac
        if mac is None and self._neighbours is not None:
            mac = query.mac = self._neighbours.mac_of(ip)
        policy = self._policy.value
        memo = self._memo
        if policy is not self._memo_policy:
            memo.clear()  # a parent's edit (seldom): at most 10,000 entries
            self._memo_policy = policy
        key = (ip, mac)
        found = memo.get(key)
        if found is None:
            found = memo.put(key, policy.profile_for(ip, mac))
        query.device, query.profile = found
        return None
