"""Parents' accounts, sessions, API tokens, the audit log and login throttling."""

from __future__ import annotations

from datetime import datetime, timedelta

from policy.store.database import Database
from policy.store.records import (
    LOCKOUT_WINDOW,
    Account,
    ApiToken,
    AuditEntry,
    Conflict,
    NotFound,
    Session,
    StoreError,
)
from policy.store.rows import (
    _account,
    _by_id,
    _check_name,
    _dt_req,
    _lastrowid,
    _now,
    _token,
    _ts,
    _ts_req,
    _utc,
    _where,
)


class AccountsPart(Database):
    """Accounts, sessions, API tokens, the audit log, login throttling."""

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
