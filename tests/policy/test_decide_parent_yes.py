"""A parent's yes against the schedules, as a table (policy/decide.py's docstring): which
kind of yes opens a site under which obstacle, and `after_allow`, what the UI asks before it
says "allowed" (the block page must never say yes while something still blocks)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone

import pytest

from policy.decide import after_allow, decide
from policy.model import ALLOW, Action, Child, Grant, Match, Profile, Schedule, Verdict
from tests.policy.conftest import DictIndex

HANOI = timezone(timedelta(hours=7))
TUE_2130 = datetime(2026, 12, 1, 21, 30, tzinfo=HANOI)  # bedtime
TUE_1000 = datetime(2026, 12, 1, 10, 0, tzinfo=HANOI)  # school
TUE_1800 = datetime(2026, 12, 1, 18, 0, tzinfo=HANOI)  # nothing in force
NA = Child(1, "Na", date(2016, 3, 1))
EVERY_DAY = frozenset(range(7))
BEDTIME = Schedule("Bedtime", "bedtime", EVERY_DAY, time(21), time(6, 30))
SCHOOL = Schedule("School", "school", EVERY_DAY, time(7, 30), time(16, 30),
                  categories=frozenset({"games"}))
KID = Profile(child=NA, schedules=(BEDTIME, SCHOOL))
SITE = "game.example"
INDEX = DictIndex([(SITE, Match("games", 13, "ut1-games", line=7))])
BLOCK = Action.BLOCK


def allow_rule(p: Profile) -> Profile:
    return replace(p, allow=frozenset({SITE}))


def grant(p: Profile) -> Profile:
    return replace(p, grants=(Grant(1, TUE_2130 + timedelta(hours=12), domain=SITE),))


def always_rule(p: Profile) -> Profile:
    return replace(p, always_allowed=frozenset({SITE}))


def paused(p: Profile) -> Profile:
    return replace(p, paused_until=TUE_2130 + timedelta(hours=1))


def nothing(p: Profile) -> Profile:
    return p


BEDTIME_BLOCK = Verdict(BLOCK, "schedule:Bedtime", source="parent")
PAUSE_BLOCK = Verdict(BLOCK, "paused", source="parent")
SCHOOL_BLOCK = Verdict(BLOCK, "schedule:School:games", source="ut1-games:7")
GAMES_BLOCK = Verdict(BLOCK, "category:games:13+", source="ut1-games:7")

# the parent's yes | what is in force | the child gets
TABLE = [
    ("no yes", nothing, "bedtime", TUE_2130, BEDTIME_BLOCK),
    ("no yes", nothing, "school", TUE_1000, SCHOOL_BLOCK),
    ("no yes", nothing, "lists", TUE_1800, GAMES_BLOCK),
    ("Yes, always (allow rule)", allow_rule, "bedtime", TUE_2130, BEDTIME_BLOCK),
    ("Yes, always (allow rule)", allow_rule, "school", TUE_1000, Verdict(
        Action.ALLOW, "parent:allow", source="parent")),
    ("Yes, always (allow rule)", allow_rule, "lists", TUE_1800, Verdict(
        Action.ALLOW, "parent:allow", source="parent")),
    ("Yes, always (allow rule)", lambda p: paused(allow_rule(p)), "pause", TUE_2130,
     PAUSE_BLOCK),
    ("Yes for a while (grant)", grant, "bedtime", TUE_2130, Verdict(
        Action.ALLOW, "grant", source="parent")),
    ("Yes for a while (grant)", lambda p: paused(grant(p)), "pause", TUE_2130, PAUSE_BLOCK),
    ("always rule alone", always_rule, "bedtime", TUE_2130, GAMES_BLOCK),
    ("always rule + allow", lambda p: always_rule(allow_rule(p)), "bedtime", TUE_2130,
     Verdict(Action.ALLOW, "parent:allow", source="parent")),
    ("always rule + allow", lambda p: paused(always_rule(allow_rule(p))), "pause", TUE_2130,
     Verdict(Action.ALLOW, "parent:allow", source="parent")),
]


@pytest.mark.parametrize(("yes", "make", "obstacle", "now", "want"), TABLE,
                         ids=[f"{r[0]} / {r[2]}" for r in TABLE])
def test_a_parents_yes_against_what_is_in_force(
    yes: str, make: object, obstacle: str, now: datetime, want: Verdict
) -> None:
    del yes, obstacle
    assert callable(make)
    assert decide(make(KID), SITE, now, INDEX) == want


@pytest.mark.parametrize(("profile", "now", "want"), [
    (KID, TUE_2130, BEDTIME_BLOCK),  # "bedtime still applies until 06:30"
    (KID, TUE_1000, Verdict(Action.ALLOW, "parent:allow", source="parent")),
    (KID, TUE_1800, Verdict(Action.ALLOW, "parent:allow", source="parent")),
    (paused(KID), TUE_2130, PAUSE_BLOCK),
    (replace(KID, deny=frozenset({SITE})), TUE_1800,  # the yes replaces the deny
     Verdict(Action.ALLOW, "parent:allow", source="parent")),
    (replace(KID, deny=frozenset({"example"})), TUE_1800,  # a deny of a parent domain stays
     Verdict(BLOCK, "parent:deny", source="parent")),
])
def test_after_allow_says_what_still_blocks(profile: Profile, now: datetime, want: Verdict
                                            ) -> None:
    assert after_allow(profile, SITE, now) == want


def test_after_allow_on_a_probe_the_resolver_answers() -> None:
    assert after_allow(KID, "mask.icloud.com", TUE_1800).reason == "bypass:private-relay"
    assert after_allow(KID, "wiki.example", TUE_1800) == Verdict(
        Action.ALLOW, "parent:allow", source="parent")
    assert ALLOW.action == Action.ALLOW


def test_after_a_while_yes_the_parents_deny_still_blocks() -> None:
    until = TUE_1800 + timedelta(minutes=30)
    assert after_allow(KID, SITE, TUE_2130, until=TUE_2130 + timedelta(minutes=30)) == Verdict(
        Action.ALLOW, "grant", source="parent")  # a grant passes bedtime
    assert after_allow(replace(KID, deny=frozenset({SITE})), SITE, TUE_1800, until=until
                       ) == Verdict(BLOCK, "parent:deny", source="parent")
