"""The activity log and children's access requests."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from policy.model import QueryEvent
from policy.store.budgets import BudgetsPart
from policy.store.records import AccessRequest, ActivityRow, Conflict, StoreError
from policy.store.rows import (
    _by_id,
    _domain,
    _dt_req,
    _lastrowid,
    _now,
    _request,
    _ts,
    _ts_req,
    _utc,
)


class ActivityPart(BudgetsPart):
    """The activity log and access requests. Approving a "more time" request adds the
    day's extra minutes, hence BudgetsPart."""

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
