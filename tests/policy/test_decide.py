"""decide() as a table: real (dict) index, injected clock, one row per rule and edge."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.decide import decide, suffixes
from policy.model import (
    ALLOW,
    Action,
    BlockStyle,
    Child,
    Grant,
    HouseholdException,
    Profile,
    Schedule,
    Verdict,
)
from tests.policy.conftest import DictIndex, sample_index

HANOI = timezone(timedelta(hours=7))


def at(day: str, hhmm: str = "16:00") -> datetime:
    h, mi = hhmm.split(":")
    return datetime.combine(date.fromisoformat(day), time(int(h), int(mi)), HANOI)


TUE = at("2026-12-01")  # Tuesday; An turns 13 on Wednesday 2026-12-02
AN = Child(1, "An", date(2013, 12, 2))
WEEKNIGHTS = frozenset({0, 1, 2, 3, 4})  # bedtime windows starting Mon..Fri
BEDTIME = Schedule("bedtime", "bedtime", WEEKNIGHTS, time(21), time(7))
SUNDAY_NIGHT = Schedule("sunday", "bedtime", frozenset({6}), time(22), time(6))
SCHOOL = Schedule(
    "school", "school", WEEKNIGHTS, time(7, 30), time(16, 30),
    categories=frozenset({"games", "social"}), services=frozenset({"tiktok"}),
)

KID = Profile(child=AN)
ADULTS = Profile(
    child=None, mode="adults", safe_search=False, youtube="off", rater=False,
    bypass_defence=False,
)

BLOCK = Action.BLOCK


def v(action: Action, reason: str = "", source: str = "", **kw: object) -> Verdict:
    return Verdict(action, reason, source=source, **kw)  # type: ignore[arg-type]


def test_suffixes() -> None:
    assert suffixes("a.b.example") == ("a.b.example", "b.example", "example")
    assert suffixes("example") == ("example",)


# -- 1. canaries -------------------------------------------------------------------------------

CANARY_ROWS = [
    ("use-application-dns.net", v(BLOCK, "bypass:canary", style=BlockStyle.NXDOMAIN)),
    ("mask.icloud.com", v(BLOCK, "bypass:private-relay", style=BlockStyle.NXDOMAIN)),
    ("mask-h2.icloud.com", v(BLOCK, "bypass:private-relay", style=BlockStyle.NXDOMAIN)),
    ("_dns.resolver.arpa", v(BLOCK, "bypass:ddr", style=BlockStyle.NODATA)),
]


@pytest.mark.parametrize(("qname", "expected"), CANARY_ROWS)
@pytest.mark.parametrize("profile", [KID, replace(ADULTS, bypass_defence=True)])
def test_canaries(qname: str, expected: Verdict, profile: Profile, index: DictIndex) -> None:
    assert decide(profile, qname, TUE, index) == expected


@pytest.mark.parametrize(("qname", "expected"), CANARY_ROWS)
def test_canaries_off(qname: str, expected: Verdict, index: DictIndex) -> None:
    assert decide(replace(KID, bypass_defence=False), qname, TUE, index) == ALLOW


# -- the main table ----------------------------------------------------------------------------

PAUSED = replace(KID, paused_until=TUE + timedelta(minutes=30), always_allowed=frozenset(
    {"school.example"}))
NIGHTS = replace(KID, schedules=(BEDTIME, SUNDAY_NIGHT), always_allowed=frozenset(
    {"school.example"}), allow=frozenset({"games.example"}))
TET = HouseholdException("Tết", date(2026, 12, 4), date(2026, 12, 4), frozenset())
NIGHTS_FRIDAY_OFF = replace(NIGHTS, exceptions=(TET,))
NIGHT_GRANT = replace(
    NIGHTS, grants=(Grant(1, at("2026-12-01", "22:30"), domain="wiki.example"),
                    Grant(1, at("2026-12-01", "23:30"), category="news")),
)
SATURDAY_OFF = replace(
    NIGHTS, exceptions=(replace(TET, first_day=date(2026, 12, 5), last_day=date(2026, 12, 5)),)
)
EXAMS = HouseholdException(
    "exams", date(2026, 11, 30), date(2026, 12, 4), frozenset({1}), mode="replace",
    schedules=(Schedule("exam-week", "bedtime", frozenset(range(7)), time(20), time(6)),),
)
NIGHTS_EXAMS = replace(NIGHTS, exceptions=(EXAMS,))
OTHER_CHILD_EXAMS = replace(NIGHTS, exceptions=(replace(EXAMS, child_ids=frozenset({2})),))
SCHOOLDAY = replace(KID, schedules=(SCHOOL,))
PARENT = replace(
    KID,
    deny=frozenset({"blocked.example", "www.allowed.example"}),
    allow=frozenset({"allowed.example", "casino.example", "evil.example", "www.google.com"}),
)
GRANTS = replace(
    KID,
    grants=(
        Grant(1, TUE + timedelta(minutes=10), domain="casino.example"),
        Grant(1, TUE, domain="adult.example"),  # ends exactly now: over
        Grant(1, TUE + timedelta(hours=1), category="social"),
    ),
    schedules=(SCHOOL,),
)
SEARCH_OFF = replace(KID, safe_search=False, youtube="off")
STRICT_YT = replace(KID, youtube="strict")
SERVICES = replace(KID, services=frozenset({"tiktok", "youtube"}))
ALLOWLIST = replace(
    Profile(child=Child(2, "Bé", date(2022, 5, 5))), mode="allowlist",
    always_allowed=frozenset({"connectivitycheck.gstatic.com"}),
)
CHOICES = replace(KID, blocked=frozenset({"ads", "video"}), allowed=frozenset({"gambling"}))
AGES = replace(
    KID, category_ages={"games": 10, "adult": 16}, catalogue_ages={"games": 13, "adult": 18}
)
NO_RATER = replace(KID, rater=False)
RATER_OFF = replace(KID, rater_off=frozenset({"dating", "scam"}))

ROWS: list[tuple[str, Profile, str, datetime, Verdict]] = [
    # 2. pause: until > now blocks; always-allowed names pass; the end is exclusive
    ("paused", PAUSED, "wiki.example", TUE, v(BLOCK, "paused", "parent")),
    ("paused always", PAUSED, "www.school.example", TUE, ALLOW),
    ("pause over", PAUSED, "wiki.example", TUE + timedelta(minutes=30), ALLOW),
    # 2. bedtime: start inclusive, end exclusive, overnight, weekday of the START
    ("before bedtime", NIGHTS, "wiki.example", at("2026-12-01", "20:59"), ALLOW),
    ("bedtime start", NIGHTS, "wiki.example", at("2026-12-01", "21:00"),
     v(BLOCK, "schedule:bedtime", "parent")),
    ("bedtime after midnight", NIGHTS, "wiki.example", at("2026-12-02", "06:59"),
     v(BLOCK, "schedule:bedtime", "parent")),
    ("bedtime end", NIGHTS, "wiki.example", at("2026-12-02", "07:00"), ALLOW),
    ("friday night on saturday", NIGHTS, "wiki.example", at("2026-12-05", "03:00"),
     v(BLOCK, "schedule:bedtime", "parent")),
    ("no saturday window", NIGHTS, "wiki.example", at("2026-12-06", "03:00"), ALLOW),
    ("sunday into monday", NIGHTS, "wiki.example", at("2026-12-07", "05:00"),
     v(BLOCK, "schedule:sunday", "parent")),
    ("always allowed at night", NIGHTS, "school.example", at("2026-12-01", "22:00"), ALLOW),
    ("domain grant at night", NIGHT_GRANT, "www.wiki.example", at("2026-12-01", "22:00"),
     v(Action.ALLOW, "grant", "parent")),
    ("other names at night", NIGHT_GRANT, "news.example", at("2026-12-01", "22:00"),
     v(BLOCK, "schedule:bedtime", "parent")),
    ("domain grant not in pause", replace(NIGHT_GRANT, paused_until=at("2026-12-02", "00:00")),
     "wiki.example", at("2026-12-01", "22:00"), v(BLOCK, "paused", "parent")),
    ("grant over at night", NIGHT_GRANT, "wiki.example", at("2026-12-01", "23:00"),
     v(BLOCK, "schedule:bedtime", "parent")),
    ("parent allow is not always", NIGHTS, "games.example", at("2026-12-01", "22:00"),
     v(BLOCK, "schedule:bedtime", "parent")),
    # exceptions: by the window's start date, for the listed children
    ("holiday friday", NIGHTS_FRIDAY_OFF, "wiki.example", at("2026-12-05", "03:00"), ALLOW),
    ("holiday saturday only", SATURDAY_OFF, "wiki.example", at("2026-12-05", "03:00"),
     v(BLOCK, "schedule:bedtime", "parent")),
    ("exam week replaces", NIGHTS_EXAMS, "wiki.example", at("2026-12-01", "20:30"),
     v(BLOCK, "schedule:exam-week", "parent")),
    ("exam week not this child", OTHER_CHILD_EXAMS, "wiki.example",
     at("2026-12-01", "20:30"), ALLOW),
    # 3/4. the parent's lists: deny beats allow; a rule covers subdomains; allow beats age
    ("deny", PARENT, "a.blocked.example", TUE, v(BLOCK, "parent:deny", "parent")),
    ("deny beats allow", PARENT, "www.allowed.example", TUE, v(BLOCK, "parent:deny", "parent")),
    ("allow", PARENT, "cdn.allowed.example", TUE, v(Action.ALLOW, "parent:allow", "parent")),
    ("allow beats age", PARENT, "casino.example", TUE, v(Action.ALLOW, "parent:allow", "parent")),
    ("allow beats security", PARENT, "evil.example", TUE,
     v(Action.ALLOW, "parent:allow", "parent")),
    ("allowed engine keeps safe search", PARENT, "www.google.com", TUE,
     v(Action.REWRITE, "safe-search", target="forcesafesearch.google.com")),
    # grants: domain grants allow until `until` (exclusive); category grants lift categories
    ("grant", GRANTS, "www.casino.example", TUE, v(Action.ALLOW, "grant", "parent")),
    ("grant over", GRANTS, "www.casino.example", TUE + timedelta(minutes=10),
     v(BLOCK, "category:gambling:18+", "ut1-gambling:120")),
    ("grant ended", GRANTS, "adult.example", TUE, v(BLOCK, "category:adult:18+", "ut1-adult:44")),
    ("category grant", GRANTS, "social.example", TUE, ALLOW),
    ("category grant lifts school", GRANTS, "social.example", at("2026-12-01", "10:00"), ALLOW),
    ("category grant over", GRANTS, "social.example", TUE + timedelta(hours=1),
     v(BLOCK, "category:social:13+", "ut1-social:9")),
    # 5. security at every age, even with the category allowed; exceptions don't lift it
    ("malware", KID, "x.evil.example", TUE, v(BLOCK, "security:malware", "urlhaus:5")),
    ("phishing over allowed category", replace(KID, allowed=frozenset({"games", "phishing"})),
     "phish.games.example", TUE, v(BLOCK, "security:phishing", "phish-list:2")),
    ("security list's own exception", KID, "ok.phish.example", TUE,
     v(Action.ALLOW, "exception:phish-list", "phish-list:4")),
    ("education never lifts security", KID, "learn.evil.example", TUE,
     v(BLOCK, "security:malware", "urlhaus:5")),
    ("adults security exception", ADULTS, "ok.phish.example", TUE,
     v(Action.ALLOW)),
    ("rater scam", KID, "scam.example", TUE,
     v(BLOCK, "security:scam", "name-rater: name contains 'scam'")),
    ("rater scam off", RATER_OFF, "scam.example", TUE, ALLOW),
    # 6. school hours: categories and services, start inclusive, end exclusive
    ("school games", SCHOOLDAY, "kidsgames.example", at("2026-12-01", "07:30"),
     v(BLOCK, "schedule:school:games", "rating-vn:3")),
    ("school over", SCHOOLDAY, "kidsgames.example", at("2026-12-01", "16:30"), ALLOW),
    ("school service", SCHOOLDAY, "www.tiktok.com", at("2026-12-01", "10:00"),
     v(BLOCK, "schedule:school:tiktok", "parent")),
    ("school other category", SCHOOLDAY, "learn.example", at("2026-12-01", "10:00"),
     v(Action.ALLOW, "exception:edu-allow", "edu-allow:1")),
    ("no school saturday", SCHOOLDAY, "kidsgames.example", at("2026-12-05", "10:00"), ALLOW),
    # 7. services beat safe search and list exceptions
    ("service", SERVICES, "v16.tiktokcdn.com", TUE, v(BLOCK, "service:tiktok", "parent")),
    ("service over safe search", SERVICES, "www.youtube.com", TUE,
     v(BLOCK, "service:youtube", "parent")),
    ("service not blocked", KID, "www.tiktok.com", TUE, ALLOW),
    # 8. safe search
    ("google", KID, "www.google.com", TUE,
     v(Action.REWRITE, "safe-search", target="forcesafesearch.google.com")),
    ("google vn", KID, "www.google.com.vn", TUE,
     v(Action.REWRITE, "safe-search", target="forcesafesearch.google.com")),
    ("google de bare", KID, "google.de", TUE,
     v(Action.REWRITE, "safe-search", target="forcesafesearch.google.com")),
    ("bing", KID, "www.bing.com", TUE, v(Action.REWRITE, "safe-search", target="strict.bing.com")),
    ("ddg", KID, "start.duckduckgo.com", TUE,
     v(Action.REWRITE, "safe-search", target="safe.duckduckgo.com")),
    ("youtube moderate", KID, "m.youtube.com", TUE,
     v(Action.REWRITE, "safe-search", target="restrictmoderate.youtube.com")),
    ("youtube strict", STRICT_YT, "youtubei.googleapis.com", TUE,
     v(Action.REWRITE, "safe-search", target="restrict.youtube.com")),
    ("search off", SEARCH_OFF, "www.google.com", TUE, ALLOW),
    ("youtube off", SEARCH_OFF, "www.youtube.com", TUE, ALLOW),
    ("only front ends", KID, "mail.google.com", TUE, ALLOW),
    ("target itself", KID, "forcesafesearch.google.com", TUE, ALLOW),
    # 9. exceptions: the education set passes; a list's exception speaks for its list only
    ("education over age", KID, "learn.casino.example", TUE,
     v(Action.ALLOW, "exception:edu-allow", "edu-allow:2")),
    ("exception same list", KID, "safe.adult.example", TUE,
     v(Action.ALLOW, "exception:ut1-adult", "ut1-adult:45")),
    ("reports the exception that cancelled", KID, "x.free.ok.ads.example", TUE,
     v(Action.ALLOW, "exception:adlist", "adlist:11")),
    ("exception other list", KID, "bet.casino.example", TUE,
     v(BLOCK, "category:gambling:18+", "ut1-gambling:120")),
    # 10. allowlist mode
    ("allowlist blocks", ALLOWLIST, "wiki.example", TUE, v(BLOCK, "allowlist-mode")),
    ("allowlist education", ALLOWLIST, "learn.example", TUE,
     v(Action.ALLOW, "exception:edu-allow", "edu-allow:1")),
    ("allowlist kids list", ALLOWLIST, "toys.example", TUE, ALLOW),
    ("allowlist always", ALLOWLIST, "connectivitycheck.gstatic.com", TUE, ALLOW),
    ("allowlist no google", ALLOWLIST, "www.google.com", TUE, v(BLOCK, "allowlist-mode")),
    # 11. ages: the day before and of the 13th birthday
    ("12 years old", KID, "games.example", at("2026-12-01", "23:59"),
     v(BLOCK, "category:games:13+", "ut1-games:7")),
    ("13th birthday", KID, "games.example", at("2026-12-02", "00:00"), ALLOW),
    ("13 not 18", KID, "casino.example", at("2026-12-02"),
     v(BLOCK, "category:gambling:18+", "ut1-gambling:120")),
    ("own age from rating feed", KID, "kidsgames.example", TUE, ALLOW),
    ("unlisted", KID, "wiki.example", TUE, ALLOW),
    # the parent's category choices
    ("parent blocked category", CHOICES, "ads.example", TUE,
     v(BLOCK, "category:ads:99+", "adlist:10")),
    ("parent blocked, age allows", CHOICES, "www.youtube.com", TUE,
     v(Action.REWRITE, "safe-search", target="restrictmoderate.youtube.com")),
    ("parent blocked, age allows 2", replace(CHOICES, youtube="off"), "www.youtube.com", TUE,
     v(BLOCK, "category:video:0+", "parent")),
    ("parent allowed category", CHOICES, "casino.example", TUE, ALLOW),
    # category age overrides apply to default-aged matches only
    ("override games 10", AGES, "games.example", TUE, ALLOW),
    ("override adult 16", AGES, "adult.example", TUE,
     v(BLOCK, "category:adult:16+", "ut1-adult:44")),
    ("override stricter", replace(AGES, category_ages={"games": 16}), "kidsgames.example",
     TUE, ALLOW),
    # the name rater
    ("rater", KID, "dating.example", TUE,
     v(BLOCK, "category:dating:18+", "name-rater: name contains 'dating'")),
    ("rater off", NO_RATER, "dating.example", TUE, ALLOW),
    ("rater category off", RATER_OFF, "dating.example", TUE, ALLOW),
    # adults: security and their own lists only
    ("adults security", ADULTS, "evil.example", TUE, v(BLOCK, "security:malware", "urlhaus:5")),
    ("adults adult", ADULTS, "adult.example", TUE, ALLOW),
    ("adults no safe search", ADULTS, "www.google.com", TUE, ALLOW),
    ("adults no canary", ADULTS, "use-application-dns.net", TUE, ALLOW),
    ("adults ignore bedtime", replace(ADULTS, schedules=(BEDTIME,),
                                      paused_until=TUE + timedelta(hours=1)),
     "wiki.example", at("2026-12-01", "22:00"), ALLOW),
    ("adults deny", replace(ADULTS, deny=frozenset({"bet.example"})), "bet.example", TUE,
     v(BLOCK, "parent:deny", "parent")),
]


@pytest.mark.parametrize(
    ("profile", "qname", "now", "expected"),
    [r[1:] for r in ROWS],
    ids=[r[0] for r in ROWS],
)
def test_decide(
    profile: Profile, qname: str, now: datetime, expected: Verdict, index: DictIndex
) -> None:
    assert decide(profile, qname, now, index) == expected


def test_no_child_default_is_age_zero(index: DictIndex) -> None:
    default = Profile(child=None)
    assert decide(default, "games.example", TUE, index).reason == "category:games:13+"
    assert decide(default, "toys.example", TUE, index) == ALLOW


def test_verdicts_are_shared_constants_where_possible(index: DictIndex) -> None:
    # cheap: no allocation for the common allow
    assert decide(KID, "wiki.example", TUE, index) is ALLOW


LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
NAME = st.lists(LABEL, min_size=1, max_size=6).map(".".join)
PROFILES = [KID, NIGHTS, SCHOOLDAY, PARENT, GRANTS, SERVICES, ALLOWLIST, CHOICES, AGES, ADULTS]


@settings(max_examples=150, deadline=None)
@given(
    name=NAME,
    sub=st.sampled_from(["", "x.", "a.b."]),
    known=st.sampled_from(["evil.example", "phish.example", "casino.example", "wiki.example"]),
    which=st.integers(0, len(PROFILES) - 1),
    minutes=st.integers(0, 7 * 24 * 60),
)
def test_decide_total_and_security_always_blocks(
    name: str, sub: str, known: str, which: int, minutes: int
) -> None:
    index = sample_index()
    now = TUE + timedelta(minutes=minutes)
    profile = PROFILES[which]
    verdict = decide(profile, name, now, index)
    assert verdict.action in (Action.ALLOW, Action.BLOCK, Action.REWRITE)
    v2 = decide(profile, sub + known, now, index)
    if known in ("evil.example", "phish.example") and not profile.allow:
        assert v2.action is BLOCK
    parent_lifts = profile.allow or profile.grants or profile is CHOICES
    if known == "casino.example" and profile.mode != "adults" and not parent_lifts:
        assert v2.action is BLOCK  # 18+ for a 12/13-year-old, unless the parent allowed it
