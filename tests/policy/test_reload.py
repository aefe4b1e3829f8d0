"""build_policy from a real store, and reload_loop's timing and failure handling."""

from __future__ import annotations

import asyncio
import sqlite3
import time as walltime
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from policy.decide import decide
from policy.live import Live
from policy.model import ADULTS, Action, Category, Grant, HouseholdException, Schedule
from policy.reload import (
    ESSENTIAL_NAMES,
    ReloadStatus,
    build_policy,
    fallback_policy,
    open_policy,
    reload_loop,
)
from policy.store import ChildSettings, Store
from tests.policy.conftest import DictIndex, m

HANOI = timezone(timedelta(hours=7))
NOW = datetime(2026, 12, 1, 16, 0, tzinfo=HANOI)
CATS = {
    "games": Category("games", {"en": "Games", "vi": "Trò chơi"}, 13),
    "gambling": Category("gambling", {"en": "Gambling", "vi": "Cờ bạc"}, 18),
    "malware": Category("malware", {"en": "Malware", "vi": "Mã độc"}, 99, security=True),
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "db.sqlite")
    yield s
    s.close()


def test_profiles_devices_and_default(store: Store) -> None:
    an = store.add_child("An", date(2013, 12, 2))
    be = store.add_child("Bé", date(2022, 5, 5))  # 4 years old: "auto" -> allowlist
    store.add_rule(an.id, "wiki.example", "allow")
    store.add_rule(an.id, "bad.example", "deny")
    store.add_rule(an.id, "school.example", "always")
    store.save_settings(
        an.id,
        ChildSettings(services=frozenset({"tiktok"}), category_ages={"games": 10},
                      bypass_defence=False),
    )
    bed = store.add_schedule(
        an.id, Schedule("bedtime", "bedtime", frozenset(range(7)), time(21), time(7))
    )
    store.add_exception(
        HouseholdException("Tết", date(2027, 2, 5), date(2027, 2, 12), frozenset({be.id}))
    )
    store.add_grant(Grant(an.id, NOW + timedelta(minutes=5), domain="casino.example"))
    store.add_grant(Grant(an.id, NOW - timedelta(minutes=5), domain="old.example"))
    phone = store.upsert_device("aa:bb:cc:dd:ee:01", owner=an.id)
    store.add_identifier(phone.id, "192.168.1.20")
    tablet = store.upsert_device("2001:db8:1:2::/64", owner=be.id)
    laptop = store.upsert_device("192.168.1.30", owner=ADULTS)

    p = build_policy(store, CATS, now=NOW)
    assert p.revision == store.revision()
    pa, pb = p.profiles[an.id], p.profiles[be.id]
    assert pa.mode == "normal" and pb.mode == "allowlist"
    assert pa.allow == {"wiki.example"} and pa.deny == {"bad.example"}
    assert pa.always_allowed == {"school.example"} | ESSENTIAL_NAMES
    assert pa.services == {"tiktok"} and pa.schedules == (bed,)
    assert pa.category_ages["games"] == 10 and pa.catalogue_ages["games"] == 13
    assert not pa.bypass_defence and pb.bypass_defence
    assert [g.domain for g in pa.grants] == ["casino.example"]  # ended grants left out
    assert pa.grants[0].until.tzinfo is NOW.tzinfo  # in the household's zone (fast compares)
    assert pa.grants[0].until == NOW + timedelta(minutes=5)
    assert pa.exceptions == () and len(pb.exceptions) == 1
    # devices by MAC, address and /64
    assert p.profile_for("192.168.1.20") == (store.device(phone.id), pa)
    assert p.profile_for("10.9.9.9", mac="aa:bb:cc:dd:ee:01")[1] is pa
    assert p.profile_for("2001:db8:1:2:abcd::99")[0] == store.device(tablet.id)
    assert p.profile_for("192.168.1.30") == (store.device(laptop.id), p.adults_profile)
    # unknown device: the youngest child's profile, without her grants
    dev, prof = p.profile_for("192.168.1.99")
    assert dev is None and prof.child == be and prof.mode == "allowlist"
    assert p.adults_profile.mode == "adults" and not p.adults_profile.log_queries


def test_default_profile_choices(store: Store) -> None:
    p = build_policy(store, CATS, now=NOW)
    strict = p.default_profile
    assert strict.child is not None and strict.child.age_on(NOW.date()) == 8
    assert strict.mode == "normal" and strict.youtube == "strict"
    index = DictIndex([("games.example", m("games", 13))])
    assert decide(strict, "games.example", NOW, index).action is Action.BLOCK

    an = store.add_child("An", date(2013, 12, 2))
    store.add_child("Minh", date(2010, 1, 1))
    assert build_policy(store, CATS, now=NOW).default_profile.child == an
    assert build_policy(store, CATS, now=NOW, unknown_devices="minh").default_profile.child \
        == store.child_by_name("Minh")
    assert build_policy(store, CATS, now=NOW, unknown_devices="nobody").default_profile.child \
        == an
    adults = build_policy(store, CATS, now=NOW, unknown_devices=ADULTS, log_adults=True)
    assert adults.default_profile is adults.adults_profile
    assert adults.adults_profile.log_queries
    # the household setting (set in the UI) wins over the argument
    store.set_setting("unknown_devices", "adults")
    p = build_policy(store, CATS, now=NOW)
    assert p.default_profile is p.adults_profile


def test_fallback_policy_filters() -> None:
    p = fallback_policy(NOW)
    index = DictIndex([("casino.example", m("gambling", 18))])
    _, prof = p.profile_for("192.168.1.5")
    assert decide(prof, "casino.example", NOW, index).action is Action.BLOCK


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def start(store: Store, **kw: object) -> tuple[Live, asyncio.Event, asyncio.Event,
                                                      ReloadStatus, asyncio.Task[None], Clock]:
    clock = Clock(NOW)
    live = Live(build_policy(store, CATS, now=NOW))
    nudge, stop = asyncio.Event(), asyncio.Event()
    status = ReloadStatus()
    task = asyncio.create_task(
        reload_loop(store, live, CATS, nudge=nudge, stop=stop, clock=clock, status=status,
                    **kw)  # type: ignore[arg-type]
    )
    return live, nudge, stop, status, task, clock


async def until(cond: object, limit: float = 1.0) -> float:
    t0 = walltime.monotonic()
    while not cond():  # type: ignore[operator]
        if walltime.monotonic() - t0 > limit:
            raise AssertionError(f"not within {limit} s")
        await asyncio.sleep(0.01)
    return walltime.monotonic() - t0


async def test_nudge_applies_change_within_a_second(store: Store) -> None:
    an = store.add_child("An", date(2013, 12, 2))
    live, nudge, stop, status, task, _ = await start(store, interval=30.0)
    try:
        store.add_rule(an.id, "casino.example", "deny")
        nudge.set()
        took = await until(lambda: "casino.example" in live.value.profiles[an.id].deny)
        assert took < 1.0
        assert status.reloads == 1 and not status.degraded
        assert live.value.revision == store.revision()
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def test_interval_picks_up_changes_without_nudge(store: Store) -> None:
    an = store.add_child("An", date(2013, 12, 2))
    live, _, stop, _, task, _ = await start(store, interval=0.05)
    try:
        store.set_pause(an.id, NOW + timedelta(hours=1))
        await until(lambda: live.value.profiles[an.id].paused_until is not None)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def test_grant_expiry_and_day_change_rebuild(store: Store) -> None:
    an = store.add_child("An", date(2013, 12, 2))
    store.add_grant(Grant(an.id, NOW + timedelta(minutes=5), domain="casino.example"))
    live, nudge, stop, status, task, clock = await start(store, interval=30.0)
    try:
        first = live.value
        nudge.set()
        await asyncio.sleep(0.1)
        assert live.value is first  # nothing changed: no rebuild
        clock.now = NOW + timedelta(minutes=6)
        nudge.set()
        await until(lambda: live.value.profiles[an.id].grants == ())
        rebuilt = live.value
        clock.now = datetime(2026, 12, 2, 0, 0, 1, tzinfo=HANOI)  # An turns 13
        nudge.set()
        await until(lambda: live.value is not rebuilt)
        assert status.reloads == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def test_failure_keeps_old_policy_and_sets_degraded(store: Store, tmp_path: Path) -> None:
    an = store.add_child("An", date(2013, 12, 2))
    store.add_rule(an.id, "casino.example", "deny")
    live, nudge, stop, status, task, _ = await start(store, interval=30.0)
    try:
        good = live.value
        # break the store under the loop: a table it needs disappears
        raw = sqlite3.connect(tmp_path / "db.sqlite")
        raw.execute("DROP TABLE rules")
        raw.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        raw.commit()
        raw.close()
        nudge.set()
        await until(lambda: status.degraded)
        assert live.value is good
        assert "rules" in status.last_error and status.failures == 1
        index = DictIndex()
        assert decide(live.value.profiles[an.id], "casino.example", NOW, index).action \
            is Action.BLOCK
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def test_stop_ends_the_loop_promptly(store: Store) -> None:
    _, _, stop, _, task, _ = await start(store, interval=60.0)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 0.5)


def test_open_policy_falls_back_on_a_truncated_db(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with Store.open(path) as s:
        kid = s.add_child("An", date(2013, 12, 2))
        for i in range(300):
            s.add_rule(kid.id, f"allowed{i}.example", "allow")
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)
    store, policy, status = open_policy(path, CATS, now=NOW)
    assert store is None and status.degraded and "corrupt" in status.last_error
    index = DictIndex([("casino.example", m("gambling", 18))])
    _, prof = policy.profile_for("192.168.1.20")
    assert decide(prof, "casino.example", NOW, index).action is Action.BLOCK
    assert decide(prof, "allowed1.example", NOW, index).action is Action.ALLOW


def test_open_policy_healthy(tmp_path: Path) -> None:
    store, policy, status = open_policy(tmp_path / "db.sqlite", CATS, now=NOW)
    assert store is not None and not status.degraded and policy.revision == store.revision()
    store.close()
