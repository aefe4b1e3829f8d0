"""The SQLite store, on real files in tmp_path."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.model import ADULTS, Grant, HouseholdException, QueryEvent, Schedule
from policy.names import BadName, device_identifier, typed_domain
from policy.store import (
    MIGRATIONS,
    ChildSettings,
    Conflict,
    FeedStatus,
    NotFound,
    Session,
    Store,
    StoreError,
)

T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
HANOI = timezone(timedelta(hours=7))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nestguard.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store.open(db_path)
    yield s
    s.close()


def event(
    at: datetime, qname: str, *, device: int | None = None, child: int | None = None,
    action: str = "allow", reason: str = "",
) -> QueryEvent:
    return QueryEvent(
        at=at, client="192.168.1.20", device_id=device, child_id=child, qname=qname,
        qtype="A", action=action, reason=reason,
    )


# -- opening ---------------------------------------------------------------------------------


def test_new_file_is_0600_and_wal(db_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with Store.open(db_path) as s:
            s.add_child("An", date(2015, 3, 1))
            for p in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
                if p.exists():
                    assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    finally:
        os.umask(old)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()


def test_existing_file_with_loose_mode_is_tightened(db_path: Path) -> None:
    Store.open(db_path).close()
    db_path.chmod(0o644)
    Store.open(db_path).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_data_survives_reopen(db_path: Path) -> None:
    with Store.open(db_path) as s:
        kid = s.add_child("Bình", date(2014, 6, 2), lang="en")
        rev = s.revision()
    with Store.open(db_path) as s:
        assert s.children() == [kid]
        assert s.revision() == rev


def test_garbage_file_is_reported_corrupt(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database at all\n" * 200)
    with pytest.raises(StoreError, match="database is corrupt"):
        Store.open(db_path)


def test_truncated_file_is_reported_corrupt(db_path: Path) -> None:
    with Store.open(db_path) as s:
        kid = s.add_child("An", date(2015, 3, 1))
        for i in range(300):
            s.add_rule(kid.id, f"site{i}.example", "deny")
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db_path.stat().st_size
    assert size > 8192
    with db_path.open("r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(StoreError, match="database is corrupt"):
        Store.open(db_path)


def test_locked_database_is_not_called_corrupt(db_path: Path) -> None:
    Store.open(db_path).close()
    other = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with Store.open(db_path, busy_timeout=0.2) as s:  # reads work in WAL mode
            with pytest.raises(StoreError) as err:
                s.add_child("An", date(2015, 3, 1))
            assert "locked" in str(err.value) and "corrupt" not in str(err.value)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_newer_schema_is_refused(db_path: Path) -> None:
    Store.open(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(db_path)


def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        Store.open(tmp_path / "missing-dir" / "x.db")


# -- children, settings, revision ---------------------------------------------------------


def test_children_round_trip_and_revision_bumps(store: Store) -> None:
    r0 = store.revision()
    an = store.add_child("  An  ", date(2015, 3, 1))
    assert an.name == "An" and an.lang == "vi"
    assert store.revision() == r0 + 1
    assert store.child(an.id) == an
    assert store.child_by_name("an") == an
    binh = store.update_child(an.id, name="Bình", born=date(2015, 3, 2), lang="en")
    assert store.child(an.id) == binh
    assert store.child_by_name("BÌNH") == binh
    assert store.revision() == r0 + 2
    with pytest.raises(NotFound):
        store.child(999)
    with pytest.raises(NotFound):
        store.child_by_name("nobody")


def test_duplicate_child_name_conflicts(store: Store) -> None:
    store.add_child("Minh", date(2012, 1, 1))
    with pytest.raises(Conflict, match="already exists"):
        store.add_child("minh", date(2013, 1, 1))


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 65])
def test_bad_child_name_rejected(store: Store, name: str) -> None:
    r0 = store.revision()
    with pytest.raises(StoreError):
        store.add_child(name, date(2015, 1, 1))
    assert store.revision() == r0


def test_settings_round_trip(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    assert store.settings(kid.id) == ChildSettings()
    until = datetime(2026, 11, 28, 21, 30, tzinfo=HANOI)
    s = ChildSettings(
        blocked=frozenset({"social"}), allowed=frozenset({"games"}), safe_search=False,
        youtube="strict", bypass_defence=False, rater=False, rater_off=frozenset({"adult"}),
        services=frozenset({"tiktok", "roblox"}), mode="allowlist", paused_until=until,
        category_ages={"games": 10},
    )
    r0 = store.revision()
    store.save_settings(kid.id, s)
    assert store.revision() == r0 + 1
    got = store.settings(kid.id)
    assert got == s
    assert got.paused_until is not None and got.paused_until.tzinfo is not None
    store.set_pause(kid.id, None)
    assert store.settings(kid.id).paused_until is None
    assert store.revision() == r0 + 2
    with pytest.raises(StoreError, match="youtube"):
        store.save_settings(kid.id, ChildSettings(youtube="max"))


@pytest.mark.parametrize("hours", [7, 0, -5, -12])
def test_pause_forever_in_any_zone(store: Store, hours: int) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    forever = datetime(9999, 12, 31, tzinfo=timezone(timedelta(hours=hours)))
    store.set_pause(kid.id, forever)
    got = store.settings(kid.id).paused_until
    assert got is not None and got > datetime(9999, 1, 1, tzinfo=UTC)
    naive = datetime(9999, 12, 31)  # naive values are taken as UTC
    store.set_pause(kid.id, naive)
    assert store.settings(kid.id).paused_until == naive.replace(tzinfo=UTC)


def test_delete_child_cascades(store: Store) -> None:
    a = store.add_child("An", date(2015, 3, 1))
    b = store.add_child("Bình", date(2012, 3, 1))
    store.add_rule(a.id, "x.example", "deny")
    store.add_grant(Grant(a.id, T0 + timedelta(hours=1), domain="y.example"))
    dev = store.upsert_device("192.168.1.20", owner=a.id)
    only_a = store.add_exception(
        HouseholdException("Tết", date(2027, 2, 5), date(2027, 2, 12), frozenset({a.id}))
    )
    both = store.add_exception(
        HouseholdException("Hè", date(2027, 6, 1), date(2027, 8, 31), frozenset({a.id, b.id}))
    )
    store.log_queries([event(T0, "z.example", device=dev.id, child=a.id)])
    store.delete_child(a.id)
    assert store.rules() == []
    assert store.grants() == []
    assert store.device(dev.id).owner is None
    assert store.activity(child_id=a.id) == []
    excs = {e.id: e for e in store.exceptions()}
    assert only_a.id not in excs  # would otherwise turn into "every child"
    assert excs[both.id].child_ids == frozenset({b.id})
    with pytest.raises(NotFound):
        store.delete_child(a.id)


# -- rules, schedules, exceptions, grants -------------------------------------------------


def test_rules_canonical_idempotent_and_exclusive(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    r = store.add_rule(kid.id, "  WWW.Example.COM. ", "deny")
    assert r.domain == "www.example.com"
    assert store.add_rule(kid.id, "www.example.com", "deny") == r
    idn = store.add_rule(kid.id, "bücher.example", "allow")
    assert idn.domain == "xn--bcher-kva.example"
    store.add_rule(kid.id, "www.example.com", "allow")
    kinds = {(x.domain, x.kind) for x in store.rules(kid.id)}
    assert kinds == {("www.example.com", "allow"), ("xn--bcher-kva.example", "allow")}
    store.remove_rule(idn.id)
    assert len(store.rules()) == 1
    with pytest.raises(NotFound):
        store.remove_rule(idn.id)


@pytest.mark.parametrize(
    "domain",
    ["", "a..b", "com", "x" * 64 + ".example", "a b.example", "a;drop", "10.0.0.1", "a*b.example"],
)
def test_bad_rule_domain_rejected(store: Store, domain: str) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    with pytest.raises(StoreError, match="domain"):
        store.add_rule(kid.id, domain, "deny")


def test_rule_kind_and_child_checked(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    with pytest.raises(StoreError, match="kind"):
        store.add_rule(kid.id, "a.example", "maybe")
    with pytest.raises(NotFound):
        store.add_rule(kid.id + 1, "a.example", "deny")


def test_sql_metacharacters_are_data(store: Store) -> None:
    name = "Robert'); DROP TABLE children;--"
    kid = store.add_child(name, date(2015, 3, 1))
    assert store.child(kid.id).name == name
    store.set_setting("x'; DROP TABLE settings;--", {"v": "'\""})
    assert store.get_setting("x'; DROP TABLE settings;--") == {"v": "'\""}


def test_schedules_round_trip(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    bed = Schedule("bedtime", "bedtime", frozenset({0, 1, 2, 3, 6}), time(21), time(6, 30))
    school = Schedule(
        "school", "school", frozenset({0, 1, 2, 3, 4}), time(7, 30), time(16, 30),
        categories=frozenset({"games", "social"}), services=frozenset({"tiktok"}),
    )
    b = store.add_schedule(kid.id, bed)
    s = store.add_schedule(kid.id, school)
    assert b.id and s.id and b.id != s.id
    assert store.schedules(kid.id) == [b, s]
    store.remove_schedule(b.id)
    assert store.schedules(kid.id) == [s]
    with pytest.raises(StoreError, match="weekdays"):
        store.add_schedule(kid.id, Schedule("x", "bedtime", frozenset({7}), time(1), time(2)))
    with pytest.raises(StoreError, match="kind"):
        store.add_schedule(kid.id, Schedule("x", "nap", frozenset({1}), time(1), time(2)))


def test_exceptions_round_trip(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    exam = HouseholdException(
        "Thi học kỳ", date(2026, 12, 14), date(2026, 12, 18), frozenset({kid.id}),
        mode="replace",
        schedules=(Schedule("early", "bedtime", frozenset(range(7)), time(21), time(6)),),
    )
    saved = store.add_exception(exam)
    assert saved.id
    assert store.exceptions() == [saved]
    with pytest.raises(StoreError, match="before"):
        store.add_exception(
            HouseholdException("bad", date(2026, 12, 18), date(2026, 12, 14), frozenset())
        )
    store.remove_exception(saved.id)
    assert store.exceptions() == []


def test_grants_active_filter(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    g1 = store.add_grant(Grant(kid.id, T0 + timedelta(minutes=30), domain="Game.Example"))
    g2 = store.add_grant(Grant(kid.id, T0 + timedelta(hours=2), category="games"))
    assert g1.domain == "game.example"
    assert store.grants() == [g1, g2]
    assert store.grants(active_at=T0 + timedelta(minutes=31)) == [g2]
    # the boundary is exclusive: a grant until 14:30 has ended at 14:30
    assert store.grants(active_at=T0 + timedelta(minutes=30)) == [g2]
    with pytest.raises(StoreError, match="exactly one"):
        store.add_grant(Grant(kid.id, T0, domain="a.example", category="games"))
    assert store.purge_grants(T0 + timedelta(hours=1)) == 1


# -- devices -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("AA-BB-CC-DD-EE-0F", "aa:bb:cc:dd:ee:0f"),
        ("aabb.ccdd.ee0f", "aa:bb:cc:dd:ee:0f"),
        ("AABBCCDDEE0F", "aa:bb:cc:dd:ee:0f"),
        ("192.168.001.020".replace("001", "1").replace("020", "20"), "192.168.1.20"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:192.168.1.7", "192.168.1.7"),
        ("fe80::1%eth0", "fe80::1"),
        ("2001:db8:1:2::99/64", "2001:db8:1:2::/64"),
    ],
)
def test_identifiers_normalised(store: Store, raw: str, norm: str) -> None:
    assert device_identifier(raw) == norm
    assert store.upsert_device(raw).identifiers == (norm,)


@pytest.mark.parametrize("raw", ["", "kid-phone", "1.2.3.4.5", "aa:bb:cc", "10.0.0.0/8"])
def test_bad_identifiers_rejected(raw: str) -> None:
    with pytest.raises(BadName):
        device_identifier(raw)


def test_canonical_domain() -> None:
    assert typed_domain("*.Ads.Example.") == "ads.example"
    assert typed_domain("xn--bcher-kva.example") == "xn--bcher-kva.example"
    assert typed_domain("Faß.de") == "xn--fa-hia.de"  # IDNA 2008, as the list parser


def test_devices_upsert_owner_unique_identifier(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    r0 = store.revision()
    d = store.upsert_device("AA:BB:CC:DD:EE:01")
    assert d.new and d.owner is None and d.identifiers == ("aa:bb:cc:dd:ee:01",)
    assert store.revision() == r0 + 1
    same = store.upsert_device("aa-bb-cc-dd-ee-01", name="iPad của An", owner=kid.id)
    assert same.id == d.id and same.name == "iPad của An" and same.owner == kid.id
    assert not same.new
    d = store.add_identifier(d.id, "192.168.1.20")
    assert store.device_by_identifier("192.168.1.20") == d
    assert store.device_by_identifier("192.168.1.21") is None
    laptop = store.upsert_device("192.168.1.30", name="Laptop", owner=ADULTS)
    assert laptop.owner == ADULTS and not laptop.new
    with pytest.raises(Conflict, match="192.168.1.20"):
        store.add_identifier(laptop.id, "192.168.1.20")
    assert store.set_owner(laptop.id, None).owner is None
    assert store.rename_device(laptop.id, "Máy bố").name == "Máy bố"
    with pytest.raises(NotFound):
        store.set_owner(laptop.id, 999)
    with pytest.raises(StoreError, match="owner"):
        store.set_owner(laptop.id, "grandma")
    assert {x.id for x in store.devices()} == {d.id, laptop.id}


def test_seen_creates_devices_and_follows_macs(store: Store) -> None:
    r0 = store.revision()
    store.seen([("192.168.1.50", "aa:bb:cc:00:00:01", T0)])
    dev = store.device_by_identifier("aa:bb:cc:00:00:01")
    assert dev is not None and dev.new
    assert set(dev.identifiers) == {"192.168.1.50", "aa:bb:cc:00:00:01"}
    assert store.revision() == r0 + 1
    # same sighting again: only last_seen changes, no revision bump
    store.seen([("192.168.1.50", "aa:bb:cc:00:00:01", T0 + timedelta(minutes=5))])
    assert store.revision() == r0 + 1
    assert store.device_stats(T0.date())[dev.id] == (T0 + timedelta(minutes=5), 0)
    # the DHCP server gives .50 to another MAC: the address follows the lease
    store.seen([("192.168.1.50", "aa:bb:cc:00:00:02", T0 + timedelta(hours=1))])
    other = store.device_by_identifier("192.168.1.50")
    assert other is not None and other.id != dev.id
    assert "aa:bb:cc:00:00:02" in other.identifiers
    # an address the parent pinned to a device without MAC stays put
    pinned = store.upsert_device("192.168.1.60", name="TV", owner=ADULTS)
    store.seen([("192.168.1.60", "aa:bb:cc:00:00:01", T0)])
    assert store.device_by_identifier("192.168.1.60") == store.device(pinned.id)
    # IPv6 privacy addresses are not learnt: unknown ones make no device, known MACs get
    # last_seen but not the address
    n = len(store.devices())
    store.seen([("2001:db8::1234:5678", None, T0)])
    store.seen([("2001:db8::abcd", "aa:bb:cc:00:00:02", T0 + timedelta(hours=2))])
    assert len(store.devices()) == n
    assert store.device_by_identifier("2001:db8::abcd") is None
    assert store.device_stats(T0.date())[other.id][0] == T0 + timedelta(hours=2)
    # bad addresses are skipped, not fatal
    store.seen([("not-an-ip", None, T0), ("192.168.1.70", None, T0)])
    assert store.device_by_identifier("192.168.1.70") is not None


def test_log_queries_counts_and_merge_moves_stats(store: Store) -> None:
    a = store.upsert_device("192.168.1.20")
    b = store.upsert_device("aa:bb:cc:dd:ee:ff")
    day = T0.date()
    store.log_queries(
        [event(T0, "a.example", device=a.id)] * 3
        + [event(T0 + timedelta(minutes=1), "b.example", device=b.id)] * 2
    )
    stats = store.device_stats(day)
    assert stats[a.id] == (T0, 3)
    assert stats[b.id] == (T0 + timedelta(minutes=1), 2)
    kept = store.merge_devices(a.id, b.id)
    assert set(kept.identifiers) == {"192.168.1.20", "aa:bb:cc:dd:ee:ff"}
    stats = store.device_stats(day)
    assert b.id not in stats
    assert stats[a.id] == (T0 + timedelta(minutes=1), 5)
    assert len(store.activity(device_id=a.id)) == 5
    with pytest.raises(NotFound):
        store.device(b.id)
    with pytest.raises(StoreError, match="itself"):
        store.merge_devices(a.id, a.id)


# -- activity log ----------------------------------------------------------------------------


def test_activity_filters_and_purge(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    old = T0 - timedelta(days=40)
    store.log_queries(
        [
            event(old, "old.example", child=kid.id),
            event(T0, "games.example", child=kid.id, action="block", reason="category:games:13+"),
            event(T0 + timedelta(seconds=1), "news_100%.example", child=kid.id),
            event(T0 + timedelta(seconds=2), "adult.example"),
        ]
    )
    newest = store.activity()
    assert [r.event.qname for r in newest] == [
        "adult.example", "news_100%.example", "games.example", "old.example",
    ]
    assert newest[0].event.at == T0 + timedelta(seconds=2)
    assert [r.event.qname for r in store.activity(blocked_only=True)] == ["games.example"]
    assert [r.event.qname for r in store.activity(search="100%")] == ["news_100%.example"]
    assert store.activity(search="s_1") != [] and store.activity(search="a_") == []
    assert len(store.activity(child_id=kid.id, since=T0)) == 2
    assert len(store.activity(limit=1)) == 1
    r0 = store.revision()
    assert store.purge_activity(T0 - timedelta(days=30)) == 1
    assert store.revision() == r0
    assert "old.example" not in {r.event.qname for r in store.activity()}


def test_summary(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    store.log_queries(
        [
            event(T0, "a.example", child=kid.id),
            event(T0, "g.example", child=kid.id, action="block", reason="category:games:13+"),
            event(T0, "g2.example", child=kid.id, action="block", reason="category:games:13+"),
            event(T0, "s.example", child=kid.id, action="block", reason="category:social:13+"),
            event(T0, "m.example", child=kid.id, action="block", reason="security:malware"),
            event(T0, "use-application-dns.net", child=kid.id, action="block",
                  reason="bypass:canary"),
            event(T0, "x.example"),
            event(T0 - timedelta(days=1), "y.example", child=kid.id),
        ]
    )
    s = store.summary(T0 - timedelta(hours=1))
    assert s[kid.id] == {
        "queries": 6, "blocked": 5, "bypass": 1, "security": 1,
        "top_categories": [("games", 2), ("social", 1)],
    }
    assert s[None]["queries"] == 1


def test_log_queries_batch_is_one_transaction(store: Store) -> None:
    good = event(T0, "a.example")
    bad = QueryEvent(
        at=T0, client="c", device_id=None, child_id=None, qname=None,  # type: ignore[arg-type]
        qtype="A", action="allow", reason="",
    )
    with pytest.raises(StoreError):
        store.log_queries([good, bad])
    assert store.activity() == []


# -- requests ---------------------------------------------------------------------------------


def test_answer_request_with_minutes_adds_grant(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    req = store.add_request(
        child_id=kid.id, device_id=None, client="192.168.1.20", domain="Roblox.com",
        reason="category:games:13+", message="  con làm bài tập <b>  ",
    )
    assert req.status == "pending" and req.domain == "roblox.com"
    assert req.message == "con làm bài tập <b>"
    assert store.requests(status="pending") == [req]
    r0 = store.revision()
    done = store.answer_request(req.id, approve=True, minutes=30, by="mẹ", now=T0)
    assert done.status == "approved" and done.minutes == 30 and done.answered_by == "mẹ"
    assert done.answered_at == T0
    assert store.revision() == r0 + 1
    (g,) = store.grants(active_at=T0)
    assert (g.child_id, g.domain, g.until) == (kid.id, "roblox.com", T0 + timedelta(minutes=30))
    assert store.rules() == []
    with pytest.raises(Conflict, match="already approved"):
        store.answer_request(req.id, approve=False, minutes=0, by="bố", now=T0)


def test_answer_request_forever_adds_allow_rule(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    dev = store.upsert_device("192.168.1.20", owner=kid.id)
    store.add_rule(kid.id, "wiki.example", "deny")
    req = store.add_request(
        child_id=None, device_id=dev.id, client="192.168.1.20", domain="wiki.example",
        reason="parent:deny", message="",
    )
    store.answer_request(req.id, approve=True, minutes=0, by="mẹ", now=T0)
    assert [(r.domain, r.kind) for r in store.rules(kid.id)] == [("wiki.example", "allow")]
    assert store.grants() == []


def test_decline_request_changes_no_policy(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    req = store.add_request(
        child_id=kid.id, device_id=None, client="c", domain="a.example", reason="r", message="",
    )
    r0 = store.revision()
    done = store.answer_request(req.id, approve=False, minutes=0, by="mẹ", now=T0)
    assert done.status == "declined" and done.minutes is None
    assert store.revision() == r0
    assert store.grants() == [] and store.rules() == []
    assert store.request(req.id) == done
    pending = store.add_request(
        child_id=kid.id, device_id=None, client="c", domain="b.example", reason="r", message="",
    )
    assert store.requests(limit=1) == [pending]
    assert store.purge_requests(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert store.requests() == [pending]


# -- accounts, sessions, tokens, audit, throttling -------------------------------------------


def test_accounts_sessions_and_password_change(store: Store) -> None:
    assert store.account_count() == 0
    acc = store.add_account("me", "scrypt$hash1", "admin")
    assert store.account_count() == 1
    assert store.account("ME") == acc
    assert store.account("nobody") is None
    with pytest.raises(Conflict):
        store.add_account("Me", "x", "parent")
    with pytest.raises(StoreError, match="role"):
        store.add_account("dad", "x", "root")
    sess = Session("h1", acc.id, "csrf1", T0, T0)
    store.add_session(sess)
    store.add_session(Session("h2", acc.id, "csrf2", T0, T0))
    assert store.session("h1") == sess
    store.touch_session("h1", T0 + timedelta(minutes=5))
    got = store.session("h1")
    assert got is not None and got.last_seen == T0 + timedelta(minutes=5)
    store.delete_session("h2")
    assert store.session("h2") is None
    store.set_password(acc.id, "scrypt$hash2")
    assert store.session("h1") is None  # a new password ends all sessions
    assert store.account_by_id(acc.id).password_hash == "scrypt$hash2"
    assert store.account_by_id(acc.id).password_changed >= acc.password_changed
    with pytest.raises(NotFound):
        store.set_password(999, "x")


def test_tokens_and_account_delete(store: Store) -> None:
    acc = store.add_account("me", "h", "admin")
    tok = store.add_token(acc.id, "home-assistant", "sha256:abc")
    assert store.token("sha256:abc") == tok
    assert store.tokens(acc.id) == [tok] == store.tokens()
    store.add_session(Session("h1", acc.id, "c", T0, T0))
    store.delete_account(acc.id)
    assert store.token("sha256:abc") is None
    assert store.session("h1") is None
    with pytest.raises(NotFound):
        store.delete_token(tok.id)


def test_audit_newest_first(store: Store) -> None:
    store.audit("me", "login")
    store.audit("me", "add_child", "An")
    log = store.audit_log()
    assert [(e.action, e.detail) for e in log] == [("add_child", "An"), ("login", "")]
    assert len(store.audit_log(limit=1)) == 1


def test_login_failures_window(store: Store) -> None:
    key = "ip:192.168.1.9"
    for i in range(4):
        assert store.record_login_failure(key, T0 + timedelta(minutes=i)) == i + 1
    # at 14:17 only the failures after 14:02 are within the 15-minute window
    assert store.record_login_failure(key, T0 + timedelta(minutes=17)) == 2
    assert store.login_failures(key, T0 + timedelta(minutes=2)) == 3
    (row,) = store.lockouts(T0)
    assert row == (key, 5, T0 + timedelta(minutes=17))
    store.clear_login_failures(key)
    assert store.login_failures(key, T0) == 0


# -- settings, feed status ---------------------------------------------------------------


def test_settings_bump_revision(store: Store) -> None:
    assert store.get_setting("unknown_devices", "strictest") == "strictest"
    r0 = store.revision()
    store.set_setting("unknown_devices", "adults")
    store.set_setting("retention_days", 30)
    assert store.get_setting("unknown_devices") == "adults"
    assert store.get_setting("retention_days") == 30
    assert store.revision() == r0 + 2
    with pytest.raises(StoreError, match="JSON"):
        store.set_setting("bad", object())


def test_feed_status_upsert(store: Store) -> None:
    assert store.feed_status("ut1-adult") is None
    st = FeedStatus("ut1-adult", last_try=T0, last_success=T0, entries=10, etag='"x"')
    store.save_feed_status(st)
    assert store.feed_status("ut1-adult") == st
    st2 = FeedStatus("ut1-adult", last_try=T0 + timedelta(hours=1), error="HTTP 500",
                     last_success=T0, entries=10, etag='"x"')
    store.save_feed_status(st2)
    store.save_feed_status(FeedStatus("a-feed"))
    assert store.feed_statuses() == [FeedStatus("a-feed"), st2]


# -- concurrency -----------------------------------------------------------------------------


def test_threads_share_one_store(store: Store) -> None:
    kid = store.add_child("An", date(2015, 3, 1))
    r0 = store.revision()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                store.add_rule(kid.id, f"t{n}-{i}.example", "deny")
                store.log_queries([event(T0, f"q{n}-{i}.example")])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(store.rules(kid.id)) == 100
    assert store.revision() == r0 + 100


def test_two_stores_on_one_file_see_each_other(db_path: Path) -> None:
    with Store.open(db_path) as ui, Store.open(db_path) as resolver:
        r0 = resolver.revision()
        ui.add_child("An", date(2015, 3, 1))
        assert resolver.revision() == r0 + 1
        assert [c.name for c in resolver.children()] == ["An"]


def test_in_memory_store() -> None:
    with Store.open(Path(":memory:")) as s:
        kid = s.add_child("An", date(2015, 3, 1))
        assert s.children() == [kid]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_name_checks_are_total(text: str) -> None:
    for check in (typed_domain, device_identifier):
        try:
            out = check(text)
        except BadName:
            continue
        assert out == out.strip() and out == check(out)  # canonical forms are fixed points
