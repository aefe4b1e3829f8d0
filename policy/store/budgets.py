"""Daily time budgets (policy/budgets.py): limits, minutes counted, extra time."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from datetime import date

from policy.store.database import Database
from policy.store.records import Budget, BudgetUsage, NotFound, StoreError
from policy.store.rows import _dt, _now, _ts, _where

_BUDGET_SLUG = re.compile(r"[a-z0-9_]{1,40}")


class BudgetsPart(Database):
    """Daily time budgets: limits, counted minutes, extra time."""

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
