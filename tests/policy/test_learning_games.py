"""The "learning games stay open when games are blocked" switch (issue 17): decide step 9.

A learning game is a name the education allow set carries AND a games list would block for
this child (abcya.com is in both UT1 games and blocklists/data/education.txt). With the
switch on (the default) it is allowed as "learning:<list>", naming the allow-set entry; off, the
games block stands; security lists win either way; names no games list carries (encyclopaedias,
school tools) stay open either way.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from blocklists.catalogue import load_catalogue
from blocklists.index import SourceInfo, build_index
from blocklists.parse import parse, parse_file
from blocklists.rater import load_education
from policy.decide import decide
from policy.model import Action, Child, Grant, Profile, Verdict
from policy.reload import child_profile
from policy.store import ChildSettings, Store
from tests.policy.conftest import DictIndex, m

HANOI = timezone(timedelta(hours=7))
NOW = datetime.combine(date(2026, 12, 1), time(16), HANOI)
NINE = Child(1, "Minh", date(2017, 6, 1))
FOUR = Child(2, "Bi", date(2022, 6, 1))
FOURTEEN = Child(3, "Lan", date(2012, 6, 1))
ON = Profile(child=NINE)
OFF = replace(ON, learning_games=False)
BLOCK, ALLOW = Action.BLOCK, Action.ALLOW
EDUCATION = Path(__file__).resolve().parents[2] / "blocklists" / "data" / "education.txt"


def v(action: Action, reason: str = "", source: str = "") -> Verdict:
    return Verdict(action, reason, source=source)


@pytest.fixture
def index() -> DictIndex:
    return DictIndex([
        ("mathgames.example", m("games", 12, "ut1-games", 7)),
        ("mathgames.example", m("education", 0, "education", 40, exception=True)),
        ("arcade.example", m("games", 12, "ut1-games", 8)),
        ("wiki.example", m("education", 0, "education", 41, exception=True)),
        ("teams.example", m("chat", 13, "ut1-chat", 3)),
        ("teams.example", m("education", 0, "education", 42, exception=True)),
        ("hijacked.example", m("games", 12, "ut1-games", 9)),
        ("hijacked.example", m("education", 0, "education", 43, exception=True)),
        ("hijacked.example", m("malware", 99, "urlhaus", 5)),
    ])


LEARNING = v(ALLOW, "learning:education", "education:40 mathgames.example")
GAMES_BLOCK = v(BLOCK, "category:games:12+", "ut1-games:7")

ROWS = [
    # name, switch on, switch off
    ("mathgames.example", LEARNING, GAMES_BLOCK),
    ("www.mathgames.example", LEARNING, GAMES_BLOCK),  # the entry covers its subdomains
    ("arcade.example", v(BLOCK, "category:games:12+", "ut1-games:8"),
     v(BLOCK, "category:games:12+", "ut1-games:8")),
    # encyclopaedias and school tools: no games list carries them, open either way
    ("wiki.example", v(ALLOW, "exception:education", "education:41"),
     v(ALLOW, "exception:education", "education:41")),
    ("teams.example", v(ALLOW, "exception:education", "education:42"),
     v(ALLOW, "exception:education", "education:42")),
    # a learning site in a malware list stays blocked, switch or not
    ("hijacked.example", v(BLOCK, "security:malware", "urlhaus:5"),
     v(BLOCK, "security:malware", "urlhaus:5")),
]


@pytest.mark.parametrize(("qname", "on", "off"), ROWS)
def test_the_switch_both_ways(qname: str, on: Verdict, off: Verdict, index: DictIndex) -> None:
    assert decide(ON, qname, NOW, index) == on
    assert decide(OFF, qname, NOW, index) == off


def test_default_is_on() -> None:
    assert Profile(child=NINE).learning_games is True
    assert ChildSettings().learning_games is True


def test_only_a_games_block_that_applies_makes_it_a_learning_site(index: DictIndex) -> None:
    # a 14-year-old may play games: the allow set is just an exception, the switch is moot
    teen = Profile(child=FOURTEEN)
    for p in (teen, replace(teen, learning_games=False)):
        assert decide(p, "mathgames.example", NOW, index) == v(
            ALLOW, "exception:education", "education:40")
    # games allowed by the parent, or granted for now: the same
    allowed = replace(OFF, allowed=frozenset({"games"}))
    assert decide(allowed, "mathgames.example", NOW, index).reason == "exception:education"
    grant = Grant(1, NOW + timedelta(hours=1), category="games")
    granted = replace(OFF, grants=(grant,))
    assert decide(granted, "mathgames.example", NOW, index).action == ALLOW
    # a parent who blocks games outright, switch off: blocked, said to be the parent's choice
    blocked = replace(Profile(child=FOURTEEN, learning_games=False), blocked=frozenset({"games"}))
    assert decide(blocked, "mathgames.example", NOW, index) == v(
        BLOCK, "category:games:12+", "parent")
    assert decide(replace(blocked, learning_games=True), "mathgames.example", NOW,
                  index) == LEARNING


def test_under_six_allowlist_mode(index: DictIndex) -> None:
    small = Profile(child=FOUR, mode="allowlist")
    assert decide(small, "mathgames.example", NOW, index) == LEARNING
    assert decide(replace(small, learning_games=False), "mathgames.example", NOW,
                  index) == GAMES_BLOCK
    assert decide(replace(small, learning_games=False), "wiki.example", NOW,
                  index).action == ALLOW


def test_parent_allow_beats_the_switch(index: DictIndex) -> None:
    p = replace(OFF, allow=frozenset({"mathgames.example"}))
    assert decide(p, "mathgames.example", NOW, index) == v(ALLOW, "parent:allow", "parent")


def test_the_store_keeps_the_switch(tmp_path: Path) -> None:
    with Store.open(tmp_path / "ng.sqlite") as store:
        child = store.add_child("Minh", date(2017, 6, 1))
        assert store.settings(child.id).learning_games is True  # a new child: on
        store.save_settings(child.id, replace(store.settings(child.id), learning_games=False))
        settings = store.settings(child.id)
        assert settings.learning_games is False
        profile = child_profile(child, settings, [], schedules=(), exceptions=(), grants=(),
                                catalogue={}, now=NOW, bypass_defence=True)
        assert profile.learning_games is False


def test_real_index_with_the_shipped_allow_set() -> None:
    """The real CategoryIndex over the shipped education.txt and a games list that files
    abcya.com (as UT1 does), plus a malware list naming an allow-set entry."""
    ages = {slug: c.min_age for slug, c in load_catalogue().items()}
    assert "abcya.com" in load_education()
    games = parse("abcya.com\nmathplayground.com\narcade-portal.example\n", "domains")
    malware = parse("mathplayground.com\n", "domains")
    index = build_index([
        (SourceInfo("education", "education", 0, exception=True),
         parse_file(EDUCATION, "domains").entries),
        (SourceInfo("ut1-games", "games"), games.entries),
        (SourceInfo("urlhaus", "malware"), malware.entries),
    ], category_ages=ages)
    line = next(i for i, text in enumerate(EDUCATION.read_text().splitlines(), 1)
                if text.split("#")[0].strip() == "abcya.com")
    on = decide(ON, "www.abcya.com", NOW, index)
    assert on == v(ALLOW, "learning:education", f"education:{line} abcya.com")
    assert decide(OFF, "www.abcya.com", NOW, index) == v(
        BLOCK, f"category:games:{ages['games']}+", "ut1-games:1")
    assert decide(ON, "mathplayground.com", NOW, index).reason == "security:malware"
    assert decide(ON, "arcade-portal.example", NOW, index).action == BLOCK
    assert decide(OFF, "en.wikipedia.org", NOW, index).action == ALLOW
