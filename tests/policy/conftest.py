"""Policy test helpers: a real (small) index over a dict, and sample profiles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import pytest

from policy.model import Match


class DictIndex:
    """The Index protocol over a dict: name -> matches; a name covers its subdomains.

    Like blocklists' CategoryIndex: every match on the name or a parent, most specific
    first, with `rule` set to the suffix that hit.
    """

    def __init__(self, entries: Iterable[tuple[str, Match]] = ()) -> None:
        self._by_name: dict[str, list[Match]] = {}
        for name, m in entries:
            self.add(name, m)

    def add(self, name: str, m: Match) -> None:
        self._by_name.setdefault(name, []).append(replace(m, rule=m.rule or name))

    def lookup(self, qname: str) -> Sequence[Match]:
        found: list[Match] = []
        name = qname
        while True:
            hit = self._by_name.get(name)
            if hit:
                found.extend(hit)
            dot = name.find(".")
            if dot < 0:
                return tuple(found)
            name = name[dot + 1 :]


def m(category: str, age: int, source: str = "list", line: int = 1, **kw: object) -> Match:
    return Match(category, age, source, line=line, **kw)  # type: ignore[arg-type]


@pytest.fixture
def index() -> DictIndex:
    return sample_index()


def sample_index() -> DictIndex:
    return DictIndex(
        [
            ("casino.example", m("gambling", 18, "ut1-gambling", 120)),
            ("games.example", m("games", 13, "ut1-games", 7)),
            ("kidsgames.example", m("games", 6, "rating-vn", 3)),  # own age (rating feed)
            ("social.example", m("social", 13, "ut1-social", 9)),
            ("adult.example", m("adult", 18, "ut1-adult", 44)),
            ("safe.adult.example", m("adult", 18, "ut1-adult", 45, exception=True)),
            ("evil.example", m("malware", 99, "urlhaus", 5)),
            ("phish.games.example", m("phishing", 99, "phish-list", 2)),
            ("phish.example", m("phishing", 99, "phish-list", 3)),
            ("ok.phish.example", m("phishing", 99, "phish-list", 4, exception=True)),
            ("learn.evil.example", m("education", 0, "edu-allow", 3, exception=True)),
            ("learn.example", m("education", 0, "edu-allow", 1, exception=True)),
            ("learn.casino.example", m("education", 0, "edu-allow", 2, exception=True)),
            ("ads.example", m("ads", 99, "adlist", 10)),
            ("ok.ads.example", m("ads", 99, "adlist", 11, exception=True)),
            # an exception in ANOTHER list does not cancel the gambling match
            ("bet.casino.example", m("ads", 99, "adlist", 12, exception=True)),
            ("toys.example", m("kids", 0, "kids-list", 1)),
            ("free.ok.ads.example", m("games", 13, "ut1-games", 8, exception=True)),
            ("www.youtube.com", m("video", 0, "vid", 1)),
            ("dating.example", m("dating", 18, "name-rater", 0, rule="name contains 'dating'")),
            ("scam.example", m("scam", 99, "name-rater", 0, rule="name contains 'scam'")),
        ]
    )
