"""The SQLite store: the only module with SQL.

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
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from policy.model import (
    ADULTS,
    Child,
    Device,
    Grant,
    HouseholdException,
    PolicyError,
    QueryEvent,
    Schedule,
)
from policy.names import BadName, device_identifier, typed_domain

log = logging.getLogger(__name__)
_Row = Any  # a sqlite3 result row

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


class Store:
    """Open with `Store.open(path)`; close with `close()` (or use as a context manager)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        self.write_failing = False  # the last write failed for want of disk (StoreUnavailable)
        self.exclusive = False  # opened without shared memory: the disk was full at start

    # -- opening, migrations, transactions -------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = 5.0) -> Store:
        """Open (creating with mode 0600 if absent) and migrate the database at `path`.

        A file that is not a SQLite database or whose policy tables fail `quick_check`
        raises StoreError("<path>: database is corrupt: ...") so the caller can fall back.
        `Path(":memory:")` opens a private in-memory database (tests). `busy_timeout`: how
        long a write waits for another connection's lock before StoreError("... locked").
        """
        memory = str(path) == ":memory:"
        if not memory:
            path = Path(path)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
                os.chmod(path, 0o600)
            except OSError as e:
                raise StoreError(f"{path}: cannot open database file: {e.strerror}") from e
        try:
            conn = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=busy_timeout
            )
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot open database: {e}") from e
        store = cls(conn, path)
        try:
            store._setup(memory)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as e:  # "locked" is not "corrupt": _describe tells them apart
            conn.close()
            if not memory and _disk_trouble(e):
                return cls._open_exclusive(path, busy_timeout, e)
            raise StoreError(f"{path}: cannot open database: {_describe(e)}") from e
        return store

    @classmethod
    def _open_exclusive(cls, path: Path, busy_timeout: float, first: sqlite3.Error) -> Store:
        """A full disk leaves no room for WAL's shared-memory file (SQLITE_IOERR_SHMSIZE):
        open with `locking_mode=EXCLUSIVE`, which keeps the WAL index in this process's memory,
        so the web UI still starts and reads; writes fail (StoreUnavailable, HTTP 503) until
        space is free, then work again. Until a restart, other processes (the `nestguard`
        CLI) cannot open the database."""
        conn = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=busy_timeout
        )
        store = cls(conn, path)
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            store._setup(False)
        except (sqlite3.Error, StoreError) as e:
            conn.close()
            raise StoreUnavailable(f"{path}: cannot open database: {first}; {e}") from e
        store.exclusive = True
        log.warning(
            "%s: the disk is full (%s); the database is open for this process only until "
            "nestguard restarts, and changes fail until space is free",
            path, first,
        )
        return store

    def _setup(self, memory: bool) -> None:
        conn = self._conn
        # The first read of the header fails on a file that is not a database.
        conn.execute("PRAGMA schema_version").fetchone()
        if not memory:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: journal_mode is %s, not WAL", self.path, mode)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._check()
        if not memory:
            for suffix in ("-wal", "-shm"):
                side = Path(str(self.path) + suffix)
                try:
                    os.chmod(side, 0o600)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    log.warning("%s: cannot chmod 0600: %s", side, e)

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: database schema version {version} is newer than this "
                f"program knows ({len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first; the script carries its own BEGIN/COMMIT so a
            # failed migration leaves the previous version intact.
            try:
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number:d};\nCOMMIT;"
                )
            except sqlite3.Error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            log.info("%s: migrated database to schema version %d", self.path, number)

    def _check(self) -> None:
        """quick_check the small policy tables (not the big activity log: that one is
        checked lazily, reads of a damaged page raise StoreError then)."""
        for table in _CHECKED_TABLES:
            rows = self._conn.execute(f"PRAGMA quick_check({table})").fetchall()
            if rows != [("ok",)]:
                detail = "; ".join(str(r[0]) for r in rows[:3])
                raise StoreError(f"{self.path}: database is corrupt: {detail}")

    def close(self) -> None:
        """Close the connection (after a best-effort `PRAGMA optimize`)."""
        with self._lock:
            try:
                self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass  # a closed or damaged database: closing is what matters
            try:
                self._conn.close()
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: close failed: {e}") from e

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as e:
                raise self._error(e) from e

    def _error(self, e: sqlite3.Error) -> StoreError:
        if _unavailable(e):
            return StoreUnavailable(f"{self.path}: {e}")
        if isinstance(e, sqlite3.DatabaseError):
            return StoreError(f"{self.path}: {_describe(e)}")
        return StoreError(f"{self.path}: {e}")

    @contextmanager
    def _write(self, *, bump: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; with bump=True, meta.revision += 1 inside it."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    if bump:
                        conn.execute(
                            "UPDATE meta SET value = value + 1 WHERE key = 'revision'"
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.IntegrityError as e:
                raise Conflict(f"{self.path}: {e}") from e
            except sqlite3.Error as e:
                self.write_failing = _unavailable(e)
                raise self._error(e) from e
            self.write_failing = False

    def _delete(self, table: str, row_id: int, what: str, *, bump: bool) -> None:
        """Delete one row of `table` by id (one transaction), or NotFound("no {what} ...")."""
        with self._write(bump=bump) as c:
            if c.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,)).rowcount == 0:
                raise NotFound(f"no {what} with id {row_id}")

    def revision(self) -> int:
        with self._read() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return int(row[0])

    # children ------------------------------------------------------------------------

    def add_child(self, name: str, born: date, *, lang: str = "vi") -> Child:
        name, born, lang = _check_child(name, born, lang)
        with self._write(bump=True) as c:
            self._ensure_unique_child(c, name, None)
            cur = c.execute(
                "INSERT INTO children (name, born, lang) VALUES (?, ?, ?)",
                (name, born.isoformat(), lang),
            )
            child_id = _lastrowid(cur)
        return Child(child_id, name, born, lang)

    def update_child(self, child_id: int, *, name: str, born: date, lang: str) -> Child:
        name, born, lang = _check_child(name, born, lang)
        with self._write(bump=True) as c:
            self._ensure_unique_child(c, name, child_id)
            cur = c.execute(
                "UPDATE children SET name = ?, born = ?, lang = ? WHERE id = ?",
                (name, born.isoformat(), lang, child_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no child with id {child_id}")
        return Child(child_id, name, born, lang)

    @staticmethod
    def _ensure_unique_child(c: sqlite3.Connection, name: str, own_id: int | None) -> None:
        key = name.casefold()
        for other_id, other in c.execute("SELECT id, name FROM children"):
            if other_id != own_id and str(other).casefold() == key:
                raise Conflict(f"a child named {name!r} already exists")

    def delete_child(self, child_id: int) -> None:
        """Delete the child with their rules, schedules, grants, requests and browsing
        history; their devices become unassigned. A household exception that listed only
        this child is deleted (an empty list would mean every child)."""
        with self._write(bump=True) as c:
            cur = c.execute("DELETE FROM children WHERE id = ?", (child_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no child with id {child_id}")
            c.execute("DELETE FROM activity WHERE child_id = ?", (child_id,))
            c.execute("DELETE FROM requests WHERE child_id = ?", (child_id,))
            rows = c.execute("SELECT id, child_ids FROM exceptions").fetchall()
            for exc_id, raw in rows:
                ids = [int(i) for i in json.loads(raw)]
                if child_id in ids:
                    ids.remove(child_id)
                    if ids:
                        c.execute(
                            "UPDATE exceptions SET child_ids = ? WHERE id = ?",
                            (json.dumps(ids), exc_id),
                        )
                    else:
                        c.execute("DELETE FROM exceptions WHERE id = ?", (exc_id,))

    _CHILD_COLUMNS = "SELECT id, name, born, lang FROM children"  # the columns _child reads

    def children(self) -> list[Child]:
        with self._read() as c:
            rows = c.execute(self._CHILD_COLUMNS + " ORDER BY id").fetchall()
        return [_child(r) for r in rows]

    def child(self, child_id: int) -> Child:
        with self._read() as c:
            row = _by_id(c, self._CHILD_COLUMNS, child_id, what="child")
        return _child(row)

    def child_by_name(self, name: str) -> Child:
        key = name.strip().casefold()
        for child in self.children():
            if child.name.casefold() == key:
                return child
        raise NotFound(f"no child named {name!r}")

    def settings(self, child_id: int) -> ChildSettings:
        with self._read() as c:
            row = _by_id(c, "SELECT settings, paused_until FROM children", child_id, what="child")
        return _settings_from(json.loads(row[0]), _dt(row[1]))

    def save_settings(self, child_id: int, settings: ChildSettings) -> None:
        """Save every field, paused_until included."""
        _check_settings(settings)
        data = json.dumps(_settings_to(settings), sort_keys=True)
        with self._write(bump=True) as c:
            cur = c.execute(
                "UPDATE children SET settings = ?, paused_until = ? WHERE id = ?",
                (data, _ts(settings.paused_until), child_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no child with id {child_id}")

    def set_pause(self, child_id: int, until: datetime | None) -> None:
        """Pause the child's internet until `until` (None resumes)."""
        with self._write(bump=True) as c:
            cur = c.execute(
                "UPDATE children SET paused_until = ? WHERE id = ?", (_ts(until), child_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no child with id {child_id}")

    # rules, schedules, exceptions, grants --------------------------------------------

    def add_rule(self, child_id: int, domain: str, kind: str) -> Rule:
        """Add an allow/deny/always rule (domain covers its subdomains).

        Idempotent: an identical rule is returned as is. allow and deny exclude each
        other: adding one removes the other for the same child and domain.
        """
        if kind not in RULE_KINDS:
            raise StoreError(f"rule kind {kind!r} is not one of {', '.join(RULE_KINDS)}")
        name = _domain(domain)
        with self._write(bump=True) as c:
            self._need_child(c, child_id)
            row = c.execute(
                "SELECT id FROM rules WHERE child_id = ? AND domain = ? AND kind = ?",
                (child_id, name, kind),
            ).fetchone()
            if row is not None:
                return Rule(int(row[0]), child_id, name, kind)
            opposite = {"allow": "deny", "deny": "allow"}.get(kind)
            if opposite:
                c.execute(
                    "DELETE FROM rules WHERE child_id = ? AND domain = ? AND kind = ?",
                    (child_id, name, opposite),
                )
            cur = c.execute(
                "INSERT INTO rules (child_id, domain, kind) VALUES (?, ?, ?)",
                (child_id, name, kind),
            )
            return Rule(_lastrowid(cur), child_id, name, kind)

    def remove_rule(self, rule_id: int) -> None:
        self._delete("rules", rule_id, "rule", bump=True)

    def rules(self, child_id: int | None = None) -> list[Rule]:
        sql, params = _where(
            "SELECT id, child_id, domain, kind FROM rules", "child_id = ?", child_id
        )
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY domain, id", params).fetchall()
        return [Rule(int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows]

    def add_schedule(self, child_id: int, schedule: Schedule) -> Schedule:
        _check_schedule(schedule)
        with self._write(bump=True) as c:
            self._need_child(c, child_id)
            cur = c.execute(
                "INSERT INTO schedules (child_id, name, kind, weekdays, start, end_,"
                " categories, services) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (child_id, *_schedule_row(schedule)),
            )
            return replace(schedule, id=_lastrowid(cur))

    def remove_schedule(self, schedule_id: int) -> None:
        self._delete("schedules", schedule_id, "schedule", bump=True)

    def schedules(self, child_id: int) -> list[Schedule]:
        with self._read() as c:
            rows = c.execute(
                "SELECT id, name, kind, weekdays, start, end_, categories, services"
                " FROM schedules WHERE child_id = ? ORDER BY id",
                (child_id,),
            ).fetchall()
        return [_schedule(r) for r in rows]

    def add_exception(self, exc: HouseholdException) -> HouseholdException:
        if not exc.name.strip():
            raise StoreError("exception name is empty")
        if exc.last_day < exc.first_day:
            raise StoreError(
                f"exception {exc.name!r}: last day {exc.last_day} is before {exc.first_day}"
            )
        if exc.mode not in ("suspend", "replace"):
            raise StoreError(f"exception {exc.name!r}: mode {exc.mode!r} is not suspend/replace")
        for s in exc.schedules:
            _check_schedule(s)
        windows = [_schedule_json(s) for s in exc.schedules]
        with self._write(bump=True) as c:
            for child_id in exc.child_ids:
                self._need_child(c, child_id)
            cur = c.execute(
                "INSERT INTO exceptions (name, first_day, last_day, child_ids, mode, schedules)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    exc.name.strip(),
                    exc.first_day.isoformat(),
                    exc.last_day.isoformat(),
                    json.dumps(sorted(exc.child_ids)),
                    exc.mode,
                    json.dumps(windows),
                ),
            )
            return replace(exc, name=exc.name.strip(), id=_lastrowid(cur))

    def remove_exception(self, exc_id: int) -> None:
        self._delete("exceptions", exc_id, "exception", bump=True)

    def exceptions(self) -> list[HouseholdException]:
        with self._read() as c:
            rows = c.execute(
                "SELECT id, name, first_day, last_day, child_ids, mode, schedules"
                " FROM exceptions ORDER BY first_day, id"
            ).fetchall()
        return [
            HouseholdException(
                name=str(r[1]),
                first_day=date.fromisoformat(r[2]),
                last_day=date.fromisoformat(r[3]),
                child_ids=frozenset(int(i) for i in json.loads(r[4])),
                mode=str(r[5]),
                schedules=tuple(_schedule_from_json(s) for s in json.loads(r[6])),
                id=int(r[0]),
            )
            for r in rows
        ]

    def add_grant(self, grant: Grant) -> Grant:
        if (grant.domain is None) == (grant.category is None):
            raise StoreError("a grant needs exactly one of domain or category")
        domain = _domain(grant.domain) if grant.domain is not None else None
        with self._write(bump=True) as c:
            self._need_child(c, grant.child_id)
            cur = c.execute(
                "INSERT INTO grants (child_id, until, domain, category) VALUES (?, ?, ?, ?)",
                (grant.child_id, _ts(grant.until), domain, grant.category),
            )
            return Grant(
                grant.child_id, _utc(grant.until), domain, grant.category, _lastrowid(cur)
            )

    def remove_grant(self, grant_id: int) -> None:
        """End a grant early."""
        self._delete("grants", grant_id, "grant", bump=True)

    def grants(self, *, active_at: datetime | None = None) -> list[Grant]:
        sql, params = _where(
            "SELECT id, child_id, until, domain, category FROM grants", "until > ?", _ts(active_at)
        )
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY until, id", params).fetchall()
        return [Grant(int(r[1]), _dt_req(r[2]), r[3], r[4], int(r[0])) for r in rows]

    def purge_grants(self, ended_before: datetime) -> int:
        """Delete grants that ended before the time (housekeeping; no revision bump)."""
        with self._write() as c:
            cur = c.execute("DELETE FROM grants WHERE until <= ?", (_ts(ended_before),))
            return int(cur.rowcount)

    @staticmethod
    def _need_child(c: sqlite3.Connection, child_id: int) -> None:
        if c.execute("SELECT 1 FROM children WHERE id = ?", (child_id,)).fetchone() is None:
            raise NotFound(f"no child with id {child_id}")

    # devices -------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        with self._read() as c:
            return self._devices(c)

    @staticmethod
    def _devices(c: sqlite3.Connection, device_id: int | None = None) -> list[Device]:
        sql, params = _where(
            "SELECT id, name, child_id, adults, new FROM devices", "id = ?", device_id
        )
        rows = c.execute(sql + " ORDER BY id", params).fetchall()
        idents: dict[int, list[str]] = {}
        if device_id is None:
            q = c.execute("SELECT device_id, identifier FROM identifiers ORDER BY identifier")
        else:
            q = c.execute(
                "SELECT device_id, identifier FROM identifiers WHERE device_id = ?"
                " ORDER BY identifier",
                (device_id,),
            )
        for dev, ident in q:
            idents.setdefault(int(dev), []).append(str(ident))
        out = []
        for r in rows:
            owner: int | str | None = None
            if r[2] is not None:
                owner = int(r[2])
            elif r[3]:
                owner = ADULTS
            out.append(
                Device(int(r[0]), str(r[1]), tuple(idents.get(int(r[0]), ())), owner, bool(r[4]))
            )
        return out

    def _device(self, c: sqlite3.Connection, device_id: int) -> Device:
        found = self._devices(c, device_id)
        if not found:
            raise NotFound(f"no device with id {device_id}")
        return found[0]

    def device(self, device_id: int) -> Device:
        with self._read() as c:
            return self._device(c, device_id)

    def device_by_identifier(self, identifier: str) -> Device | None:
        ident = _identifier(identifier)
        with self._read() as c:
            row = c.execute(
                "SELECT device_id FROM identifiers WHERE identifier = ?", (ident,)
            ).fetchone()
            return None if row is None else self._device(c, int(row[0]))

    def upsert_device(
        self, identifier: str, *, name: str | None = None, owner: int | str | None = None
    ) -> Device:
        """The device holding `identifier`, created when unknown.

        On an existing device, a given name/owner replaces the old one (None leaves it).
        A created device is `new` (waiting for the parent) unless an owner is given.
        """
        ident = _identifier(identifier)
        if name is not None:
            name = _check_name(name, "device name")
        with self._write(bump=True) as c:
            row = c.execute(
                "SELECT device_id FROM identifiers WHERE identifier = ?", (ident,)
            ).fetchone()
            child_id, adults = self._owner_columns(c, owner)
            if row is None:
                cur = c.execute(
                    "INSERT INTO devices (name, child_id, adults, new, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name or ident, child_id, adults, int(owner is None), _ts(_now())),
                )
                device_id = _lastrowid(cur)
                c.execute(
                    "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                    (ident, device_id),
                )
            else:
                device_id = int(row[0])
                if name is not None:
                    c.execute("UPDATE devices SET name = ? WHERE id = ?", (name, device_id))
                if owner is not None:
                    c.execute(
                        "UPDATE devices SET child_id = ?, adults = ?, new = 0 WHERE id = ?",
                        (child_id, adults, device_id),
                    )
            return self._device(c, device_id)

    def _owner_columns(
        self, c: sqlite3.Connection, owner: int | str | None
    ) -> tuple[int | None, int]:
        if owner is None:
            return None, 0
        if owner == ADULTS:
            return None, 1
        if isinstance(owner, int) and not isinstance(owner, bool):
            self._need_child(c, owner)
            return owner, 0
        raise StoreError(f"device owner {owner!r} is not a child id, {ADULTS!r} or None")

    def set_owner(self, device_id: int, owner: int | str | None) -> Device:
        """Assign the device (None: unassigned, gets the default profile). Clears `new`."""
        with self._write(bump=True) as c:
            child_id, adults = self._owner_columns(c, owner)
            cur = c.execute(
                "UPDATE devices SET child_id = ?, adults = ?, new = 0 WHERE id = ?",
                (child_id, adults, device_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no device with id {device_id}")
            return self._device(c, device_id)

    def rename_device(self, device_id: int, name: str) -> Device:
        name = _check_name(name, "device name")
        with self._write(bump=True) as c:
            cur = c.execute("UPDATE devices SET name = ? WHERE id = ?", (name, device_id))
            if cur.rowcount == 0:
                raise NotFound(f"no device with id {device_id}")
            return self._device(c, device_id)

    def delete_device(self, device_id: int) -> None:
        self._delete("devices", device_id, "device", bump=True)

    def add_identifier(self, device_id: int, identifier: str) -> Device:
        """Attach an address to the device; Conflict if another device holds it."""
        ident = _identifier(identifier)
        with self._write(bump=True) as c:
            self._device(c, device_id)
            row = c.execute(
                "SELECT device_id FROM identifiers WHERE identifier = ?", (ident,)
            ).fetchone()
            if row is not None and int(row[0]) != device_id:
                raise Conflict(f"{ident} already belongs to device {int(row[0])}")
            if row is None:
                c.execute(
                    "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                    (ident, device_id),
                )
            return self._device(c, device_id)

    def remove_identifier(self, identifier: str) -> None:
        ident = _identifier(identifier)
        with self._write(bump=True) as c:
            cur = c.execute("DELETE FROM identifiers WHERE identifier = ?", (ident,))
            if cur.rowcount == 0:
                raise NotFound(f"no device has identifier {ident}")

    def merge_devices(self, keep_id: int, other_id: int) -> Device:
        """Fold `other` into `keep`: identifiers, per-day counts, last seen, activity rows
        and requests move; keep's name stays; keep's owner stays unless it has none."""
        if keep_id == other_id:
            raise StoreError(f"cannot merge device {keep_id} with itself")
        with self._write(bump=True) as c:
            keep, other = self._device(c, keep_id), self._device(c, other_id)
            c.execute(
                "UPDATE identifiers SET device_id = ? WHERE device_id = ?", (keep_id, other_id)
            )
            c.execute(
                "INSERT INTO device_days (device_id, day, queries)"
                " SELECT ?, day, queries FROM device_days WHERE device_id = ? AND true"
                " ON CONFLICT (device_id, day) DO UPDATE SET queries = queries + excluded.queries",
                (keep_id, other_id),
            )
            c.execute("DELETE FROM device_days WHERE device_id = ?", (other_id,))
            c.execute(
                "UPDATE devices SET last_seen = max(coalesce(last_seen, 0),"
                " coalesce((SELECT last_seen FROM devices WHERE id = ?), 0)) WHERE id = ?",
                (other_id, keep_id),
            )
            c.execute(
                "UPDATE devices SET last_seen = NULL WHERE id = ? AND last_seen = 0", (keep_id,)
            )
            c.execute("UPDATE activity SET device_id = ? WHERE device_id = ?", (keep_id, other_id))
            c.execute("UPDATE requests SET device_id = ? WHERE device_id = ?", (keep_id, other_id))
            if keep.owner is None and other.owner is not None:
                child_id, adults = self._owner_columns(c, other.owner)
                c.execute(
                    "UPDATE devices SET child_id = ?, adults = ? WHERE id = ?",
                    (child_id, adults, keep_id),
                )
            c.execute(
                "UPDATE devices SET new = ? WHERE id = ?", (int(keep.new and other.new), keep_id)
            )
            c.execute("DELETE FROM devices WHERE id = ?", (other_id,))
            return self._device(c, keep_id)

    def seen(self, sightings: Iterable[tuple[str, str | None, datetime]]) -> None:
        """Record (ip, mac, at) sightings (DNS clients, DHCP leases, neighbour table).

        Updates last_seen. An unknown MAC or IPv4 address becomes a new device (IPv6
        addresses are never learnt, see _seen_one). With a MAC, the IP follows the MAC: if
        another device held that IP through a lease (it has a MAC itself), the IP moves to
        this MAC's device; an IP the parent pinned to a device without any MAC stays put.
        Bad addresses are skipped (logged at debug). Bumps the revision only when
        identifiers or devices changed.
        """
        items = list(sightings)
        if not items:
            return
        changed = False
        with self._write() as c:
            for ip, mac, at in items:
                try:
                    ip_n = _identifier(ip) if ip else None
                    mac_n = _identifier(mac) if mac else None
                except StoreError as e:
                    log.debug("sighting skipped: %s", e)
                    continue
                changed |= self._seen_one(c, ip_n, mac_n, _ts_req(at))
            if changed:
                c.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")

    def _seen_one(
        self, c: sqlite3.Connection, ip: str | None, mac: str | None, at: int
    ) -> bool:
        def holder(ident: str | None) -> int | None:
            if ident is None:
                return None
            row = c.execute(
                "SELECT device_id FROM identifiers WHERE identifier = ?", (ident,)
            ).fetchone()
            return None if row is None else int(row[0])

        changed = False
        by_mac, by_ip = holder(mac), holder(ip)
        device_id = by_mac if by_mac is not None else by_ip
        if ip is not None and ":" in ip:
            # IPv6 addresses are not learnt: privacy addresses rotate daily and would pile
            # up as identifiers and "new devices". IPv6 clients are known by MAC (from the
            # neighbour table) or by an address/prefix the parent added; others get the
            # default profile.
            if device_id is None and mac is None:
                return False
            ip = None if by_ip is None else ip
            if ip is None:
                by_ip = None
        if mac is not None and by_mac is None and by_ip is not None and self._has_mac(c, by_ip):
            # a new MAC got an address another device had by lease: a new device
            c.execute("DELETE FROM identifiers WHERE identifier = ?", (ip,))
            device_id = None
        if device_id is None:
            first = mac or ip
            if first is None:
                return False
            cur = c.execute(
                "INSERT INTO devices (name, new, created) VALUES (?, 1, ?)", (first, at)
            )
            device_id = _lastrowid(cur)
            for ident in (mac, ip):
                if ident is not None:
                    c.execute(
                        "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                        (ident, device_id),
                    )
            changed = True
        elif mac is not None and ip is not None and by_mac is not None and by_ip != by_mac:
            if by_ip is None:
                c.execute(
                    "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                    (ip, by_mac),
                )
                changed = True
            elif self._has_mac(c, by_ip):
                c.execute(
                    "UPDATE identifiers SET device_id = ? WHERE identifier = ?", (by_mac, ip)
                )
                changed = True
        elif mac is not None and by_mac is None and by_ip is not None:
            # a device known by IP only shows its MAC: remember it.
            if not self._has_mac(c, by_ip):
                c.execute(
                    "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                    (mac, by_ip),
                )
                changed = True
        c.execute(
            "UPDATE devices SET last_seen = max(coalesce(last_seen, 0), ?) WHERE id = ?",
            (at, device_id),
        )
        return changed

    @staticmethod
    def _has_mac(c: sqlite3.Connection, device_id: int) -> bool:
        row = c.execute(
            "SELECT 1 FROM identifiers WHERE device_id = ? AND identifier LIKE '__:__:__:__:__:__'",
            (device_id,),
        ).fetchone()
        return row is not None

    def device_stats(self, day: date) -> dict[int, tuple[datetime | None, int]]:
        """device id -> (last seen, queries that day). `day` is the event's own date
        (events carry the household zone). Every device appears, with 0 when idle."""
        with self._read() as c:
            rows = c.execute(
                "SELECT d.id, d.last_seen, coalesce(dd.queries, 0) FROM devices d"
                " LEFT JOIN device_days dd ON dd.device_id = d.id AND dd.day = ?",
                (day.isoformat(),),
            ).fetchall()
        return {int(r[0]): (_dt(r[1]), int(r[2])) for r in rows}

    # activity log --------------------------------------------------------------------

    def log_queries(self, events: Sequence[QueryEvent]) -> None:
        """Insert a batch in one transaction; also counts queries per device and day and
        updates the devices' last_seen. No revision bump."""
        if not events:
            return
        rows = [
            (
                _ts_req(e.at), e.client, e.device_id, e.child_id, e.qname, e.qtype,
                e.action, e.reason, e.source,
            )
            for e in events
        ]
        counts: dict[tuple[int, str], int] = {}
        last: dict[int, int] = {}
        for e, row in zip(events, rows, strict=True):
            if e.device_id is not None:
                key = (e.device_id, e.at.date().isoformat())
                counts[key] = counts.get(key, 0) + 1
                last[e.device_id] = max(last.get(e.device_id, 0), int(row[0]))
        with self._write() as c:
            c.executemany(
                "INSERT INTO activity (at, client, device_id, child_id, qname, qtype, action,"
                " reason, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            c.executemany(
                "INSERT INTO device_days (device_id, day, queries)"
                " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?)"
                " ON CONFLICT (device_id, day) DO UPDATE SET queries = queries + excluded.queries",
                [(d, day, n, d) for (d, day), n in counts.items()],
            )
            c.executemany(
                "UPDATE devices SET last_seen = max(coalesce(last_seen, 0), ?) WHERE id = ?",
                [(t, d) for d, t in last.items()],
            )

    def activity(
        self,
        *,
        device_id: int | None = None,
        child_id: int | None = None,
        blocked_only: bool = False,
        search: str = "",
        since: datetime | None = None,
        limit: int = 500,
        clients: Sequence[str] = (),
    ) -> list[ActivityRow]:
        """Newest first. `search` is a plain substring of the name (no wildcards).
        With `device_id`, `clients` (the device's addresses) also selects the rows logged
        from them before the device was known (its first lookups, device_id NULL)."""
        where: list[str] = []
        params: list[object] = []
        if device_id is not None:
            if clients:
                marks = ", ".join("?" * len(clients))
                where.append(f"(device_id = ? OR (device_id IS NULL AND client IN ({marks})))")
                params.extend([device_id, *clients])
            else:
                where.append("device_id = ?")
                params.append(device_id)
        if child_id is not None:
            where.append("child_id = ?")
            params.append(child_id)
        if blocked_only:
            where.append("action = 'block'")
        if search:
            where.append("qname LIKE ? ESCAPE '\\'")
            esc = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{esc}%")
        if since is not None:
            where.append("at >= ?")
            params.append(_ts(since))
        sql = (
            "SELECT id, at, client, device_id, child_id, qname, qtype, action, reason, source"
            " FROM activity"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        params.append(max(0, int(limit)))
        with self._read() as c:
            rows = c.execute(sql, params).fetchall()
        return [
            ActivityRow(
                int(r[0]),
                QueryEvent(
                    at=_dt_req(r[1]), client=r[2], device_id=r[3], child_id=r[4], qname=r[5],
                    qtype=r[6], action=r[7], reason=r[8], source=r[9],
                ),
            )
            for r in rows
        ]

    def purge_activity(self, older_than: datetime) -> int:
        """Delete activity rows (and per-day counts) older than the time; returns rows."""
        cutoff = _ts_req(older_than)
        with self._write() as c:
            n = int(c.execute("DELETE FROM activity WHERE at < ?", (cutoff,)).rowcount)
            c.execute(
                "DELETE FROM device_days WHERE day < ?", (_utc(older_than).date().isoformat(),)
            )
        return n

    def summary(self, day_start: datetime) -> dict[int | None, dict[str, object]]:
        """child id (None: unassigned/adults) -> {"queries", "blocked",
        "top_categories": [(cat, n)] (5 most blocked), "bypass", "security"} since
        day_start."""
        with self._read() as c:
            rows = c.execute(
                "SELECT child_id, action, reason, count(*) FROM activity WHERE at >= ?"
                " GROUP BY child_id, action, reason",
                (_ts_req(day_start),),
            ).fetchall()
        counts: dict[int | None, dict[str, int]] = {}
        cats: dict[int | None, dict[str, int]] = {}
        for child_id, action, reason, n in rows:
            s = counts.setdefault(
                child_id, {"queries": 0, "blocked": 0, "bypass": 0, "security": 0}
            )
            s["queries"] += n
            reason = str(reason or "")
            if action == "block":
                s["blocked"] += n
            if reason.startswith("bypass:"):
                s["bypass"] += n
            elif reason.startswith("security:"):
                s["security"] += n
            elif reason.startswith("category:") and action == "block":
                cat = reason.split(":")[1]
                bucket = cats.setdefault(child_id, {})
                bucket[cat] = bucket.get(cat, 0) + n
        out: dict[int | None, dict[str, object]] = {}
        for child_id, s in counts.items():
            top = sorted(cats.get(child_id, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            out[child_id] = {**s, "top_categories": top}
        return out

    def activity_counts(
        self, start: datetime, end: datetime
    ) -> list[tuple[int | None, int, str, str, str, int]]:
        """(child id, day index from `start` in whole 24 h days, action, reason, name, count)
        for the activity between start and end (the weekly report)."""
        t0 = _ts_req(start)
        with self._read() as c:
            rows = c.execute(
                "SELECT child_id, (at - ?) / 86400000000 AS d, action, reason, qname, count(*)"
                " FROM activity WHERE at >= ? AND at < ?"
                " GROUP BY child_id, d, action, reason, qname",
                (t0, t0, _ts_req(end)),
            ).fetchall()
        return [(r[0], int(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5])) for r in rows]

    def devices_created(self, start: datetime, end: datetime) -> list[int]:
        """Ids of the devices first seen between start and end (the weekly report)."""
        with self._read() as c:
            rows = c.execute(
                "SELECT id FROM devices WHERE created >= ? AND created < ? ORDER BY id",
                (_ts_req(start), _ts_req(end)),
            ).fetchall()
        return [int(r[0]) for r in rows]

    # access requests -----------------------------------------------------------------

    def add_request(
        self, *, child_id: int | None, device_id: int | None, client: str, domain: str,
        reason: str, message: str,
    ) -> AccessRequest:
        """A child asks to open a blocked name. The message is stored as text (escape
        on output); at most 500 characters are kept."""
        name = _domain(domain)
        message = message.strip()[:500]
        created = _now()
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO requests (child_id, device_id, client, domain, reason, message,"
                " created, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
                (child_id, device_id, client, name, reason, message, _ts(created)),
            )
            return self._request(c, _lastrowid(cur))

    _REQUEST_COLUMNS = (
        "SELECT id, child_id, device_id, client, domain, reason, message, created, status,"
        " answered_by, answered_at, minutes FROM requests"
    )

    def requests(
        self, *, status: str | None = None, limit: int | None = None
    ) -> list[AccessRequest]:
        """Newest first; `limit` caps the rows (None: all)."""
        sql = self._REQUEST_COLUMNS
        params: list[object] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        with self._read() as c:
            rows = c.execute(sql, params).fetchall()
        return [_request(r) for r in rows]

    def purge_requests(self, older_than: datetime) -> int:
        """Delete answered requests created before the time (pending ones stay)."""
        with self._write() as c:
            cur = c.execute(
                "DELETE FROM requests WHERE status != 'pending' AND created < ?",
                (_ts_req(older_than),),
            )
            return int(cur.rowcount)

    def _request(self, c: sqlite3.Connection, request_id: int) -> AccessRequest:
        row = _by_id(c, self._REQUEST_COLUMNS, request_id, what="request")
        return _request(row)

    def request(self, request_id: int) -> AccessRequest:
        with self._read() as c:
            return self._request(c, request_id)

    def answer_request(
        self, request_id: int, *, approve: bool, minutes: int, by: str, now: datetime
    ) -> AccessRequest:
        """Approve (minutes > 0: a domain Grant until now+minutes; 0: an allow Rule) or
        decline. Conflict if already answered or the request has no child to apply to
        (then the child is taken from the device's owner when possible)."""
        if minutes < 0:
            raise StoreError(f"minutes must be >= 0, not {minutes}")
        with self._write(bump=approve) as c:
            req = self._request(c, request_id)
            if req.status != "pending":
                raise Conflict(f"request {request_id} was already {req.status}")
            if approve:
                child_id = req.child_id
                if child_id is None and req.device_id is not None:
                    row = c.execute(
                        "SELECT child_id FROM devices WHERE id = ?", (req.device_id,)
                    ).fetchone()
                    child_id = None if row is None or row[0] is None else int(row[0])
                if child_id is None:
                    raise Conflict(f"request {request_id} belongs to no child")
                self._need_child(c, child_id)
                if req.reason.startswith("budget:"):
                    # "more time": extra minutes for that budget, for the household day of
                    # `now` (callers pass the household clock's now)
                    if minutes <= 0:
                        raise StoreError("more time needs a number of minutes, not 'always'")
                    self._add_extra(c, child_id, now.date(), req.reason[7:], minutes, by)
                elif minutes > 0:
                    c.execute(
                        "INSERT INTO grants (child_id, until, domain) VALUES (?, ?, ?)",
                        (child_id, _ts(now + timedelta(minutes=minutes)), req.domain),
                    )
                else:
                    c.execute(
                        "DELETE FROM rules WHERE child_id = ? AND domain = ? AND kind = 'deny'",
                        (child_id, req.domain),
                    )
                    c.execute(
                        "INSERT OR IGNORE INTO rules (child_id, domain, kind)"
                        " VALUES (?, ?, 'allow')",
                        (child_id, req.domain),
                    )
            c.execute(
                "UPDATE requests SET status = ?, answered_by = ?, answered_at = ?, minutes = ?"
                " WHERE id = ?",
                (
                    "approved" if approve else "declined",
                    by,
                    _ts(now),
                    minutes if approve else None,
                    request_id,
                ),
            )
            return self._request(c, request_id)

    # daily time budgets (policy/budgets.py) ------------------------------------------------

    def set_budget(self, child_id: int, slug: str, *, school_days: int, weekends: int) -> Budget:
        """Add or change a child's budget (minutes a day, 0..1440). The slug is checked
        against the catalogues by policy/budgets.py before it gets here."""
        if not _BUDGET_SLUG.fullmatch(slug or ""):
            raise StoreError(f"budget {slug!r}: not a service or category slug")
        for what, minutes in (("school_days", school_days), ("weekends", weekends)):
            if not isinstance(minutes, int) or isinstance(minutes, bool) or not (
                0 <= minutes <= 1440
            ):
                raise StoreError(f"budget {slug}: {what} must be 0..1440 minutes, not {minutes!r}")
        with self._write(bump=True) as c:
            self._need_child(c, child_id)
            c.execute(
                "INSERT INTO budgets (child_id, slug, school_days, weekends) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (child_id, slug) DO UPDATE SET school_days = excluded.school_days,"
                " weekends = excluded.weekends",
                (child_id, slug, school_days, weekends),
            )
        return Budget(child_id, slug, school_days, weekends)

    def remove_budget(self, child_id: int, slug: str) -> None:
        with self._write(bump=True) as c:
            cur = c.execute(
                "DELETE FROM budgets WHERE child_id = ? AND slug = ?", (child_id, slug)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no budget {slug!r} for child {child_id}")

    def budgets(self, child_id: int | None = None) -> list[Budget]:
        sql, params = _where(
            "SELECT child_id, slug, school_days, weekends FROM budgets", "child_id = ?", child_id
        )
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY child_id, slug", params).fetchall()
        return [Budget(int(r[0]), r[1], int(r[2]), int(r[3])) for r in rows]

    def budget_usage(self, day: date, child_id: int | None = None) -> list[BudgetUsage]:
        """The minutes counted on a household day."""
        sql = "SELECT child_id, key, minutes, last_at, bridge FROM budget_usage WHERE day = ?"
        params: list[object] = [day.isoformat()]
        if child_id is not None:
            sql += " AND child_id = ?"
            params.append(child_id)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY child_id, key", params).fetchall()
        return [BudgetUsage(int(r[0]), day, r[1], int(r[2]), _dt(r[3]), int(r[4])) for r in rows]

    def save_budget_usage(self, rows: Sequence[BudgetUsage], *, spent: bool = False) -> None:
        """Write counted minutes (no revision bump: counting is not a policy change);
        `spent` bumps the revision so the policy rebuilds and the spent budget blocks.
        Rows of children deleted meanwhile are skipped."""
        with self._write(bump=spent) as c:
            for u in rows:
                c.execute(
                    "INSERT INTO budget_usage (child_id, day, key, minutes, last_at, bridge)"
                    " SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM children WHERE id = ?)"
                    " ON CONFLICT (child_id, day, key) DO UPDATE SET minutes = excluded.minutes,"
                    " last_at = excluded.last_at, bridge = excluded.bridge",
                    (u.child_id, u.day.isoformat(), u.key, u.minutes, _ts(u.last_at), u.bridge,
                     u.child_id),
                )

    def add_budget_extra(
        self, child_id: int, day: date, slug: str, minutes: int, *, by: str
    ) -> int:
        """Extra minutes for one budget, on one household day ("more time"). Returns the
        day's extra total for that budget."""
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 < minutes <= 1440:
            raise StoreError(f"extra time must be 1..1440 minutes, not {minutes!r}")
        with self._write(bump=True) as c:
            self._need_child(c, child_id)
            if c.execute(
                "SELECT 1 FROM budgets WHERE child_id = ? AND slug = ?", (child_id, slug)
            ).fetchone() is None:
                raise NotFound(f"no budget {slug!r} for child {child_id}")
            self._add_extra(c, child_id, day, slug, minutes, by)
            row = c.execute(
                "SELECT sum(minutes) FROM budget_extra WHERE child_id = ? AND day = ? AND slug = ?",
                (child_id, day.isoformat(), slug),
            ).fetchone()
        return int(row[0] or 0)

    @staticmethod
    def _add_extra(
        c: sqlite3.Connection, child_id: int, day: date, slug: str, minutes: int, by: str
    ) -> None:
        c.execute(
            "INSERT INTO budget_extra (child_id, day, slug, minutes, by, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (child_id, day.isoformat(), slug, minutes, by, _ts(_now())),
        )

    def budget_extras(self, day: date) -> dict[tuple[int, str], int]:
        """(child id, budget slug) -> extra minutes given for that household day."""
        with self._read() as c:
            rows = c.execute(
                "SELECT child_id, slug, sum(minutes) FROM budget_extra WHERE day = ?"
                " GROUP BY child_id, slug",
                (day.isoformat(),),
            ).fetchall()
        return {(int(r[0]), r[1]): int(r[2]) for r in rows}

    def purge_budget_usage(self, before: date) -> int:
        """Delete counts and extra time of days before `before` (housekeeping)."""
        with self._write() as c:
            n = c.execute("DELETE FROM budget_usage WHERE day < ?", (before.isoformat(),)).rowcount
            c.execute("DELETE FROM budget_extra WHERE day < ?", (before.isoformat(),))
        return int(n)

    # accounts, sessions, tokens, audit, login throttling -------------------------------

    def account_count(self) -> int:
        with self._read() as c:
            return int(c.execute("SELECT count(*) FROM accounts").fetchone()[0])

    _ACCOUNT_COLUMNS = (
        "SELECT id, username, password_hash, role, created, password_changed FROM accounts"
    )

    def add_account(self, username: str, password_hash: str, role: str) -> Account:
        username = _check_name(username, "username")
        if role not in ("parent", "admin"):
            raise StoreError(f"role {role!r} is not parent/admin")
        now = _ts(_now())
        with self._write() as c:
            if c.execute(
                "SELECT 1 FROM accounts WHERE username = ? COLLATE NOCASE", (username,)
            ).fetchone():
                raise Conflict(f"an account named {username!r} already exists")
            cur = c.execute(
                "INSERT INTO accounts (username, password_hash, role, created, password_changed)"
                " VALUES (?, ?, ?, ?, ?)",
                (username, password_hash, role, now, now),
            )
            row = c.execute(self._ACCOUNT_COLUMNS + " WHERE id = ?", (_lastrowid(cur),))
            return _account(row.fetchone())

    def account(self, username: str) -> Account | None:
        """By name, case-insensitively (ASCII)."""
        with self._read() as c:
            row = c.execute(
                self._ACCOUNT_COLUMNS + " WHERE username = ? COLLATE NOCASE", (username.strip(),)
            ).fetchone()
        return None if row is None else _account(row)

    def account_by_id(self, account_id: int) -> Account:
        with self._read() as c:
            row = _by_id(c, self._ACCOUNT_COLUMNS, account_id, what="account")
        return _account(row)

    def accounts(self) -> list[Account]:
        with self._read() as c:
            rows = c.execute(self._ACCOUNT_COLUMNS + " ORDER BY id").fetchall()
        return [_account(r) for r in rows]

    def set_password(self, account_id: int, password_hash: str) -> None:
        """Replace the hash and delete every session and API token of the account: a new
        password logs every other browser out, and a token a leaked password made must not
        outlive the password."""
        with self._write() as c:
            cur = c.execute(
                "UPDATE accounts SET password_hash = ?, password_changed = ? WHERE id = ?",
                (password_hash, _ts(_now()), account_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account with id {account_id}")
            c.execute("DELETE FROM sessions WHERE account_id = ?", (account_id,))
            c.execute("DELETE FROM tokens WHERE account_id = ?", (account_id,))

    def delete_account(self, account_id: int) -> None:
        """Delete the account with its sessions and tokens."""
        self._delete("accounts", account_id, "account", bump=False)

    def add_session(self, session: Session) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO sessions (id_hash, account_id, csrf, created, last_seen)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    session.id_hash, session.account_id, session.csrf,
                    _ts(session.created), _ts(session.last_seen),
                ),
            )

    def session(self, id_hash: str) -> Session | None:
        with self._read() as c:
            row = c.execute(
                "SELECT id_hash, account_id, csrf, created, last_seen FROM sessions"
                " WHERE id_hash = ?",
                (id_hash,),
            ).fetchone()
        if row is None:
            return None
        return Session(str(row[0]), int(row[1]), str(row[2]), _dt_req(row[3]), _dt_req(row[4]))

    def touch_session(self, id_hash: str, at: datetime) -> None:
        with self._write() as c:
            c.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (_ts(at), id_hash))

    def delete_session(self, id_hash: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

    def delete_sessions(self, account_id: int) -> None:
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE account_id = ?", (account_id,))

    def purge_sessions(self, idle_since: datetime, *, created_before: datetime) -> int:
        """Delete sessions idle since `idle_since` or created before `created_before`."""
        with self._write() as c:
            cur = c.execute(
                "DELETE FROM sessions WHERE last_seen < ? OR created < ?",
                (_ts(idle_since), _ts(created_before)),
            )
            return int(cur.rowcount)

    def add_token(self, account_id: int, name: str, token_hash: str) -> ApiToken:
        name = _check_name(name, "token name")
        now = _now()
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO tokens (account_id, name, token_hash, created) VALUES (?, ?, ?, ?)",
                (account_id, name, token_hash, _ts(now)),
            )
            return ApiToken(_lastrowid(cur), account_id, name, token_hash, _utc(now))

    _TOKEN_COLUMNS = "SELECT id, account_id, name, token_hash, created FROM tokens"  # _token

    def token(self, token_hash: str) -> ApiToken | None:
        with self._read() as c:
            row = c.execute(
                self._TOKEN_COLUMNS + " WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        return None if row is None else _token(row)

    def tokens(self, account_id: int | None = None) -> list[ApiToken]:
        sql, params = _where(self._TOKEN_COLUMNS, "account_id = ?", account_id)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY id", params).fetchall()
        return [_token(r) for r in rows]

    def delete_token(self, token_id: int) -> None:
        self._delete("tokens", token_id, "token", bump=False)

    def audit(self, who: str, action: str, detail: str = "") -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO audit (at, who, action, detail) VALUES (?, ?, ?, ?)",
                (_ts(_now()), who, action, detail),
            )

    def audit_log(self, *, limit: int = 200) -> list[AuditEntry]:
        """Newest first."""
        with self._read() as c:
            rows = c.execute(
                "SELECT at, who, action, detail FROM audit ORDER BY at DESC, id DESC LIMIT ?",
                (max(0, int(limit)),),
            ).fetchall()
        return [AuditEntry(_dt_req(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    def record_login_failure(
        self, key: str, at: datetime, *, window: timedelta = LOCKOUT_WINDOW
    ) -> int:
        """Record one failure; returns the failures for `key` within `window` before `at`
        (this one included). Failures older than a day are dropped on the way."""
        t = _ts_req(at)
        with self._write() as c:
            c.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", (key, t))
            c.execute(
                "DELETE FROM login_failures WHERE at < ?", (_ts_req(at - timedelta(days=1)),)
            )
            row = c.execute(
                "SELECT count(*) FROM login_failures WHERE key = ? AND at > ?",
                (key, _ts_req(at - window)),
            ).fetchone()
        return int(row[0])

    def login_failures(self, key: str, since: datetime) -> int:
        with self._read() as c:
            row = c.execute(
                "SELECT count(*) FROM login_failures WHERE key = ? AND at >= ?",
                (key, _ts(since)),
            ).fetchone()
        return int(row[0])

    def clear_login_failures(self, key: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM login_failures WHERE key = ?", (key,))

    def login_failure_state(self, key: str, since: datetime) -> tuple[int, datetime | None]:
        """(failures for `key` since, the last one's time or None)."""
        with self._read() as c:
            row = c.execute(
                "SELECT count(*), max(at) FROM login_failures WHERE key = ? AND at >= ?",
                (key, _ts(since)),
            ).fetchone()
        return int(row[0]), (_dt_req(row[1]) if row[1] is not None else None)

    def clear_login_failures_from(self, address: str) -> int:
        """Forget every failure from `address` (its "ip:", "setup:" and "pair:" keys)."""
        with self._write() as c:
            cur = c.execute(
                "DELETE FROM login_failures WHERE key IN (?, ?)"
                " OR substr(key, 1, ?) = ?",
                (f"ip:{address}", f"setup:{address}", len(address) + 6, f"pair:{address}|"),
            )
        return int(cur.rowcount)

    def lockouts(self, since: datetime) -> list[tuple[str, int, datetime]]:
        """(key, failures since, last failure), most failures first."""
        with self._read() as c:
            rows = c.execute(
                "SELECT key, count(*), max(at) FROM login_failures WHERE at >= ?"
                " GROUP BY key ORDER BY count(*) DESC, key",
                (_ts(since),),
            ).fetchall()
        return [(str(r[0]), int(r[1]), _dt_req(r[2])) for r in rows]

    # household settings and feed status -------------------------------------------------

    def get_setting(self, key: str, default: object = None) -> object:
        with self._read() as c:
            row = c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: object) -> None:
        """Store a JSON-encodable value (StoreError otherwise); bumps the revision."""
        try:
            raw = json.dumps(value, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise StoreError(f"setting {key!r}: value is not JSON-encodable: {e}") from e
        with self._write(bump=True) as c:
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, raw),
            )

    def save_feed_status(self, status: FeedStatus) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO feed_status (name, last_try, last_success, entries, rejected,"
                " error, etag, last_modified, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET last_try = excluded.last_try,"
                " last_success = excluded.last_success, entries = excluded.entries,"
                " rejected = excluded.rejected, error = excluded.error, etag = excluded.etag,"
                " last_modified = excluded.last_modified, sha256 = excluded.sha256",
                (
                    status.name, _ts(status.last_try), _ts(status.last_success), status.entries,
                    status.rejected, status.error, status.etag, status.last_modified,
                    status.sha256,
                ),
            )

    _FEED_COLUMNS = (
        "SELECT name, last_try, last_success, entries, rejected, error, etag, last_modified,"
        " sha256 FROM feed_status"
    )

    def feed_statuses(self) -> list[FeedStatus]:
        with self._read() as c:
            rows = c.execute(self._FEED_COLUMNS + " ORDER BY name").fetchall()
        return [_feed(r) for r in rows]

    def feed_status(self, name: str) -> FeedStatus | None:
        with self._read() as c:
            row = c.execute(self._FEED_COLUMNS + " WHERE name = ?", (name,)).fetchone()
        return None if row is None else _feed(row)


    # alerts: delivery queue, channel status, once-only marks, parents' preferences -------

    def enqueue_alerts(
        self, rows: Sequence[tuple[str, str, str, Mapping[str, object], datetime]]
    ) -> list[int]:
        """(channel, recipient, kind, payload, next_try) rows, one transaction; their ids."""
        created = _ts_req(_now())
        ids: list[int] = []
        with self._write() as c:
            for channel, recipient, kind, payload, next_try in rows:
                cur = c.execute(
                    "INSERT INTO alert_outbox (channel, recipient, kind, payload, created,"
                    " next_try) VALUES (?, ?, ?, ?, ?, ?)",
                    (channel, recipient, kind, json.dumps(payload), created, _ts_req(next_try)),
                )
                ids.append(_lastrowid(cur))
        return ids

    _OUTBOX_COLUMNS = (
        "SELECT id, channel, recipient, kind, payload, created, next_try, attempts, status,"
        " last_error FROM alert_outbox"
    )

    def due_alerts(self, now: datetime, *, limit: int = 50) -> list[OutboxRow]:
        """Pending rows whose next try has come, oldest first."""
        with self._read() as c:
            rows = c.execute(
                self._OUTBOX_COLUMNS + " WHERE status = 'pending' AND next_try <= ?"
                " ORDER BY next_try, id LIMIT ?",
                (_ts_req(now), max(0, int(limit))),
            ).fetchall()
        return [_outbox(r) for r in rows]

    def outbox(self, *, status: str | None = None, limit: int = 200) -> list[OutboxRow]:
        """Newest first."""
        sql, params = _where(self._OUTBOX_COLUMNS, "status = ?", status)
        with self._read() as c:
            rows = c.execute(
                sql + " ORDER BY id DESC LIMIT ?", (*params, max(0, int(limit)))
            ).fetchall()
        return [_outbox(r) for r in rows]

    def alert_done(self, row_id: int, channel: str, at: datetime) -> None:
        with self._write() as c:
            c.execute(
                "UPDATE alert_outbox SET status = 'sent', attempts = attempts + 1,"
                " last_error = '' WHERE id = ?",
                (row_id,),
            )
            c.execute(
                "INSERT INTO alert_channels (channel, last_ok) VALUES (?, ?)"
                " ON CONFLICT (channel) DO UPDATE SET last_ok = excluded.last_ok",
                (channel, _ts_req(at)),
            )

    def alert_failed(
        self, row_id: int, channel: str, error: str, at: datetime, *, retry_at: datetime | None
    ) -> None:
        """A failed try: retried at retry_at, or given up (None)."""
        error = error[:500]
        with self._write() as c:
            c.execute(
                "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?,"
                " status = ?, next_try = coalesce(?, next_try) WHERE id = ?",
                (error, "pending" if retry_at else "failed", _ts(retry_at), row_id),
            )
            c.execute(
                "INSERT INTO alert_channels (channel, last_error, last_error_at) VALUES (?, ?, ?)"
                " ON CONFLICT (channel) DO UPDATE SET last_error = excluded.last_error,"
                " last_error_at = excluded.last_error_at",
                (channel, error, _ts_req(at)),
            )

    def channel_statuses(self) -> dict[str, ChannelStatus]:
        with self._read() as c:
            rows = c.execute(
                "SELECT channel, last_ok, last_error, last_error_at FROM alert_channels"
            ).fetchall()
        return {
            str(r[0]): ChannelStatus(str(r[0]), _dt(r[1]), str(r[2]), _dt(r[3])) for r in rows
        }

    def purge_alerts(self, older_than: datetime) -> int:
        """Delete delivered and given-up alerts created before the time."""
        with self._write() as c:
            cur = c.execute(
                "DELETE FROM alert_outbox WHERE status != 'pending' AND created < ?",
                (_ts_req(older_than),),
            )
            return int(cur.rowcount)

    def mark(self, key: str, at: datetime) -> bool:
        """Remember `key` once; False when it was marked before (alerts sent once only)."""
        with self._write() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO alert_marks (key, at) VALUES (?, ?)", (key, _ts_req(at))
            )
            return cur.rowcount == 1

    def marked(self, key: str) -> datetime | None:
        with self._read() as c:
            row = c.execute("SELECT at FROM alert_marks WHERE key = ?", (key,)).fetchone()
        return None if row is None else _dt_req(row[0])

    def unmark(self, key: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM alert_marks WHERE key = ?", (key,))

    def alert_prefs(self) -> dict[int, AlertPrefs]:
        """account id -> the parent's alert preferences (accounts without any are absent)."""
        with self._read() as c:
            rows = c.execute(
                "SELECT account_id, email, lang, quiet_start, quiet_end FROM alert_prefs"
            ).fetchall()
        return {int(r[0]): AlertPrefs(int(r[0]), *(str(v) for v in r[1:])) for r in rows}

    def save_alert_prefs(self, prefs: AlertPrefs) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO alert_prefs (account_id, email, lang, quiet_start, quiet_end)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET"
                " email = excluded.email, lang = excluded.lang,"
                " quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end",
                (prefs.account_id, prefs.email, prefs.lang, prefs.quiet_start, prefs.quiet_end),
            )


    # site reports ------------------------------------------------------------------------

    def add_report(
        self, *, kind: str, domain: str, source: str, reporter: str = "", category: str = "",
        note: str = "", child_id: int | None = None, device_id: int | None = None,
    ) -> Report:
        """The note is stored as text (escape on output); at most 500 characters kept."""
        if kind not in REPORT_KINDS:
            raise StoreError(f"report kind must be one of {', '.join(REPORT_KINDS)}")
        name = _domain(domain)
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO reports (created, kind, domain, source, reporter, category, note,"
                " child_id, device_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_ts(_now()), kind, name, source, reporter[:100], category[:40],
                 note.strip()[:500], child_id, device_id),
            )
            return _report(_by_id(c, self._REPORT_COLUMNS, _lastrowid(cur), what="report"))

    _REPORT_COLUMNS = (
        "SELECT id, created, kind, domain, source, reporter, category, note, child_id,"
        " device_id, status, decided_by, decided_at, min_age FROM reports"
    )

    def reports(
        self, *, status: str | None = None, since: datetime | None = None, limit: int = 500
    ) -> list[Report]:
        """Newest first; `since` filters on the decision time for decided statuses."""
        where: list[str] = []
        params: list[object] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if since is not None:
            where.append("coalesce(decided_at, created) >= ?")
            params.append(_ts(since))
        sql = self._REPORT_COLUMNS + (" WHERE " + " AND ".join(where) if where else "")
        with self._read() as c:
            rows = c.execute(
                sql + " ORDER BY created DESC, id DESC LIMIT ?", (*params, max(0, int(limit)))
            ).fetchall()
        return [_report(r) for r in rows]

    def report(self, report_id: int) -> Report:
        with self._read() as c:
            return _report(_by_id(c, self._REPORT_COLUMNS, report_id, what="report"))

    def decide_report(
        self, report_id: int, *, status: str, by: str, at: datetime, category: str = "",
        min_age: int | None = None,
    ) -> Report:
        """Close an open report (Conflict if it was decided already)."""
        if status not in ("listed", "excepted", "dismissed"):
            raise StoreError(f"unknown report decision {status!r}")
        with self._write() as c:
            rep = _report(_by_id(c, self._REPORT_COLUMNS, report_id, what="report"))
            if rep.status != "open":
                raise Conflict(f"report {report_id} was already {rep.status}")
            c.execute(
                "UPDATE reports SET status = ?, decided_by = ?, decided_at = ?,"
                " category = coalesce(nullif(?, ''), category), min_age = ? WHERE id = ?",
                (status, by, _ts(at), category, min_age, report_id),
            )
            return _report(_by_id(c, self._REPORT_COLUMNS, report_id, what="report"))


# -- schema -------------------------------------------------------------------------------

# Each entry is one migration; PRAGMA user_version = its 1-based position. Append only.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('revision', 1);

    CREATE TABLE children (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        born TEXT NOT NULL,
        lang TEXT NOT NULL DEFAULT 'vi',
        settings TEXT NOT NULL DEFAULT '{}',
        paused_until INTEGER
    );
    CREATE TABLE rules (
        id INTEGER PRIMARY KEY,
        child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
        domain TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('allow', 'deny', 'always')),
        UNIQUE (child_id, domain, kind)
    );
    CREATE TABLE schedules (
        id INTEGER PRIMARY KEY,
        child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('bedtime', 'school')),
        weekdays TEXT NOT NULL,
        start TEXT NOT NULL,
        end_ TEXT NOT NULL,
        categories TEXT NOT NULL DEFAULT '[]',
        services TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE exceptions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        first_day TEXT NOT NULL,
        last_day TEXT NOT NULL,
        child_ids TEXT NOT NULL DEFAULT '[]',
        mode TEXT NOT NULL CHECK (mode IN ('suspend', 'replace')),
        schedules TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE grants (
        id INTEGER PRIMARY KEY,
        child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
        until INTEGER NOT NULL,
        domain TEXT,
        category TEXT,
        CHECK (domain IS NOT NULL OR category IS NOT NULL)
    );
    CREATE INDEX grants_until ON grants (until);

    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        child_id INTEGER REFERENCES children(id) ON DELETE SET NULL,
        adults INTEGER NOT NULL DEFAULT 0,
        new INTEGER NOT NULL DEFAULT 1,
        created INTEGER,
        last_seen INTEGER
    );
    CREATE TABLE identifiers (
        identifier TEXT PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE
    );
    CREATE INDEX identifiers_device ON identifiers (device_id);
    CREATE TABLE device_days (
        device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        day TEXT NOT NULL,
        queries INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, day)
    );

    CREATE TABLE activity (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        client TEXT NOT NULL,
        device_id INTEGER,
        child_id INTEGER,
        qname TEXT NOT NULL,
        qtype TEXT NOT NULL,
        action TEXT NOT NULL,
        reason TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX activity_at ON activity (at);
    CREATE INDEX activity_device ON activity (device_id, at);
    CREATE INDEX activity_child ON activity (child_id, at);

    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        child_id INTEGER,
        device_id INTEGER,
        client TEXT NOT NULL,
        domain TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        created INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'declined')),
        answered_by TEXT NOT NULL DEFAULT '',
        answered_at INTEGER,
        minutes INTEGER
    );
    CREATE INDEX requests_status ON requests (status, created);

    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('parent', 'admin')),
        created INTEGER NOT NULL,
        password_changed INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE INDEX sessions_account ON sessions (account_id);
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE TABLE login_failures (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures (key, at);

    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE feed_status (
        name TEXT PRIMARY KEY,
        last_try INTEGER,
        last_success INTEGER,
        entries INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        etag TEXT NOT NULL DEFAULT '',
        last_modified TEXT NOT NULL DEFAULT '',
        sha256 TEXT NOT NULL DEFAULT ''
    );
    """,
    # daily time budgets (policy/budgets.py): limits, minutes counted per household day,
    # extra time ("more time" approved by a parent) per household day
    """
    CREATE TABLE budgets (
        child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
        slug TEXT NOT NULL,
        school_days INTEGER NOT NULL,
        weekends INTEGER NOT NULL,
        PRIMARY KEY (child_id, slug)
    );
    CREATE TABLE budget_usage (
        child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
        day TEXT NOT NULL,
        key TEXT NOT NULL,
        minutes INTEGER NOT NULL DEFAULT 0,
        last_at INTEGER,
        bridge INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (child_id, day, key)
    );
    CREATE TABLE budget_extra (
        id INTEGER PRIMARY KEY,
        child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
        day TEXT NOT NULL,
        slug TEXT NOT NULL,
        minutes INTEGER NOT NULL,
        by TEXT NOT NULL DEFAULT '',
        at INTEGER
    );
    CREATE INDEX budget_extra_day ON budget_extra (day, child_id);
    """,
    """
    CREATE TABLE alert_outbox (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        created INTEGER NOT NULL,
        next_try INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alert_outbox_due ON alert_outbox (status, next_try);
    CREATE TABLE alert_channels (
        channel TEXT PRIMARY KEY,
        last_ok INTEGER,
        last_error TEXT NOT NULL DEFAULT '',
        last_error_at INTEGER
    );
    CREATE TABLE alert_marks (key TEXT PRIMARY KEY, at INTEGER NOT NULL);
    CREATE TABLE alert_prefs (
        account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        email TEXT NOT NULL DEFAULT '',
        lang TEXT NOT NULL DEFAULT '',
        quiet_start TEXT NOT NULL DEFAULT '',
        quiet_end TEXT NOT NULL DEFAULT ''
    );
    """,
    """
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        created INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('harmful', 'wrong_block')),
        domain TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('child', 'parent')),
        reporter TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        child_id INTEGER,
        device_id INTEGER,
        status TEXT NOT NULL DEFAULT 'open'
            CHECK (status IN ('open', 'listed', 'excepted', 'dismissed')),
        decided_by TEXT NOT NULL DEFAULT '',
        decided_at INTEGER,
        min_age INTEGER
    );
    CREATE INDEX reports_status ON reports (status, created);
    """,
]

_BUDGET_SLUG = re.compile(r"[a-z0-9_]{1,40}")

_CHECKED_TABLES = (
    "meta", "children", "rules", "schedules", "exceptions", "grants", "devices",
    "identifiers", "settings", "accounts", "sessions",
)



# -- conversions and checks ------------------------------------------------------------------


# SQLite result codes (the low byte of an extended code) that say "not now" rather than "bad
# input" or "corrupt": full disk, I/O error, busy/locked, read-only file, cannot open.
_UNAVAILABLE_CODES = frozenset({5, 6, 8, 10, 13, 14})


def _unavailable(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _UNAVAILABLE_CODES
    text = str(e)
    return any(s in text for s in ("disk is full", "disk I/O error", "locked", "readonly"))


def _disk_trouble(e: sqlite3.Error) -> bool:
    """SQLITE_IOERR or SQLITE_FULL: what a full disk gives."""
    code = getattr(e, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in (10, 13)


def _describe(e: sqlite3.Error) -> str:
    text = str(e)
    if isinstance(e, sqlite3.DatabaseError) and any(
        s in text for s in ("malformed", "not a database", "corrupt", "disk image")
    ):
        return f"database is corrupt: {text}"
    return text


def _by_id(c: sqlite3.Connection, select: str, row_id: int, *, what: str) -> _Row:
    """The row `select` finds with this id, or NotFound("no {what} with id {row_id}")."""
    row = c.execute(select + " WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        raise NotFound(f"no {what} with id {row_id}")
    return row


def _where(sql: str, condition: str, value: object) -> tuple[str, tuple[object, ...]]:
    """`sql` filtered by `condition` (one `?`) on `value`, or not filtered when value is None."""
    if value is None:
        return sql, ()
    return f"{sql} WHERE {condition}", (value,)


def _lastrowid(cur: sqlite3.Cursor) -> int:
    rowid = cur.lastrowid
    if rowid is None:  # pragma: no cover - sqlite always sets it after INSERT
        raise StoreError("insert returned no row id")
    return int(rowid)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC; everything comes back as aware UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _ts_req(dt: datetime) -> int:
    """Microseconds since the epoch (exact, ordered). Far-future values ("paused until
    resumed" as 9999-12-31 in a zone west of UTC) are clamped to datetime.max UTC."""
    if not isinstance(dt, datetime):
        raise StoreError(f"{dt!r} is not a datetime")
    delta = (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)) - _EPOCH
    return min(
        (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds, _MAX_TS
    )


def _ts(dt: datetime | None) -> int | None:
    return None if dt is None else _ts_req(dt)


def _dt_req(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _dt(value: int | None) -> datetime | None:
    return None if value is None else _dt_req(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_name(name: str, what: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise StoreError(f"{what} is empty")
    if len(name) > 64:
        raise StoreError(f"{what} {name[:20]!r}… is longer than 64 characters")
    if _CONTROL.search(name):
        raise StoreError(f"{what} {name!r} contains control characters")
    return name


def _check_lang(lang: str) -> str:
    if lang not in ("vi", "en"):
        raise StoreError(f"language {lang!r} is not 'vi' or 'en'")
    return lang


def _check_child(name: str, born: date, lang: str) -> tuple[str, date, str]:
    """A child's name, birth date and language checked (StoreError) and normalised."""
    name, lang = _check_name(name, "child name"), _check_lang(lang)
    return name, _check_born(born), lang


def _check_born(born: date) -> date:
    if isinstance(born, datetime) or not isinstance(born, date):
        raise StoreError(f"birth date {born!r} is not a date")
    if born.year < 1900:
        raise StoreError(f"birth date {born} is before 1900")
    return born


def _domain(domain: str) -> str:
    """policy.names.typed_domain, its BadName as a StoreError naming the input."""
    try:
        return typed_domain(domain)
    except BadName as e:
        raise StoreError(f"domain {domain!r}: {e}") from None


def _identifier(identifier: str) -> str:
    """policy.names.device_identifier, its BadName as a StoreError naming the input."""
    try:
        return device_identifier(identifier)
    except BadName as e:
        raise StoreError(f"device identifier {identifier!r}: {e}") from None


def _check_settings(s: ChildSettings) -> None:
    if s.youtube not in ("off", "moderate", "strict"):
        raise StoreError(f"youtube mode {s.youtube!r} is not off/moderate/strict")
    if s.mode not in ("auto", "normal", "allowlist"):
        raise StoreError(f"mode {s.mode!r} is not auto/normal/allowlist")
    for slug, age in s.category_ages.items():
        if not isinstance(age, int) or isinstance(age, bool) or not 0 <= age <= 99:
            raise StoreError(f"category age for {slug!r} must be a whole number 0-99")


def _settings_to(s: ChildSettings) -> dict[str, object]:
    return {
        "blocked": sorted(s.blocked),
        "allowed": sorted(s.allowed),
        "safe_search": s.safe_search,
        "youtube": s.youtube,
        "bypass_defence": s.bypass_defence,
        "rater": s.rater,
        "rater_off": sorted(s.rater_off),
        "services": sorted(s.services),
        "mode": s.mode,
        "category_ages": dict(sorted(s.category_ages.items())),
        "learning_games": s.learning_games,
    }


def _settings_from(d: dict[str, object], paused_until: datetime | None) -> ChildSettings:
    base = ChildSettings()

    def strs(key: str, default: frozenset[str]) -> frozenset[str]:
        v = d.get(key)
        return frozenset(str(x) for x in v) if isinstance(v, list) else default

    raw_ages = d.get("category_ages")
    ages = (
        {str(k): int(v) for k, v in raw_ages.items()} if isinstance(raw_ages, dict) else {}
    )
    return ChildSettings(
        blocked=strs("blocked", base.blocked),
        allowed=strs("allowed", base.allowed),
        safe_search=bool(d.get("safe_search", base.safe_search)),
        youtube=str(d.get("youtube", base.youtube)),
        bypass_defence=bool(d.get("bypass_defence", base.bypass_defence)),
        rater=bool(d.get("rater", base.rater)),
        rater_off=strs("rater_off", base.rater_off),
        services=strs("services", base.services),
        mode=str(d.get("mode", base.mode)),
        paused_until=paused_until,
        category_ages=ages,
        learning_games=bool(d.get("learning_games", base.learning_games)),
    )


def _check_schedule(s: Schedule) -> None:
    if not s.name.strip():
        raise StoreError("schedule name is empty")
    if s.kind not in ("bedtime", "school"):
        raise StoreError(f"schedule {s.name!r}: kind {s.kind!r} is not bedtime/school")
    if not s.weekdays or not all(isinstance(d, int) and 0 <= d <= 6 for d in s.weekdays):
        raise StoreError(f"schedule {s.name!r}: weekdays must be a non-empty subset of 0..6")


def _schedule_row(s: Schedule) -> tuple[object, ...]:
    return (
        s.name.strip(),
        s.kind,
        ",".join(str(d) for d in sorted(s.weekdays)),
        s.start.isoformat(),
        s.end.isoformat(),
        json.dumps(sorted(s.categories)),
        json.dumps(sorted(s.services)),
    )


def _schedule(r: _Row) -> Schedule:
    return Schedule(
        name=str(r[1]),
        kind=str(r[2]),
        weekdays=frozenset(int(d) for d in str(r[3]).split(",") if d),
        start=time.fromisoformat(str(r[4])),
        end=time.fromisoformat(str(r[5])),
        categories=frozenset(json.loads(str(r[6]))),
        services=frozenset(json.loads(str(r[7]))),
        id=int(r[0]),
    )


def _schedule_json(s: Schedule) -> dict[str, object]:
    name, kind, weekdays, start, end, cats, services = _schedule_row(s)
    return {
        "name": name, "kind": kind, "weekdays": weekdays, "start": start, "end": end,
        "categories": cats, "services": services,
    }


def _schedule_from_json(d: dict[str, object]) -> Schedule:
    return _schedule(
        (0, d["name"], d["kind"], d["weekdays"], d["start"], d["end"], d["categories"],
         d["services"])
    )


def _child(r: _Row) -> Child:
    return Child(int(r[0]), str(r[1]), date.fromisoformat(str(r[2])), str(r[3]))


def _account(r: _Row) -> Account:
    return Account(
        int(r[0]), str(r[1]), str(r[2]), str(r[3]), _dt_req(r[4]), _dt_req(r[5])
    )


def _token(r: _Row) -> ApiToken:
    return ApiToken(int(r[0]), int(r[1]), str(r[2]), str(r[3]), _dt_req(r[4]))


def _request(r: _Row) -> AccessRequest:
    return AccessRequest(
        id=int(r[0]),
        child_id=None if r[1] is None else int(r[1]),
        device_id=None if r[2] is None else int(r[2]),
        client=str(r[3]),
        domain=str(r[4]),
        reason=str(r[5]),
        message=str(r[6]),
        created=_dt_req(r[7]),
        status=str(r[8]),
        answered_by=str(r[9]),
        answered_at=_dt(r[10]),
        minutes=None if r[11] is None else int(r[11]),
    )


def _feed(r: _Row) -> FeedStatus:
    return FeedStatus(
        name=str(r[0]),
        last_try=_dt(r[1]),
        last_success=_dt(r[2]),
        entries=int(r[3]),
        rejected=int(r[4]),
        error=str(r[5]),
        etag=str(r[6]),
        last_modified=str(r[7]),
        sha256=str(r[8]),
    )


def _outbox(r: _Row) -> OutboxRow:
    return OutboxRow(
        id=int(r[0]), channel=str(r[1]), recipient=str(r[2]), kind=str(r[3]),
        payload=json.loads(r[4]), created=_dt_req(r[5]), next_try=_dt_req(r[6]),
        attempts=int(r[7]), status=str(r[8]), last_error=str(r[9]),
    )


def _report(r: _Row) -> Report:
    return Report(
        id=int(r[0]), created=_dt_req(r[1]), kind=str(r[2]), domain=str(r[3]),
        source=str(r[4]), reporter=str(r[5]), category=str(r[6]), note=str(r[7]),
        child_id=r[8], device_id=r[9], status=str(r[10]), decided_by=str(r[11]),
        decided_at=_dt(r[12]), min_age=r[13],
    )
