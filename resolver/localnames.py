"""LocalNames: names that never leave the house (RFC 6303, RFC 8375), and ANY (RFC 8482).

Never forwarded to the upstreams (RFC 6761, RFC 6303, RFC 8375; as dnsmasq --bogus-priv
--domain-needed):

- `localhost` and `*.localhost` -> 127.0.0.1 / ::1 (other types NODATA);
- `local` (mDNS), `invalid`, `test` and their subdomains -> NXDOMAIN;
- LAN names -> the home router when `dns.router` is set (conditional forwarding, as Pi-hole and
  AdGuard Home offer it, so "nas.lan" and the printer keep working), else NXDOMAIN here. LAN
  names are: single-label names ("printer", "wpad"), `home.arpa` and the `dns.local_domains`
  ("lan", "fritz.box", ...) with their subdomains, and reverse lookups of private space:
  in-addr.arpa for 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16, and
  ip6.arpa for ::, ::1, fc00::/7 (ULA), fe80::/10. The router's private addresses are kept (the
  rebinding filter is for public names).

ANY queries get the RFC 8482 answer: one synthesized HINFO RRset, CPU "RFC8482", OS "" (as
Cloudflare and Unbound `deny-any` do), so ANY can never be used for amplification.
"""

from __future__ import annotations

from collections.abc import Iterable

from resolver import wire
from resolver.pipeline import Query, Reply

_LOCAL_TLDS = frozenset({"local", "localhost", "invalid", "test"})
_HINFO = b"\x07RFC8482\x00"
_HINFO_TTL = 3600
_LOOP4 = bytes((127, 0, 0, 1))
_LOOP6 = bytes(15) + b"\x01"


def is_private_reverse(name: str) -> bool:
    """True for in-addr.arpa / ip6.arpa names inside private, loopback or link-local space."""
    labels = name.split(".")
    if name.endswith(".in-addr.arpa"):
        octets = labels[:-2][::-1]  # most significant first
        try:
            first = int(octets[0])
        except (ValueError, IndexError):
            return False
        if first in (0, 10, 127):
            return True
        if len(octets) < 2:
            return False
        try:
            second = int(octets[1])
        except ValueError:
            return False
        return (
            (first == 172 and 16 <= second <= 31)
            or (first == 192 and second == 168)
            or (first == 169 and second == 254)
            or (first == 100 and 64 <= second <= 127)
        )
    if name.endswith(".ip6.arpa"):
        nibbles = "".join(labels[:-2][::-1])
        if len(nibbles) >= 2 and nibbles[:2] in ("fc", "fd"):
            return True
        if len(nibbles) >= 3 and nibbles[:3] in ("fe8", "fe9", "fea", "feb"):
            return True
        if len(nibbles) == 32 and nibbles in ("0" * 32, "0" * 31 + "1"):
            return True
    return False


class LocalNames:
    """Stage: answer local and private names (and ANY) here; mark LAN names for the router."""

    def __init__(
        self, *, ttl: int = 60, lan_domains: Iterable[str] = (), router: bool = False
    ) -> None:
        self._ttl = ttl
        self._lan = frozenset({"home.arpa", *lan_domains})
        self._lan_tlds = frozenset(d.rsplit(".", 1)[-1] for d in self._lan)  # a quick "no"
        self._router = router

    def _lan_name(self, query: Query) -> Reply | None:
        if self._router:
            query.lan = True
            return None  # Forward asks the router
        return self._reply(query, rcode=wire.NXDOMAIN)

    def enter(self, query: Query) -> Reply | None:
        q = query.question
        name = q.name
        if q.qtype == wire.T_ANY:
            return self._reply(query, answer=wire.rr(wire.T_HINFO, _HINFO_TTL, _HINFO), ancount=1)
        dot = name.rfind(".")
        if dot < 0:
            if not name:
                return None  # the root
            if name == "localhost":
                return self._localhost(query)
            return self._lan_name(query)
        tld = name[dot + 1 :]
        if tld in _LOCAL_TLDS:
            if tld == "localhost":
                return self._localhost(query)
            return self._reply(query, rcode=wire.NXDOMAIN)
        if tld in self._lan_tlds and (
            wire.within(name, self._lan) or (tld == "arpa" and is_private_reverse(name))
        ):
            return self._lan_name(query)
        return None

    def _localhost(self, query: Query) -> Reply:
        qtype = query.question.qtype
        if qtype == wire.T_A:
            return self._reply(query, answer=wire.rr(wire.T_A, self._ttl, _LOOP4), ancount=1)
        if qtype == wire.T_AAAA:
            return self._reply(query, answer=wire.rr(wire.T_AAAA, self._ttl, _LOOP6), ancount=1)
        return self._reply(query)

    def _reply(
        self, query: Query, *, rcode: int = wire.NOERROR, answer: bytes = b"", ancount: int = 0
    ) -> Reply:
        return Reply(
            wire.build_reply(
                query.question, query.request, rcode=rcode, answer=answer, ancount=ancount
            ),
            "local",
            "local",
            rcode=rcode,
        )
