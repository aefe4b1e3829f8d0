"""The store's record types and errors (what callers get back)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from policy.model import PolicyError, QueryEvent

RULE_KINDS = ("allow", "deny", "always")
REPORT_KINDS = ("harmful", "wrong_block")
LOCKOUT_WINDOW = timedelta(minutes=15)  # record_login_failure's default window


class StoreError(PolicyError):
    pass


class StoreUnavailable(StoreError):
    """The database cannot be written (or read) right now: the disk is full or failing, or
    another process holds the lock. Not the caller's fault; retrying later may work. The
    message names the file (for the log), never show it to a browser."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class ChildSettings:
    """The parent's overrides for one child (besides rules, schedules, grants)."""

    blocked: frozenset[str] = frozenset()  # categories blocked whatever the age
    allowed: frozenset[str] = frozenset()  # categories allowed whatever the age
    safe_search: bool = True
    youtube: str = "moderate"  # "off" | "moderate" | "strict"
    bypass_defence: bool = True
    rater: bool = True
    rater_off: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    mode: str = "auto"  # "auto" (allowlist under 6) | "normal" | "allowlist"
    paused_until: datetime | None = None  # datetime.max-like far future = paused until resumed
    category_ages: Mapping[str, int] = field(default_factory=dict)  # slug -> age override
    # learning sites a games list also carries stay open while games are blocked (issue 17)
    learning_games: bool = True


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    child_id: int
    domain: str
    kind: str  # "allow" | "deny" | "always" (passes during bedtime)


@dataclass(frozen=True, slots=True)
class Budget:
    """Minutes a day for a service, a category or "overall" (policy/budgets.py)."""

    child_id: int
    slug: str
    school_days: int
    weekends: int  # weekends and the household's holidays


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """One child's counted minutes on one household day for a budget key (a service slug,
    a category or "overall"); last_at/bridge let the count go on across a restart."""

    child_id: int
    day: date
    key: str
    minutes: int
    last_at: datetime | None = None  # the last activity query counted
    bridge: int = 0  # seconds a silence after last_at may last and still count


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    username: str
    password_hash: str
    role: str  # "parent" | "admin"
    created: datetime
    password_changed: datetime


@dataclass(frozen=True, slots=True)
class Session:
    id_hash: str  # sha256 of the cookie value; the raw id is never stored
    account_id: int
    csrf: str
    created: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    account_id: int
    name: str
    token_hash: str
    created: datetime


@dataclass(frozen=True, slots=True)
class AccessRequest:
    id: int
    child_id: int | None
    device_id: int | None
    client: str
    domain: str
    reason: str
    message: str
    created: datetime
    status: str  # "pending" | "approved" | "declined"
    answered_by: str = ""
    answered_at: datetime | None = None
    minutes: int | None = None  # approval length; 0 = always


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    who: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class FeedStatus:
    name: str
    last_try: datetime | None = None
    last_success: datetime | None = None
    entries: int = 0
    rejected: int = 0
    error: str = ""
    etag: str = ""
    last_modified: str = ""
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One alert for one recipient on one channel, waiting or delivered (webui/alerts.py)."""

    id: int
    channel: str  # "email" | "webhook:<name>"
    recipient: str  # an e-mail address; '' for webhooks
    kind: str
    payload: dict[str, Any]
    created: datetime
    next_try: datetime
    attempts: int = 0
    status: str = "pending"  # "pending" | "sent" | "failed"
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    channel: str
    last_ok: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertPrefs:
    """A parent's own alert address, language and quiet hours ('' = the household's)."""

    account_id: int
    email: str = ""
    lang: str = ""
    quiet_start: str = ""  # "HH:MM"
    quiet_end: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """A site reported by a child or a parent: harmful (should be blocked) or wrongly
    blocked; an admin lists it locally, makes an exception, or dismisses it."""

    id: int
    created: datetime
    kind: str  # "harmful" | "wrong_block"
    domain: str
    source: str  # "child" | "parent"
    reporter: str = ""  # the account, or the child's name / the device's address
    category: str = ""
    note: str = ""
    child_id: int | None = None
    device_id: int | None = None
    status: str = "open"  # "open" | "listed" | "excepted" | "dismissed"
    decided_by: str = ""
    decided_at: datetime | None = None
    min_age: int | None = None  # when listed


@dataclass(frozen=True, slots=True)
class ActivityRow:
    id: int
    event: QueryEvent
