"""The policy's value types: children, devices, categories, profiles, verdicts.

Everything here is immutable (frozen dataclasses) and does no I/O. A `Policy` is a snapshot
built by `policy/reload.py` from the store and swapped whole into a `Live[Policy]`.

Names (`qname`) everywhere in policy code are *canonical names*: lower-case, no trailing dot,
labels joined by '.', IDNs as A-labels, and any byte in a label that is not [a-z0-9_-] escaped
as `\\DDD` (so a label holding a dot can never look like two labels). The resolver makes them
from wire labels; list parsers make them from text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Protocol


class PolicyError(Exception):
    """A policy input is wrong (unknown child, bad date, bad address...)."""


class Action(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    REWRITE = "rewrite"


class BlockStyle(StrEnum):
    """How a BLOCK verdict is answered. DEFAULT follows the configured block mode."""

    DEFAULT = "default"  # 0.0.0.0 / :: / NODATA (or NXDOMAIN / block page per config)
    NXDOMAIN = "nxdomain"  # canaries: use-application-dns.net, mask.icloud.com
    NODATA = "nodata"  # _dns.resolver.arpa (DDR)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every answer carries its reason; logs, metrics and the UI read the same Verdict.

    reason: machine-readable, e.g. "allowlist", "parent:deny", "schedule:bedtime",
            "category:gambling:18+", "security:malware", "bypass:canary", "paused".
    source: where the rule came from: a list name and line ("ut1-gambling:1234"),
            "name-rater: name contains 'porn'", "parent", ...
    target: for REWRITE, the safe-search CNAME target.
    """

    action: Action
    reason: str = ""
    target: str | None = None
    source: str = ""
    style: BlockStyle = BlockStyle.DEFAULT


ALLOW = Verdict(Action.ALLOW)


@dataclass(frozen=True, slots=True)
class Match:
    """One index hit on the name or a parent domain.

    category: catalogue slug ("adult", "gambling", "education", ...).
    min_age: the age from which this entry is allowed (99 = never, e.g. malware).
    source: the list (feed) name, or "name-rater".
    exception: True for allow rules (`@@||x^`, `rpz-passthru.`, the education allow set).
    rule: the matched domain (the suffix that hit), or the rater's evidence text.
    line: the line number in the source list (0 when unknown).
    confidence: 1.0 for list entries; the rater's confidence otherwise.
    """

    category: str
    min_age: int
    source: str
    exception: bool = False
    rule: str = ""
    line: int = 0
    confidence: float = 1.0


class Index(Protocol):
    """What policy needs from blocklists: every match on the name or its parents."""

    def lookup(self, qname: str) -> Sequence[Match]: ...


@dataclass(frozen=True, slots=True)
class Category:
    slug: str
    names: Mapping[str, str]  # lang -> name ("vi", "en")
    min_age: int  # default minimum age; 99 = blocked at every age (security)
    description: Mapping[str, str] = field(default_factory=dict)
    security: bool = False  # malware, phishing, scam: blocked for adults too


SECURITY_CATEGORIES = frozenset({"malware", "phishing", "scam"})
NEVER = 99  # min_age meaning "never allowed"


@dataclass(frozen=True, slots=True)
class Child:
    id: int
    name: str
    born: date
    lang: str = "vi"

    def age_on(self, day: date) -> int:
        years = day.year - self.born.year
        if (day.month, day.day) < (self.born.month, self.born.day):
            years -= 1
        return max(years, 0)


ADULTS = "adults"


@dataclass(frozen=True, slots=True)
class Device:
    """A device of the household. owner: a child id, ADULTS, or None (unassigned/new)."""

    id: int
    name: str
    identifiers: tuple[str, ...]  # IPv4/IPv6 addresses, MACs (lower-case, colon form)
    owner: int | str | None = None
    new: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    """A weekly window. weekdays: 0=Monday..6=Sunday. If end <= start it runs overnight.

    kind "bedtime": everything blocked except the always-allowed set.
    kind "school": the listed categories (and services) blocked.
    """

    name: str
    kind: str  # "bedtime" | "school"
    weekdays: frozenset[int]
    start: time
    end: time
    categories: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    id: int = 0


@dataclass(frozen=True, slots=True)
class HouseholdException:
    """A date range (holidays, exam week) that suspends or replaces the weekly windows."""

    name: str
    first_day: date
    last_day: date
    child_ids: frozenset[int]  # empty = every child
    mode: str = "suspend"  # "suspend" | "replace"
    schedules: tuple[Schedule, ...] = ()  # used when mode == "replace"
    id: int = 0


@dataclass(frozen=True, slots=True)
class Grant:
    """A temporary allow of a domain or a category for one child, ending by itself."""

    child_id: int
    until: datetime
    domain: str | None = None
    category: str | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class Profile:
    """The categories' ages from the catalogue plus the parent's overrides, for one child.

    child None means the adults' profile (security categories only) or an unassigned default.
    mode: "normal" | "allowlist" (under-6: only education/kids and parent allows resolve)
          | "adults" (security only).
    """

    child: Child | None
    mode: str = "normal"
    category_ages: Mapping[str, int] = field(default_factory=dict)  # slug -> min age
    blocked: frozenset[str] = frozenset()  # categories blocked whatever the age
    allowed: frozenset[str] = frozenset()  # categories allowed whatever the age
    allow: frozenset[str] = frozenset()  # domains (cover subdomains)
    deny: frozenset[str] = frozenset()
    always_allowed: frozenset[str] = frozenset()  # pass during bedtime/pause
    safe_search: bool = True
    youtube: str = "moderate"  # "off" | "moderate" | "strict"
    bypass_defence: bool = True
    rater: bool = True  # name rater on for this profile
    rater_off: frozenset[str] = frozenset()  # categories the rater may not block here
    services: frozenset[str] = frozenset()  # blocked services (always)
    schedules: tuple[Schedule, ...] = ()
    exceptions: tuple[HouseholdException, ...] = ()
    paused_until: datetime | None = None
    grants: tuple[Grant, ...] = ()
    log_queries: bool = True
    # allow-set names that a games list carries ("learning games") stay open (decide step 9)
    learning_games: bool = True
    # The catalogue's default ages (category_ages before the parent's overrides): an
    # override applies to list matches whose min_age is the category default (see decide).
    catalogue_ages: Mapping[str, int] = field(default_factory=dict)
    # Daily time budgets today (policy/budgets.py): service -> the budget slugs counting it;
    # budget slug -> today's minutes (with extra time); spent service -> the budget's slug.
    budget_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    budget_limits: Mapping[str, int] = field(default_factory=dict)
    budget_spent: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Policy:
    """An immutable snapshot: who is who, and each one's profile."""

    revision: int
    devices: tuple[Device, ...]
    profiles: Mapping[int, Profile]  # child id -> profile
    adults_profile: Profile
    default_profile: Profile
    by_address: Mapping[str, Device] = field(default_factory=dict)  # exact IP -> device
    by_mac: Mapping[str, Device] = field(default_factory=dict)
    by_prefix64: Mapping[str, Device] = field(default_factory=dict)  # IPv6 /64 -> device

    def profile_for(self, ip: str, mac: str | None = None) -> tuple[Device | None, Profile]:
        device = None
        if mac is not None:
            device = self.by_mac.get(mac)
        if device is None:
            device = self.by_address.get(ip)
        if device is None and ":" in ip:
            device = self.by_prefix64.get(prefix64(ip))
        if device is None:
            return None, self.default_profile
        return device, self.profile_of(device)

    def profile_of(self, device: Device) -> Profile:
        owner = device.owner
        if owner == ADULTS:
            return self.adults_profile
        if isinstance(owner, int) and owner in self.profiles:
            return self.profiles[owner]
        return self.default_profile


def prefix64(ip: str) -> str:
    """The /64 of an IPv6 address, as text ('2001:db8:1:2::/64'); '' if not IPv6."""
    try:
        net = ipaddress.IPv6Network(f"{ip}/64", strict=False)
    except ValueError:
        return ""
    return str(net)


@dataclass(frozen=True, slots=True)
class QueryEvent:
    """One row of the activity log (children's browsing history: local, bounded)."""

    at: datetime
    client: str
    device_id: int | None
    child_id: int | None
    qname: str
    qtype: str
    action: str
    reason: str
    source: str = ""
