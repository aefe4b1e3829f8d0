"""Opening the SQLite file, migrations, transactions and SQLite error translation."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from policy.store.records import Conflict, NotFound, StoreError, StoreUnavailable
from policy.store.schema import _CHECKED_TABLES, MIGRATIONS

log = logging.getLogger("policy.store")  # the name the logs had before the split
_Row = Any  # a sqlite3 result row


class Database:
    """Open with `Store.open(path)`; close with `close()` (or use as a context manager)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        self.write_failing = False  # the last write failed for want of disk (StoreUnavailable)
        self.exclusive = False  # opened without shared memory: the disk was full at start

    # -- opening, migrations, transactions -------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = 5.0) -> Self:
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
    def _open_exclusive(cls, path: Path, busy_timeout: float, first: sqlite3.Error) -> Self:
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

    def __enter__(self) -> Self:
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

    @staticmethod
    def _need_child(c: sqlite3.Connection, child_id: int) -> None:
        if c.execute("SELECT 1 FROM children WHERE id = ?", (child_id,)).fetchone() is None:
            raise NotFound(f"no child with id {child_id}")

    def revision(self) -> int:
        with self._read() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return int(row[0])


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
