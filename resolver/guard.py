"""Abuse guards in front of everything else: the ACL (who may ask) and the per-client rate limit.

Both answer REFUSED (with EDE 18 "Prohibited" when the query had EDNS) and cause no upstream work.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence

from policy.memo import Memo
from resolver import config, wire
from resolver.pipeline import Query, Reply

_LIMIT = config.RateLimitConfig()  # the operator's defaults, stated once in resolver/config.py

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Networks:
    """Is an address inside one of these networks? Answers are memoised per address string
    (IPv4-mapped IPv6 counts as IPv4; a zone suffix such as '%eth0' is ignored)."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self._networks = tuple(networks)
        self.memo: Memo[str, bool] = Memo(10_000)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, ip: str) -> bool:
        ok = self.memo.get(ip)
        if ok is None:
            try:
                addr = ipaddress.ip_address(ip.split("%", 1)[0])
            except ValueError:
                ok = False
            else:
                if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                    addr = addr.ipv4_mapped
                ok = any(addr in net for net in self._networks if net.version == addr.version)
            self.memo.put(ip, ok)
        return ok


class Acl:
    """Stage: answer only clients inside `networks` (RFC 5358); REFUSED otherwise."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self._networks = Networks(networks)
        self._memo = self._networks.memo  # read inline: this runs for every query

    def allowed(self, ip: str) -> bool:
        return ip in self._networks

    def enter(self, query: Query) -> Reply | None:
        ok = self._memo.get(query.client_ip)
        if ok or (ok is None and query.client_ip in self._networks):
            return None
        return refused(query, "refused", "client not allowed")


def refused(query: Query, outcome: str, text: str) -> Reply:
    return Reply(
        wire.build_reply(
            query.question, query.request, rcode=wire.REFUSED, ede=(wire.EDE_PROHIBITED, text)
        ),
        "local",
        outcome,
        rcode=wire.REFUSED,
    )


def device_key(query: Query) -> str:
    """Who asked, for per-device limits: the MAC a trusted forwarder passed (every device
    behind the router shares the router's address), else the address (see client_key)."""
    return query.mac if query.forwarded and query.mac is not None else client_key(query.client_ip)


def client_key(ip: str) -> str:
    """Rate-limit key: the IPv4 address, or the IPv6 /64 (privacy addresses share it)."""
    if ":" not in ip:
        return ip
    try:
        packed = ipaddress.IPv6Address(ip.split("%", 1)[0]).packed
    except ValueError:
        return ip
    return packed[:8].hex()


class RateLimit:
    """Stage: at most `queries` per `per_seconds` per device (fixed window); REFUSED beyond.

    A device is its address (an IPv6 /64), or the MAC a trusted forwarder passed with the
    query, so one device behind a MAC-passing router cannot use up the whole house's window.
    queries <= 0 disables the limit.
    """

    def __init__(
        self,
        *,
        queries: int = _LIMIT.queries,
        per_seconds: float = _LIMIT.per_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = queries
        self._per = per_seconds
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # key -> [window start, count]
        self._keys: dict[str, str] = {}
        self.limited = 0

    def enter(self, query: Query) -> Reply | None:
        mac = query.mac
        if self.admit(mac if mac is not None and query.forwarded else query.client_ip):
            return None
        return refused(query, "ratelimited", "rate limit")

    def admit(self, ip: str) -> bool:
        """Count one query from `ip` (an address, or a forwarded MAC); False when it is over
        the limit."""
        if self._limit <= 0:
            return True
        key = ip
        if ":" in key:  # IPv6: one window per /64
            prefix = self._keys.get(key)
            if prefix is None:
                if len(self._keys) > 50_000:
                    self._keys.clear()
                prefix = self._keys[key] = client_key(key)
            key = prefix
        now = self._clock()
        win = self._windows.get(key)
        if win is None or now - win[0] >= self._per:
            if win is None and len(self._windows) > 50_000:
                self._prune(now)
            self._windows[key] = [now, 1.0]
            return True
        win[1] += 1
        if win[1] <= self._limit:
            return True
        self.limited += 1
        return False

    def _prune(self, now: float) -> None:
        self._windows = {k: w for k, w in self._windows.items() if now - w[0] < self._per}
        if len(self._windows) > 50_000:
            self._windows.clear()
