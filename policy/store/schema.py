"""The schema: one migration per entry, applied in order."""

from __future__ import annotations

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

_CHECKED_TABLES = (
    "meta", "children", "rules", "schedules", "exceptions", "grants", "devices",
    "identifiers", "settings", "accounts", "sessions",
)
