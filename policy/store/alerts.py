"""Alerts (delivery queue, channel status, once-only marks, parents' preferences) and site
reports."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from policy.store.database import Database
from policy.store.records import (
    REPORT_KINDS,
    AlertPrefs,
    ChannelStatus,
    Conflict,
    OutboxRow,
    Report,
    StoreError,
)
from policy.store.rows import (
    _by_id,
    _domain,
    _dt,
    _dt_req,
    _lastrowid,
    _now,
    _outbox,
    _report,
    _ts,
    _ts_req,
    _where,
)


class AlertsPart(Database):
    """The alert outbox, channel status, once-only marks, alert preferences; site reports."""

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
