"""Household settings (key -> JSON value) and blocklist feed status."""

from __future__ import annotations

import json

from policy.store.database import Database
from policy.store.records import FeedStatus, StoreError
from policy.store.rows import _feed, _ts


class SettingsPart(Database):
    """Household settings and feed status."""

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
