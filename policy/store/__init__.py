"""The SQLite store: the only package with SQL.

Every method is synchronous; async callers wrap them in `asyncio.to_thread`. One `sqlite3`
connection per Store, `check_same_thread=False`, guarded by a `threading.Lock`. WAL mode, `PRAGMA
user_version` migrations, file mode 0600. Every write is one transaction that bumps
`meta.revision` when it changes policy (children, devices, rules, schedules, grants, pause,
exceptions, settings) so `policy/reload.py` rebuilds the `Policy` snapshot.
Errors: `StoreError` (a subclass of PolicyError) with a clear message; `sqlite3` errors are
translated at this boundary.

- Times are stored as integer microseconds since the epoch (exact and ordered). Naive
  datetimes passed in are taken as UTC; every datetime read back is aware UTC (compare
  freely with aware datetimes in the household's zone).
- Domains are stored canonical and device identifiers normalised by `policy.names`
  (`typed_domain`, `device_identifier`); a bad one is a StoreError naming it.
- A file that is not a database, or whose policy tables fail `quick_check`, makes `open`
  raise StoreError("<path>: database is corrupt: ...") (the caller falls back to a strict
  policy and keeps filtering).
- Writes that change policy bump `meta.revision`; the activity log, sessions, accounts,
  audit, login failures and feed status do not.

The package, one module per seam; `Store` is their sum and the only thing callers use:
- database.py  Database: open (WAL, 0600), migrate, check, close; `_read`/`_write`
               transactions and the translation of sqlite3 errors
- schema.py    MIGRATIONS (append only) and the tables `open` quick_checks
- records.py   the record types and errors callers get back (ChildSettings, Rule, ...)
- rows.py      row conversion (times, settings, schedules) and the checks on names,
               domains and identifiers
- children.py  children, settings, pause; rules, schedules, exceptions, grants
- devices.py   devices, identifiers, owners, merging, sightings
- activity.py  the activity log and access requests
- budgets.py   daily time budgets, counted minutes, extra time
- accounts.py  accounts, sessions, API tokens, audit, login throttling
- settings.py  household settings and feed status
- alerts.py    the alert outbox, channel status, marks, alert preferences; site reports
"""

from __future__ import annotations

from policy.store.accounts import AccountsPart
from policy.store.activity import ActivityPart
from policy.store.alerts import AlertsPart
from policy.store.budgets import BudgetsPart
from policy.store.children import ChildrenPart
from policy.store.devices import DevicesPart
from policy.store.records import (
    LOCKOUT_WINDOW,
    REPORT_KINDS,
    RULE_KINDS,
    AccessRequest,
    Account,
    ActivityRow,
    AlertPrefs,
    ApiToken,
    AuditEntry,
    Budget,
    BudgetUsage,
    ChannelStatus,
    ChildSettings,
    Conflict,
    FeedStatus,
    NotFound,
    OutboxRow,
    Report,
    Rule,
    Session,
    StoreError,
    StoreUnavailable,
)
from policy.store.schema import MIGRATIONS
from policy.store.settings import SettingsPart

__all__ = [
    "AccessRequest",
    "Account",
    "ActivityRow",
    "AlertPrefs",
    "ApiToken",
    "AuditEntry",
    "Budget",
    "BudgetUsage",
    "ChannelStatus",
    "ChildSettings",
    "Conflict",
    "FeedStatus",
    "LOCKOUT_WINDOW",
    "MIGRATIONS",
    "NotFound",
    "OutboxRow",
    "REPORT_KINDS",
    "RULE_KINDS",
    "Report",
    "Rule",
    "Session",
    "Store",
    "StoreError",
    "StoreUnavailable",
]


class Store(
    ChildrenPart,
    DevicesPart,
    ActivityPart,
    BudgetsPart,
    AccountsPart,
    SettingsPart,
    AlertsPart,
):
    """Open with `Store.open(path)`; close with `close()` (or use as a context manager)."""
