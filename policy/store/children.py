"""Children and their settings; rules, schedules, household exceptions and grants."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import date, datetime

from policy.model import Child, Grant, HouseholdException, Schedule
from policy.store.database import Database
from policy.store.records import RULE_KINDS, ChildSettings, Conflict, NotFound, Rule, StoreError
from policy.store.rows import (
    _by_id,
    _check_child,
    _check_schedule,
    _check_settings,
    _child,
    _domain,
    _dt,
    _dt_req,
    _lastrowid,
    _schedule,
    _schedule_from_json,
    _schedule_json,
    _schedule_row,
    _settings_from,
    _settings_to,
    _ts,
    _utc,
    _where,
)


class ChildrenPart(Database):
    """Children and their settings; rules, schedules, household exceptions, grants."""

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
