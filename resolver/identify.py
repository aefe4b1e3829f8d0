"""Identify: attach the device and profile to a query.

The MAC comes from dnsmasq's EDNS add-mac option (the server reads it) or, for IPv4 clients on
this LAN, from the kernel's neighbour table (/proc/net/arp), re-read at most every few seconds.
Unknown clients get the policy's default profile (P5).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from policy.live import Live
from policy.model import Device, Policy, Profile
from resolver.pipeline import Query, Reply

log = logging.getLogger(__name__)

ARP_PATH = Path("/proc/net/arp")


class Neighbours:
    """IPv4 -> MAC from /proc/net/arp, refreshed lazily at most every `every` seconds."""

    def __init__(
        self,
        path: Path = ARP_PATH,
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._every = every
        self._clock = clock
        self._table: dict[str, str] = {}
        self._loaded = float("-inf")

    def mac_of(self, ip: str) -> str | None:
        now = self._clock()
        if now - self._loaded >= self._every:
            self._loaded = now
            self._table = self._read()
        return self._table.get(ip)

    def _read(self) -> dict[str, str]:
        try:
            text = self._path.read_text(encoding="ascii", errors="replace")
        except OSError as e:
            log.debug("cannot read %s: %s", self._path, e)
            return {}
        return parse_arp(text)


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
        self._memo: dict[tuple[str, str | None], tuple[Device | None, Profile]] = {}
        self._memo_policy: Policy | None = None

    def enter(self, query: Query) -> Reply | None:
        ip = query.client_ip
        mac = query.mac
        if mac is None and self._neighbours is not None and ":" not in ip:
            mac = query.mac = self._neighbours.mac_of(ip)
        policy = self._policy.value
        memo = self._memo
        if policy is not self._memo_policy or len(memo) > 10_000:
            memo.clear()
            self._memo_policy = policy
        key = (ip, mac)
        found = memo.get(key)
        if found is None:
            found = memo[key] = policy.profile_for(ip, mac)
        query.device, query.profile = found
        return None
