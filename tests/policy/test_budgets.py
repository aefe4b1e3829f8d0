"""Daily time budgets, the pure parts: the Meter, which day is which, the profile's budget
fields, decide's step 7a and its precedence, the store's tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from policy.budgets import Meter, check_budget, covered, is_weekend, standings, with_budgets
from policy.decide import decide
from policy.model import (
    Child,
    Grant,
    HouseholdException,
    PolicyError,
    Profile,
    Schedule,
)
from policy.services import activity_service, load_services
from policy.store import Budget, BudgetUsage, Store, StoreError
from tests.policy.conftest import DictIndex

HANOI = timezone(timedelta(hours=7))
AN = Child(1, "An", date(2014, 3, 1))
TUE = datetime(2026, 12, 1, 16, 0, 5, tzinfo=HANOI)


# -- the catalogue's activity and background names -----------------------------------------
@pytest.mark.parametrize("name,slug", [
    ("www.youtube.com", "youtube"),
    ("rr4---sn-8qj-nbo6.googlevideo.com", "youtube"),  # video segments
    ("i.ytimg.com", "youtube"),
    ("redirector.googlevideo.com", None),  # background under an activity name
    ("s.youtube.com", None),  # playback telemetry
    ("accounts.youtube.com", None),
    ("youtube.com", None),  # the bare domain: links and embeds, not watching
    ("scontent-sin6-2.xx.fbcdn.net", "facebook"),
    ("static.xx.fbcdn.net", None),
    ("graph.facebook.com", None),  # every app's Facebook SDK
    ("t3.rbxcdn.com", "roblox"),
    ("ecsv2.roblox.com", None),
    ("datarouter.ol.epicgames.com", None),
    ("example.com", None),
])
def test_activity_names_not_background(name: str, slug: str | None) -> None:
    assert activity_service(name) == slug


def test_activity_names_are_the_services_own_names() -> None:
    for svc in load_services().values():
        assert not svc.activity & svc.background
        for n in svc.activity:
            parts = n.split(".")
            assert any(".".join(parts[i:]) in svc.domains for i in range(len(parts))), (
                svc.slug, n)


def test_the_catalogue_checks_activity_lists(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("x:\n  names: {en: X}\n  category: video\n  domains: [x.example]\n"
                 "  activity: [a.x.example]\n  background: [a.x.example]\n")
    with pytest.raises(PolicyError, match="both activity and background"):
        load_services(f)
    f.write_text("x:\n  names: {en: X}\n  category: video\n  domains: [x.example]\n"
                 "  activity: a.x.example\n")
    with pytest.raises(PolicyError, match=r"x\.activity: expected a list"):
        load_services(f)


# -- the Meter -------------------------------------------------------------------------------
def test_one_minute_per_minute_whatever_the_devices_and_repeats() -> None:
    m = Meter()
    for s in (0, 10, 30, 54):
        m.hit(1, ("youtube",), {}, TUE + timedelta(seconds=s), 300)
    assert m.minutes(1, "youtube") == 1  # 16:00:05 .. 16:00:59: one minute
    m.hit(1, ("youtube",), {}, TUE + timedelta(seconds=55), 300)  # 16:01:00
    assert m.minutes(1, "youtube") == 2
    assert m.minutes(2, "youtube") == 0  # another child


def test_silences_are_bridged_up_to_the_ttl_and_the_cap() -> None:
    m = Meter()
    m.hit(1, ("a",), {}, TUE, 300)
    m.hit(1, ("a",), {}, TUE + timedelta(minutes=5), 300)  # 5 silent minutes: explained
    assert m.minutes(1, "a") == 6
    m.hit(1, ("b",), {}, TUE, 60)
    m.hit(1, ("b",), {}, TUE + timedelta(minutes=4), 60)  # TTL 60 + 120 s grace < 4 min
    assert m.minutes(1, "b") == 2  # (half of 60 s is no whole minute of tail)
    m.hit(1, ("c",), {}, TUE, 3600)  # an hour's TTL bridges no more than 5 min (+ grace)
    m.hit(1, ("c",), {}, TUE + timedelta(minutes=10), 3600)
    assert m.minutes(1, "c") == 1 + 2 + 1  # the first stretch's tail: half of 300 s
    # the largest allowance since the last counted minute holds
    m.hit(1, ("d",), {}, TUE, 300)
    m.hit(1, ("d",), {}, TUE + timedelta(seconds=40), 20)
    m.hit(1, ("d",), {}, TUE + timedelta(minutes=5), 20)
    assert m.minutes(1, "d") == 6


def test_a_stretch_that_went_silent_gets_its_tail_once() -> None:
    m = Meter()
    m.hit(1, ("a",), {"a": 3}, TUE, 300)
    assert m.close(TUE + timedelta(minutes=6), lambda child: {"a": 3}) == []  # 300 + 120 s
    assert m.minutes(1, "a") == 1
    assert m.close(TUE + timedelta(minutes=8), lambda child: {"a": 3}) == [(1, "a")]
    assert m.minutes(1, "a") == 3  # + 2 minutes: half the 300 s the answer allowed
    assert m.close(TUE + timedelta(minutes=20), lambda child: {"a": 3}) == []
    m.hit(1, ("a",), {}, TUE + timedelta(minutes=30), 300)  # a new stretch, no second tail
    assert m.minutes(1, "a") == 4
    assert [u.bridge for u in m.dirty()] == [300]


def test_spent_is_told_once_per_limit() -> None:
    m = Meter()
    limits = {"youtube": 2}
    assert m.hit(1, ("youtube",), limits, TUE, 60) == []
    assert m.hit(1, ("youtube",), limits, TUE + timedelta(minutes=1), 60) == ["youtube"]
    assert m.hit(1, ("youtube",), limits, TUE + timedelta(minutes=2), 60) == []
    limits = {"youtube": 5}  # 2 extra minutes given
    m.hit(1, ("youtube",), limits, TUE + timedelta(minutes=3), 60)
    assert m.hit(1, ("youtube",), limits, TUE + timedelta(minutes=4), 60) == ["youtube"]


def test_the_day_rolls_over_and_a_restart_goes_on() -> None:
    m = Meter()
    night = datetime(2026, 12, 1, 23, 59, 10, tzinfo=HANOI)
    m.hit(1, ("a",), {}, night, 300)
    m.hit(1, ("a",), {}, night + timedelta(minutes=1), 300)
    assert m.day == date(2026, 12, 2) and m.minutes(1, "a") == 1
    rows = m.dirty()
    assert [(u.day, u.key, u.minutes) for u in rows] == [(date(2026, 12, 2), "a", 1)]
    again = Meter()
    again.load(date(2026, 12, 2), rows)  # restarted: the stretch goes on
    again.hit(1, ("a",), {}, night + timedelta(minutes=4), 300)
    assert again.minutes(1, "a") == 4


# -- days, limits, the profile's fields --------------------------------------------------------
def test_weekends_and_holidays_use_the_weekend_minutes() -> None:
    holiday = HouseholdException("Tết", date(2026, 12, 1), date(2026, 12, 3), frozenset())
    exam = replace(holiday, name="exams", mode="replace")
    others = replace(holiday, child_ids=frozenset({7}))
    kid = Profile(child=AN)
    assert not is_weekend(kid, date(2026, 12, 1))
    assert is_weekend(kid, date(2026, 12, 5))  # Saturday
    assert is_weekend(replace(kid, exceptions=(holiday,)), date(2026, 12, 1))
    assert not is_weekend(replace(kid, exceptions=(exam,)), date(2026, 12, 1))
    assert not is_weekend(replace(kid, exceptions=(others,)), date(2026, 12, 1))
    b = [Budget(1, "youtube", 60, 120)]
    [st] = standings(kid, b, {"youtube": 50}, {"youtube": 15}, date(2026, 12, 1))
    assert (st.limit, st.left, st.warn, st.spent) == (75, 25, False, False)
    [st] = standings(kid, b, {"youtube": 116}, {}, date(2026, 12, 5))
    assert (st.limit, st.left, st.warn, st.spent) == (120, 4, True, False)


def test_category_and_overall_cover_services_and_name_the_most_specific() -> None:
    assert set(covered("video")) == {"youtube", "twitch"}
    assert set(covered("overall", ["roblox", "video"])) == {"roblox", "youtube", "twitch"}
    assert "tiktok" in covered("overall")  # alone: every service of the budget categories
    budgets = [Budget(1, "youtube", 30, 30), Budget(1, "video", 60, 60),
               Budget(1, "overall", 90, 90)]
    p = with_budgets(Profile(child=AN), budgets, {"youtube": 30, "video": 60}, {},
                     TUE.date())
    assert p.budget_keys["youtube"] == ("youtube", "video", "overall")
    assert p.budget_keys["twitch"] == ("video", "overall")
    assert p.budget_spent == {"youtube": "youtube", "twitch": "video"}
    assert p.budget_limits == {"youtube": 30, "video": 60, "overall": 90}


def test_check_budget_names_the_field() -> None:
    assert check_budget(" YouTube ", "60", 120) == ("youtube", 60, 120)
    with pytest.raises(PolicyError, match=r"^slug: 'zalo'"):  # chat: nothing counts it
        check_budget("zalo", 1, 1)
    with pytest.raises(PolicyError, match=r"^weekends: 1441"):
        check_budget("games", 1, 1441)
    with pytest.raises(PolicyError, match=r"^school_days: 'x'"):
        check_budget("games", "x", 1)


# -- decide: step 7a and what comes before it --------------------------------------------------
SPENT = Profile(child=AN, budget_spent={"youtube": "video"},
                budget_keys={"youtube": ("video",)})


def verdict(profile: Profile, name: str, now: datetime = TUE) -> tuple[str, str]:
    v = decide(profile, name, now, DictIndex())
    return str(v.action), v.reason


def test_a_spent_budget_blocks_the_service_and_nothing_else() -> None:
    assert verdict(SPENT, "www.youtube.com") == ("block", "budget:video")
    assert verdict(SPENT, "youtube.com") == ("block", "budget:video")  # all its names
    assert verdict(SPENT, "rr1.googlevideo.com") == ("block", "budget:video")
    assert verdict(SPENT, "www.tiktok.com") == ("allow", "")
    assert verdict(replace(SPENT, budget_spent={}), "www.youtube.com")[0] == "rewrite"
    adults = Profile(child=None, mode="adults", safe_search=False, youtube="off")
    assert verdict(adults, "www.youtube.com") == ("allow", "")


def test_pause_bedtime_and_the_parents_rules_come_first() -> None:
    paused = replace(SPENT, paused_until=TUE + timedelta(hours=1))
    assert verdict(paused, "www.youtube.com") == ("block", "paused")
    bed = Schedule("bedtime", "bedtime", frozenset(range(7)), time(21), time(7))
    assert verdict(replace(SPENT, schedules=(bed,)), "www.youtube.com",
                   TUE.replace(hour=22)) == ("block", "schedule:bedtime")
    assert verdict(replace(SPENT, deny=frozenset({"youtube.com"})), "www.youtube.com") == (
        "block", "parent:deny")
    allowed = replace(SPENT, allow=frozenset({"youtube.com"}), youtube="off")
    assert verdict(allowed, "www.youtube.com") == ("allow", "parent:allow")
    grant = Grant(1, TUE + timedelta(minutes=30), domain="youtube.com")
    assert verdict(replace(SPENT, grants=(grant,), youtube="off"), "www.youtube.com") == (
        "allow", "grant")
    # a service the parent blocked names its own reason
    assert verdict(replace(SPENT, services=frozenset({"youtube"})), "www.youtube.com") == (
        "block", "service:youtube")


# -- the store -------------------------------------------------------------------------------
def test_store_keeps_budgets_counts_and_extra_time(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db.sqlite") as s:
        an = s.add_child("An", date(2014, 3, 1))
        rev = s.revision()
        s.set_budget(an.id, "youtube", school_days=60, weekends=120)
        s.set_budget(an.id, "youtube", school_days=45, weekends=90)  # changed, not doubled
        assert s.revision() > rev
        assert s.budgets() == [Budget(an.id, "youtube", 45, 90)]
        with pytest.raises(StoreError, match="weekends must be 0..1440"):
            s.set_budget(an.id, "games", school_days=1, weekends=5000)
        day = date(2026, 12, 1)
        rev = s.revision()
        s.save_budget_usage([BudgetUsage(an.id, day, "youtube", 12, datetime.now(UTC), 300),
                             BudgetUsage(999, day, "youtube", 5)])  # a deleted child: skipped
        assert s.revision() == rev  # counting is not a policy change
        assert [(u.key, u.minutes, u.bridge) for u in s.budget_usage(day)] == [
            ("youtube", 12, 300)]
        s.save_budget_usage([BudgetUsage(an.id, day, "youtube", 45)], spent=True)
        assert s.revision() == rev + 1  # spent: the policy rebuilds
        assert s.add_budget_extra(an.id, day, "youtube", 15, by="mai") == 15
        req = s.add_request(child_id=an.id, device_id=None, client="127.0.0.2",
                            domain="www.youtube.com", reason="budget:youtube", message="")
        with pytest.raises(StoreError, match="more time needs a number of minutes"):
            s.answer_request(req.id, approve=True, minutes=0, by="mai",
                             now=datetime(2026, 12, 1, 16, tzinfo=HANOI))
        s.answer_request(req.id, approve=True, minutes=30, by="mai",
                         now=datetime(2026, 12, 1, 16, tzinfo=HANOI))
        assert s.budget_extras(day) == {(an.id, "youtube"): 45}
        assert s.grants() == []  # more time is not a grant on the site
        s.remove_budget(an.id, "youtube")
        assert s.budgets() == []
        s.delete_child(an.id)  # cascades
        assert s.budget_usage(day) == [] and s.budget_extras(day) == {}
