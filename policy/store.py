"""The SQLite store: the only module with SQL.

CONTRACT (signatures are fixed; the policy helper implements the bodies). Every method is
synchronous; async callers wrap them in `asyncio.to_thread`. One `sqlite3` connection per
Store, `check_same_thread=False`, guarded by a `threading.Lock`. WAL mode, `PRAGMA
user_version` migrations, file mode 0600. Every write is one transaction that bumps
`meta.revision` when it changes policy (children, devices, rules, schedules, grants, pause,
exceptions, settings) so `policy/reload.py` rebuilds the `Policy` snapshot.
Errors: `StoreError` (a subclass of PolicyError) with a clear message; `sqlite3` errors are
translated at this boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from policy.model import (
    Child,
    Device,
    Grant,
    HouseholdException,
    PolicyError,
    QueryEvent,
    Schedule,
)


class StoreError(PolicyError):
    pass


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


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    child_id: int
    domain: str
    kind: str  # "allow" | "deny" | "always" (passes during bedtime)


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
class ActivityRow:
    id: int
    event: QueryEvent


class Store:
    """Open with `Store.open(path)`; close with `close()` (or use as a context manager)."""

    @classmethod
    def open(cls, path: Path) -> Store: ...
    def close(self) -> None: ...
    def revision(self) -> int: ...

    # children ------------------------------------------------------------------------
    def add_child(self, name: str, born: date, *, lang: str = "vi") -> Child: ...
    def update_child(self, child_id: int, *, name: str, born: date, lang: str) -> Child: ...
    def delete_child(self, child_id: int) -> None: ...
    def children(self) -> list[Child]: ...
    def child(self, child_id: int) -> Child: ...  # NotFound
    def child_by_name(self, name: str) -> Child: ...  # NotFound (case-insensitive)
    def settings(self, child_id: int) -> ChildSettings: ...
    def save_settings(self, child_id: int, settings: ChildSettings) -> None: ...
    def set_pause(self, child_id: int, until: datetime | None) -> None: ...

    # rules, schedules, exceptions, grants --------------------------------------------
    def add_rule(self, child_id: int, domain: str, kind: str) -> Rule: ...
    def remove_rule(self, rule_id: int) -> None: ...
    def rules(self, child_id: int | None = None) -> list[Rule]: ...
    def add_schedule(self, child_id: int, schedule: Schedule) -> Schedule: ...
    def remove_schedule(self, schedule_id: int) -> None: ...
    def schedules(self, child_id: int) -> list[Schedule]: ...
    def add_exception(self, exc: HouseholdException) -> HouseholdException: ...
    def remove_exception(self, exc_id: int) -> None: ...
    def exceptions(self) -> list[HouseholdException]: ...
    def add_grant(self, grant: Grant) -> Grant: ...
    def grants(self, *, active_at: datetime | None = None) -> list[Grant]: ...

    # devices -------------------------------------------------------------------------
    def devices(self) -> list[Device]: ...
    def device(self, device_id: int) -> Device: ...
    def device_by_identifier(self, identifier: str) -> Device | None: ...
    def upsert_device(
        self, identifier: str, *, name: str | None = None, owner: int | str | None = None
    ) -> Device: ...  # creates (new=True) when unknown; owner ADULTS/child id/None
    def set_owner(self, device_id: int, owner: int | str | None) -> Device: ...
    def rename_device(self, device_id: int, name: str) -> Device: ...
    def add_identifier(self, device_id: int, identifier: str) -> Device: ...
    def merge_devices(self, keep_id: int, other_id: int) -> Device: ...
    def seen(self, sightings: Iterable[tuple[str, str | None, datetime]]) -> None: ...
    # (ip, mac, at): updates last_seen, records unknown addresses as new devices
    def device_stats(self, day: date) -> dict[int, tuple[datetime | None, int]]: ...
    # device id -> (last seen, queries that day)

    # activity log (children's browsing history: bounded by retention) -----------------
    def log_queries(self, events: Sequence[QueryEvent]) -> None: ...
    def activity(
        self,
        *,
        device_id: int | None = None,
        child_id: int | None = None,
        blocked_only: bool = False,
        search: str = "",
        since: datetime | None = None,
        limit: int = 500,
    ) -> list[ActivityRow]: ...
    def purge_activity(self, older_than: datetime) -> int: ...
    def summary(self, day_start: datetime) -> dict[int | None, dict[str, object]]: ...
    # child id -> {"queries": n, "blocked": n, "top_categories": [(cat, n)],
    #              "bypass": n, "security": n}

    # access requests -----------------------------------------------------------------
    def add_request(
        self, *, child_id: int | None, device_id: int | None, client: str, domain: str,
        reason: str, message: str,
    ) -> AccessRequest: ...
    def requests(self, *, status: str | None = None) -> list[AccessRequest]: ...
    def request(self, request_id: int) -> AccessRequest: ...
    def answer_request(
        self, request_id: int, *, approve: bool, minutes: int, by: str, now: datetime
    ) -> AccessRequest: ...
    # approve: adds a Grant (minutes > 0) or an allow Rule (minutes == 0); bumps revision

    # accounts, sessions, tokens, audit, login throttling -------------------------------
    def account_count(self) -> int: ...
    def add_account(self, username: str, password_hash: str, role: str) -> Account: ...  # Conflict
    def account(self, username: str) -> Account | None: ...
    def account_by_id(self, account_id: int) -> Account: ...
    def accounts(self) -> list[Account]: ...
    def set_password(self, account_id: int, password_hash: str) -> None: ...
    # also deletes every session of that account
    def delete_account(self, account_id: int) -> None: ...
    def add_session(self, session: Session) -> None: ...
    def session(self, id_hash: str) -> Session | None: ...
    def touch_session(self, id_hash: str, at: datetime) -> None: ...
    def delete_session(self, id_hash: str) -> None: ...
    def delete_sessions(self, account_id: int) -> None: ...
    def add_token(self, account_id: int, name: str, token_hash: str) -> ApiToken: ...
    def token(self, token_hash: str) -> ApiToken | None: ...
    def tokens(self, account_id: int | None = None) -> list[ApiToken]: ...
    def delete_token(self, token_id: int) -> None: ...
    def audit(self, who: str, action: str, detail: str = "") -> None: ...
    def audit_log(self, *, limit: int = 200) -> list[AuditEntry]: ...
    def record_login_failure(self, key: str, at: datetime) -> int: ...
    # key "ip:1.2.3.4" or "user:name"; returns failures within the lockout window
    def login_failures(self, key: str, since: datetime) -> int: ...
    def clear_login_failures(self, key: str) -> None: ...
    def lockouts(self, since: datetime) -> list[tuple[str, int, datetime]]: ...

    # household settings (key/value, JSON-encoded values) and feed status --------------
    def get_setting(self, key: str, default: object = None) -> object: ...
    def set_setting(self, key: str, value: object) -> None: ...  # bumps revision
    def save_feed_status(self, status: FeedStatus) -> None: ...
    def feed_statuses(self) -> list[FeedStatus]: ...
    def feed_status(self, name: str) -> FeedStatus | None: ...
