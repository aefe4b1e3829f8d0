"""Weekly windows: edges, overnight, exceptions by the window's start date."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from policy.model import Child, HouseholdException, Profile, Schedule
from policy.schedule import active_windows, next_change

TZ = timezone(timedelta(hours=7))
FRI_NIGHT = Schedule("fri", "bedtime", frozenset({4}), time(21), time(7))
ALL_DAY_SUN = Schedule("sun", "bedtime", frozenset({6}), time(9), time(9))  # 24 h
SCHOOL = Schedule("school", "school", frozenset({0, 1, 2, 3, 4}), time(7, 30), time(16, 30))
P = Profile(child=Child(1, "An", date(2014, 1, 1)), schedules=(FRI_NIGHT, ALL_DAY_SUN, SCHOOL))


def at(day: str, hhmm: str, ss: int = 0) -> datetime:
    h, mi = hhmm.split(":")
    return datetime.combine(date.fromisoformat(day), time(int(h), int(mi), ss), TZ)


@pytest.mark.parametrize(
    ("now", "names"),
    [
        (at("2026-12-04", "20:59", 59), []),  # Friday
        (at("2026-12-04", "21:00"), ["fri"]),
        (at("2026-12-05", "03:00"), ["fri"]),  # Saturday: Friday's window
        (at("2026-12-05", "06:59", 59), ["fri"]),
        (at("2026-12-05", "07:00"), []),
        (at("2026-12-06", "08:59"), []),  # Sunday
        (at("2026-12-06", "09:00"), ["sun"]),
        (at("2026-12-07", "08:59"), ["sun", "school"]),  # Monday: Sunday's 24 h + school
        (at("2026-12-07", "09:00"), ["school"]),
        (at("2026-12-07", "16:30"), []),
        (at("2026-12-07", "07:29", 59), ["sun"]),  # minute precision: 07:29:59 is 07:29
    ],
)
def test_active_windows(now: datetime, names: list[str]) -> None:
    assert sorted(w.name for w in active_windows(P, now)) == sorted(names)


def test_exceptions_suspend_replace_and_children() -> None:
    early = Schedule("exam", "bedtime", frozenset(range(7)), time(20), time(6))
    fri = HouseholdException("holiday", date(2026, 12, 4), date(2026, 12, 4), frozenset())
    exam = HouseholdException("exam", date(2026, 12, 7), date(2026, 12, 11), frozenset({1}),
                              mode="replace", schedules=(early,))
    other = HouseholdException("other", date(2026, 12, 7), date(2026, 12, 7), frozenset({2}))
    p = Profile(child=P.child, schedules=P.schedules, exceptions=(fri, exam, other))
    assert active_windows(p, at("2026-12-05", "03:00")) == []  # Friday suspended
    assert [w.name for w in active_windows(p, at("2026-12-07", "20:00"))] == ["exam"]
    assert [w.name for w in active_windows(p, at("2026-12-07", "10:00"))] == []  # replaced
    # Sunday's 24 h window started before the exam week: still in force on Monday morning
    assert [w.name for w in active_windows(p, at("2026-12-07", "08:00"))] == ["sun"]
    # both kinds on one day: replace wins
    both = Profile(child=P.child, schedules=P.schedules,
                   exceptions=(replace_day(fri, "2026-12-08"), exam))
    assert [w.name for w in active_windows(both, at("2026-12-08", "21:00"))] == ["exam"]


def replace_day(e: HouseholdException, day: str) -> HouseholdException:
    from dataclasses import replace

    d = date.fromisoformat(day)
    return replace(e, first_day=d, last_day=d)


def test_next_change() -> None:
    assert next_change(P, at("2026-12-04", "20:00")) == at("2026-12-04", "21:00")
    assert next_change(P, at("2026-12-05", "03:00")) == at("2026-12-05", "07:00")
    assert next_change(Profile(child=None), at("2026-12-04", "20:00")) is None
